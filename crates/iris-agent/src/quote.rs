//! POSIX quoting (being written).
