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
//! ignored by [`read_live`] (and overwritten by the next node). A running node puts its file
//! back if it disappears ([`crate::node`]).
//!
//! **Trust.** Whoever controls this file receives every command the CLI sends, and the CLI
//! prints their answers. So [`read`] accepts it only when all of these hold, and otherwise
//! refuses it with `NODE_UNAVAILABLE`, saying which check failed and what to do:
//!
//! - it is a regular file (not a symbolic link, FIFO or device), opened non-blocking, of at
//!   most [`MAX_FILE_LEN`] bytes (read with that cap);
//! - it is owned by the user running the command, and not writable by group or others;
//! - its directory is owned by that user (or root) and not writable by group or others, unless
//!   it is sticky (like `/tmp`: others may add files there, but not replace ours);
//!
//! and [`read_live`] adds: the process it names runs as the same user. A node checks its
//! database's directory the same way before it writes the file ([`check_directory`]), so it
//! never advertises itself where its clients would refuse to look.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use iris_api::ApiError;
use iris_api::error::{INTERNAL_ERROR, NODE_UNAVAILABLE};

/// The suffix appended to the database's file name.
pub const SUFFIX: &str = ".node";

/// The largest endpoint file [`read`] accepts: a real one is about 150 bytes.
pub const MAX_FILE_LEN: u64 = 4096;

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
    write_private(path_for(db_path), "endpoint file", endpoint).await
}

/// Writes `value` as JSON to `path`, atomically and with mode 0600 (`what` names the file in
/// errors).
async fn write_private(
    path: PathBuf,
    what: &str,
    value: &impl Serialize,
) -> Result<PathBuf, ApiError> {
    let failed = |step: &str, e: std::io::Error| {
        ApiError::new(
            INTERNAL_ERROR,
            format!(
                "could not write the node's {what} {}: {step}: {e}; check that its directory is writable",
                path.display()
            ),
        )
    };
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| ApiError::new(INTERNAL_ERROR, format!("could not encode the {what}: {e}")))?;
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

/// What a node keeps between its runs on one database, so that a client holding its URL (the
/// dashboard, with the token in its fragment) still reaches it after a restart: its token and
/// the port it listened on. `<database>.identity`, mode 0600, kept when the node stops; remove
/// it to give the next node a new token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The access token.
    pub token: String,
    /// The port the node listened on.
    pub port: u16,
}

// By hand, so the token never reaches a log line.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("token", &"<redacted>")
            .field("port", &self.port)
            .finish()
    }
}

/// The suffix of a node's identity file.
pub const IDENTITY_SUFFIX: &str = ".identity";

/// The identity file of the database at `db_path`.
pub fn identity_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(IDENTITY_SUFFIX);
    PathBuf::from(name)
}

/// The identity an earlier node on this database kept, if it is there and to be trusted: a
/// regular file of this user's that no one else can read or write, holding a well-formed
/// token. Anything else is logged and ignored (the node then makes a new identity).
pub async fn read_identity(db_path: &Path) -> Option<Identity> {
    let path = identity_path(db_path);
    let read = tokio::task::spawn_blocking(move || read_identity_file(&path)).await;
    match read {
        Ok(Ok(identity)) => identity,
        Ok(Err(why)) => {
            tracing::warn!(file = %identity_path(db_path).display(), %why, "the node's identity file is not used; a new token is made (and the file rewritten)");
            None
        }
        Err(_) => None,
    }
}

fn read_identity_file(path: &Path) -> Result<Option<Identity>, String> {
    let mut file = match open_no_follow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    check_file(path, &metadata).map_err(|e| e.to_string())?;
    if metadata.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode {:04o} lets other users read it; it holds a token",
            metadata.mode() & 0o7777
        ));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let identity: Identity = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let well_formed =
        identity.token.len() == 64 && identity.token.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err("its token is not 64 hex digits".to_owned());
    }
    Ok(Some(identity))
}

/// Keeps `identity` for the next node on the database at `db_path`.
pub async fn write_identity(db_path: &Path, identity: &Identity) -> Result<PathBuf, ApiError> {
    write_private(identity_path(db_path), "identity file", identity).await
}

/// Reads the endpoint file of the database at `db_path`. `Ok(None)` if there is none; an error
/// if it exists but is not to be trusted (see the module documentation), cannot be read or
/// cannot be parsed (it names the file, why, and what to do).
pub async fn read(db_path: &Path) -> Result<Option<Endpoint>, ApiError> {
    let path = path_for(db_path);
    // Opening, fstat and a 4 KiB read: blocking calls, even if short ones.
    tokio::task::spawn_blocking(move || read_trusted(&path))
        .await
        .map_err(|e| {
            ApiError::new(
                INTERNAL_ERROR,
                format!("the task reading the node endpoint file failed: {e}"),
            )
        })?
}

