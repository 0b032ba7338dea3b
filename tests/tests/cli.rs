//! The `persistx` command line, run as a real process: `demo` writes and verifies 2000 items,
//! then `verify`, `stats`, `dump` and `compact` work on the directory it leaves; damage makes
//! `verify` fail naming the file; a folder that is not a database and a missing collection
//! are refused with a clear message.
//!
//! The binary belongs to the root package `persistx`, and Cargo tells integration tests only
//! where their own package's binaries are (`CARGO_BIN_EXE_<name>`). So this package compiles
//! the same `src/main.rs` as its binary `persistx-cli` (see `tests/Cargo.toml`): cargo builds
//! it fresh for every test run, in the same invocation, with the same dependency versions
//! and features, so a stale or missing binary cannot happen.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use persistx::io::format::catalog::decode_catalog;
use persistx::io::format::node::{KIND_INTERIOR, KIND_LEAF};
use persistx::io::format::page::{PAGE_HEADER_LEN, decode_page};
use persistx::io::format::superblock::{Superblock, choose};

const ITEMS: u64 = 2000;
const PRODUCERS: u64 = 8;
// Each producer writes the same share (the demo gives the remainder to the first ones).
const _: () = assert!(ITEMS.is_multiple_of(PRODUCERS));

/// The `persistx` command line: the `persistx-cli` twin this package compiles from
/// `src/main.rs` (see `tests/Cargo.toml`).
fn persistx_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_persistx-cli"))
}

fn persistx(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(persistx_bin());
    for a in args {
        cmd.arg(a.replace("{D}", dir.to_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "$ persistx {}\n  exit {:?}\n  stdout: {} lines\n  stderr: {}",
        args.join(" "),
        out.status.code(),
        out.stdout.split(|b| *b == b'\n').count() - 1,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The demo's value of item `i` of producer `p` (as `src/main.rs` writes it).
fn payload(p: u64, i: u64) -> String {
    format!("producer={p:04} item={i:010} payload={}", "p".repeat(40))
}

/// Bytes of a dumped key or value: a JSON string holds UTF-8 bytes, `{"hex": ...}` others.
fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Object(o) => {
            let hex = o["hex"].as_str().unwrap();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        }
        other => panic!("unexpected JSON for bytes: {other}"),
    }
}

/// Checks a dump of the demo map: one JSON line per item, every (producer, item) key once in
/// key order, each with its payload.
fn check_dump(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, ITEMS, "dump lines");
    let mut keys = Vec::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = json_bytes(&v["key"]);
        assert_eq!(key.len(), 16, "a (u64, u64) key is 16 bytes: {line}");
        let p = u64::from_be_bytes(key[..8].try_into().unwrap());
        let i = u64::from_be_bytes(key[8..].try_into().unwrap());
        assert_eq!(
            json_bytes(&v["value"]),
            payload(p, i).into_bytes(),
            "value of ({p}, {i})"
        );
        keys.push((p, i));
    }
    let expected: Vec<(u64, u64)> = (0..PRODUCERS)
        .flat_map(|p| (0..ITEMS / PRODUCERS).map(move |i| (p, i)))
        .collect();
    assert_eq!(keys, expected, "dumped keys, in order");
}

/// A page of `data.px` that holds a node of `collection`'s tree (its root), and the length of
/// its payload.
fn tree_page(data: &[u8], collection: &str) -> (usize, usize) {
    let page_of = |p: u64| -> &[u8] {
        let ps = 4096; // the demo's default page size
        &data[p as usize * ps..(p as usize + 1) * ps]
    };
    let (_, sb) = choose(
        Superblock::decode(page_of(0), 0),
        Superblock::decode(page_of(1), 1),
    )
    .unwrap();
    assert_eq!(sb.page_size, 4096);
    let mut p = sb.catalog_root;
    while p != 0 {
        let (_, payload) = decode_page(page_of(p), p).unwrap();
        let (next, entries) = decode_catalog(payload).unwrap();
        if let Some(e) = entries.iter().find(|e| e.name == collection) {
            let (h, payload) = decode_page(page_of(e.root), e.root).unwrap();
            assert!(h.kind == KIND_LEAF || h.kind == KIND_INTERIOR);
            return (e.root as usize, payload.len());
        }
        p = next;
    }
    panic!("no collection {collection:?} in the catalog");
}

