//! A shard's journal of its partition groups' Raft state that is not record batches.
//!
//! A partition's record batches are its Raft log's entries and live in the partition's storage
//! `Log` (the entry header carries the Raft index, the leader epoch is the term). Everything
//! else a group must remember goes here, in one journal per shard shared by all the groups the
//! shard drives, so that one fdatasync covers every group that changed at once:
//! - `H` group, term, vote, commit: the hard state;
//! - `C` group, entry: a control entry (the empty entry a new leader appends, a membership
//!   change), which takes a Raft index but no offset that clients see;
//! - `T` group, index: the group's entries at and above `index` are gone (a follower's divergent
//!   suffix; the record batches among them are truncated from the `Log`);
//! - `P` group, index, term, end offset, voters: the group's compaction point. Entries at or
//!   below `index` are no longer needed as Raft entries (every member has them, or gets the log
//!   itself sent instead, see `replica`), the `Log` holds everything below `end offset`, and
//!   `voters` is the configuration there. A group's first record is a `P` at index 0 with
//!   its initial voters and the log's end offset when it became replicated;
//! - `D` group: the group is gone (its partition was deleted): a partition created later with the
//!   same name starts afresh.
//!
//! Records are written by whichever group needs them and group-committed: writers that arrive
//! while a write is in flight share the next one, and a sync covers all of them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use rill_storage::{Disk, Journal, Notify};

use crate::cluster::consensus::ConsensusError;

/// Where a group's Raft log was compacted (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionPoint {
    /// The last index compacted.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The log's end offset after that entry.
    pub end_offset: u64,
    /// The voters as of that entry.
    pub conf: ConfState,
}

/// What the journal held for one group when it was opened.
#[derive(Clone, Debug, Default)]
pub struct RecoveredGroup {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The last compaction point written.
    pub point: Option<CompactionPoint>,
    /// Control entries above the compaction point, by index, after truncations.
    pub controls: BTreeMap<u64, Entry>,
}

/// One record, encoded.
pub(crate) fn hard_state_record(group: u64, hs: &HardState) -> Vec<u8> {
    let mut r = vec![b'H'];
    r.extend_from_slice(&group.to_le_bytes());
    for v in [hs.term, hs.vote, hs.commit] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r
}

pub(crate) fn control_record(group: u64, entry: &Entry) -> Vec<u8> {
    let mut r = vec![b'C'];
    r.extend_from_slice(&group.to_le_bytes());
    entry.write_to_vec(&mut r).expect("protobuf encodes into a vector");
    r
}

pub(crate) fn forget_record(group: u64) -> Vec<u8> {
    let mut r = vec![b'D'];
    r.extend_from_slice(&group.to_le_bytes());
    r
}

pub(crate) fn truncate_record(group: u64, index: u64) -> Vec<u8> {
    let mut r = vec![b'T'];
    r.extend_from_slice(&group.to_le_bytes());
    r.extend_from_slice(&index.to_le_bytes());
    r
}

pub(crate) fn point_record(group: u64, point: &CompactionPoint) -> Vec<u8> {
    let mut r = vec![b'P'];
    r.extend_from_slice(&group.to_le_bytes());
    for v in [point.index, point.term, point.end_offset] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    point.conf.write_to_vec(&mut r).expect("protobuf encodes into a vector");
    r
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Folds one record into the groups' states.
fn replay(groups: &mut BTreeMap<u64, RecoveredGroup>, record: &[u8]) -> Result<(), String> {
    let kind = *record.first().ok_or("empty record")?;
    let group = u64_at(record, 1).ok_or("record without a group")?;
    let body = &record[9..];
    if kind == b'D' {
        groups.remove(&group);
        return Ok(());
    }
    let state = groups.entry(group).or_default();
    match kind {
        b'H' => {
            let (term, vote, commit) = (u64_at(body, 0), u64_at(body, 8), u64_at(body, 16));
            let (Some(term), Some(vote), Some(commit)) = (term, vote, commit) else {
                return Err("short hard state".into());
            };
            state.hard_state = HardState { term, vote, commit, ..Default::default() };
        }
        b'C' => {
            let entry = Entry::parse_from_bytes(body).map_err(|e| format!("control entry: {e}"))?;
            state.controls.split_off(&entry.index);
            state.controls.insert(entry.index, entry);
        }
        b'T' => {
            let index = u64_at(body, 0).ok_or("short truncation")?;
            state.controls.split_off(&index);
        }
        b'P' => {
            let (Some(index), Some(term), Some(end_offset)) =
                (u64_at(body, 0), u64_at(body, 8), u64_at(body, 16))
            else {
                return Err("short compaction point".into());
            };
            let conf = ConfState::parse_from_bytes(&body[24..]).map_err(|e| format!("voters: {e}"))?;
            state.controls = state.controls.split_off(&(index + 1));
            state.point = Some(CompactionPoint { index, term, end_offset, conf });
        }
        other => return Err(format!("unknown record kind {other}")),
    }
    Ok(())
}

/// The records that rebuild `group` as it is now (for a rewrite).
pub(crate) fn group_records(group: u64, state: &RecoveredGroup) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    if let Some(point) = &state.point {
        records.push(point_record(group, point));
    }
    records.push(hard_state_record(group, &state.hard_state));
    records.extend(state.controls.values().map(|e| control_record(group, e)));
    records
}

