//! Consumer groups: Kafka's classic group protocol and committed offsets, on the group's
//! coordinator shard.
//!
//! A group lives on shard `crc32c(group id) % shards`; requests for it arriving on any shard
//! travel there over the mesh. A group moves through Kafka's states: `Empty` → (a join)
//! `PreparingRebalance` → (every known member has rejoined, or the rebalance timeout removed the
//! rest) `CompletingRebalance` → (the leader's SyncGroup hands out the assignment) `Stable`, and
//! back to `PreparingRebalance` on any join, leave or session expiry. Parked JoinGroup and
//! SyncGroup requests are answered when the state moves. Generation, member and state checks
//! answer ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and REBALANCE_IN_PROGRESS where Kafka does.
//!
//! Committed offsets go to the shard's internal log (`<data>/groups/shard-<n>`), one RecordBatch
//! v2 per commit whose records map `group, topic, partition` to offset, leader epoch, commit time
//! and metadata; the latest record per key wins when the log is replayed at start. A commit is
//! acknowledged once durable.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalSender};
use rill_net::kafka::code;
use rill_net::record_batch::{self, BatchBuilder, Record};
use rill_storage::{Batch, Log};

/// Kafka error codes of the group protocol.
/// Kafka's `offsets.retention.minutes` and `offsets.retention.check.interval.ms`, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetsRetention {
    /// How long a group without members keeps its committed offsets.
    pub retention_ms: u64,
    /// How often expired offsets are looked for.
    pub check_interval_ms: u64,
}

impl Default for OffsetsRetention {
    fn default() -> OffsetsRetention {
        OffsetsRetention { retention_ms: 7 * 24 * 3_600_000, check_interval_ms: 600_000 }
    }
}

pub(crate) mod errors {
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}
use errors::*;

/// Session timeouts a member may ask for (Kafka's group.min/max.session.timeout.ms).
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<i32> = 1_000..=1_800_000;
/// How long a new group waits for more members before its first rebalance completes
/// (Kafka's group.initial.rebalance.delay.ms, shortened).
const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);
/// Members per group and groups per shard: a misbehaving client gets errors, not memory growth.
pub(crate) const MEMBERS_PER_GROUP_MAX: usize = 1_000;
pub(crate) const GROUPS_PER_SHARD_MAX: usize = 10_000;
/// Longest an Empty group without offsets is kept (shorter with a shorter offset retention).
const DEAD_GROUP_GRACE_MS: i64 = 60_000;
/// Bytes of protocol metadata or assignment one member may hand in.
pub(crate) const MEMBER_BLOB_BYTES_MAX: usize = 1 << 20;

