//! The header at the start of every WAL segment file.
//!
//! ```text
//! offset size field
//!  0      8   magic "PXWALSEG"
//!  8      4   format version (u32)
//! 12      4   header length = 64 (u32)
//! 16      8   segment sequence number (u64), equals the number in the file name
//! 24      8   first LSN the segment may hold (u64)
//! 32      8   preallocated segment size in bytes (u64)
//! 40     20   reserved, zero
//! 60      4   crc32c of bytes 0..60 (u32)
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{FORMAT_VERSION, FormatError, need};

/// Length of the segment header; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// The largest segment the format allows (1 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
/// The largest segment sequence number (2^62), so `seq + 1` never overflows.
pub const MAX_SEQ: u64 = 1 << 62;
/// The segment magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"PXWALSEG";

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawSegmentHeader {
    magic: [u8; 8],
    version: U32,
    header_len: U32,
    seq: U64,
    first_lsn: U64,
    segment_size: U64,
    reserved: [u8; 20],
    crc: U32,
}

const _: () = assert!(size_of::<RawSegmentHeader>() == SEGMENT_HEADER_LEN);

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's sequence number (its file name).
    pub seq: u64,
    /// The LSN of the first record written into the segment.
    pub first_lsn: u64,
    /// The preallocated size of the segment file in bytes.
    pub segment_size: u64,
}

impl SegmentHeader {
    /// Encodes the header (64 bytes).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut raw = RawSegmentHeader {
            magic: SEGMENT_MAGIC,
            version: U32::new(FORMAT_VERSION),
            header_len: U32::new(SEGMENT_HEADER_LEN as u32),
            seq: U64::new(self.seq),
            first_lsn: U64::new(self.first_lsn),
            segment_size: U64::new(self.segment_size),
            reserved: [0; 20],
            crc: U32::new(0),
        };
        let crc = crc32c::crc32c(&raw.as_bytes()[..SEGMENT_HEADER_LEN - 4]);
        raw.crc = U32::new(crc);
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and checks a header from the first bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, FormatError> {
        need(buf, SEGMENT_HEADER_LEN)?;
        let bytes = &buf[..SEGMENT_HEADER_LEN];
        if bytes.iter().all(|b| *b == 0) {
            return Err(FormatError::Zeroed);
        }
        let (raw, _) =
            RawSegmentHeader::read_from_prefix(bytes).map_err(|_| FormatError::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: buf.len() as u64,
            })?;
        if raw.magic != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic {
                found: u64::from_le_bytes(raw.magic),
            });
        }
        let computed = crc32c::crc32c(&bytes[..SEGMENT_HEADER_LEN - 4]);
        if computed != raw.crc.get() {
            return Err(FormatError::ChecksumMismatch {
                stored: raw.crc.get(),
                computed,
            });
        }
        let version = raw.version.get();
        if version == 0 || version > FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if raw.header_len.get() as usize != SEGMENT_HEADER_LEN {
            return Err(FormatError::InvalidField {
                field: "segment header length",
                value: raw.header_len.get().into(),
            });
        }
        if raw.reserved.iter().any(|b| *b != 0) {
            return Err(FormatError::InvalidField {
                field: "segment header reserved bytes",
                value: 1,
            });
        }
        if raw.seq.get() > MAX_SEQ {
            return Err(FormatError::InvalidField {
                field: "segment sequence number",
                value: raw.seq.get(),
            });
        }
        if raw.first_lsn.get() > super::wal::MAX_LSN {
            return Err(FormatError::InvalidField {
                field: "segment first LSN",
                value: raw.first_lsn.get(),
            });
        }
        if raw.segment_size.get() > MAX_SEGMENT_SIZE {
            return Err(FormatError::InvalidField {
                field: "segment size",
                value: raw.segment_size.get(),
            });
        }
        if raw.first_lsn.get() == 0 {
            return Err(FormatError::InvalidField {
                field: "segment first LSN",
                value: 0,
            });
        }
        if raw.segment_size.get() < SEGMENT_HEADER_LEN as u64 {
            return Err(FormatError::InvalidField {
                field: "segment size",
                value: raw.segment_size.get(),
            });
        }
        Ok(SegmentHeader {
            seq: raw.seq.get(),
            first_lsn: raw.first_lsn.get(),
            segment_size: raw.segment_size.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let h = SegmentHeader {
            seq: 7,
            first_lsn: 1234,
            segment_size: 1 << 20,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let h = SegmentHeader {
            seq: 7,
            first_lsn: 1234,
            segment_size: 1 << 20,
        };
        let good = h.encode();
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&bad).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
