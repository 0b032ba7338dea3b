//! The decoders against hostile bytes, in ordinary `cargo test`:
//!
//! * every saved fuzz input in `fuzz/corpus/<target>/` is replayed through the checks the
//!   cargo-fuzz target of that name runs (`persistx_io::format::fuzz_checks`): no panic, and
//!   an accepted input is the canonical encoding of what it decodes to;
//! * proptests feed random bytes to all three decoders, and mutate valid encodings (bit
//!   flips, byte overwrites, truncation): the mutated bytes either fail to decode or decode
//!   to exactly the original value (a change that only touched padding), never to another
//!   valid value (G3 in `/work/shared/TESTING.md`).
//!
//! Input layouts, shared with the fuzz targets: `wal_record` and `page` inputs start with a
//! u64 LE (segment sequence number, expected page id) followed by the decoder's buffer;
//! `segment_header`, `catalog`, `freelist` and `record` inputs are the decoder's buffer.
//!
//! Catalog and free-list payloads and collection records carry no checksum of their own (the
//! page or WAL record around them does), so a mutation of them may decode to another valid
//! value; their proptests check instead that whatever decodes is canonical, and that a cut
//! encoding never decodes.
//!
//! The seed inputs are written by the ignored test `write_seed_corpus`:
//! `cargo test -p persistx-io --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::path::{Path, PathBuf};

use persistx_io::format::FormatError;
use persistx_io::format::catalog::{
    self, CatalogEntry, MAX_NAME_LEN, RecordOp, decode_catalog, decode_freelist, encode_catalog,
    encode_create, encode_freelist, encode_write, set_next,
};
use persistx_io::format::node::{Child, LeafEntry, LeafValue, encode_interior, encode_leaf};
use persistx_io::format::page::{PAGE_HEADER_LEN, PageHeader, decode_page, encode_page};
use persistx_io::format::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use persistx_io::format::superblock::Superblock;
use persistx_io::format::wal::{RECORD_HEADER_LEN, decode_record, encode_record};
use proptest::prelude::*;

use persistx_io::format::fuzz_checks::{
    catalog as check_catalog, freelist as check_freelist, node as check_node, page as check_page,
    record as check_record, segment_header as check_segment_header, split_param,
    superblock as check_superblock, wal_record as check_wal_record,
};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of `fuzz/corpus/<target>/`; returns how many there were.
/// Inputs named `near-*` are near misses written by `write_seed_corpus` (a valid checksum
/// over one bad field): `check` must also report them rejected.
fn replay(target: &str, check: fn(&[u8]) -> bool) -> usize {
    let dir = corpus_dir(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus directory entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for path in &files {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| check(&data));
        let accepted =
            result.unwrap_or_else(|_| panic!("corpus input {} panicked", path.display()));
        let near_miss = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("near-"));
        assert!(
            !(near_miss && accepted),
            "near miss {} was accepted",
            path.display()
        );
    }
    files.len()
}

#[test]
fn replay_wal_record_corpus() {
    assert!(
        replay("wal_record", check_wal_record) > 0,
        "the wal_record corpus is empty"
    );
}

#[test]
fn replay_segment_header_corpus() {
    assert!(
        replay("segment_header", check_segment_header) > 0,
        "the segment_header corpus is empty"
    );
}

#[test]
fn replay_node_corpus() {
    assert!(replay("node", check_node) > 0, "the node corpus is empty");
}

#[test]
fn replay_superblock_corpus() {
    assert!(
        replay("superblock", check_superblock) > 0,
        "the superblock corpus is empty"
    );
}

#[test]
fn replay_page_corpus() {
    assert!(replay("page", check_page) > 0, "the page corpus is empty");
}

#[test]
fn replay_catalog_corpus() {
    assert!(
        replay("catalog", check_catalog) > 0,
        "the catalog corpus is empty"
    );
}

#[test]
fn replay_freelist_corpus() {
    assert!(
        replay("freelist", check_freelist) > 0,
        "the freelist corpus is empty"
    );
}

#[test]
fn replay_record_corpus() {
    assert!(
        replay("record", check_record) > 0,
        "the record corpus is empty"
    );
}

