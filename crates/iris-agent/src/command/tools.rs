//! Validation of tool rules (`allowed_tools`, `disallowed_tools`).
//!
//! iris passes each list as one `--allowedTools=<a>,<b>` argument. The agent CLI splits that value
//! on commas and spaces outside parentheses, with no escaping, and tracks parentheses with a flag
//! rather than a depth. A rule therefore reaches the agent as exactly one rule only if it has no
//! comma, no whitespace outside its parentheses, and one un-nested pair of parentheses at most;
//! it must not begin with `-`, or it could pass for a flag.

/// Why a string is not a tool rule iris will pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ToolRuleError {
    /// The rule is empty.
    #[error("it is empty")]
    Empty,
    /// The rule begins with `-`.
    #[error("it begins with '-', so it could pass for a flag")]
    LeadingDash,
    /// The rule begins with `(`.
    #[error("it has no tool name before '('")]
    MissingToolName,
    /// The rule contains a comma.
    #[error("it contains a comma, which would split it into two rules")]
    Comma,
    /// The rule contains whitespace outside parentheses.
    #[error("it contains whitespace outside parentheses, which would split it into two rules")]
    Whitespace,
    /// The rule contains a control character (a newline, a tab, NUL…).
    #[error("it contains a control character")]
    ControlCharacter,
    /// A `)` closes nothing.
    #[error("it has a ')' that closes nothing")]
    UnmatchedClose,
    /// A `(` is never closed.
    #[error("it has a '(' that is never closed")]
    Unclosed,
    /// A `(` opens inside another pair of parentheses.
    #[error("it nests parentheses, which the agent's rule parser does not track")]
    Nested,
}

/// Checks that `rule` reaches the agent as exactly one tool rule: non-empty, not beginning with
/// `-` or `(`, no comma, no control character, no whitespace outside parentheses, and balanced,
/// un-nested parentheses. `Bash(git:*)`, `Bash(npm run test:*)` and `mcp__srv__tool` pass.
pub fn validate_tool_rule(rule: &str) -> Result<(), ToolRuleError> {
    if rule.is_empty() {
        return Err(ToolRuleError::Empty);
    }
    if rule.starts_with('-') {
        return Err(ToolRuleError::LeadingDash);
    }
    if rule.starts_with('(') {
        return Err(ToolRuleError::MissingToolName);
    }
    let mut inside = false;
    for c in rule.chars() {
        if c.is_control() {
            return Err(ToolRuleError::ControlCharacter);
        }
        match c {
            ',' => return Err(ToolRuleError::Comma),
            '(' if inside => return Err(ToolRuleError::Nested),
            '(' => inside = true,
            ')' if !inside => return Err(ToolRuleError::UnmatchedClose),
            ')' => inside = false,
            c if c.is_whitespace() && !inside => return Err(ToolRuleError::Whitespace),
            _ => {}
        }
    }
    if inside {
        return Err(ToolRuleError::Unclosed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_real_rules() {
        for rule in [
            "Read",
            "Bash",
            "Bash(git:*)",
            "Bash(npm run test:*)",
            "Bash(git diff:*)",
            "mcp__srv__tool",
            "mcp__iris-1__permissions__approve",
            "Edit(src/**/*.rs)",
            "WebFetch(domain:example.com)",
            "Bash()",
        ] {
            assert_eq!(validate_tool_rule(rule), Ok(()), "{rule}");
        }
    }

    #[test]
    fn rejects_rules_that_would_split_or_pass_for_flags() {
        for (rule, why) in [
            ("", ToolRuleError::Empty),
            ("-x", ToolRuleError::LeadingDash),
            ("--dangerously-skip-permissions", ToolRuleError::LeadingDash),
            ("(x)", ToolRuleError::MissingToolName),
            ("Bash,Read", ToolRuleError::Comma),
            ("Bash(a,b)", ToolRuleError::Comma),
            ("a b", ToolRuleError::Whitespace),
            (" Read", ToolRuleError::Whitespace),
            ("Read ", ToolRuleError::Whitespace),
            ("Bash(x) Read", ToolRuleError::Whitespace),
            ("Read\u{a0}Write", ToolRuleError::Whitespace),
            ("Bash(unclosed", ToolRuleError::Unclosed),
            ("Bash)", ToolRuleError::UnmatchedClose),
            ("Bash(a(b))", ToolRuleError::Nested),
            ("Bash(a\nb)", ToolRuleError::ControlCharacter),
            ("Bash(a\tb)", ToolRuleError::ControlCharacter),
            ("Read\0", ToolRuleError::ControlCharacter),
        ] {
            assert_eq!(validate_tool_rule(rule), Err(why), "{rule:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = validate_tool_rule(&s);
        }

        #[test]
        fn valid_rules_survive_the_agents_splitter(s in "[A-Za-z_(), :*-]{0,16}") {
            if validate_tool_rule(&s).is_ok() {
                prop_assert_eq!(split_like_the_agent(&s), vec![s.clone()]);
            }
        }
    }

    /// The agent CLI's tool-list tokenizer: split on commas and spaces outside parentheses, with a
    /// flag (not a depth) for being inside, trimming each piece and dropping empty ones.
    fn split_like_the_agent(list: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        let mut inside = false;
        for c in list.chars() {
            match c {
                '(' => {
                    inside = true;
                    current.push(c);
                }
                ')' => {
                    inside = false;
                    current.push(c);
                }
                ',' | ' ' if !inside => {
                    if !current.trim().is_empty() {
                        out.push(current.trim().to_owned());
                    }
                    current.clear();
                }
                _ => current.push(c),
            }
        }
        if !current.trim().is_empty() {
            out.push(current.trim().to_owned());
        }
        out
    }
}
