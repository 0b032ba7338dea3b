//! The data every engine gets: random keys and values from one seeded ChaCha stream.
//!
//! All pairs live in one flat buffer (`key | value` records of fixed size), which keeps the
//! harness's own memory small and predictable: 174 bytes a pair with the default sizes, so
//! the peak RSS of a child is the engine's plus a known constant. The pairs are numbered,
//! and each phase of the workload owns a contiguous range of numbers:
//!
//! ```text
//! 0 .. loaded                       bulk load (phase 1)
//! loaded .. +single                 single durable inserts (phase 2)
//! .. +batch_txns * batch_size       batched durable inserts (phase 3)
//! .. +writers * writer_commits      concurrent durable inserts (phase 4)
//! ```

use std::ops::Range;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::compare::engine::Pair;

/// Random-number streams of one seed, one per purpose, so that changing one phase's size
/// does not change the data or the choices of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The keys and values.
    Data,
    /// The indices of the point reads of one thread of one thread count.
    PointReads {
        /// Threads of the measurement.
        threads: u32,
        /// The thread within it.
        thread: u32,
    },
    /// The start keys of the range reads.
    RangeReads,
    /// The samples checked after the removal.
    RemoveCheck,
}

impl Stream {
    fn id(self) -> u64 {
        match self {
            Stream::Data => 1,
            Stream::PointReads { threads, thread } => {
                (2 << 56) | (u64::from(threads) << 32) | u64::from(thread)
            }
            Stream::RangeReads => 3 << 56,
            Stream::RemoveCheck => 4 << 56,
        }
    }
}

/// A ChaCha8 generator for `seed` and `stream`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.id());
    rng
}

/// A uniformly random index in `range` (which must not be empty).
pub fn pick(rng: &mut ChaCha8Rng, range: Range<usize>) -> usize {
    rng.random_range(range)
}

/// All pairs of a run, in one buffer, plus their ascending key order.
#[derive(Debug)]
pub struct Dataset {
    key_len: usize,
    value_len: usize,
    bytes: Vec<u8>,
    /// Pair numbers in ascending key order.
    sorted: Vec<u32>,
    /// `rank[i]` is the position of pair `i` in `sorted`.
    rank: Vec<u32>,
}

impl Dataset {
    /// Generates `count` pairs of random bytes from `seed` and sorts them; fails if two keys
    /// are equal (the workload needs distinct keys).
    pub fn generate(seed: u64, count: usize, key_len: usize, value_len: usize) -> Result<Self> {
        let count_u32 = u32::try_from(count)
            .map_err(|_| format!("{count} pairs do not fit the u32 pair numbers"))?;
        let record = key_len + value_len;
        let mut bytes = vec![0u8; count * record];
        rng(seed, Stream::Data).fill_bytes(&mut bytes);
        let key = |i: u32| {
            let at = i as usize * record;
            &bytes[at..at + key_len]
        };
        let mut sorted: Vec<u32> = (0..count_u32).collect();
        sorted.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
        for w in sorted.windows(2) {
            if key(w[0]) >= key(w[1]) {
                return Err(format!(
                    "pairs #{} and #{} have the same key; use longer keys or another seed",
                    w[0], w[1]
                )
                .into());
            }
        }
        let mut rank = vec![0u32; count];
        for (pos, &i) in sorted.iter().enumerate() {
            // `pos < count`, which fits in u32 (checked above).
            rank[i as usize] = pos as u32;
        }
        Ok(Dataset {
            key_len,
            value_len,
            bytes,
            sorted,
            rank,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.rank.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.rank.is_empty()
    }

    /// The key of pair `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let at = i * (self.key_len + self.value_len);
        &self.bytes[at..at + self.key_len]
    }

    /// The value of pair `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        let at = i * (self.key_len + self.value_len) + self.key_len;
        &self.bytes[at..at + self.value_len]
    }

    /// Pairs `range`, as slices.
    pub fn pairs(&self, range: Range<usize>) -> Vec<Pair<'_>> {
        range.map(|i| (self.key(i), self.value(i))).collect()
    }

    /// Position of pair `i` in ascending key order.
    pub fn rank(&self, i: usize) -> usize {
        self.rank[i] as usize
    }

    /// The pair number at position `pos` of ascending key order.
    pub fn at_rank(&self, pos: usize) -> usize {
        self.sorted[pos] as usize
    }
}

/// The first bytes of `bytes` in hex, for error messages.
pub fn hex_prefix(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(12).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 12 {
        s.push_str("..");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_order() -> Result<()> {
        let a = Dataset::generate(7, 1000, 24, 150)?;
        let b = Dataset::generate(7, 1000, 24, 150)?;
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.key(999).len(), 24);
        assert_eq!(a.value(999).len(), 150);
        for pos in 1..a.len() {
            assert!(a.key(a.at_rank(pos - 1)) < a.key(a.at_rank(pos)));
        }
        for i in 0..a.len() {
            assert_eq!(a.at_rank(a.rank(i)), i);
        }
        Ok(())
    }

    #[test]
    fn streams_differ() {
        let mut a = rng(7, Stream::RangeReads);
        let mut b = rng(7, Stream::RemoveCheck);
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