/// The decoder's error for each near miss of `target` (see `write_seed_corpus`).
fn near_miss_errors(target: &str) -> Vec<(String, FormatError)> {
    let dir = corpus_dir(target);
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
    {
        let path = entry.expect("corpus directory entry").path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with("near-") {
            continue;
        }
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let (param, buf) = split_param(&data);
        let result = match target {
            "wal_record" => decode_record(buf, param).map(drop),
            "page" => decode_page(buf, param).map(drop),
            "catalog" => decode_catalog(&data).map(drop),
            "freelist" => decode_freelist(&data).map(drop),
            "record" => catalog::decode_record(&data).map(drop),
            _ => SegmentHeader::decode(&data).map(drop),
        };
        match result {
            Ok(()) => panic!("near miss {name} was accepted"),
            Err(e) => out.push((name, e)),
        }
    }
    out
}

/// The payload formats have no checksum: each near miss there breaks exactly one field, and
/// the decoder names that field (or, for a cut, reports the truncation).
#[test]
fn payload_near_misses_name_the_bad_field() {
    for target in ["catalog", "freelist", "record"] {
        let errors = near_miss_errors(target);
        assert!(!errors.is_empty(), "no near misses in the {target} corpus");
        for (name, e) in errors {
            let expected = match e {
                FormatError::InvalidField { field, .. } => field,
                FormatError::Truncated { .. } => "truncated",
                other => panic!("{target}/{name}: unexpected {other}"),
            };
            // `near-<what>-...`: the file name says which check must refuse it.
            let what = name.trim_start_matches("near-");
            let expected_what = match expected {
                "next page id" => "next",
                "collection root page" => "root",
                "name length" => "name",
                "name encoding" => "utf8",
                "catalog entry count" | "free run count" | "op count" => "count",
                "free run" => "run",
                "record tag" => "tag",
                "op tag" => "op",
                "trailing bytes after the record" => "trailing",
                _ => "truncated",
            };
            assert!(
                what.starts_with(expected_what),
                "{target}/{name} was refused for another reason: {e}"
            );
        }
    }
}

/// Each near miss carries a valid checksum, so it is rejected by the check it targets, not
/// by the checksum: the seeds really do start the fuzzer past the checksum.
#[test]
fn near_misses_fail_past_the_checksum() {
    for target in ["wal_record", "segment_header", "page"] {
        let errors = near_miss_errors(target);
        assert!(!errors.is_empty(), "no near misses in the {target} corpus");
        for (name, e) in errors {
            assert!(
                !matches!(e, FormatError::ChecksumMismatch { .. }),
                "{target}/{name}: {e}"
            );
        }
    }
}

