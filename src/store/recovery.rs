//! Opening a log directory: find the segments, trust sealed segments by their seal, scan only
//! the tail of the active segment, cut a torn tail, and refuse (loudly, precisely) anything a
//! crash cannot explain. Also the offline `verify` and `repair` used by `eventbus inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::{
    self, INDEX_ENTRY_BYTES, IndexEntry, SealInfo, encode_entry, encode_header, encode_seal,
};
use super::io::{Io, IoFile, LockGuard, read_exact_at};
use super::segment::{
    ScanReport, ScanStart, find_valid_frame_after, ids_file_name, index_file_name, parse_ids_name,
    parse_index_name, parse_segment_name, scan_segment, segment_file_name,
};
use crate::error::{Error, Result};

/// Name of the repair manifest in an event set's directory.
pub const REPAIRS_FILE: &str = "REPAIRS.json";
/// Directory (inside an event set's directory) where `repair` moves damaged bytes.
pub const DAMAGED_DIR: &str = "damaged";

/// A segment as known after open: its file handles and metadata.
#[derive(Debug, Clone)]
pub(crate) struct OpenedSegment {
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<dyn IoFile>,
    pub len: u64,
    pub next_offset: u64,
    pub first_time: Option<u64>,
    pub last_time: Option<u64>,
    pub entries: Vec<IndexEntry>,
}

/// The active segment's index file, ready for appends.
#[derive(Debug)]
pub(crate) struct ActiveIndex {
    pub file: Arc<dyn IoFile>,
    pub len: u64,
    pub last_indexed: Option<u64>,
}

/// What opening a log found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Segments found (after creating the first one for a new log).
    pub segments: usize,
    /// Bytes of the active segment scanned (the part after its last index entry).
    pub scanned_bytes: u64,
    /// Set when a torn tail was cut.
    pub torn_tail: Option<TornTail>,
    /// Index files that were missing or damaged and were rebuilt.
    pub indexes_rebuilt: Vec<PathBuf>,
}

/// A torn tail cut during recovery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TornTail {
    /// The active segment.
    pub segment: PathBuf,
    /// Where the cut was made (new file length).
    pub position: u64,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// Offset of the last record kept in the log (None when the log is empty).
    pub last_offset_kept: Option<u64>,
    /// What was wrong at `position`.
    pub detail: String,
    /// True when the cut was inside the part a sync mark said was durable: not a crash
    /// artifact but damage to acknowledged data (logged as an error).
    pub synced_data_lost: bool,
    /// Where the cut bytes were kept, when valid-looking frames followed the damage.
    pub moved_to: Option<PathBuf>,
}

/// Offsets that a repair declared lost: `[from, to)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gap {
    /// First missing offset.
    pub from: u64,
    /// One past the last missing offset.
    pub to: u64,
    /// Where the damaged bytes were moved (relative to the event set's directory); empty when
    /// there was nothing to move (a segment file was missing).
    pub moved_to: String,
}

/// The repair manifest: gaps in the offset chain that the operator accepted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Repairs {
    /// Accepted gaps, in offset order.
    pub gaps: Vec<Gap>,
}

impl Repairs {
    /// Whether a repair accepted the offsets `[from, to)` as lost.
    pub fn accepts(&self, from: u64, to: u64) -> bool {
        self.gaps.iter().any(|g| g.from == from && g.to == to)
    }
}

/// A segment as a chain check sees it: its base offset and the offset after its last record,
/// or `None` when it is damaged (where it really ends is unknown; the damage is reported
/// instead of a gap).
#[derive(Debug, Clone, Copy)]
pub struct ChainLink {
    /// Base offset (from the file name).
    pub base: u64,
    /// One past the last record, when known.
    pub end: Option<u64>,
}

/// Breaks in a chain of segments (oldest first) that no repair accepted, as
/// `(index of the segment before the break, first missing offset, next segment's base)`.
pub fn unaccepted_breaks(links: &[ChainLink], repairs: &Repairs) -> Vec<(usize, u64, u64)> {
    links
        .windows(2)
        .enumerate()
        .filter_map(|(i, w)| {
            let end = w[0].end?;
            (end != w[1].base && !repairs.accepts(end, w[1].base)).then_some((i, end, w[1].base))
        })
        .collect()
}

/// How a chain break is reported: the segment that ends early and the one after it.
pub fn break_message(prev: &Path, next: &Path, end: u64, base: u64) -> String {
    format!(
        "{} ends before offset {end}, next segment {} starts at {base}",
        prev.display(),
        next.display()
    )
}

