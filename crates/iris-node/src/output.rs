//! Human output (tables, relative times, spinners) and `--json` output.
