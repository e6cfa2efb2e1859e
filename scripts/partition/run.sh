#!/usr/bin/env bash
# A Jepsen-style partition test of the iris cluster, on one machine, as root.
#
#   sudo scripts/partition/run.sh [IRIS_BIN [FAKE_CLAUDE_BIN]]
#
# Three network namespaces n1 n2 n3 (10.77.0.1..3/24), each with a veth on one bridge, run one
# `iris node` each from ONE shared configuration (alpha on n1, beta on n2, gamma on n3, so every
# ordered pair of nodes has a pair of teams across it). Client workers in every namespace issue
# `iris tell` calls for all six pairs for the whole run; a census reads /proc every ~300 ms for
# the live fake-claude agents. After SETTLE seconds one node is cut off (its veth detached from
# the bridge) for PARTITION seconds, then healed; load goes on AFTER seconds more; every request
# whose outcome was unknown is retried with the same request id; then the owners' ledgers are
# read, the nodes stopped, and check.py judges the history. See scripts/partition/README.md.
#
# Arguments: IRIS_BIN (default target/debug/iris of this repository) and FAKE_CLAUDE_BIN
# (default target/debug/fake-claude). Both are hard-linked (or copied) into the run's directory
# first, so a rebuild during the run does not change them under it.
#
# Environment (seconds unless said):
#   SETTLE=10 PARTITION=15 AFTER=10   the phases
#   PARTITION_NODE=n2                 the node cut off
#   PARTITION_METHOD=nomaster         nomaster (detach the veth from the bridge) or down
#   TELL_TIMEOUT=5 MARGIN=5           every call must answer within TELL_TIMEOUT + MARGIN
#   SLEEP_MIN_MS=50 SLEEP_MAX_MS=800  how long each turn's agent works (`!sleep N`)
#   PAUSE_MS=200                      pause of each client thread between calls
#   RETRIES=3                         attempts per unknown request in the retry phase
#   HEAL_WAIT=60                      how long to wait for every node to see every peer up again
#   REQUEST_IDS=auto                  auto (pass --request-id when `iris tell --help` has it) or off
#   WORK=/tmp/iris-partition.XXXXXX   where everything is written (kept after the run)
#
# Exit status: 0 when every check passed, 1 on a violation, 2 when the test could not run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "run.sh: this test must run as root: it creates network namespaces, veths and a bridge." >&2
  echo "        run: sudo $0 $*" >&2
  exit 2
fi

iris_arg=${1:-$repo/target/debug/iris}
fake_arg=${2:-$repo/target/debug/fake-claude}
SETTLE=${SETTLE:-10}
PARTITION=${PARTITION:-15}
AFTER=${AFTER:-10}
PARTITION_NODE=${PARTITION_NODE:-n2}
PARTITION_METHOD=${PARTITION_METHOD:-nomaster}
TELL_TIMEOUT=${TELL_TIMEOUT:-5}
MARGIN=${MARGIN:-5}
SLEEP_MIN_MS=${SLEEP_MIN_MS:-50}
SLEEP_MAX_MS=${SLEEP_MAX_MS:-800}
PAUSE_MS=${PAUSE_MS:-200}
RETRIES=${RETRIES:-3}
REQUEST_IDS=${REQUEST_IDS:-auto}
HEAL_WAIT=${HEAL_WAIT:-60}
# A CLI call still running this long after it started is killed (and recorded as unknown, over
# its bound): far past the bound, so a slow answer is measured rather than cut short.
KILL_AFTER=$((4 * (TELL_TIMEOUT + MARGIN)))

nodes=(n1 n2 n3)
declare -A address=([n1]=10.77.0.1 [n2]=10.77.0.2 [n3]=10.77.0.3)
declare -A team_node=([alpha]=n1 [beta]=n2 [gamma]=n3)
pairs=('alpha->beta' 'beta->alpha' 'alpha->gamma' 'gamma->alpha' 'beta->gamma' 'gamma->beta')
bridge=iris-pt0
veth_of() { echo "ipt-$1"; } # the host side of node $1's veth

