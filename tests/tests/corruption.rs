//! Corruption sweep of a real database directory (TESTING.md G3): damaged bytes give a
//! corruption error naming the damaged file, never a panic, never a hang, never wrong data.
//!
//! A database with three collections (a map with values up to ~9 KB, so overflow chains
//! exist, a set and a list) is built on the real file system with small log segments and
//! several checkpoints, then frozen as two pristine images:
//!
//! * **log-heavy**: copied while the database is open, after ~100 KB of writes since the last
//!   checkpoint (each write its own group commit), so the log holds records that recovery
//!   must replay over the pages;
//! * **closed**: the same database after `close` (which checkpoints); its log holds only
//!   records the page file already reflects, and the records between the older superblock
//!   slot's checkpoint and the newest one are partly in segments that checkpoint released.
//!
//! Each case restores one image into a fresh directory, applies one seeded mutation and opens
//! the database, verifies it, reads every collection (iteration, lengths, a sample of point
//! reads) and closes it. Mutations of `data.px`: a bit flip in a page (mostly pages the
//! superblock in force uses, mostly in the checksummed header and payload), a zeroed 512-byte
//! sector, a zeroed page, a page overwritten by another page's bytes (a misdirected write),
//! truncation at a page boundary. Mutations of `wal/`: a bit flip or a zeroed sector inside
//! the written part of a live segment (mostly the newest).
//!
//! A case passes when nothing panics, it ends within [`CASE_TIMEOUT`], and either
//! (a) some step returns `Error::is_corruption()` naming `data.px` or a path in `wal/`, or
//! (b) everything read equals the original data exactly (the mutation hit bytes nothing
//! reads: page padding after the payload, which the page checksum does not cover, free
//! pages, the superblock slot not in force, a page only a replaced value used...), or
//! (c) the damage hit every log record from some record to the end of the log, and the data
//! equals the state before those writes: recovery cannot tell this from a torn last write
//! and trims it (the limitation `docs/format.md` documents for the last group commit; a
//! zeroed sector can erase the last few records, each its own group commit here).
//!
//! The sweep prints how many cases fell in each class, per mutation. "detected by a read
//! (verify missed it)" passes G3 but means `verify` did not see damage a read found. A few
//! cases per class are also run through `persistx verify`, which must fail naming the file
//! where open or verify found damage, and pass where nothing read was damaged.
//!
//! CI runs 500 mutations. A long run:
//! `PERSISTX_CORRUPTION_MUTATIONS=100000 cargo test --release -p persistx-tests --test corruption -- --nocapture`.
//! One case replays from its number: `PERSISTX_CORRUPTION_CASE=1234` (the same mutation for
//! any mutation count); `PERSISTX_CORRUPTION_VERBOSE=1` prints every case.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use futures::TryStreamExt;
use persistx::io::format::catalog::decode_freelist;
use persistx::io::format::node::KIND_OVERFLOW;
use persistx::io::format::page::{PAGE_HEADER_LEN, decode_page};
use persistx::io::format::segment::SEGMENT_HEADER_LEN;
use persistx::io::format::superblock::{Superblock, choose};
use persistx::io::format::wal::decode_record;
use persistx::{
    Database, DatabaseBuilder, EngineError, Error, PersistentList, PersistentMap, PersistentSet,
    WalOptions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MAP: &str = "users";
const SET: &str = "tags";
const LIST: &str = "events";
const PAGE: usize = 4096;
const SEGMENT: u64 = 64 << 10;
/// Longest a case may take (open, verify, read, close) before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes at the end of the log whose trimmed states the harness knows.
const TAIL: usize = 40;
const SEED: u64 = 0xC022_0917;

fn builder() -> DatabaseBuilder {
    Database::builder()
        .page_size(PAGE)
        .auto_checkpoint(false)
        .wal_options(WalOptions {
            segment_size: SEGMENT,
            ..WalOptions::default()
        })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The contents of the database as plain std collections.
#[derive(Debug, Clone, PartialEq, Default)]
struct Model {
    map: BTreeMap<u64, Vec<u8>>,
    set: BTreeSet<String>,
    list: Vec<String>,
}

/// A map value: every 9th key gets 2.1 to 9 KB (one to three overflow pages), the others
/// 16 to 166 bytes. Every byte depends on key, generation and position.
fn value(k: u64, generation: u64) -> Vec<u8> {
    let len = if k.is_multiple_of(9) {
        2100 + (k * 131 + generation * 17) % 7000
    } else {
        16 + (k * 7 + generation * 3) % 150
    };
    (0..len)
        .map(|i| ((k * 31 + generation * 7 + i * 13) % 251) as u8)
        .collect()
}

fn tag(i: u64) -> String {
    format!("tag-{i:05}-{}", "t".repeat((i % 40) as usize))
}

fn event(i: u64) -> String {
    format!("event {i:05}: {}", "e".repeat((i % 60) as usize))
}

/// One saved database directory: relative path and bytes of each file.
#[derive(Clone)]
struct Image {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Image {
    fn capture(dir: &Path) -> Image {
        let mut files = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
                let e = e.unwrap();
                let r = rel.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    stack.push(r);
                } else {
                    files.push((r.clone(), std::fs::read(dir.join(&r)).unwrap()));
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Image { files }
    }

    fn restore(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        for (rel, bytes) in &self.files {
            std::fs::write(dir.join(rel), bytes).unwrap();
        }
    }

    fn file(&self, rel: &str) -> &Vec<u8> {
        &self
            .files
            .iter()
            .find(|(p, _)| p == Path::new(rel))
            .unwrap()
            .1
    }

    fn file_mut(&mut self, rel: &Path) -> &mut Vec<u8> {
        &mut self.files.iter_mut().find(|(p, _)| p == rel).unwrap().1
    }

    /// Live segments (`wal/<seq>.wal`), oldest first, with their sequence numbers.
    fn segments(&self) -> Vec<(PathBuf, u64)> {
        let mut v: Vec<(PathBuf, u64)> = self
            .files
            .iter()
            .filter_map(|(p, _)| {
                let name = p.strip_prefix("wal").ok()?.to_str()?;
                let seq = name.strip_suffix(".wal")?.parse().ok()?;
                Some((p.clone(), seq))
            })
            .collect();
        v.sort_by_key(|(_, s)| *s);
        v
    }
}

/// Where the records of a segment lie: (offset, frame length, LSN).
fn records(bytes: &[u8], seq: u64) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off < bytes.len() {
        match decode_record(&bytes[off..], seq) {
            Ok((h, _)) => {
                out.push((off, h.frame_len() as usize, h.lsn));
                off += h.frame_len() as usize;
            }
            Err(_) => break,
        }
    }
    out
}

/// What the page file of an image holds, page by page.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PageRole {
    SuperblockInForce,
    SuperblockOther,
    /// Referenced by the superblock in force (tree, overflow, catalog, free list).
    Used,
    /// In the free list or past the page count.
    Free,
}

struct Layout {
    pages: usize,
    roles: Vec<PageRole>,
    /// Payload length of each page that decodes (header + payload is what the checksum
    /// covers).
    payload: Vec<Option<usize>>,
    /// Page kind of each page that decodes.
    kinds: Vec<Option<u8>>,
}

fn layout(data: &[u8]) -> Layout {
    let pages = data.len() / PAGE;
    let (slot, sb) = choose(
        Superblock::decode(&data[..PAGE], 0),
        Superblock::decode(&data[PAGE..2 * PAGE], 1),
    )
    .unwrap();
    let payload_of = |p: usize| {
        decode_page(&data[p * PAGE..(p + 1) * PAGE], p as u64)
            .ok()
            .map(|(h, _)| (h.kind, h.payload_len as usize))
    };
    let mut roles = vec![PageRole::Used; pages];
    roles[slot as usize] = PageRole::SuperblockInForce;
    roles[1 - slot as usize] = PageRole::SuperblockOther;
    for r in roles.iter_mut().skip(sb.page_count as usize) {
        *r = PageRole::Free;
    }
    let mut p = sb.free_list_root;
    while p != 0 {
        let (_, payload) =
            decode_page(&data[p as usize * PAGE..(p as usize + 1) * PAGE], p).unwrap();
        let (next, runs) = decode_freelist(payload).unwrap();
        for (first, n) in runs {
            for q in first..first + n {
                roles[q as usize] = PageRole::Free;
            }
        }
        p = next;
    }
    Layout {
        pages,
        roles,
        payload: (0..pages).map(|p| payload_of(p).map(|x| x.1)).collect(),
        kinds: (0..pages).map(|p| payload_of(p).map(|x| x.0)).collect(),
    }
}

/// The pristine images and what they must read as.
struct Fixture {
    /// Closed cleanly: everything is in the page file.
    closed: Image,
    /// Copied while open, with records since the last checkpoint.
    logged: Image,
    /// The data both images hold.
    model: Model,
    /// `tail[j]`: the data without the last `j` writes (each the log-heavy image's last
    /// records, one per write), for `j` up to [`TAIL`].
    tail: Vec<Model>,
}

async fn build(dir: &Path) -> Fixture {
    let db = builder().open(dir).await.unwrap();
    let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await.unwrap();
    let set: PersistentSet<String> = db.set(SET).await.unwrap();
    let list: PersistentList<String> = db.list(LIST).await.unwrap();
    let mut m = Model::default();
    // Phase 1: bulk contents, checkpointed.
    for chunk in (0..1500u64).collect::<Vec<_>>().chunks(100) {
        let pairs: Vec<(u64, Vec<u8>)> = chunk.iter().map(|&k| (k, value(k, 0))).collect();
        m.map.extend(pairs.iter().cloned());
        map.insert_many(pairs).await.unwrap();
    }
    let tags: Vec<String> = (0..800).map(tag).collect();
    m.set.extend(tags.iter().cloned());
    set.insert_many(tags).await.unwrap();
    let events: Vec<String> = (0..400).map(event).collect();
    m.list.extend(events.iter().cloned());
    list.extend(events).await.unwrap();
    db.checkpoint().await.unwrap();
    // Phase 2: overwrites and removals, checkpointed.
    for chunk in (0..1500u64).step_by(5).collect::<Vec<_>>().chunks(50) {
        let pairs: Vec<(u64, Vec<u8>)> = chunk.iter().map(|&k| (k, value(k, 1))).collect();
        m.map.extend(pairs.iter().cloned());
        map.insert_many(pairs).await.unwrap();
    }
    let gone: Vec<u64> = (0..1500u64).filter(|k| k % 7 == 3).collect();
    for k in &gone {
        m.map.remove(k);
    }
    map.remove_many(gone.iter()).await.unwrap();
    for i in (0..800).step_by(8) {
        m.set.remove(&tag(i));
        set.remove(&tag(i)).await.unwrap();
    }
    for i in 400..500 {
        m.list.push(event(i));
        list.push_back(event(i)).await.unwrap();
    }
    for _ in 0..10 {
        m.list.remove(0);
        list.pop_front().await.unwrap();
    }
    db.checkpoint().await.unwrap();
    // Phase 3: one write per group commit, about 100 KB of log (over one segment).
    let mut tail = Vec::new();
    for i in 0..450u64 {
        if i + TAIL as u64 >= 450 {
            tail.push(m.clone());
        }
        // Each write changes something, so each is exactly one log record.
        match i % 6 {
            0 | 1 => {
                let k = 10_000 + i;
                m.map.insert(k, value(k, 2));
                map.insert(k, value(k, 2)).await.unwrap();
            }
            2 => {
                let k = (i * 37) % 1500;
                m.map.insert(k, value(k, 3));
                map.insert(k, value(k, 3)).await.unwrap();
            }
            3 => {
                let k = *m.map.range((i * 53) % 1500..).next().unwrap().0;
                m.map.remove(&k);
                assert!(map.remove(&k).await.unwrap().is_some());
            }
            4 => {
                m.set.insert(tag(1000 + i));
                set.insert(tag(1000 + i)).await.unwrap();
            }
            _ => {
                m.list.push(event(1000 + i));
                list.push_back(event(1000 + i)).await.unwrap();
            }
        }
    }
    tail.push(m.clone());
    // The last write: its own record at the end of the log.
    m.map.insert(99_999, value(99_999, 4));
    map.insert(99_999, value(99_999, 4)).await.unwrap();
    tail.push(m.clone());
    tail.reverse();
    // Every write above was acknowledged at `Immediate`: the files are a crash image.
    let logged = Image::capture(dir);
    db.close().await.unwrap();
    let closed = Image::capture(dir);
    Fixture {
        closed,
        logged,
        model: m,
        tail,
    }
}

/// How far a case got before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Open,
    Verify,
    Read,
    Close,
}