/// Writes the seed inputs (valid encodings and a few near misses) into `fuzz/corpus/`.
/// Files that already exist are overwritten; other files are left alone.
#[test]
#[ignore = "writes fuzz/corpus; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create corpus directory");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    let with_param = |param: u64, bytes: &[u8]| {
        let mut v = param.to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    };

    // WAL records.
    let record = |seq: u64, lsn: u64, durable: u64, payload: &[u8]| {
        let mut buf = Vec::new();
        encode_record(&mut buf, seq, lsn, durable, payload);
        buf
    };
    write(
        "wal_record",
        "seed-empty-payload",
        &with_param(1, &record(1, 1, 0, b"")),
    );
    write(
        "wal_record",
        "seed-padded-payload",
        &with_param(3, &record(3, 10, 9, b"hello")),
    );
    write(
        "wal_record",
        "seed-aligned-payload",
        &with_param(7, &record(7, 42, 40, b"12345678")),
    );
    let long: Vec<u8> = (0..200u8).collect();
    write(
        "wal_record",
        "seed-long-payload",
        &with_param(u64::MAX, &record(u64::MAX, 1000, 1, &long)),
    );
    let mut two = record(2, 5, 4, b"first");
    two.extend_from_slice(&record(2, 6, 4, b"second record"));
    write("wal_record", "seed-two-records", &with_param(2, &two));
    let mut tail = record(4, 8, 7, b"then zeroes");
    tail.extend_from_slice(&[0u8; 64]);
    write("wal_record", "seed-zeroed-tail", &with_param(4, &tail));
    write(
        "wal_record",
        "seed-truncated",
        &with_param(1, &record(1, 3, 2, &[9u8; 40])[..50]),
    );
    write("wal_record", "seed-zeroed", &with_param(1, &[0u8; 48]));

    // B+tree nodes (first byte: 0 leaf, 1 interior, 2 overflow).
    let mut leaf = vec![0u8];
    encode_leaf(
        &[
            LeafEntry {
                key: b"a",
                value: LeafValue::Inline(b"1"),
            },
            LeafEntry {
                key: b"b",
                value: LeafValue::Overflow {
                    len: 9000,
                    first_page: 7,
                },
            },
            LeafEntry {
                key: b"c\0",
                value: LeafValue::Inline(b""),
            },
        ],
        &mut leaf,
    );
    write("node", "seed-leaf", &leaf);
    let mut interior = vec![1u8];
    encode_interior(
        &[
            Child { page: 3, count: 10 },
            Child { page: 4, count: 12 },
            Child { page: 9, count: 1 },
        ],
        &[b"k", b"q"],
        &mut interior,
    );
    write("node", "seed-interior", &interior);
    write(
        "node",
        "seed-overflow",
        &[2, 5, 0, 0, 0, 0, 0, 0, 0, b'x', b'y'],
    );
    let mut dup = vec![0u8];
    dup.extend_from_slice(&[2, 0, 0, 0]);
    for _ in 0..2 {
        dup.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, b'k', b'v']);
    }
    write("node", "near-duplicate-keys", &dup);

    // Superblocks (first byte: the slot).
    let sb = |slot: u32, checkpoint| {
        let mut out = vec![slot as u8];
        let s = Superblock {
            page_size: 4096,
            checkpoint,
            checkpoint_lsn: 100,
            catalog_root: 2,
            free_list_root: 3,
            page_count: 16,
            database_id: 42,
        };
        out.extend_from_slice(&s.encode(slot));
        out
    };
    write("superblock", "seed-slot0", &sb(0, 1));
    write("superblock", "seed-slot1", &sb(1, 2));
    let mut wrong_slot = sb(0, 3);
    wrong_slot[0] = 1;
    write("superblock", "near-wrong-slot", &wrong_slot);

    // Segment headers.
    let seg = |seq, first_lsn, segment_size| {
        SegmentHeader {
            seq,
            first_lsn,
            segment_size,
        }
        .encode()
    };
    write("segment_header", "seed-first", &seg(0, 1, 64 << 20));
    write("segment_header", "seed-later", &seg(7, 1234, 1 << 20));
    write(
        "segment_header",
        "seed-minimal-size",
        &seg(u64::MAX, u64::MAX, SEGMENT_HEADER_LEN as u64),
    );
    let mut with_records = seg(1, 1, 4096).to_vec();
    with_records.extend_from_slice(&record(1, 1, 0, b"first record"));
    write("segment_header", "seed-with-record", &with_records);
    write("segment_header", "seed-zeroed", &[0u8; SEGMENT_HEADER_LEN]);

    // Pages.
    let page = |kind, flags, page_id, lsn, payload: &[u8], size| {
        let h = PageHeader {
            kind,
            flags,
            page_id,
            lsn,
            payload_len: 0,
        };
        with_param(page_id, &encode_page(&h, payload, size))
    };
    write("page", "seed-small", &page(3, 0, 42, 99, b"node bytes", 64));
    write(
        "page",
        "seed-empty-payload",
        &page(1, 0, 0, 1, b"", PAGE_HEADER_LEN),
    );
    write(
        "page",
        "seed-compressed",
        &page(2, 1, 7, 5, &[0xAB; 100], 512),
    );
    write(
        "page",
        "seed-encrypted",
        &page(4, 2, 9, 6, &[0x5C; 200], 512),
    );
    write(
        "page",
        "seed-both-flags",
        &page(5, 3, u64::MAX, u64::MAX, &[1, 2, 3], 256),
    );
    let full: Vec<u8> = (0..=255u8).cycle().take(4096 - PAGE_HEADER_LEN).collect();
    write(
        "page",
        "seed-full-4k",
        &page(6, 0, 1 << 40, 77, &full, 4096),
    );
    write("page", "seed-zeroed", &with_param(3, &[0u8; 512]));

    // Near misses: a valid checksum over exactly one bad field, so the fuzzer starts past
    // the checksum and every later check is reached.
    let raw_record = |seq: u64,
                      len: u32,
                      lsn: u64,
                      durable: u64,
                      kind: u16,
                      flags: u16,
                      reserved: u32,
                      payload: &[u8]| {
        let mut h = Vec::with_capacity(RECORD_HEADER_LEN);
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&lsn.to_le_bytes());
        h.extend_from_slice(&durable.to_le_bytes());
        h.extend_from_slice(&kind.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&reserved.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), &h[4..]),
            payload,
        );
        h[..4].copy_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(payload);
        with_param(seq, &h)
    };
    write(
        "wal_record",
        "near-kind-2",
        &raw_record(1, 3, 2, 1, 2, 0, 0, b"abc"),
    );
    write(
        "wal_record",
        "near-flags",
        &raw_record(1, 3, 2, 1, 1, 1, 0, b"abc"),
    );
    write(
        "wal_record",
        "near-reserved",
        &raw_record(1, 3, 2, 1, 1, 0, 1, b"abc"),
    );
    write(
        "wal_record",
        "near-lsn-0",
        &raw_record(1, 3, 0, 0, 1, 0, 0, b"abc"),
    );
    write(
        "wal_record",
        "near-watermark-not-below",
        &raw_record(1, 3, 5, 5, 1, 0, 0, b"abc"),
    );
    write(
        "wal_record",
        "near-len-over-max",
        &raw_record(1, u32::MAX, 2, 1, 1, 0, 0, b""),
    );
    write(
        "wal_record",
        "near-len-past-end",
        &raw_record(1, 64, 2, 1, 1, 0, 0, b"abc"),
    );

    let raw_segment =
        |magic: [u8; 8], version: u32, header_len: u32, first_lsn: u64, size: u64, reserved: u8| {
            let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
            h.extend_from_slice(&magic);
            h.extend_from_slice(&version.to_le_bytes());
            h.extend_from_slice(&header_len.to_le_bytes());
            h.extend_from_slice(&9u64.to_le_bytes());
            h.extend_from_slice(&first_lsn.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&[0; 20]);
            h[45] = reserved;
            let crc = crc32c::crc32c(&h);
            h.extend_from_slice(&crc.to_le_bytes());
            h
        };
    let magic = *b"PXWALSEG";
    write(
        "segment_header",
        "near-bad-magic",
        &raw_segment(*b"PXWALSEH", 1, 64, 1, 4096, 0),
    );
    write(
        "segment_header",
        "near-version-0",
        &raw_segment(magic, 0, 64, 1, 4096, 0),
    );
    write(
        "segment_header",
        "near-version-2",
        &raw_segment(magic, 2, 64, 1, 4096, 0),
    );
    write(
        "segment_header",
        "near-header-len",
        &raw_segment(magic, 1, 65, 1, 4096, 0),
    );
    write(
        "segment_header",
        "near-reserved",
        &raw_segment(magic, 1, 64, 1, 4096, 1),
    );
    write(
        "segment_header",
        "near-first-lsn-0",
        &raw_segment(magic, 1, 64, 0, 4096, 0),
    );
    write(
        "segment_header",
        "near-size-below-header",
        &raw_segment(magic, 1, 64, 1, 63, 0),
    );

    let raw_page =
        |magic: u32, version: u16, kind: u8, flags: u8, page_id: u64, len: u32, payload: &[u8]| {
            let mut h = Vec::with_capacity(PAGE_HEADER_LEN);
            h.extend_from_slice(&magic.to_le_bytes());
            h.extend_from_slice(&version.to_le_bytes());
            h.extend_from_slice(&[kind, flags]);
            h.extend_from_slice(&page_id.to_le_bytes());
            h.extend_from_slice(&7u64.to_le_bytes());
            h.extend_from_slice(&len.to_le_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(payload);
            h.resize(128, 0);
            with_param(page_id, &h)
        };
    let pxpg = u32::from_le_bytes(*b"PXPG");
    write(
        "page",
        "near-bad-magic",
        &raw_page(pxpg ^ 1, 1, 1, 0, 5, 3, b"abc"),
    );
    write(
        "page",
        "near-version-0",
        &raw_page(pxpg, 0, 1, 0, 5, 3, b"abc"),
    );
    write(
        "page",
        "near-version-2",
        &raw_page(pxpg, 2, 1, 0, 5, 3, b"abc"),
    );
    write(
        "page",
        "near-kind-0",
        &raw_page(pxpg, 1, 0, 0, 5, 3, b"abc"),
    );
    write("page", "near-flags", &raw_page(pxpg, 1, 1, 4, 5, 3, b"abc"));
    write(
        "page",
        "near-len-past-end",
        &raw_page(pxpg, 1, 1, 0, 5, 200, b"abc"),
    );
    let mut misdirected = raw_page(pxpg, 1, 1, 0, 5, 3, b"abc");
    misdirected[..8].copy_from_slice(&6u64.to_le_bytes());
    write("page", "near-misdirected", &misdirected);

    write_catalog_seeds(&write);
    write_freelist_seeds(&write);
    write_record_seeds(&write);
}