/// The shard that coordinates `group`.
pub(crate) fn coordinator_shard(group: &str, shards: usize) -> usize {
    crc32c::crc32c(group.as_bytes()) as usize % shards.max(1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// What a parked JoinGroup gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a parked SyncGroup gets: an error code and the member's assignment.
pub(crate) type SyncResult = (i16, Bytes);

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<LocalSender<JoinResult>>,
    sync_waiter: Option<LocalSender<SyncResult>>,
    last_seen: Instant,
    /// Order of first join (the earliest member leads).
    joined: u64,
}

pub(crate) struct Group {
    pub id: String,
    pub phase: Phase,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, oldest first; at most
    /// `MEMBERS_PER_GROUP_MAX` (a join storm forgets the oldest, whose joins then get
    /// UNKNOWN_MEMBER_ID and start over).
    pending: std::collections::VecDeque<String>,
    rebalance_deadline: Instant,
    /// A group that was empty waits until then for more members before completing a join.
    initial_delay_until: Instant,
    /// When the group last became Empty (wall clock, ms): its offsets expire a retention after.
    pub empty_since_ms: i64,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            phase: Phase::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: std::collections::VecDeque::new(),
            rebalance_deadline: Instant::now(),
            initial_delay_until: Instant::now(),
            empty_since_ms: now_ms(),
        }
    }

    /// Starts (or keeps) a rebalance: members must rejoin by the deadline.
    fn prepare_rebalance(&mut self, delay: Duration) {
        if self.phase == Phase::CompletingRebalance {
            // Members waiting for the old generation's assignment must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.try_send((REBALANCE_IN_PROGRESS, Bytes::new()));
                }
            }
        }
        if self.phase != Phase::PreparingRebalance {
            let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
            self.rebalance_deadline = Instant::now() + timeout.max(delay);
            self.initial_delay_until = Instant::now() + delay;
            self.phase = Phase::PreparingRebalance;
        }
    }

    /// Completes the join phase if every member has rejoined (or `force`, at the deadline,
    /// removing those that did not).
    fn try_complete_join(&mut self, force: bool) {
        if self.phase != Phase::PreparingRebalance {
            return;
        }
        let all_in = self.members.values().all(|m| m.join_waiter.is_some());
        if !all_in && !force {
            return;
        }
        if !force && Instant::now() < self.initial_delay_until {
            // A group that was empty waits a moment for the rest of its members.
            return;
        }
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.empty_since_ms = now_ms();
            self.protocol.clear();
            self.leader.clear();
            return;
        }
        self.protocol = self.choose_protocol();
        if !self.members.contains_key(&self.leader) {
            self.leader =
                self.members.values().min_by_key(|m| m.joined).map(|m| m.id.clone()).unwrap_or_default();
        }
        self.phase = Phase::CompletingRebalance;
        let everyone: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), metadata_for(m, &self.protocol)))
            .collect();
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.try_send(JoinResult {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: self.leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == self.leader { everyone.clone() } else { Vec::new() },
                });
            }
        }
    }

    /// The first protocol of the leader-to-be (earliest member) that every member supports.
    fn choose_protocol(&self) -> String {
        let first = self.members.values().min_by_key(|m| m.joined).expect("members");
        first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .cloned()
            .unwrap_or_default()
    }

    /// After members left or expired: an emptied group becomes Empty (a new generation), the
    /// others rebalance. Returns whether a rebalance started (its completion wants scheduling).
    fn after_departures(&mut self) -> bool {
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.empty_since_ms = now_ms();
            self.generation += 1;
            self.leader.clear();
            return false;
        }
        self.prepare_rebalance(Duration::ZERO);
        self.try_complete_join(false);
        true
    }

    fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut m) = self.members.remove(id) else { return false };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.try_send(JoinResult { error: UNKNOWN_MEMBER_ID, ..JoinResult::default() });
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.try_send((UNKNOWN_MEMBER_ID, Bytes::new()));
        }
        true
    }
}

fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// A group's committed offsets by (topic, partition).
pub(crate) type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// One JoinGroup, decoded.
pub(crate) struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id gets one with MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// Permits of the offsets-log gate: a write takes one, compaction takes them all.
const GATE_PERMITS: u64 = 1 << 16;
/// The offsets log is rewritten with only the latest commit per key once it is larger than
/// this and four times what those commits need.
const COMPACT_BYTES_MIN: u64 = 16 << 20;

/// The groups and committed offsets a shard coordinates.
pub(crate) struct Coordinator {
    pub groups: RefCell<HashMap<String, Group>>,
    pub offsets: RefCell<HashMap<String, GroupOffsets>>,
    log: RefCell<Option<Log>>,
    /// Where the log lives and how it is opened (for compaction's swap).
    place: RefCell<Option<(std::path::PathBuf, rill_storage::LogConfig)>>,
    gate: Rc<glommio::sync::Semaphore>,
    compacting: Cell<bool>,
    pub compact_bytes_min: Cell<u64>,
    next_join: Cell<u64>,
    /// When the offsets log was opened (wall clock, ms): group state is not persisted, so after
    /// a start offset expiry counts from no earlier than this.
    opened_ms: Cell<i64>,
}

impl Default for Coordinator {
    fn default() -> Coordinator {
        Coordinator {
            groups: RefCell::default(),
            offsets: RefCell::default(),
            log: RefCell::default(),
            place: RefCell::default(),
            gate: Rc::new(glommio::sync::Semaphore::new(GATE_PERMITS)),
            compacting: Cell::new(false),
            compact_bytes_min: Cell::new(COMPACT_BYTES_MIN),
            next_join: Cell::new(0),
            opened_ms: Cell::new(now_ms()),
        }
    }
}

