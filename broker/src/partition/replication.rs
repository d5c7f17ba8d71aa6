//! A shard's partition groups (issue 14): one [`Replica`] per replicated partition the shard
//! owns on this node, each driven by its own task, and the frames they exchange with the
//! other nodes.
//!
//! A [`Slot`] is the only way to a replica: the produce path queues proposals in it, the shard
//! delivers peers' messages into its inbox, and its driver task is the one code that touches
//! the `Replica` (ticks every [`TICK`], steps, proposes, advances, sends). What the rest of the
//! shard asks often (who leads, the high watermark) the driver copies into cells after each
//! round, so a fetch never waits for the driver.
//!
//! An idle group hibernates (TiKV's idea): a leader whose followers hold and acknowledged
//! everything, and heard from them lately, for [`QUIET_TICKS`] ticks in a row, tells them so and
//! stops ticking; a follower told so stops its election timer. Any message or proposal of the
//! group wakes it, and so does the loss (or return) of a member's node, so a dead leader's
//! followers elect another. An idle partition then costs no timer, no heartbeat and no CPU.
//!
//! Frames travel through shard 0, which holds the node's peer links: a shard hands its
//! outgoing frames to shard 0, and shard 0 hands incoming ones to the shard that owns the
//! group. Leadership changes are reported to the controller (batched on shard 0) so that every
//! node's metadata, and the Kafka clients reading it, learn the new leader.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use rill_net::message::ErrorCode;
use rill_net::peer::{ChunkBatch, Incoming, PeerFrame};
use rill_storage::{Log, Notify, StoredBatch};

use crate::cluster::metadata::TopicName;
use crate::cluster::metadata_group::{node_of, raft_id};
use crate::cluster::peers::{raft_frame, raft_message};
use crate::cluster::state::NodeId;
use crate::partition::replica::journal::ReplicaJournal;
use crate::partition::replica::{Outcome, Proposal, Proposed, Replica, ReplicaConfig, ReplicaMessage};

/// The partition groups' clock: elections after 10 to 20 ticks without a leader (1 to 2 s),
/// heartbeats every 2 (as the metadata group).
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Ticks a leader's group stays idle before it hibernates.
pub(crate) const QUIET_TICKS: u32 = 20;