/// Writes one seed: target, file name, bytes.
type WriteSeed<'a> = &'a dyn Fn(&str, &str, &[u8]);

fn entry(id: u32, name: &str, key_type: &str, value_type: &str) -> CatalogEntry {
    CatalogEntry {
        id,
        kind: 1,
        root: 2 + u64::from(id),
        count: 1000 + u64::from(id),
        checkpoint_lsn: 50 + u64::from(id),
        name: name.into(),
        key_type: key_type.into(),
        value_type: value_type.into(),
    }
}

/// One catalog page payload of `entries`, linked to `next`.
fn catalog_page(entries: &[CatalogEntry], next: u64) -> Vec<u8> {
    let mut pages = encode_catalog(entries, usize::MAX);
    set_next(&mut pages[0], next);
    pages.remove(0)
}

/// A catalog entry's bytes up to its name, with a raw name field (length, bytes).
fn raw_entry(name_len: u16, name: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.push(1);
    for v in [5u64, 10, 20] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&name_len.to_le_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&[0; 4]);
    b
}

fn write_catalog_seeds(write: WriteSeed<'_>) {
    let w = |name: &str, bytes: &[u8]| write("catalog", name, bytes);
    w("seed-empty", &catalog_page(&[], 0));
    let one = [entry(1, "users", "u64", "User")];
    w("seed-one", &catalog_page(&one, 0));
    let three = [
        entry(1, "users", "u64", "User"),
        entry(2, "", "", ""),
        entry(u32::MAX, "ünïcödé €", "[u8]", "Vec<String>"),
    ];
    w("seed-three-linked", &catalog_page(&three, 17));
    // Every name at the limit: 127 two-byte characters and one ASCII byte.
    let long = format!("{}x", "é".repeat(127));
    assert_eq!(long.len(), MAX_NAME_LEN);
    let k = "k".repeat(MAX_NAME_LEN);
    w(
        "seed-long-names",
        &catalog_page(&[entry(3, &long, &k, &long)], 0),
    );
    let mut padded = catalog_page(&one, 4);
    padded.resize(256, 0);
    w("seed-page-padding", &padded);

    w("near-next-1", &catalog_page(&one, 1));
    let mut root_1 = one.clone();
    root_1[0].root = 1;
    w("near-root-1", &catalog_page(&root_1, 0));
    let header = |n: u32| {
        let mut h = vec![0u8; 8];
        h.extend_from_slice(&n.to_le_bytes());
        h
    };
    let long_name = [b'a'; MAX_NAME_LEN + 1];
    w(
        "near-name-256",
        &[header(1), raw_entry(MAX_NAME_LEN as u16 + 1, &long_name)].concat(),
    );
    w(
        "near-utf8-invalid",
        &[header(1), raw_entry(2, &[0xc3, 0x28])].concat(),
    );
    let mut two = catalog_page(&one, 0);
    two[8..12].copy_from_slice(&2u32.to_le_bytes());
    w("near-count-2-of-1", &two);
    let mut cut = catalog_page(&one, 0);
    cut.pop();
    w("near-truncated", &cut);
}