#[test]
fn demo_then_verify_stats_dump_compact_and_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("db");
    let items = ITEMS.to_string();
    let producers = PRODUCERS.to_string();

    let out = persistx(
        &[
            "demo",
            "--items",
            &items,
            "--producers",
            &producers,
            "--dir",
            "{D}",
        ],
        &d,
    );
    assert!(out.status.success(), "demo: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("reopened and verified all {ITEMS} items")),
        "demo output: {}",
        stdout(&out)
    );

    let out = persistx(&["verify", "{D}"], &d);
    assert!(out.status.success(), "verify: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("demo: {ITEMS} entries")),
        "verify output: {}",
        stdout(&out)
    );

    let out = persistx(&["stats", "{D}"], &d);
    assert!(out.status.success(), "stats: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("collection\tkind\tentries")),
        "stats header: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("demo\tmap\t{ITEMS}\t"))),
        "stats line of the demo map: {text}"
    );

    let out = persistx(&["dump", "{D}", "demo"], &d);
    assert!(out.status.success(), "dump: {}", stderr(&out));
    let dumped = stdout(&out);
    check_dump(&dumped);

    let out = persistx(&["dump", "{D}", "nosuch"], &d);
    assert!(!out.status.success(), "dump of a missing collection");
    assert!(
        stderr(&out).contains("no collection \"nosuch\""),
        "dump nosuch: {}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    let out = persistx(&["compact", "{D}"], &d);
    assert!(out.status.success(), "compact: {}", stderr(&out));
    assert!(stdout(&out).contains("compacted"), "{}", stdout(&out));
    let left: BTreeSet<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        BTreeSet::from(["db".to_string()]),
        "compact leaves only the database"
    );
    let out = persistx(&["verify", "{D}"], &d);
    assert!(
        out.status.success(),
        "verify after compact: {}",
        stderr(&out)
    );
    let out = persistx(&["dump", "{D}", "demo"], &d);
    assert!(out.status.success(), "dump after compact: {}", stderr(&out));
    assert!(
        stdout(&out) == dumped,
        "dump after compact differs from before"
    );

    // One flipped bit inside a tree page in use.
    let data_path = d.join("data.px");
    let mut data = std::fs::read(&data_path).unwrap();
    let (page, payload_len) = tree_page(&data, "demo");
    data[page * 4096 + PAGE_HEADER_LEN + payload_len / 2] ^= 0x04;
    std::fs::write(&data_path, &data).unwrap();
    let out = persistx(&["verify", "{D}"], &d);
    assert!(!out.status.success(), "verify of a damaged database passed");
    let err = stderr(&out);
    assert!(
        err.contains("DAMAGED") && err.contains("data.px"),
        "verify must name the damaged file: {err}"
    );
    let out = persistx(&["dump", "{D}", "demo"], &d);
    assert!(!out.status.success(), "dump of a damaged tree passed");
    assert!(stderr(&out).contains("data.px"), "{}", stderr(&out));
}

#[test]
fn tools_refuse_a_folder_that_is_not_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("notes");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("notes.txt"), b"not a database").unwrap();
    for args in [
        &["verify", "{D}"][..],
        &["stats", "{D}"],
        &["dump", "{D}", "demo"],
        &["compact", "{D}"],
    ] {
        let out = persistx(args, &d);
        assert!(!out.status.success(), "{args:?} on a plain folder");
        let err = stderr(&out);
        assert!(
            err.contains("is not a PersistX database") && err.contains(d.to_str().unwrap()),
            "{args:?}: unclear message: {err}"
        );
    }
    // Nothing was created or changed.
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["notes.txt".to_string()]);
    let siblings = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(siblings, 1, "nothing created next to the folder");

    let missing = tmp.path().join("missing");
    let out = persistx(&["verify", "{D}"], &missing);
    assert!(!out.status.success(), "verify of a missing folder");
    assert!(stderr(&out).contains("is not a PersistX database"));
    assert!(!missing.exists(), "verify created the folder");
}
