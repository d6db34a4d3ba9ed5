//! Frame codec: `len:u32 LE | crc32(len ‖ payload):u32 LE | payload`.
//!
//! The CRC covers the length bytes too, so a flipped bit in `len` is caught by the CRC rather
//! than sending the reader off into the middle of another frame. `len` is capped before anything
//! is allocated for it.

/// Bytes of the frame header (`len` + `crc`).
pub const FRAME_HEADER_BYTES: usize = 8;

/// Largest payload a frame may carry. Events are capped far below this (64 KiB by default);
/// the cap exists so a damaged length field can never make a reader allocate gigabytes.
pub const MAX_FRAME_PAYLOAD_BYTES: u32 = 16 * 1024 * 1024;

/// Appends one frame holding `payload` to `out`.
///
/// The caller guarantees `1 <= payload.len() <= MAX_FRAME_PAYLOAD_BYTES`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_FRAME_PAYLOAD_BYTES as usize);
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&frame_crc(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends one frame whose payload is produced by `fill` (which must append at least one byte
/// and at most [`MAX_FRAME_PAYLOAD_BYTES`]); avoids building the payload in a separate buffer.
pub fn encode_frame_with<E>(
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<usize, E> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    fill(out)?;
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    debug_assert!(payload_len >= 1 && payload_len <= MAX_FRAME_PAYLOAD_BYTES as usize);
    let len = (payload_len as u32).to_le_bytes();
    let crc = frame_crc(&len, &out[start + FRAME_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(out.len() - start)
}

/// Total on-disk size of a frame with a payload of `payload_len` bytes.
pub fn frame_size(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + payload_len
}

fn frame_crc(len: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// What is at the start of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameDecode<'a> {
    /// A whole, valid frame: its payload and its total size in bytes.
    Frame {
        /// The payload bytes.
        payload: &'a [u8],
        /// Header + payload.
        size: usize,
    },
    /// The slice ends before the frame does; `needed` is the frame's total size if the header
    /// was readable, else the header size.
    Incomplete {
        /// Bytes the whole frame would need.
        needed: usize,
    },
    /// Not a valid frame.
    Corrupt(FrameDefect),
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDefect {
    /// `len` is 0 (every payload has at least its format byte); typical of zero-filled space.
    ZeroLength,
    /// `len` exceeds [`MAX_FRAME_PAYLOAD_BYTES`].
    TooLong(u32),
    /// The CRC does not match.
    CrcMismatch,
}

impl std::fmt::Display for FrameDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameDefect::ZeroLength => write!(f, "frame length is 0"),
            FrameDefect::TooLong(n) => write!(
                f,
                "frame length {n} exceeds the maximum {MAX_FRAME_PAYLOAD_BYTES}"
            ),
            FrameDefect::CrcMismatch => write!(f, "frame CRC mismatch"),
        }
    }
}

/// Decodes the frame at the start of `buf`.
pub fn decode_frame(buf: &[u8]) -> FrameDecode<'_> {
    if buf.len() < FRAME_HEADER_BYTES {
        return FrameDecode::Incomplete {
            needed: FRAME_HEADER_BYTES,
        };
    }
    let len_bytes: [u8; 4] = buf[0..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 {
        return FrameDecode::Corrupt(FrameDefect::ZeroLength);
    }
    if len > MAX_FRAME_PAYLOAD_BYTES {
        return FrameDecode::Corrupt(FrameDefect::TooLong(len));
    }
    let size = FRAME_HEADER_BYTES + len as usize;
    if buf.len() < size {
        return FrameDecode::Incomplete { needed: size };
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let payload = &buf[FRAME_HEADER_BYTES..size];
    if frame_crc(&len_bytes, payload) != crc {
        return FrameDecode::Corrupt(FrameDefect::CrcMismatch);
    }
    FrameDecode::Frame { payload, size }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let mut out = Vec::new();
        encode_frame(b"hello", &mut out);
        encode_frame(b"x", &mut out);
        assert_eq!(out.len(), frame_size(5) + frame_size(1));
        match decode_frame(&out) {
            FrameDecode::Frame { payload, size } => {
                assert_eq!(payload, b"hello");
                assert_eq!(size, 13);
                assert_eq!(
                    decode_frame(&out[size..]),
                    FrameDecode::Frame {
                        payload: b"x",
                        size: 9
                    }
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frame_truncated_at_every_byte_is_incomplete() {
        let mut out = Vec::new();
        encode_frame(&[7u8; 40], &mut out);
        for cut in 0..out.len() {
            assert!(
                matches!(decode_frame(&out[..cut]), FrameDecode::Incomplete { .. }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn frame_any_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_frame(b"some payload bytes", &mut out);
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_frame(&damaged), FrameDecode::Frame { .. }),
                "bit {bit} flip went unnoticed"
            );
        }
    }

    #[test]
    fn frame_zero_and_oversized_lengths_are_rejected_before_allocating() {
        assert_eq!(
            decode_frame(&[0u8; 16]),
            FrameDecode::Corrupt(FrameDefect::ZeroLength)
        );
        let mut buf = vec![0xffu8; 16];
        buf[..4].copy_from_slice(&(MAX_FRAME_PAYLOAD_BYTES + 1).to_le_bytes());
        assert!(matches!(
            decode_frame(&buf),
            FrameDecode::Corrupt(FrameDefect::TooLong(_))
        ));
    }
}