die() {
  echo "run.sh: $*" >&2
  exit 2
}
log() { echo "[$(date +%T)] $*"; }
# A sleep that a signal interrupts at once (bash runs a trap only after a foreground command).
pause_pid=
pause() {
  sleep "$1" &
  pause_pid=$!
  wait "$pause_pid"
  pause_pid=
}

for tool in ip python3 timeout; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
[[ -x "$iris_arg" ]] || die "no iris binary at $iris_arg (build it: cargo build)"
[[ -x "$fake_arg" ]] || die "no fake-claude binary at $fake_arg (build it: cargo build -p fake-claude)"
[[ "$PARTITION_METHOD" == nomaster || "$PARTITION_METHOD" == down ]] ||
  die "PARTITION_METHOD must be nomaster or down"
[[ -n "${address[$PARTITION_NODE]:-}" ]] || die "PARTITION_NODE must be one of ${nodes[*]}"
[[ "$REQUEST_IDS" == auto || "$REQUEST_IDS" == off ]] || die "REQUEST_IDS must be auto or off"
python=$(python3 -c 'import sys; print(sys.executable)')
for ns in "${nodes[@]}"; do
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    die "network namespace $ns already exists (a previous run killed hard?); remove it: ip netns del $ns"
  fi
done
if ip link show "$bridge" >/dev/null 2>&1; then
  die "link $bridge already exists; remove it: ip link del $bridge"
fi

WORK=${WORK:-$(mktemp -d /tmp/iris-partition.XXXXXX)}
mkdir -p "$WORK"/{bin,data,home/.claude,out/ledgers,logs}
WORK=$(cd "$WORK" && pwd)
out=$WORK/out
# A hard link where it can (a rebuild writes a new file, so the link keeps this one), else a copy.
ln "$iris_arg" "$WORK/bin/iris" 2>/dev/null || cp "$iris_arg" "$WORK/bin/iris"
ln "$fake_arg" "$WORK/bin/fake-claude" 2>/dev/null || cp "$fake_arg" "$WORK/bin/fake-claude"
iris=$WORK/bin/iris
fake=$WORK/bin/fake-claude
stop_file=$WORK/stop-clients
census_stop=$WORK/stop-census

# --- cleanup: whatever happens, kill what we started and remove what we created -------------
declare -A node_pid=()
worker_pids=()
census_pid=
created_ns=()
created_bridge=0
cleaning=0