/// What a case observed.
enum Observed {
    Failed(Step, Error),
    /// Everything read (verify and close passed).
    Read(Model),
}

async fn read_all(dir: &Path, sample_keys: &[u64]) -> Observed {
    let db = match builder().open(dir).await {
        Ok(db) => db,
        Err(e) => return Observed::Failed(Step::Open, e),
    };
    if let Err(e) = db.verify().await {
        let _ = db.close().await;
        return Observed::Failed(Step::Verify, e);
    }
    let read = async {
        let mut m = Model::default();
        let engine = db.engine();
        // A collection missing from the catalog must not be created empty by the reader.
        if engine.existing_collection(MAP).await?.is_some() {
            let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await?;
            m.map = map.iter().try_collect().await?;
            if map.len() != m.map.len() as u64 {
                m.map
                    .insert(u64::MAX, b"len() differs from iteration".to_vec());
            }
            for k in sample_keys {
                let got = map.get(k).await?;
                if got.as_ref() != m.map.get(k) {
                    m.map
                        .insert(u64::MAX - 1, b"get() differs from iteration".to_vec());
                }
            }
        }
        if engine.existing_collection(SET).await?.is_some() {
            let set: PersistentSet<String> = db.set(SET).await?;
            m.set = set.iter().try_collect().await?;
            if set.len() != m.set.len() as u64 {
                m.set.insert("len() differs from iteration".into());
            }
            for i in sample_keys {
                let t = tag(*i % 1500);
                if set.contains(&t).await? != m.set.contains(&t) {
                    m.set.insert("contains() differs from iteration".into());
                }
            }
        }
        if engine.existing_collection(LIST).await?.is_some() {
            let list: PersistentList<String> = db.list(LIST).await?;
            m.list = list.iter().try_collect().await?;
            if list.len() != m.list.len() as u64 {
                m.list.push("len() differs from iteration".into());
            }
            for i in sample_keys {
                let i = *i % (m.list.len() as u64 + 3);
                if list.get(i).await?.as_ref() != m.list.get(i as usize) {
                    m.list.push("get() differs from iteration".into());
                }
            }
        }
        Ok::<_, Error>(m)
    };
    let m = match read.await {
        Ok(m) => m,
        Err(e) => {
            let _ = db.close().await;
            return Observed::Failed(Step::Read, e);
        }
    };
    match db.close().await {
        Ok(()) => Observed::Read(m),
        Err(e) => Observed::Failed(Step::Close, e),
    }
}