struct Inner {
    path: PathBuf,
    journal: RefCell<Option<Journal>>,
    pending: RefCell<Vec<Vec<u8>>>,
    /// Records queued so far, counted from the open.
    queued: Cell<u64>,
    written: Cell<u64>,
    synced: Cell<u64>,
    /// The highest record count someone waits to see synced.
    sync_wanted: Cell<u64>,
    busy: Cell<bool>,
    failed: Cell<bool>,
    changed: Notify,
    records_since_rewrite: Cell<u64>,
    /// Every group's state as the records written so far give it (a group reopened while the
    /// shard runs, its partition reconfigured, starts from it).
    state: RefCell<BTreeMap<u64, RecoveredGroup>>,
    compacting: Cell<bool>,
    compact_after: Cell<u64>,
}

/// A shard's group-committed journal of its partition groups' Raft state. Cloning gives
/// another handle to the same journal.
#[derive(Clone)]
pub struct ReplicaJournal {
    inner: Rc<Inner>,
}

impl ReplicaJournal {
    /// Opens (or creates) the journal at `path`; returns it with every group's recovered state.
    pub async fn open(
        disk: Disk,
        path: PathBuf,
    ) -> Result<(ReplicaJournal, BTreeMap<u64, RecoveredGroup>), ConsensusError> {
        let (journal, records) = Journal::open(disk, path.clone()).await?;
        let mut groups = BTreeMap::new();
        for record in &records {
            replay(&mut groups, record)
                .map_err(|reason| ConsensusError::Damaged { path: path.clone(), reason })?;
        }
        let inner = Inner {
            path,
            journal: RefCell::new(Some(journal)),
            pending: RefCell::default(),
            queued: Cell::new(0),
            written: Cell::new(0),
            synced: Cell::new(0),
            sync_wanted: Cell::new(0),
            busy: Cell::new(false),
            failed: Cell::new(false),
            changed: Notify::default(),
            records_since_rewrite: Cell::new(records.len() as u64),
            state: RefCell::new(groups.clone()),
            compacting: Cell::new(false),
            compact_after: Cell::new(Self::COMPACT_AFTER_RECORDS),
        };
        Ok((ReplicaJournal { inner: Rc::new(inner) }, groups))
    }

