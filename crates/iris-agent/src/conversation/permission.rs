//! Answering the agent's `can_use_tool` requests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use iris_core::config::GrantPermission;
use serde_json::Value;

/// A tool the agent wants to run, as it asked.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    /// The tool, e.g. `Bash` or `mcp__server__tool`.
    pub tool_name: String,
    /// The tool's input.
    pub input: Value,
}

/// The answer to a [`PermissionRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the tool with this input (usually the input unchanged).
    Allow {
        /// The input to run it with.
        updated_input: Value,
    },
    /// Do not run the tool.
    Deny {
        /// Why, shown to the model.
        message: String,
    },
}

/// A boxed future of a [`Decision`].
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send>>;

/// Decides tool permissions. A hook, so that a later layer can route `ask` to a human; the
/// future may take as long as it likes (the agent waits), and runs on its own task.
pub trait PermissionPolicy: Send + Sync + fmt::Debug {
    /// Decides one request.
    fn decide(&self, request: PermissionRequest) -> DecisionFuture;
}

/// The policy from a team's configuration: the disallowed list denies, the allowed list
/// allows, and anything else follows `grant_permission` (`ask` and `forward` deny until a
/// human approver is wired in).
#[derive(Debug, Clone)]
pub struct ConfiguredPolicy {
    grant: GrantPermission,
    allowed: Vec<String>,
    disallowed: Vec<String>,
}

impl ConfiguredPolicy {
    /// A policy from `grant_permission` and the tool lists.
    pub fn new(grant: GrantPermission, allowed: Vec<String>, disallowed: Vec<String>) -> Self {
        ConfiguredPolicy {
            grant,
            allowed,
            disallowed,
        }
    }

    fn decide_now(&self, request: &PermissionRequest) -> Decision {
        let allow = || Decision::Allow {
            updated_input: request.input.clone(),
        };
        let deny = |why: String| Decision::Deny { message: why };
        let tool = request.tool_name.as_str();
        // A rule `Bash(git:*)` names the tool `Bash`; a deny rule applies to the whole tool,
        // while only a bare allow rule allows (iris cannot evaluate the specifier's pattern).
        if self.disallowed.iter().any(|rule| rule_tool(rule) == tool) {
            return deny(format!("tool {tool} is disallowed for this team"));
        }
        if self.allowed.iter().any(|rule| rule == tool) {
            return allow();
        }
        match self.grant {
            GrantPermission::Yes => allow(),
            GrantPermission::No => deny(format!("tool {tool} is not permitted for this team")),
            GrantPermission::Ask | GrantPermission::Forward => deny(format!(
                "tool {tool} needs approval, and no approver is connected to iris"
            )),
        }
    }
}

impl PermissionPolicy for ConfiguredPolicy {
    fn decide(&self, request: PermissionRequest) -> DecisionFuture {
        let decision = self.decide_now(&request);
        Box::pin(async move { decision })
    }
}

fn rule_tool(rule: &str) -> &str {
    rule.split_once('(').map_or(rule, |(tool, _)| tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(policy: &ConfiguredPolicy, tool: &str) -> Decision {
        policy.decide_now(&PermissionRequest {
            tool_name: tool.into(),
            input: Value::Null,
        })
    }

    #[test]
    fn lists_win_over_the_grant() {
        let p = ConfiguredPolicy::new(
            GrantPermission::Yes,
            vec!["Read".into()],
            vec!["Bash(rm:*)".into()],
        );
        assert!(matches!(ask(&p, "Bash"), Decision::Deny { .. }));
        assert!(matches!(ask(&p, "Read"), Decision::Allow { .. }));
        assert!(matches!(ask(&p, "Edit"), Decision::Allow { .. }));
        let strict = ConfiguredPolicy::new(GrantPermission::No, vec!["Read".into()], vec![]);
        assert!(matches!(ask(&strict, "Read"), Decision::Allow { .. }));
        assert!(matches!(ask(&strict, "Edit"), Decision::Deny { .. }));
        let asking = ConfiguredPolicy::new(GrantPermission::Ask, vec![], vec![]);
        match ask(&asking, "Edit") {
            Decision::Deny { message } => assert!(message.contains("approver")),
            other => panic!("{other:?}"),
        }
    }
}
