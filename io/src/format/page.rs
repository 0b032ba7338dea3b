//! The header at the start of every page of the page file.
//!
//! ```text
//! offset size field
//!  0      4   magic "PXPG"
//!  4      2   format version (u16)
//!  6      1   page kind (u8), never 0
//!  7      1   flags (u8): bit 0 compressed, bit 1 encrypted; others 0
//!  8      8   page id (u64): the page's own number, binds the page to its location
//! 16      8   LSN (u64) of the checkpoint that wrote the page
//! 24      4   payload length (u32), at most page size - 32
//! 28      4   crc32c (u32) of bytes 0..28 ++ payload
//! 32      n   payload, then zero padding to the page size
//! ```

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{FORMAT_VERSION, FormatError, need};

/// Length of a page header.
pub const PAGE_HEADER_LEN: usize = 32;
/// The page magic, "PXPG" read as a little-endian u32.
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"PXPG");
/// Flag bit: the payload is lz4-compressed.
pub const FLAG_COMPRESSED: u8 = 1;
/// Flag bit: the payload is AES-256-GCM encrypted.
pub const FLAG_ENCRYPTED: u8 = 2;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawPageHeader {
    magic: U32,
    version: U16,
    kind: u8,
    flags: u8,
    page_id: U64,
    lsn: U64,
    payload_len: U32,
    crc: U32,
}

const _: () = assert!(size_of::<RawPageHeader>() == PAGE_HEADER_LEN);

/// A decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// What the page holds; never 0.
    pub kind: u8,
    /// Compression and encryption flags.
    pub flags: u8,
    /// The page's own number.
    pub page_id: u64,
    /// The LSN of the checkpoint that wrote the page.
    pub lsn: u64,
    /// Length of the payload that follows the header.
    pub payload_len: u32,
}

/// Builds a full page of `page_size` bytes: header, payload, zero padding.
///
/// # Panics
/// If the payload does not fit or the kind is 0 (programming errors: callers size nodes to
/// fit their pages).
pub fn encode_page(header: &PageHeader, payload: &[u8], page_size: usize) -> Vec<u8> {
    let mut page = Vec::with_capacity(page_size);
    encode_page_into(header, payload, page_size, &mut page);
    page
}

/// Appends a full page of `page_size` bytes to `out` (as [`encode_page`], without a buffer
/// of its own: for writers that gather consecutive pages into one write).
///
/// # Panics
/// As [`encode_page`].
pub fn encode_page_into(header: &PageHeader, payload: &[u8], page_size: usize, out: &mut Vec<u8>) {
    assert!(
        header.kind != 0,
        "page kind 0 is reserved for never-written pages"
    );
    assert!(
        PAGE_HEADER_LEN + payload.len() <= page_size,
        "page payload does not fit"
    );
    assert!(
        header.flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) == 0,
        "unknown page flags"
    );
    let mut raw = RawPageHeader {
        magic: U32::new(PAGE_MAGIC),
        version: U16::new(FORMAT_VERSION as u16),
        kind: header.kind,
        flags: header.flags,
        page_id: U64::new(header.page_id),
        lsn: U64::new(header.lsn),
        payload_len: U32::new(payload.len() as u32),
        crc: U32::new(0),
    };
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&raw.as_bytes()[..PAGE_HEADER_LEN - 4]),
        payload,
    );
    raw.crc = U32::new(crc);
    let start = out.len();
    out.extend_from_slice(raw.as_bytes());
    out.extend_from_slice(payload);
    out.resize(start + page_size, 0);
}

/// Checks a page read from the location of `expected_page_id` and returns its header and
/// payload. A page written for another location fails with [`FormatError::Mismatch`].
pub fn decode_page(buf: &[u8], expected_page_id: u64) -> Result<(PageHeader, &[u8]), FormatError> {
    need(buf, PAGE_HEADER_LEN)?;
    let (raw, rest) = RawPageHeader::read_from_prefix(buf).map_err(|_| FormatError::Truncated {
        needed: PAGE_HEADER_LEN as u64,
        available: buf.len() as u64,
    })?;
    if buf[..PAGE_HEADER_LEN].iter().all(|b| *b == 0) {
        return Err(FormatError::Zeroed);
    }
    if raw.magic.get() != PAGE_MAGIC {
        return Err(FormatError::BadMagic {
            found: raw.magic.get().into(),
        });
    }
    let len = raw.payload_len.get() as usize;
    if len > rest.len() {
        return Err(FormatError::InvalidField {
            field: "page payload length",
            value: len as u64,
        });
    }
    let payload = &rest[..len];
    let computed = crc32c::crc32c_append(crc32c::crc32c(&buf[..PAGE_HEADER_LEN - 4]), payload);
    if computed != raw.crc.get() {
        return Err(FormatError::ChecksumMismatch {
            stored: raw.crc.get(),
            computed,
        });
    }
    let version = u32::from(raw.version.get());
    if version == 0 || version > FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if raw.kind == 0 {
        return Err(FormatError::InvalidField {
            field: "page kind",
            value: 0,
        });
    }
    if raw.flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 {
        return Err(FormatError::InvalidField {
            field: "page flags",
            value: raw.flags.into(),
        });
    }
    if raw.page_id.get() != expected_page_id {
        return Err(FormatError::Mismatch {
            field: "page id",
            expected: expected_page_id,
            found: raw.page_id.get(),
        });
    }
    let header = PageHeader {
        kind: raw.kind,
        flags: raw.flags,
        page_id: raw.page_id.get(),
        lsn: raw.lsn.get(),
        payload_len: raw.payload_len.get(),
    };
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_into_appends_the_same_page() {
        let (h, page) = sample();
        let mut run = b"earlier page".to_vec();
        encode_page_into(&h, b"node bytes", 4096, &mut run);
        assert_eq!(run.len(), 12 + 4096);
        assert_eq!(&run[..12], b"earlier page");
        assert_eq!(&run[12..], &page[..]);
        let (got, payload) = decode_page(&run[12..], 42).expect("the appended page decodes");
        assert_eq!((got.kind, payload), (3, &b"node bytes"[..]));
    }

    fn sample() -> (PageHeader, Vec<u8>) {
        let h = PageHeader {
            kind: 3,
            flags: 0,
            page_id: 42,
            lsn: 99,
            payload_len: 0,
        };
        (h, encode_page(&h, b"node bytes", 4096))
    }

    #[test]
    fn round_trip() {
        let (h, page) = sample();
        let (got, payload) = decode_page(&page, 42).expect("valid page");
        assert_eq!(
            (got.kind, got.page_id, got.lsn, payload),
            (h.kind, 42, 99, &b"node bytes"[..])
        );
    }

    #[test]
    fn misdirected_page_is_caught() {
        let (_, page) = sample();
        assert!(matches!(
            decode_page(&page, 43),
            Err(FormatError::Mismatch { .. })
        ));
    }

    #[test]
    fn every_bit_flip_in_header_and_payload_is_detected() {
        let (_, good) = sample();
        for bit in 0..(PAGE_HEADER_LEN + 10) * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_page(&bad, 42).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), id in any::<u64>()) {
            let _ = decode_page(&bytes, id);
        }
    }
}
