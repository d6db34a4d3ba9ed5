//! Segment files: naming, and scanning frames to validate them and rebuild their index.
//!
//! A segment is `{base_offset:020}.log`: frames back to back, the first holding record
//! `base_offset`, offsets dense within the segment, ingest times never decreasing.

use std::path::Path;

use super::frame::{FrameDecode, decode_frame};
use super::index::IndexEntry;
use super::io::IoFile;
use crate::codec::{RecordFormat, decode_record_header};
use crate::error::{Error, Result};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of index files.
pub const INDEX_SUFFIX: &str = ".idx";
/// Suffix of id index files (see [`super::ids`]).
pub const IDS_SUFFIX: &str = ".ids";

/// `{base:020}.log`
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SEGMENT_SUFFIX}")
}

/// `{base:020}.idx`
pub fn index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{INDEX_SUFFIX}")
}

/// `{base:020}.ids`
pub fn ids_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{IDS_SUFFIX}")
}

fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The base offset of a segment file name, or None when the name is not exactly
/// twenty decimal digits followed by `.log`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_name(name, SEGMENT_SUFFIX)
}

/// The base offset of an index file name (same rule with `.idx`).
pub fn parse_index_name(name: &str) -> Option<u64> {
    parse_name(name, INDEX_SUFFIX)
}

/// The base offset of an id index file name (same rule with `.ids`).
pub fn parse_ids_name(name: &str) -> Option<u64> {
    parse_name(name, IDS_SUFFIX)
}

/// Where and why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    /// Byte position of the first bad frame.
    pub position: u64,
    /// What is wrong there.
    pub detail: String,
    /// The frame's CRC is valid but its record cannot be decoded (an unknown format version,
    /// e.g. written by a newer eventbus). Never a crash artifact: must not be cut.
    pub unsupported: bool,
}

/// The result of scanning a segment from some position to its end.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// Position after the last valid frame.
    pub end: u64,
    /// Valid records seen.
    pub records: u64,
    /// Offset and ingest time of the first record seen.
    pub first: Option<(u64, u64)>,
    /// Offset and ingest time of the last record seen.
    pub last: Option<(u64, u64)>,
    /// Index entries for the records seen (spaced by the interval).
    pub entries: Vec<IndexEntry>,
    /// Set when the scan hit something other than a clean end of file.
    pub stop: Option<ScanStop>,
}

/// What a scan starts from.
#[derive(Debug, Clone, Copy)]
pub struct ScanStart {
    /// Byte position of a frame boundary.
    pub position: u64,
    /// The offset the record at `position` must have.
    pub offset: u64,
    /// Its ingest time must be at least this.
    pub min_time_ms: u64,
    /// Position of the last index entry before `position` (None: index the first record).
    pub last_indexed: Option<u64>,
}

const SCAN_CHUNK: usize = 1 << 20;

/// Scans frames from `start` to the end of the file, checking CRCs, dense offsets and
/// non-decreasing ingest times; produces index entries every `index_interval_bytes`.
pub fn scan_segment(
    file: &dyn IoFile,
    path: &Path,
    start: ScanStart,
    index_interval_bytes: u64,
) -> Result<ScanReport> {
    let file_len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let mut report = ScanReport {
        end: start.position,
        ..Default::default()
    };
    let mut expected = start.offset;
    let mut min_time = start.min_time_ms;
    let mut last_indexed = start.last_indexed;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = start.position; // file position of buf[0]
    let mut at = 0usize; // cursor within buf
    loop {
        let pos = buf_pos + at as u64;
        if pos >= file_len {
            break;
        }
        let decoded = decode_frame(&buf[at..]);
        match decoded {
            FrameDecode::Incomplete { needed } => {
                let available = file_len - pos;
                if (needed as u64) > available {
                    // Whatever is left cannot hold the frame: a partial frame at the end.
                    let detail = if needed == super::frame::FRAME_HEADER_BYTES {
                        format!("partial frame header: {available} bytes at end of file")
                    } else {
                        format!("partial frame: needs {needed} bytes, {available} left in file")
                    };
                    report.stop = Some(ScanStop {
                        position: pos,
                        detail,
                        unsupported: false,
                    });
                    break;
                }
                // Refill: keep the unread tail, read at least the whole frame.
                buf.drain(..at);
                buf_pos = pos;
                at = 0;
                let want = (needed.max(SCAN_CHUNK) as u64).min(file_len - pos) as usize;
                let have = buf.len();
                buf.resize(want.max(have), 0);
                super::io::read_exact_at(file, &mut buf[have..], pos + have as u64)
                    .map_err(|e| Error::io("read", path, e))?;
            }
            FrameDecode::Corrupt(defect) => {
                report.stop = Some(ScanStop {
                    position: pos,
                    detail: defect.to_string(),
                    unsupported: false,
                });
                break;
            }
            FrameDecode::Frame { payload, size } => {
                let (offset, time) = match decode_record_header(payload) {
                    Ok(h) => h,
                    Err(e) => {
                        report.stop = Some(ScanStop {
                            position: pos,
                            detail: format!(
                                "frame is intact but its record cannot be decoded \
                                 (unsupported format?): {e}"
                            ),
                            unsupported: true,
                        });
                        break;
                    }
                };
                if offset != expected {
                    report.stop = Some(ScanStop {
                        position: pos,
                        detail: format!("record has offset {offset}, {expected} expected"),
                        unsupported: false,
                    });
                    break;
                }
                if time < min_time {
                    report.stop = Some(ScanStop {
                        position: pos,
                        detail: format!(
                            "record {offset} has ingest time {time} before the previous {min_time}"
                        ),
                        unsupported: false,
                    });
                    break;
                }
                if last_indexed.is_none_or(|l| pos - l >= index_interval_bytes) {
                    report.entries.push(IndexEntry {
                        offset,
                        position: pos,
                        ingest_time_ms: time,
                    });
                    last_indexed = Some(pos);
                }
                report.first.get_or_insert((offset, time));
                report.last = Some((offset, time));
                report.records += 1;
                expected = offset + 1;
                min_time = time;
                at += size;
                report.end = pos + size as u64;
            }
        }
    }
    Ok(report)
}