impl Coordinator {
    /// Opens (or creates) the shard's offsets log and replays it; returns the entries it holds
    /// for groups this shard does not coordinate (the shard count changed), for their owners.
    pub async fn open(
        &self,
        log: Log,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(String, String, i32, Committed)>, rill_storage::Error> {
        // Latest per key wins for foreign groups too: a deletion cancels an earlier commit.
        let mut foreign: BTreeMap<(String, String, i32), Option<Committed>> = BTreeMap::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let batches = log.read(offset, 8 << 20).await?;
            let Some(last) = batches.last() else { break };
            offset = last.end_offset();
            for batch in batches {
                let Ok(records) = record_batch::decode_records(&batch.payload) else {
                    tracing::warn!(offset = batch.base_offset, "skipping an undecodable group-offsets batch");
                    continue;
                };
                for (_, record) in records {
                    let Some((group, topic, partition)) = record.key.as_deref().and_then(decode_key) else {
                        continue;
                    };
                    let value = record.value.as_deref().and_then(decode_value);
                    if coordinator_shard(&group, shards) != shard {
                        foreign.insert((group, topic, partition), value);
                        continue;
                    }
                    let mut offsets = self.offsets.borrow_mut();
                    match value {
                        Some(c) => {
                            offsets.entry(group).or_default().insert((topic, partition), c);
                        }
                        None => {
                            if let Some(g) = offsets.get_mut(&group) {
                                g.remove(&(topic, partition));
                            }
                        }
                    }
                }
            }
        }
        // Groups whose every offset was deleted are gone, not listed with none.
        self.offsets.borrow_mut().retain(|_, m| !m.is_empty());
        self.opened_ms.set(now_ms());
        *self.log.borrow_mut() = Some(log);
        Ok(foreign.into_iter().filter_map(|((g, t, p), c)| c.map(|c| (g, t, p, c))).collect())
    }

    /// Whether the offsets log was opened and not closed: commits can be written, or will be
    /// once a compaction that has it closed for the swap ends (writers wait at the gate).
    pub fn is_open(&self) -> bool {
        self.log.borrow().is_some() || self.place.borrow().is_some()
    }

    pub async fn close(&self) {
        self.place.borrow_mut().take();
        let log = self.log.borrow_mut().take();
        if let Some(log) = log {
            let _ = log.close().await;
        }
    }

    /// Adopts entries another shard replayed for groups this shard now coordinates (newer wins)
    /// and writes them to this shard's log.
    pub async fn restore(self: &Rc<Self>, entries: Vec<(String, String, i32, Committed)>) -> Result<(), i16> {
        let mut newer = Vec::new();
        {
            let offsets = self.offsets.borrow();
            for (g, t, p, c) in entries {
                let current = offsets.get(&g).and_then(|m| m.get(&(t.clone(), p)));
                if current.is_none_or(|cur| cur.commit_ms < c.commit_ms) {
                    newer.push((g, t, p, c));
                }
            }
        }
        for chunk in newer.chunks(1000) {
            self.persist(chunk).await?;
        }
        Ok(())
    }

    /// Writes commits durably, then makes them visible.
    pub async fn persist(self: &Rc<Self>, entries: &[(String, String, i32, Committed)]) -> Result<(), i16> {
        if entries.is_empty() {
            return Ok(());
        }
        let permit = self.gate.acquire_permit(1).await.map_err(|_| code::KAFKA_STORAGE_ERROR)?;
        let log = self.log.borrow().clone().ok_or(code::KAFKA_STORAGE_ERROR)?;
        let batch = commit_batch(entries).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
        log.append(batch).await.map_err(|e| {
            tracing::error!(%e, "writing committed offsets failed");
            code::KAFKA_STORAGE_ERROR
        })?;
        {
            let mut offsets = self.offsets.borrow_mut();
            for (g, t, p, c) in entries {
                offsets.entry(g.clone()).or_default().insert((t.clone(), *p), c.clone());
            }
        }
        drop(permit);
        self.maybe_compact();
        Ok(())
    }

