//! `[cluster]`: the iris nodes that share one configuration, and which node hosts each team.
//!
//! Placement is static: a team is a project directory on one machine, so the pair A→B is owned
//! by the node that hosts team B (`teams.B.node`). Every node loads the same file; only its own
//! name differs (`iris node --node NAME`). Nodes compare a [`Placement`] digest when they connect
//! and refuse a peer whose digest differs: a misconfiguration stops traffic, it never makes a
//! second owner.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::team::TeamName;

/// The longest node name accepted, in characters.
pub const MAX_NODE_NAME_LEN: usize = 64;

/// The name of a cluster node: 1–64 characters of `[A-Za-z0-9_-]`, not starting with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(Arc<str>);

/// Why a string is not a valid [`NodeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not a valid node name: use 1 to {MAX_NODE_NAME_LEN} letters, digits, `_` or `-`, not starting with `-`"
)]
pub struct NodeNameError {
    /// The name as given (clipped when long).
    pub name: String,
}

impl NodeName {
    /// A node name, if `name` is valid.
    pub fn new(name: &str) -> Result<NodeName, NodeNameError> {
        let valid = !name.is_empty()
            && name.chars().count() <= MAX_NODE_NAME_LEN
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(NodeNameError {
                name: crate::redact::clip(name).into_owned(),
            });
        }
        Ok(NodeName(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeName, D::Error> {
        let text = String::deserialize(d)?;
        NodeName::new(&text).map_err(serde::de::Error::custom)
    }
}

/// `[cluster]`: the shared secret and the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// The secret every node presents to its peers (required; shown redacted).
    pub cookie: String,
    /// The nodes, by name.
    pub nodes: BTreeMap<NodeName, NodeConfig>,
    /// `[cluster.tls]`: when set, nodes talk over mutually authenticated TLS.
    pub tls: Option<ClusterTls>,
}

/// `[cluster.tls]`: every link between nodes is TLS, both ends authenticated by certificates of
/// one CA. A node's certificate names the node (a DNS subject alternative name equal to its
/// name in `[cluster.nodes]`), so a node dialling `n2` accepts only n2's certificate. Paths are
/// relative to the configuration file; `${IRIS_NODE}` gives each node its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterTls {
    /// This node's certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// This node's private key (PEM).
    pub key: std::path::PathBuf,
    /// The CA that signed every node's certificate (PEM).
    pub ca: std::path::PathBuf,
}

/// `[cluster.nodes.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Where this node listens for the other nodes (an IP address and a port).
    pub address: SocketAddr,
}

impl ClusterConfig {
    /// The node named `name`, if it is configured.
    pub fn node(&self, name: &str) -> Option<(&NodeName, &NodeConfig)> {
        self.nodes.get_key_value(name)
    }
}

/// Which node hosts what: every node with its address, every team with its node. Two nodes
/// agree on placement exactly when their digests are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The nodes and where they listen.
    pub nodes: BTreeMap<NodeName, SocketAddr>,
    /// The teams hosted by a node (teams without one are local to whichever node serves them).
    pub teams: BTreeMap<TeamName, NodeName>,
}

impl Placement {
    /// The placement as canonical lines (`node n1 127.0.0.1:7501`, `team alpha n1`), in name
    /// order: what the digest is taken of, and what a difference is named from.
    pub fn lines(&self) -> Vec<String> {
        let nodes = self
            .nodes
            .iter()
            .map(|(name, address)| format!("node {name} {address}"));
        let teams = self
            .teams
            .iter()
            .map(|(team, node)| format!("team {team} {node}"));
        nodes.chain(teams).collect()
    }

    /// The SHA-256 of the canonical lines, in hex.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for line in self.lines() {
            hash.update(line.as_bytes());
            hash.update(b"\n");
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first line where `self` and `other` differ, said for a person (`None` when they are
    /// the same placement).
    pub fn first_difference(&self, other: &Placement) -> Option<String> {
        let (ours, theirs) = (self.lines(), other.lines());
        let mut i = 0;
        loop {
            match (ours.get(i), theirs.get(i)) {
                (None, None) => return None,
                (Some(a), Some(b)) if a == b => i += 1,
                (Some(a), Some(b)) => return Some(format!("here `{a}`, there `{b}`")),
                (Some(a), None) => return Some(format!("here `{a}`, there nothing")),
                (None, Some(b)) => return Some(format!("here nothing, there `{b}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn placement(teams: &[(&str, &str)]) -> Placement {
        Placement {
            nodes: [("n1", "127.0.0.1:7501"), ("n2", "127.0.0.1:7502")]
                .into_iter()
                .map(|(n, a)| (NodeName::new(n).unwrap(), a.parse().unwrap()))
                .collect(),
            teams: teams
                .iter()
                .map(|(t, n)| (TeamName::new(*t).unwrap(), NodeName::new(n).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn node_names_follow_their_rules() {
        for good in ["n1", "node_a", "east-1", "N"] {
            assert!(NodeName::new(good).is_ok(), "{good}");
        }
        let long = "n".repeat(MAX_NODE_NAME_LEN + 1);
        for bad in ["", "-n", "a b", "n.1", "n/1", long.as_str()] {
            let error = NodeName::new(bad).unwrap_err().to_string();
            assert!(error.contains("not a valid node name"), "{bad}: {error}");
        }
    }

    #[test]
    fn equal_placements_have_equal_digests_and_any_change_shows() {
        let a = placement(&[("alpha", "n1"), ("beta", "n2")]);
        let b = placement(&[("beta", "n2"), ("alpha", "n1")]);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.first_difference(&b), None);
        assert_eq!(a.digest().len(), 64);

        let moved = placement(&[("alpha", "n2"), ("beta", "n2")]);
        assert_ne!(a.digest(), moved.digest());
        assert_eq!(
            a.first_difference(&moved).unwrap(),
            "here `team alpha n1`, there `team alpha n2`"
        );
        let fewer = placement(&[("alpha", "n1")]);
        assert_eq!(
            a.first_difference(&fewer).unwrap(),
            "here `team beta n2`, there nothing"
        );
        let mut readdressed = a.clone();
        readdressed.nodes.insert(
            NodeName::new("n2").unwrap(),
            "127.0.0.1:9999".parse().unwrap(),
        );
        assert!(
            a.first_difference(&readdressed)
                .unwrap()
                .contains("127.0.0.1:9999")
        );
    }
}
