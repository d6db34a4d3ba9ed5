//! The id index: which offsets hold an event with a given id (`GET …/events/{id}`).
//!
//! It is kept off the append path entirely: the writer thread never touches it, and nothing
//! is computed until the first lookup.
//! - A *sealed* segment gets a derived file `{base:020}.ids`: a 40-byte header, then one
//!   `(hash, offset)` entry per record, sorted by `(hash, offset)`. It is built from the
//!   segment the first time a lookup needs it (written to `….ids.tmp`, fdatasynced, renamed,
//!   directory fsynced) and checked whenever it is loaded (header CRC, base offset, record
//!   count and segment length against the log, body CRC, order). A missing, short or damaged
//!   file is rebuilt: like the sparse `.idx`, it is derived data and losing it loses nothing.
//! - The *active* segment is covered by an in-memory map of the records scanned so far,
//!   extended on each lookup from where the previous one stopped (so repeated lookups scan
//!   only new records) and started afresh once that segment has been sealed.
//!
//! A hash is 64 bits of SipHash-1-3 of the id's UTF-8 bytes ([`id_hash`]), so an entry is only
//! a candidate: [`crate::store::EventLog::find_by_id`] reads each candidate record and keeps
//! it only if its id is the one asked for. Lookups keep, per loaded file, the first hash of
//! every block of 256 entries in memory (8 bytes per 256 records) and read one 4 KiB block
//! per sealed segment.
//!
//! File layout (all integers little endian; docs/FORMAT.md has the diagram):
//! ```text
//! 0      5    6     8              16         24               32         36          40
//! "EBIDS" ver  0 0  base_offset u64 count u64 segment_bytes u64 body_crc u32 header_crc u32
//! then `count` entries of 16 bytes: hash u64, offset u64
//! ```

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use super::frame::{FrameDecode, decode_frame};
use super::io::{Io, IoFile, read_exact_at};
use super::recovery::write_atomic;
use super::segment::ids_file_name;
use crate::codec::decode_record_id;
use crate::error::{Error, Result};

/// Magic at the start of every id index file.
pub const IDS_MAGIC: &[u8; 5] = b"EBIDS";
/// Id index format version.
pub const IDS_VERSION: u8 = 1;
/// Header size in bytes.
pub const IDS_HEADER_BYTES: usize = 40;
/// Entry size in bytes: hash, offset.
pub const IDS_ENTRY_BYTES: usize = 16;
/// Entries per block. A loaded file keeps the first hash of each block in memory; a lookup
/// reads the one block (4 KiB) that can hold its hash.
const BLOCK_ENTRIES: usize = 256;
/// Read size when scanning a segment.
const SCAN_CHUNK: usize = 1 << 20;

/// The 64-bit hash of an event id stored in `.ids` files: SipHash-1-3 with the key (0, 0)
/// over the id's UTF-8 bytes (no length or terminator). Fixed, so files stay valid across
/// processes; a producer could aim for collisions, which costs lookups time, never results
/// (every candidate's id is compared).
pub fn id_hash(id: &str) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(id.as_bytes());
    h.finish()
}