/// One free-list page payload of `runs` (written as given, even when invalid).
fn freelist_page(runs: &[(u64, u64)], next: u64) -> Vec<u8> {
    let mut p = next.to_le_bytes().to_vec();
    p.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for (first, count) in runs {
        p.extend_from_slice(&first.to_le_bytes());
        p.extend_from_slice(&count.to_le_bytes());
    }
    p
}

fn write_freelist_seeds(write: WriteSeed<'_>) {
    let w = |name: &str, bytes: &[u8]| write("freelist", name, bytes);
    let encoded = |runs: &[(u64, u64)], next| {
        let mut pages = encode_freelist(runs, usize::MAX / 2);
        set_next(&mut pages[0], next);
        pages.remove(0)
    };
    w("seed-empty", &encoded(&[], 0));
    let runs = [(2, 1), (10, 5), (100, 1000)];
    w("seed-runs", &encoded(&runs, 0));
    w("seed-linked", &encoded(&[(5, 1)], 9));
    w("seed-last-page", &encoded(&[(u64::MAX - 1, 1)], 0));
    let mut padded = encoded(&runs, 0);
    padded.resize(128, 0);
    w("seed-page-padding", &padded);

    w("near-next-1", &freelist_page(&runs, 1));
    w("near-run-first-1", &freelist_page(&[(1, 3)], 0));
    w("near-run-empty", &freelist_page(&[(5, 0)], 0));
    w("near-run-past-u64", &freelist_page(&[(u64::MAX, 1)], 0));
    w("near-run-overlaps", &freelist_page(&[(5, 3), (7, 1)], 0));
    w("near-run-unsorted", &freelist_page(&[(9, 1), (5, 2)], 0));
    let mut three = freelist_page(&runs[..2], 0);
    three[8..12].copy_from_slice(&3u32.to_le_bytes());
    w("near-count-3-of-2", &three);
    let mut cut = freelist_page(&runs, 0);
    cut.pop();
    w("near-truncated", &cut);
}

