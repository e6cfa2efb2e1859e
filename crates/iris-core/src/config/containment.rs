//! `settings.containment`: how each agent and everything it starts is held.

use serde::{Deserialize, Serialize};

/// How agents are contained (see ARCHITECTURE.md, "Containment"). Default [`Auto`].
///
/// [`Auto`]: ContainmentSetting::Auto
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainmentSetting {
    /// A cgroup v2 per agent where the hierarchy is writable, else the subreaper fallback.
    #[default]
    Auto,
    /// A cgroup v2 per agent; start-up fails if that is not possible here.
    Cgroup,
    /// The fallback: this process is a child subreaper and sweeps each agent's process tree.
    Subreaper,
    /// The agent's process group only (what leaves it is not contained).
    ProcessGroup,
}

impl ContainmentSetting {
    /// The setting as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainmentSetting::Auto => "auto",
            ContainmentSetting::Cgroup => "cgroup",
            ContainmentSetting::Subreaper => "subreaper",
            ContainmentSetting::ProcessGroup => "process-group",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_written_in_kebab_case() {
        #[derive(Deserialize)]
        struct Doc {
            containment: ContainmentSetting,
        }
        for setting in [
            ContainmentSetting::Auto,
            ContainmentSetting::Cgroup,
            ContainmentSetting::Subreaper,
            ContainmentSetting::ProcessGroup,
        ] {
            let doc: Doc = toml::from_str(&format!("containment = \"{}\"", setting.as_str()))
                .expect("a valid setting parses");
            assert_eq!(doc.containment, setting);
        }
        assert!(toml::from_str::<Doc>("containment = \"cgroups\"").is_err());
    }
}
