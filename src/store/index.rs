//! The sparse per-segment index: offset → file position and ingest time, one entry every
//! `index_interval_bytes` of log, so reads by offset or by time seek instead of scanning.
//!
//! File `{base:020}.idx`: a 16-byte header then 32-byte entries, each with its own CRC, appended
//! as the segment grows (not fsynced: the index is derived data and is checked and rebuilt on
//! open). When a segment is sealed a final *seal* entry records its last offset, end position
//! and last time, and the file is fsynced, so opening a log never scans sealed segments.

use super::io::IoFile;

/// Magic at the start of every index file.
pub const INDEX_MAGIC: &[u8; 5] = b"EBIDX";
/// Index format version.
pub const INDEX_VERSION: u8 = 1;
/// Header size in bytes.
pub const INDEX_HEADER_BYTES: usize = 16;
/// Entry size in bytes.
pub const INDEX_ENTRY_BYTES: usize = 32;

const KIND_POINT: u8 = 1;
const KIND_SEAL: u8 = 2;
const KIND_SYNC: u8 = 3;

/// One index point: the record with `offset` starts at byte `position` of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Record offset.
    pub offset: u64,
    /// Byte position of the record's frame in the segment file.
    pub position: u64,
    /// The record's ingest time (epoch ms).
    pub ingest_time_ms: u64,
}

/// The seal of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealInfo {
    /// Offset of the segment's last record (`base - 1` for an empty segment is not sealed).
    pub last_offset: u64,
    /// Length of the segment file.
    pub end_position: u64,
    /// Ingest time of the last record.
    pub last_time_ms: u64,
}

/// A sync mark: written after an fdatasync of the active segment returned, it says the
/// segment's first `position` bytes (records up to `last_offset`) were durable. Recovery treats
/// damage before the last mark as corruption and damage after it as a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMark {
    /// Offset of the last durable record.
    pub last_offset: u64,
    /// Durable length of the segment file.
    pub position: u64,
}

/// What an index file holds, up to its first damaged byte.
#[derive(Debug, Default, Clone)]
pub struct IndexContents {
    /// Valid point entries, in order.
    pub entries: Vec<IndexEntry>,
    /// The seal, if the file has a valid one as its last entry.
    pub seal: Option<SealInfo>,
    /// The last sync mark.
    pub synced: Option<SyncMark>,
    /// Bytes of the file that are valid (header + good entries).
    pub valid_bytes: u64,
    /// True when bytes after `valid_bytes` were not valid entries.
    pub damaged: bool,
}

/// The 16-byte header for the index of the segment starting at `base_offset`.
pub fn encode_header(base_offset: u64) -> [u8; INDEX_HEADER_BYTES] {
    let mut h = [0u8; INDEX_HEADER_BYTES];
    h[..5].copy_from_slice(INDEX_MAGIC);
    h[5] = INDEX_VERSION;
    h[8..16].copy_from_slice(&base_offset.to_le_bytes());
    h
}

fn encode_raw(kind: u8, a: u64, b: u64, c: u64) -> [u8; INDEX_ENTRY_BYTES] {
    let mut e = [0u8; INDEX_ENTRY_BYTES];
    e[0] = kind;
    e[8..16].copy_from_slice(&a.to_le_bytes());
    e[16..24].copy_from_slice(&b.to_le_bytes());
    e[24..32].copy_from_slice(&c.to_le_bytes());
    let crc = entry_crc(&e);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e
}

fn entry_crc(e: &[u8; INDEX_ENTRY_BYTES]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&e[0..4]);
    h.update(&e[8..32]);
    h.finalize()
}

/// Encodes a point entry.
pub fn encode_entry(entry: &IndexEntry) -> [u8; INDEX_ENTRY_BYTES] {
    encode_raw(
        KIND_POINT,
        entry.offset,
        entry.position,
        entry.ingest_time_ms,
    )
}

/// Encodes a seal entry.
pub fn encode_seal(seal: &SealInfo) -> [u8; INDEX_ENTRY_BYTES] {
    encode_raw(
        KIND_SEAL,
        seal.last_offset,
        seal.end_position,
        seal.last_time_ms,
    )
}

/// Encodes a sync mark.
pub fn encode_sync_mark(mark: &SyncMark) -> [u8; INDEX_ENTRY_BYTES] {
    encode_raw(KIND_SYNC, mark.last_offset, mark.position, 0)
}