fn write_record_seeds(write: WriteSeed<'_>) {
    let w = |name: &str, bytes: &[u8]| write("record", name, bytes);
    let create = encode_create(7, 1, "users", "u64", "User");
    w("seed-create", &create);
    w("seed-create-empty-names", &encode_create(0, 0, "", "", ""));
    let put = encode_write(3, &[RecordOp::Put(b"key", b"value")]);
    w("seed-write-put", &put);
    w(
        "seed-write-mixed",
        &encode_write(
            u32::MAX,
            &[
                RecordOp::Put(b"a", b"1"),
                RecordOp::Delete(b"b"),
                RecordOp::Clear,
                RecordOp::Put(b"", b""),
            ],
        ),
    );
    w("seed-write-no-ops", &encode_write(1, &[]));

    let mut tag_0 = create.clone();
    tag_0[0] = 0;
    w("near-tag-0", &tag_0);
    let mut tag_3 = put.clone();
    tag_3[0] = 3;
    w("near-tag-3", &tag_3);
    let mut op_4 = put.clone();
    op_4[9] = 4;
    w("near-op-tag-4", &op_4);
    w("near-trailing-byte", &[&create[..], &[0]].concat());
    w("near-truncated", &put[..put.len() - 1]);
    let mut count = put.clone();
    count[5..9].copy_from_slice(&2u32.to_le_bytes());
    w("near-truncated-op-count-2-of-1", &count);
    let mut long = vec![catalog::RECORD_CREATE, 7, 0, 0, 0, 1];
    long.extend_from_slice(&(MAX_NAME_LEN as u16 + 1).to_le_bytes());
    long.extend_from_slice(&[b'a'; MAX_NAME_LEN + 1]);
    long.extend_from_slice(&[0; 4]);
    w("near-name-256", &long);
    let mut many = put.clone();
    many[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    w("near-count-u32-max", &many);
}

// ---- proptests -----------------------------------------------------------------------------

/// A collection, key type or value type name: short ASCII, or up to [`MAX_NAME_LEN`] bytes
/// of two- and three-byte characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{0,12}", "[a-zé€]{0,85}"]
}

fn catalog_entry() -> impl Strategy<Value = CatalogEntry> {
    (
        any::<u32>(),
        any::<u8>(),
        2u64..,
        any::<u64>(),
        any::<u64>(),
        (name(), name(), name()),
    )
        .prop_map(
            |(id, kind, root, count, checkpoint_lsn, (name, key_type, value_type))| CatalogEntry {
                id,
                kind,
                root,
                count,
                checkpoint_lsn,
                name,
                key_type,
                value_type,
            },
        )
}

/// A next-page link as a writer sets it: 0 (last) or a page past the superblock slots.
fn next_page() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 2u64..]
}

/// A valid collection record: a create or a write of a few ops.
fn collection_record() -> impl Strategy<Value = Vec<u8>> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..24);
    let op = prop_oneof![
        (bytes(), bytes()).prop_map(|(k, v)| (1u8, k, v)),
        bytes().prop_map(|k| (2u8, k, Vec::new())),
        Just((3u8, Vec::new(), Vec::new())),
    ];
    prop_oneof![
        (any::<u32>(), any::<u8>(), name(), name(), name())
            .prop_map(|(id, kind, n, k, v)| encode_create(id, kind, &n, &k, &v)),
        (any::<u32>(), proptest::collection::vec(op, 0..8)).prop_map(|(id, ops)| {
            let ops: Vec<RecordOp<'_>> = ops
                .iter()
                .map(|(t, k, v)| match t {
                    1 => RecordOp::Put(k, v),
                    2 => RecordOp::Delete(k),
                    _ => RecordOp::Clear,
                })
                .collect();
            encode_write(id, &ops)
        }),
    ]
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip these bits (indexes are reduced modulo the length).
    FlipBits(Vec<usize>),
    /// Overwrite the byte at this index (reduced modulo the length) with this value.
    SetByte(usize, u8),
    /// Keep only this many bytes (reduced modulo the length + 1).
    Truncate(usize),
    /// Zero a 512-byte-aligned sector (a torn or unwritten sector).
    ZeroSector(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        proptest::collection::vec(any::<usize>(), 1..=3).prop_map(Mutation::FlipBits),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::ZeroSector),
    ]
}

