//! `${VAR}` and `${VAR:-default}` interpolation of configuration strings.
//!
//! The rules:
//!
//! - `${NAME}` is replaced by the variable's value; an unset variable is an error.
//! - `${NAME:-default}` is replaced by the variable's value, or by `default` when it is unset. A
//!   variable that is set wins even when it is empty. The default is taken literally, up to the
//!   first `}`.
//! - NAME is any non-empty run of characters other than `}` and `:`.
//! - `$$` is a literal `$`. A `$` followed by anything other than `$` or `{` is kept as it is.
//! - Several references in one string are expanded independently, left to right (the original's
//!   greedy pattern mis-parsed `${A:-x}/${B:-y}`).
//!
//! The environment is a function, so tests never touch the process environment.

use crate::config::key_path::{self, Segment};
use crate::error::{Coded, ErrorCode};

/// Looks up an environment variable: `Some(value)` when set (possibly empty), `None` when unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a string could not be interpolated. Messages say how to fix the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InterpolationError {
    /// `${NAME}` names a variable that is not set and gives no default.
    #[error(
        "environment variable `{var}` is required but not set; set it or write ${{{var}:-default}}"
    )]
    MissingVar {
        /// The variable's name.
        var: String,
    },
    /// A `${` is never closed by `}`.
    #[error(
        "`${{` at byte {offset} is never closed; end the reference with `}}`, or write `$${{` for a literal `${{`"
    )]
    Unterminated {
        /// Byte offset of the `$` in the string.
        offset: usize,
    },
    /// `${}` or `${:-default}`: the variable name is empty.
    #[error(
        "`${{` at byte {offset} has an empty variable name; write ${{NAME}} or ${{NAME:-default}}, or `$${{` for a literal `${{`"
    )]
    EmptyName {
        /// Byte offset of the `$` in the string.
        offset: usize,
    },
    /// `${NAME:...}` where `:` is not followed by `-`.
    #[error(
        "`${{{var}:` at byte {offset} is not followed by `-`; only ${{{var}}} and ${{{var}:-default}} are supported"
    )]
    BadModifier {
        /// The variable's name.
        var: String,
        /// Byte offset of the `$` in the string.
        offset: usize,
    },
}

impl Coded for InterpolationError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ConfigError
    }
}

/// Expands every `${…}` reference and `$$` escape in `input`, looking variables up with `env`.
pub fn interpolate(input: &str, env: Env<'_>) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        let offset = input.len() - rest.len() + pos;
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let (value, tail) = reference(body, offset, env)?;
            out.push_str(&value);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands one reference; `body` is what follows `${`. Returns the value and the text after `}`.
fn reference<'s>(
    body: &'s str,
    offset: usize,
    env: Env<'_>,
) -> Result<(String, &'s str), InterpolationError> {
    let end = body
        .find(['}', ':'])
        .ok_or(InterpolationError::Unterminated { offset })?;
    let name = &body[..end];
    if name.is_empty() {
        return Err(InterpolationError::EmptyName { offset });
    }
    let after_name = &body[end..];
    if let Some(tail) = after_name.strip_prefix('}') {
        let value = env(name).ok_or_else(|| InterpolationError::MissingVar {
            var: name.to_owned(),
        })?;
        return Ok((value, tail));
    }
    // `after_name` starts with `:`.
    let modifier = &after_name[1..];
    let Some(default_and_rest) = modifier.strip_prefix('-') else {
        return Err(InterpolationError::BadModifier {
            var: name.to_owned(),
            offset,
        });
    };
    let close = default_and_rest
        .find('}')
        .ok_or(InterpolationError::Unterminated { offset })?;
    let default = &default_and_rest[..close];
    let value = env(name).unwrap_or_else(|| default.to_owned());
    Ok((value, &default_and_rest[close + 1..]))
}

/// An interpolation error together with the key path of the string it occurred in.
#[derive(Debug)]
pub(crate) struct Located {
    /// Where the string is, e.g. `settings.max_processes`.
    pub(crate) key_path: String,
    /// What went wrong.
    pub(crate) error: InterpolationError,
}

/// A string value that took something from the environment: where it is, and how it was
/// written (`"${DATABASE_URL}"`), so that what shows the configuration can hide its value.
#[derive(Debug, Clone)]
pub(crate) struct FromEnv {
    /// Where the string is, as written in the file.
    pub(crate) path: Vec<Segment>,
    /// The string as written, before interpolation.
    pub(crate) written: String,
}

/// Interpolates every string value in `table`, walking nested tables and arrays. Keys are left
/// alone, and so are numbers, booleans and dates. Returns the strings that held a `${…}`
/// reference.
pub(crate) fn interpolate_table(
    table: &mut toml::Table,
    env: Env<'_>,
) -> Result<Vec<FromEnv>, Located> {
    let mut path = Vec::new();
    let mut from_env = Vec::new();
    walk_table(table, env, &mut path, &mut from_env)?;
    Ok(from_env)
}

fn walk_table(
    table: &mut toml::Table,
    env: Env<'_>,
    path: &mut Vec<Segment>,
    from_env: &mut Vec<FromEnv>,
) -> Result<(), Located> {
    for (key, value) in table.iter_mut() {
        path.push(Segment::Key(key.clone()));
        walk_value(value, env, path, from_env)?;
        path.pop();
    }
    Ok(())
}

fn walk_value(
    value: &mut toml::Value,
    env: Env<'_>,
    path: &mut Vec<Segment>,
    from_env: &mut Vec<FromEnv>,
) -> Result<(), Located> {
    match value {
        toml::Value::String(s) => {
            if s.contains('$') {
                let expanded = interpolate(s, env).map_err(|error| Located {
                    key_path: key_path::render(path.iter()),
                    error,
                })?;
                if has_reference(s) {
                    from_env.push(FromEnv {
                        path: path.clone(),
                        written: std::mem::take(s),
                    });
                }
                *s = expanded;
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(Segment::Index(index));
                walk_value(item, env, path, from_env)?;
                path.pop();
            }
        }
        toml::Value::Table(table) => walk_table(table, env, path, from_env)?,
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
    Ok(())
}

/// Whether `text` holds a `${…}` reference (a `$$` escape is not one).
fn has_reference(text: &str) -> bool {
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if after.starts_with('{') {
            return true;
        } else {
            rest = after;
        }
    }
    false
}

/// Doubles every `$` in every string value of `table`, so that interpolating it gives the
/// strings back unchanged.
pub(crate) fn escape_table(table: &mut toml::Table) {
    for (_, value) in table.iter_mut() {
        escape_value(value);
    }
}

fn escape_value(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => {
            if s.contains('$') {
                *s = s.replace('$', "$$");
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(escape_value),
        toml::Value::Table(table) => escape_table(table),
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
}
