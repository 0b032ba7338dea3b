//! # persistx-benches: shared helpers of the PersistX benchmark binaries
//!
//! The binaries live in `src/bin/` (see `benches/README.md`). This library holds what they
//! share:
//!
//! * [`payload`]: self-checking record payloads that encode who wrote them, so a benchmark
//!   can verify after a reopen that every acknowledged record came back byte for byte.
//! * [`latency`]: HDR histograms of per-operation latency and their summary.
//! * [`raw`]: the physical limit of the disk, a plain `pwrite` + `fdatasync` loop on one
//!   thread, with no engine in the way.
//! * [`table`]: a tiny Markdown table printer.
//! * [`compare`]: the engines, workload and report of the side-by-side comparison with peer
//!   engines (the `compare` binary).

use std::error::Error as StdError;

/// The error type of the benchmark helpers.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The result type of the benchmark helpers.
pub type Result<T> = std::result::Result<T, BoxError>;

pub mod compare;

pub mod payload {
    //! Record payloads that say who wrote them.
    //!
    //! Layout (little endian): `cell: u32 | writer: u32 | seq: u64 | filler`. The filler is a
    //! deterministic function of the three numbers and the byte position, so a payload can be
    //! regenerated from its identity and compared byte for byte.

    use bytes::Bytes;

    /// Bytes taken by the identity header at the start of every payload.
    pub const HEADER_LEN: usize = 16;

    /// Who wrote a record: benchmark cell, writer task within the cell, and that writer's
    /// sequence number.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct RecordId {
        /// The benchmark cell (one per writer count and backend).
        pub cell: u32,
        /// The writer task within the cell.
        pub writer: u32,
        /// The writer's sequence number, from 0.
        pub seq: u64,
    }

    /// Builds the payload of `id`, `len` bytes long (at least [`HEADER_LEN`]).
    pub fn encode(id: RecordId, len: usize) -> Bytes {
        let len = len.max(HEADER_LEN);
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&id.cell.to_le_bytes());
        buf.extend_from_slice(&id.writer.to_le_bytes());
        buf.extend_from_slice(&id.seq.to_le_bytes());
        let mut x = seed(id);
        while buf.len() < len {
            // xorshift64: cheap, deterministic, and different for every identity.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        Bytes::from(buf)
    }

    /// Reads the identity back from a payload, if it is long enough.
    pub fn decode_id(payload: &[u8]) -> Option<RecordId> {
        let cell = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
        let writer = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
        let seq = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
        Some(RecordId { cell, writer, seq })
    }

    fn seed(id: RecordId) -> u64 {
        let s = (u64::from(id.cell) << 48) ^ (u64::from(id.writer) << 32) ^ id.seq;
        // Never zero (xorshift's fixed point).
        s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn roundtrip() {
            let id = RecordId {
                cell: 3,
                writer: 17,
                seq: 123_456,
            };
            let p = encode(id, 100);
            assert_eq!(p.len(), 100);
            assert_eq!(decode_id(&p), Some(id));
            assert_eq!(p, encode(id, 100));
            assert_ne!(p, encode(RecordId { seq: 123_457, ..id }, 100));
        }
    }
}

pub mod latency {
    //! Latency histograms.

    use std::time::Duration;

    use hdrhistogram::Histogram;

    /// A histogram of latencies in nanoseconds, from 1 ns to 60 s, 3 significant digits.
    pub fn histogram() -> Histogram<u64> {
        match Histogram::new_with_bounds(1, 60_000_000_000, 3) {
            Ok(h) => h,
            Err(e) => panic!("constant histogram bounds are valid: {e}"),
        }
    }

    /// Records one latency (clamped into the histogram's range).
    pub fn record(h: &mut Histogram<u64>, d: Duration) {
        h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
    }