    /// Appends `records` and waits until they are written (with `sync`, durable). Concurrent
    /// writers share writes and syncs.
    pub async fn write(&self, records: Vec<Vec<u8>>, sync: bool) -> Result<(), ConsensusError> {
        let inner = &self.inner;
        if records.is_empty() && !sync {
            return Ok(());
        }
        let mine = inner.queued.get() + records.len() as u64;
        inner.queued.set(mine);
        inner.records_since_rewrite.set(inner.records_since_rewrite.get() + records.len() as u64);
        {
            let mut state = inner.state.borrow_mut();
            for record in &records {
                // The records are this module's own: a refusal would be a bug, and the
                // journal on disk still decides at the next start.
                if let Err(reason) = replay(&mut state, record) {
                    tracing::error!(%reason, "a partition group's journal record does not replay");
                }
            }
        }
        inner.pending.borrow_mut().extend(records);
        if sync {
            inner.sync_wanted.set(inner.sync_wanted.get().max(mine));
        }
        loop {
            if inner.failed.get() {
                return Err(self.failed());
            }
            if inner.written.get() >= mine && (!sync || inner.synced.get() >= mine) {
                self.maybe_compact();
                return Ok(());
            }
            if inner.busy.get() {
                inner.changed.changed().await;
                continue;
            }
            inner.busy.set(true);
            let batch = std::mem::take(&mut *inner.pending.borrow_mut());
            let upto = inner.queued.get();
            let want_sync = inner.sync_wanted.get() > inner.synced.get();
            let mut journal = inner.journal.borrow_mut().take().expect("the journal is here while not busy");
            let result = async {
                if !batch.is_empty() {
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    journal.append(&refs).await?;
                }
                if want_sync {
                    journal.sync().await?;
                }
                Ok::<(), rill_storage::Error>(())
            }
            .await;
            *inner.journal.borrow_mut() = Some(journal);
            inner.busy.set(false);
            match result {
                Ok(()) => {
                    inner.written.set(upto);
                    if want_sync {
                        inner.synced.set(upto);
                    }
                }
                Err(e) => {
                    inner.failed.set(true);
                    inner.changed.notify_all();
                    return Err(e.into());
                }
            }
            inner.changed.notify_all();
        }
    }

    fn failed(&self) -> ConsensusError {
        ConsensusError::Damaged {
            path: self.inner.path.clone(),
            reason: "an earlier write failed; the journal must be reopened".into(),
        }
    }

    /// Group `group`'s state as written so far (`None`: the journal knows no such group).
    pub fn group_state(&self, group: u64) -> Option<RecoveredGroup> {
        self.inner.state.borrow().get(&group).cloned()
    }

    /// Compacts the journal in the background once this many records were appended since the
    /// last compaction, and more than twice as many as the groups' state takes.
    pub const COMPACT_AFTER_RECORDS: u64 = 100_000;

    /// Compacts after `records` appended records instead (tests make it happen often).
    pub fn set_compact_after(&self, records: u64) {
        self.inner.compact_after.set(records);
    }

    /// Starts a compaction if the journal has grown enough and none runs.
    fn maybe_compact(&self) {
        let inner = &self.inner;
        let live = inner.state.borrow().len() as u64 * 4;
        if inner.compacting.get()
            || inner.records_since_rewrite.get() < inner.compact_after.get().max(2 * live)
        {
            return;
        }
        inner.compacting.set(true);
        let journal = self.clone();
        glommio::spawn_local(async move {
            if let Err(error) = journal.compact().await {
                tracing::error!(%error, "compacting the partition groups' journal");
            }
            journal.inner.compacting.set(false);
        })
        .detach();
    }

    /// Records appended since the journal was opened or last rewritten.
    pub fn records_since_rewrite(&self) -> u64 {
        self.inner.records_since_rewrite.get()
    }

    /// Forgets group `group` (its partition was deleted).
    pub async fn forget(&self, group: u64) -> Result<(), ConsensusError> {
        self.write(vec![forget_record(group)], true).await
    }

