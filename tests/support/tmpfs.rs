//! A real small filesystem to fill up: a tmpfs mounted on a new directory (needs root; without
//! it the test says so and skips), and a ballast file that fills it. Shared by the disk-full
//! tests of the store, the runtime and the node (the crates' tests include it by path).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a new directory; unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (`"2m"`); `None` (with a note) when this process may not mount: not
    /// root, or no mount namespace.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("SKIPPED: cannot run mount: {error}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` with a ballast file, then gives `leave` bytes back, so the
/// database fills the rest by itself; returns the ballast's path (remove it to free the space).
pub fn fill_leaving(dir: &Path, leave: u64) -> PathBuf {
    let ballast = dir.join("ballast");
    let mut file = File::create(&ballast).unwrap();
    let chunk = vec![0xA5u8; 4096];
    let mut written = 0u64;
    loop {
        match file.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            // ENOSPC: full.
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    file.set_len(written.saturating_sub(leave)).unwrap();
    ballast
}
