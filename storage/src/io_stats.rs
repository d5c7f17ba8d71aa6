//! The storage seam's I/O figures for metrics: bytes written and read, write and fdatasync
//! latencies, and batch-cache hits and misses.
//!
//! Every shard runs its logs on its own thread, so the figures are kept per thread in plain
//! cells (no locks, no atomics on the data path) and [`io_stats`] returns the calling thread's:
//! a broker asks each shard for its own at scrape time and adds them up.

use std::cell::RefCell;
use std::time::Duration;

/// Upper bounds, in seconds, of the latency histograms' buckets (a last bucket takes the rest).
pub const LATENCY_BOUNDS_S: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Counts of observations per bucket of [`LATENCY_BOUNDS_S`], and their sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative); the last holds those above all.
    pub counts: [u64; LATENCY_BOUNDS_S.len() + 1],
    /// The sum of the observations, seconds.
    pub sum_s: f64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: [0; LATENCY_BOUNDS_S.len() + 1], sum_s: 0.0 }
    }
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS_S.iter().position(|b| s <= *b).unwrap_or(LATENCY_BOUNDS_S.len());
        self.counts[bucket] += 1;
        self.sum_s += s;
    }

    /// Adds another histogram's observations (another shard's).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_s += other.sum_s;
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One thread's storage I/O since it started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IoStats {
    /// Bytes written to segment and index files (aligned blocks, padding included).
    pub bytes_written: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Latency of each write.
    pub writes: Histogram,
    /// Latency of each fdatasync.
    pub fsyncs: Histogram,
    /// Reads served from the batch cache.
    pub cache_hits: u64,
    /// Reads that went to disk.
    pub cache_misses: u64,
}

impl IoStats {
    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &IoStats) {
        self.bytes_written += other.bytes_written;
        self.bytes_read += other.bytes_read;
        self.writes.merge(&other.writes);
        self.fsyncs.merge(&other.fsyncs);
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
    }
}

thread_local! {
    static STATS: RefCell<IoStats> = RefCell::new(IoStats::default());
}

/// The calling thread's figures.
pub fn io_stats() -> IoStats {
    STATS.with(|s| s.borrow().clone())
}

pub(crate) fn with(f: impl FnOnce(&mut IoStats)) {
    STATS.with(|s| f(&mut s.borrow_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_S.len()], 1);
        assert_eq!(h.count(), 3);
        let mut twice = h.clone();
        twice.merge(&h);
        assert_eq!(twice.count(), 6);
        assert!((twice.sum_s - 2.0 * h.sum_s).abs() < 1e-9);
    }
}
