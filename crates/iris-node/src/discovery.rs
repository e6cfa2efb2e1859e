//! Finding the configuration file, and `iris config init`'s starter file.
