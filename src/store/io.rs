//! The fault-injection seam: every byte the log reads or writes goes through [`Io`] / [`IoFile`].
//!
//! [`OsIo`] is the real filesystem; [`ReadOnlyIo`] is the same, refusing every change (used by
//! `eventbus inspect`). [`SimIo`] is an in-memory filesystem that remembers what was
//! made durable (by `sync_data` for file contents and `sync_dir` for directory entries) so tests
//! can simulate a power loss: everything not yet fsynced is dropped, optionally keeping a torn
//! prefix of the unsynced bytes. It can also fail fsync (EIO) and run out of space (ENOSPC).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A filesystem, as far as the log needs one.
pub trait Io: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents (like `mkdir -p`).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing, creating it when `create` is true.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive lock on `path` (created if missing) for as long as the returned
    /// guard lives; fails at once with `WouldBlock` when someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<LockGuard>;
}

/// Holds a lock taken with [`Io::lock`]; dropping it releases the lock.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// An open file. Positional reads and writes, so readers and the writer share one handle.
pub trait IoFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn IoFile, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = file.read_at(buf, pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        buf = &mut buf[n..];
        pos += n as u64;
    }
    Ok(())
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsIo;

#[derive(Debug)]
struct OsFile(File);

impl Io for OsIo {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; the lock lives as long as the File.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "held by another process or handle (is a server running on this data?)",
                )
            } else {
                err
            });
        }
        Ok(LockGuard(Box::new(file)))
    }
}

impl IoFile for OsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Read-only filesystem
// ---------------------------------------------------------------------------------------------

/// The real filesystem, read-only: files are opened without write access and every mutation
/// fails with `PermissionDenied`. Works on read-only mounts and snapshots too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnlyIo;

#[derive(Debug)]
struct ReadOnlyFile(File);

fn refused(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("read-only filesystem: refused to {what} {}", path.display()),
    )
}

impl Io for ReadOnlyIo {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Err(refused("create", path))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        if create {
            return Err(refused("create", path));
        }
        Ok(Arc::new(ReadOnlyFile(File::open(path)?)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        Err(refused("remove", path))
    }
    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename", from))
    }
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(()) // nothing was changed, so there is nothing to make durable
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        Err(refused("lock", path))
    }
}

impl IoFile for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, _buf: &[u8], _pos: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "read-only filesystem: refused to write",
        ))
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "read-only filesystem: refused to truncate",
        ))
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated filesystem
// ---------------------------------------------------------------------------------------------

/// An in-memory filesystem with a durability model, for crash and fault tests.
///
/// File contents become durable on `sync_data`; directory entries (create, remove, rename) on
/// `sync_dir` of their directory. Directories themselves are durable when created.
/// [`SimIo::power_loss`] throws away everything else; handles opened before it fail with EIO
/// afterwards, and so do creating, removing and renaming files in, and fsyncing, a directory
/// whose lock ([`Io::lock`]) was held, until someone takes that lock again: a log instance that
/// was "running" when the power went cannot write any more, not even through new files (its
/// process died with the machine; the next `EventLog::open` takes the lock and carries on).
#[derive(Clone, Default)]
pub struct SimIo {
    state: Arc<Mutex<SimState>>,
}

impl fmt::Debug for SimIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimIo").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SimState {
    /// Bumped by every power loss; handles from an older epoch are dead.
    epoch: u64,
    next_inode: u64,
    inodes: HashMap<u64, SimInode>,
    dirs: BTreeMap<PathBuf, SimDir>,
    fail_sync: bool,
    fail_write: bool,
    space_limit: Option<u64>,
    syncs: u64,
    /// Locked paths and the id of the guard holding each; a power loss releases them all.
    locks: HashMap<PathBuf, u64>,
    next_lock: u64,
    /// Directories whose lock was held when the power went, until it is taken again.
    fenced: HashSet<PathBuf>,
}