/// Which file a mutation damaged, and how.
#[derive(Debug, Clone)]
struct Mutation {
    kind: &'static str,
    /// `closed` or `logged`.
    image: &'static str,
    /// `data.px` or `wal`.
    file: &'static str,
    /// Where, for the report (page role, record, ...).
    region: String,
    /// The damage hit every record from the `j`-th last one to the end of the log (and
    /// only those): recovery cannot tell it from a torn write and may trim those `j`
    /// records.
    erases_tail: Option<usize>,
}

fn flip_bit(rng: &mut ChaCha8Rng, bytes: &mut [u8], at: usize) {
    bytes[at] ^= 1 << rng.random_range(0..8);
}

/// Applies mutation number `case` to a copy of one of the images.
fn mutate(fx: &Fixture, case: u64) -> (Image, Mutation) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let pick = rng.random_range(0..100);
    let on_wal = pick >= 72;
    let logged = if on_wal {
        rng.random_range(0..100) < 85
    } else {
        rng.random_range(0..100) < 40
    };
    let (mut image, image_name) = if logged {
        (fx.logged.clone(), "logged")
    } else {
        (fx.closed.clone(), "closed")
    };
    if on_wal {
        let segs = image.segments();
        let (path, seq) = if rng.random_range(0..100) < 60 {
            segs.last().unwrap().clone()
        } else {
            segs[rng.random_range(0..segs.len())].clone()
        };
        let bytes = image.file_mut(&path);
        let recs = records(bytes, seq);
        // The written part: the header and every record that validates.
        let written = recs.last().map_or(SEGMENT_HEADER_LEN, |(o, l, _)| o + l);
        let last_lsn = records_last_lsn(fx);
        let kind = if pick < 92 {
            "wal bit flip"
        } else {
            "wal zeroed sector"
        };
        let (start, end) = if kind == "wal bit flip" {
            let at = rng.random_range(0..written);
            flip_bit(&mut rng, bytes, at);
            (at, at + 1)
        } else {
            let s = rng.random_range(0..written.div_ceil(512)) * 512;
            bytes[s..s + 512].fill(0);
            (s, s + 512)
        };
        let hit: Vec<&(usize, usize, u64)> = recs
            .iter()
            .filter(|(o, l, _)| start < o + l && *o < end)
            .collect();
        let region = if start < SEGMENT_HEADER_LEN {
            "segment header".to_string()
        } else if hit.is_empty() {
            "after the records".to_string()
        } else {
            format!("record LSN {}", hit[0].2)
        };
        // Damage to every record from the first one hit to the end of the log cannot be told
        // from a torn write (nothing after it proves those records were synced).
        let erases_tail = match (hit.first(), last_lsn) {
            (Some((_, _, first)), Some(last))
                if recs.iter().filter(|(_, _, l)| l >= first).count() == hit.len()
                    && recs.last().map(|r| r.2) == Some(last) =>
            {
                Some((last - first + 1) as usize)
            }
            _ => None,
        };
        return (
            image,
            Mutation {
                kind,
                image: image_name,
                file: "wal",
                region: format!("{} {region}", path.display()),
                erases_tail: erases_tail.filter(|_| logged),
            },
        );
    }
    let lay = layout(image.file("data.px"));
    let data = image.file_mut(Path::new("data.px"));
    let used: Vec<usize> = (0..lay.pages)
        .filter(|p| lay.roles[*p] != PageRole::Free)
        .collect();
    // Mostly pages that matter; sometimes any page.
    let page = if rng.random_range(0..100) < 90 {
        used[rng.random_range(0..used.len())]
    } else {
        rng.random_range(0..lay.pages)
    };
    let base = page * PAGE;
    // The checksummed part: header and payload (the superblock's 128 bytes).
    let covered = match lay.roles[page] {
        PageRole::SuperblockInForce | PageRole::SuperblockOther => 128,
        _ => PAGE_HEADER_LEN + lay.payload[page].unwrap_or(PAGE - PAGE_HEADER_LEN),
    };
    let role = format!(
        "{:?} page {page} (kind {:?})",
        lay.roles[page], lay.kinds[page]
    );
    let (kind, region) = match pick {
        0..30 => {
            let at = if rng.random_range(0..100) < 70 {
                rng.random_range(0..covered)
            } else {
                rng.random_range(0..PAGE)
            };
            flip_bit(&mut rng, data, base + at);
            let part = if at < covered { "checked" } else { "padding" };
            ("page bit flip", format!("{role} {part} byte {at}"))
        }
        30..42 => {
            let s = rng.random_range(0..(PAGE / 512));
            data[base + s * 512..base + (s + 1) * 512].fill(0);
            let part = if s * 512 < covered {
                "checked"
            } else {
                "padding"
            };
            ("zeroed sector", format!("{role} {part} sector {s}"))
        }
        42..52 => {
            data[base..base + PAGE].fill(0);
            ("zeroed page", role)
        }
        52..64 => {
            let mut other = used[rng.random_range(0..used.len())];
            if other == page {
                other = (page + 1) % lay.pages;
            }
            let src = data[other * PAGE..(other + 1) * PAGE].to_vec();
            data[base..base + PAGE].copy_from_slice(&src);
            ("misdirected page", format!("{role} <- page {other}"))
        }
        _ => {
            let keep = rng.random_range(0..lay.pages);
            data.truncate(keep * PAGE);
            (
                "truncated file",
                format!("{keep} of {} pages kept", lay.pages),
            )
        }
    };
    (
        image,
        Mutation {
            kind,
            image: image_name,
            file: "data.px",
            region,
            erases_tail: None,
        },
    )
}