/// After damage at `from`, looks for any later valid frame whose record offset is greater than
/// `after_offset`. Finding one means the damage is not a torn tail: acknowledged records may
/// follow it. Returns the position of the first such frame.
pub fn find_valid_frame_after(
    file: &dyn IoFile,
    path: &Path,
    from: u64,
    after_offset: Option<u64>,
) -> Result<Option<u64>> {
    let file_len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if from + 1 >= file_len {
        return Ok(None);
    }
    let mut buf = vec![0u8; (file_len - from) as usize];
    super::io::read_exact_at(file, &mut buf, from).map_err(|e| Error::io("read", path, e))?;
    // Every frame holds at least a header, a format byte and two varints.
    const MIN_FRAME: u64 = (super::frame::FRAME_HEADER_BYTES + 3) as u64;
    let max_offset = after_offset.map_or(u64::MAX, |a| {
        a.saturating_add(buf.len() as u64 / MIN_FRAME + 1)
    });
    for i in 1..buf.len() {
        // Cheap checks first (length fits, format byte, plausible offset), so a long run of
        // garbage costs a few comparisons per byte instead of a CRC per byte.
        let rest = &buf[i..];
        if rest.len() <= super::frame::FRAME_HEADER_BYTES {
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let header = super::frame::FRAME_HEADER_BYTES;
        if len == 0 || len > rest.len() - header || rest[header] != RecordFormat::EventV1 as u8 {
            continue;
        }
        let Ok((offset, _)) = decode_record_header(&rest[header..header + len]) else {
            continue;
        };
        if offset > max_offset || after_offset.is_some_and(|a| offset <= a) {
            continue;
        }
        if let FrameDecode::Frame { .. } = decode_frame(rest) {
            return Ok(Some(from + i as u64));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_over_a_long_garbage_tail_finds_the_later_frame() {
        use crate::store::io::{Io, SimIo};
        let io = SimIo::new();
        let dir = Path::new("/d");
        io.create_dir_all(dir).unwrap();
        let path = dir.join("x.log");
        let f = io.open(&path, true).unwrap();
        // 8 MiB of pseudo-random garbage, then one valid frame for offset 7.
        let mut bytes = Vec::with_capacity(8 << 20);
        let mut x: u64 = 0x1234_5678;
        while bytes.len() < 8 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let at = bytes.len() as u64;
        let ev = crate::event::Event::new("i", "s", "t");
        let payload = crate::codec::record_payload(7, 1, &ev).unwrap();
        super::super::frame::encode_frame(&payload, &mut bytes);
        f.write_all_at(&bytes, 0).unwrap();
        let found = find_valid_frame_after(f.as_ref(), &path, 0, Some(6)).unwrap();
        assert_eq!(found, Some(at));
        assert_eq!(
            find_valid_frame_after(f.as_ref(), &path, 0, Some(7)).unwrap(),
            None
        );
    }

    #[test]
    fn segment_names_round_trip_and_parse_strictly() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_index_name(&index_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(ids_file_name(7), "00000000000000000007.ids");
        assert_eq!(parse_ids_name(&ids_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_ids_name("00000000000000000007.ids.tmp"), None);
        assert_eq!(parse_ids_name("7.ids"), None);
        for bad in [
            "42.log",
            "0000000000000000042.log",
            "000000000000000000042.log",
            "0000000000000000004a.log",
            "00000000000000000042.idx",
            "00000000000000000042.log.tmp",
            "+0000000000000000042.log",
            "99999999999999999999.log", // > u64::MAX
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