/// The Raft group id of a partition: a 64-bit FNV-1a hash of the topic name and partition
/// (never 0, which is the metadata group).
pub(crate) fn group_id(topic: &TopicName, partition: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.as_str().bytes().chain([0xff]).chain(partition.to_le_bytes()) {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

/// A partition group's message as a frame, and the node it goes to.
pub(crate) fn encode(group: u64, message: ReplicaMessage) -> (NodeId, Vec<Bytes>) {
    let to = node_of(message.to());
    let frame = match message {
        ReplicaMessage::Raft(m) => raft_frame(group, m),
        ReplicaMessage::FetchLog { from, to, offset, until } => {
            PeerFrame::FetchLog { group, from, to, offset, until }.encode()
        }
        ReplicaMessage::Hibernate { from, to, term } => {
            PeerFrame::Hibernate { group, from, to, term }.encode()
        }
        ReplicaMessage::LogChunk { from, to, offset, batches } => {
            let meta = batches
                .iter()
                .map(|b| ChunkBatch {
                    base_offset: b.base_offset,
                    record_count: b.record_count,
                    first_timestamp_ms: b.first_timestamp_ms,
                    max_timestamp_ms: b.max_timestamp_ms,
                    leader_epoch: b.leader_epoch,
                    raft_index: b.raft_index,
                })
                .collect();
            let parts: Vec<Bytes> = batches.into_iter().map(|b| b.payload).collect();
            let lens = parts.iter().map(|p| u32::try_from(p.len()).expect("a batch fits u32")).collect();
            PeerFrame::LogChunk { group, from, to, offset, batches: meta, parts: lens }.encode_with(parts)
        }
    };
    (to, frame)
}

/// A partition group's frame from node `peer`: the group and the message, if the frame is one
/// and its sender is the peer.
pub(crate) fn decode(peer: NodeId, incoming: Incoming) -> Result<(u64, ReplicaMessage), String> {
    let Incoming { frame, parts } = incoming;
    let (group, message) = match frame {
        PeerFrame::Raft { group, message, .. } if group != 0 => {
            (group, ReplicaMessage::Raft(raft_message(&message, parts)?))
        }
        PeerFrame::FetchLog { group, from, to, offset, until } => {
            (group, ReplicaMessage::FetchLog { from, to, offset, until })
        }
        PeerFrame::Hibernate { group, from, to, term } => {
            (group, ReplicaMessage::Hibernate { from, to, term })
        }
        PeerFrame::LogChunk { group, from, to, offset, batches, .. } => {
            if batches.len() != parts.len() {
                return Err(format!("{} batches with {} payload parts", batches.len(), parts.len()));
            }
            let batches = batches
                .into_iter()
                .zip(parts)
                .map(|(b, payload)| StoredBatch {
                    base_offset: b.base_offset,
                    record_count: b.record_count,
                    first_timestamp_ms: b.first_timestamp_ms,
                    max_timestamp_ms: b.max_timestamp_ms,
                    append_time_ms: b.max_timestamp_ms,
                    leader_epoch: b.leader_epoch,
                    raft_index: b.raft_index,
                    payload,
                })
                .collect();
            (group, ReplicaMessage::LogChunk { from, to, offset, batches })
        }
        other => return Err(format!("not a partition group's frame: {other:?}")),
    };
    if message.from() != raft_id(peer) {
        return Err(format!("node {peer} sent a message claiming Raft id {}", message.from()));
    }
    Ok((group, message))
}

/// A produce waiting for its batch's fate.
struct Waiter {
    /// Answer once the leader's own log has it (acks=1), instead of once committed.
    leader_only: bool,
    reply: LocalSender<Result<u64, ErrorCode>>,
}

/// A proposal queued for the driver.
struct Queued {
    proposal: Proposal,
    leader_only: bool,
    /// Told the proposal's index and predicted base offset (or why it was refused).
    proposed: LocalSender<Result<Proposed, ErrorCode>>,
    reply: LocalSender<Result<u64, ErrorCode>>,
}

/// What a produce gets back from [`Slot::propose`].
pub(crate) struct Pending {
    /// The proposal's place, once the driver proposed it.
    pub proposed: LocalReceiver<Result<Proposed, ErrorCode>>,
    /// Its base offset once the acks asked for are met.
    pub reply: LocalReceiver<Result<u64, ErrorCode>>,
}

/// One replicated partition on this shard (see the module documentation).
pub(crate) struct Slot {
    pub topic: TopicName,
    pub partition: u32,
    pub group: u64,
    replica: RefCell<Option<Replica>>,
    inbox: RefCell<Vec<ReplicaMessage>>,
    queued: RefCell<VecDeque<Queued>>,
    waiters: RefCell<BTreeMap<u64, (Proposed, Waiter)>>,
    wake: Notify,
    /// Hibernating: no ticks until something wakes the group.
    asleep: Cell<bool>,
    /// Consecutive ticks the leader found the group quiescent.
    quiet_ticks: Cell<u32>,
    /// The group's members' nodes (a change in one of their links wakes the group).
    members: RefCell<Vec<NodeId>>,
    stopped: Cell<bool>,
    /// The driver has ended (it no longer holds the replica).
    done: Cell<bool>,
    finished: Notify,
    /// The group failed (its storage); the partition is offline.
    failed: Cell<bool>,
    leading: Cell<bool>,
    term: Cell<u64>,
    high_watermark: Cell<u64>,
    in_sync: Cell<usize>,
    /// The in-sync replicas last reported (while leading).
    reported_isr: RefCell<Vec<NodeId>>,
    /// Fired when the high watermark moves (long-polling fetches wait on it).
    pub advanced: Notify,
    log: Log,
}

impl Slot {
    /// Whether this node's replica leads (as of the driver's last round).
    pub fn leading(&self) -> bool {
        self.leading.get() && !self.failed.get()
    }

    /// The high watermark: no consumer reads at or above it.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.get()
    }

    /// Replicas the leader heard from within the election timeout, itself included.
    pub fn in_sync(&self) -> usize {
        self.in_sync.get()
    }

    /// The partition's log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Whether the group stopped on a storage failure.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Queues a record batch for the group. `leader_only`: answer once the leader's log holds
    /// it (acks=1) rather than once a majority does.
    pub fn propose(&self, proposal: Proposal, leader_only: bool) -> Pending {
        let (proposed_tx, proposed) = local_channel::new_bounded(1);
        let (reply_tx, reply) = local_channel::new_bounded(1);
        self.queued.borrow_mut().push_back(Queued {
            proposal,
            leader_only,
            proposed: proposed_tx,
            reply: reply_tx,
        });
        self.asleep.set(false);
        self.wake.notify_all();
        Pending { proposed, reply }
    }

    /// Waits until the driver has ended.
    pub async fn wait_done(&self) {
        while !self.done.get() {
            let finished = self.finished.changed();
            if self.done.get() {
                break;
            }
            finished.await;
        }
    }

    /// Takes a message for this replica.
    pub fn deliver(&self, message: ReplicaMessage) {
        // A hibernating group is not woken by what needs no answer: the word to hibernate, and
        // the answers to the heartbeats it sent before it slept (they are stepped when
        // something else wakes it).
        let quiet = match &message {
            ReplicaMessage::Hibernate { .. } => true,
            ReplicaMessage::Raft(m) => m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse,
            _ => false,
        };
        self.inbox.borrow_mut().push(message);
        if !(quiet && self.asleep.get()) {
            self.asleep.set(false);
            self.wake.notify_all();
        }
    }

    /// Wakes a hibernating group if `node` holds one of its replicas (its link to this node
    /// was lost or came back: a dead leader's followers must elect another, a returning
    /// follower must be brought up to date).
    pub fn node_changed(&self, node: NodeId) {
        if self.asleep.get() && self.members.borrow().contains(&node) {
            self.asleep.set(false);
            self.wake.notify_all();
        }
    }

    /// Whether the group hibernates.
    pub fn asleep(&self) -> bool {
        self.asleep.get()
    }

    /// Stops the driver (the partition is closed or gone).
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify_all();
    }
}

