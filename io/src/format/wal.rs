//! WAL record framing.
//!
//! ```text
//! offset size field
//!  0      4   crc32c (u32) of: segment sequence number (8 bytes LE) ++ bytes 4..32 ++ payload
//!  4      4   payload length (u32), at most MAX_RECORD_PAYLOAD
//!  8      8   LSN (u64), >= 1, +1 for each record of the log
//! 16      8   durable watermark (u64): every LSN <= this was synced before this record
//!             was written (used by recovery to tell unsynced gaps from corruption)
//! 24      2   kind (u16): 1 = data
//! 26      2   flags (u16): 0
//! 28      4   reserved (u32): 0
//! 32      n   payload, then zero padding so the next record starts at a multiple of 8
//! ```
//!
//! Binding the segment sequence number into the checksum means a stale record left in a
//! recycled segment file never validates as part of the segment's new life.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{FormatError, need};

/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// The largest payload a record may carry (64 MiB).
pub const MAX_RECORD_PAYLOAD: u32 = 64 << 20;
/// The largest LSN the format allows (2^62): far beyond any real log, and small enough
/// that LSN arithmetic never overflows.
pub const MAX_LSN: u64 = 1 << 62;
/// Records start at offsets that are multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// The only record kind of format version 1.
pub const KIND_DATA: u16 = 1;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawRecordHeader {
    crc: U32,
    len: U32,
    lsn: U64,
    durable_lsn: U64,
    kind: U16,
    flags: U16,
    reserved: U32,
}

const _: () = assert!(size_of::<RawRecordHeader>() == RECORD_HEADER_LEN);

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The record's log sequence number.
    pub lsn: u64,
    /// Every LSN up to this one was durable when the record was written.
    pub durable_lsn: u64,
    /// The payload length.
    pub len: u32,
}

impl RecordHeader {
    /// Bytes the record occupies on disk, header and padding included.
    pub fn frame_len(&self) -> u64 {
        frame_len(self.len as usize) as u64
    }
}

/// The on-disk length of a record carrying `payload_len` bytes, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

fn checksum(segment_seq: u64, header_tail: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&segment_seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, header_tail);
    crc32c::crc32c_append(crc, payload)
}

/// Appends one framed record to `out`.
///
/// # Panics
/// If the payload is larger than [`MAX_RECORD_PAYLOAD`] or the LSN is 0: callers check sizes
/// before they assign LSNs, so this is a programming error.
pub fn encode_record(
    out: &mut Vec<u8>,
    segment_seq: u64,
    lsn: u64,
    durable_lsn: u64,
    payload: &[u8],
) {
    assert!(
        payload.len() <= MAX_RECORD_PAYLOAD as usize,
        "WAL payload over the limit"
    );
    assert!(
        lsn >= 1 && durable_lsn < lsn,
        "LSNs start at 1 and the watermark is below the record"
    );
    let mut raw = RawRecordHeader {
        crc: U32::new(0),
        len: U32::new(payload.len() as u32),
        lsn: U64::new(lsn),
        durable_lsn: U64::new(durable_lsn),
        kind: U16::new(KIND_DATA),
        flags: U16::new(0),
        reserved: U32::new(0),
    };
    raw.crc = U32::new(checksum(segment_seq, &raw.as_bytes()[4..], payload));
    out.extend_from_slice(raw.as_bytes());
    out.extend_from_slice(payload);
    let pad = frame_len(payload.len()) - RECORD_HEADER_LEN - payload.len();
    out.extend_from_slice(&[0u8; RECORD_ALIGN][..pad]);
}

/// Reads the header at the start of `buf` without checking the checksum: `Some` if every
/// field is structurally valid. A cheap filter before [`decode_record`] when searching
/// bytes that are mostly not records.
pub fn peek_record_header(buf: &[u8]) -> Option<RecordHeader> {
    let (raw, _) = RawRecordHeader::read_from_prefix(buf).ok()?;
    let (lsn, durable_lsn, len) = (raw.lsn.get(), raw.durable_lsn.get(), raw.len.get());
    let valid = raw.kind.get() == KIND_DATA
        && raw.flags.get() == 0
        && raw.reserved.get() == 0
        && lsn != 0
        && lsn <= MAX_LSN
        && durable_lsn < lsn
        && len <= MAX_RECORD_PAYLOAD;
    valid.then_some(RecordHeader {
        lsn,
        durable_lsn,
        len,
    })
}

