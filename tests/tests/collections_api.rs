//! The typed API through the facade: every method of PersistentMap / PersistentSet /
//! PersistentList against std models, streams that outlive their handle, `Send` futures,
//! consistent snapshots across collections, readers during writes, and the clear errors
//! for bad input (which must leave stored data untouched).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use futures::TryStreamExt;
use persistx::io::Vfs;
use persistx::io::sim::SimDisk;
use persistx::{Database, EngineError, Error, PersistentList, PersistentMap, PersistentSet};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Compile-time proof that handles are `Clone + Send + Sync` and futures and streams are
/// `Send` (and streams `'static`).
#[allow(dead_code)]
fn futures_are_send() {
    fn send<T: Send>(_: T) {}
    fn handle<T: Clone + Send + Sync + 'static>() {}
    handle::<Database>();
    handle::<PersistentMap<u64, User>>();
    handle::<PersistentSet<String>>();
    handle::<PersistentList<Vec<u8>>>();
    let _ = |names: PersistentMap<String, u64>, blobs: PersistentSet<Vec<u8>>| {
        send(names.get("a"));
        send(names.remove("a"));
        send(blobs.contains(&b"a"[..]));
    };
    let _ = |db: Database,
             m: PersistentMap<u64, User>,
             s: PersistentSet<u64>,
             l: PersistentList<User>| {
        send(Database::open("x"));
        send(Database::in_memory());
        send(db.map::<u64, User>("m"));
        send(db.set::<u64>("s"));
        send(db.list::<User>("l"));
        send(db.snapshot());
        send(db.checkpoint());
        send(db.stats());
        send(db.verify());
        send(db.close());
        send(m.get(&1));
        send(m.contains_key(&1));
        send(m.snapshot().keys());
        send(m.snapshot().range_rev(..));
        send(s.contains(&1));
        send(s.range(..));
        send(l.range(1..));
        send(m.insert(
            1,
            User {
                name: String::new(),
                age: 0,
            },
        ));
        send(m.remove(&1));
        send(m.insert_many(Vec::new()));
        send(m.remove_many(Vec::<&u64>::new()));
        send(m.pop_first());
        send(m.retain(|_, _| true));
        send(m.clear());
        send(m.range(1..));
        send(m.first());
        send(s.insert(1));
        send(s.union(&s));
        send(l.push_back(User {
            name: String::new(),
            age: 0,
        }));
        send(l.get(0));
        send(l.iter());
        send(l.truncate(0));
    };
    // Streams are also `Unpin`: `stream.next().await` needs no pinning.
    fn unpin<T: futures::Stream + Send + Unpin + 'static>(_: T) {}
    let _ = |m: PersistentMap<u64, User>, s: PersistentSet<u64>, l: PersistentList<User>| {
        unpin(m.range(1..));
        unpin(m.iter());
        unpin(m.snapshot().range_rev(..));
        unpin(m.snapshot().range(..));
        unpin(m.snapshot().keys());
        unpin(s.range(..));
        unpin(s.iter());
        unpin(s.union(&s));
        unpin(s.intersection(&s));
        unpin(s.difference(&s));
        unpin(s.snapshot().iter());
        unpin(l.range(1..));
        unpin(l.iter());
        unpin(l.snapshot().range(..2));
    };
}

/// A stream is read with `next().await` as it comes, no pinning needed.
#[test]
fn streams_are_read_with_next_without_pinning() {
    use futures::StreamExt;
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let m: PersistentMap<u32, String> = db.map("m").await.unwrap();
        m.insert_many((0..10).map(|i| (i, format!("v{i}"))))
            .await
            .unwrap();
        let mut stream = m.range(3..6);
        let mut got = Vec::new();
        while let Some(entry) = stream.next().await {
            got.push(entry.unwrap());
        }
        assert_eq!(
            got,
            vec![(3, "v3".into()), (4, "v4".into()), (5, "v5".into())]
        );
    });
}