    /// A summary of a histogram, in microseconds.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Summary {
        /// Samples.
        pub count: u64,
        /// Mean, in microseconds.
        pub mean_us: f64,
        /// Median, in microseconds.
        pub p50_us: f64,
        /// 99th percentile, in microseconds.
        pub p99_us: f64,
        /// 99.9th percentile, in microseconds.
        pub p999_us: f64,
        /// Maximum, in microseconds.
        pub max_us: f64,
    }

    /// Summarizes a histogram of nanoseconds.
    pub fn summary(h: &Histogram<u64>) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        Summary {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

pub mod raw {
    //! The physical limit: `pwrite` + `fdatasync` on one thread, nothing else.

    use std::fs::OpenOptions;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;

    use crate::Result;
    use crate::latency;

    /// What a raw loop measured.
    #[derive(Debug, Clone)]
    pub struct RawResult {
        /// Iterations (one write and one sync each).
        pub ops: u64,
        /// Wall time of the loop.
        pub elapsed: Duration,
        /// Latency of a whole iteration (write + sync).
        pub latency: Histogram<u64>,
        /// Total time spent in `pwrite`.
        pub write_time: Duration,
        /// Total time spent in `fdatasync`.
        pub sync_time: Duration,
    }

    impl RawResult {
        /// Iterations per second.
        pub fn ops_per_sec(&self) -> f64 {
            self.ops as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// A raw loop that can be run in slices (to interleave it with other measurements).
    #[derive(Debug)]
    pub struct RawLoop {
        file: std::fs::File,
        size: u64,
        offset: u64,
        record: Vec<u8>,
        /// What the slices run so far measured, together.
        pub total: RawResult,
        /// The rate of each slice, in ops/s.
        pub slice_rates: Vec<f64>,
    }

    impl RawLoop {
        /// Creates `path`, writes `size` zero bytes into it and syncs it and its directory (so
        /// later writes need no block allocation, as the WAL's preallocated segments).
        pub fn create(path: &Path, size: u64, record_len: usize) -> Result<RawLoop> {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            let record = (0..record_len)
                .map(|i| (i as u8).wrapping_mul(31) | 1)
                .collect();
            let total = RawResult {
                ops: 0,
                elapsed: Duration::ZERO,
                latency: latency::histogram(),
                write_time: Duration::ZERO,
                sync_time: Duration::ZERO,
            };
            Ok(RawLoop {
                file,
                size,
                offset: 0,
                record,
                total,
                slice_rates: Vec::new(),
            })
        }

        /// Writes one record at the next offset, then `fdatasync`, until `duration` has passed
        /// or `max_ops` iterations are done (with `max_ops` the duration is ignored), or the
        /// file is full.
        pub fn run(&mut self, duration: Duration, max_ops: Option<u64>) -> Result<()> {
            let len = self.record.len() as u64;
            let mut ops = 0u64;
            let start = Instant::now();
            let deadline = start + duration;
            loop {
                if max_ops.is_some_and(|m| ops >= m) || self.offset + len > self.size {
                    break;
                }
                let t0 = Instant::now();
                if max_ops.is_none() && t0 >= deadline {
                    break;
                }
                self.file.write_all_at(&self.record, self.offset)?;
                let t1 = Instant::now();
                self.file.sync_data()?;
                let t2 = Instant::now();
                self.total.write_time += t1 - t0;
                self.total.sync_time += t2 - t1;
                latency::record(&mut self.total.latency, t2 - t0);
                self.offset += len;
                ops += 1;
            }
            let elapsed = start.elapsed();
            self.total.ops += ops;
            self.total.elapsed += elapsed;
            self.slice_rates.push(ops as f64 / elapsed.as_secs_f64());
            Ok(())
        }
    }
}

pub mod table {
    //! A Markdown table printer.

    /// Renders a Markdown table with columns padded to equal width.
    pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).copied().unwrap_or("");
                s.push_str(&format!(" {c:<w$} |"));
            }
            s.push('\n');
            s
        };
        let mut out = line(header.to_vec());
        out.push('|');
        for w in &widths {
            out.push_str(&format!("{}|", "-".repeat(w + 2)));
        }
        out.push('\n');
        for row in rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}