kill_pid() { # pid: TERM, wait up to 5 s, KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  ((cleaning)) && return
  cleaning=1
  set +e
  touch "$stop_file" "$census_stop" 2>/dev/null
  for pid in "${worker_pids[@]}" $census_pid $pause_pid; do
    kill -KILL "$pid" 2>/dev/null
  done
  for ns in "${!node_pid[@]}"; do
    kill_pid "${node_pid[$ns]}"
  done
  # Whatever is left: agents a node left behind, and any iris process of ours (node, CLI) that
  # escaped the above. Ours are the copies of the binaries in $WORK/bin, working under $WORK.
  for exe in "$iris" "$fake"; do
    for pid in $("$python" "$here/client.py" leftovers --any --exe "$exe" --root "$WORK" 2>/dev/null |
      "$python" -c 'import json,sys; print(" ".join(str(a["pid"]) for a in json.load(sys.stdin)))'); do
      kill -KILL "$pid" 2>/dev/null
    done
  done
  wait 2>/dev/null
  for ns in "${created_ns[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  for ns in "${created_ns[@]}"; do
    ip link del "$(veth_of "$ns")" 2>/dev/null
  done
  ((created_bridge)) && ip link del "$bridge" 2>/dev/null
  rm -rf "$WORK/bin"
  echo "run.sh: cleaned up (namespaces, bridge, processes); the run's files are in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM HUP

event() { # name [node]: a line in events.jsonl
  printf '{"t":%s,"event":"%s","node":"%s"}\n' "$(date +%s%3N)" "$1" "${2:-}" >>"$out/events.jsonl"
}

# --- network ------------------------------------------------------------------------------------
log "network: bridge $bridge, namespaces ${nodes[*]}"
ip link add "$bridge" type bridge
created_bridge=1
ip link set "$bridge" up
for ns in "${nodes[@]}"; do
  ip netns add "$ns"
  created_ns+=("$ns")
  ip link add "$(veth_of "$ns")" type veth peer name eth0 netns "$ns"
  ip link set "$(veth_of "$ns")" master "$bridge" up
  ip -n "$ns" addr add "${address[$ns]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

# --- configuration ------------------------------------------------------------------------------
config=$WORK/iris.toml
{
  cat <<EOF
[settings]
spawn_timeout = "20s"
# Keep every turn in the ledger: the checker looks each acknowledged one up.
turn_retention = 1000000

[cluster]
cookie = "partition-test-cookie"

EOF
  for ns in "${nodes[@]}"; do
    printf '[cluster.nodes.%s]\naddress = "%s:7501"\n\n' "$ns" "${address[$ns]}"
  done
  cat <<EOF
[database]
path = "data/\${IRIS_NODE}.redb"

[agent]
command = "$fake"

EOF
  for team in alpha beta gamma; do
    mkdir -p "$WORK/teams/$team"
    printf '[teams.%s]\npath = "%s"\nnode = "%s"\n\n' "$team" "$WORK/teams/$team" "${team_node[$team]}"
  done
} >"$config"

# Every iris process (node or CLI) of node $1 runs in its namespace with this environment:
# `"${ns_argv[@]}" PROGRAM ARGS` after `ns_prefix NODE`. A background job started that way is a
# simple command, so its $! is the program itself (ip and env exec it), not a subshell.
ns_prefix() {
  ns_argv=(ip netns exec "$1" env -u RUST_LOG -u IRIS_HOME -u IRIS_CLIENT_IDLE_TIMEOUT -u CLAUDECODE
    HOME="$WORK/home" CLAUDE_CONFIG_DIR="$WORK/home/.claude" IRIS_NODE="$1" IRIS_CONFIG="$config")
}
in_ns() { # NODE PROGRAM ARGS: in the foreground
  local ns_argv
  ns_prefix "$1"
  shift
  "${ns_argv[@]}" "$@"
}

cd "$WORK"

# --- nodes --------------------------------------------------------------------------------------
for ns in "${nodes[@]}"; do
  ns_prefix "$ns"
  "${ns_argv[@]}" "$iris" --json --log-level info node >"$WORK/logs/node-$ns.out" 2>"$WORK/logs/node-$ns.log" &
  node_pid[$ns]=$!
done
log "nodes started: $(for ns in "${nodes[@]}"; do printf '%s=%s ' "$ns" "${node_pid[$ns]}"; done)"
for ns in "${nodes[@]}"; do
  for _ in $(seq 300); do
    [[ -s "$WORK/logs/node-$ns.out" ]] && break
    kill -0 "${node_pid[$ns]}" 2>/dev/null || die "node $ns exited at start-up: $(tail -5 "$WORK/logs/node-$ns.log")"
    sleep 0.1
  done
  [[ -s "$WORK/logs/node-$ns.out" ]] || die "node $ns printed no start-up line in 30 s"
done

"$python" "$here/client.py" census --out "$out/census.jsonl" --stop "$census_stop" \
  --exe "$fake" --root "$WORK" &
census_pid=$!

cluster_up() { # every node sees every node up
  local ns
  for ns in "${nodes[@]}"; do
    in_ns "$ns" "$iris" --json cluster status 2>/dev/null |
      "$python" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(n["state"]=="up" for n in d["nodes"]) else 1)' ||
      return 1
  done
}
wait_cluster_up() { # limit (s): returns the seconds it took, fails after limit
  local limit=$1 start
  start=$(date +%s%3N)
  while ! cluster_up; do
    (($(date +%s%3N) - start < limit * 1000)) || return 1
    sleep 0.2
  done
  echo $(($(date +%s%3N) - start))
}
took=$(wait_cluster_up 30) || die "the cluster did not come up in 30 s (see $WORK/logs)"
log "cluster up (every node sees every peer up) after ${took} ms"
event cluster_up