/// A bounded scan stops at the first key past its bound without reading that entry's long
/// value, in both directions; `keys()` never reads values.
#[test]
fn bounded_scans_do_not_read_the_value_past_the_bound() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("m").await.unwrap();
        let big = vec![7u8; 400_000]; // about 100 overflow pages
        m.insert(1, big.clone()).await.unwrap();
        m.insert(2, vec![2]).await.unwrap();
        m.insert(3, big.clone()).await.unwrap();
        db.close().await.unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("m").await.unwrap();
        let reads = || async { db.stats().await.unwrap().page_reads };
        let before = reads().await;
        let got: Vec<(u32, Vec<u8>)> = m.range(2..3).try_collect().await.unwrap();
        assert_eq!(got, vec![(2, vec![2])]);
        let got: Vec<(u32, Vec<u8>)> = m.snapshot().range_rev(2..=2).try_collect().await.unwrap();
        assert_eq!(got, vec![(2, vec![2])]);
        let keys: Vec<u32> = m.snapshot().keys().try_collect().await.unwrap();
        assert_eq!(keys, vec![1, 2, 3]);
        let read = reads().await - before;
        assert!(
            read < 20,
            "{read} pages read for scans that need no long value"
        );
        let got: Vec<(u32, Vec<u8>)> = m.range(3..).try_collect().await.unwrap();
        assert_eq!(got, vec![(3, big)]);
        assert!(
            reads().await - before >= 90,
            "the long value in range is read"
        );
        db.close().await.unwrap();
    });
}

/// Lookups and removals take a key's borrowed form (`&[u8]` for `Vec<u8>` and `Bytes`
/// keys, `&str` for `String` keys) and find exactly what the owned key stored.
#[test]
fn borrowed_key_forms_find_owned_keys() {
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let blobs: PersistentMap<Vec<u8>, u32> = db.map("blobs").await.unwrap();
        let raw: PersistentMap<bytes::Bytes, u32> = db.map("raw").await.unwrap();
        let names: PersistentSet<String> = db.set("names").await.unwrap();
        for (i, k) in [&b"a\0b"[..], b"", b"\xff\x00", b"abc"]
            .into_iter()
            .enumerate()
        {
            blobs.insert(k.to_vec(), i as u32).await.unwrap();
            raw.insert(bytes::Bytes::copy_from_slice(k), i as u32)
                .await
                .unwrap();
            assert_eq!(blobs.get(k).await.unwrap(), Some(i as u32));
            assert_eq!(blobs.get(&k.to_vec()).await.unwrap(), Some(i as u32));
            assert_eq!(raw.get(k).await.unwrap(), Some(i as u32));
            assert!(blobs.contains_key(k).await.unwrap());
        }
        assert_eq!(blobs.get(&b"a"[..]).await.unwrap(), None);
        assert_eq!(blobs.remove(&b"abc"[..]).await.unwrap(), Some(3));
        assert_eq!(blobs.get(&b"abc"[..]).await.unwrap(), None);
        assert_eq!(blobs.len(), 3);
        assert!(names.insert("ada".to_string()).await.unwrap());
        assert!(names.contains("ada").await.unwrap());
        assert!(!names.contains("bob").await.unwrap());
        assert!(names.remove("ada").await.unwrap());
        assert!(names.is_empty());
        db.close().await.unwrap();
    });
}