#[derive(Default, Clone)]
struct SimInode {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default, Clone)]
struct SimDir {
    current: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

/// How a simulated power loss treats bytes that were written but not fsynced.
#[derive(Debug, Clone, Copy)]
pub enum PowerLoss {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// For each file, a pseudo-random prefix (seeded) of the unsynced appended bytes survives:
    /// the last write is torn at an arbitrary byte.
    TearUnsynced {
        /// Seed for the choice of the surviving prefix lengths.
        seed: u64,
    },
}

fn io_err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn eio(msg: &str) -> io::Error {
    io::Error::other(format!("EIO (simulated): {msg}"))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path
        .parent()
        .ok_or_else(|| io_err(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io_err(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
}

impl SimState {
    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }
    fn dir(&mut self, path: &Path) -> io::Result<&mut SimDir> {
        self.dirs
            .get_mut(path)
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, "no such directory"))
    }
    /// Fails when `dir` belongs to a process that died in a power loss (see [`SimIo`]).
    fn check_fence(&self, dir: &Path) -> io::Result<()> {
        if self.fenced.contains(dir) {
            return Err(eio(
                "device lost power (the directory's lock holder died; lock it again)",
            ));
        }
        Ok(())
    }
    fn lookup(&self, path: &Path) -> Option<u64> {
        let (parent, name) = split(path).ok()?;
        self.dirs.get(&parent)?.current.get(&name).copied()
    }
}

impl SimIo {
    /// A new, empty simulated filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulates a power loss: unsynced data and directory entries vanish, and every handle
    /// opened before now fails with EIO from now on.
    pub fn power_loss(&self, mode: PowerLoss) {
        let mut st = self.lock();
        st.epoch += 1;
        let mut rng = match mode {
            PowerLoss::DropUnsynced => None,
            PowerLoss::TearUnsynced { seed } => Some(SplitMix(seed)),
        };
        let mut ids: Vec<u64> = st.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let inode = st.inodes.get_mut(&id).expect("inode listed");
            let mut survivor = inode.durable.clone();
            if let Some(rng) = rng.as_mut()
                && inode.current.len() > inode.durable.len()
                && inode.current.starts_with(&inode.durable)
            {
                let extra = inode.current.len() - inode.durable.len();
                let keep = (rng.next() % (extra as u64 + 1)) as usize;
                survivor.extend_from_slice(
                    &inode.current[inode.durable.len()..inode.durable.len() + keep],
                );
            }
            inode.current = survivor;
        }
        for dir in st.dirs.values_mut() {
            dir.current = dir.durable.clone();
        }
        let held: Vec<PathBuf> = st
            .locks
            .keys()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        st.fenced.extend(held);
        st.locks.clear();
    }

    /// While true, every `sync_data` and `sync_dir` fails with EIO.
    pub fn set_fail_sync(&self, fail: bool) {
        self.lock().fail_sync = fail;
    }

    /// While true, every write fails with EIO (nothing is written).
    pub fn set_fail_write(&self, fail: bool) {
        self.lock().fail_write = fail;
    }

    /// Caps the total bytes of all files; a write past it writes what fits, then fails ENOSPC.
    pub fn set_space_limit(&self, limit: Option<u64>) {
        self.lock().space_limit = limit;
    }

