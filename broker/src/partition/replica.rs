//! One member of a partition's Raft group (issue 14): the partition's storage `Log` is the
//! group's log.
//!
//! A [`Replica`] is sans-I/O in the way the metadata group is: its owner (a shard, or the
//! seeded simulation in `broker/tests/replica_sim.rs`) feeds it ticks and peers' messages,
//! proposes record batches, and calls [`Replica::advance`], which persists what `raft`
//! produced and returns the messages to send, each only once the state it depends on is
//! durable (persist-before-send). It reads no clock and opens no socket.
//!
//! Where things live:
//! - A record entry (one produced batch) is a `Log` entry whose header carries the Raft index;
//!   its term is the entry's leader epoch, also what clients see as the leader epoch. Every
//!   member's `Log` assigns the same offsets, because every member appends the same entries
//!   in the same order from the same start; the leader's proposal carries the batch as
//!   received, and each member patches the base offset as it appends.
//! - Control entries (a new leader's empty entry, membership changes), the hard state and the
//!   compaction point go to the shard's [`ReplicaJournal`]. Control entries take no offset.
//! - `raft` reads entries from a [`window`] in memory above the compaction point; the window is
//!   rebuilt from the `Log` and the journal when the replica opens.
//! - A snapshot is the compaction point. A member sent one fetches the leader's log from its
//!   own committed end up to the snapshot's end offset ([`ReplicaMessage::FetchLog`]) and then
//!   installs it; the log itself is never copied into a snapshot image.
//!
//! The high watermark is the end offset of the highest committed entry this member holds; the
//! owner must not serve reads above it.

pub mod journal;
mod message;
mod rebuild;
mod window;

pub use self::message::ReplicaMessage;
use self::rebuild::{rebuild, snapshot_end_offset};

use std::collections::BTreeMap;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{RawNode, Ready, StateRole};
use rill_storage::{Batch, Log, StoredBatch};

use crate::cluster::consensus::{ConsensusError, ProposeError};
use crate::partition::replica::journal::{
    CompactionPoint, RecoveredGroup, ReplicaJournal, control_record, hard_state_record, point_record,
    truncate_record,
};
use crate::partition::replica::window::{Core, Held, Window};

/// A Raft message between members of a partition group.
pub use raft::eraftpb::Message as RaftMessage;

/// Bytes a reply to [`ReplicaMessage::FetchLog`] carries at most.
pub const FETCH_LOG_BYTES_MAX: usize = 1 << 20;

/// A replica's settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This member's id in the group (the node id; not 0).
    pub id: u64,
    /// The group's id in the shard's journal.
    pub group: u64,
    /// Ticks without a leader's word before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Seed of the election-timeout generator (`None`: from the OS).
    pub election_seed: Option<u64>,
    /// Entry bytes held in memory above the compaction point before the group compacts.
    pub window_bytes_max: usize,
}

impl ReplicaConfig {
    /// Defaults for member `id` of group `group`.
    pub fn new(id: u64, group: u64) -> ReplicaConfig {
        ReplicaConfig {
            id,
            group,
            election_tick: 10,
            heartbeat_tick: 2,
            election_seed: None,
            window_bytes_max: 8 << 20,
        }
    }
}

/// A record batch proposed to the group, as the `Log` takes it.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// The batch bytes.
    pub payload: Bytes,
    /// Records in the batch.
    pub record_count: u32,
    /// First record timestamp.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp.
    pub max_timestamp_ms: i64,
    /// Where the base offset goes in the payload (see `rill_storage::Batch`).
    pub base_offset_field: Option<usize>,
}

/// Identifies a proposed entry: it is the one committed at `index` only if its term matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// The entry's index.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// The base offset the batch gets if it is committed (the leader appends its proposals in
    /// order after its log's end); idempotent producers' state records it at once.
    pub base_offset: u64,
}

/// What became of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed at this base offset.
    Committed {
        /// The batch's base offset.
        base_offset: u64,
    },
    /// Another entry took its place (leadership changed before it committed): the producer
    /// must retry, with the new leader.
    Lost,
    /// This member can no longer tell (its log was replaced by a snapshot first): the batch may
    /// or may not be in the log, as after a request timeout.
    Unknown,
}