#[test]
fn map_methods_and_reopen() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let users: PersistentMap<u64, User> = db.map("users").await.unwrap();
        let ada = User {
            name: "ada".into(),
            age: 36,
        };
        assert_eq!(users.insert(7, ada.clone()).await.unwrap(), None);
        assert_eq!(
            users.insert(7, ada.clone()).await.unwrap(),
            Some(ada.clone())
        );
        assert_eq!(users.get(&7).await.unwrap(), Some(ada.clone()));
        assert!(users.contains_key(&7).await.unwrap());
        assert!(!users.contains_key(&8).await.unwrap());
        users
            .insert_many((10..20).map(|i| {
                (
                    i,
                    User {
                        name: format!("u{i}"),
                        age: i as u32,
                    },
                )
            }))
            .await
            .unwrap();
        assert_eq!(users.len(), 11);
        assert_eq!(users.first().await.unwrap().unwrap().0, 7);
        assert_eq!(users.last().await.unwrap().unwrap().0, 19);
        let mid: Vec<u64> = users
            .range(12..=14)
            .map_ok(|(k, _)| k)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(mid, vec![12, 13, 14]);
        let back: Vec<u64> = users
            .snapshot()
            .range_rev(..12)
            .map_ok(|(k, _)| k)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(back, vec![11, 10, 7]);
        assert_eq!(users.pop_first().await.unwrap().unwrap().0, 7);
        assert_eq!(users.pop_last().await.unwrap().unwrap().0, 19);
        assert_eq!(
            users
                .remove_many([&10, &11, &99].into_iter())
                .await
                .unwrap(),
            2
        );
        let removed = users.retain(|k, _| k % 2 == 0).await.unwrap();
        assert_eq!(removed, 3); // 13, 15, 17
        let keys: Vec<u64> = users.iter().map_ok(|(k, _)| k).try_collect().await.unwrap();
        assert_eq!(keys, vec![12, 14, 16, 18]);
        // A stream owns its snapshot: it outlives the handle and crosses tasks, and does not
        // see later writes.
        let stream = users.iter();
        drop(users);
        let users: PersistentMap<u64, User> = db.map("users").await.unwrap();
        users.remove(&12).await.unwrap();
        let seen: Vec<u64> =
            tokio::spawn(async move { stream.map_ok(|(k, _)| k).try_collect::<Vec<_>>().await })
                .await
                .unwrap()
                .unwrap();
        assert_eq!(seen, vec![12, 14, 16, 18]);
        db.close().await.unwrap();
        // Reopen: everything is still there.
        let db = Database::open(dir.path()).await.unwrap();
        let users: PersistentMap<u64, User> = db.map("users").await.unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.get(&14).await.unwrap().unwrap().age, 14);
        users.clear().await.unwrap();
        assert!(users.is_empty());
        db.close().await.unwrap();
    });
}

/// Batches larger than one window (65,536 ops or 16 MiB) become staged bulk writes: sorted
/// runs on scratch pages merged at commit. Same answers as a model, duplicates resolved in
/// order, counts right, nothing left on scratch pages.
#[test]
fn batches_larger_than_a_window() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder()
            .cache_size(8 << 20)
            .open(dir.path())
            .await
            .unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("big").await.unwrap();
        let mut model = BTreeMap::new();
        // 150,000 pairs in scattered order; keys below 10,000 come twice (the last wins).
        let pairs: Vec<(u32, Vec<u8>)> = (0..150_000u32)
            .map(|i| {
                let k = i.wrapping_mul(2_654_435_761) % 140_000;
                (k, format!("{i}").into_bytes())
            })
            .chain((0..10_000u32).map(|k| (k, b"second".to_vec())))
            .collect();
        for (k, v) in &pairs {
            model.insert(*k, v.clone());
        }
        m.insert_many(pairs).await.unwrap();
        assert_eq!(m.len(), model.len() as u64);
        // Remove 100,000 keys, a third of them absent.
        let doomed: Vec<u32> = (0..100_000u32).map(|i| i * 2 + 1).collect();
        let present = doomed.iter().filter(|k| model.contains_key(k)).count() as u64;
        assert_eq!(m.remove_many(doomed.iter()).await.unwrap(), present);
        for k in &doomed {
            model.remove(k);
        }
        let s: PersistentSet<u64> = db.set("members").await.unwrap();
        s.insert_many((0..80_000u64).rev()).await.unwrap();
        assert_eq!(s.len(), 80_000);
        db.close().await.unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("big").await.unwrap();
        let got: Vec<(u32, Vec<u8>)> = m.iter().try_collect().await.unwrap();
        let want: Vec<(u32, Vec<u8>)> = model.into_iter().collect();
        assert!(got == want, "{} entries, want {}", got.len(), want.len());
        let s: PersistentSet<u64> = db.set("members").await.unwrap();
        let members: Vec<u64> = s.iter().try_collect().await.unwrap();
        assert!(members.iter().copied().eq(0..80_000u64));
        let report = db.verify().await.unwrap();
        assert_eq!(report.leaked_pages, 0, "{report:?}");
        db.close().await.unwrap();
    });
}

