//! The buffer pool against a model, its clock behaviour, and eight threads sharing one pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use persistx_io::pool::{BufferPool, PoolStats};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A cached value that names its page, so a lookup can check it got the right one.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    page: u64,
    /// Which insert produced it (unique per test run).
    version: u64,
    charge: usize,
}

// ---------------------------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------------------------

/// Pages the operations touch: few enough to collide, replace and re-read often.
const MODEL_PAGES: u64 = 48;

#[derive(Debug, Clone)]
enum Op {
    Get(u64),
    /// The charge is `permille` thousandths of the budget plus `extra` bytes.
    Insert {
        page: u64,
        permille: u16,
        extra: u16,
    },
    Remove(u64),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..MODEL_PAGES;
    prop_oneof![
        6 => page.clone().prop_map(Op::Get),
        // Small charges (many entries fit) and large ones (up to 1.5 budgets: larger than a
        // shard's share, and sometimes than the whole budget).
        4 => (page.clone(), 0..25_u16, 0..64_u16)
            .prop_map(|(page, permille, extra)| Op::Insert { page, permille, extra }),
        2 => (page.clone(), 0..1_500_u16, 0..64_u16)
            .prop_map(|(page, permille, extra)| Op::Insert { page, permille, extra }),
        2 => page.prop_map(Op::Remove),
        1 => Just(Op::Clear),
    ]
}

fn budget() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        1..4_096_usize,
        // One shard, two, four and sixteen (256 KiB minimum per shard).
        Just(300 * 1024),
        Just(600 * 1024),
        Just(1 << 20),
        Just(4 << 20),
    ]
}

/// What the test knows about the pool without asking it.
#[derive(Default)]
struct Model {
    /// The value last inserted for each page, unless the page was removed or cleared since.
    /// The pool may have evicted it.
    last: HashMap<u64, Arc<Page>>,
    /// Pages removed or cleared and not inserted since: the pool must not have them.
    dropped: HashSet<u64>,
    /// Pages found evicted and not inserted since: they must not come back.
    evicted: HashSet<u64>,
    /// The page of the latest insert.
    newest: Option<u64>,
    gets: u64,
    version: u64,
}

impl Model {
    /// Looks up every page the model knows and checks the pool against the model.
    fn check(&mut self, pool: &BufferPool<Page>) -> Result<(), TestCaseError> {
        let mut bytes = 0_u64;
        let mut entries = 0_u64;
        let mut pages: Vec<u64> = self.last.keys().copied().collect();
        pages.sort_unstable();
        for page in pages {
            self.gets += 1;
            match pool.get(page) {
                Some(found) => {
                    prop_assert!(
                        Arc::ptr_eq(&found, &self.last[&page]),
                        "page {page}: got {found:?}, last inserted {:?}",
                        self.last[&page]
                    );
                    prop_assert!(!self.evicted.contains(&page), "page {page} came back");
                    bytes += found.charge as u64;
                    entries += 1;
                }
                None => {
                    prop_assert_ne!(Some(page), self.newest, "the newest entry was evicted");
                    self.evicted.insert(page);
                }
            }
        }
        let mut dropped: Vec<u64> = self.dropped.iter().copied().collect();
        dropped.sort_unstable();
        for page in dropped {
            self.gets += 1;
            prop_assert!(pool.get(page).is_none(), "removed page {page} is present");
        }

        let stats = pool.stats();
        prop_assert_eq!(stats.bytes, bytes, "stats.bytes vs the charges present");
        prop_assert_eq!(stats.entries, entries);
        prop_assert_eq!(stats.hits + stats.misses, self.gets);
        prop_assert_eq!(stats.budget, pool.budget() as u64);
        if stats.bytes > stats.budget {
            // Only a single entry larger than the whole budget, the newest, may overflow it.
            let newest = self.newest.and_then(|page| self.last.get(&page));
            prop_assert_eq!(stats.entries, 1, "over budget: {:?}", stats);
            prop_assert_eq!(newest.map(|p| p.charge as u64), Some(stats.bytes));
        }
        Ok(())
    }

