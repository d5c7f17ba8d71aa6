//! A Raft group's persistent state: its log entries, hard state and snapshot, kept in memory for
//! `raft`'s [`Storage`] reads and in a [`Journal`] on disk.
//!
//! Journal records (first byte is the kind, the rest protobuf, as `raft` encodes its types):
//! - `B` + `ConfState`: the voters a new group starts with (the first record of a bootstrapped
//!   journal; absent when the group starts from a snapshot or joins an existing cluster empty);
//! - `S` + `Snapshot`: a snapshot; entries at or below its index are gone;
//! - `H` + `HardState`: term, vote and commit index;
//! - `E` + `Entry`: a log entry; one at index `i` replaces the entry at `i` and every later one
//!   (a follower's divergent suffix is truncated this way).
//!
//! Replaying the records in order rebuilds the state. Compaction rewrites the journal as the
//! snapshot, the hard state and the entries above the snapshot.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use rill_storage::{Disk, Journal};

use crate::cluster::consensus::ConsensusError;

#[derive(Debug, Default)]
struct Core {
    hard_state: HardState,
    /// The voters before the first entry (the bootstrap set, or the snapshot's).
    conf_state: ConfState,
    snapshot: Snapshot,
    /// `entries[0].index == snapshot index + 1` when not empty.
    entries: Vec<Entry>,
}