#[test]
fn set_and_list_methods() {
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let a: PersistentSet<String> = db.set("a").await.unwrap();
        let b: PersistentSet<String> = db.set("b").await.unwrap();
        for x in ["x", "y", "z"] {
            assert!(a.insert(x.to_string()).await.unwrap());
        }
        assert!(!a.insert("x".to_string()).await.unwrap());
        b.insert_many(["y", "z", "w"].map(String::from))
            .await
            .unwrap();
        assert!(a.remove(&"x".to_string()).await.unwrap());
        assert!(!a.remove(&"x".to_string()).await.unwrap());
        a.insert("x".to_string()).await.unwrap();
        let union: Vec<String> = a.union(&b).try_collect().await.unwrap();
        assert_eq!(union, ["w", "x", "y", "z"]);
        let inter: Vec<String> = a.intersection(&b).try_collect().await.unwrap();
        assert_eq!(inter, ["y", "z"]);
        let diff: Vec<String> = a.difference(&b).try_collect().await.unwrap();
        assert_eq!(diff, ["x"]);
        let r: Vec<String> = a.range("y".to_string()..).try_collect().await.unwrap();
        assert_eq!(r, ["y", "z"]);
        assert!(a.contains(&"y".to_string()).await.unwrap());
        assert_eq!(a.len(), 3);

        let l: PersistentList<u32> = db.list("l").await.unwrap();
        l.extend(0..10).await.unwrap();
        l.push_front(100).await.unwrap();
        l.insert(5, 55).await.unwrap();
        assert_eq!(l.get(5).await.unwrap(), Some(55));
        assert_eq!(l.set(0, 101).await.unwrap(), 100);
        assert_eq!(l.remove(1).await.unwrap(), Some(0));
        assert_eq!(l.pop_back().await.unwrap(), Some(9));
        assert_eq!(l.pop_front().await.unwrap(), Some(101));
        l.truncate(5).await.unwrap();
        let all: Vec<u32> = l.iter().try_collect().await.unwrap();
        assert_eq!(all, vec![1, 2, 3, 55, 4]);
        let part: Vec<u32> = l.range(1..3).try_collect().await.unwrap();
        assert_eq!(part, vec![2, 3]);
        assert!(l.insert(99, 1).await.is_err());
        assert!(l.set(99, 1).await.is_err());
        assert_eq!(l.len(), 5);
        db.close().await.unwrap();
    });
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<String, Vec<u8>> = db.map("m").await.unwrap();
        m.insert("k".into(), vec![1]).await.unwrap();
        let long_key = "k".repeat(5000);
        let e = m.insert(long_key, vec![]).await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::TooLarge { what: "key", .. })),
            "{e}"
        );
        let e = m.insert("v".into(), vec![0; 17 << 20]).await.unwrap_err();
        assert!(
            matches!(
                e.engine(),
                Some(EngineError::TooLarge { what: "value", .. })
            ),
            "{e}"
        );
        // Another key/value type or kind for an existing name.
        let e = db.map::<u64, Vec<u8>>("m").await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::WrongCollectionType { .. })),
            "{e}"
        );
        let e = db.set::<String>("m").await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::WrongCollectionType { .. })),
            "{e}"
        );
        for bad in ["", "__system", "a\nb"] {
            let e = db.map::<u64, u64>(bad).await.unwrap_err();
            assert!(
                matches!(e.engine(), Some(EngineError::InvalidArgument(_))),
                "{bad:?}: {e}"
            );
        }
        // Held by another handle: a clear lock error.
        let e = Database::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::Locked { .. })),
            "{e}"
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("k").await.unwrap(), Some(vec![1]));
        assert_eq!(m.get(&"k".to_string()).await.unwrap(), Some(vec![1]));
        assert!(m.contains_key("k").await.unwrap());
        assert!(!m.contains_key("k2").await.unwrap());
        db.close().await.unwrap();

        // A folder with other files is not a database.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("notes.txt"), b"hello").unwrap();
        let e = Database::open(other.path()).await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::NotADatabase { .. })),
            "{e}"
        );
        assert_eq!(
            std::fs::read(other.path().join("notes.txt")).unwrap(),
            b"hello"
        );

        // A database from a newer format version.
        let data = dir.path().join("data.px");
        let mut bytes = std::fs::read(&data).unwrap();
        for slot in [0usize, 4096] {
            // Bump the version and recompute the slot's checksum.
            bytes[slot + 8..slot + 12].copy_from_slice(&99u32.to_le_bytes());
            let crc = crc32c_slot(&bytes[slot..slot + 124], (slot / 4096) as u32);
            bytes[slot + 124..slot + 128].copy_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(&data, &bytes).unwrap();
        let e = Database::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(e.engine(), Some(EngineError::NewerFormat { found: 99, .. })),
            "{e}"
        );
    });
}

