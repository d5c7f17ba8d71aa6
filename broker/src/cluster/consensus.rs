//! Raft groups on tikv's `raft` crate, driven without I/O of their own.
//!
//! A [`Group`] owns a `RawNode`, its persistent log ([`log`]: a storage `Journal` on the
//! `Disk` seam) and a [`StateMachine`]. Its owner (a shard, or a simulation) feeds it
//! [`Group::tick`]s and peers' messages ([`Group::step`]), proposes commands, and calls
//! [`Group::advance`], which persists what `raft` produced, applies committed entries, and
//! returns the messages to send. Messages are returned only after the state they depend on is
//! durable (Raft's persist-before-send), so a crash at any point loses no vote and no
//! acknowledged entry. The group does no networking and reads no clock: time is ticks, which is
//! what lets the same code run in a seeded simulation with virtual time, a faulty network and
//! the power-loss disk.
//!
//! Pre-vote and check-quorum are on: a node cut off from the others cannot force elections when
//! it comes back, and a leader that loses its quorum steps down.

mod log;
mod logging;

pub(crate) use self::logging::logger;

use std::path::PathBuf;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use rill_storage::Disk;

pub use self::log::Bootstrap;
use self::log::{LogStore, LogWriter};

/// A `raft` message, as peers exchange them.
pub use raft::eraftpb::Message as RaftMessage;

/// What goes wrong in a Raft group. Any of these stops the group: what its disk holds is
/// unknown until it is reopened.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Storage(#[from] rill_storage::Error),
    /// The journal holds records that do not make a Raft log.
    #[error("raft state in {path} is damaged: {reason}")]
    Damaged {
        /// The journal.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `raft` refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine could not restore a snapshot.
    #[error("state machine: {0}")]
    Machine(String),
}

/// The replicated state a group applies committed commands to. Applying must be deterministic:
/// every replica applies the same commands in the same order and must reach the same state.
pub trait StateMachine {
    /// What applying one command produces (handed back to whoever proposed it).
    type Outcome;
    /// Applies the command committed at `index`.
    fn apply(&mut self, index: u64, command: &[u8]) -> Self::Outcome;
    /// An image of the whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's image.
    fn restore(&mut self, image: &[u8]) -> Result<(), String>;
}

/// A group's settings.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This node's id in the group (not 0).
    pub id: u64,
    /// Ticks without a leader's word before a follower starts an election (the timeout is drawn
    /// from `[election_tick, 2 * election_tick)`).
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Seed of the election-timeout generator (`None`: from the OS; tests pass one).
    pub election_seed: Option<u64>,
    /// Applied entries between snapshots (the journal is compacted at each).
    pub compact_every: u64,
}

impl GroupConfig {
    /// Defaults for `id`: 10 ticks to elect, 2 between heartbeats, a snapshot every 1,024
    /// entries.
    pub fn new(id: u64) -> GroupConfig {
        GroupConfig { id, election_tick: 10, heartbeat_tick: 2, election_seed: None, compact_every: 1024 }
    }
}

/// Names one proposal: the node that made it and its sequence number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId {
    /// The proposing node.
    pub node: u64,
    /// Its sequence number on that node.
    pub seq: u64,
}

impl ProposalId {
    fn encode(self) -> Vec<u8> {
        let mut bytes = self.node.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.seq.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<ProposalId> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (node, seq) = bytes.split_at(8);
        Some(ProposalId {
            node: u64::from_le_bytes(node.try_into().ok()?),
            seq: u64::from_le_bytes(seq.try_into().ok()?),
        })
    }
}

/// Something `advance` applied.
#[derive(Debug)]
pub enum Applied<O> {
    /// A command, with its outcome and, if it carried one, its proposal id.
    Command {
        /// The entry's index.
        index: u64,
        /// Who proposed it.
        proposal: Option<ProposalId>,
        /// What applying it produced.
        outcome: O,
    },
    /// A membership change; the voters after it.
    Membership {
        /// The entry's index.
        index: u64,
        /// Who proposed it.
        proposal: Option<ProposalId>,
        /// The voters now.
        voters: Vec<u64>,
    },
    /// The state machine was replaced by a snapshot up to `index` (sent by the leader to a
    /// follower too far behind).
    Restored {
        /// The snapshot's index.
        index: u64,
    },
}