/// [`read`], blocking, on the endpoint file at `path`.
fn read_trusted(path: &Path) -> Result<Option<Endpoint>, ApiError> {
    let unusable = |why: String| {
        ApiError::new(
            NODE_UNAVAILABLE,
            format!(
                "the node endpoint file {} is unusable ({why}); if no `iris node` runs on this database, remove the file",
                path.display()
            ),
        )
    };
    let mut file = match open_no_follow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(untrusted(
                path,
                "it is a symbolic link, and the endpoint file must be a regular file".to_owned(),
            ));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(unusable(format!(
                "{e}: only the user who runs the node can drive it"
            )));
        }
        Err(e) => return Err(unusable(e.to_string())),
    };
    let metadata = file.metadata().map_err(|e| unusable(e.to_string()))?;
    check_file(path, &metadata)?;
    check_directory_of(path)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unusable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(unusable(format!(
            "it is longer than {MAX_FILE_LEN} bytes, far more than an endpoint"
        )));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        unusable(format!(
            "not an endpoint: {}",
            iris_core::redact::clip(&e.to_string())
        ))
    })
}

/// Opens `path` for reading: non-blocking, so a FIFO planted under the name cannot hang the
/// open, and not through a symbolic link (it could point anywhere; that fails with `ELOOP`).
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
}

/// The user this process runs as (its effective uid), which must own the endpoint file, its
/// directory and the node.
fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Refuses an endpoint file that is not to be trusted, saying why.
fn untrusted(path: &Path, why: String) -> ApiError {
    ApiError::new(
        NODE_UNAVAILABLE,
        format!(
            "refusing the node endpoint file {}: {why}. Whoever controls this file would receive every command iris sends to the node. If you did not make it so, someone else may have planted it: remove it, keep the database in a directory only you can write (`chmod go-w` on it), and start `iris node` again",
            path.display()
        ),
    )
}