/// What the driver needs from its shard.
pub(crate) trait SlotHost: 'static {
    /// Sends frames to other nodes (through shard 0).
    fn send_frames(self: &Rc<Self>, frames: Vec<(NodeId, Vec<Bytes>)>);
    /// This replica leads the partition in `term` with these in-sync replicas (it became leader,
    /// or the set changed): tell the controller.
    fn report_leader(self: &Rc<Self>, topic: TopicName, partition: u32, term: u64, isr: Vec<NodeId>);
    /// The group failed on its storage: the partition goes offline.
    fn group_failed(self: &Rc<Self>, topic: &TopicName, partition: u32, reason: String);
    /// This node's id.
    fn node(&self) -> NodeId;
}

/// The shard's partition groups.
#[derive(Default)]
pub(crate) struct Replication {
    journal: RefCell<Option<ReplicaJournal>>,
    slots: RefCell<HashMap<(TopicName, u32), Rc<Slot>>>,
    by_group: RefCell<HashMap<u64, Rc<Slot>>>,
}

impl Replication {
    /// The slot of a replicated partition this shard owns.
    /// On every produce, fetch and ListOffsets: no allocation, and nothing but an emptiness
    /// check where no partition is replicated (a single node).
    pub fn slot(&self, topic: &TopicName, partition: u32) -> Option<Rc<Slot>> {
        let by_group = self.by_group.borrow();
        if by_group.is_empty() {
            return None;
        }
        by_group
            .get(&group_id(topic, partition))
            .filter(|s| s.partition == partition && s.topic == *topic)
            .cloned()
    }

    /// The slot of group `group`.
    pub fn by_group(&self, group: u64) -> Option<Rc<Slot>> {
        self.by_group.borrow().get(&group).cloned()
    }