request_id_flag=()
if [[ "$REQUEST_IDS" == off ]]; then
  log "REQUEST_IDS=off: tells go without --request-id (ids are only recorded locally and in each message)"
elif "$iris" tell --help 2>/dev/null | grep -q -- --request-id; then
  request_id_flag=(--request-id-flag)
  log "this build has tell --request-id: requests carry their id"
else
  log "this build has no tell --request-id: ids are only recorded locally (and in each message)"
fi

"$python" - "$out/meta.json" <<EOF
import json, sys
json.dump({
    "nodes": {n: a for n, a in [$(for ns in "${nodes[@]}"; do printf '("%s","%s"),' "$ns" "${address[$ns]}"; done)]},
    "teams": {t: n for t, n in [$(for t in "${!team_node[@]}"; do printf '("%s","%s"),' "$t" "${team_node[$t]}"; done)]},
    "pairs": "${pairs[*]}".split(),
    "partition_node": "$PARTITION_NODE",
    "partition_method": "$PARTITION_METHOD",
    "tell_timeout_s": $TELL_TIMEOUT,
    "margin_s": $MARGIN,
    "kill_after_s": $KILL_AFTER,
    "request_id_flag": ${#request_id_flag[@]} > 0,
    "phases_s": {"settle": $SETTLE, "partition": $PARTITION, "after": $AFTER},
    "iris": "$iris_arg",
    "fake_claude": "$fake_arg",
    "iris_version": "$("$iris" --version 2>/dev/null | head -1)",
}, open(sys.argv[1], "w"), indent=2)
EOF

# --- load ---------------------------------------------------------------------------------------
pair_list=$(
  IFS=,
  echo "${pairs[*]}"
)
for ns in "${nodes[@]}"; do
  ns_prefix "$ns"
  "${ns_argv[@]}" "$python" "$here/client.py" worker --node "$ns" --iris "$iris" --config "$config" \
    --history "$out/history-$ns.jsonl" --stop "$stop_file" --pairs "$pair_list" \
    --timeout "$TELL_TIMEOUT" --kill-after "$KILL_AFTER" "${request_id_flag[@]}" \
    --sleep-min-ms "$SLEEP_MIN_MS" --sleep-max-ms "$SLEEP_MAX_MS" --pause-ms "$PAUSE_MS" \
    2>"$WORK/logs/worker-$ns.log" &
  worker_pids+=($!)
done
event load_start
log "load: ${#pairs[@]} pairs from each of ${#nodes[@]} nodes; settling ${SETTLE}s"
pause "$SETTLE"

# --- partition ----------------------------------------------------------------------------------
veth=$(veth_of "$PARTITION_NODE")
event partition "$PARTITION_NODE"
if [[ "$PARTITION_METHOD" == nomaster ]]; then
  ip link set dev "$veth" nomaster
else
  ip link set dev "$veth" down
fi
log "partition: $PARTITION_NODE cut off ($PARTITION_METHOD $veth) for ${PARTITION}s"
pause "$PARTITION"
if [[ "$PARTITION_METHOD" == nomaster ]]; then
  ip link set dev "$veth" master "$bridge"
else
  ip link set dev "$veth" up
fi
event heal "$PARTITION_NODE"
if took=$(wait_cluster_up "$HEAL_WAIT"); then
  log "healed; every node sees every peer up again after ${took} ms"
  event cluster_up_again
else
  log "healed, but the cluster is still not all up after ${HEAL_WAIT}s (the checker will show the calls)"
  event cluster_not_up_after_heal
fi
log "load continues ${AFTER}s"
pause "$AFTER"

# --- stop the load, retry the unknowns ----------------------------------------------------------
touch "$stop_file"
event load_stop
log "stopping the clients (each finishes its call in flight)"
for pid in "${worker_pids[@]}"; do
  wait "$pid" || log "a worker exited with status $? (see $WORK/logs)"
done
worker_pids=()
log "retrying every request whose outcome was unknown, with the same request id"
for ns in "${nodes[@]}"; do
  ns_prefix "$ns"
  "${ns_argv[@]}" "$python" "$here/client.py" retry --node "$ns" --iris "$iris" --config "$config" \
    --history "$out/history-$ns.jsonl" --timeout "$TELL_TIMEOUT" --kill-after "$KILL_AFTER" \
    --retries "$RETRIES" "${request_id_flag[@]}" 2>"$WORK/logs/retry-$ns.log" &
  worker_pids+=($!)
done
for pid in "${worker_pids[@]}"; do
  wait "$pid" || log "a retry worker exited with status $? (see $WORK/logs)"
done
worker_pids=()
event retries_done

# --- ledgers ------------------------------------------------------------------------------------
# A turn may still run (its caller timed out): wait until no pair has one queued or running.
settled() {
  local pair from to ns
  for pair in "${pairs[@]}"; do
    from=${pair%->*} to=${pair#*->} ns=${team_node[$to]}
    in_ns "$ns" "$iris" --json report "$from" "$to" --limit 50 2>/dev/null |
      "$python" -c 'import json,sys; sys.exit(1 if any(t.get("status") in ("queued","running") for t in json.load(sys.stdin)) else 0)' ||
      return 1
  done
}
for _ in $(seq 40); do
  settled && break
  sleep 0.5
done
for pair in "${pairs[@]}"; do
  from=${pair%->*} to=${pair#*->} ns=${team_node[$to]}
  in_ns "$ns" "$iris" --json report "$from" "$to" --limit 1000000 >"$out/ledgers/$from-$to.json" \
    2>"$WORK/logs/report-$from-$to.log" || log "report $from $to at $ns failed: $(head -c 300 "$out/ledgers/$from-$to.json")"
done
for ns in "${nodes[@]}"; do
  in_ns "$ns" "$iris" --json sessions list >"$out/sessions-$ns.json" 2>/dev/null || true
  in_ns "$ns" "$python" "$here/client.py" metrics --endpoint "$WORK/data/$ns.redb.node" \
    >"$out/metrics-$ns.txt" 2>/dev/null || true
done
log "ledgers read"

# --- stop the nodes -----------------------------------------------------------------------------
event nodes_stop
node_exit_lines=()
for ns in "${nodes[@]}"; do
  kill -TERM "${node_pid[$ns]}" 2>/dev/null || true
done
for ns in "${nodes[@]}"; do
  pid=${node_pid[$ns]} how=sigterm
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    how=sigkill
    kill -KILL "$pid" 2>/dev/null || true
  fi
  status=0
  wait "$pid" || status=$?
  node_exit_lines+=("{\"node\":\"$ns\",\"stopped_by\":\"$how\",\"exit\":$status}")
  unset "node_pid[$ns]"
done
(
  IFS=,
  echo "[${node_exit_lines[*]}]"
) >"$out/nodes-exit.json"
sleep 1
"$python" "$here/client.py" leftovers --any --exe "$fake" --root "$WORK" >"$out/leftovers.json"
touch "$census_stop"
wait "$census_pid" || true
census_pid=
event done
log "nodes stopped: $(cat "$out/nodes-exit.json"); agents left: $(cat "$out/leftovers.json")"

# --- check --------------------------------------------------------------------------------------
status=0
"$python" "$here/check.py" "$out" || status=$?
exit "$status"
