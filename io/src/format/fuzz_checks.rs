//! The checks of the cargo-fuzz targets (`fuzz/fuzz_targets/<name>.rs`), shared with the
//! corpus replay in `io/tests/fuzz_corpus.rs` so both run the same code.
//!
//! Each takes one fuzz input and returns whether the decoder accepted it. It panics (the
//! fuzzer's finding) if a decoder panics, or if an accepted input is not the canonical
//! encoding of what it decoded to, or does not decode again to the same value. Input layouts:
//! `wal_record` and `page` start with a u64 LE (segment sequence number, expected page id);
//! `superblock` with one byte whose low bit is the slot; `node` with one byte choosing leaf
//! (0), interior (1) or overflow; `segment_header`, `catalog`, `freelist` and `record` are
//! the decoder's buffer (a catalog or free-list page payload, a WAL record payload).

use super::catalog::{
    self, CatalogEntry, MAX_NAME_LEN, Record, decode_catalog, decode_freelist, encode_catalog,
    encode_create, encode_freelist, encode_write, freelist_pages, op_len, set_next,
};
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

/// The `catalog` fuzz target's checks; returns whether the decoder accepted the input.
///
/// The input is a catalog page payload. The decoder reads the next-page link, the entry
/// count and the entries, and ignores the bytes after them (as the node decoders ignore
/// page padding), so only that consumed prefix must be canonical. Names longer than
/// [`MAX_NAME_LEN`] are rejected, so every decoded name re-encodes in full (the encoder
/// would cut a longer one).
pub fn catalog(data: &[u8]) -> bool {
    let Ok((next, entries)) = decode_catalog(data) else {
        return false;
    };
    assert_ne!(next, 1, "a superblock slot as the next catalog page");
    for e in &entries {
        assert!(e.root >= 2, "a superblock slot as a collection root");
        for s in [&e.name, &e.key_type, &e.value_type] {
            assert!(s.len() <= MAX_NAME_LEN, "a name of {} bytes", s.len());
        }
    }
    let end = 12 + entries.iter().map(CatalogEntry::encoded_len).sum::<usize>();
    assert!(end <= data.len());
    // The entries came out of `data`, so they fit one page of its length.
    let mut pages = encode_catalog(&entries, data.len());
    assert_eq!(
        pages.len(),
        1,
        "one page's entries re-encode to {} pages",
        pages.len()
    );
    let mut again = pages.remove(0);
    set_next(&mut again, next);
    assert_eq!(again.len(), end);
    assert_eq!(
        &again[..],
        &data[..end],
        "an accepted catalog page is not canonical"
    );
    assert_eq!(decode_catalog(&again), Ok((next, entries)));
    true
}

/// The `freelist` fuzz target's checks; returns whether the decoder accepted the input.
///
/// The input is a free-list page payload; as with catalog pages, bytes after the runs are
/// ignored and only the consumed prefix must be canonical.
pub fn freelist(data: &[u8]) -> bool {
    let Ok((next, runs)) = decode_freelist(data) else {
        return false;
    };
    assert_ne!(next, 1, "a superblock slot as the next free-list page");
    let mut prev_end = 2u64;
    for &(first, count) in &runs {
        assert!(first >= prev_end, "free runs out of order or overlapping");
        assert!(count > 0, "an empty free run");
        prev_end = first.checked_add(count).expect("a free run past u64::MAX");
    }
    let end = 12 + 16 * runs.len();
    assert!(end <= data.len());
    let mut pages = encode_freelist(&runs, data.len());
    assert_eq!(
        pages.len(),
        1,
        "one page's runs re-encode to {} pages",
        pages.len()
    );
    assert_eq!(freelist_pages(runs.len(), data.len()), 1);
    let mut again = pages.remove(0);
    set_next(&mut again, next);
    assert_eq!(again.len(), end);
    assert_eq!(
        &again[..],
        &data[..end],
        "an accepted free-list page is not canonical"
    );
    assert_eq!(decode_freelist(&again), Ok((next, runs)));
    true
}

/// The `record` fuzz target's checks (the collection record in a WAL record's payload);
/// returns whether the decoder accepted the input.
///
/// The decoder refuses trailing bytes, so the whole input must be canonical.
pub fn record(data: &[u8]) -> bool {
    let Ok(rec) = catalog::decode_record(data) else {
        return false;
    };
    let again = match &rec {
        Record::Create {
            id,
            kind,
            name,
            key_type,
            value_type,
        } => {
            for s in [name, key_type, value_type] {
                assert!(s.len() <= MAX_NAME_LEN, "a name of {} bytes", s.len());
            }
            encode_create(*id, *kind, name, key_type, value_type)
        }
        Record::Write { id, ops } => {
            assert_eq!(9 + ops.iter().map(op_len).sum::<usize>(), data.len());
            encode_write(*id, ops)
        }
    };
    assert_eq!(&again[..], data, "an accepted record is not canonical");
    assert_eq!(catalog::decode_record(&again), Ok(rec));
    true
}
