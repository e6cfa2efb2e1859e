#!/usr/bin/env bash
# Installs the Claude Code CLI at the version pinned in claude-cli.version, for the real-CLI conformance tests.
#
#   scripts/install-claude.sh            # install (or find) the pinned CLI; prints its path as the last line
#
# The CLI goes into a cache OUTSIDE the repository:
#   ${IRIS_CLAUDE_CACHE:-$HOME/.cache/iris/claude-code}/<version>/
# with a stable link to the native executable at <that dir>/bin/claude, which is where
# `anthropic_mock::real_claude()` looks (unless IRIS_CLAUDE_BIN names another executable).
#
# Idempotent: when <dir>/bin/claude already reports the pinned version, nothing is downloaded.
# npm runs with --ignore-scripts: the native binary ships in the optional dependency
# @anthropic-ai/claude-code-<platform>, so the package's postinstall (which only copies it) is not needed.
# Needs npm (Node.js >= 18) and access to the npm registry.
set -euo pipefail

die() {
    printf 'install-claude.sh: error: %s\n' "$*" >&2
    exit 1
}
log() {
    printf 'install-claude.sh: %s\n' "$*" >&2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pin_file="$root/claude-cli.version"
[[ -r "$pin_file" ]] || die "the pin file $pin_file is missing; it must hold the Claude Code CLI version (one line, e.g. 2.1.197)"
version="$(tr -d '[:space:]' <"$pin_file")"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "the pin file $pin_file holds '$version', not a version like 2.1.197; fix the file"

if [[ -z "${IRIS_CLAUDE_CACHE:-}" && -z "${HOME:-}" ]]; then
    die "neither IRIS_CLAUDE_CACHE nor HOME is set; set IRIS_CLAUDE_CACHE to a writable directory for the CLI"
fi
cache="${IRIS_CLAUDE_CACHE:-$HOME/.cache/iris/claude-code}"
mkdir -p "$cache" || die "cannot create the cache directory $cache; set IRIS_CLAUDE_CACHE to a writable directory"
cache="$(cd "$cache" && pwd)"
dest="$cache/$version"
exe="$dest/bin/claude"

# Runs `<exe> --version` and succeeds when it reports the pinned version ("2.1.197 (Claude Code)").
reports_pinned_version() {
    local out
    [[ -x "$1" ]] || return 1
    local -a limit=()
    if command -v timeout >/dev/null 2>&1; then limit=(timeout 60); fi
    out="$(DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 ${limit[@]+"${limit[@]}"} "$1" --version 2>/dev/null)" || return 1
    [[ "${out%% *}" == "$version" ]]
}

if reports_pinned_version "$exe"; then
    log "Claude Code $version is already installed"
    printf '%s\n' "$exe"
    exit 0
fi

command -v npm >/dev/null 2>&1 ||
    die "npm is not on PATH; install Node.js (>= 18) with npm, e.g. 'apt-get install nodejs npm', then run this script again"

# Serialize concurrent installs of the same version where flock(1) exists; the one that waited then finds the
# CLI installed.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.install-$version.lock"
    flock 9
    if reports_pinned_version "$exe"; then
        log "Claude Code $version was installed meanwhile"
        printf '%s\n' "$exe"
        exit 0
    fi
fi

# Install into a staging directory next to the destination, then rename it into place, so an interrupted
# install never leaves a half-filled <version> directory behind.
stage="$(mktemp -d "$cache/.install-$version.XXXXXX")"
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
log "installing @anthropic-ai/claude-code@$version with npm into $dest"
npm install --prefix "$stage" --no-save --ignore-scripts --no-audit --no-fund --no-update-notifier \
    --include=optional --loglevel=error "@anthropic-ai/claude-code@$version" >&2 ||
    die "npm install @anthropic-ai/claude-code@$version failed (see npm's output above); check access to the npm registry ($(npm config get registry 2>/dev/null || echo '?'))"

# The native executable is in the platform's optional package; npm installs only the one matching this
# machine (os, cpu, libc). The package's own bin/claude.exe stays a stub without the postinstall script.
native=""
for candidate in "$stage"/node_modules/@anthropic-ai/claude-code-*/claude; do
    if reports_pinned_version "$candidate"; then
        native="$candidate"
        break
    fi
done
[[ -n "$native" ]] ||
    die "npm installed no native Claude Code executable for this platform ($(uname -sm)) that reports version $version; the CLI ships native packages for linux/darwin x64/arm64 (glibc and musl)"

mkdir -p "$stage/bin"
ln -s "../${native#"$stage"/}" "$stage/bin/claude"

if reports_pinned_version "$exe"; then
    log "another install of Claude Code $version finished first; using it"
else
    rm -rf "$dest"
    mv "$stage" "$dest" 2>/dev/null || reports_pinned_version "$exe" ||
        die "cannot move the installed CLI into $dest; remove that directory and run this script again"
fi
reports_pinned_version "$exe" || die "the installed CLI at $exe does not report version $version; remove $dest and run this script again"
log "installed Claude Code $version"
printf '%s\n' "$exe"