impl Core {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_index(), |e| e.index)
    }

    /// Appends `entries`, replacing any at or after the first one's index.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index >= self.first_index() && first.index <= self.last_index() + 1,
            "raft appended entries at {} to a log holding [{}, {}]",
            first.index,
            self.first_index(),
            self.last_index()
        );
        self.entries.truncate((first.index - self.first_index()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Installs a snapshot; `keep_above` keeps the entries above it (compaction of the group's
    /// own log), otherwise the log becomes the snapshot alone (a snapshot received from the
    /// leader replaces a log that did not match it, entries above included).
    fn install(&mut self, snapshot: Snapshot, keep_above: bool) {
        let meta = snapshot.get_metadata();
        let index = meta.index;
        if keep_above {
            self.entries.retain(|e| e.index > index);
        } else {
            self.entries.clear();
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot = snapshot;
    }
}

/// The in-memory side, shared with the `RawNode` as its [`Storage`].
#[derive(Clone, Debug, Default)]
pub(crate) struct LogStore(Rc<RefCell<Core>>, Rc<std::cell::Cell<bool>>);

/// The on-disk side: the journal that the store's changes are written to first.
#[derive(Debug)]
pub(crate) struct LogWriter {
    journal: Journal,
    store: LogStore,
    /// Records appended since the last rewrite.
    records_since_rewrite: u64,
}

/// How a group with an empty journal starts.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A new cluster: these voters, no entries (every initial member starts with the same set).
    Voters(Vec<u64>),
    /// An existing state brought in as a snapshot at `index` in `term`, with these voters (the
    /// in-place upgrade of a single-node data directory).
    Snapshot {
        /// The snapshot's index.
        index: u64,
        /// The snapshot's term.
        term: u64,
        /// The voters.
        voters: Vec<u64>,
        /// The state machine's image.
        data: Vec<u8>,
    },
    /// A node joining an existing cluster: no voters known; the leader sends a snapshot.
    Join,
}

fn record(kind: u8, message: &dyn protobuf::Message) -> Vec<u8> {
    let mut bytes = vec![kind];
    message.write_to_vec(&mut bytes).expect("protobuf encodes into a vector");
    bytes
}

fn parse<M: protobuf::Message>(path: &std::path::Path, bytes: &[u8]) -> Result<M, ConsensusError> {
    M::parse_from_bytes(bytes).map_err(|e| ConsensusError::Damaged {
        path: path.to_path_buf(),
        reason: format!("undecodable record: {e}"),
    })
}

pub(crate) fn voters(ids: &[u64]) -> ConfState {
    ConfState { voters: ids.to_vec(), ..Default::default() }
}

impl LogWriter {
    /// Opens the journal at `path` and rebuilds the state it holds; an empty journal starts as
    /// `bootstrap` says (written durably before anything else).
    pub async fn open(disk: Disk, path: PathBuf, bootstrap: Bootstrap) -> Result<LogWriter, ConsensusError> {
        let (mut journal, records) = Journal::open(disk, &path).await?;
        let mut core = Core::default();
        for bytes in &records {
            let body = &bytes[1..];
            match bytes[0] {
                b'B' => core.conf_state = parse(&path, body)?,
                // Entries kept above a compaction's snapshot follow it as `E` records.
                b'S' => core.install(parse(&path, body)?, false),
                b'H' => core.hard_state = parse(&path, body)?,
                b'E' => {
                    let entry: Entry = parse(&path, body)?;
                    if entry.index < core.first_index() || entry.index > core.last_index() + 1 {
                        return Err(ConsensusError::Damaged {
                            path: path.clone(),
                            reason: format!(
                                "entry {} does not follow the log's {}",
                                entry.index,
                                core.last_index()
                            ),
                        });
                    }
                    core.append(&[entry]);
                }
                kind => {
                    return Err(ConsensusError::Damaged {
                        path: path.clone(),
                        reason: format!("unknown record kind {kind}"),
                    });
                }
            }
        }
        let records_since_rewrite = records.len() as u64;
        if records.is_empty() {
            let first = match bootstrap {
                Bootstrap::Voters(ids) => {
                    core.conf_state = voters(&ids);
                    Some(record(b'B', &core.conf_state))
                }
                Bootstrap::Snapshot { index, term, voters: ids, data } => {
                    let mut snapshot = Snapshot { data: data.into(), ..Default::default() };
                    let meta = snapshot.mut_metadata();
                    meta.index = index;
                    meta.term = term;
                    meta.set_conf_state(voters(&ids));
                    let bytes = record(b'S', &snapshot);
                    core.install(snapshot, false);
                    Some(bytes)
                }
                Bootstrap::Join => None,
            };
            if let Some(first) = first {
                journal.append(&[&first]).await?;
                journal.sync().await?;
            }
        }
        Ok(LogWriter {
            journal,
            store: LogStore(Rc::new(RefCell::new(core)), Rc::default()),
            records_since_rewrite,
        })
    }

    /// The store to hand to the `RawNode`.
    pub fn store(&self) -> LogStore {
        self.store.clone()
    }

    /// Writes a `Ready`'s snapshot, entries and hard state, durably when `sync`, then makes
    /// them visible to the store.
    pub async fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), ConsensusError> {
        let mut records = Vec::with_capacity(entries.len() + 2);
        if let Some(snapshot) = snapshot {
            records.push(record(b'S', snapshot));
        }
        for entry in entries {
            records.push(record(b'E', entry));
        }
        if let Some(hard_state) = hard_state {
            records.push(record(b'H', hard_state));
        }
        if records.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        self.journal.append(&refs).await?;
        if sync {
            self.journal.sync().await?;
        }
        self.records_since_rewrite += records.len() as u64;
        let mut core = self.store.0.borrow_mut();
        if let Some(snapshot) = snapshot {
            core.install(snapshot.clone(), false);
        }
        core.append(entries);
        if let Some(hard_state) = hard_state {
            core.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// Records a commit index that advanced without a new hard state (not synced: a lost commit
    /// index is learnt again from the leader).
    pub async fn set_commit(&mut self, commit: u64) -> Result<(), ConsensusError> {
        let hard_state = {
            let mut core = self.store.0.borrow_mut();
            core.hard_state.commit = commit;
            core.hard_state.clone()
        };
        self.journal.append(&[&record(b'H', &hard_state)]).await?;
        self.records_since_rewrite += 1;
        Ok(())
    }

    /// Replaces the snapshot with `snapshot` (whose index the state machine has applied),
    /// drops the entries it covers and rewrites the journal without them.
    pub async fn compact(&mut self, snapshot: Snapshot) -> Result<(), ConsensusError> {
        let records = {
            let mut core = self.store.0.borrow_mut();
            assert!(snapshot.get_metadata().index <= core.last_index(), "a snapshot beyond the log");
            core.install(snapshot, true);
            let mut records = vec![record(b'S', &core.snapshot), record(b'H', &core.hard_state)];
            records.extend(core.entries.iter().map(|e| record(b'E', e)));
            records
        };
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        self.journal.rewrite(&refs).await?;
        self.records_since_rewrite = records.len() as u64;
        Ok(())
    }

    /// Records written since the journal was last rewritten.
    pub fn records_since_rewrite(&self) -> u64 {
        self.records_since_rewrite
    }

    /// The journal's size in bytes.
    pub fn journal_bytes(&self) -> u64 {
        self.journal.len_bytes()
    }
}

impl LogStore {
    pub fn snapshot_index(&self) -> u64 {
        self.0.borrow().snapshot_index()
    }

    pub fn last_snapshot(&self) -> Snapshot {
        self.0.borrow().snapshot.clone()
    }

    /// Whether the leader asked for a snapshot the store could not give (none yet, too old, or
    /// one whose voters do not include the follower): the group takes a new one; reading
    /// clears the flag.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.1.replace(false)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.0.borrow();
        Ok(RaftState { hard_state: core.hard_state.clone(), conf_state: core.conf_state.clone() })
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
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - core.first_index()) as usize;
        let to = (high - core.first_index()) as usize;
        let mut entries = core.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.0.borrow();
        if index == core.snapshot_index() {
            return Ok(core.snapshot.get_metadata().term);
        }
        if index < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > core.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(core.entries[(index - core.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let core = self.0.borrow();
        let conf = core.snapshot.get_metadata().get_conf_state();
        // A follower refuses a snapshot whose voters leave it out (one taken before it was
        // added): it would wait forever for one it accepts.
        let names_follower = conf.voters.contains(&to) || conf.learners.contains(&to);
        if core.snapshot_index() < request_index || core.snapshot_index() == 0 || !names_follower {
            // The group takes a new snapshot at its next advance.
            self.1.set(true);
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(core.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_storage::SimDisk;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: format!("{index}@{term}").into_bytes().into(), ..Default::default() }
    }

    fn terms(store: &LogStore) -> Vec<(u64, u64)> {
        let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
        (first..=last).map(|i| (i, store.term(i).unwrap())).collect()
    }

    #[test]
    fn replay_rebuilds_truncations_hard_state_and_compaction() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(|| async {
                let disk = Disk::Simulated(SimDisk::new(1));
                let path = PathBuf::from("/sim/raft/journal");
                let mut writer =
                    LogWriter::open(disk.clone(), path.clone(), Bootstrap::Voters(vec![1, 2, 3]))
                        .await
                        .unwrap();
                let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
                let hs = HardState { term: 1, vote: 1, commit: 2, ..Default::default() };
                writer.persist(None, &entries, Some(&hs), true).await.unwrap();
                // A new leader in term 2 replaces entries 3 to 5 with its own 3 and 4.
                let hs2 = HardState { term: 2, vote: 2, commit: 2, ..Default::default() };
                writer.persist(None, &[entry(3, 2), entry(4, 2)], Some(&hs2), true).await.unwrap();
                let before = terms(&writer.store());
                assert_eq!(before, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
                drop(writer);
                let writer = LogWriter::open(disk.clone(), path.clone(), Bootstrap::Join).await.unwrap();
                let store = writer.store();
                assert_eq!(terms(&store), before);
                let state = store.initial_state().unwrap();
                assert_eq!(state.hard_state, hs2);
                assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
                // Compaction at 3 keeps entry 4, and survives reopening.
                let mut writer = writer;
                let mut snapshot = Snapshot { data: b"image".to_vec().into(), ..Default::default() };
                snapshot.mut_metadata().index = 3;
                snapshot.mut_metadata().term = 2;
                snapshot.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
                writer.compact(snapshot).await.unwrap();
                drop(writer);
                let writer = LogWriter::open(disk, path, Bootstrap::Join).await.unwrap();
                let store = writer.store();
                assert_eq!(store.first_index().unwrap(), 4);
                assert_eq!(store.term(3).unwrap(), 2);
                assert_eq!(terms(&store), vec![(4, 2)]);
                assert_eq!(&store.last_snapshot().data[..], b"image");
                assert!(matches!(store.term(2), Err(raft::Error::Store(StorageError::Compacted))));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
