//! The `file` target: appends events to a JSON-lines file on the server's disk, with rotation
//! by size.
//!
//! Settings (the object under `"file"` in a target body; every refusal names its field as
//! `$.file.<field>`):
//!
//! | field       | type             | default     | meaning                                          |
//! |-------------|------------------|-------------|--------------------------------------------------|
//! | `path`      | string, required | —           | file under the server's `[targets] file_root`    |
//! | `max_bytes` | integer          | `104857600` | rotate before a write would pass this size; 0 = never |
//! | `max_files` | integer          | `5`         | rotated files kept (`path.1` newest … `path.N`), 1..=1000 |
//!
//! Each event (or its transformation's output, [`Outgoing::to_json`]) is one line of compact
//! JSON. A batch is written with one `write` and made durable with one `fdatasync` before the
//! send succeeds; a file (or directory) the target creates is fsynced along with its directory
//! (a new directory entry needs a directory fsync to survive a power loss).
//!
//! **Where files go.** `path` is relative to the root directory the server's operator
//! configured (`[targets] file_root`, default `<data_dir>/target-files`); absolute paths,
//! `..` components, empty components and NUL bytes are refused when the target is created, so
//! the API cannot write anywhere else on the host. Symbolic links already inside the root are
//! followed: only someone with access to the host can place them.
//!
//! **Rotation.** Before a batch is written, if the file is not empty and the batch would take
//! it past `max_bytes`, `path.(N-1)` is renamed to `path.N` (dropping the oldest), …, `path`
//! to `path.1`, the directory is fsynced and a new `path` begins. A single batch larger than
//! `max_bytes` still goes into one file. Names `path.1` … `path.N` belong to the target: two
//! targets whose paths differ only by such a suffix rotate over each other's files.
//!
//! **Failures.** Write, fsync, open and rename errors (no space, permission denied, a
//! read-only file system) are retryable, with the path in the message: the operator can fix
//! them. A failed write or fsync is undone as far as possible (the file is truncated back to
//! its size before the batch and reopened on the next attempt), so a retried batch does not
//! follow a torn line; a line torn by a crash is ended with a newline when the file is next
//! opened. Delivery is at least once: a batch whose fsync failed may be on disk and is
//! written again.
//!
//! **Concurrency.** Writes to one file are serialized (one lock per file path in the process,
//! shared by every target writing there), so lines of concurrent batches never interleave.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use serde_json::Value;

use super::{BoxFuture, Delivered, Outgoing, SendError, Target, TargetEnv, refuse};
use crate::error::{Error, Result};

/// Default of `max_bytes`: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default of `max_files`.
pub const DEFAULT_MAX_FILES: u32 = 5;
/// Largest `max_files`.
pub const MAX_MAX_FILES: u32 = 1_000;
/// Longest `path`, in bytes.
pub const MAX_PATH_BYTES: usize = 1_024;
/// Longest component of `path`, in bytes (the usual file-name limit).
const MAX_COMPONENT_BYTES: usize = 255;

/// Settings members; anything else is refused.
const FIELDS: &[&str] = &["path", "max_bytes", "max_files"];

/// Validated settings of a `file` target. Built only by [`FileSettings::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
}

impl FileSettings {
    /// Parses and validates the settings object (see the module docs for the fields).
    /// Null-valued optional members count as absent.
    pub fn parse(settings: &Value) -> Result<FileSettings> {
        let obj = super::settings_object("file", settings, FIELDS, "")?;
        let present = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let path = match present("path") {
            None => return Err(refuse("$.file.path", "\"path\" is required")),
            Some(Value::String(s)) => parse_path(s)?,
            Some(_) => return Err(refuse("$.file.path", "\"path\" must be a string")),
        };
        let max_bytes = match present("max_bytes") {
            None => DEFAULT_MAX_BYTES,
            Some(v) => v.as_u64().ok_or_else(|| {
                refuse(
                    "$.file.max_bytes",
                    "\"max_bytes\" must be a non-negative integer (bytes; 0 = never rotate)",
                )
            })?,
        };
        let max_files = match present("max_files") {
            None => DEFAULT_MAX_FILES,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_MAX_FILES)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    refuse(
                        "$.file.max_files",
                        format!("\"max_files\" must be an integer from 1 to {MAX_MAX_FILES}"),
                    )
                })?,
        };
        Ok(FileSettings {
            path,
            max_bytes,
            max_files,
        })
    }

    /// The file, relative to the file root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rotation size in bytes (0 = never).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Rotated files kept.
    pub fn max_files(&self) -> u32 {
        self.max_files
    }
}