fn crc32c_slot(bytes: &[u8], slot: u32) -> u32 {
    // Same as the superblock's checksum: crc32c of bytes 0..124 then the slot number.
    let mut data = bytes.to_vec();
    data.extend_from_slice(&slot.to_le_bytes());
    crc32c(&data)
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn full_disk_is_a_clear_error_and_reads_still_work() {
    rt().block_on(async {
        let disk = SimDisk::new();
        let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
        let db = Database::builder()
            .open_on(vfs.clone(), "/db")
            .await
            .unwrap();
        let m: PersistentMap<u64, Vec<u8>> = db.map("m").await.unwrap();
        m.insert(1, vec![1; 100]).await.unwrap();
        db.checkpoint().await.unwrap();
        disk.set_capacity(Some(0));
        let mut failed = false;
        for i in 2..2000u64 {
            if m.insert(i, vec![2; 3000]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a full disk must fail writes");
        assert_eq!(m.get(&1).await.unwrap(), Some(vec![1; 100]));
        drop(m);
        drop(db);
    });
}

#[test]
fn snapshot_is_consistent_across_collections() {
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let a: PersistentMap<u64, u64> = db.map("a").await.unwrap();
        let b: PersistentMap<u64, u64> = db.map("b").await.unwrap();
        // A writer moves units from a to b, one write to each, always a-first; the invariant
        // "sum over a + sum over b" is broken only between the two writes. A snapshot taken
        // while it runs must show a[k] + b[k] in {100, 100 - 1} for the key being moved and
        // exactly 100 for the others, since a's write always precedes b's in the log.
        for k in 0..4 {
            a.insert(k, 100).await.unwrap();
            b.insert(k, 0).await.unwrap();
        }
        let (a2, b2) = (a.clone(), b.clone());
        let writer = tokio::spawn(async move {
            for step in 0..400u64 {
                let k = step % 4;
                let x = a2.get(&k).await.unwrap().unwrap();
                let y = b2.get(&k).await.unwrap().unwrap();
                if x == 0 {
                    continue;
                }
                a2.insert(k, x - 1).await.unwrap();
                b2.insert(k, y + 1).await.unwrap();
            }
        });
        for _ in 0..50 {
            let snap = db.snapshot().await.unwrap();
            let (sa, sb) = (snap.map(&a), snap.map(&b));
            let mut short = 0;
            for k in 0..4 {
                let total = sa.get(&k).await.unwrap().unwrap() + sb.get(&k).await.unwrap().unwrap();
                assert!(total == 100 || total == 99, "{total}");
                short += u64::from(total == 99);
            }
            assert!(
                short <= 1,
                "at most one move is half done at a consistent point"
            );
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        db.close().await.unwrap();
    });
}

#[test]
fn readers_see_only_whole_writes() {
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let m: PersistentMap<u64, u64> = db.map("m").await.unwrap();
        // Each write sets all 16 keys to the same generation in one atomic insert_many.
        m.insert_many((0..16).map(|k| (k, 0))).await.unwrap();
        let writer = {
            let m = m.clone();
            tokio::spawn(async move {
                for generation in 1..=300u64 {
                    m.insert_many((0..16).map(|k| (k, generation)))
                        .await
                        .unwrap();
                }
            })
        };
        let mut readers = Vec::new();
        for _ in 0..8 {
            let m = m.clone();
            readers.push(tokio::spawn(async move {
                let mut last = 0;
                for _ in 0..200 {
                    let vals: Vec<u64> = m.iter().map_ok(|(_, v)| v).try_collect().await.unwrap();
                    assert_eq!(vals.len(), 16);
                    assert!(
                        vals.iter().all(|v| *v == vals[0]),
                        "a torn version: {vals:?}"
                    );
                    assert!(vals[0] >= last, "versions go forward");
                    last = vals[0];
                    tokio::task::yield_now().await;
                }
            }));
        }
        writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        db.close().await.unwrap();
    });
}