/// What an `.ids` file must describe to be used for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdsExpect {
    /// The segment's base offset.
    pub base_offset: u64,
    /// Records in the segment.
    pub count: u64,
    /// The segment file's length.
    pub segment_bytes: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The whole file for a segment: header, then `entries` (which must be sorted by
/// `(hash, offset)`).
pub fn encode_ids(expect: IdsExpect, entries: &[(u64, u64)]) -> Vec<u8> {
    debug_assert_eq!(entries.len() as u64, expect.count);
    let mut out = Vec::with_capacity(IDS_HEADER_BYTES + entries.len() * IDS_ENTRY_BYTES);
    out.resize(IDS_HEADER_BYTES, 0);
    for &(hash, offset) in entries {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    let body_crc = crc32fast::hash(&out[IDS_HEADER_BYTES..]);
    out[..5].copy_from_slice(IDS_MAGIC);
    out[5] = IDS_VERSION;
    out[8..16].copy_from_slice(&expect.base_offset.to_le_bytes());
    out[16..24].copy_from_slice(&expect.count.to_le_bytes());
    out[24..32].copy_from_slice(&expect.segment_bytes.to_le_bytes());
    out[32..36].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[..36]);
    out[36..40].copy_from_slice(&header_crc.to_le_bytes());
    out
}

/// Checks a header against the segment; returns the body CRC it promises.
pub fn check_ids_header(header: &[u8], expect: IdsExpect) -> std::result::Result<u32, String> {
    if header.len() < IDS_HEADER_BYTES {
        return Err(format!("{} bytes, shorter than the header", header.len()));
    }
    if &header[..5] != IDS_MAGIC {
        return Err("not an id index (bad magic)".into());
    }
    if crc32fast::hash(&header[..36]) != u32_at(header, 36) {
        return Err("header CRC mismatch".into());
    }
    if header[5] != IDS_VERSION || header[6..8] != [0, 0] {
        return Err(format!("unsupported version {}", header[5]));
    }
    let got = IdsExpect {
        base_offset: u64_at(header, 8),
        count: u64_at(header, 16),
        segment_bytes: u64_at(header, 24),
    };
    if got != expect {
        return Err(format!(
            "describes {got:?}, the segment is {expect:?} (stale)"
        ));
    }
    Ok(u32_at(header, 32))
}

/// Checks a body (the entries) against the header's CRC and the rules (sorted by
/// `(hash, offset)`, offsets inside the segment); returns the first hash of every block.
pub fn check_ids_body(
    body: &[u8],
    body_crc: u32,
    expect: IdsExpect,
) -> std::result::Result<Vec<u64>, String> {
    if body.len() as u64 != expect.count * IDS_ENTRY_BYTES as u64 {
        return Err(format!(
            "{} bytes of entries, {} expected",
            body.len(),
            expect.count * IDS_ENTRY_BYTES as u64
        ));
    }
    if crc32fast::hash(body) != body_crc {
        return Err("entries CRC mismatch".into());
    }
    let end = expect.base_offset + expect.count;
    let mut fences = Vec::with_capacity(body.len() / (IDS_ENTRY_BYTES * BLOCK_ENTRIES) + 1);
    let mut prev: Option<(u64, u64)> = None;
    for (i, e) in body.chunks_exact(IDS_ENTRY_BYTES).enumerate() {
        let entry = (u64_at(e, 0), u64_at(e, 8));
        if prev.is_some_and(|p| p >= entry) || entry.1 < expect.base_offset || entry.1 >= end {
            return Err(format!("entry {i} is out of order or outside the segment"));
        }
        if i % BLOCK_ENTRIES == 0 {
            fences.push(entry.0);
        }
        prev = Some(entry);
    }
    Ok(fences)
}

/// Reads the frames of `file` in `[from, to)` (record `first_offset` at `from`, the rest
/// dense) and passes each record's offset and id to `f`. Returns how many records it read.
/// Anything but whole, valid, dense frames up to `to` is [`Error::Corrupt`]: these bytes were
/// acknowledged.
pub fn scan_ids(
    file: &dyn IoFile,
    path: &Path,
    from: u64,
    to: u64,
    first_offset: u64,
    mut f: impl FnMut(u64, &str),
) -> Result<u64> {
    let corrupt = |position: u64, detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        position,
        detail,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = from; // file position of buf[0]
    let mut at = 0usize;
    let mut expected = first_offset;
    loop {
        let pos = buf_pos + at as u64;
        if pos >= to {
            break;
        }
        match decode_frame(&buf[at..]) {
            FrameDecode::Incomplete { needed } => {
                if pos + needed as u64 > to {
                    return Err(corrupt(
                        pos,
                        format!("frame needs {needed} bytes, {} left", to - pos),
                    ));
                }
                buf.drain(..at);
                buf_pos = pos;
                at = 0;
                let have = buf.len();
                let want = (needed.max(SCAN_CHUNK) as u64).min(to - pos) as usize;
                buf.resize(want.max(have), 0);
                read_exact_at(file, &mut buf[have..], pos + have as u64)
                    .map_err(|e| Error::io("read", path, e))?;
            }
            FrameDecode::Corrupt(defect) => return Err(corrupt(pos, defect.to_string())),
            FrameDecode::Frame { payload, size } => {
                let (offset, id) =
                    decode_record_id(payload).map_err(|e| corrupt(pos, e.to_string()))?;
                if offset != expected {
                    return Err(corrupt(
                        pos,
                        format!("record has offset {offset}, {expected} expected"),
                    ));
                }
                f(offset, id);
                expected += 1;
                at += size;
            }
        }
    }
    Ok(expected - first_offset)
}

// ---------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------

/// A segment as a lookup sees it (a snapshot of the log's state).
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub base: u64,
    pub next_offset: u64,
    /// Visible length (the final length of a sealed segment).
    pub len: u64,
    pub path: PathBuf,
    pub file: Arc<dyn IoFile>,
}