pub(crate) struct Opened {
    pub lock: LockGuard,
    pub segments: Vec<OpenedSegment>,
    pub active_index: ActiveIndex,
    pub report: RecoveryReport,
    pub repairs: Repairs,
}

fn io_op<T>(op: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(op, path, e))
}

/// Segment base offsets present in `dir`, sorted; also removes index and id index files
/// without a segment and leftover temporary files (all can only be debris of an interrupted
/// operation).
pub(crate) fn list_segments(io: &dyn Io, dir: &Path, tidy: bool) -> Result<Vec<u64>> {
    let names = io_op("list", dir, io.list_dir(dir))?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();
    if tidy {
        let mut removed = false;
        for n in &names {
            let orphan_index = parse_index_name(n)
                .or_else(|| parse_ids_name(n))
                .is_some_and(|b| bases.binary_search(&b).is_err());
            if orphan_index || n.ends_with(".tmp") {
                let p = dir.join(n);
                io_op("remove", &p, io.remove_file(&p))?;
                removed = true;
            }
        }
        if removed {
            io_op("fsync dir", dir, io.sync_dir(dir))?;
        }
    }
    Ok(bases)
}

pub(crate) fn load_repairs(io: &dyn Io, dir: &Path) -> Result<Repairs> {
    let path = dir.join(REPAIRS_FILE);
    if !io.exists(&path) {
        return Ok(Repairs::default());
    }
    let f = io_op("open", &path, io.open(&path, false))?;
    let len = io_op("stat", &path, f.len())? as usize;
    let mut buf = vec![0u8; len];
    io_op("read", &path, read_exact_at(f.as_ref(), &mut buf, 0))?;
    serde_json::from_slice(&buf).map_err(|e| Error::Corrupt {
        path,
        position: 0,
        detail: format!("unreadable repair manifest: {e}"),
    })
}

/// Copies `file[from..to)` into `damaged/` under a name no earlier copy uses, fsynced, and
/// returns its path and the bytes. Used before any cut that would drop bytes that look valid.
pub(crate) fn save_aside(
    io: &dyn Io,
    dir: &Path,
    path: &Path,
    file: &dyn IoFile,
    from: u64,
    to: u64,
) -> Result<(PathBuf, Vec<u8>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ddir = dir.join(DAMAGED_DIR);
    if !io.exists(&ddir) {
        io_op("create dir", &ddir, io.create_dir_all(&ddir))?;
        io_op("fsync dir", dir, io.sync_dir(dir))?;
    }
    let mut moved = ddir.join(format!("{name}.at-{from}"));
    let mut n = 1;
    while io.exists(&moved) {
        moved = ddir.join(format!("{name}.at-{from}.{n}"));
        n += 1;
    }
    let mut bytes = vec![0u8; (to - from) as usize];
    io_op("read", path, read_exact_at(file, &mut bytes, from))?;
    let f = io_op("create", &moved, io.open(&moved, true))?;
    io_op("write", &moved, f.write_all_at(&bytes, 0))?;
    io_op("fdatasync", &moved, f.sync_data())?;
    io_op("fsync dir", &ddir, io.sync_dir(&ddir))?;
    Ok((moved, bytes))
}

/// Writes a small file atomically: tmp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(io: &dyn Io, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let f = io_op("create", &tmp, io.open(&tmp, true))?;
    io_op("truncate", &tmp, f.set_len(0))?;
    io_op("write", &tmp, f.write_all_at(bytes, 0))?;
    io_op("fdatasync", &tmp, f.sync_data())?;
    io_op("rename", &dst, io.rename(&tmp, &dst))?;
    io_op("fsync dir", dir, io.sync_dir(dir))
}

fn index_bytes(base: u64, entries: &[IndexEntry], seal: Option<&SealInfo>) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + (entries.len() + 1) * INDEX_ENTRY_BYTES);
    b.extend_from_slice(&encode_header(base));
    for e in entries {
        b.extend_from_slice(&encode_entry(e));
    }
    if let Some(s) = seal {
        b.extend_from_slice(&encode_seal(s));
    }
    b
}