fn records_last_lsn(fx: &Fixture) -> Option<u64> {
    fx.logged
        .segments()
        .iter()
        .flat_map(|(p, seq)| records(fx.logged.file(p.to_str().unwrap()), *seq))
        .map(|(_, _, lsn)| lsn)
        .max()
}

/// The outcome class of a case; `Err` is a failed case.
fn classify(
    dir: &Path,
    fx: &Fixture,
    m: &Mutation,
    observed: Observed,
) -> Result<&'static str, String> {
    match observed {
        Observed::Failed(step, e) => {
            let Some(EngineError::Corruption { file, .. }) = e.engine() else {
                return Err(format!("{step:?}: not a corruption error: {e}"));
            };
            assert!(e.is_corruption());
            let in_data = file == &dir.join("data.px");
            let in_wal = file.starts_with(dir.join("wal"));
            if !in_data && !in_wal {
                return Err(format!("{step:?}: corruption names {}", file.display()));
            }
            let named = if in_data == (m.file == "data.px") {
                ""
            } else {
                " (other file named)"
            };
            Ok(match (step, named.is_empty()) {
                (Step::Open, true) => "detected at open",
                (Step::Verify, true) => "detected by verify",
                (Step::Read, true) => "detected by a read (verify missed it)",
                (Step::Close, true) => "detected at close",
                (Step::Open, false) => "detected at open (other file named)",
                (Step::Verify, false) => "detected by verify (other file named)",
                (Step::Read, false) => "detected by a read (other file named)",
                (Step::Close, false) => "detected at close (other file named)",
            })
        }
        Observed::Read(got) if got == fx.model => Ok("read back intact"),
        Observed::Read(got) if m.erases_tail.is_some_and(|j| fx.tail.get(j) == Some(&got)) => {
            Ok(if m.erases_tail == Some(1) {
                "last record trimmed (documented limitation)"
            } else {
                "erased log tail trimmed (like a torn write)"
            })
        }
        Observed::Read(got) => Err(format!("WRONG DATA: {}", diff(&got, &fx.model))),
    }
}