/// Checks a target's `path`: relative, every component a plain name, no `..`.
fn parse_path(s: &str) -> Result<PathBuf> {
    const PATH: &str = "$.file.path";
    if s.is_empty() {
        return Err(refuse(PATH, "\"path\" must not be empty"));
    }
    if s.len() > MAX_PATH_BYTES {
        return Err(refuse(
            PATH,
            format!("\"path\" is longer than {MAX_PATH_BYTES} bytes"),
        ));
    }
    if s.contains('\0') {
        return Err(refuse(PATH, "\"path\" must not contain NUL characters"));
    }
    if s.starts_with('/') {
        return Err(refuse(
            PATH,
            "\"path\" must be relative to the server's file root ([targets] file_root); \
             absolute paths are refused",
        ));
    }
    if s.ends_with('/') {
        return Err(refuse(PATH, "\"path\" must name a file, not a directory"));
    }
    let mut out = PathBuf::new();
    for part in s.split('/') {
        if part.is_empty() || part == "." {
            return Err(refuse(
                PATH,
                "\"path\" must not contain empty or \".\" components (\"a//b\", \"./a\")",
            ));
        }
        if part == ".." {
            return Err(refuse(
                PATH,
                "\"path\" must not contain \"..\" components: files stay under the \
                 server's file root",
            ));
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(refuse(
                PATH,
                format!("a component of \"path\" is longer than {MAX_COMPONENT_BYTES} bytes"),
            ));
        }
        out.push(part);
    }
    // Belt and braces: what the OS would see is only normal components.
    debug_assert!(out.components().all(|c| matches!(c, Component::Normal(_))));
    Ok(out)
}

/// One open file and what is known of it. Guarded by the per-path lock.
#[derive(Default)]
struct FileState {
    /// The open file (append mode); `None` until the first write and after a failure.
    file: Option<File>,
    /// Its size as this process wrote it.
    size: u64,
}

/// Locks of the files being written, by absolute path, so every target writing one file
/// (two bindings with the same `path`, or a rebuilt target beside its predecessor's last
/// request) takes the same lock.
static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<FileState>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock_for(path: &Path) -> Arc<Mutex<FileState>> {
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = locks.get(path).and_then(Weak::upgrade) {
        return l;
    }
    locks.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(Mutex::new(FileState::default()));
    locks.insert(path.to_path_buf(), Arc::downgrade(&l));
    l
}

/// A `file` target: the settings, the root, and the shared lock of its file.
pub struct FileTarget {
    root: PathBuf,
    /// `root` joined with the settings' path.
    full: PathBuf,
    settings: FileSettings,
    state: Arc<Mutex<FileState>>,
}

impl std::fmt::Debug for FileTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTarget")
            .field("path", &self.full)
            .field("max_bytes", &self.settings.max_bytes)
            .field("max_files", &self.settings.max_files)
            .finish()
    }
}

impl FileTarget {
    /// A target writing under `env.file_root`; fails without one.
    pub fn new(settings: FileSettings, env: &TargetEnv) -> Result<FileTarget> {
        let Some(root) = env.file_root.clone() else {
            return Err(Error::Unsupported(
                "file targets need a file root directory ([targets] file_root)".to_string(),
            ));
        };
        let full = root.join(&settings.path);
        let state = lock_for(&full);
        Ok(FileTarget {
            root,
            full,
            settings,
            state,
        })
    }

    /// The file written to.
    pub fn full_path(&self) -> &Path {
        &self.full
    }
}

impl Target for FileTarget {
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(batch.len() * 256);
            for item in batch {
                item.write_json(&mut bytes);
                bytes.push(b'\n');
            }
            let root = self.root.clone();
            let full = self.full.clone();
            let rel = self.settings.path.clone();
            let max_bytes = self.settings.max_bytes;
            let max_files = self.settings.max_files;
            let state = self.state.clone();
            // File I/O and fdatasync stay off the runtime's workers.
            let written = tokio::task::spawn_blocking(move || {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                append(&mut st, &root, &rel, &full, max_bytes, max_files, &bytes)
            })
            .await;
            match written {
                Ok(Ok(())) => Ok(Delivered::default()),
                Ok(Err(e)) => Err(SendError::retryable(e.to_string())),
                Err(e) => Err(SendError::retryable(format!("file write task failed: {e}"))),
            }
        })
    }
}