/// Creates a new empty segment and its index; fsyncs both files and the directory.
pub(crate) fn create_segment(
    io: &dyn Io,
    dir: &Path,
    base: u64,
) -> Result<(Arc<dyn IoFile>, ActiveIndex, PathBuf)> {
    let path = dir.join(segment_file_name(base));
    let ipath = dir.join(index_file_name(base));
    let file = io_op("create", &path, io.open(&path, true))?;
    let idx = io_op("create", &ipath, io.open(&ipath, true))?;
    io_op("truncate", &ipath, idx.set_len(0))?;
    io_op("write", &ipath, idx.write_all_at(&encode_header(base), 0))?;
    io_op("fdatasync", &path, file.sync_data())?;
    io_op("fdatasync", &ipath, idx.sync_data())?;
    io_op("fsync dir", dir, io.sync_dir(dir))?;
    Ok((
        file,
        ActiveIndex {
            file: idx,
            len: index::INDEX_HEADER_BYTES as u64,
            last_indexed: None,
        },
        path,
    ))
}

/// Opens (creating if needed) the log in `dir`.
pub(crate) fn open_dir(io: &dyn Io, dir: &Path, index_interval_bytes: u64) -> Result<Opened> {
    create_dir_durably(io, dir)?;
    let lock = lock_dir(io, dir)?;
    let repairs = load_repairs(io, dir)?;
    let bases = list_segments(io, dir, true)?;
    let mut report = RecoveryReport::default();
    let mut segments: Vec<OpenedSegment> = Vec::with_capacity(bases.len().max(1));
    let Some((&last_base, sealed_bases)) = bases.split_last() else {
        let (file, active_index, path) = create_segment(io, dir, 0)?;
        segments.push(OpenedSegment {
            base: 0,
            path,
            file,
            len: 0,
            next_offset: 0,
            first_time: None,
            last_time: None,
            entries: Vec::new(),
        });
        report.segments = 1;
        return Ok(Opened {
            lock,
            segments,
            active_index,
            report,
            repairs,
        });
    };
    let mut prev_time = 0u64;
    for &base in sealed_bases {
        let seg = open_sealed(io, dir, base, prev_time, index_interval_bytes, &mut report)?;
        check_chain(&segments, &seg, &repairs)?;
        prev_time = seg.last_time.unwrap_or(prev_time);
        segments.push(seg);
    }
    let (seg, active_index) = open_active(
        io,
        dir,
        last_base,
        prev_time,
        index_interval_bytes,
        &mut report,
    )?;
    check_chain(&segments, &seg, &repairs)?;
    segments.push(seg);
    report.segments = segments.len();
    Ok(Opened {
        lock,
        segments,
        active_index,
        report,
        repairs,
    })
}

/// Name of the lock file in an event set's directory.
pub const LOCK_FILE: &str = "LOCK";

