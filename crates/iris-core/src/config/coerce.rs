//! Deserializers that accept a typed TOML value or a string holding one.
//!
//! Interpolation yields strings, so `max_processes = "${IRIS_MAX_PROCESSES:-10}"` reaches the
//! deserializer as the string `"10"`. These functions coerce such strings after interpolation
//! (the original validated before coercing, so its own template failed to load). Errors carry
//! the offending value; serde_path_to_error adds the key path.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An example shown in duration errors.
const DURATION_EXAMPLE: &str = "write a number with a unit, such as \"20s\", \"2m\" or \"1h\"";

/// A whole number ≥ `min` (0 or 1), from an integer or a string of digits. `min` is only for
/// the message about a negative number, which names the real lower bound.
struct Whole {
    min: u64,
}

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number such as 10 (or a string holding one, such as \"10\")")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| {
            E::custom(format!(
                "{v} is negative; write a whole number ≥ {}",
                self.min
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let text = v.trim();
        if let Ok(negative) = text.parse::<i64>() {
            return self.visit_i64(negative);
        }
        text.parse::<u64>().map_err(|_| {
            E::custom(format!(
                "{} is not a whole number; write digits only, such as \"10\"",
                crate::redact::quoted(v)
            ))
        })
    }
}

/// A whole number ≥ 0.
pub(crate) fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole { min: 0 })
}

/// A whole number ≥ 1 that fits in `usize`.
pub(crate) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroUsize, D::Error> {
    let n = d.deserialize_any(Whole { min: 1 })?;
    let n = usize::try_from(n)
        .map_err(|_| de::Error::custom(format!("{n} is too large for this machine")))?;
    NonZeroUsize::new(n).ok_or_else(|| de::Error::custom("0 is not allowed; it must be at least 1"))
}

/// An optional TCP port, 1 to 65535.
pub(crate) fn opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = d.deserialize_any(Whole { min: 1 })?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(de::Error::custom(format!(
            "{n} is not a port number; use 1 to 65535 (or leave the key out for the default, 22)"
        ))),
    }
}

/// An optional whole number ≥ 1 (the key's absence is `None`).
pub(crate) fn opt_positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match d.deserialize_any(Whole { min: 1 })? {
        0 => Err(de::Error::custom("0 is not allowed; it must be at least 1")),
        n => Ok(Some(n)),
    }
}

/// An amount of money above 0, from a number or a string holding one.
struct Money;

impl Visitor<'_> for Money {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount above 0 such as 12.50 (or a string holding one, such as \"12.50\")")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(E::custom(format!(
                "{v} is not an amount above 0; write one such as 12.50"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v.trim().parse::<f64>() {
            Ok(n) => self.visit_f64(n),
            Err(_) => Err(E::custom(format!(
                "{} is not an amount; write one such as \"12.50\"",
                crate::redact::quoted(v)
            ))),
        }
    }
}

/// An optional amount of money above 0 (the key's absence is `None`).
pub(crate) fn opt_money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(Money).map(Some)
}

/// A boolean, from `true`/`false` or a string holding one.
struct Bool;

impl Visitor<'_> for Bool {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false (or a string holding one, such as \"false\")")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let t = v.trim();
        if t.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if t.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(E::custom(format!(
                "{} is not a boolean; write true or false",
                crate::redact::quoted(v)
            )))
        }
    }
}

/// A boolean.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(Bool)
}

/// A strictly positive duration written the humantime way (`"20s"`, `"2m"`, `"1h 30m"`).
struct Humantime;

impl Humantime {
    fn bare_number<E: de::Error>(shown: &str) -> E {
        E::custom(format!(
            "the bare number {shown} is not a duration: durations need a unit; write e.g. \"{shown}ms\" or \"{shown}s\""
        ))
    }
}

impl Visitor<'_> for Humantime {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"20s\", \"2m\" or \"1h\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(Self::bare_number(&v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(Self::bare_number(&v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(Self::bare_number(&v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        let parsed = humantime::parse_duration(v.trim()).map_err(|e| {
            E::custom(format!(
                "{} is not a duration ({e}); {DURATION_EXAMPLE}",
                crate::redact::quoted(v)
            ))
        })?;
        if parsed.is_zero() {
            return Err(E::custom(format!(
                "{} is zero; durations must be greater than zero, e.g. \"20s\"",
                crate::redact::quoted(v)
            )));
        }
        Ok(parsed)
    }
}

/// A strictly positive duration.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(Humantime)
}

/// An optional strictly positive duration (use with `#[serde(default)]`).
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(Humantime).map(Some)
}

/// Whether `v` switches a limit off: `"off"` (any case), or empty so that `"${VAR:-}"` can.
fn is_off(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v.eq_ignore_ascii_case("off")
}

/// A limit that may be switched off: a strictly positive duration, or `"off"` (or `""`) for
/// none.
struct DurationOrOff;

impl Visitor<'_> for DurationOrOff {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"20s\", \"2m\" or \"1h\", or \"off\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Humantime.visit_i64(v).map(Some)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Humantime.visit_u64(v).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Humantime.visit_f64(v).map(Some)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if is_off(v) {
            return Ok(None);
        }
        Humantime.visit_str(v).map(Some).map_err(|_: E| {
            E::custom(format!(
                "{} is not a duration; {DURATION_EXAMPLE}, or \"off\" for no limit",
                crate::redact::quoted(v)
            ))
        })
    }
}

/// A limit that may be switched off (`"off"` or `""` is `None`).
pub(crate) fn opt_duration_or_off<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(DurationOrOff)
}

/// A team's override of a limit that may be switched off (use with `#[serde(default)]`: an
/// absent key is `None`, `"off"` is `Some(None)`).
pub(crate) fn opt_override_duration_or_off<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    d.deserialize_any(DurationOrOff).map(Some)
}

/// A string that is not empty (nor only whitespace).
pub(crate) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom(
            "the value is empty; give a non-empty string (check that any ${VAR} it uses is set)",
        ));
    }
    Ok(s)
}

/// An optional non-empty string (use with `#[serde(default)]`).
pub(crate) fn opt_non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    non_empty(d).map(Some)
}

/// An optional string where the empty string means "not set", so that `"${VAR:-}"` can switch a
/// value off (use with `#[serde(default)]`).
pub(crate) fn opt_string_empty_is_none<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(if s.is_empty() { None } else { Some(s) })
}

/// A table of environment variables: names must be non-empty and contain neither `=` nor NUL.
pub(crate) fn env_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    for (name, value) in &map {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(de::Error::custom(format!(
                "{name:?} is not a valid environment variable name; use letters, digits and '_'"
            )));
        }
        if value.contains('\0') {
            return Err(de::Error::custom(format!(
                "the value of {name:?} contains a NUL character, which an environment variable cannot hold; remove it"
            )));
        }
    }
    Ok(map)
}