impl SegmentView {
    fn expect(&self) -> IdsExpect {
        IdsExpect {
            base_offset: self.base,
            count: self.next_offset - self.base,
            segment_bytes: self.len,
        }
    }
}

/// The id index of one sealed segment.
#[derive(Debug)]
struct SealedIds {
    expect: IdsExpect,
    store: SealedStore,
}

#[derive(Debug)]
enum SealedStore {
    /// The usual case: a checked `.ids` file, and the first hash of each of its blocks.
    File {
        file: Arc<dyn IoFile>,
        path: PathBuf,
        fences: Vec<u64>,
    },
    /// The file could not be written (a full disk): the entries, for this lookup only.
    Memory(Vec<(u64, u64)>),
}

impl SealedIds {
    /// Appends the offsets whose entry has `hash`, ascending.
    fn lookup(&self, hash: u64, out: &mut Vec<u64>) -> Result<()> {
        match &self.store {
            SealedStore::Memory(entries) => {
                let i = entries.partition_point(|e| e.0 < hash);
                out.extend(entries[i..].iter().take_while(|e| e.0 == hash).map(|e| e.1));
            }
            SealedStore::File { file, path, fences } => {
                // Entries equal to `hash` start in the last block whose first hash is below
                // it (or in block 0) and may run on through blocks that start with it.
                let mut k = fences.partition_point(|&f| f < hash).saturating_sub(1);
                let mut buf = vec![0u8; BLOCK_ENTRIES * IDS_ENTRY_BYTES];
                while k < fences.len() {
                    let first = k * BLOCK_ENTRIES;
                    let n = (self.expect.count as usize - first).min(BLOCK_ENTRIES);
                    let bytes = &mut buf[..n * IDS_ENTRY_BYTES];
                    let pos = (IDS_HEADER_BYTES + first * IDS_ENTRY_BYTES) as u64;
                    read_exact_at(file.as_ref(), bytes, pos)
                        .map_err(|e| Error::io("read", path, e))?;
                    for e in bytes.chunks_exact(IDS_ENTRY_BYTES) {
                        let h = u64_at(e, 0);
                        if h == hash {
                            out.push(u64_at(e, 8));
                        } else if h > hash {
                            break;
                        }
                    }
                    if fences.get(k + 1) != Some(&hash) {
                        break;
                    }
                    k += 1;
                }
            }
        }
        Ok(())
    }
}

/// The records of the active segment scanned so far.
#[derive(Debug, Default)]
struct ActiveIds {
    base: u64,
    /// File position and offset of the next record to scan.
    pos: u64,
    next_offset: u64,
    /// Hash → offset of the first record with it; later ones (same id, or a collision) go to
    /// `more`, so the common unique id costs one small map entry.
    first: FxHashMap<u64, u64>,
    more: FxHashMap<u64, Vec<u64>>,
}

impl ActiveIds {
    fn reset(&mut self, base: u64) {
        *self = ActiveIds {
            base,
            pos: 0,
            next_offset: base,
            ..ActiveIds::default()
        };
    }