/// Parses an index file's bytes for the segment at `base_offset`. Stops at the first invalid
/// entry; entries must be strictly increasing in offset and position.
pub fn parse_index(bytes: &[u8], base_offset: u64) -> IndexContents {
    let mut out = IndexContents::default();
    if bytes.len() < INDEX_HEADER_BYTES || bytes[..INDEX_HEADER_BYTES] != encode_header(base_offset)
    {
        out.damaged = !bytes.is_empty();
        return out;
    }
    out.valid_bytes = INDEX_HEADER_BYTES as u64;
    let mut rest = &bytes[INDEX_HEADER_BYTES..];
    while rest.len() >= INDEX_ENTRY_BYTES {
        let e: [u8; INDEX_ENTRY_BYTES] = rest[..INDEX_ENTRY_BYTES].try_into().expect("32 bytes");
        let crc = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
        if crc != entry_crc(&e) || e[1..4] != [0, 0, 0] || out.seal.is_some() {
            out.damaged = true;
            return out;
        }
        let a = u64::from_le_bytes(e[8..16].try_into().expect("8"));
        let b = u64::from_le_bytes(e[16..24].try_into().expect("8"));
        let c = u64::from_le_bytes(e[24..32].try_into().expect("8"));
        match e[0] {
            KIND_POINT => {
                let ok = match out.entries.last() {
                    Some(prev) => a > prev.offset && b > prev.position,
                    None => a == base_offset && b == 0,
                };
                if !ok {
                    out.damaged = true;
                    return out;
                }
                out.entries.push(IndexEntry {
                    offset: a,
                    position: b,
                    ingest_time_ms: c,
                });
            }
            KIND_SYNC => {
                let ok = a >= base_offset
                    && out
                        .synced
                        .is_none_or(|m| a >= m.last_offset && b >= m.position);
                if !ok {
                    out.damaged = true;
                    return out;
                }
                out.synced = Some(SyncMark {
                    last_offset: a,
                    position: b,
                });
            }
            KIND_SEAL => {
                if a < base_offset {
                    out.damaged = true;
                    return out;
                }
                out.seal = Some(SealInfo {
                    last_offset: a,
                    end_position: b,
                    last_time_ms: c,
                });
            }
            _ => {
                out.damaged = true;
                return out;
            }
        }
        out.valid_bytes += INDEX_ENTRY_BYTES as u64;
        rest = &rest[INDEX_ENTRY_BYTES..];
    }
    out.damaged = !rest.is_empty();
    out
}

/// Reads and parses a whole index file.
pub fn read_index(file: &dyn IoFile, base_offset: u64) -> std::io::Result<IndexContents> {
    let len = file.len()? as usize;
    let mut bytes = vec![0u8; len];
    super::io::read_exact_at(file, &mut bytes, 0)?;
    Ok(parse_index(&bytes, base_offset))
}

/// The last entry at or before `offset`.
pub fn lookup_offset(entries: &[IndexEntry], offset: u64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.offset <= offset);
    i.checked_sub(1).map(|i| entries[i])
}

/// The last entry whose ingest time is before `time_ms`: scanning from it finds the first
/// record at or after `time_ms` (ingest times never decrease along the log).
pub fn lookup_time(entries: &[IndexEntry], time_ms: u64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.ingest_time_ms < time_ms);
    i.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(base: u64) -> (Vec<u8>, Vec<IndexEntry>) {
        let entries: Vec<IndexEntry> = (0..5)
            .map(|i| IndexEntry {
                offset: base + i * 10,
                position: i * 4096,
                ingest_time_ms: 1000 + i * 5,
            })
            .collect();
        let mut bytes = encode_header(base).to_vec();
        for e in &entries {
            bytes.extend_from_slice(&encode_entry(e));
        }
        (bytes, entries)
    }

    #[test]
    fn index_round_trips_with_seal() {
        let (mut bytes, entries) = sample(100);
        let seal = SealInfo {
            last_offset: 149,
            end_position: 20_000,
            last_time_ms: 1030,
        };
        let mark = SyncMark {
            last_offset: 149,
            position: 20_000,
        };
        bytes.extend_from_slice(&encode_sync_mark(&mark));
        bytes.extend_from_slice(&encode_seal(&seal));
        let got = parse_index(&bytes, 100);
        assert_eq!(got.synced, Some(mark));
        assert_eq!(got.entries, entries);
        assert_eq!(got.seal, Some(seal));
        assert!(!got.damaged);
        assert_eq!(got.valid_bytes, bytes.len() as u64);
    }

    #[test]
    fn index_torn_at_every_byte_keeps_the_valid_prefix() {
        let (bytes, entries) = sample(7);
        for cut in 0..bytes.len() {
            let got = parse_index(&bytes[..cut], 7);
            let whole = cut.saturating_sub(INDEX_HEADER_BYTES) / INDEX_ENTRY_BYTES;
            let expect = if cut < INDEX_HEADER_BYTES { 0 } else { whole };
            assert_eq!(got.entries, entries[..expect], "cut {cut}");
        }
    }

    #[test]
    fn index_bit_flip_cuts_at_the_damaged_entry() {
        let (bytes, entries) = sample(0);
        for bit in (INDEX_HEADER_BYTES * 8)..bytes.len() * 8 {
            let mut d = bytes.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let got = parse_index(&d, 0);
            let hit = (bit / 8 - INDEX_HEADER_BYTES) / INDEX_ENTRY_BYTES;
            assert_eq!(got.entries, entries[..hit], "bit {bit}");
            assert!(got.damaged);
        }
    }

    #[test]
    fn index_header_for_another_base_is_rejected() {
        let (bytes, _) = sample(5);
        let got = parse_index(&bytes, 6);
        assert!(got.entries.is_empty() && got.damaged);
    }

    #[test]
    fn index_lookups_pick_the_entry_to_scan_from() {
        let (_, entries) = sample(0);
        assert_eq!(lookup_offset(&entries, 0).unwrap().offset, 0);
        assert_eq!(lookup_offset(&entries, 19).unwrap().offset, 10);
        assert_eq!(lookup_offset(&entries, 1000).unwrap().offset, 40);
        assert_eq!(lookup_time(&entries, 1000), None);
        assert_eq!(lookup_time(&entries, 1001).unwrap().offset, 0);
        assert_eq!(lookup_time(&entries, 1010).unwrap().offset, 10);
    }
}