/// Appends `bytes` to the file (opening, creating and rotating as needed) and fdatasyncs it.
fn append(
    st: &mut FileState,
    root: &Path,
    rel: &Path,
    full: &Path,
    max_bytes: u64,
    max_files: u32,
    bytes: &[u8],
) -> Result<()> {
    if st.file.is_none() {
        open(st, root, rel, full)?;
    }
    let len = bytes.len() as u64;
    if max_bytes > 0 && st.size > 0 && st.size.saturating_add(len) > max_bytes {
        st.file = None;
        rotate(full, max_files)?;
        open(st, root, rel, full)?;
    }
    let Some(file) = st.file.as_mut() else {
        return Err(Error::Unsupported(format!(
            "{} is not open",
            full.display()
        )));
    };
    let before = st.size;
    let done = file
        .write_all(bytes)
        .map_err(|e| Error::io("write", full, e))
        .and_then(|()| {
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", full, e))
        });
    match done {
        Ok(()) => {
            st.size = before + len;
            Ok(())
        }
        Err(e) => {
            // Undo what may have been written, so the retry does not follow a torn line; the
            // next attempt reopens the file and reads its size afresh.
            let _ = file.set_len(before);
            st.file = None;
            Err(e)
        }
    }
}

/// Opens (creating if needed) the file for appending and learns its size. A file that ends in
/// a torn line (a crash during an earlier write) gets a newline, so the next line stands
/// alone.
fn open(st: &mut FileState, root: &Path, rel: &Path, full: &Path) -> Result<()> {
    let existing = OpenOptions::new().append(true).read(true).open(full);
    let file = match existing {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = full.parent().unwrap_or(root);
            create_dirs(root, rel.parent().unwrap_or(Path::new("")))?;
            let f = OpenOptions::new()
                .append(true)
                .read(true)
                .create(true)
                .open(full)
                .map_err(|e| Error::io("create", full, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", full, e))?;
            sync_dir(dir)?;
            f
        }
        Err(e) => return Err(Error::io("open", full, e)),
    };
    let mut size = file
        .metadata()
        .map_err(|e| Error::io("stat", full, e))?
        .len();
    if size > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)
            .map_err(|e| Error::io("read", full, e))?;
        if last[0] != b'\n' {
            (&file)
                .write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io("write", full, e))?;
            size += 1;
        }
    }
    st.file = Some(file);
    st.size = size;
    Ok(())
}

/// Creates the root and the directories of `rel_dir` under it that are missing, fsyncing the
/// parent of each one created.
fn create_dirs(root: &Path, rel_dir: &Path) -> Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    let mut cur = root.to_path_buf();
    for c in rel_dir.components() {
        cur.push(c);
        dirs.push(cur.clone());
    }
    for dir in dirs {
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                // The root's own parents are missing: create them all (they are the
                // operator's, not the API's).
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &dir, e))?;
                if let Some(parent) = dir.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) => return Err(Error::io("create dir", &dir, e)),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