/// Takes the directory's exclusive lock: one process (one `EventLog`, or one repair) at a time.
pub(crate) fn lock_dir(io: &dyn Io, dir: &Path) -> Result<LockGuard> {
    let path = dir.join(LOCK_FILE);
    io.lock(&path).map_err(|e| Error::io("lock", path, e))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each directory created so
/// the new entries survive a power loss.
fn create_dir_durably(io: &dyn Io, dir: &Path) -> Result<()> {
    if io.exists(dir) {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !io.exists(a))
        .collect();
    io_op("create dir", dir, io.create_dir_all(dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            io_op("fsync dir", parent, io.sync_dir(parent))?;
        }
    }
    Ok(())
}

fn check_chain(segments: &[OpenedSegment], next: &OpenedSegment, repairs: &Repairs) -> Result<()> {
    let Some(prev) = segments.last() else {
        return Ok(());
    };
    if prev.next_offset == next.base || repairs.accepts(prev.next_offset, next.base) {
        return Ok(());
    }
    Err(Error::Corrupt {
        path: next.path.clone(),
        position: 0,
        detail: format!(
            "gap in the offset chain: {} ends before offset {}, but this segment starts at {} \
             (run `eventbus inspect DIR --verify`, then `--repair` to accept the loss)",
            prev.path.display(),
            prev.next_offset,
            next.base
        ),
    })
}

fn open_sealed(
    io: &dyn Io,
    dir: &Path,
    base: u64,
    prev_time: u64,
    interval: u64,
    report: &mut RecoveryReport,
) -> Result<OpenedSegment> {
    let path = dir.join(segment_file_name(base));
    let ipath = dir.join(index_file_name(base));
    let file = io_op("open", &path, io.open(&path, false))?;
    let len = io_op("stat", &path, file.len())?;
    if io.exists(&ipath) {
        let ifile = io_op("open", &ipath, io.open(&ipath, false))?;
        let contents = io_op("read", &ipath, index::read_index(ifile.as_ref(), base))?;
        if let Some(seal) = contents.seal {
            let first = contents.entries.first();
            if seal.end_position == len && first.is_some_and(|f| f.offset == base) {
                return Ok(OpenedSegment {
                    base,
                    path,
                    file,
                    len,
                    next_offset: seal.last_offset + 1,
                    first_time: first.map(|f| f.ingest_time_ms),
                    last_time: Some(seal.last_time_ms),
                    entries: contents.entries,
                });
            }
        }
    }
    // No usable seal: validate the whole segment and write a fresh sealed index.
    let scan = scan_whole(file.as_ref(), &path, base, prev_time, interval)?;
    if let Some(stop) = &scan.stop {
        return Err(Error::Corrupt {
            path,
            position: stop.position,
            detail: format!(
                "{} (in a sealed segment: run `eventbus inspect DIR --verify`, then `--repair`)",
                stop.detail
            ),
        });
    }
    let Some((last_offset, last_time)) = scan.last else {
        return Err(Error::Corrupt {
            path,
            position: 0,
            detail: "sealed segment holds no records".into(),
        });
    };
    let seal = SealInfo {
        last_offset,
        end_position: len,
        last_time_ms: last_time,
    };
    write_atomic(
        io,
        dir,
        &index_file_name(base),
        &index_bytes(base, &scan.entries, Some(&seal)),
    )?;
    report.indexes_rebuilt.push(ipath);
    Ok(OpenedSegment {
        base,
        path,
        file,
        len,
        next_offset: last_offset + 1,
        first_time: scan.first.map(|f| f.1),
        last_time: Some(last_time),
        entries: scan.entries,
    })
}

fn scan_whole(
    file: &dyn IoFile,
    path: &Path,
    base: u64,
    prev_time: u64,
    interval: u64,
) -> Result<ScanReport> {
    scan_segment(
        file,
        path,
        ScanStart {
            position: 0,
            offset: base,
            min_time_ms: prev_time,
            last_indexed: None,
        },
        interval,
    )
}

/// Whether the record at `e.position` is really the one the index entry claims.
fn entry_holds(file: &dyn IoFile, e: &IndexEntry) -> bool {
    matches!(
        read_header_at(file, e.position),
        Some((offset, time)) if offset == e.offset && time == e.ingest_time_ms
    )
}

/// Offset and ingest time of the valid frame at `position`, if there is one.
pub(crate) fn read_header_at(file: &dyn IoFile, position: u64) -> Option<(u64, u64)> {
    use super::frame::{FRAME_HEADER_BYTES, FrameDecode, MAX_FRAME_PAYLOAD_BYTES, decode_frame};
    let mut header = [0u8; FRAME_HEADER_BYTES];
    read_exact_at(file, &mut header, position).ok()?;
    let plen = u32::from_le_bytes(header[..4].try_into().ok()?);
    if plen == 0 || plen > MAX_FRAME_PAYLOAD_BYTES {
        return None;
    }
    let mut buf = vec![0u8; FRAME_HEADER_BYTES + plen as usize];
    read_exact_at(file, &mut buf, position).ok()?;
    match decode_frame(&buf) {
        FrameDecode::Frame { payload, .. } => crate::codec::decode_record_header(payload).ok(),
        _ => None,
    }
}

fn open_active(
    io: &dyn Io,
    dir: &Path,
    base: u64,
    prev_time: u64,
    interval: u64,
    report: &mut RecoveryReport,
) -> Result<(OpenedSegment, ActiveIndex)> {
    let path = dir.join(segment_file_name(base));
    let ipath = dir.join(index_file_name(base));
    let file = io_op("open", &path, io.open(&path, false))?;
    let ifile = io_op("open", &ipath, io.open(&ipath, true))?;
    let contents = io_op("read", &ipath, index::read_index(ifile.as_ref(), base))?;
    // Only entries below the last sync mark point at bytes known to have been durable; a
    // crash may have persisted later index pages without the data they describe.
    let synced_to = contents.synced.map(|m| m.position).unwrap_or(0);
    let mut entries: Vec<IndexEntry> = contents
        .entries
        .iter()
        .copied()
        .filter(|e| e.position < synced_to)
        .collect();
    while let Some(last) = entries.last() {
        if entry_holds(file.as_ref(), last) {
            break;
        }
        entries.pop();
    }
    let start = match entries.last() {
        Some(e) => ScanStart {
            position: e.position,
            offset: e.offset,
            min_time_ms: e.ingest_time_ms,
            last_indexed: Some(e.position),
        },
        None => ScanStart {
            position: 0,
            offset: base,
            min_time_ms: prev_time,
            last_indexed: None,
        },
    };
    let file_len = io_op("stat", &path, file.len())?;
    report.scanned_bytes = file_len - start.position;
    let scan = scan_segment(file.as_ref(), &path, start, interval)?;
    let last_kept = scan.last.map(|l| l.0).or(base.checked_sub(1));
    let mut len = file_len;
    if let Some(stop) = &scan.stop {
        if stop.unsupported {
            return Err(Error::Corrupt {
                path,
                position: stop.position,
                detail: stop.detail.clone(),
            });
        }
        let after = scan.last.map(|l| l.0);
        let resumes = find_valid_frame_after(file.as_ref(), &path, stop.position, after)?;
        if let Some(p) = resumes.filter(|_| stop.position < synced_to) {
            return Err(Error::Corrupt {
                path,
                position: stop.position,
                detail: format!(
                    "{}; valid records follow at byte {p} inside the part of the segment that \
                     was fsynced, so this is not a torn tail (run `eventbus inspect DIR \
                     --verify`, then `--repair`)",
                    stop.detail
                ),
            });
        }
        // Past the last sync mark nothing was acknowledged: a crash can leave any mix of
        // written and unwritten pages there. Valid-looking frames after the damage are kept
        // aside as evidence rather than deleted.
        let moved_to = match resumes {
            Some(_) => Some(save_aside(io, dir, &path, file.as_ref(), stop.position, file_len)?.0),
            None => None,
        };
        io_op("truncate", &path, file.set_len(stop.position))?;
        io_op("fdatasync", &path, file.sync_data())?;
        len = stop.position;
        let torn = TornTail {
            segment: path.clone(),
            position: stop.position,
            bytes_cut: file_len - stop.position,
            last_offset_kept: if scan.last.is_some() || base > 0 {
                last_kept
            } else {
                None
            },
            detail: stop.detail.clone(),
            synced_data_lost: stop.position < synced_to,
            moved_to,
        };
        if torn.synced_data_lost {
            tracing::error!(
                segment = %torn.segment.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                synced_to,
                "recovery cut a damaged tail inside data that had been fsynced: acknowledged \
                 events may be lost (disk or external damage): {}",
                torn.detail
            );
        } else {
            tracing::warn!(
                segment = %torn.segment.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                last_offset_kept = ?torn.last_offset_kept,
                "recovery cut a torn tail: {}",
                torn.detail
            );
        }
        report.torn_tail = Some(torn);
    }
    let index_changed = contents.damaged
        || contents.seal.is_some()
        || entries.len() != contents.entries.len()
        || !scan.entries.is_empty();
    entries.extend(scan.entries.iter().copied());
    let (next_offset, last_time) = match scan.last {
        Some((o, t)) => (o + 1, Some(t)),
        None => (base, None),
    };
    // `scan.last` is None only when nothing valid follows the start entry, which was just
    // validated, so with entries present the scan always saw at least that record.
    let first_time = entries.first().map(|e| e.ingest_time_ms);
    if index_changed {
        let bytes = index_bytes(base, &entries, None);
        io_op("truncate", &ipath, ifile.set_len(0))?;
        io_op("write", &ipath, ifile.write_all_at(&bytes, 0))?;
        io_op("fdatasync", &ipath, ifile.sync_data())?;
        if contents.damaged || contents.valid_bytes == 0 {
            report.indexes_rebuilt.push(ipath.clone());
        }
    }
    let ilen = io_op("stat", &ipath, ifile.len())?;
    let last_indexed = entries.last().map(|e| e.position);
    Ok((
        OpenedSegment {
            base,
            path,
            file,
            len,
            next_offset,
            first_time,
            last_time,
            entries,
        },
        ActiveIndex {
            file: ifile,
            len: ilen,
            last_indexed,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Offline verification and repair
// ---------------------------------------------------------------------------------------------

/// One segment as `verify` saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// Base offset from the file name.
    pub base_offset: u64,
    /// File length.
    pub bytes: u64,
    /// Valid records.
    pub records: u64,
    /// First record's offset and ingest time.
    pub first_offset: Option<u64>,
    /// First ingest time.
    pub first_time_ms: Option<u64>,
    /// Last record's offset.
    pub last_offset: Option<u64>,
    /// Last ingest time.
    pub last_time_ms: Option<u64>,
    /// Whether this is the active (last) segment.
    pub active: bool,
    /// Damage found, if any.
    pub damage: Option<Damage>,
}

/// Damage found by `verify`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Damage {
    /// Byte position of the first bad frame.
    pub position: u64,
    /// What is wrong.
    pub detail: String,
    /// Position of the next valid frame after the damage, if any.
    pub resumes_at: Option<u64>,
}

/// `verify`'s findings for one event set directory.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Gaps between segments that no repair accepted.
    pub gaps: Vec<String>,
    /// Gaps accepted by an earlier repair.
    pub accepted_gaps: Vec<Gap>,
}

impl VerifyReport {
    /// True when nothing is damaged and the chain has no unaccepted gap. A torn tail of the
    /// active segment counts as damage here; opening the log would cut it.
    pub fn is_clean(&self) -> bool {
        self.gaps.is_empty() && self.segments.iter().all(|s| s.damage.is_none())
    }
}

/// Reads every frame of every segment in `dir` (read-only) and reports what it finds.
pub fn verify(io: &dyn Io, dir: &Path) -> Result<VerifyReport> {
    let repairs = load_repairs(io, dir)?;
    let bases = list_segments(io, dir, false)?;
    let mut out = VerifyReport {
        accepted_gaps: repairs.gaps.clone(),
        ..Default::default()
    };
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(segment_file_name(base));
        let file = io_op("open", &path, io.open(&path, false))?;
        let bytes = io_op("stat", &path, file.len())?;
        let scan = scan_whole(file.as_ref(), &path, base, 0, u64::MAX)?;
        let damage = match &scan.stop {
            Some(stop) => Some(Damage {
                position: stop.position,
                detail: stop.detail.clone(),
                resumes_at: find_valid_frame_after(
                    file.as_ref(),
                    &path,
                    stop.position,
                    scan.last.map(|l| l.0),
                )?,
            }),
            None => None,
        };
        out.segments.push(SegmentReport {
            path,
            base_offset: base,
            bytes,
            records: scan.records,
            first_offset: scan.first.map(|f| f.0),
            first_time_ms: scan.first.map(|f| f.1),
            last_offset: scan.last.map(|l| l.0),
            last_time_ms: scan.last.map(|l| l.1),
            active: i + 1 == bases.len(),
            damage,
        });
    }
    let links: Vec<ChainLink> = out.segments.iter().map(SegmentReport::link).collect();
    for (i, end, base) in unaccepted_breaks(&links, &repairs) {
        let msg = break_message(&out.segments[i].path, &out.segments[i + 1].path, end, base);
        out.gaps.push(msg);
    }
    Ok(out)
}

impl SegmentReport {
    /// This segment as a link of the offset chain.
    pub fn link(&self) -> ChainLink {
        ChainLink {
            base: self.base_offset,
            end: self
                .damage
                .is_none()
                .then(|| self.last_offset.map_or(self.base_offset, |o| o + 1)),
        }
    }
}

/// What `repair` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RepairReport {
    /// Damaged byte ranges moved aside, as `(segment, position, moved_to)`.
    pub moved: Vec<(PathBuf, u64, PathBuf)>,
    /// Segments created from valid records found after damage.
    pub split_segments: Vec<PathBuf>,
    /// Offsets declared lost.
    pub gaps: Vec<Gap>,
}

