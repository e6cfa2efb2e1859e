//! The two independent state axes of a session: its status and its process state.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Coded, ErrorCode};

/// A string that names no known status or process state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown {kind} {}; expected one of: {expected}",
    crate::redact::quoted(input)
)]
pub struct UnknownStateError {
    /// `"session status"` or `"process state"`.
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

impl Coded for UnknownStateError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

/// Declares a snake_case enum with `ALL`, `as_str`, `Display` and `FromStr`.
///
/// The declaration order is also the storage encoding (postcard writes the variant index), so
/// new variants go at the end.
macro_rules! snake_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case name the original used.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The position of this value in [`Self::ALL`].
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStateError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStateError {
                        kind: $kind,
                        input: s.to_owned(),
                        expected: $expected,
                    }),
                }
            }
        }
    };
}

pub(crate) use snake_enum;

snake_enum! {
    /// The lifecycle status of a session record.
    SessionStatus, "session status",
    "active, idle, compact_pending, compacting, archived, error, migrating" {
        /// In use; the status of a new session.
        #[default]
        Active => "active",
        /// No active process (kept for parity; iris reports processes through [`ProcessState`]).
        Idle => "idle",
        /// Needs compaction.
        CompactPending => "compact_pending",
        /// Compaction is running.
        Compacting => "compacting",
        /// Historical only.
        Archived => "archived",
        /// Failed; requests fail fast until the session is reset or woken.
        Error => "error",
        /// Being moved or upgraded.
        Migrating => "migrating",
    }
}

snake_enum! {
    /// What the session's agent process is doing.
    ProcessState, "process state",
    "stopped, spawning, idle, processing, terminating" {
        /// No process; the state of a new session and of every session after a restart.
        #[default]
        Stopped => "stopped",
        /// The process is starting (spawn and handshake).
        Spawning => "spawning",
        /// The process is ready and has no turn in flight.
        Idle => "idle",
        /// A turn is in flight.
        Processing => "processing",
        /// The process is shutting down.
        Terminating => "terminating",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_string() {
        assert_eq!(SessionStatus::ALL.len(), 7);
        assert_eq!(ProcessState::ALL.len(), 5);
        for s in SessionStatus::ALL {
            assert_eq!(s.to_string().parse::<SessionStatus>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for (i, p) in ProcessState::ALL.iter().enumerate() {
            assert_eq!(p.to_string().parse::<ProcessState>(), Ok(*p));
            assert_eq!(p.index(), i);
        }
    }

    #[test]
    fn originals_strings_are_kept() {
        assert_eq!(SessionStatus::CompactPending.as_str(), "compact_pending");
        assert_eq!(ProcessState::Processing.as_str(), "processing");
    }

    #[test]
    fn unknown_values_list_the_accepted_ones() {
        let e = "busy".parse::<ProcessState>().unwrap_err();
        assert!(e.to_string().contains("stopped, spawning"), "{e}");
        assert!("Active".parse::<SessionStatus>().is_err());
    }
}
