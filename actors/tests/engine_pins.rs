//! Pinned interior nodes (`tree::pin`) never answer for a page that changed.
//!
//! Long keys that share a 490-byte prefix leave a few children per interior node, so a few
//! thousand keys make a tree six levels deep whose interior nodes pin their interior
//! children during lookups. Rounds of random puts and removes, each ended by a checkpoint
//! that writes the changed paths to reused free pages, are checked against a `BTreeMap` by
//! point lookups (which walk the pins) and a full scan; a snapshot taken in one round is
//! read again two rounds later and must still equal its own model. Passes when every read
//! matches, pins were used, and their memory stays within their budget.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::engine::{Collection, Engine, EngineOptions, Kind, Op, Snapshot};
use persistx_io::Vfs;
use persistx_io::memory::MemoryVfs;
use rand::{Rng, SeedableRng};

type Model = BTreeMap<Bytes, Bytes>;

fn key(i: u32) -> Bytes {
    let mut k = vec![b'k'; 490];
    k.extend_from_slice(format!("{i:08}").as_bytes());
    Bytes::from(k)
}

fn val(round: u32, i: u32) -> Bytes {
    Bytes::from(format!("round {round} key {i}").repeat(1 + (i % 7) as usize))
}

/// Every key of `model` (and some absent ones) looked up through `snap`, then a full scan.
async fn check(snap: &Snapshot, model: &Model, keys: u32, ctx: &str) {
    for i in 0..keys + 50 {
        let k = key(i);
        let got = snap.get(&k).await.unwrap();
        assert_eq!(got.as_ref(), model.get(&k), "{ctx}: get of key {i}");
        assert_eq!(
            snap.contains(&k).await.unwrap(),
            model.contains_key(&k),
            "{ctx}: contains of key {i}"
        );
    }
    assert_eq!(snap.len(), model.len() as u64, "{ctx}: len");
    let mut cursor = snap.cursor(std::ops::Bound::Unbounded, true).await.unwrap();
    let mut scanned = Vec::new();
    while let Some((k, v)) = snap.step(&mut cursor, true).await.unwrap() {
        scanned.push((k, v));
    }
    let expected: Vec<(Bytes, Bytes)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(
        scanned == expected,
        "{ctx}: full scan differs from the model"
    );
}

async fn write(c: &Collection, model: &mut Model, ops: Vec<Op>) {
    for op in &ops {
        match op {
            Op::Put(k, v) => {
                model.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                model.remove(k);
            }
            _ => unreachable!("only puts and deletes"),
        }
    }
    c.write(ops).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_nodes_follow_checkpoints_and_old_snapshots_keep_theirs() {
    const KEYS: u32 = 3000;
    let vfs: Arc<dyn Vfs> = Arc::new(MemoryVfs::new());
    let options = EngineOptions {
        auto_checkpoint: false,
        cache_bytes: 1 << 20,
        ..EngineOptions::default()
    };
    let db = Engine::open(vfs.clone(), "/db", options).await.unwrap();
    let c = db
        .collection("deep", Kind::Map, "Vec<u8>", "Vec<u8>")
        .await
        .unwrap();
    let mut model = Model::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let ops = chunk.iter().map(|&i| Op::Put(key(i), val(0, i))).collect();
        write(&c, &mut model, ops).await;
    }
    db.checkpoint().await.unwrap();
    let mut held: Vec<(u32, Snapshot, Model)> = Vec::new();
    for round in 1..=6u32 {
        // Lookups through the published version pin its interior nodes.
        check(
            &c.snapshot(),
            &model,
            KEYS,
            &format!("round {round}, before"),
        )
        .await;
        let stats = db.stats().await.unwrap();
        let (used, cap) = stats.pinned_bytes;
        assert!(used > 0, "round {round}: lookups pinned nothing");
        assert!(
            used <= cap,
            "round {round}: pins take {used} of {cap} bytes"
        );
        if round % 2 == 1 {
            held.push((round, c.snapshot(), model.clone()));
        }
        // Random puts and removes, a few at a time, then a checkpoint.
        for _ in 0..30 {
            let ops = (0..rng.random_range(1..20))
                .map(|_| {
                    let i = rng.random_range(0..KEYS + 50);
                    if rng.random_bool(0.3) {
                        Op::Delete(key(i))
                    } else {
                        Op::Put(key(i), val(round, i))
                    }
                })
                .collect();
            write(&c, &mut model, ops).await;
            // Lookups between writes walk clean nodes beside dirty ones.
            let i = rng.random_range(0..KEYS);
            assert_eq!(
                c.snapshot().get(&key(i)).await.unwrap().as_ref(),
                model.get(&key(i))
            );
        }
        db.checkpoint().await.unwrap();
        check(
            &c.snapshot(),
            &model,
            KEYS,
            &format!("round {round}, after"),
        )
        .await;
        // Snapshots two rounds old still read their own version; then they go, so their
        // pages are reused by the next checkpoints.
        held.retain(|(r, _, _)| round - r < 2);
        for (r, snap, m) in &held {
            check(
                snap,
                m,
                KEYS,
                &format!("snapshot of round {r}, in round {round}"),
            )
            .await;
        }
    }
    drop(held);
    db.close().await.unwrap();
    let db = Engine::open(vfs, "/db", EngineOptions::default())
        .await
        .unwrap();
    let c = db
        .collection("deep", Kind::Map, "Vec<u8>", "Vec<u8>")
        .await
        .unwrap();
    check(&c.snapshot(), &model, KEYS, "after reopen").await;
    db.close().await.unwrap();
}