    /// Opens the replica of `topic`/`partition` over `log` and starts its driver.
    #[allow(clippy::too_many_arguments)]
    pub async fn open<H: SlotHost>(
        &self,
        host: &Rc<H>,
        journal_path: std::path::PathBuf,
        topic: TopicName,
        partition: u32,
        log: Log,
        voters: &[NodeId],
    ) -> Result<Rc<Slot>, String> {
        if self.journal.borrow().is_none() {
            let (journal, _) = ReplicaJournal::open(rill_storage::Disk::Direct, journal_path)
                .await
                .map_err(|e| format!("opening the partition groups' journal: {e}"))?;
            if self.journal.borrow().is_none() {
                *self.journal.borrow_mut() = Some(journal);
            }
        }
        let journal = self.journal.borrow().clone().expect("opened above");
        let group = group_id(&topic, partition);
        let recovered = journal.group_state(group);
        let config = ReplicaConfig::new(raft_id(host.node()), group);
        let voters: Vec<u64> = voters.iter().map(|n| raft_id(*n)).collect();
        let replica = Replica::open(&config, log.clone(), journal, recovered, &voters)
            .await
            .map_err(|e| format!("opening the partition's raft group: {e}"))?;
        let slot = Rc::new(Slot {
            topic: topic.clone(),
            partition,
            group,
            high_watermark: Cell::new(replica.high_watermark()),
            replica: RefCell::new(Some(replica)),
            inbox: RefCell::default(),
            queued: RefCell::default(),
            waiters: RefCell::default(),
            wake: Notify::default(),
            asleep: Cell::new(false),
            quiet_ticks: Cell::new(0),
            members: RefCell::new(voters.iter().map(|v| node_of(*v)).collect()),
            stopped: Cell::new(false),
            done: Cell::new(false),
            finished: Notify::default(),
            failed: Cell::new(false),
            leading: Cell::new(false),
            term: Cell::new(0),
            in_sync: Cell::new(0),
            reported_isr: RefCell::default(),
            advanced: Notify::default(),
            log,
        });
        if let Some(old) = self.slots.borrow_mut().insert((topic, partition), slot.clone()) {
            old.stop();
        }
        self.by_group.borrow_mut().insert(group, slot.clone());
        glommio::spawn_local(drive(slot.clone(), Rc::downgrade(host))).detach();
        Ok(slot)
    }

    /// Stops a partition's replica (its log is being closed); returns its slot.
    pub fn close(&self, topic: &TopicName, partition: u32) -> Option<Rc<Slot>> {
        let slot = self.slots.borrow_mut().remove(&(topic.clone(), partition))?;
        self.by_group.borrow_mut().remove(&slot.group);
        slot.stop();
        Some(slot)
    }

    /// Stops a partition's replica and waits until its driver has let go of it (and of the
    /// log), so that the partition can be closed and opened again (a reconfiguration) without
    /// two replicas of one group running at once.
    pub async fn close_and_wait(&self, topic: &TopicName, partition: u32) {
        if let Some(slot) = self.close(topic, partition) {
            slot.wait_done().await;
        }
    }

    /// Stops a deleted partition's replica and forgets its group's state, so that a partition
    /// created later under the same name starts a new group.
    pub async fn forget(&self, topic: &TopicName, partition: u32) {
        self.close_and_wait(topic, partition).await;
        let group = group_id(topic, partition);

        let journal = self.journal.borrow().clone();
        if let Some(journal) = journal
            && let Err(error) = journal.forget(group).await
        {
            tracing::error!(%topic, partition, %error, "forgetting a deleted partition's raft state");
        }
    }

    /// Wakes the hibernating groups `node` holds a replica of (its link changed).
    pub fn node_changed(&self, node: NodeId) {
        for slot in self.slots.borrow().values() {
            slot.node_changed(node);
        }
    }

    /// Groups on this shard, and how many of them hibernate.
    pub fn counts(&self) -> (usize, usize) {
        let slots = self.slots.borrow();
        (slots.len(), slots.values().filter(|s| s.asleep()).count())
    }