    fn insert(&mut self, hash: u64, offset: u64) {
        match self.first.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(offset);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(hash).or_default().push(offset)
            }
        }
    }

    fn lookup(&self, hash: u64, out: &mut Vec<u64>) {
        if let Some(&o) = self.first.get(&hash) {
            out.push(o);
            if let Some(more) = self.more.get(&hash) {
                out.extend_from_slice(more);
            }
        }
    }
}

/// What the id index has done since the log was opened (for tests and `bench query`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IdIndexStats {
    /// `.ids` files built from their segment (missing, damaged or stale before).
    pub files_built: u64,
    /// `.ids` files loaded from disk and found valid.
    pub files_loaded: u64,
    /// `.ids` files present but refused (damaged, short, stale) and therefore rebuilt.
    pub files_rejected: u64,
    /// Records of active segments scanned into memory.
    pub active_records_scanned: u64,
}

#[derive(Debug, Default)]
struct Counters {
    built: AtomicU64,
    loaded: AtomicU64,
    rejected: AtomicU64,
    active_scanned: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The id index of one log (owned by its `EventLog`).
pub(crate) struct IdIndex {
    io: Arc<dyn Io>,
    dir: PathBuf,
    /// Loaded or built indexes of sealed segments, by base offset.
    sealed: Mutex<BTreeMap<u64, Arc<SealedIds>>>,
    /// Held while loading or building a sealed segment's index, so two lookups never write
    /// the same temporary file or build the same index twice.
    build: Mutex<()>,
    active: Mutex<ActiveIds>,
    counters: Counters,
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl IdIndex {
    pub(crate) fn new(io: Arc<dyn Io>, dir: PathBuf) -> IdIndex {
        IdIndex {
            io,
            dir,
            sealed: Mutex::new(BTreeMap::new()),
            build: Mutex::new(()),
            active: Mutex::new(ActiveIds::default()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn stats(&self) -> IdIndexStats {
        let c = &self.counters;
        IdIndexStats {
            files_built: c.built.load(Ordering::Relaxed),
            files_loaded: c.loaded.load(Ordering::Relaxed),
            files_rejected: c.rejected.load(Ordering::Relaxed),
            active_records_scanned: c.active_scanned.load(Ordering::Relaxed),
        }
    }

    /// Offsets whose record may have id `id` (its hash matches), ascending. `snapshot` gives
    /// the log's segments, oldest first, the last one active; it is called with the active
    /// segment's map locked, so concurrent lookups agree on which segment is active.
    pub(crate) fn candidates(
        &self,
        id: &str,
        snapshot: impl FnOnce() -> Vec<SegmentView>,
    ) -> Result<Vec<u64>> {
        let hash = id_hash(id);
        let mut active_hits = Vec::new();
        let segments = {
            let mut active = lock(&self.active);
            let segments = snapshot();
            if let Some(seg) = segments.last() {
                self.extend_active(&mut active, seg)?;
                active.lookup(hash, &mut active_hits);
            }
            segments
        };
        let Some((_, sealed)) = segments.split_last() else {
            return Ok(Vec::new());
        };
        if let Some(first) = segments.first() {
            // Segments removed by retention: forget their indexes.
            lock(&self.sealed).retain(|&base, _| base >= first.base);
        }
        let mut out = Vec::new();
        for seg in sealed.iter().filter(|s| s.next_offset > s.base) {
            self.sealed_ids(seg)?.lookup(hash, &mut out)?;
        }
        out.extend(active_hits);
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Scans the active segment's records not seen yet into the map (starting afresh when the
    /// segment is not the one the map was built for: the old one was sealed).
    fn extend_active(&self, active: &mut ActiveIds, seg: &SegmentView) -> Result<()> {
        if active.base != seg.base || active.pos > seg.len || active.next_offset < seg.base {
            active.reset(seg.base);
        }
        if active.pos == seg.len {
            return Ok(());
        }
        let mut scanned = Vec::new();
        let n = scan_ids(
            seg.file.as_ref(),
            &seg.path,
            active.pos,
            seg.len,
            active.next_offset,
            |offset, id| scanned.push((id_hash(id), offset)),
        )?;
        for (hash, offset) in scanned {
            active.insert(hash, offset);
        }
        active.pos = seg.len;
        active.next_offset += n;
        self.counters.active_scanned.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The index of a sealed segment: cached, else loaded from its `.ids` file, else built.
    fn sealed_ids(&self, seg: &SegmentView) -> Result<Arc<SealedIds>> {
        let expect = seg.expect();
        let cached = |this: &Self| {
            lock(&this.sealed)
                .get(&seg.base)
                .filter(|s| s.expect == expect)
                .cloned()
        };
        if let Some(s) = cached(self) {
            return Ok(s);
        }
        let _building = lock(&self.build);
        if let Some(s) = cached(self) {
            return Ok(s);
        }
        let path = self.dir.join(ids_file_name(seg.base));
        let ids = match self.load(&path, expect) {
            Some(ids) => ids,
            None => self.build_file(seg, &path)?,
        };
        let ids = Arc::new(ids);
        if matches!(ids.store, SealedStore::File { .. }) {
            lock(&self.sealed).insert(seg.base, ids.clone());
        }
        Ok(ids)
    }

    /// A valid `.ids` file at `path`, or None (missing or refused; a refusal is logged).
    fn load(&self, path: &Path, expect: IdsExpect) -> Option<SealedIds> {
        if !self.io.exists(path) {
            return None;
        }
        let checked = (|| -> std::result::Result<SealedIds, String> {
            let file = self.io.open(path, false).map_err(|e| e.to_string())?;
            let mut header = [0u8; IDS_HEADER_BYTES];
            read_exact_at(file.as_ref(), &mut header, 0).map_err(|e| format!("header: {e}"))?;
            let body_crc = check_ids_header(&header, expect)?;
            let len = file.len().map_err(|e| e.to_string())?;
            let want = IDS_HEADER_BYTES as u64 + expect.count * IDS_ENTRY_BYTES as u64;
            if len != want {
                return Err(format!("{len} bytes, {want} expected"));
            }
            let mut body = vec![0u8; (want - IDS_HEADER_BYTES as u64) as usize];
            read_exact_at(file.as_ref(), &mut body, IDS_HEADER_BYTES as u64)
                .map_err(|e| format!("entries: {e}"))?;
            let fences = check_ids_body(&body, body_crc, expect)?;
            Ok(SealedIds {
                expect,
                store: SealedStore::File {
                    file,
                    path: path.to_path_buf(),
                    fences,
                },
            })
        })();
        match checked {
            Ok(ids) => {
                self.counters.loaded.fetch_add(1, Ordering::Relaxed);
                Some(ids)
            }
            Err(why) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), "id index refused, rebuilding it: {why}");
                None
            }
        }
    }

    /// Builds a sealed segment's index from the segment and writes it atomically. When the
    /// file cannot be written, the index still answers this lookup from memory.
    fn build_file(&self, seg: &SegmentView, path: &Path) -> Result<SealedIds> {
        let expect = seg.expect();
        let mut entries = Vec::with_capacity(expect.count as usize);
        let n = scan_ids(
            seg.file.as_ref(),
            &seg.path,
            0,
            seg.len,
            seg.base,
            |offset, id| entries.push((id_hash(id), offset)),
        )?;
        if n != expect.count {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                position: seg.len,
                detail: format!(
                    "sealed segment holds {n} records, {} expected",
                    expect.count
                ),
            });
        }
        entries.sort_unstable();
        let bytes = encode_ids(expect, &entries);
        let name = ids_file_name(seg.base);
        let written = write_atomic(self.io.as_ref(), &self.dir, &name, &bytes).and_then(|()| {
            self.io
                .open(path, false)
                .map_err(|e| Error::io("open", path, e))
        });
        self.counters.built.fetch_add(1, Ordering::Relaxed);
        match written {
            Ok(file) => {
                if !self.io.exists(&seg.path) {
                    // Retention removed the segment meanwhile: do not leave its index behind.
                    let _ = self.io.remove_file(path);
                }
                let fences = entries.iter().step_by(BLOCK_ENTRIES).map(|e| e.0).collect();
                Ok(SealedIds {
                    expect,
                    store: SealedStore::File {
                        file,
                        path: path.to_path_buf(),
                        fences,
                    },
                })
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), "could not write the id index (answering from memory): {e}");
                Ok(SealedIds {
                    expect,
                    store: SealedStore::Memory(entries),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::{EventLog, LogOptions};

    fn expect(count: u64) -> IdsExpect {
        IdsExpect {
            base_offset: 100,
            count,
            segment_bytes: 4096,
        }
    }

    #[test]
    fn id_hash_is_stable_siphash13_with_zero_keys() {
        // Pinned: changing the hash would silently invalidate every `.ids` file's order.
        assert_eq!(id_hash(""), 0xd1fb_a762_150c_532c);
        assert_eq!(id_hash("e-1"), 0x1eeb_b94e_4ff7_a807);
        assert_ne!(id_hash("e-1"), id_hash("e-2"));
    }

    #[test]
    fn ids_file_round_trips_and_any_damage_or_staleness_is_refused() {
        let entries = vec![(1, 101), (5, 100), (5, 102), (9, 103)];
        let bytes = encode_ids(expect(4), &entries);
        assert_eq!(bytes.len(), IDS_HEADER_BYTES + 4 * IDS_ENTRY_BYTES);
        let crc = check_ids_header(&bytes, expect(4)).unwrap();
        let fences = check_ids_body(&bytes[IDS_HEADER_BYTES..], crc, expect(4)).unwrap();
        assert_eq!(fences, vec![1]);
        // Every single-bit flip is caught, in the header or the body.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let ok = check_ids_header(&bad, expect(4))
                .and_then(|c| check_ids_body(&bad[IDS_HEADER_BYTES..], c, expect(4)));
            assert!(ok.is_err(), "flip at byte {i} accepted");
        }
        // A file for another segment, count or length is stale.
        for other in [
            IdsExpect {
                base_offset: 0,
                ..expect(4)
            },
            expect(5),
            IdsExpect {
                segment_bytes: 4097,
                ..expect(4)
            },
        ] {
            assert!(check_ids_header(&bytes, other).is_err());
        }
        // Short files.
        assert!(check_ids_header(&bytes[..20], expect(4)).is_err());
        assert!(check_ids_body(&bytes[IDS_HEADER_BYTES..50], crc, expect(4)).is_err());
        // Unsorted entries or offsets outside the segment, even with a right CRC.
        for wrong in [
            vec![(5, 100), (1, 101), (5, 102), (9, 103)],
            vec![(1, 101), (5, 100), (5, 102), (9, 104)],
        ] {
            let b = encode_ids(expect(4), &wrong);
            let c = check_ids_header(&b, expect(4)).unwrap();
            assert!(check_ids_body(&b[IDS_HEADER_BYTES..], c, expect(4)).is_err());
        }
    }

    #[test]
    fn block_lookup_finds_runs_that_cross_blocks() {
        use crate::store::io::SimIo;
        // 2 000 entries; hash 7 has a run of 600 entries spanning three blocks, the others
        // one to three entries each, and some hashes are absent.
        let mut entries: Vec<(u64, u64)> = Vec::new();
        let mut offset = 100;
        for h in 0..500u64 {
            let n = if h == 7 {
                600
            } else {
                h % 3 + (h % 5 == 0) as u64 * 2
            };
            for _ in 0..n {
                entries.push((h * 2, offset));
                offset += 1;
            }
        }
        entries.sort_unstable();
        let count = entries.len() as u64;
        let ex = IdsExpect {
            base_offset: 100,
            count,
            segment_bytes: 1,
        };
        let io = SimIo::new();
        io.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/x.ids");
        let f = io.open(path, true).unwrap();
        let bytes = encode_ids(ex, &entries);
        f.write_all_at(&bytes, 0).unwrap();
        let crc = check_ids_header(&bytes, ex).unwrap();
        let fences = check_ids_body(&bytes[IDS_HEADER_BYTES..], crc, ex).unwrap();
        assert!(fences.len() > 5);
        let file_ids = SealedIds {
            expect: ex,
            store: SealedStore::File {
                file: f,
                path: path.to_path_buf(),
                fences,
            },
        };
        let mem_ids = SealedIds {
            expect: ex,
            store: SealedStore::Memory(entries.clone()),
        };
        for hash in 0..1002u64 {
            let want: Vec<u64> = entries
                .iter()
                .filter(|e| e.0 == hash)
                .map(|e| e.1)
                .collect();
            for ids in [&file_ids, &mem_ids] {
                let mut got = Vec::new();
                ids.lookup(hash, &mut got).unwrap();
                assert_eq!(got, want, "hash {hash}");
            }
        }
        let mut got = Vec::new();
        file_ids.lookup(u64::MAX, &mut got).unwrap();
        assert!(got.is_empty());
    }

    fn tiny() -> LogOptions {
        LogOptions {
            max_segment_bytes: 2048,
            index_interval_bytes: 256,
            ..LogOptions::default()
        }
    }

    fn event(id: &str, source: &str) -> Event {
        let mut e = Event::new(id, source, "t");
        e.data = format!("{{\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes();
        e
    }

    fn ids_of(log: &EventLog, id: &str) -> Vec<(u64, String)> {
        log.find_by_id(id)
            .unwrap()
            .into_iter()
            .map(|r| {
                assert_eq!(r.event.id, id);
                (r.offset, r.event.source)
            })
            .collect()
    }

    fn ids_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ids"))
            .collect();
        v.sort();
        v
    }

    /// 60 events: ids `e-0` … `e-29` twice (sources `a` then `b`), over many segments.
    fn filled(dir: &Path) -> EventLog {
        let log = EventLog::open(dir, tiny()).unwrap();
        for source in ["a", "b"] {
            for i in 0..30 {
                log.append_blocking(&[event(&format!("e-{i}"), source)])
                    .unwrap();
            }
        }
        assert!(log.stats().segments > 4, "{:?}", log.stats());
        log
    }

    #[test]
    fn lookup_builds_sealed_indexes_lazily_and_finds_every_copy_in_offset_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let log = filled(&dir);
        assert!(
            ids_files(&dir).is_empty(),
            "nothing is built before a lookup"
        );
        assert_eq!(
            ids_of(&log, "e-3"),
            vec![(3, "a".to_string()), (33, "b".to_string())]
        );
        assert_eq!(ids_of(&log, "e-29").len(), 2);
        assert!(ids_of(&log, "e-30").is_empty());
        assert!(ids_of(&log, "").is_empty());
        let stats = log.stats();
        // One file per sealed segment, none for the active one.
        assert_eq!(ids_files(&dir).len(), stats.segments - 1);
        assert_eq!(log.id_index_stats().files_built, stats.segments as u64 - 1);
        // The next lookups use them without building anything.
        ids_of(&log, "e-7");
        assert_eq!(log.id_index_stats().files_built, stats.segments as u64 - 1);
        drop(log);
        // After a reopen they are loaded, not rebuilt.
        let log = EventLog::open(&dir, tiny()).unwrap();
        assert_eq!(ids_of(&log, "e-0").len(), 2);
        let s = log.id_index_stats();
        assert_eq!(
            (s.files_built, s.files_loaded, s.files_rejected),
            (0, stats.segments as u64 - 1, 0)
        );
    }

    #[test]
    fn a_hash_collision_is_filtered_by_comparing_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let log = filled(&dir);
        ids_of(&log, "e-0");
        drop(log);
        // Forge a collision: in the first segment's index, give record 1 (`e-1`) the hash
        // of `e-0`, with a valid CRC, so the file is accepted as it is.
        let path = dir.join(ids_file_name(0));
        let bytes = std::fs::read(&path).unwrap();
        let ex = IdsExpect {
            base_offset: 0,
            count: u64_at(&bytes, 16),
            segment_bytes: u64_at(&bytes, 24),
        };
        let mut entries: Vec<(u64, u64)> = bytes[IDS_HEADER_BYTES..]
            .chunks_exact(16)
            .map(|e| (u64_at(e, 0), u64_at(e, 8)))
            .collect();
        for e in &mut entries {
            if e.1 == 1 {
                e.0 = id_hash("e-0");
            }
        }
        entries.sort_unstable();
        std::fs::write(&path, encode_ids(ex, &entries)).unwrap();
        let log = EventLog::open(&dir, tiny()).unwrap();
        assert_eq!(
            ids_of(&log, "e-0"),
            vec![(0, "a".to_string()), (30, "b".to_string())]
        );
        assert_eq!(
            log.id_index_stats().files_rejected,
            0,
            "the forged file was used"
        );
    }

    #[test]
    fn damaged_short_or_missing_ids_files_are_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let log = filled(&dir);
        ids_of(&log, "e-0");
        drop(log);
        let files = ids_files(&dir);
        let flip = dir.join(&files[0]);
        let mut b = std::fs::read(&flip).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&flip, &b).unwrap();
        let short = dir.join(&files[1]);
        let b = std::fs::read(&short).unwrap();
        std::fs::write(&short, &b[..b.len() - 16]).unwrap();
        std::fs::remove_file(dir.join(&files[2])).unwrap();
        let good = std::fs::read(dir.join(&files[3])).unwrap();

