//! Resolving each team's agent command: an absolute path, the config dir, PATH, next to the
//! current executable, then the built-in demo agent.
