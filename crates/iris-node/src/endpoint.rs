//! The endpoint file a node writes next to its database: address, pid and access token, mode
//! 0600, so only a user who can read it can drive the node.
//!
//! **Where.** The database's path with `.node` appended: `data/iris.redb` → `data/iris.redb.node`
//! ([`path_for`]). One database has at most one node (it holds the store's lock), so one file per
//! database is enough, and putting it beside the database means every command that finds the
//! database through the configuration finds the node too.
//!
//! **What.** `{"addr":"127.0.0.1:41234","pid":4242,"token":"…","start_ticks":123456}`. The
//! token is 32 bytes from the operating system's CSPRNG, hex-encoded. `start_ticks` is the node
//! process's start time (`/proc/<pid>/stat`, field 22): with the pid it names one process for
//! the life of the machine, so a file left by a killed node is not mistaken for a live one after
//! its pid was reused.
//!
//! **How.** Written to a private temporary file in the same directory and renamed over the
//! final name, so a reader sees the old file, the new one, or none, never a half-written one.
//! Removed by the node on a graceful shutdown; a file left by a killed node is *stale* and is
//! ignored by [`read_live`] (and overwritten by the next node).

use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::api::ApiError;
use crate::error::{INTERNAL_ERROR, NODE_UNAVAILABLE};

/// The suffix appended to the database's file name.
pub const SUFFIX: &str = ".node";

/// The largest endpoint file [`read`] accepts: a real one is about 150 bytes.
const MAX_FILE_LEN: u64 = 4096;

/// How to reach a running node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// The bearer token every request must carry.
    pub token: String,
    /// The node process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// when known: tells the node from a later process that reused its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

// By hand, so the token never reaches a log line or an error message through `{:?}`.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("pid", &self.pid)
            .field("token", &"<redacted>")
            .field("start_ticks", &self.start_ticks)
            .finish()
    }
}

impl Endpoint {
    /// The endpoint of this process listening on `addr`, with a fresh token.
    pub fn for_this_process(addr: SocketAddr) -> Result<Endpoint, ApiError> {
        let pid = std::process::id();
        Ok(Endpoint {
            addr,
            pid,
            token: new_token()?,
            start_ticks: iris_agent::procfs::stat(pid).map(|s| s.start_ticks),
        })
    }

    /// The base URL of the node's HTTP server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The endpoint file of the database at `db_path`: the same path with [`SUFFIX`] appended.
pub fn path_for(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// A fresh access token: 32 bytes from the operating system's random source, as 64 hex digits.
pub fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            INTERNAL_ERROR,
            format!("could not read random bytes from the operating system for the node's access token: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths: comparing a
/// presented token must not reveal how long a prefix of it was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Writes `endpoint` to the endpoint file of the database at `db_path`, atomically and with
/// mode 0600. Returns the file's path.
pub async fn write(db_path: &Path, endpoint: &Endpoint) -> Result<PathBuf, ApiError> {
    let path = path_for(db_path);
    let failed = |what: &str, e: std::io::Error| {
        ApiError::new(
            INTERNAL_ERROR,
            format!(
                "could not write the node's endpoint file {}: {what}: {e}; check that its directory is writable",
                path.display()
            ),
        )
    };
    let text = serde_json::to_vec_pretty(endpoint).map_err(|e| {
        ApiError::new(
            INTERNAL_ERROR,
            format!("could not encode the endpoint: {e}"),
        )
    })?;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = PathBuf::from(temp_name);
    // A temp file left by an earlier run of this pid would make `create_new` fail.
    let _ = tokio::fs::remove_file(&temp).await;
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            // Private from its first byte: the token must never be readable by others.
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(|e| failed("creating a temporary file", e))?;
        file.write_all(&text)
            .await
            .map_err(|e| failed("writing", e))?;
        file.sync_all().await.map_err(|e| failed("syncing", e))?;
        drop(file);
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(|e| failed("renaming the temporary file into place", e))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result.map(|()| path)
}

/// Reads the endpoint file of the database at `db_path`. `Ok(None)` if there is none; an error
/// if it exists but cannot be read or parsed (it names the file and what to do).
pub async fn read(db_path: &Path) -> Result<Option<Endpoint>, ApiError> {
    let path = path_for(db_path);
    let unusable = |why: String| {
        ApiError::new(
            NODE_UNAVAILABLE,
            format!(
                "the node endpoint file {} is unusable ({why}); if no `iris node` runs on this database, remove the file",
                path.display()
            ),
        )
    };
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unusable(e.to_string())),
    };
    if metadata.len() > MAX_FILE_LEN {
        return Err(unusable(format!("{} bytes is too long", metadata.len())));
    }
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        // Removed between the two calls: a node stopped just now.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(unusable(format!(
                "{e}: only the user who runs the node can drive it"
            )));
        }
        Err(e) => return Err(unusable(e.to_string())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| unusable(format!("not an endpoint: {e}")))
}

/// The endpoint in the database's endpoint file, if there is one and its node still runs.
///
/// A file whose process is gone, is a zombie, or is another process that reused the pid (its
/// start time differs from the recorded one) is *stale* and gives `Ok(None)`. A file without a
/// start time falls back to a looser check: the process's command line must contain `node`.
pub async fn read_live(db_path: &Path) -> Result<Option<Endpoint>, ApiError> {
    let Some(endpoint) = read(db_path).await? else {
        return Ok(None);
    };
    let (pid, start_ticks) = (endpoint.pid, endpoint.start_ticks);
    // `/proc` reads are blocking file reads (of an in-memory filesystem).
    let live = tokio::task::spawn_blocking(move || is_live(pid, start_ticks))
        .await
        .unwrap_or(false);
    if !live {
        tracing::debug!(pid, file = %path_for(db_path).display(), "ignoring a stale node endpoint file");
    }
    Ok(live.then_some(endpoint))
}

