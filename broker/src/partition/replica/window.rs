//! The part of a partition group's Raft log that `raft` reads: the entries above the group's
//! compaction point, kept in memory (a record entry's data is the batch's `Bytes`, shared with
//! the `Log`'s cache, so keeping it costs no copy).
//!
//! Every entry here is durable (in the `Log` or the shard's journal) before it is added. Below
//! the compaction point `raft` sees a compacted log: a member that needs older entries is sent
//! a snapshot, which for a partition is "the log up to this offset" (see `replica`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::partition::replica::journal::CompactionPoint;

/// One entry with where it ends in the partition's log.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    pub entry: Entry,
    /// The log's end offset after this entry (a control entry takes no offset: the same as
    /// the entry before it).
    pub end_offset: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Core {
    pub hard_state: HardState,
    /// The voters as of the last entry (or the compaction point).
    pub conf: ConfState,
    pub point: CompactionPoint,
    /// Entries `point.index + 1 ..`, contiguous.
    pub entries: VecDeque<Held>,
    /// Bytes of entry data held.
    pub bytes: usize,
}

impl Core {
    pub fn first_index(&self) -> u64 {
        self.point.index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.entries.back().map_or(self.point.index, |h| h.entry.index)
    }

    /// The log's end offset after `index` (at or above the compaction point).
    pub fn end_offset_at(&self, index: u64) -> Option<u64> {
        if index == self.point.index {
            return Some(self.point.end_offset);
        }
        self.get(index).map(|h| h.end_offset)
    }

    /// The log's end offset after the last entry.
    pub fn end_offset(&self) -> u64 {
        self.entries.back().map_or(self.point.end_offset, |h| h.end_offset)
    }

    pub fn get(&self, index: u64) -> Option<&Held> {
        let at = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(at).ok()?)
    }

    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.point.index {
            return Some(self.point.term);
        }
        self.get(index).map(|h| h.entry.term)
    }

    /// Removes the entries at and above `index`.
    pub fn truncate(&mut self, index: u64) {
        assert!(
            index > self.point.index,
            "truncation at {index} below the compaction point {}",
            self.point.index
        );
        while self.entries.back().is_some_and(|h| h.entry.index >= index) {
            let h = self.entries.pop_back().expect("checked");
            self.bytes -= h.entry.data.len();
        }
    }

    pub fn push(&mut self, held: Held) {
        assert_eq!(held.entry.index, self.last_index() + 1, "window entries are contiguous");
        self.bytes += held.entry.data.len();
        self.entries.push_back(held);
    }

    /// Drops the entries up to `index`, which becomes the compaction point.
    pub fn compact_to(&mut self, index: u64, conf: ConfState) {
        assert!(index >= self.point.index && index <= self.last_index());
        if index == self.point.index {
            return;
        }
        let term = self.term_at(index).expect("in the window");
        let end_offset = self.end_offset_at(index).expect("in the window");
        while self.entries.front().is_some_and(|h| h.entry.index <= index) {
            let h = self.entries.pop_front().expect("checked");
            self.bytes -= h.entry.data.len();
        }
        self.point = CompactionPoint { index, term, end_offset, conf };
    }
}

/// `raft`'s view of the window, shared with the group that fills it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window(pub Rc<RefCell<Core>>);

impl Storage for Window {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.0.borrow();
        Ok(RaftState::new(core.hard_state.clone(), core.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.0.borrow();
        if low < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            panic!("raft asked for entries up to {high}, the window ends at {}", core.last_index());
        }
        let mut out: Vec<Entry> =
            (low..high).map(|i| core.get(i).expect("within the window").entry.clone()).collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let core = self.0.borrow();
        if idx < core.point.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        core.term_at(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    /// A snapshot is the compaction point: the member it is for fetches the log up to its end
    /// offset (the data) from the leader before it installs it.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.0.borrow();
        let mut snapshot =
            Snapshot { data: core.point.end_offset.to_le_bytes().to_vec().into(), ..Default::default() };
        let meta = snapshot.mut_metadata();
        meta.index = core.point.index;
        meta.term = core.point.term;
        meta.set_conf_state(core.point.conf.clone());
        Ok(snapshot)
    }
}