/// Decodes the record at the start of `buf`, written into the segment numbered
/// `segment_seq`. Returns the header and the payload.
///
/// [`FormatError::Zeroed`] means the header bytes are all zero: the written part of the
/// segment ends here.
pub fn decode_record(buf: &[u8], segment_seq: u64) -> Result<(RecordHeader, &[u8]), FormatError> {
    need(buf, RECORD_HEADER_LEN)?;
    let (raw, rest) =
        RawRecordHeader::read_from_prefix(buf).map_err(|_| FormatError::Truncated {
            needed: RECORD_HEADER_LEN as u64,
            available: buf.len() as u64,
        })?;
    if buf[..RECORD_HEADER_LEN].iter().all(|b| *b == 0) {
        return Err(FormatError::Zeroed);
    }
    let len = raw.len.get();
    if len > MAX_RECORD_PAYLOAD {
        return Err(FormatError::InvalidField {
            field: "record length",
            value: len.into(),
        });
    }
    if rest.len() < len as usize {
        return Err(FormatError::Truncated {
            needed: (RECORD_HEADER_LEN + len as usize) as u64,
            available: buf.len() as u64,
        });
    }
    let payload = &rest[..len as usize];
    let computed = checksum(segment_seq, &buf[4..RECORD_HEADER_LEN], payload);
    if computed != raw.crc.get() {
        return Err(FormatError::ChecksumMismatch {
            stored: raw.crc.get(),
            computed,
        });
    }
    if raw.kind.get() != KIND_DATA {
        return Err(FormatError::InvalidField {
            field: "record kind",
            value: raw.kind.get().into(),
        });
    }
    if raw.flags.get() != 0 {
        return Err(FormatError::InvalidField {
            field: "record flags",
            value: raw.flags.get().into(),
        });
    }
    if raw.reserved.get() != 0 {
        return Err(FormatError::InvalidField {
            field: "record reserved bytes",
            value: raw.reserved.get().into(),
        });
    }
    let lsn = raw.lsn.get();
    let durable_lsn = raw.durable_lsn.get();
    if lsn == 0 || lsn > MAX_LSN || durable_lsn >= lsn {
        return Err(FormatError::InvalidField {
            field: "record LSN",
            value: lsn,
        });
    }
    Ok((
        RecordHeader {
            lsn,
            durable_lsn,
            len,
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_binding() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 3, 10, 9, b"hello");
        let (h, p) = decode_record(&buf, 3).expect("valid record");
        assert_eq!((h.lsn, h.durable_lsn, h.len, p), (10, 9, 5, &b"hello"[..]));
        assert_eq!(h.frame_len() as usize, buf.len());
        // The same bytes read as part of another segment's life do not validate.
        assert!(matches!(
            decode_record(&buf, 4),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut good = Vec::new();
        encode_record(&mut good, 1, 5, 4, &[7u8; 40]);
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&bad, 1).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn zeroed_and_truncated() {
        assert_eq!(decode_record(&[0u8; 64], 1), Err(FormatError::Zeroed));
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, 1, 0, &[1u8; 100]);
        assert!(matches!(
            decode_record(&buf[..50], 1),
            Err(FormatError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), seq in any::<u64>()) {
            let _ = decode_record(&bytes, seq);
        }

        #[test]
        fn round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300), seq in any::<u64>(), lsn in 1u64..=MAX_LSN) {
            let mut buf = Vec::new();
            encode_record(&mut buf, seq, lsn, lsn - 1, &payload);
            let (h, p) = decode_record(&buf, seq).expect("round trip");
            prop_assert_eq!(h.lsn, lsn);
            prop_assert_eq!(p, &payload[..]);
        }
    }
}