/// What one `advance` produced.
#[derive(Debug)]
pub struct Output<O> {
    /// Messages to send, each to `msg.to`; the state they depend on is durable.
    pub messages: Vec<Message>,
    /// What was applied, in log order.
    pub applied: Vec<Applied<O>>,
}

/// Why a proposal was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; the leader as this node knows it.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if this node knows one.
        leader: Option<u64>,
    },
    /// The leader refused it (a leadership transfer in progress, too many uncommitted bytes).
    #[error("proposal dropped")]
    Dropped,
}

/// One member of a Raft group (see the module documentation).
pub struct Group<S: StateMachine> {
    raw: RawNode<LogStore>,
    writer: LogWriter,
    machine: S,
    id: u64,
    applied: u64,
    /// The voters as of `applied`.
    conf: ConfState,
    next_seq: u64,
    compact_every: u64,
    election_tick: usize,
    /// Peers sent a snapshot, with the ticks since: one lost on the way would leave the leader
    /// waiting for it forever, so after two election timeouts it is reported failed and sent
    /// again.
    snapshots_sent: std::collections::BTreeMap<u64, usize>,
}

impl<S: StateMachine> Group<S> {
    /// Opens the group whose journal is at `path` (creating it as `bootstrap` says if it is
    /// empty) and rebuilds `machine` from its snapshot; committed entries above the snapshot
    /// are applied again by the first `advance`.
    pub async fn open(
        disk: Disk,
        path: PathBuf,
        config: &GroupConfig,
        bootstrap: Bootstrap,
        mut machine: S,
    ) -> Result<Group<S>, ConsensusError> {
        let writer = LogWriter::open(disk, path, bootstrap).await?;
        let store = writer.store();
        let snapshot = store.last_snapshot();
        let applied = snapshot.get_metadata().index;
        if applied > 0 {
            machine.restore(&snapshot.data).map_err(ConsensusError::Machine)?;
        }
        let conf = raft::Storage::initial_state(&store)?.conf_state;
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
        let raw = RawNode::new(&raft_config, store, &logging::logger("metadata"))?;
        Ok(Group {
            raw,
            writer,
            machine,
            id: config.id,
            applied,
            conf,
            next_seq: 0,
            compact_every: config.compact_every.max(1),
            election_tick: config.election_tick,
            snapshots_sent: Default::default(),
        })
    }

    /// One tick of the group's clock.
    pub fn tick(&mut self) {
        self.raw.tick();
        if self.snapshots_sent.is_empty() {
            return;
        }
        let limit = 2 * self.election_tick;
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

    /// Takes a message from a peer. Messages from nodes outside the group, or stale ones, are
    /// ignored, as Raft expects of an unreliable network.
    pub fn step(&mut self, message: Message) {
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(node = self.id, error = %e, "raft message ignored");
        }
    }

    /// Starts an election now instead of after the election timeout (a group whose only voter
    /// is this node elects itself at once).
    pub fn campaign(&mut self) {
        if let Err(e) = self.raw.campaign() {
            tracing::debug!(node = self.id, error = %e, "raft campaign refused");
        }
    }