/// What one [`Replica::advance`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send, each to `to()`; what they depend on is durable.
    pub messages: Vec<ReplicaMessage>,
    /// Proposals made on this member whose fate is now known.
    pub outcomes: Vec<(Proposed, Outcome)>,
    /// Proposals made on this member that its own log now holds durably (an acks=1 answer),
    /// with their base offsets.
    pub appended: Vec<(u64, u64)>,
}

/// A record entry's context: what the `Log` needs besides the bytes.
const RECORD_CONTEXT_BYTES: usize = 1 + 4 + 8 + 8 + 4;

fn record_context(p: &Proposal) -> Bytes {
    let mut c = Vec::with_capacity(RECORD_CONTEXT_BYTES);
    c.push(b'R');
    c.extend_from_slice(&p.record_count.to_le_bytes());
    c.extend_from_slice(&p.first_timestamp_ms.to_le_bytes());
    c.extend_from_slice(&p.max_timestamp_ms.to_le_bytes());
    let field = p.base_offset_field.map_or(u32::MAX, |at| u32::try_from(at).unwrap_or(u32::MAX));
    c.extend_from_slice(&field.to_le_bytes());
    c.into()
}

/// The batch a record entry stands for, or `None` for a control entry.
fn record_batch(entry: &Entry) -> Option<Result<Batch, String>> {
    if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
        return None;
    }
    let c = &entry.context;
    if c.len() != RECORD_CONTEXT_BYTES || c[0] != b'R' {
        return Some(Err(format!("entry {} has no record context", entry.index)));
    }
    let u32_at = |at: usize| u32::from_le_bytes(c[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(c[at..at + 8].try_into().expect("8 bytes"));
    let field = u32_at(21);
    Some(Ok(Batch {
        payload: entry.data.clone(),
        record_count: u32_at(1),
        first_timestamp_ms: i64_at(5),
        max_timestamp_ms: i64_at(13),
        leader_epoch: i32::try_from(entry.term).unwrap_or(i32::MAX),
        base_offset_field: (field != u32::MAX).then_some(field as usize),
        known_suffix_crc: None,
        raft_index: entry.index,
    }))
}

fn damaged(log: &Log, reason: String) -> ConsensusError {
    ConsensusError::Damaged { path: log.dir().to_path_buf(), reason }
}

/// The log ends below the compaction point's end offset: a snapshot was installed, and the
/// log between the member's committed end and the snapshot's end is being fetched from another
/// member. Meanwhile `raft` runs on (the member votes, and may even lead), but takes no record
/// entries: appends are not stepped and proposals are refused until the log is whole.
struct Gap {
    /// The end offset the log must reach.
    until: u64,
    /// The member asked.
    source: u64,
    /// Ticks since the last progress (the request is sent again, to another member if need be).
    idle_ticks: usize,
    /// A request is due.
    wanted: bool,
}

/// One member of a partition's Raft group (see the module documentation).
pub struct Replica {
    raw: RawNode<Window>,
    window: Window,
    log: Log,
    journal: ReplicaJournal,
    id: u64,
    group: u64,
    election_tick: usize,
    window_bytes_max: usize,
    gap: Option<Gap>,
    /// A snapshot was stepped and not yet handled by `advance`: appends wait.
    snapshot_stepped: bool,
    /// The voters (fetch sources while catching up).
    voters: Vec<u64>,
    /// Peers sent a snapshot, with ticks since (resent when lost).
    snapshots_sent: BTreeMap<u64, usize>,
    /// The hard state last written to the journal.
    written_hs: HardState,
    /// Proposals made here and not yet resolved, by index (with their record counts).
    proposals: BTreeMap<u64, (Proposed, u32)>,
    /// Ticks so far, and the tick each member was last heard from (the in-sync replicas).
    ticks: u64,
    heard: BTreeMap<u64, u64>,
}

impl Replica {
    /// Opens a member of group `config.group` over `log`. `recovered` is what the shard's
    /// journal held for the group (`None`: a new group, whose voters are `voters` and whose
    /// replicated log starts at the log's current end).
    pub async fn open(
        config: &ReplicaConfig,
        log: Log,
        journal: ReplicaJournal,
        recovered: Option<RecoveredGroup>,
        voters: &[u64],
    ) -> Result<Replica, ConsensusError> {
        let group = config.group;
        let recovered = match recovered {
            Some(r) if r.point.is_some() => r,
            _ => {
                let point = CompactionPoint {
                    index: 0,
                    term: 0,
                    end_offset: log.next_offset(),
                    conf: ConfState { voters: voters.to_vec(), ..Default::default() },
                };
                // Not synced on its own: the group's first vote or term change (before any entry
                // can be acknowledged) syncs the journal, this record with it.
                journal.write(vec![point_record(group, &point)], false).await?;
                RecoveredGroup { point: Some(point), ..Default::default() }
            }
        };
        let core = rebuild(&log, &journal, group, recovered).await?;
        let gap = (log.next_offset() < core.point.end_offset).then(|| Gap {
            until: core.point.end_offset,
            source: voters.iter().copied().find(|&v| v != config.id).unwrap_or(config.id),
            idle_ticks: 0,
            wanted: true,
        });
        let applied = core.point.index;
        let written_hs = core.hard_state.clone();
        let window = Window(std::rc::Rc::new(std::cell::RefCell::new(core)));
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            election_seed: config.election_seed,
            ..Default::default()
        };
        let logger = crate::cluster::consensus::logger("partition");
        let raw = RawNode::new(&raft_config, window.clone(), &logger)?;
        Ok(Replica {
            raw,
            window,
            log,
            journal,
            id: config.id,
            group,
            election_tick: config.election_tick,
            window_bytes_max: config.window_bytes_max,
            snapshots_sent: BTreeMap::new(),
            written_hs,
            gap,
            snapshot_stepped: false,
            voters: voters.to_vec(),
            proposals: BTreeMap::new(),
            ticks: 0,
            heard: BTreeMap::new(),
        })
    }

    /// One tick of the group's clock.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        let leader = self.raw.raft.leader_id;
        if let Some(gap) = self.gap.as_mut() {
            gap.idle_ticks += 1;
            if gap.idle_ticks > self.election_tick {
                // No answer: ask the leader, or if that was who failed, the next member (any
                // member whose high watermark covers the gap can fill it).
                gap.idle_ticks = 0;
                gap.wanted = true;
                gap.source = if leader != raft::INVALID_ID && leader != self.id && gap.source != leader {
                    leader
                } else {
                    let others: Vec<u64> = self.voters.iter().copied().filter(|&v| v != self.id).collect();
                    let at = others.iter().position(|&v| v == gap.source).map_or(0, |i| i + 1);
                    others.get(at % others.len().max(1)).copied().unwrap_or(gap.source)
                };
            }
        }
        if self.snapshots_sent.is_empty() {
            return;
        }
        // A snapshot (or its log fetch) lost on the way would leave the leader waiting
        // forever: after four election timeouts without the member's word it is sent again.
        let limit = 4 * self.election_tick;
        let mut failed = Vec::new();
        let prs = self.raw.raft.prs();
        self.snapshots_sent.retain(|&peer, ticks| {
            *ticks += 1;
            let waiting = prs.get(peer).is_some_and(|p| p.state == raft::ProgressState::Snapshot);
            if waiting && *ticks > limit {
                failed.push(peer);
            }
            waiting && *ticks <= limit
        });
        for peer in failed {
            self.raw.report_snapshot(peer, raft::SnapshotStatus::Failure);
        }
    }

    /// Takes a Raft message from a peer (stale and foreign ones are ignored).
    pub fn step(&mut self, message: Message) {
        self.heard.insert(message.from, self.ticks);
        match message.get_msg_type() {
            // Entries cannot be appended while the log has a gap below them.
            MessageType::MsgAppend if self.gap.is_some() || self.snapshot_stepped => return,
            MessageType::MsgSnapshot => self.snapshot_stepped = true,
            _ => {}
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(group = self.group, node = self.id, error = %e, "raft message ignored");
        }
    }

    /// Starts an election now.
    pub fn campaign(&mut self) {
        if let Err(e) = self.raw.campaign() {
            tracing::debug!(group = self.group, node = self.id, error = %e, "raft campaign refused");
        }
    }

    /// Proposes a record batch; a later [`Output`] tells when it is appended here, and when it
    /// is committed (or lost).
    pub fn propose(&mut self, proposal: &Proposal) -> Result<Proposed, ProposeError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader() });
        }
        if self.gap.is_some() {
            return Err(ProposeError::Dropped);
        }
        let entry =
            Entry { data: proposal.payload.clone(), context: record_context(proposal), ..Default::default() };
        let before = self.raw.raft.raft_log.last_index();
        self.raw.propose_entry(entry).map_err(|_| ProposeError::Dropped)?;
        let index = self.raw.raft.raft_log.last_index();
        if index != before + 1 {
            return Err(ProposeError::Dropped);
        }
        let term = self.raw.raft.term;
        let base_offset = {
            let core = self.window.0.borrow();
            let unpersisted: u64 = self
                .proposals
                .range(core.last_index() + 1..)
                .filter(|(_, (p, _))| p.term == term)
                .map(|(_, (_, count))| *count as u64)
                .sum();
            core.end_offset() + unpersisted
        };
        let proposed = Proposed { index, term, base_offset };
        self.proposals.insert(index, (proposed, proposal.record_count));
        Ok(proposed)
    }

    /// What became of the proposals made here, as far as this member knows now: resolved ones
    /// leave the pending set and are added to `out`.
    ///
    /// `raft`'s commit index describes the window only once every ready is persisted; before
    /// a snapshot is installed it already names the snapshot, so the last commit index
    /// persisted is used then (`before_install`).
    fn resolve(&mut self, out: &mut Vec<(Proposed, Outcome)>, before_install: bool) {
        if self.proposals.is_empty() {
            return;
        }
        let core = self.window.0.borrow();
        let committed = if before_install {
            core.hard_state.commit.min(core.last_index())
        } else {
            self.committed(&core)
        };
        let group = self.group;
        self.proposals.retain(|&index, &mut (proposed, count)| {
            let term = proposed.term;
            let outcome = match core.get(index) {
                Some(held) if held.entry.term != term => Outcome::Lost,
                Some(held) if index <= committed => {
                    let base_offset = held.end_offset - count as u64;
                    assert_eq!(
                        base_offset, proposed.base_offset,
                        "group {group}: a proposal committed at another offset than the leader predicted"
                    );
                    Outcome::Committed { base_offset }
                }
                // Not committed yet, or not here yet: a new leader that holds it may still
                // commit it, so it waits.
                Some(_) => return true,
                None if index > core.point.index => return true,
                // Replaced by a snapshot before this member learnt its fate.
                None => Outcome::Unknown,
            };
            out.push((proposed, outcome));
            false
        });
    }

    /// The highest committed index this member holds.
    fn committed(&self, core: &Core) -> u64 {
        self.raw.raft.raft_log.committed.min(core.last_index())
    }

    /// The high watermark: the end offset of the highest committed entry this member holds.
    pub fn high_watermark(&self) -> u64 {
        let core = self.window.0.borrow();
        let hw = core.end_offset_at(self.committed(&core)).unwrap_or(core.point.end_offset);
        hw.min(self.log.next_offset())
    }

    /// The outcomes known now, before anything new is persisted: a leader learns that entries
    /// committed from its followers' responses as soon as it steps them, and its owner can
    /// answer those produces before the next write (whose sync would otherwise delay them).
    pub fn outcomes_now(&mut self) -> Vec<(Proposed, Outcome)> {
        // Only a leader: its log never loses entries to `raft`'s unpersisted ones, so what
        // `raft` counts committed is in the window already. A follower's unpersisted entries may
        // replace some of the window's, which the next `advance` settles.
        let mut out = Vec::new();
        if self.is_leader() && !self.snapshot_stepped {
            self.resolve(&mut out, false);
        }
        out
    }

    /// Persists what `raft` produced and returns the messages to send.
    pub async fn advance(&mut self) -> Result<Output, ConsensusError> {
        let mut output = Output::default();
        while self.raw.has_ready() {
            let ready = self.raw.ready();
            if !ready.snapshot().is_empty() {
                let snapshot = ready.snapshot().clone();
                self.resolve(&mut output.outcomes, true);
                self.install(&snapshot).await?;
            }
            self.finish_ready(ready, &mut output).await?;
        }
        self.resolve(&mut output.outcomes, false);
        let out = &mut output.messages;
        self.snapshot_stepped = false;
        if let Some(gap) = self.gap.as_mut().filter(|g| g.wanted) {
            gap.wanted = false;
            out.push(ReplicaMessage::FetchLog {
                from: self.id,
                to: gap.source,
                offset: self.log.next_offset(),
                until: gap.until,
            });
        }
        self.maybe_compact().await?;
        Ok(output)
    }

    /// Persists a ready without a snapshot, advances `raft`, collects its messages.
    async fn finish_ready(&mut self, mut ready: Ready, output: &mut Output) -> Result<(), ConsensusError> {
        let mut messages = ready.take_messages();
        let _ = ready.take_committed_entries();
        let appended = self.persist(ready.entries(), ready.hs().cloned()).await?;
        output.appended.extend(appended);
        messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.window.0.borrow_mut().hard_state.commit = commit;
        }
        messages.extend(light.take_messages());
        let _ = light.take_committed_entries();
        self.raw.advance_apply();
        for message in &messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.insert(message.to, 0);
            }
        }
        output.messages.extend(messages.into_iter().map(ReplicaMessage::Raft));
        Ok(())
    }

    /// Writes `entries` (record ones to the log, control ones to the journal, truncating a
    /// divergent suffix first) and the hard state, and waits until they are durable.
    /// Returns the local proposals among the entries, with their base offsets.
    async fn persist(
        &mut self,
        entries: &[Entry],
        hs: Option<HardState>,
    ) -> Result<Vec<(u64, u64)>, ConsensusError> {
        let mut appended = Vec::new();
        let mut records = Vec::new();
        let mut journal_sync = false;
        if let Some(first) = entries.first() {
            let (last, cut_at) = {
                let core = self.window.0.borrow();
                (core.last_index(), core.end_offset_at(first.index - 1))
            };
            if first.index <= last {
                let cut_at = cut_at.ok_or_else(|| {
                    damaged(
                        &self.log,
                        format!("raft replaces entry {} below the compaction point", first.index),
                    )
                })?;
                // The truncation is durable in the journal before the log shrinks, so that
                // control entries written after it can never meet the old record entries.
                self.journal.write(vec![truncate_record(self.group, first.index)], true).await?;
                if self.log.next_offset() > cut_at {
                    self.log.truncate(cut_at).await?;
                }
                self.window.0.borrow_mut().truncate(first.index);
            }
        }
        let mut batches = Vec::new();
        for entry in entries {
            match record_batch(entry) {
                Some(batch) => batches.push(batch.map_err(|r| damaged(&self.log, r))?),
                None => {
                    records.push(control_record(self.group, entry));
                    journal_sync = true;
                }
            }
        }
        let window_end = self.window.0.borrow().end_offset();
        if !batches.is_empty() && self.log.next_offset() != window_end {
            // The log and the group disagree on where entries go (a log that held data before
            // its partition was replicated, or damage): the group stops, the partition with it.
            return Err(damaged(
                &self.log,
                format!(
                    "group {}: the log ends at {}, the replicated log at {window_end}",
                    self.group,
                    self.log.next_offset()
                ),
            ));
        }
        let enqueued = if batches.is_empty() { None } else { Some(self.log.enqueue_all(batches).await?) };
        // Into the window, in order, with each entry's end offset.
        {
            let mut core = self.window.0.borrow_mut();
            let mut bases = enqueued.as_ref().map(|e| e.bases.clone()).unwrap_or_default().into_iter();
            for entry in entries {
                let end_offset = match record_batch(entry) {
                    Some(Ok(batch)) => {
                        let base = bases.next().expect("one base per batch");
                        let expected = core.end_offset();
                        assert_eq!(
                            base, expected,
                            "group {}: entry {} lands at {base}, not {expected}",
                            self.group, entry.index
                        );
                        base + batch.record_count as u64
                    }
                    _ => core.end_offset(),
                };
                if let Some((p, count)) = self.proposals.get(&entry.index)
                    && p.term == entry.term
                {
                    appended.push((entry.index, end_offset - *count as u64));
                }
                core.push(Held { entry: entry.clone(), end_offset });
            }
        }
        if let Some(hs) = hs {
            journal_sync |= hs.term != self.written_hs.term || hs.vote != self.written_hs.vote;
            records.push(hard_state_record(self.group, &hs));
            self.window.0.borrow_mut().hard_state = hs.clone();
            self.written_hs = hs;
        }
        let journal = self.journal.write(records, journal_sync);
        match enqueued {
            Some(enqueued) => {
                let (log, journal) = futures_lite::future::zip(enqueued.wait(true), journal).await;
                log?;
                journal?;
            }
            None => journal.await?,
        }
        Ok(appended)
    }

    /// A snapshot from the leader replaces this member's log: entries it holds that are
    /// committed are the leader's too, so the log is cut to its committed end, the snapshot
    /// becomes the compaction point, and the rest of the log up to the snapshot's end offset is
    /// fetched (the gap).
    async fn install(&mut self, snapshot: &Snapshot) -> Result<(), ConsensusError> {
        let meta = snapshot.get_metadata();
        let until = snapshot_end_offset(snapshot)
            .ok_or_else(|| damaged(&self.log, "snapshot without an end offset".into()))?;
        let (committed, keep) = {
            let core = self.window.0.borrow();
            let committed = core.hard_state.commit.max(core.point.index).min(core.last_index());
            (committed, core.end_offset_at(committed).unwrap_or(core.point.end_offset))
        };
        let cut = keep.min(until);
        if self.log.next_offset() > cut {
            // Uncommitted control entries go with the uncommitted record entries; durably
            // before the log shrinks.
            self.journal.write(vec![truncate_record(self.group, committed + 1)], true).await?;
            self.log.truncate(cut).await?;
        }
        let point = CompactionPoint {
            index: meta.index,
            term: meta.term,
            end_offset: until,
            conf: meta.get_conf_state().clone(),
        };
        {
            let mut core = self.window.0.borrow_mut();
            core.entries.clear();
            core.bytes = 0;
            core.point = point.clone();
            core.conf = point.conf.clone();
            core.hard_state.commit = core.hard_state.commit.max(meta.index);
            core.hard_state.term = core.hard_state.term.max(meta.term);
        }
        self.journal.write(vec![point_record(self.group, &point)], true).await?;
        if !point.conf.voters.is_empty() {
            self.voters = point.conf.voters.clone();
        }
        if self.log.next_offset() < until {
            let leader = self.raw.raft.leader_id;
            let source = if leader != raft::INVALID_ID && leader != self.id {
                leader
            } else {
                self.voters.iter().copied().find(|&v| v != self.id).unwrap_or(self.id)
            };
            self.gap = Some(Gap { until, source, idle_ticks: 0, wanted: true });
        } else {
            self.gap = None;
        }
        Ok(())
    }

    /// Appends a chunk of another member's log fetched to fill the gap.
    pub async fn on_log_chunk(
        &mut self,
        offset: u64,
        batches: Vec<StoredBatch>,
    ) -> Result<(), ConsensusError> {
        let Some(gap) = self.gap.as_mut() else { return Ok(()) };
        if offset != self.log.next_offset() || batches.is_empty() {
            // Stale, duplicated, or the member asked lacks it: asked again later.
            return Ok(());
        }
        gap.idle_ticks = 0;
        gap.wanted = true;
        let until = gap.until;
        let mut appended = Vec::new();
        let mut next = offset;
        for b in batches {
            if b.base_offset != next || b.end_offset() > until {
                break;
            }
            next = b.end_offset();
            appended.push(Batch {
                payload: b.payload,
                record_count: b.record_count,
                first_timestamp_ms: b.first_timestamp_ms,
                max_timestamp_ms: b.max_timestamp_ms,
                leader_epoch: b.leader_epoch,
                base_offset_field: None,
                known_suffix_crc: None,
                raft_index: b.raft_index,
            });
        }
        if !appended.is_empty() {
            self.log.append_all(appended, true).await?;
        }
        if self.log.next_offset() >= until {
            assert_eq!(self.log.next_offset(), until, "group {}: the gap is filled exactly", self.group);
            self.gap = None;
        }
        Ok(())
    }

    /// Serves a member's [`ReplicaMessage::FetchLog`] from this member's log (committed
    /// entries only, up to `until`).
    pub async fn serve_fetch(
        &mut self,
        from: u64,
        offset: u64,
        until: u64,
    ) -> Result<ReplicaMessage, ConsensusError> {
        self.snapshots_sent.entry(from).and_modify(|t| *t = 0);
        let limit = until.min(self.high_watermark()).min(self.log.next_offset());
        let mut batches = Vec::new();
        if offset < limit && offset >= self.log.log_start_offset() {
            let mut at = offset;
            let mut bytes = 0;
            while at < limit && bytes < FETCH_LOG_BYTES_MAX {
                let read = self.log.read(at, FETCH_LOG_BYTES_MAX - bytes).await?;
                let Some(last) = read.last() else { break };
                at = last.end_offset();
                for b in read {
                    if b.end_offset() > limit {
                        at = limit;
                        break;
                    }
                    bytes += b.payload.len();
                    batches.push(b);
                }
            }
        }
        Ok(ReplicaMessage::LogChunk { from: self.id, to: from, offset, batches })
    }

    /// Moves the compaction point up when the window holds more than its budget, keeping what
    /// the slowest live follower still needs when that fits.
    async fn maybe_compact(&mut self) -> Result<(), ConsensusError> {
        let (bytes, applied, point) = {
            let core = self.window.0.borrow();
            (core.bytes, self.committed(&core), core.point.index)
        };
        if bytes <= self.window_bytes_max || applied <= point {
            return Ok(());
        }
        // Drop the oldest half of the window's bytes, not past what is committed.
        let target = {
            let core = self.window.0.borrow();
            let mut dropped = 0;
            let mut to = point;
            for held in &core.entries {
                if held.entry.index > applied || dropped >= core.bytes / 2 {
                    break;
                }
                dropped += held.entry.data.len();
                to = held.entry.index;
            }
            to
        };
        if target <= point {
            return Ok(());
        }
        let conf = self.raw.raft.prs().conf().to_conf_state();
        let point = {
            let mut core = self.window.0.borrow_mut();
            core.compact_to(target, conf);
            core.point.clone()
        };
        self.journal.write(vec![point_record(self.group, &point)], false).await?;
        Ok(())
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The leader as this member knows it.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current term (the partition's leader epoch).
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The members in sync, as the leader sees them: itself, and each voter it heard from
    /// within the election timeout (empty on a follower). Kafka's ISR.
    pub fn in_sync_ids(&self) -> Vec<u64> {
        if !self.is_leader() {
            return Vec::new();
        }
        let window = self.election_tick as u64;
        let mut ids: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id == self.id || self.heard.get(id).is_some_and(|t| self.ticks - t <= window))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether this leader's group is idle enough to hibernate: every voter holds and has
    /// acknowledged everything (so none needs a message), was heard from within the election
    /// timeout, and nothing is proposed, pending or being caught up.
    pub fn quiescent(&self) -> bool {
        if !self.is_leader() || self.gap.is_some() || !self.proposals.is_empty() || self.raw.has_ready() {
            return false;
        }
        let last = self.raw.raft.raft_log.last_index();
        let window = self.election_tick as u64;
        self.raw.raft.raft_log.committed == last
            && self.raw.raft.prs().iter().all(|(id, p)| {
                *id == self.id
                    || (p.matched == last && self.heard.get(id).is_some_and(|t| self.ticks - t <= window))
            })
    }

    /// Whether this follower may stop its election timer on `leader`'s word that it
    /// hibernates in `term`: it follows that leader in that term and holds everything committed.
    pub fn may_sleep(&self, leader: u64, term: u64) -> bool {
        !self.is_leader()
            && self.raw.raft.leader_id == leader
            && self.raw.raft.term == term
            && self.gap.is_none()
            && !self.raw.has_ready()
            && self.raw.raft.raft_log.committed == self.raw.raft.raft_log.last_index()
    }

    /// Whether `advance` has anything to do (`raft` produced something, or the log has a gap
    /// to fetch into).
    pub fn has_work(&self) -> bool {
        self.raw.has_ready() || self.gap.as_ref().is_some_and(|g| g.wanted)
    }

    /// The group's voters' ids, this member included.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.raw.raft.prs().iter().map(|(id, _)| *id).collect()
    }

    /// Whether the log is being fetched from another member after a snapshot (see `Gap`).
    pub fn catching_up(&self) -> bool {
        self.gap.is_some()
    }

    /// The partition's log.
    pub fn log(&self) -> &Log {
        &self.log
    }
}