fn diff(got: &Model, want: &Model) -> String {
    let mut out = Vec::new();
    let missing: Vec<_> = want
        .map
        .keys()
        .filter(|k| !got.map.contains_key(k))
        .collect();
    let extra: Vec<_> = got
        .map
        .keys()
        .filter(|k| !want.map.contains_key(k))
        .collect();
    let changed: Vec<_> = want
        .map
        .iter()
        .filter(|(k, v)| got.map.get(k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    if !missing.is_empty() || !extra.is_empty() || !changed.is_empty() {
        out.push(format!(
            "map: {} missing (first {:?}), {} extra (first {:?}), {} changed (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first(),
            changed.len(),
            changed.first()
        ));
    }
    if got.set != want.set {
        out.push(format!(
            "set: {} entries, expected {}",
            got.set.len(),
            want.set.len()
        ));
    }
    if got.list != want.list {
        out.push(format!(
            "list: {} entries, expected {}",
            got.list.len(),
            want.list.len()
        ));
    }
    out.join("; ")
}

/// Runs one case on its own thread and runtime, bounded by [`CASE_TIMEOUT`].
fn run_case(root: &Path, image: Image, case: u64) -> Result<Observed, String> {
    let dir = root.join(format!("case-{case}"));
    image.restore(&dir);
    let sample: Vec<u64> = {
        let mut rng = ChaCha8Rng::seed_from_u64(case);
        let mut keys: Vec<u64> = (0..40).map(|_| rng.random_range(0..1600)).collect();
        keys.extend([10_000, 10_001, 99_999, 5_000_000]);
        keys
    };
    let (tx, rx) = mpsc::channel();
    let d = dir.clone();
    std::thread::Builder::new()
        .name(format!("case-{case}"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt().block_on(read_all(&d, &sample))
            }));
            let _ = tx.send(result.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }));
        })
        .unwrap();
    match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(Ok(observed)) => Ok(observed),
        Ok(Err(panic)) => Err(format!("PANIC: {panic}")),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("HANG: no result within {CASE_TIMEOUT:?}"))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the case thread died".into()),
    }
}