/// The checks on the endpoint file itself (see the module documentation).
fn check_file(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ApiError> {
    if !metadata.is_file() {
        return Err(untrusted(
            path,
            format!(
                "it is {}, not a regular file",
                iris_core::config::describe_file_kind(metadata)
            ),
        ));
    }
    let me = current_uid();
    if metadata.uid() != me {
        return Err(untrusted(
            path,
            format!(
                "it is owned by uid {}, not by you (uid {me})",
                metadata.uid()
            ),
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(untrusted(
            path,
            format!(
                "its mode {:04o} lets other users write it (a node writes it with mode 0600)",
                metadata.mode() & 0o7777
            ),
        ));
    }
    if metadata.len() > MAX_FILE_LEN {
        return Err(untrusted(
            path,
            format!(
                "it is {} bytes long, far more than an endpoint ({MAX_FILE_LEN} bytes at most)",
                metadata.len()
            ),
        ));
    }
    Ok(())
}

/// The checks on the directory of the endpoint file at `path`.
fn check_directory_of(path: &Path) -> Result<(), ApiError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let metadata = std::fs::metadata(&dir).map_err(|e| {
        untrusted(
            path,
            format!("its directory {} cannot be examined: {e}", dir.display()),
        )
    })?;
    directory_problem(&dir, &metadata).map_or(Ok(()), |why| Err(untrusted(path, why)))
}

/// Why a directory is no place for an endpoint file, if it is not.
fn directory_problem(dir: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    let me = current_uid();
    let owner = metadata.uid();
    if owner != me && owner != 0 {
        return Some(format!(
            "its directory {} is owned by uid {owner}, neither you (uid {me}) nor root, so its owner could replace the file",
            dir.display()
        ));
    }
    let sticky = metadata.mode() & 0o1000 != 0;
    if metadata.mode() & 0o022 != 0 && !sticky {
        return Some(format!(
            "its directory {} (mode {:04o}) is writable by other users, who could replace the file",
            dir.display(),
            metadata.mode() & 0o7777
        ));
    }
    None
}

/// Checks, before a node writes its endpoint file next to the database at `db_path`, that its
/// clients will trust the directory: an error (`CONFIG_ERROR`) saying what to change otherwise.
pub fn check_directory(db_path: &Path) -> Result<(), ApiError> {
    let path = path_for(db_path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let metadata = std::fs::metadata(&dir).map_err(|e| {
        ApiError::new(
            iris_core::ErrorCode::ConfigError,
            format!(
                "cannot examine the database's directory {}: {e}",
                dir.display()
            ),
        )
    })?;
    match directory_problem(&dir, &metadata) {
        None => Ok(()),
        Some(why) => Err(ApiError::new(
            iris_core::ErrorCode::ConfigError,
            format!(
                "the node would advertise itself in {}, but {why}; iris commands refuse an endpoint file there. Keep the database in a directory only you can write (`chmod go-w {}`), or move it (`[database] path`)",
                path.display(),
                dir.display()
            ),
        )),
    }
}

/// The endpoint in the database's endpoint file, if there is one and its node still runs.
///
/// A file whose process is gone, is a zombie, or is another process that reused the pid (its
/// start time differs from the recorded one) is *stale* and gives `Ok(None)`. A file without a
/// start time falls back to a looser check: the process's command line must contain `node`.
/// A live process that runs as another user is refused (an error): a node is always its
/// user's own.
pub async fn read_live(db_path: &Path) -> Result<Option<Endpoint>, ApiError> {
    let Some(endpoint) = read(db_path).await? else {
        return Ok(None);
    };
    let (pid, start_ticks) = (endpoint.pid, endpoint.start_ticks);
    // `/proc` reads are blocking file reads (of an in-memory filesystem).
    let checked =
        tokio::task::spawn_blocking(move || is_live(pid, start_ticks).then(|| process_uid(pid)))
            .await
            .unwrap_or(None);
    let path = path_for(db_path);
    match checked {
        None => {
            tracing::debug!(pid, file = %path.display(), "ignoring a stale node endpoint file");
            Ok(None)
        }
        Some(Some(uid)) if uid == current_uid() => Ok(Some(endpoint)),
        Some(Some(uid)) => Err(untrusted(
            &path,
            format!(
                "the process it names (pid {pid}) runs as uid {uid}, not as you (uid {})",
                current_uid()
            ),
        )),
        Some(None) => Err(untrusted(
            &path,
            format!("the user of the process it names (pid {pid}) cannot be read from /proc"),
        )),
    }
}

/// The effective uid of process `pid`, from `/proc/<pid>/status`.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
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
    async fn an_identity_is_kept_privately_and_only_a_private_well_formed_one_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        assert_eq!(read_identity(&db).await, None);
        let identity = Identity {
            token: new_token().unwrap(),
            port: 7419,
        };
        let path = write_identity(&db, &identity).await.unwrap();
        assert_eq!(path, identity_path(&db));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_identity(&db).await, Some(identity.clone()));
        assert!(!format!("{identity:?}").contains(&identity.token));
        // Readable by others: not used.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_identity(&db).await, None);
        // A token that is not one: not used.
        let forged = Identity {
            token: "short".into(),
            port: 1,
        };
        std::fs::remove_file(&path).unwrap();
        write_identity(&db, &forged).await.unwrap();
        assert_eq!(read_identity(&db).await, None);
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

    fn error_of(result: Result<Option<Endpoint>, ApiError>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code(), NODE_UNAVAILABLE, "{error}");
        error.to_string()
    }

    #[tokio::test]
    async fn a_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        let path = write(&db, &endpoint).await.unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("refusing"), "{text}");
        assert!(text.contains("0666"), "{text}");
        assert!(text.contains("planted"), "{text}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_live(&db).await.unwrap(), Some(endpoint));
    }

    #[tokio::test]
    async fn a_directory_others_can_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        write(&db, &endpoint).await.unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("writable by other users"), "{text}");
        let refused = check_directory(&db).unwrap_err();
        assert_eq!(refused.code().as_str(), "CONFIG_ERROR");
        assert!(refused.to_string().contains("chmod go-w"), "{refused}");
        // Sticky, like /tmp: others may add files, not replace ours.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(read_live(&db).await.unwrap(), Some(endpoint));
        check_directory(&db).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[tokio::test]
    async fn a_file_owned_by_another_user_is_refused() {
        if current_uid() != 0 {
            // Only root can give a file away; the other checks run for everyone.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        let path = write(&db, &endpoint).await.unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("owned by uid 65534"), "{text}");
        // The same for its directory.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("directory"), "{text}");
        assert!(text.contains("uid 65534"), "{text}");
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
    }

    #[tokio::test]
    async fn a_node_of_another_user_is_refused() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        // A live process of another user: a child run as `nobody` when we are root, else init.
        let mut child = None;
        let pid = if current_uid() == 0 {
            let spawned = std::process::Command::new("sleep")
                .arg("60")
                .uid(65534)
                .spawn()
                .unwrap();
            let pid = spawned.id();
            child = Some(spawned);
            pid
        } else {
            1
        };
        let start_ticks = iris_agent::procfs::stat(pid).map(|s| s.start_ticks);
        assert!(start_ticks.is_some(), "process {pid} is visible");
        let planted = Endpoint {
            addr: "127.0.0.1:4000".parse().unwrap(),
            pid,
            token: new_token().unwrap(),
            start_ticks,
        };
        write(&db, &planted).await.unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains(&format!("pid {pid}")), "{text}");
        assert!(text.contains("not as you"), "{text}");
        if let Some(mut child) = child {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[tokio::test]
    async fn fifos_symlinks_and_huge_files_are_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let path = path_for(&db);
        // A FIFO nobody writes to: a blocking open would wait forever.
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let text = error_of(read_live(&db).await);
        assert!(text.contains("FIFO"), "{text}");
        std::fs::remove_file(&path).unwrap();

        let target = dir.path().join("elsewhere");
        let endpoint = Endpoint::for_this_process("127.0.0.1:4000".parse().unwrap()).unwrap();
        std::fs::write(&target, serde_json::to_vec(&endpoint).unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("symbolic link"), "{text}");
        std::fs::remove_file(&path).unwrap();

        std::fs::write(&path, vec![b' '; 10_000]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = error_of(read_live(&db).await);
        assert!(text.contains("bytes"), "{text}");
    }

    #[tokio::test]
    async fn no_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_live(&db(&dir)).await.unwrap(), None);
    }
}
