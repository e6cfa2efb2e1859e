//! POSIX shell quoting.
//!
//! [`quote`] turns any string into one shell word that a POSIX shell (`sh`, `dash`, `bash`, `zsh`
//! in sh mode) reads back as exactly that string: it is wrapped in single quotes, inside which the
//! shell interprets nothing, and each `'` is written `'\''` (close the quote, an escaped quote,
//! reopen). It is used for every piece of the command line sent to a remote team over ssh.
//!
//! [`quote_for_display`] does the same but leaves plainly safe words bare, for the human-readable
//! launch command.
//!
//! A NUL byte cannot be carried by a process argument at all; callers reject it before quoting.

/// Quotes `s` as one POSIX shell word, always: `abc` becomes `'abc'`, `it's` becomes
/// `'it'\''s'`, and the empty string becomes `''`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes `s` only if the shell would otherwise read it differently: a non-empty string made only
/// of `[A-Za-z0-9_@%+=:,./-]` is returned as is, anything else as [`quote`] gives it.
///
/// For display only: a bare word beginning with `-` or containing `=` means what it says as an
/// argument, but not necessarily as the first word of a command.
pub fn quote_for_display(s: &str) -> String {
    if is_display_safe(s) {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// Whether `s` is non-empty and made only of characters no POSIX shell treats specially.
fn is_display_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'.' | b'/' | b'-'
                )
        })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quotes_always() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("abc"), "'abc'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("'"), r"''\'''");
        assert_eq!(quote("$(touch x) `y` \"z\"\n"), "'$(touch x) `y` \"z\"\n'");
    }

    #[test]
    fn display_leaves_safe_words_bare() {
        for safe in [
            "claude",
            "--print",
            "--session-id=550e8400-e29b-41d4-a716-446655440000",
            "/usr/local/bin/claude",
            "K=V",
            "a,b",
            "user@host:22",
            "100%",
            "x+y",
        ] {
            assert_eq!(quote_for_display(safe), safe);
        }
        for unsafe_word in [
            "",
            "a b",
            "it's",
            "$HOME",
            "~",
            "a*",
            "Bash(git:*)",
            "x;y",
            "é",
            "a\nb",
        ] {
            assert_eq!(quote_for_display(unsafe_word), quote(unsafe_word));
        }
    }

    /// Runs `printf '%s\0' <word>` through `sh -c` and returns what it printed.
    fn echo_through_sh(word: &str) -> Vec<u8> {
        let script = format!("printf '%s\\0' {word}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "sh failed on {script:?}: {out:?}");
        out.stdout
    }

    fn expected(s: &str) -> Vec<u8> {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        bytes
    }

    #[test]
    fn nasty_strings_survive_sh() {
        for s in [
            "",
            " ",
            "'",
            "''",
            "\\'",
            "\"",
            "$(touch pwned)",
            "`touch pwned`",
            "; touch pwned",
            "&& touch pwned",
            "a\nb\n",
            "-n",
            "--",
            "*",
            "~",
            "$HOME ${HOME} $$ $1 $@",
            "\\",
            "\t\r\u{7f}\u{1b}[0m",
            "héllo wörld ✓ 😀",
        ] {
            assert_eq!(echo_through_sh(&quote(s)), expected(s), "{s:?}");
            if !s.is_empty() {
                assert_eq!(echo_through_sh(&quote_for_display(s)), expected(s), "{s:?}");
            }
        }
    }

    /// Characters that matter to a shell, mixed with arbitrary ones. NUL is left out: no process
    /// argument can carry it.
    fn shell_string() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            4 => any::<char>(),
            1 => prop::sample::select(vec![
                '\'', '"', '\\', '$', '`', '(', ')', ';', '&', '|', '<', '>', '\n', ' ', '\t',
                '*', '?', '[', ']', '~', '#', '!', '{', '}', '=', '-', '%',
            ]),
        ];
        prop::collection::vec(ch, 0..24)
            .prop_map(|chars| chars.into_iter().filter(|&c| c != '\0').collect::<String>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_string_is_one_word(s in shell_string()) {
            prop_assert_eq!(echo_through_sh(&quote(&s)), expected(&s));
        }

        #[test]
        fn any_string_is_one_display_word(s in shell_string().prop_filter("non-empty", |s| !s.is_empty())) {
            prop_assert_eq!(echo_through_sh(&quote_for_display(&s)), expected(&s));
        }
    }
}