    /// Number of successful `sync_data` calls so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Overwrites bytes of a file in place, both in the current and the durable image
    /// (simulates media corruption, e.g. a bit flip).
    pub fn corrupt(&self, path: &Path, pos: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let id = st
            .lookup(path)
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, "no such file"))?;
        let inode = st.inodes.get_mut(&id).expect("inode exists");
        for img in [&mut inode.current, &mut inode.durable] {
            let end = pos as usize + bytes.len();
            if img.len() < end {
                img.resize(end, 0);
            }
            img[pos as usize..end].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The current contents of every file (not subdirectory) in `dir`, by name.
    pub fn dir_files(&self, dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let st = self.lock();
        st.dirs
            .get(dir)
            .map(|d| {
                d.current
                    .iter()
                    .map(|(name, id)| (name.clone(), st.inodes[id].current.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current contents of a file.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let id = st
            .lookup(path)
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, "no such file"))?;
        Ok(st.inodes[&id].current.clone())
    }
}

/// A tiny deterministic generator so the library needs no `rand`.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Io for SimIo {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(parent) = path.parent() {
            st.check_fence(parent)?;
        }
        for anc in path.ancestors() {
            st.dirs.entry(anc.to_path_buf()).or_default();
        }
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        let mut names: Vec<String> = st.dir(path)?.current.keys().cloned().collect();
        // Subdirectories are listed too, like readdir does.
        let subdirs: Vec<String> = st
            .dirs
            .keys()
            .filter(|d| d.parent() == Some(path))
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.extend(subdirs);
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let mut st = self.lock();
        let (parent, name) = split(path)?;
        if create {
            st.check_fence(&parent)?;
        }
        let existing = st.dir(&parent)?.current.get(&name).copied();
        let inode = match existing {
            Some(id) => id,
            None if create => {
                st.next_inode += 1;
                let id = st.next_inode;
                st.inodes.insert(id, SimInode::default());
                st.dir(&parent)?.current.insert(name, id);
                id
            }
            None => return Err(io_err(io::ErrorKind::NotFound, "no such file")),
        };
        Ok(Arc::new(SimFile {
            io: self.clone(),
            inode,
            epoch: st.epoch,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let (parent, name) = split(path)?;
        st.check_fence(&parent)?;
        st.dir(&parent)?
            .current
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, "no such file"))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let (fp, fname) = split(from)?;
        let (tp, tname) = split(to)?;
        st.check_fence(&fp)?;
        st.check_fence(&tp)?;
        let id = st
            .dir(&fp)?
            .current
            .remove(&fname)
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, "no such file"))?;
        st.dir(&tp)?.current.insert(tname, id);
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.fail_sync {
            return Err(eio("sync_dir"));
        }
        st.check_fence(path)?;
        let dir = st.dir(path)?;
        dir.durable = dir.current.clone();
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.dirs.contains_key(path) || st.lookup(path).is_some()
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        let mut st = self.lock();
        if st.locks.contains_key(path) {
            return Err(io_err(io::ErrorKind::WouldBlock, "already locked"));
        }
        st.next_lock += 1;
        let id = st.next_lock;
        st.locks.insert(path.to_path_buf(), id);
        if let Some(parent) = path.parent() {
            st.fenced.remove(parent);
        }
        Ok(LockGuard(Box::new(SimLock {
            io: self.clone(),
            path: path.to_path_buf(),
            id,
        })))
    }
}

struct SimLock {
    io: SimIo,
    path: PathBuf,
    id: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.io.lock();
        if st.locks.get(&self.path) == Some(&self.id) {
            st.locks.remove(&self.path);
        }
    }
}

/// A handle on a simulated file.
struct SimFile {
    io: SimIo,
    inode: u64,
    epoch: u64,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimFile(inode {})", self.inode)
    }
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut SimState, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.io.lock();
        if st.epoch != self.epoch {
            return Err(eio("device lost power"));
        }
        f(&mut st, self.inode)
    }
}