    /// Proposes a command; it is applied, on every member, once committed.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<ProposalId, ProposeError> {
        let id = self.check_leader()?;
        self.raw.propose(id.encode(), command).map_err(|_| ProposeError::Dropped)?;
        Ok(id)
    }

    /// Proposes adding (`add`) or removing a voter.
    pub fn propose_membership(&mut self, node: u64, add: bool) -> Result<ProposalId, ProposeError> {
        let id = self.check_leader()?;
        let change_type = if add {
            raft::eraftpb::ConfChangeType::AddNode
        } else {
            raft::eraftpb::ConfChangeType::RemoveNode
        };
        let change = ConfChange { change_type, node_id: node, ..Default::default() };
        self.raw.propose_conf_change(id.encode(), change).map_err(|_| ProposeError::Dropped)?;
        Ok(id)
    }

    fn check_leader(&mut self) -> Result<ProposalId, ProposeError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader() });
        }
        self.next_seq += 1;
        Ok(ProposalId { node: self.id, seq: self.next_seq })
    }

    /// Persists what `raft` produced, applies committed entries, and returns the messages to
    /// send and what was applied.
    pub async fn advance(&mut self) -> Result<Output<S::Outcome>, ConsensusError> {
        let mut output = Output { messages: Vec::new(), applied: Vec::new() };
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            let mut messages = ready.take_messages();
            let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
            let committed = ready.take_committed_entries();
            self.writer.persist(snapshot.as_ref(), ready.entries(), ready.hs(), ready.must_sync()).await?;
            if let Some(snapshot) = snapshot {
                self.restore(&snapshot, &mut output)?;
            }
            self.apply(committed, &mut output)?;
            messages.extend(ready.take_persisted_messages());
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.writer.set_commit(commit).await?;
            }
            messages.extend(light.take_messages());
            self.apply(light.take_committed_entries(), &mut output)?;
            self.raw.advance_apply_to(self.applied);
            for message in &messages {
                if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                    self.snapshots_sent.insert(message.to, 0);
                }
            }
            output.messages.extend(messages);
        }
        // Compact every `compact_every` entries, and when elections and commit-index updates
        // alone have grown the journal.
        let entries_due = self.applied >= self.raw.store().snapshot_index() + self.compact_every;
        let records_due = self.writer.records_since_rewrite() >= 4 * self.compact_every;
        let wanted = self.raw.store().take_snapshot_wanted();
        if self.applied > 0 && (entries_due || records_due || wanted) {
            self.compact().await?;
        }
        Ok(output)
    }

    fn restore(
        &mut self,
        snapshot: &Snapshot,
        output: &mut Output<S::Outcome>,
    ) -> Result<(), ConsensusError> {
        let meta = snapshot.get_metadata();
        self.machine.restore(&snapshot.data).map_err(ConsensusError::Machine)?;
        self.applied = meta.index;
        self.conf = meta.get_conf_state().clone();
        output.applied.push(Applied::Restored { index: meta.index });
        Ok(())
    }

    fn apply(
        &mut self,
        entries: Vec<raft::eraftpb::Entry>,
        output: &mut Output<S::Outcome>,
    ) -> Result<(), ConsensusError> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            assert_eq!(entry.index, self.applied + 1, "committed entries are applied in order, without gaps");
            self.applied = entry.index;
            let proposal = ProposalId::decode(&entry.context);
            match entry.get_entry_type() {
                // The empty entry a new leader appends to commit its term.
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let outcome = self.machine.apply(entry.index, &entry.data);
                    output.applied.push(Applied::Command { index: entry.index, proposal, outcome });
                }
                EntryType::EntryConfChange => {
                    let change =
                        ConfChange::parse_from_bytes(&entry.data).map_err(raft::Error::CodecError)?;
                    self.conf = self.raw.apply_conf_change(&change)?;
                    output.applied.push(Applied::Membership {
                        index: entry.index,
                        proposal,
                        voters: self.conf.voters.clone(),
                    });
                }
                EntryType::EntryConfChangeV2 => {
                    let change =
                        ConfChangeV2::parse_from_bytes(&entry.data).map_err(raft::Error::CodecError)?;
                    self.conf = self.raw.apply_conf_change(&change)?;
                    output.applied.push(Applied::Membership {
                        index: entry.index,
                        proposal,
                        voters: self.conf.voters.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn compact(&mut self) -> Result<(), ConsensusError> {
        let term = raft::Storage::term(self.raw.store(), self.applied)?;
        let mut snapshot = Snapshot { data: self.machine.snapshot().into(), ..Default::default() };
        let meta = snapshot.mut_metadata();
        meta.index = self.applied;
        meta.term = term;
        meta.set_conf_state(self.conf.clone());
        self.writer.compact(snapshot).await
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The leader as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Whether this node leads and has applied everything committed, including an entry of
    /// its own term: its state machine is then the latest, and checks made against it hold.
    pub fn leads_caught_up(&self) -> bool {
        self.is_leader() && self.raw.raft.commit_to_current_term() && self.applied == self.commit_index()
    }

    /// This node's current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The highest index applied to the state machine.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The voters as of the applied index.
    pub fn voters(&self) -> &[u64] {
        &self.conf.voters
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Bytes of the group's journal on disk.
    pub fn journal_bytes(&self) -> u64 {
        self.writer.journal_bytes()
    }
}