/// Whether `pid` is a running process that is the node that wrote the file.
fn is_live(pid: u32, start_ticks: Option<u64>) -> bool {
    if pid == 0 {
        return false;
    }
    let Some(stat) = iris_agent::procfs::stat(pid) else {
        return false;
    };
    if !stat.is_alive() {
        return false;
    }
    match start_ticks {
        Some(ticks) => stat.start_ticks == ticks,
        None => iris_agent::procfs::cmdline(pid).is_some_and(|args| looks_like_a_node(&args)),
    }
}

/// Whether a command line is `iris … node …`: the program is named `iris` and one argument is
/// `node`.
fn looks_like_a_node(args: &[String]) -> bool {
    let program = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    program == Some("iris") && args.iter().skip(1).any(|a| a == "node")
}

/// Removes the endpoint file of the database at `db_path` if it still holds `endpoint`'s token
/// (a file written by some other node is left alone). Missing is fine.
pub async fn remove(db_path: &Path, endpoint: &Endpoint) -> Result<(), ApiError> {
    match read(db_path).await {
        Ok(Some(found)) if constant_time_eq(found.token.as_bytes(), endpoint.token.as_bytes()) => {}
        Ok(_) => return Ok(()),
        // Unreadable or garbled: it is ours to clean up all the same (we hold the database).
        Err(_) => {}
    }
    remove_any(db_path).await
}

/// Removes the endpoint file of the database at `db_path`, whatever it holds. Only for a
/// process that holds the database's lock: then no node can be using the file.
pub async fn remove_any(db_path: &Path) -> Result<(), ApiError> {
    let path = path_for(db_path);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ApiError::new(
            INTERNAL_ERROR,
            format!(
                "could not remove the node endpoint file {}: {e}",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("iris.redb")
    }

    #[test]
    fn the_file_sits_next_to_the_database() {
        assert_eq!(
            path_for(Path::new("/srv/iris/data/iris.redb")),
            PathBuf::from("/srv/iris/data/iris.redb.node")
        );
    }

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let endpoint = Endpoint::for_this_process("127.0.0.1:1".parse().unwrap()).unwrap();
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains(&endpoint.token), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[tokio::test]
    async fn written_privately_read_back_live_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        assert!(
            endpoint.start_ticks.is_some(),
            "this process's start time is readable"
        );
        let path = write(&db, &endpoint).await.unwrap();
        assert_eq!(path, path_for(&db));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("iris.redb.node")]);

        assert_eq!(read(&db).await.unwrap(), Some(endpoint.clone()));
        assert_eq!(read_live(&db).await.unwrap(), Some(endpoint.clone()));

        remove(&db, &endpoint).await.unwrap();
        assert!(!path.exists());
        assert_eq!(read_live(&db).await.unwrap(), None);
        remove(&db, &endpoint).await.unwrap();
    }

    #[tokio::test]
    async fn rewriting_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let first = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        let second = Endpoint::for_this_process("127.0.0.1:4001".parse().unwrap()).unwrap();
        write(&db, &first).await.unwrap();
        write(&db, &second).await.unwrap();
        assert_eq!(read(&db).await.unwrap(), Some(second.clone()));
        // Removing with the replaced endpoint leaves the newer file alone.
        remove(&db, &first).await.unwrap();
        assert_eq!(read(&db).await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn a_dead_pid_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let endpoint = Endpoint {
            addr: "127.0.0.1:4000".parse().unwrap(),
            pid,
            token: new_token().unwrap(),
            start_ticks: None,
        };
        write(&db, &endpoint).await.unwrap();
        assert_eq!(read(&db).await.unwrap(), Some(endpoint));
        assert_eq!(read_live(&db).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_reused_pid_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        // This process is alive, but started at another time than the file says.
        let mut endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        endpoint.start_ticks = endpoint.start_ticks.map(|t| t + 1);
        write(&db, &endpoint).await.unwrap();
        assert_eq!(read_live(&db).await.unwrap(), None);
        // Without a start time, a live process that is not an `iris node` is stale too.
        endpoint.start_ticks = None;
        write(&db, &endpoint).await.unwrap();
        assert_eq!(read_live(&db).await.unwrap(), None);
    }

    #[test]
    fn a_node_command_line_is_recognised() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(looks_like_a_node(&args(&["/usr/bin/iris", "node"])));
        assert!(looks_like_a_node(&args(&[
            "iris",
            "--json",
            "node",
            "--listen",
            "127.0.0.1:0"
        ])));
        assert!(!looks_like_a_node(&args(&["iris", "tell", "a", "b", "hi"])));
        assert!(!looks_like_a_node(&args(&["/usr/bin/node", "server.js"])));
        assert!(!looks_like_a_node(&args(&["sleep", "node"])));
        assert!(!looks_like_a_node(&[]));
    }

    #[tokio::test]
    async fn garbage_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        std::fs::write(path_for(&db), "not json").unwrap();
        let error = read_live(&db).await.unwrap_err();
        assert_eq!(error.code(), NODE_UNAVAILABLE);
        assert!(error.to_string().contains("iris.redb.node"), "{error}");
        assert!(error.to_string().contains("remove the file"), "{error}");
        // The holder of the database may clean it up.
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        remove(&db, &endpoint).await.unwrap();
        assert!(!path_for(&db).exists());
    }

    #[tokio::test]
    async fn no_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_live(&db(&dir)).await.unwrap(), None);
    }
}