    /// Stops every replica and waits for their drivers (shutdown, before the logs close).
    pub async fn close_all(&self) {
        let slots: Vec<Rc<Slot>> = self.slots.borrow_mut().drain().map(|(_, s)| s).collect();
        self.by_group.borrow_mut().clear();
        for slot in &slots {
            slot.stop();
        }
        for slot in slots {
            slot.wait_done().await;
        }
    }
}

/// The driver of one replica: the only code that touches it.
async fn drive<H: SlotHost>(slot: Rc<Slot>, host: Weak<H>) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let woken = slot.wake.changed();
        if slot.stopped.get() {
            break;
        }
        let idle = slot.inbox.borrow().is_empty() && slot.queued.borrow().is_empty();
        if idle && slot.asleep.get() {
            woken.await;
            // Ticks resume from now, not from before the sleep.
            next_tick = next_tick.max(Instant::now() + TICK);
            continue;
        }
        let now = Instant::now();
        if idle && now < next_tick {
            futures_lite::future::or(woken, glommio::timer::sleep(next_tick - now)).await;
            continue;
        }
        drop(woken);
        let Some(host) = host.upgrade() else { break };
        let Some(mut replica) = slot.replica.borrow_mut().take() else { break };
        let result = round(&slot, &host, &mut replica, &mut next_tick).await;
        if let Err(reason) = result {
            tracing::error!(topic = %slot.topic, partition = slot.partition, %reason,
                "partition group stopped; the partition is offline until the next start");
            slot.failed.set(true);
            fail_waiters(&slot, ErrorCode::StorageError);
            host.group_failed(&slot.topic, slot.partition, reason);
            break;
        }
        slot.replica.borrow_mut().replace(replica);
    }
    fail_waiters(&slot, ErrorCode::NotLeaderOrFollower);
    slot.done.set(true);
    slot.finished.notify_all();
}

fn fail_waiters(slot: &Slot, code: ErrorCode) {
    for q in slot.queued.borrow_mut().drain(..) {
        let _ = q.proposed.try_send(Err(code));
        let _ = q.reply.try_send(Err(code));
    }
    for (_, (_, w)) in std::mem::take(&mut *slot.waiters.borrow_mut()) {
        let _ = w.reply.try_send(Err(code));
    }
}

/// Answers the produces waiting on these proposals.
fn answer(slot: &Slot, appended: Vec<(u64, u64)>, outcomes: Vec<(Proposed, Outcome)>) {
    let mut waiters = slot.waiters.borrow_mut();
    for (index, base) in appended {
        if waiters.get(&index).is_some_and(|(_, w)| w.leader_only) {
            let (_, w) = waiters.remove(&index).expect("checked");
            let _ = w.reply.try_send(Ok(base));
        }
    }
    for (proposed, outcome) in outcomes {
        let Some((_, w)) = waiters.remove(&proposed.index) else { continue };
        let answer = match outcome {
            Outcome::Committed { base_offset } => Ok(base_offset),
            Outcome::Lost => Err(ErrorCode::NotLeaderOrFollower),
            Outcome::Unknown => Err(ErrorCode::Timeout),
        };
        let _ = w.reply.try_send(answer);
    }
}