    fn apply(&mut self, pool: &BufferPool<Page>, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Get(page) => {
                self.gets += 1;
                let found = pool.get(page);
                if let Some(found) = &found {
                    prop_assert_eq!(found.page, page);
                    prop_assert!(self.last.get(&page).is_some_and(|l| Arc::ptr_eq(found, l)));
                }
            }
            Op::Insert {
                page,
                permille,
                extra,
            } => {
                let charge = pool.budget() / 1000 * usize::from(permille) + usize::from(extra);
                self.version += 1;
                let value = Arc::new(Page {
                    page,
                    version: self.version,
                    charge,
                });
                pool.insert(page, Arc::clone(&value), charge);
                self.last.insert(page, value);
                self.dropped.remove(&page);
                self.evicted.remove(&page);
                self.newest = Some(page);
            }
            Op::Remove(page) => {
                let present = pool.remove(page);
                if present {
                    prop_assert!(self.last.contains_key(&page) && !self.evicted.contains(&page));
                }
                if self.last.remove(&page).is_some() {
                    self.dropped.insert(page);
                }
                self.evicted.remove(&page);
                if self.newest == Some(page) {
                    self.newest = None;
                }
            }
            Op::Clear => {
                pool.clear();
                self.dropped.extend(self.last.drain().map(|(page, _)| page));
                self.evicted.clear();
                self.newest = None;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pool_matches_model(budget in budget(), ops in prop::collection::vec(op(), 1..200)) {
        let pool = BufferPool::new(budget);
        let mut model = Model::default();
        for op in &ops {
            model.apply(&pool, op)?;
            model.check(&pool)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clock behaviour
// ---------------------------------------------------------------------------------------------

const ENTRY_BYTES: usize = 100;
const SCAN_PAGES: u64 = 200;
const HOT: u64 = 0;
const COLD: u64 = 10_000;

/// A pool for four entries, holding a hot page (read once) and a cold page (never read).
fn pool_with_hot_and_cold() -> BufferPool<Page> {
    let pool = BufferPool::new(4 * ENTRY_BYTES);
    for (version, page) in [HOT, COLD].into_iter().enumerate() {
        let value = Page {
            page,
            version: version as u64,
            charge: ENTRY_BYTES,
        };
        pool.insert(page, Arc::new(value), ENTRY_BYTES);
    }
    assert!(pool.get(HOT).is_some());
    pool
}

fn insert_scan_page(pool: &BufferPool<Page>, page: u64) {
    let value = Page {
        page,
        version: page,
        charge: ENTRY_BYTES,
    };
    pool.insert(page, Arc::new(value), ENTRY_BYTES);
}

#[test]
fn frequently_read_page_survives_a_scan() {
    let pool = pool_with_hot_and_cold();
    for page in 1..=SCAN_PAGES {
        insert_scan_page(&pool, page);
        // The hot page is read between scan inserts: its reference bit is set every time the
        // hand comes round, so it always gets its second chance.
        let hot = pool.get(HOT);
        assert_eq!(
            hot.map(|p| p.page),
            Some(HOT),
            "hot page evicted at scan page {page}"
        );
    }
    // The cold page went first; of the scan only the newest three fit beside the hot page.
    assert!(pool.get(COLD).is_none());
    for page in 1..=SCAN_PAGES {
        let expect_present = page > SCAN_PAGES - 3;
        assert_eq!(pool.get(page).is_some(), expect_present, "scan page {page}");
    }
    let stats = pool.stats();
    assert_eq!(stats.entries, 4);
    assert_eq!(stats.bytes, 4 * ENTRY_BYTES as u64);
    // Everything inserted (hot, cold, the scan) but the four entries left.
    assert_eq!(stats.evictions, 2 + SCAN_PAGES - 4);
}

#[test]
fn page_read_only_once_is_evicted_by_a_scan() {
    let pool = pool_with_hot_and_cold();
    for page in 1..=SCAN_PAGES {
        insert_scan_page(&pool, page);
    }
    // The one read bought the hot page a single second chance, not a place forever.
    assert!(pool.get(HOT).is_none());
    assert!(pool.get(COLD).is_none());
    assert_eq!(pool.stats().entries, 4);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn eight_threads_share_one_pool() {
    const THREADS: u64 = 8;
    const OPS_PER_THREAD: u64 = 4_000;
    const PAGES: u64 = 1_024;
    const SMALL_CHARGE: usize = 4 * 1024;
    // Four shards of 256 KiB: the occasional 300 KiB entry overflows its shard's share.
    const BUDGET: usize = 1 << 20;
    const LARGE_CHARGE: usize = 300 * 1024;

    let pool = Arc::new(BufferPool::<Page>::new(BUDGET));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(thread);
                let mut gets = 0_u64;
                for op in 0..OPS_PER_THREAD {
                    let page = rng.random_range(0..PAGES);
                    match rng.random_range(0..100) {
                        0..60 => {
                            gets += 1;
                            if let Some(found) = pool.get(page) {
                                assert_eq!(found.page, page, "wrong value for page {page}");
                            }
                        }
                        60..62 => {
                            pool.remove(page);
                        }
                        roll => {
                            let charge = if roll == 99 {
                                LARGE_CHARGE
                            } else {
                                SMALL_CHARGE
                            };
                            let value = Page {
                                page,
                                version: thread * OPS_PER_THREAD + op,
                                charge,
                            };
                            pool.insert(page, Arc::new(value), charge);
                        }
                    }
                }
                gets
            })
        })
        .collect();
    let gets: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("worker thread panicked"))
        .sum();

    let stats: PoolStats = pool.stats();
    assert!(stats.bytes <= BUDGET as u64, "over budget: {stats:?}");
    assert_eq!(stats.hits + stats.misses, gets);
    assert!(
        stats.evictions > 0,
        "the test should overflow the budget: {stats:?}"
    );

    // The totals match the entries actually present.
    let (mut bytes, mut entries) = (0_u64, 0_u64);
    for page in 0..PAGES {
        if let Some(found) = pool.get(page) {
            assert_eq!(found.page, page);
            bytes += found.charge as u64;
            entries += 1;
        }
    }
    let stats = pool.stats();
    assert_eq!((stats.bytes, stats.entries), (bytes, entries));
}
