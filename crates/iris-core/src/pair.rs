//! The ordered pair of teams that identifies a conversation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::team::TeamName;

/// A directional pair of teams: `from` talks to `to`. `A->B` and `B->A` are different pairs, and
/// a self-pair `A->A` is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    /// The team that sends.
    pub from: TeamName,
    /// The team whose agent answers.
    pub to: TeamName,
}

impl Pair {
    /// The pair `from -> to`.
    pub fn new(from: TeamName, to: TeamName) -> Self {
        Pair { from, to }
    }

    /// The same teams in the other direction.
    pub fn reversed(&self) -> Self {
        Pair::new(self.to.clone(), self.from.clone())
    }
}

impl fmt::Display for Pair {
    /// The original's pool key form, `from->to`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_directional_and_display_as_the_pool_key() {
        let a = TeamName::new("alpha").unwrap();
        let b = TeamName::new("beta").unwrap();
        let ab = Pair::new(a.clone(), b.clone());
        assert_ne!(ab, ab.reversed());
        assert_eq!(ab.to_string(), "alpha->beta");
        assert_eq!(Pair::new(a.clone(), a).to_string(), "alpha->alpha");
    }
}