fn mutations() -> u64 {
    std::env::var("PERSISTX_CORRUPTION_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// `persistx verify DIR` (the `persistx-cli` twin this package compiles from `src/main.rs`,
/// see `tests/Cargo.toml`): exit success and stderr.
fn cli_verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_persistx-cli"))
        .arg("verify")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_mutation_is_reported_as_corruption_or_reads_back_intact() {
    let root = tempfile::tempdir().unwrap();
    let fx = rt().block_on(build(&root.path().join("pristine")));
    // The images are what the model says (a sanity check of the harness itself).
    for image in [&fx.closed, &fx.logged] {
        let dir = root.path().join("sanity");
        image.restore(&dir);
        match rt().block_on(read_all(&dir, &[0, 1, 9, 99_999])) {
            Observed::Read(m) => assert_eq!(diff(&m, &fx.model), "", "pristine image"),
            Observed::Failed(step, e) => panic!("pristine image fails at {step:?}: {e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let cases: Vec<u64> = match std::env::var("PERSISTX_CORRUPTION_CASE") {
        Ok(c) => vec![c.parse().unwrap()],
        Err(_) => (0..mutations()).collect(),
    };
    let verbose = std::env::var_os("PERSISTX_CORRUPTION_VERBOSE").is_some();
    let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    let mut failures = Vec::new();
    // A few cases per class, for the command-line check below.
    let mut cli_cases: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for &case in &cases {
        let (image, m) = mutate(&fx, case);
        let dir = root.path().join(format!("case-{case}"));
        let outcome = run_case(root.path(), image, case).and_then(|observed| {
            let error = match &observed {
                Observed::Failed(_, e) => format!(": {e}"),
                Observed::Read(_) => String::new(),
            };
            classify(&dir, &fx, &m, observed).map(|class| (class, error))
        });
        match outcome {
            Ok((class, error)) => {
                if verbose {
                    println!(
                        "case {case}: {} of the {} image, {}: {class}{error}",
                        m.kind, m.image, m.region
                    );
                }
                *counts.entry((m.kind, class)).or_default() += 1;
                let picked = cli_cases.entry(class).or_default();
                if picked.len() < 3 {
                    picked.push(case);
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(why) => {
                *counts.entry((m.kind, "FAILED")).or_default() += 1;
                eprintln!(
                    "case {case}: {} of the {} image, {}: {why}",
                    m.kind, m.image, m.region
                );
                failures.push(case);
            }
        }
    }
    println!("corruption sweep: {} mutations", cases.len());
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, class), n) in &counts {
        println!("  {kind:<20} {class:<46} {n:>6}");
        *totals.entry(class).or_default() += n;
    }
    for (class, n) in &totals {
        println!("  {:<20} {class:<46} {n:>6}", "all");
    }
    // `persistx verify` agrees: it fails, naming the file, where open or verify found the
    // damage, and passes where the damage changed nothing.
    for (class, expect_ok) in [
        ("detected at open", false),
        ("detected by verify", false),
        ("read back intact", true),
    ] {
        for &case in cli_cases.get(class).into_iter().flatten() {
            let (image, m) = mutate(&fx, case);
            let dir = root.path().join(format!("cli-{case}"));
            image.restore(&dir);
            let (ok, err) = cli_verify(&dir);
            let named = err.contains(&dir.join("data.px").display().to_string())
                || err.contains(&dir.join("wal").display().to_string());
            if ok != expect_ok || (!ok && !named) {
                eprintln!(
                    "case {case} ({class}): {} of the {} image, {}: `persistx verify` exit {}, stderr: {err}",
                    m.kind,
                    m.image,
                    m.region,
                    if ok { "success" } else { "failure" }
                );
                failures.push(case);
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutations failed G3 (replay one with PERSISTX_CORRUPTION_CASE=<n>): {failures:?}",
        failures.len(),
        cases.len()
    );
}

/// Writes `n` map entries of about 150 bytes, one log record each, from key `from`.
async fn write_records(map: &PersistentMap<u64, Vec<u8>>, from: u64, n: u64) {
    for k in from..from + n {
        map.insert(k, value(k, 0)).await.unwrap();
    }
}

/// Regression (engine bug): bit rot in the superblock in force made `Engine::open` fall back
/// to the other slot, whose checkpoint LSN lies before the start of the log (the records in
/// between were in segments the newer checkpoint released), and return the older state with
/// the later records replayed over it: wrong data, no error. Damage to the newest
/// superblock must be corruption unless the log still reaches back to the older
/// checkpoint.
#[test]
fn a_damaged_newest_superblock_is_not_silently_replaced_by_the_older_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = || {
        Database::builder()
            .auto_checkpoint(false)
            .wal_options(WalOptions {
                segment_size: 16 << 10,
                ..WalOptions::default()
            })
    };
    rt().block_on(async {
        let db = opts().open(&dir).await.unwrap();
        let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await.unwrap();
        write_records(&map, 0, 200).await;
        db.checkpoint().await.unwrap();
        // Over 16 KiB of records: the first segments are released by the close checkpoint.
        write_records(&map, 1000, 300).await;
        db.close().await.unwrap();
    });
    let path = dir.join("data.px");
    let mut data = std::fs::read(&path).unwrap();
    let (slot, sb) = choose(
        Superblock::decode(&data[..PAGE], 0),
        Superblock::decode(&data[PAGE..2 * PAGE], 1),
    )
    .unwrap();
    let other = Superblock::decode(&data[(1 - slot as usize) * PAGE..][..PAGE], 1 - slot);
    assert!(
        other.is_ok_and(|o| o.checkpoint_lsn < sb.checkpoint_lsn),
        "the other slot holds an older checkpoint"
    );
    data[slot as usize * PAGE + 20] ^= 0x01; // the checkpoint number
    std::fs::write(&path, &data).unwrap();
    let result = rt().block_on(async {
        let db = opts().open(&dir).await?;
        let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await?;
        let got: BTreeMap<u64, Vec<u8>> = map.iter().try_collect().await?;
        db.close().await?;
        Ok::<_, Error>(got)
    });
    match result {
        Err(e) => assert!(e.is_corruption(), "not a corruption error: {e}"),
        Ok(got) => {
            let want: BTreeMap<u64, Vec<u8>> = (0..200)
                .chain(1000..1300)
                .map(|k| (k, value(k, 0)))
                .collect();
            let missing = want.keys().filter(|k| !got.contains_key(k)).count();
            assert!(
                got == want,
                "the older superblock was used silently: {missing} of {} entries missing",
                want.len()
            );
        }
    }
}

/// Regression (engine bug): `verify` skipped the overflow chains of leaves that log replay
/// had made dirty, so damage to such a value passed `Database::verify` and
/// `persistx verify` after a crash, and only a read of that value found it.
#[test]
fn verify_checks_overflow_values_of_leaves_dirtied_by_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let image = rt().block_on(async {
        let db = builder().open(&dir).await.unwrap();
        let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await.unwrap();
        map.insert(0, value(0, 0)).await.unwrap(); // 2.1 KB: an overflow page
        map.insert(1, value(1, 0)).await.unwrap();
        db.checkpoint().await.unwrap();
        // After the checkpoint: replay puts this into the (only) leaf, which becomes dirty.
        map.insert(2, value(2, 0)).await.unwrap();
        let image = Image::capture(&dir); // a crash image: the write is in the log
        db.close().await.unwrap();
        image
    });
    let crashed = tmp.path().join("crashed");
    image.restore(&crashed);
    let path = crashed.join("data.px");
    let mut data = std::fs::read(&path).unwrap();
    let lay = layout(&data);
    let overflow: Vec<usize> = (0..lay.pages)
        .filter(|p| lay.roles[*p] == PageRole::Used && lay.kinds[*p] == Some(KIND_OVERFLOW))
        .collect();
    assert_eq!(overflow.len(), 1, "one overflow page in use");
    data[overflow[0] * PAGE + PAGE_HEADER_LEN + 100] ^= 0x10;
    std::fs::write(&path, &data).unwrap();
    let (verified, read) = rt().block_on(async {
        let db = builder().open(&crashed).await.unwrap();
        let verified = db.verify().await.map(|_| ());
        let map: PersistentMap<u64, Vec<u8>> = db.map(MAP).await.unwrap();
        let read = map.get(&0).await.map(|_| ());
        let _ = db.close().await;
        (verified, read)
    });
    assert!(
        read.as_ref().is_err_and(Error::is_corruption),
        "the damaged value reads as corruption: {read:?}"
    );
    assert!(
        verified.as_ref().is_err_and(Error::is_corruption),
        "Database::verify passed with a damaged overflow page in use"
    );
    let again = tmp.path().join("crashed-again");
    image.restore(&again);
    std::fs::write(again.join("data.px"), &data).unwrap();
    let (ok, err) = cli_verify(&again);
    assert!(
        !ok && err.contains("data.px"),
        "`persistx verify` passed with a damaged overflow page in use: {err}"
    );
}