    /// JoinGroup: waits until the rebalance completes (or fails fast).
    pub async fn join(self: &Rc<Self>, r: JoinRequest) -> JoinResult {
        let fail = |error: i16| JoinResult { error, ..JoinResult::default() };
        if r.group.is_empty() {
            return fail(INVALID_GROUP_ID);
        }
        if !SESSION_TIMEOUT_MS.contains(&r.session_timeout_ms) {
            return fail(INVALID_SESSION_TIMEOUT);
        }
        if r.protocols.is_empty()
            || r.protocol_type.is_empty()
            || r.protocols.iter().map(|(_, m)| m.len()).sum::<usize>() > MEMBER_BLOB_BYTES_MAX
        {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        let (tx, rx) = local_channel::new_bounded(1);
        {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&r.group) && groups.len() >= GROUPS_PER_SHARD_MAX {
                return fail(GROUP_MAX_SIZE_REACHED);
            }
            let group = groups.entry(r.group.clone()).or_insert_with(|| Group::new(&r.group));
            if group.phase != Phase::Empty
                && !group.protocol_type.is_empty()
                && group.protocol_type != r.protocol_type
            {
                return fail(INCONSISTENT_GROUP_PROTOCOL);
            }
            let mut member_id = r.member_id.clone();
            // Static members keep their identity across restarts (KIP-345): a join without a
            // member id is a new instance and replaces the one holding the instance id (which
            // is fenced); a join with another member id than the holder's is the fenced one.
            if let Some(holder) = r.instance_id.as_deref().and_then(|i| group.static_member(i)) {
                if member_id.is_empty() {
                    member_id = format!("{}-{:016x}", r.client_id, rand_id());
                    group.replace_static_member(&holder, &member_id);
                } else if member_id != holder {
                    return JoinResult { error: FENCED_INSTANCE_ID, member_id, ..JoinResult::default() };
                }
            }
            if member_id.is_empty() {
                let id = format!("{}-{:016x}", r.client_id, rand_id());
                if r.require_known_member_id && r.instance_id.is_none() {
                    if group.pending.len() >= MEMBERS_PER_GROUP_MAX {
                        group.pending.pop_front();
                    }
                    group.pending.push_back(id.clone());
                    return JoinResult { error: MEMBER_ID_REQUIRED, member_id: id, ..JoinResult::default() };
                }
                member_id = id;
            } else if !group.members.contains_key(&member_id) && !take_pending(&mut group.pending, &member_id)
            {
                return JoinResult { error: UNKNOWN_MEMBER_ID, member_id, ..JoinResult::default() };
            }
            if !group.members.contains_key(&member_id) && group.members.len() >= MEMBERS_PER_GROUP_MAX {
                return fail(GROUP_MAX_SIZE_REACHED);
            }
            let joined = self.next_join.get();
            self.next_join.set(joined + 1);
            let changed = group.members.get(&member_id).is_none_or(|m| m.protocols != r.protocols);
            let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: r.instance_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                last_seen: Instant::now(),
                joined,
            });
            member.session_timeout = Duration::from_millis(r.session_timeout_ms as u64);
            member.rebalance_timeout =
                Duration::from_millis(r.rebalance_timeout_ms.max(r.session_timeout_ms) as u64);
            member.protocols = r.protocols.clone();
            member.last_seen = Instant::now();
            if let Some(old) = member.join_waiter.replace(tx) {
                let _ = old.try_send(JoinResult { error: UNKNOWN_MEMBER_ID, ..JoinResult::default() });
            }
            group.protocol_type = r.protocol_type.clone();
            let is_leader = group.leader == member_id;
            match group.phase {
                Phase::Stable if !changed && !is_leader => {
                    // A follower rejoining with the same metadata in a stable group: answer
                    // with the current generation (Kafka does the same).
                    let w = group.members.get_mut(&member_id).and_then(|m| m.join_waiter.take());
                    let result = JoinResult {
                        error: 0,
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        leader: group.leader.clone(),
                        member_id: member_id.clone(),
                        members: Vec::new(),
                    };
                    drop(w);
                    return result;
                }
                Phase::Empty => group.prepare_rebalance(INITIAL_REBALANCE_DELAY),
                _ => group.prepare_rebalance(Duration::ZERO),
            }
            group.try_complete_join(false);
        }
        self.schedule_completion(&r.group);
        rx.recv().await.unwrap_or(JoinResult { error: REBALANCE_IN_PROGRESS, ..JoinResult::default() })
    }

    /// Completes the group's join phase once its initial delay has passed (if everyone is in),
    /// and at its deadline in any case (removing members that did not rejoin).
    fn schedule_completion(self: &Rc<Self>, group: &str) {
        let (delay_until, deadline) = match self.groups.borrow().get(group) {
            Some(g) if g.phase == Phase::PreparingRebalance => (g.initial_delay_until, g.rebalance_deadline),
            _ => return,
        };
        let (me, group) = (Rc::downgrade(self), group.to_string());
        glommio::spawn_local(async move {
            for (at, force) in [(delay_until, false), (deadline, true)] {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                let Some(me) = me.upgrade() else { return };
                let mut groups = me.groups.borrow_mut();
                let Some(g) = groups.get_mut(&group) else { return };
                if g.phase != Phase::PreparingRebalance {
                    return;
                }
                if !force || Instant::now() >= g.rebalance_deadline {
                    g.try_complete_join(force);
                }
            }
        })
        .detach();
    }

    /// SyncGroup: the leader hands out assignments; everyone gets theirs.
    pub async fn sync(
        &self,
        group: &str,
        generation: i32,
        member: (&str, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let (member_id, instance) = member;
        let (tx, rx) = local_channel::new_bounded(1);
        {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group) else { return (UNKNOWN_MEMBER_ID, Bytes::new()) };
            if g.is_fenced(instance, member_id) {
                return (FENCED_INSTANCE_ID, Bytes::new());
            }
            if !g.members.contains_key(member_id) {
                return (UNKNOWN_MEMBER_ID, Bytes::new());
            }
            if generation != g.generation {
                return (ILLEGAL_GENERATION, Bytes::new());
            }
            match g.phase {
                Phase::Empty => return (UNKNOWN_MEMBER_ID, Bytes::new()),
                Phase::PreparingRebalance => return (REBALANCE_IN_PROGRESS, Bytes::new()),
                Phase::Stable => {
                    let m = g.members.get_mut(member_id).expect("checked");
                    m.last_seen = Instant::now();
                    return (0, m.assignment.clone());
                }
                Phase::CompletingRebalance => {}
            }
            let m = g.members.get_mut(member_id).expect("checked");
            m.last_seen = Instant::now();
            m.sync_waiter = Some(tx);
            if member_id == g.leader {
                if assignments.iter().map(|(_, a)| a.len()).sum::<usize>() > MEMBER_BLOB_BYTES_MAX * 8 {
                    return (INCONSISTENT_GROUP_PROTOCOL, Bytes::new());
                }
                let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                g.phase = Phase::Stable;
                for m in g.members.values_mut() {
                    m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.try_send((0, m.assignment.clone()));
                    }
                }
            }
        }
        rx.recv().await.unwrap_or((REBALANCE_IN_PROGRESS, Bytes::new()))
    }

    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str, instance: Option<&str>) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else { return UNKNOWN_MEMBER_ID };
        if g.is_fenced(instance, member_id) {
            return FENCED_INSTANCE_ID;
        }
        let Some(m) = g.members.get_mut(member_id) else { return UNKNOWN_MEMBER_ID };
        m.last_seen = Instant::now();
        if g.phase == Phase::PreparingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        if generation != g.generation {
            return ILLEGAL_GENERATION;
        }
        0
    }

    /// LeaveGroup for each (member id, instance id); one error code per member.
    pub fn leave(self: &Rc<Self>, group: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut out = Vec::new();
        let mut rebalance = false;
        {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group) else { return vec![UNKNOWN_MEMBER_ID; members.len()] };
            for (id, instance) in members {
                // A replaced instance leaving (its old member id) must not remove the new one.
                if !id.is_empty() && g.is_fenced(instance.as_deref(), id) {
                    out.push(FENCED_INSTANCE_ID);
                    continue;
                }
                let id = match instance {
                    Some(i) => g.static_member(i),
                    None => Some(id.clone()),
                };
                let removed = id.is_some_and(|id| g.remove_member(&id));
                rebalance |= removed;
                out.push(if removed { 0 } else { UNKNOWN_MEMBER_ID });
            }
            rebalance = rebalance && g.after_departures();
        }
        if rebalance {
            self.schedule_completion(group);
        }
        out
    }

    /// Removes members whose session expired; starts the rebalances that follow.
    pub fn expire_sessions(self: &Rc<Self>) {
        let now = Instant::now();
        let mut touched = Vec::new();
        for g in self.groups.borrow_mut().values_mut() {
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
                .filter(|m| now.duration_since(m.last_seen) > m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            for id in &expired {
                tracing::info!(group = %g.id, member = %id, "session expired");
                g.remove_member(id);
            }
            if g.after_departures() {
                touched.push(g.id.clone());
            }
        }
        for id in touched {
            self.schedule_completion(&id);
        }
    }

    /// Members and committed offsets of every group here, for metrics.
    pub fn gauges(&self) -> Vec<crate::metrics::GroupGauges> {
        let groups = self.groups.borrow();
        let offsets = self.offsets.borrow();
        let mut names: Vec<&String> = groups.keys().chain(offsets.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| crate::metrics::GroupGauges {
                group: name.clone(),
                consumers: groups.get(name).map_or(0, |g| g.members.len() as u64),
                committed: offsets
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|((_, p), c)| *p >= 0 && c.offset >= 0)
                    .map(|((topic, p), c)| (topic.clone(), *p as u32, c.offset))
                    .collect(),
            })
            .collect()
    }

    /// Checks that a commit may be made by this member and generation.
    pub fn check_commit(&self, group: &str, generation: i32, member_id: &str, instance: Option<&str>) -> i16 {
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group) else {
            // A group nobody joined: commits from standalone consumers, within the group cap.
            let offsets = self.offsets.borrow();
            let known = |n: usize| offsets.contains_key(group) || groups.len() + n < GROUPS_PER_SHARD_MAX;
            let full =
                !known(offsets.len()) && !known(offsets.keys().filter(|k| !groups.contains_key(*k)).count());
            return if generation >= 0 {
                ILLEGAL_GENERATION
            } else if full {
                GROUP_MAX_SIZE_REACHED
            } else {
                0
            };
        };
        if g.is_fenced(instance, member_id) {
            return FENCED_INSTANCE_ID;
        }
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() { 0 } else { UNKNOWN_MEMBER_ID };
        }
        if !g.members.contains_key(member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        if g.phase == Phase::CompletingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        if generation != g.generation {
            return ILLEGAL_GENERATION;
        }
        0
    }

    /// Removes a group with no members and its offsets.
    pub async fn delete(self: &Rc<Self>, group: &str) -> i16 {
        let known = self.groups.borrow().contains_key(group) || self.offsets.borrow().contains_key(group);
        if !known {
            return GROUP_ID_NOT_FOUND;
        }
        if self.groups.borrow().get(group).is_some_and(|g| !g.members.is_empty()) {
            return NON_EMPTY_GROUP;
        }
        let keys: Vec<(String, i32)> =
            self.offsets.borrow().get(group).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        if let Err(code) = self.tombstone(group, &keys).await {
            return code;
        }
        self.groups.borrow_mut().remove(group);
        self.offsets.borrow_mut().remove(group);
        0
    }

    /// Writes deletions of `keys` durably, then forgets them.
    pub async fn tombstone(self: &Rc<Self>, group: &str, keys: &[(String, i32)]) -> Result<(), i16> {
        if keys.is_empty() {
            return Ok(());
        }
        let _permit = self.gate.acquire_permit(1).await.map_err(|_| code::KAFKA_STORAGE_ERROR)?;
        self.write_tombstones(group, keys).await
    }

    /// [`Coordinator::tombstone`] for a caller that holds gate permits.
    async fn write_tombstones(self: &Rc<Self>, group: &str, keys: &[(String, i32)]) -> Result<(), i16> {
        self.write_tombstones_of(&[(group.to_string(), keys.to_vec())]).await
    }

    /// Deletions for many groups at once, a batch (and one fsync) per thousand keys.
    pub(crate) async fn write_tombstones_of(
        self: &Rc<Self>,
        deletions: &[(String, Vec<(String, i32)>)],
    ) -> Result<(), i16> {
        let log = self.log.borrow().clone().ok_or(code::KAFKA_STORAGE_ERROR)?;
        let now = now_ms();
        let keys: Vec<(&str, &str, i32)> = deletions
            .iter()
            .flat_map(|(g, keys)| keys.iter().map(move |(t, p)| (g.as_str(), t.as_str(), *p)))
            .collect();
        for chunk in keys.chunks(1000) {
            let records = chunk
                .iter()
                .map(|(g, t, p)| Record {
                    timestamp_ms: now,
                    key: Some(encode_key(g, t, *p)),
                    value: None,
                    headers: vec![],
                })
                .collect();
            let batch = records_batch(records).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
            log.append(batch).await.map_err(|_| code::KAFKA_STORAGE_ERROR)?;
        }
        let mut offsets = self.offsets.borrow_mut();
        for (group, keys) in deletions {
            if let Some(m) = offsets.get_mut(group) {
                for k in keys {
                    m.remove(k);
                }
            }
        }
        Ok(())
    }
}