impl IoFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.with(|st, id| {
            let data = &st.inodes[&id].current;
            let pos = pos as usize;
            if pos >= data.len() {
                return Ok(0);
            }
            let n = buf.len().min(data.len() - pos);
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            Ok(n)
        })
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.with(|st, id| {
            if st.fail_write {
                return Err(eio("write"));
            }
            let len = st.inodes[&id].current.len() as u64;
            let end = pos + buf.len() as u64;
            let growth = end.saturating_sub(len);
            let mut n = buf.len();
            let mut full = false;
            if let Some(limit) = st.space_limit {
                let free = limit.saturating_sub(st.used_bytes());
                if growth > free {
                    // Write what fits, like a real short write before ENOSPC.
                    n = (len + free).saturating_sub(pos).min(buf.len() as u64) as usize;
                    full = true;
                }
            }
            let data = &mut st.inodes.get_mut(&id).expect("inode").current;
            let p = pos as usize;
            if data.len() < p + n {
                data.resize(p + n, 0);
            }
            data[p..p + n].copy_from_slice(&buf[..n]);
            if full { Err(enospc()) } else { Ok(()) }
        })
    }
    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, id| {
            if st.fail_sync {
                return Err(eio("fdatasync"));
            }
            st.syncs += 1;
            let inode = st.inodes.get_mut(&id).expect("inode");
            inode.durable = inode.current.clone();
            Ok(())
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, id| {
            st.inodes
                .get_mut(&id)
                .expect("inode")
                .current
                .resize(len as usize, 0);
            Ok(())
        })
    }
    fn len(&self) -> io::Result<u64> {
        self.with(|st, id| Ok(st.inodes[&id].current.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_power_loss_drops_unsynced_bytes_and_entries() {
        let io = SimIo::new();
        let dir = Path::new("/d");
        io.create_dir_all(dir).unwrap();
        let a = io.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        io.sync_dir(dir).unwrap();
        a.write_all_at(b" world", 5).unwrap();
        let b = io.open(&dir.join("b"), true).unwrap();
        b.write_all_at(b"x", 0).unwrap();
        b.sync_data().unwrap(); // data synced, but the entry never was
        io.power_loss(PowerLoss::DropUnsynced);
        assert!(a.len().is_err(), "old handles are dead after power loss");
        assert_eq!(io.read_file(&dir.join("a")).unwrap(), b"hello");
        assert!(!io.exists(&dir.join("b")));
    }

    #[test]
    fn sim_torn_power_loss_keeps_a_prefix_of_unsynced_bytes() {
        for seed in 0..20 {
            let io = SimIo::new();
            let dir = Path::new("/d");
            io.create_dir_all(dir).unwrap();
            let a = io.open(&dir.join("a"), true).unwrap();
            io.sync_dir(dir).unwrap();
            a.write_all_at(b"abc", 0).unwrap();
            a.sync_data().unwrap();
            a.write_all_at(b"defgh", 3).unwrap();
            io.power_loss(PowerLoss::TearUnsynced { seed });
            let got = io.read_file(&dir.join("a")).unwrap();
            assert!(b"abcdefgh".starts_with(&got) && got.len() >= 3, "{got:?}");
        }
    }

    #[test]
    fn sim_space_limit_writes_what_fits_then_enospc() {
        let io = SimIo::new();
        let dir = Path::new("/d");
        io.create_dir_all(dir).unwrap();
        let a = io.open(&dir.join("a"), true).unwrap();
        io.set_space_limit(Some(4));
        let err = a.write_all_at(b"abcdef", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(io.read_file(&dir.join("a")).unwrap(), b"abcd");
    }

    #[test]
    fn sim_power_loss_fences_a_locked_directory_until_it_is_locked_again() {
        let io = SimIo::new();
        let dir = Path::new("/d");
        io.create_dir_all(dir).unwrap();
        let lock = Io::lock(&io, &dir.join("LOCK")).unwrap();
        let a = io.open(&dir.join("a"), true).unwrap();
        a.sync_data().unwrap();
        io.sync_dir(dir).unwrap();
        io.power_loss(PowerLoss::DropUnsynced);
        // The process that held the lock is gone: no new files, removals or directory fsyncs.
        assert!(io.open(&dir.join("b"), true).is_err());
        assert!(io.remove_file(&dir.join("a")).is_err());
        assert!(io.rename(&dir.join("a"), &dir.join("c")).is_err());
        assert!(io.sync_dir(dir).is_err());
        assert!(
            io.open(&dir.join("a"), false).is_ok(),
            "reading stays possible"
        );
        drop(lock);
        let _relock = Io::lock(&io, &dir.join("LOCK")).unwrap();
        assert!(io.open(&dir.join("b"), true).is_ok());
        io.sync_dir(dir).unwrap();
    }

    #[test]
    fn sim_failed_sync_does_not_make_data_durable() {
        let io = SimIo::new();
        let dir = Path::new("/d");
        io.create_dir_all(dir).unwrap();
        let a = io.open(&dir.join("a"), true).unwrap();
        io.sync_dir(dir).unwrap();
        a.write_all_at(b"abc", 0).unwrap();
        io.set_fail_sync(true);
        assert!(a.sync_data().is_err());
        io.power_loss(PowerLoss::DropUnsynced);
        assert!(io.read_file(&dir.join("a")).unwrap().is_empty());
    }
}