/// `path.N` for the rotated file number `n`.
fn rotated(full: &Path, n: u32) -> PathBuf {
    let mut s = full.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shifts `path.(N-1)` → `path.N` (replacing the oldest), …, `path` → `path.1`, then fsyncs
/// the directory.
fn rotate(full: &Path, max_files: u32) -> Result<()> {
    for n in (1..max_files).rev() {
        let from = rotated(full, n);
        match std::fs::rename(&from, rotated(full, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("rename", &from, e)),
        }
    }
    std::fs::rename(full, rotated(full, 1)).map_err(|e| Error::io("rename", full, e))?;
    if let Some(dir) = full.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    fn path_error(path: &str) -> String {
        match FileSettings::parse(&json!({ "path": path })) {
            Err(Error::Rejected {
                path: Some(p),
                message,
                ..
            }) => {
                assert_eq!(p, "$.file.path");
                message
            }
            other => panic!("{path:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn file_settings_defaults_and_fields() {
        let s = FileSettings::parse(&json!({"path": "alerts/cvm.jsonl"})).unwrap();
        assert_eq!(s.path(), Path::new("alerts/cvm.jsonl"));
        assert_eq!(s.max_bytes(), DEFAULT_MAX_BYTES);
        assert_eq!(s.max_files(), DEFAULT_MAX_FILES);
        let s = FileSettings::parse(&json!({"path": "a.jsonl", "max_bytes": 0, "max_files": 1}))
            .unwrap();
        assert_eq!((s.max_bytes(), s.max_files()), (0, 1));
    }

    #[test]
    fn file_path_escaping_the_root_is_refused() {
        assert!(path_error("/etc/passwd").contains("absolute"));
        assert!(path_error("../x").contains(".."));
        assert!(path_error("a/../../x").contains(".."));
        assert!(path_error("a/..").contains(".."));
        assert!(path_error("").contains("empty"));
        assert!(path_error("a//b").contains("empty"));
        assert!(path_error("./a").contains("empty"));
        assert!(path_error("dir/").contains("directory"));
        assert!(path_error("a\0b").contains("NUL"));
        assert!(path_error(&"x".repeat(300)).contains("255"));
        assert!(path_error(&"ab/".repeat(400)).contains("1024"));
    }

    #[test]
    fn file_settings_refusals_name_their_field() {
        for (body, field) in [
            (json!({}), "$.file.path"),
            (json!({"path": 3}), "$.file.path"),
            (json!({"path": "a", "max_bytes": -1}), "$.file.max_bytes"),
            (json!({"path": "a", "max_files": 0}), "$.file.max_files"),
            (json!({"path": "a", "max_files": 1001}), "$.file.max_files"),
            (json!({"path": "a", "maxfiles": 2}), "$.file.maxfiles"),
            (json!("a"), "$.file"),
        ] {
            let e = FileSettings::parse(&body).unwrap_err();
            assert!(
                matches!(&e, Error::Rejected { path: Some(p), .. } if p == field),
                "{body}: {e:?}"
            );
        }
    }

    #[test]
    fn file_target_needs_a_root() {
        let s = FileSettings::parse(&json!({"path": "a"})).unwrap();
        assert!(matches!(
            FileTarget::new(s, &TargetEnv::default()),
            Err(Error::Unsupported(_))
        ));
    }

    fn outgoing(id: &str) -> Outgoing {
        Outgoing::plain(Arc::new(Event::new(id, "shop", "order")))
    }

    #[tokio::test]
    async fn file_target_appends_lines_rotates_and_ends_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let env = TargetEnv {
            file_root: Some(dir.path().join("root")),
            ..TargetEnv::default()
        };
        let line_len = serde_json::to_vec(&outgoing("e0").to_json()).unwrap().len() as u64 + 1;
        let s = FileSettings::parse(
            &json!({"path": "a/b/out.jsonl", "max_bytes": 2 * line_len, "max_files": 2}),
        )
        .unwrap();
        let t = FileTarget::new(s, &env).unwrap();
        let full = dir.path().join("root/a/b/out.jsonl");
        assert_eq!(t.full_path(), full);
        t.send(&[outgoing("e0"), outgoing("e1")]).await.unwrap();
        let text = std::fs::read_to_string(&full).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().next().unwrap().contains("\"id\":\"e0\""));
        // Full: the next batch rotates.
        for i in 2..8 {
            t.send(&[outgoing(&format!("e{i}"))]).await.unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert!(read(full.clone()).contains("e6") && read(full.clone()).contains("e7"));
        assert!(read(rotated(&full, 1)).contains("e4"));
        assert!(read(rotated(&full, 2)).contains("e2"));
        assert!(!rotated(&full, 3).exists(), "only max_files rotated files");

        // A torn last line (a crash mid-write) is ended before the next line.
        std::fs::write(&full, b"{\"torn\":").unwrap();
        let t2 = FileTarget::new(
            FileSettings::parse(&json!({"path": "a/b/out.jsonl", "max_bytes": 0})).unwrap(),
            &env,
        )
        .unwrap();
        // t2 shares t's lock and state; drop the open handle as a restart would.
        t2.state.lock().unwrap().file = None;
        t2.send(&[outgoing("e9")]).await.unwrap();
        let text = read(full.clone());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"torn\":");
        assert!(lines[1].contains("e9"));
    }
}
