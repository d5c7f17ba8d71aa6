//! The bounded cache of recent batches that stands in for the page cache O_DIRECT bypasses.
//!
//! It holds a contiguous run of the newest entries (each entry's base offset is the previous
//! entry's end offset) and evicts from the oldest end when over budget. Tail reads, the common
//! case for consumers that keep up, are served from here without touching the disk.

use std::collections::VecDeque;

use crate::log::StoredBatch;

/// What one cached batch costs beyond its payload (the `StoredBatch` and queue slot), counted
/// against the budget so that many tiny batches cannot exceed it.
const ENTRY_OVERHEAD_BYTES: usize = 128;

fn cost(batch: &StoredBatch) -> usize {
    batch.payload.len() + ENTRY_OVERHEAD_BYTES
}

#[derive(Debug)]
pub(crate) struct BatchCache {
    entries: VecDeque<StoredBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl BatchCache {
    pub fn new(bytes_max: usize) -> BatchCache {
        BatchCache { entries: VecDeque::new(), bytes: 0, bytes_max }
    }

    /// Changes the budget, evicting the oldest entries beyond a smaller one.
    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
        self.evict();
    }

    /// The budget.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    fn evict(&mut self) {
        while self.bytes > self.bytes_max {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= cost(&old);
        }
    }

    /// Adds the newest entry, evicting the oldest ones beyond the budget.
    pub fn push(&mut self, batch: StoredBatch) {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.end_offset(), batch.base_offset, "cache must stay contiguous");
        }
        self.bytes += cost(&batch);
        self.entries.push_back(batch);
        self.evict();
    }

    /// Batches from the one containing `offset`, stopping before `end_offset` and once `bytes_max`
    /// is reached (the first batch is returned whatever its size). `None` when `offset` is older
    /// than the cache holds.
    pub fn read(&self, offset: u64, end_offset: u64, bytes_max: usize) -> Option<Vec<StoredBatch>> {
        let first = self.entries.front()?;
        if offset < first.base_offset {
            return None;
        }
        let i = self.entries.partition_point(|b| b.end_offset() <= offset);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for batch in self.entries.range(i..) {
            if batch.end_offset() > end_offset || (!out.is_empty() && bytes + batch.payload.len() > bytes_max)
            {
                break;
            }
            bytes += batch.payload.len();
            out.push(batch.clone());
        }
        if out.is_empty() && i == self.entries.len() {
            return None;
        }
        Some(out)
    }

    /// Drops entries whose offsets reach `offset` or beyond (log truncation, failed write).
    pub fn truncate(&mut self, offset: u64) {
        while self.entries.back().is_some_and(|b| b.end_offset() > offset) {
            let b = self.entries.pop_back().expect("checked");
            self.bytes -= cost(&b);
        }
    }

    /// Drops entries below `offset` (retention moved the log start).
    pub fn trim_front(&mut self, offset: u64) {
        while self.entries.front().is_some_and(|b| b.base_offset < offset) {
            let b = self.entries.pop_front().expect("checked");
            self.bytes -= cost(&b);
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