#[derive(Debug, Clone)]
enum MapOp {
    Insert(u16, u16),
    Remove(u16),
    InsertMany(Vec<(u16, u16)>),
    PopFirst,
    PopLast,
    Clear,
    Checkpoint,
    Reopen,
    /// Reads: `range`, `range_rev`, `keys`, `get` and `contains_key` against the model.
    Scan(u16, u16),
}

fn map_op() -> impl Strategy<Value = MapOp> {
    prop_oneof![
        20 => (0u16..300, any::<u16>()).prop_map(|(k, v)| MapOp::Insert(k, v)),
        8 => (0u16..300).prop_map(MapOp::Remove),
        3 => prop::collection::vec((0u16..300, any::<u16>()), 0..20).prop_map(MapOp::InsertMany),
        2 => Just(MapOp::PopFirst),
        2 => Just(MapOp::PopLast),
        1 => Just(MapOp::Clear),
        2 => Just(MapOp::Checkpoint),
        2 => Just(MapOp::Reopen),
        3 => (0u16..300, 0u16..300).prop_map(|(a, b)| MapOp::Scan(a, b)),
    ]
}

fn big(v: u16) -> Vec<u8> {
    // Every 7th value is large (overflow pages at checkpoints).
    let len = if v.is_multiple_of(7) {
        2000 + v as usize % 3000
    } else {
        v as usize % 64
    };
    (0..len).map(|i| (i as u16).wrapping_add(v) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The typed map against a BTreeMap, across checkpoints and close/reopen on the
    /// simulated disk. (Crash images are covered at the engine level in
    /// actors/tests/engine_model.rs.)
    #[test]
    fn typed_map_matches_btreemap(ops in prop::collection::vec(map_op(), 1..80)) {
        rt().block_on(async {
            let vfs: Arc<dyn Vfs> = Arc::new(SimDisk::new());
            let open = || Database::builder().auto_checkpoint(false).open_on(vfs.clone(), "/db");
            let mut db = open().await.unwrap();
            let mut m: PersistentMap<u16, Vec<u8>> = db.map("m").await.unwrap();
            let mut model: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
            for op in ops {
                match op {
                    MapOp::Insert(k, v) => assert_eq!(m.insert(k, big(v)).await.unwrap(), model.insert(k, big(v))),
                    MapOp::Remove(k) => assert_eq!(m.remove(&k).await.unwrap(), model.remove(&k)),
                    MapOp::InsertMany(pairs) => {
                        m.insert_many(pairs.iter().map(|(k, v)| (*k, big(*v)))).await.unwrap();
                        for (k, v) in pairs {
                            model.insert(k, big(v));
                        }
                    }
                    MapOp::PopFirst => assert_eq!(m.pop_first().await.unwrap(), model.pop_first()),
                    MapOp::PopLast => assert_eq!(m.pop_last().await.unwrap(), model.pop_last()),
                    MapOp::Clear => {
                        m.clear().await.unwrap();
                        model.clear();
                    }
                    MapOp::Checkpoint => db.checkpoint().await.unwrap(),
                    MapOp::Reopen => {
                        db.close().await.unwrap();
                        db = open().await.unwrap();
                        m = db.map("m").await.unwrap();
                    }
                    MapOp::Scan(a, b) => {
                        let (lo, hi) = (a.min(b), a.max(b));
                        let got: Vec<(u16, Vec<u8>)> = m.range(lo..hi).try_collect().await.unwrap();
                        let want: Vec<(u16, Vec<u8>)> =
                            model.range(lo..hi).map(|(k, v)| (*k, v.clone())).collect();
                        assert_eq!(got, want);
                        let got: Vec<(u16, Vec<u8>)> = m.snapshot().range_rev(lo..=hi).try_collect().await.unwrap();
                        let want: Vec<(u16, Vec<u8>)> =
                            model.range(lo..=hi).rev().map(|(k, v)| (*k, v.clone())).collect();
                        assert_eq!(got, want);
                        let keys: Vec<u16> = m.snapshot().keys().try_collect().await.unwrap();
                        assert_eq!(keys, model.keys().copied().collect::<Vec<_>>());
                        assert_eq!(m.get(&lo).await.unwrap(), model.get(&lo).cloned());
                        assert_eq!(m.contains_key(&hi).await.unwrap(), model.contains_key(&hi));
                    }
                }
                assert_eq!(m.len(), model.len() as u64);
            }
            let all: Vec<(u16, Vec<u8>)> = m.iter().try_collect().await.unwrap();
            assert_eq!(all, model.into_iter().collect::<Vec<_>>());
            let report = db.verify().await.unwrap();
            assert_eq!(report.collections.len(), 1);
            db.close().await.unwrap();
        });
    }

    /// The typed set and list against BTreeSet and VecDeque.
    #[test]
    fn typed_set_and_list_match_models(seed in any::<u64>()) {
        rt().block_on(async {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let db = Database::builder().in_memory().auto_checkpoint(false).open("").await.unwrap();
            let s: PersistentSet<(u8, String)> = db.set("s").await.unwrap();
            let l: PersistentList<u32> = db.list("l").await.unwrap();
            let mut sm: BTreeSet<(u8, String)> = BTreeSet::new();
            let mut lm: VecDeque<u32> = VecDeque::new();
            for step in 0..150u32 {
                let item = (rng.random_range(0..20u8), format!("{}", rng.random_range(0..5)));
                match rng.random_range(0..3) {
                    0 => assert_eq!(s.insert(item.clone()).await.unwrap(), sm.insert(item)),
                    1 => assert_eq!(s.remove(&item).await.unwrap(), sm.remove(&item)),
                    _ => assert_eq!(s.contains(&item).await.unwrap(), sm.contains(&item)),
                }
                let len = lm.len() as u64;
                match rng.random_range(0..9) {
                    0 => { l.push_back(step).await.unwrap(); lm.push_back(step); }
                    1 => { l.push_front(step).await.unwrap(); lm.push_front(step); }
                    2 => assert_eq!(l.pop_back().await.unwrap(), lm.pop_back()),
                    3 => assert_eq!(l.pop_front().await.unwrap(), lm.pop_front()),
                    4 => {
                        let i = rng.random_range(0..=len);
                        l.insert(i, step).await.unwrap();
                        lm.insert(i as usize, step);
                    }
                    5 if len > 0 => {
                        let i = rng.random_range(0..len);
                        assert_eq!(l.remove(i).await.unwrap(), lm.remove(i as usize));
                    }
                    6 if len > 0 => {
                        let i = rng.random_range(0..len);
                        assert_eq!(l.set(i, step).await.unwrap(), std::mem::replace(&mut lm[i as usize], step));
                    }
                    7 => {
                        let n = rng.random_range(0..=len + 2);
                        l.truncate(n).await.unwrap();
                        lm.truncate(n as usize);
                    }
                    _ => {
                        let i = rng.random_range(0..=len);
                        assert_eq!(l.get(i).await.unwrap(), lm.get(i as usize).copied());
                    }
                }
            }
            let all: Vec<(u8, String)> = s.iter().try_collect().await.unwrap();
            assert_eq!(all, sm.into_iter().collect::<Vec<_>>());
            let all: Vec<u32> = l.iter().try_collect().await.unwrap();
            assert_eq!(all, lm.iter().copied().collect::<Vec<_>>());
            // Ranges of positions, clamped to the length as the list documents.
            let len = lm.len() as u64;
            for _ in 0..8 {
                let (a, b) = (rng.random_range(0..=len + 2), rng.random_range(0..=len + 2));
                let got: Vec<u32> = l.range(a..b).try_collect().await.unwrap();
                let (lo, hi) = (a.min(len) as usize, b.min(len) as usize);
                let want: Vec<u32> = if lo < hi { lm.range(lo..hi).copied().collect() } else { Vec::new() };
                assert_eq!(got, want, "range {a}..{b} of {len}");
            }
            db.close().await.unwrap();
        });
    }
}

#[test]
fn value_codecs_record_their_format() {
    rt().block_on(async {
        let db = Database::in_memory().await.unwrap();
        let m: PersistentMap<u64, User> = db.map("m").await.unwrap();
        m.insert(
            1,
            User {
                name: "x".into(),
                age: 1,
            },
        )
        .await
        .unwrap();
        // Dumped bytes: JSON codec id 1, schema version 0, then JSON.
        let raw = db.engine().existing_collection("m").await.unwrap().unwrap();
        let v = raw.snapshot().nth(0).await.unwrap().unwrap().1;
        assert_eq!(v[0], 1);
        assert_eq!(&v[3..], br#"{"name":"x","age":1}"#);
        // Blobs are stored raw: one header byte and the bytes.
        let blobs: PersistentMap<u64, Vec<u8>> = db.map("blobs").await.unwrap();
        blobs.insert(1, vec![9; 10]).await.unwrap();
        let raw = db
            .engine()
            .existing_collection("blobs")
            .await
            .unwrap()
            .unwrap();
        let v = raw.snapshot().nth(0).await.unwrap().unwrap().1;
        assert_eq!(v.len(), 11);
        let _: &Error = &Error::Engine(EngineError::Closed);
        db.close().await.unwrap();
    });
}

/// After most of a map is removed, `Database::vacuum` shrinks the file to about what is
/// left, and the close's own vacuum leaves a small file too; every kept entry survives.
#[test]
fn vacuum_shrinks_the_file_after_removals() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.px");
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("m").await.unwrap();
        m.insert_many((0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761), vec![i as u8; 120])))
            .await
            .unwrap();
        let removed = m.retain(|k, _| k % 10 == 0).await.unwrap();
        assert!(removed > 30_000, "removed {removed}");
        db.engine().checkpoint().await.unwrap();
        let before = std::fs::metadata(&file).unwrap().len();
        let cut = db.vacuum().await.unwrap();
        let after = std::fs::metadata(&file).unwrap().len();
        assert!(
            cut > 0 && after * 2 < before,
            "{before} -> {after} bytes, {cut} pages cut"
        );
        let left = m.len();
        db.close().await.unwrap();
        let db = Database::open(dir.path()).await.unwrap();
        let m: PersistentMap<u32, Vec<u8>> = db.map("m").await.unwrap();
        assert_eq!(m.len(), left);
        for i in (0..40_000u32).step_by(13) {
            let k = i.wrapping_mul(2_654_435_761);
            let want = (k % 10 == 0).then(|| vec![i as u8; 120]);
            assert_eq!(m.get(&k).await.unwrap(), want, "key {k}");
        }
        db.verify().await.unwrap();
        db.close().await.unwrap();
    });
}