/// Repairs `dir` (the log must not be open): for each damaged segment, the bytes from the
/// damage to the end of the file are copied to `damaged/`, the segment is cut at the damage,
/// and valid records found after the damage become a new segment named by their first offset.
/// The offsets in between are recorded as an accepted gap in `REPAIRS.json`, so the log opens
/// and everything that survived stays readable. A gap left by a missing segment file is recorded
/// the same way (with nothing to move). Nothing is deleted.
pub fn repair(io: &dyn Io, dir: &Path) -> Result<RepairReport> {
    let _lock = lock_dir(io, dir)?;
    let mut out = RepairReport::default();
    let mut repairs = load_repairs(io, dir)?;
    loop {
        let report = verify(io, dir)?;
        let Some(seg) = report.segments.iter().find(|s| s.damage.is_some()) else {
            break;
        };
        let damage = seg.damage.clone().expect("damaged segment");
        let file = io_op("open", &seg.path, io.open(&seg.path, false))?;
        let (moved, rest) = save_aside(
            io,
            dir,
            &seg.path,
            file.as_ref(),
            damage.position,
            seg.bytes,
        )?;
        let lost_from = seg.last_offset.map(|o| o + 1).unwrap_or(seg.base_offset);
        let mut lost_to = None;
        if let Some(p) = damage.resumes_at {
            // The valid records after the damage become their own segment.
            let tail = &rest[(p - damage.position) as usize..];
            let first = match super::frame::decode_frame(tail) {
                super::frame::FrameDecode::Frame { payload, .. } => {
                    crate::codec::decode_record_header(payload)?.0
                }
                _ => unreachable!("resumes_at points at a valid frame"),
            };
            let npath = dir.join(segment_file_name(first));
            if io.exists(&npath) {
                // The "valid" frames after the damage claim offsets another segment holds:
                // they are not trustworthy, and overwriting that segment would destroy data.
                return Err(Error::Corrupt {
                    path: seg.path.clone(),
                    position: p,
                    detail: format!(
                        "records after the damage claim offset {first}, which {} already \
                         holds; repair stopped without changing anything more",
                        npath.display()
                    ),
                });
            }
            let nf = io_op("create", &npath, io.open(&npath, true))?;
            io_op("truncate", &npath, nf.set_len(0))?;
            io_op("write", &npath, nf.write_all_at(tail, 0))?;
            io_op("fdatasync", &npath, nf.sync_data())?;
            out.split_segments.push(npath);
            lost_to = Some(first);
        } else if !seg.active {
            lost_to = report
                .segments
                .iter()
                .find(|s| s.base_offset > seg.base_offset)
                .map(|s| s.base_offset);
        }
        let moved_rel = moved
            .strip_prefix(dir)
            .unwrap_or(&moved)
            .to_string_lossy()
            .into_owned();
        if let Some(to) = lost_to.filter(|&to| to > lost_from) {
            let gap = Gap {
                from: lost_from,
                to,
                moved_to: moved_rel,
            };
            repairs.gaps.push(gap.clone());
            out.gaps.push(gap);
            let json =
                serde_json::to_vec_pretty(&repairs).map_err(|e| Error::Codec(e.to_string()))?;
            write_atomic(io, dir, REPAIRS_FILE, &json)?;
        }
        // Cut the damaged segment; drop its index (rebuilt on open) and its id index (rebuilt
        // by the next lookup). An empty segment is removed.
        for name in [
            index_file_name(seg.base_offset),
            ids_file_name(seg.base_offset),
        ] {
            let p = dir.join(name);
            if io.exists(&p) {
                io_op("remove", &p, io.remove_file(&p))?;
            }
        }
        if damage.position == 0 && (!seg.active || damage.resumes_at.is_some()) {
            // Nothing valid before the damage: the segment goes (its offsets are in the gap).
            // The active segment stays, emptied, when nothing follows: its name keeps the
            // next offset, so offsets are never reused.
            io_op("remove", &seg.path, io.remove_file(&seg.path))?;
        } else {
            io_op("truncate", &seg.path, file.set_len(damage.position))?;
            io_op("fdatasync", &seg.path, file.sync_data())?;
        }
        io_op("fsync dir", dir, io.sync_dir(dir))?;
        out.moved.push((seg.path.clone(), damage.position, moved));
    }
    // What is left are gaps no damage explains (a segment file went missing): record them.
    let report = verify(io, dir)?;
    let links: Vec<ChainLink> = report.segments.iter().map(SegmentReport::link).collect();
    let missing: Vec<Gap> = unaccepted_breaks(&links, &repairs)
        .into_iter()
        .filter(|&(_, from, to)| from < to)
        .map(|(_, from, to)| Gap {
            from,
            to,
            moved_to: String::new(),
        })
        .collect();
    if !missing.is_empty() {
        repairs.gaps.extend(missing.iter().cloned());
        out.gaps.extend(missing);
        let json = serde_json::to_vec_pretty(&repairs).map_err(|e| Error::Codec(e.to_string()))?;
        write_atomic(io, dir, REPAIRS_FILE, &json)?;
    }
    Ok(out)
}
