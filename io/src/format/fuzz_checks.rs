//! The checks of the cargo-fuzz targets (`fuzz/fuzz_targets/<name>.rs`), shared with the
//! corpus replay in `io/tests/fuzz_corpus.rs` so both run the same code.
//!
//! Each takes one fuzz input and returns whether the decoder accepted it. It panics (the
//! fuzzer's finding) if a decoder panics, or if an accepted input is not the canonical
//! encoding of what it decoded to, or does not decode again to the same value. Input layouts:
//! `wal_record` and `page` start with a u64 LE (segment sequence number, expected page id);
//! `superblock` with one byte whose low bit is the slot; `node` with one byte choosing leaf
//! (0), interior (1) or overflow; `segment_header` is the decoder's buffer.

use super::node::{
    decode_interior, decode_leaf, decode_overflow, encode_interior, encode_leaf, interior_len,
    leaf_len,
};
use super::page::{PAGE_HEADER_LEN, decode_page, encode_page};
use super::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use super::superblock::{SUPERBLOCK_LEN, Superblock};
use super::wal::{RECORD_HEADER_LEN, decode_record, encode_record, frame_len};

/// Splits a fuzz input into its leading u64 LE parameter and the decoder's buffer.
pub fn split_param(data: &[u8]) -> (u64, &[u8]) {
    match data.split_first_chunk::<8>() {
        Some((param, rest)) => (u64::from_le_bytes(*param), rest),
        None => (0, data),
    }
}

/// The `wal_record` fuzz target's checks; returns whether the decoder accepted the input.
pub fn wal_record(data: &[u8]) -> bool {
    let (seq, buf) = split_param(data);
    let Ok((header, payload)) = decode_record(buf, seq) else {
        return false;
    };
    assert_eq!(header.len as usize, payload.len());
    assert_eq!(header.frame_len() as usize, frame_len(payload.len()));
    let end = RECORD_HEADER_LEN + payload.len();
    let mut again = Vec::new();
    encode_record(&mut again, seq, header.lsn, header.durable_lsn, payload);
    assert_eq!(again.len(), frame_len(payload.len()));
    assert_eq!(
        &again[..end],
        &buf[..end],
        "an accepted record is not canonical"
    );
    assert_eq!(decode_record(&again, seq), Ok((header, payload)));
    true
}

/// The `segment_header` fuzz target's checks; returns whether the decoder accepted the input.
pub fn segment_header(data: &[u8]) -> bool {
    let Ok(header) = SegmentHeader::decode(data) else {
        return false;
    };
    let again = header.encode();
    assert_eq!(
        &again[..],
        &data[..SEGMENT_HEADER_LEN],
        "an accepted header is not canonical"
    );
    assert_eq!(SegmentHeader::decode(&again), Ok(header));
    true
}

/// The `page` fuzz target's checks; returns whether the decoder accepted the input.
pub fn page(data: &[u8]) -> bool {
    let (page_id, buf) = split_param(data);
    let Ok((header, payload)) = decode_page(buf, page_id) else {
        return false;
    };
    assert_eq!(header.page_id, page_id);
    assert_eq!(header.payload_len as usize, payload.len());
    let end = PAGE_HEADER_LEN + payload.len();
    let again = encode_page(&header, payload, buf.len());
    assert_eq!(
        &again[..end],
        &buf[..end],
        "an accepted page is not canonical"
    );
    assert_eq!(decode_page(&again, page_id), Ok((header, payload)));
    true
}

/// The `superblock` fuzz target's checks: the first byte's low bit is the slot.
pub fn superblock(data: &[u8]) -> bool {
    let Some((first, buf)) = data.split_first() else {
        return false;
    };
    let slot = u32::from(first & 1);
    let Ok(sb) = Superblock::decode(buf, slot) else {
        return false;
    };
    assert_eq!(
        &sb.encode(slot)[..],
        &buf[..SUPERBLOCK_LEN],
        "an accepted superblock is not canonical"
    );
    assert_eq!(Superblock::decode(&sb.encode(slot), slot), Ok(sb));
    true
}

/// The `node` fuzz target's checks: the first byte picks leaf, interior or overflow.
pub fn node(data: &[u8]) -> bool {
    let Some((which, payload)) = data.split_first() else {
        return false;
    };
    match which {
        0 => decode_leaf(payload).is_ok_and(|entries| {
            let mut again = Vec::new();
            encode_leaf(&entries, &mut again);
            assert_eq!(
                &again[..],
                &payload[..leaf_len(&entries)],
                "leaf not canonical"
            );
            true
        }),
        1 => decode_interior(payload).is_ok_and(|(children, seps)| {
            let mut again = Vec::new();
            encode_interior(&children, &seps, &mut again);
            assert_eq!(
                &again[..],
                &payload[..interior_len(&children, &seps)],
                "interior not canonical"
            );
            true
        }),
        _ => decode_overflow(payload).is_ok(),
    }
}