    /// Replaces the journal's contents with the records that rebuild every group's current
    /// state, atomically: hard states and compaction points rewritten at every write otherwise
    /// grow it without bound. Records queued meanwhile are appended after it (replaying a
    /// record again over the state it produced leaves that state as it is).
    pub async fn compact(&self) -> Result<(), ConsensusError> {
        let inner = &self.inner;
        // Let everything queued reach the journal first, then hold it.
        self.write(Vec::new(), true).await?;
        while inner.busy.get() {
            let changed = inner.changed.changed();
            if !inner.busy.get() {
                break;
            }
            changed.await;
        }
        inner.busy.set(true);
        let records: Vec<Vec<u8>> =
            inner.state.borrow().iter().flat_map(|(group, state)| group_records(*group, state)).collect();
        let mut journal = inner.journal.borrow_mut().take().expect("the journal is here while not busy");
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let result = journal.rewrite(&refs).await;
        *inner.journal.borrow_mut() = Some(journal);
        inner.busy.set(false);
        inner.changed.notify_all();
        match result {
            Ok(()) => {
                tracing::debug!(path = %inner.path.display(), records = records.len(), "partition groups' journal compacted");
                inner.records_since_rewrite.set(records.len() as u64);
                Ok(())
            }
            Err(e) => {
                inner.failed.set(true);
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compacted journal holds only what rebuilds each group, and reopens to the same state,
    /// records written after the compaction included.
    #[test]
    fn compaction_keeps_every_groups_state() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(|| async {
                let disk = rill_storage::SimDisk::new(7);
                let path = std::path::PathBuf::from("/sim/raft/partitions/shard-0");
                let (journal, _) =
                    ReplicaJournal::open(Disk::Simulated(disk.clone()), path.clone()).await.unwrap();
                let conf = ConfState { voters: vec![1, 2, 3], ..Default::default() };
                for group in 1..=3u64 {
                    let point = CompactionPoint { index: 0, term: 0, end_offset: group, conf: conf.clone() };
                    journal.write(vec![point_record(group, &point)], false).await.unwrap();
                }
                for commit in 0..2000u64 {
                    let group = 1 + commit % 3;
                    let hs = HardState { term: 4, vote: 2, commit, ..Default::default() };
                    journal.write(vec![hard_state_record(group, &hs)], commit % 50 == 0).await.unwrap();
                }
                let control = Entry { index: 7, term: 4, ..Default::default() };
                journal.write(vec![control_record(2, &control), forget_record(3)], true).await.unwrap();
                let before = disk.contents(&path).unwrap().len();
                journal.compact().await.unwrap();
                let after = disk.contents(&path).unwrap().len();
                assert!(after * 20 < before, "compacted from {before} to {after} bytes");
                let hs = HardState { term: 5, vote: 1, commit: 3000, ..Default::default() };
                journal.write(vec![hard_state_record(1, &hs)], true).await.unwrap();
                let (_, groups) = ReplicaJournal::open(Disk::Simulated(disk), path).await.unwrap();
                assert_eq!(groups.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
                assert_eq!(groups[&1].hard_state.commit, 3000);
                assert_eq!(groups[&2].hard_state.commit, 1999);
                assert_eq!(groups[&2].controls.keys().copied().collect::<Vec<_>>(), vec![7]);
                assert_eq!(groups[&2].point.as_ref().unwrap().end_offset, 2);
                for (group, state) in &groups {
                    let live = journal.group_state(*group).unwrap();
                    assert_eq!(
                        (live.hard_state, live.point, live.controls),
                        (state.hard_state.clone(), state.point.clone(), state.controls.clone())
                    );
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn records_replay_to_the_latest_state() {
        let mut groups = BTreeMap::new();
        let conf = ConfState { voters: vec![1, 2, 3], ..Default::default() };
        let p0 = CompactionPoint { index: 0, term: 0, end_offset: 7, conf: conf.clone() };
        let control = |index, term| Entry { index, term, ..Default::default() };
        let records = [
            point_record(9, &p0),
            hard_state_record(9, &HardState { term: 2, vote: 1, commit: 0, ..Default::default() }),
            control_record(9, &control(1, 1)),
            control_record(9, &control(4, 2)),
            control_record(9, &control(6, 2)),
            truncate_record(9, 5),
            control_record(9, &control(8, 3)),
            control_record(4, &control(1, 1)),
            point_record(9, &CompactionPoint { index: 3, term: 1, end_offset: 20, conf }),
            control_record(5, &control(1, 1)),
            forget_record(5),
        ];
        for r in &records {
            replay(&mut groups, r).unwrap();
        }
        let g = &groups[&9];
        assert_eq!(g.hard_state.term, 2);
        assert_eq!(g.point.as_ref().unwrap().end_offset, 20);
        assert_eq!(g.controls.keys().copied().collect::<Vec<_>>(), vec![4, 8]);
        assert_eq!(groups[&4].controls.len(), 1);
        assert!(!groups.contains_key(&5), "a forgotten group is gone");
        let mut again = BTreeMap::new();
        for r in group_records(9, g) {
            replay(&mut again, &r).unwrap();
        }
        assert_eq!(again[&9].controls.keys().copied().collect::<Vec<_>>(), vec![4, 8]);
        assert_eq!(again[&9].point, g.point);
        assert!(replay(&mut again, b"Xabcdefgh").is_err());
        assert!(replay(&mut again, b"H").is_err());
    }
}