fn take_pending(pending: &mut std::collections::VecDeque<String>, id: &str) -> bool {
    match pending.iter().position(|p| p == id) {
        Some(at) => {
            pending.remove(at);
            true
        }
        None => false,
    }
}

/// `<dir>.<suffix>` beside `dir`.
/// One batch of commit records.
fn commit_batch(entries: &[(String, String, i32, Committed)]) -> Result<Batch, String> {
    records_batch(
        entries
            .iter()
            .map(|(g, t, p, c)| Record {
                timestamp_ms: c.commit_ms,
                key: Some(encode_key(g, t, *p)),
                value: Some(encode_value(c)),
                headers: Vec::new(),
            })
            .collect(),
    )
}

/// One RecordBatch v2 of `records`, ready to append.
fn records_batch(records: Vec<Record>) -> Result<Batch, String> {
    let mut builder = BatchBuilder::new();
    for r in &records {
        builder.push(r);
    }
    let payload = builder.build();
    let header = record_batch::parse_batch(&payload).map_err(|e| e.to_string())?;
    Ok(Batch {
        payload,
        record_count: header.offset_count(),
        first_timestamp_ms: header.base_timestamp,
        max_timestamp_ms: header.max_timestamp.max(header.base_timestamp),
        leader_epoch: 0,
        base_offset_field: Some(record_batch::BASE_OFFSET_AT),
        known_suffix_crc: None,
        raft_index: 0,
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ now_ms() as u128);
    h.finish()
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(group.len() + topic.len() + 10);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.put_u16(topic.len() as u16);
    b.put_slice(topic.as_bytes());
    b.put_i32(partition);
    b.freeze()
}

fn decode_key(b: &[u8]) -> Option<(String, String, i32)> {
    let take = |b: &mut &[u8]| -> Option<String> {
        let len = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(b.get(2..2 + len)?).ok()?.to_string();
        *b = &b[2 + len..];
        Some(s)
    };
    let mut rest = b;
    let group = take(&mut rest)?;
    let topic = take(&mut rest)?;
    let partition = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    Some((group, topic, partition))
}

fn encode_value(c: &Committed) -> Bytes {
    let mut b = BytesMut::with_capacity(20 + c.metadata.len());
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    b.put_i64(c.commit_ms);
    b.put_slice(c.metadata.as_bytes());
    b.freeze()
}

fn decode_value(b: &[u8]) -> Option<Committed> {
    Some(Committed {
        offset: i64::from_be_bytes(b.get(..8)?.try_into().ok()?),
        leader_epoch: i32::from_be_bytes(b.get(8..12)?.try_into().ok()?),
        commit_ms: i64::from_be_bytes(b.get(12..20)?.try_into().ok()?),
        metadata: String::from_utf8_lossy(b.get(20..)?).into_owned(),
    })
}

mod compaction;
mod expiry;
mod fencing;
pub(crate) mod ops;
#[cfg(test)]
mod tests;