/// One round of a driver: tick if due, step the inbox, propose the queue, advance, send, and
/// answer the produces whose batches reached their acks.
async fn round<H: SlotHost>(
    slot: &Rc<Slot>,
    host: &Rc<H>,
    replica: &mut Replica,
    next_tick: &mut Instant,
) -> Result<(), String> {
    let mut ticked = false;
    if Instant::now() >= *next_tick {
        replica.tick();
        *next_tick = Instant::now() + TICK;
        ticked = true;
    }
    let mut replies = Vec::new();
    // A leader's word that it hibernates, checked once this round's steps are persisted.
    let mut hibernate = None;
    let inbox = std::mem::take(&mut *slot.inbox.borrow_mut());
    for message in inbox {
        match message {
            ReplicaMessage::Raft(m) => replica.step(m),
            ReplicaMessage::FetchLog { from, offset, until, .. } => {
                replies.push(replica.serve_fetch(from, offset, until).await.map_err(|e| e.to_string())?);
            }
            ReplicaMessage::LogChunk { offset, batches, .. } => {
                replica.on_log_chunk(offset, batches).await.map_err(|e| e.to_string())?;
            }
            ReplicaMessage::Hibernate { from, term, .. } => hibernate = Some((from, term)),
        }
    }
    answer(slot, Vec::new(), replica.outcomes_now());
    let queued: Vec<Queued> = slot.queued.borrow_mut().drain(..).collect();
    for q in queued {
        match replica.propose(&q.proposal) {
            Ok(proposed) => {
                let _ = q.proposed.try_send(Ok(proposed));
                let waiter = Waiter { leader_only: q.leader_only, reply: q.reply };
                slot.waiters.borrow_mut().insert(proposed.index, (proposed, waiter));
            }
            Err(_) => {
                let _ = q.proposed.try_send(Err(ErrorCode::NotLeaderOrFollower));
                let _ = q.reply.try_send(Err(ErrorCode::NotLeaderOrFollower));
            }
        }
    }
    // Most rounds of an idle group are a tick that produced nothing to persist or send.
    let output = if replica.has_work() {
        replica.advance().await.map_err(|e| e.to_string())?
    } else {
        Default::default()
    };
    let sent_raft = !output.messages.is_empty();
    if let Some((from, term)) = hibernate
        && replica.may_sleep(from, term)
        && slot.inbox.borrow().is_empty()
        && !sent_raft
    {
        slot.asleep.set(true);
    }
    let mut frames: Vec<(NodeId, Vec<Bytes>)> =
        output.messages.into_iter().chain(replies).map(|m| encode(slot.group, m)).collect();
    frames.retain(|(to, _)| *to != host.node());
    if !frames.is_empty() {
        host.send_frames(frames);
    }
    answer(slot, output.appended, output.outcomes);
    let was_leading = slot.leading.get();
    let term_before = slot.term.get();
    slot.leading.set(replica.is_leader());
    slot.term.set(replica.term());
    let isr: Vec<NodeId> = replica.in_sync_ids().into_iter().map(node_of).collect();
    slot.in_sync.set(isr.len());
    let hw = replica.high_watermark();
    if slot.high_watermark.replace(hw) != hw {
        slot.advanced.notify_all();
    }
    if replica.is_leader() {
        let changed = *slot.reported_isr.borrow() != isr;
        if !was_leading || term_before != replica.term() || changed {
            *slot.reported_isr.borrow_mut() = isr.clone();
            host.report_leader(slot.topic.clone(), slot.partition, replica.term(), isr);
        }
    }
    // A leader whose group stayed quiescent for a while hibernates, and tells its followers.
    if replica.is_leader() && ticked {
        if replica.quiescent() && slot.queued.borrow().is_empty() && slot.inbox.borrow().is_empty() {
            slot.quiet_ticks.set(slot.quiet_ticks.get() + 1);
        } else {
            slot.quiet_ticks.set(0);
        }
        // Not in a round that sent a heartbeat: its answers would only wake the group again.
        if slot.quiet_ticks.get() >= QUIET_TICKS && !sent_raft {
            slot.quiet_ticks.set(0);
            slot.asleep.set(true);
            let (from, term) = (replica.id(), replica.term());
            let frames: Vec<_> = replica
                .voter_ids()
                .into_iter()
                .filter(|id| *id != from)
                .map(|to| encode(slot.group, ReplicaMessage::Hibernate { from, to, term }))
                .collect();
            host.send_frames(frames);
        }
    } else if !replica.is_leader() {
        slot.quiet_ticks.set(0);
    }
    if was_leading && !replica.is_leader() {
        // Produces waiting here will not be answered by this member as leader: what it
        // proposed may still commit under the new leader, which the client learns by retrying
        // (an idempotent producer's retry is recognised).
        slot.advanced.notify_all();
    }
    Ok(())
}