/// Applies `m` to `bytes`; returns false if it left the bytes unchanged.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) -> bool {
    let before = bytes.clone();
    let len = bytes.len();
    match m {
        Mutation::FlipBits(bits) => {
            let mut seen = Vec::new();
            for bit in bits {
                let bit = bit % (len * 8);
                // Two flips of one bit cancel out; flip each distinct bit once.
                if !seen.contains(&bit) {
                    seen.push(bit);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        Mutation::SetByte(i, b) => bytes[i % len] = *b,
        Mutation::Truncate(n) => bytes.truncate(n % (len + 1)),
        Mutation::ZeroSector(s) => {
            let start = (s % len.div_ceil(512)) * 512;
            let end = (start + 512).min(len);
            bytes[start..end].fill(0);
        }
    }
    *bytes != before
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_wal_record(&bytes);
        check_segment_header(&bytes);
        check_page(&bytes);
        check_catalog(&bytes);
        check_freelist(&bytes);
        check_record(&bytes);
    }

    #[test]
    fn random_bytes_after_valid_prefixes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        seq in any::<u64>(),
        cut in 0usize..64,
    ) {
        // Valid magic and header prefixes get the fuzzing deeper than pure noise does.
        let mut seg = SegmentHeader { seq, first_lsn: 1, segment_size: 1 << 20 }.encode()[..cut].to_vec();
        seg.extend_from_slice(&bytes);
        check_segment_header(&seg);
        let h = PageHeader { kind: 1, flags: 0, page_id: seq, lsn: 1, payload_len: 0 };
        let mut page = seq.to_le_bytes().to_vec();
        page.extend_from_slice(&encode_page(&h, &[], PAGE_HEADER_LEN)[..cut.min(PAGE_HEADER_LEN)]);
        page.extend_from_slice(&bytes);
        check_page(&page);
        let mut rec = seq.to_le_bytes().to_vec();
        let mut valid = Vec::new();
        encode_record(&mut valid, seq, 1, 0, &bytes);
        rec.extend_from_slice(&valid[..cut.min(RECORD_HEADER_LEN)]);
        rec.extend_from_slice(&bytes);
        check_wal_record(&rec);
    }

    #[test]
    fn mutated_wal_record_is_detected_or_unchanged(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        seq in any::<u64>(),
        lsn in 1u64..=persistx_io::format::wal::MAX_LSN,
        durable_back in 1u64..1000,
        m in mutation(),
    ) {
        let durable = lsn.saturating_sub(durable_back);
        let mut good = Vec::new();
        encode_record(&mut good, seq, lsn, durable, &payload);
        let original = decode_record(&good, seq).map(|(h, p)| (h, p.to_vec()));
        prop_assert!(original.is_ok());
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        check_wal_record(&[&seq.to_le_bytes()[..], &bad].concat());
        if let Ok((h, p)) = decode_record(&bad, seq) {
            prop_assert_eq!(Ok((h, p.to_vec())), original.clone(), "mutation {:?} decoded to another record", m);
        }
        // The same record read in another segment's life never validates.
        prop_assert!(decode_record(&good, seq.wrapping_add(1)).is_err());
    }

    #[test]
    fn mutated_segment_header_is_detected(
        seq in 0u64..=persistx_io::format::segment::MAX_SEQ,
        first_lsn in 1u64..=persistx_io::format::wal::MAX_LSN,
        segment_size in (SEGMENT_HEADER_LEN as u64)..=persistx_io::format::segment::MAX_SEGMENT_SIZE,
        m in mutation(),
    ) {
        let original = SegmentHeader { seq, first_lsn, segment_size };
        let good = original.encode().to_vec();
        prop_assert_eq!(SegmentHeader::decode(&good), Ok(original));
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        check_segment_header(&bad);
        // The header has no padding: every change is detected.
        let decoded = SegmentHeader::decode(&bad);
        prop_assert!(decoded.is_err(), "mutation {:?} went unnoticed: {:?}", m, decoded);
    }

    #[test]
    fn mutated_page_is_detected_or_unchanged(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        kind in 1u8..=255,
        flags in 0u8..=3,
        page_id in any::<u64>(),
        lsn in any::<u64>(),
        page_size in prop_oneof![Just(512usize), Just(1024), Just(4096)],
        m in mutation(),
    ) {
        let h = PageHeader { kind, flags, page_id, lsn, payload_len: 0 };
        let good = encode_page(&h, &payload, page_size);
        let original = decode_page(&good, page_id).map(|(h, p)| (h, p.to_vec()));
        prop_assert!(original.is_ok());
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        check_page(&[&page_id.to_le_bytes()[..], &bad].concat());
        match decode_page(&bad, page_id) {
            Ok((h, p)) => {
                // Only a change confined to the padding after the payload may go unnoticed.
                let end = PAGE_HEADER_LEN + payload.len();
                prop_assert_eq!(&bad[..end.min(bad.len())], &good[..end]);
                prop_assert_eq!(Ok((h, p.to_vec())), original.clone(), "mutation {:?} decoded to another page", m);
            }
            Err(FormatError::Mismatch { .. }) => {
                prop_assert!(false, "mutation {:?} decoded to a valid page for another location", m);
            }
            Err(_) => {}
        }
        // A misdirected read (another location) never validates.
        let misdirected = decode_page(&good, page_id.wrapping_add(1));
        prop_assert!(matches!(misdirected, Err(FormatError::Mismatch { .. })), "misdirected read: {:?}", misdirected);
    }

    #[test]
    fn every_catalog_page_passes_the_check(
        entries in proptest::collection::vec(catalog_entry(), 0..12),
        capacity in 12usize..1500,
        next in next_page(),
    ) {
        let mut got = Vec::new();
        for mut p in encode_catalog(&entries, capacity) {
            set_next(&mut p, next);
            prop_assert!(check_catalog(&p));
            got.extend(decode_catalog(&p).expect("checked").1);
        }
        prop_assert_eq!(got, entries);
    }

    #[test]
    fn mutated_catalog_page_is_rejected_or_canonical(
        entries in proptest::collection::vec(catalog_entry(), 0..6),
        next in next_page(),
        pad in 0usize..64,
        m in mutation(),
    ) {
        let mut good = catalog_page(&entries, next);
        let end = good.len();
        good.resize(end + pad, 0);
        prop_assert!(check_catalog(&good));
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        // Panics if the mutated page decodes to something it is not the encoding of.
        let accepted = check_catalog(&bad);
        if bad.len() < end {
            prop_assert!(!accepted, "the cut page {:?} decoded", m);
        } else if bad[..end] == good[..end] {
            // Only the padding changed.
            prop_assert_eq!(decode_catalog(&bad), Ok((next, entries)));
        }
    }

    #[test]
    fn mutated_freelist_page_is_rejected_or_canonical(
        gaps in proptest::collection::vec((0u64..1 << 20, 1u64..1 << 20), 0..24),
        next in next_page(),
        pad in 0usize..64,
        m in mutation(),
    ) {
        // Sorted, disjoint runs, as the allocator keeps them.
        let mut at = 2;
        let runs: Vec<(u64, u64)> = gaps
            .iter()
            .map(|&(gap, count)| {
                let first = at + gap;
                at = first + count;
                (first, count)
            })
            .collect();
        let mut good = freelist_page(&runs, next);
        prop_assert_eq!(&encode_freelist(&runs, good.len())[0][8..], &good[8..]);
        let end = good.len();
        good.resize(end + pad, 0);
        prop_assert!(check_freelist(&good));
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        let accepted = check_freelist(&bad);
        if bad.len() < end {
            prop_assert!(!accepted, "the cut page {:?} decoded", m);
        } else if bad[..end] == good[..end] {
            prop_assert_eq!(decode_freelist(&bad), Ok((next, runs)));
        }
    }

    #[test]
    fn mutated_record_is_rejected_or_canonical(good in collection_record(), m in mutation()) {
        prop_assert!(check_record(&good));
        let mut bad = good.clone();
        prop_assume!(apply(&mut bad, &m));
        let accepted = check_record(&bad);
        // A record is exactly its bytes: a cut one never decodes.
        if good.starts_with(&bad) {
            prop_assert!(!accepted, "the cut record {:?} decoded", m);
        }
    }
}