        let log = EventLog::open(&dir, tiny()).unwrap();
        for i in 0..30 {
            assert_eq!(ids_of(&log, &format!("e-{i}")).len(), 2, "e-{i}");
        }
        let s = log.id_index_stats();
        assert_eq!((s.files_built, s.files_rejected), (3, 2));
        assert_eq!(ids_files(&dir), files, "every file is back");
        assert_eq!(std::fs::read(dir.join(&files[3])).unwrap(), good);
        drop(log);
        let log = EventLog::open(&dir, tiny()).unwrap();
        ids_of(&log, "e-1");
        let s = log.id_index_stats();
        assert_eq!((s.files_built, s.files_rejected), (0, 0));
    }

    #[test]
    fn the_active_segment_is_scanned_incrementally_and_restarted_after_a_roll() {
        let tmp = tempfile::tempdir().unwrap();
        let log = EventLog::open(
            tmp.path().join("s"),
            LogOptions {
                max_segment_bytes: 1 << 20,
                ..LogOptions::default()
            },
        )
        .unwrap();
        assert!(ids_of(&log, "x").is_empty());
        for i in 0..10 {
            log.append_blocking(&[event(&format!("e-{i}"), "a")])
                .unwrap();
        }
        assert_eq!(ids_of(&log, "e-4"), vec![(4, "a".to_string())]);
        assert_eq!(log.id_index_stats().active_records_scanned, 10);
        assert_eq!(ids_of(&log, "e-9").len(), 1);
        assert_eq!(log.id_index_stats().active_records_scanned, 10);
        log.append_blocking(&[event("e-4", "b"), event("new", "a")])
            .unwrap();
        assert_eq!(
            ids_of(&log, "e-4"),
            vec![(4, "a".to_string()), (10, "b".to_string())]
        );
        assert_eq!(ids_of(&log, "new"), vec![(11, "a".to_string())]);
        assert_eq!(log.id_index_stats().active_records_scanned, 12);
        assert_eq!(log.id_index_stats().files_built, 0);
        drop(log);

        // With tiny segments the active one keeps rolling: the map restarts on each new
        // active segment and the sealed ones get files.
        let log = EventLog::open(tmp.path().join("t"), tiny()).unwrap();
        let mut total = 0;
        for i in 0..40 {
            log.append_blocking(&[event(&format!("e-{i}"), "a")])
                .unwrap();
            assert_eq!(ids_of(&log, &format!("e-{i}")), vec![(i, "a".to_string())]);
            total += 1;
        }
        for i in 0..40 {
            assert_eq!(ids_of(&log, &format!("e-{i}")).len(), 1);
        }
        let s = log.id_index_stats();
        assert_eq!(
            s.active_records_scanned, total,
            "each record is scanned once"
        );
        assert_eq!(s.files_built, log.stats().segments as u64 - 1);
    }
}
