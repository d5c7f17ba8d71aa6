//! The metadata Raft group's driver on the controller shard (shard 0) of every node.
//!
//! One task owns the [`Group`] and is the only code that touches it: it ticks it every
//! [`TICK`], feeds it the peers' messages and the local proposals queued by
//! [`MetadataGroup::propose`], persists and applies through `advance`, queues the outgoing
//! messages for the transport, and after every applied change has the node's shards adopt the
//! new view ([`GroupHost::adopt`]) before it answers the proposals that made it. The rest of
//! the shard reads the published state ([`MetadataGroup::state`], [`MetadataGroup::leader`]).
//!
//! Raft ids are node ids plus one (Raft reserves 0; Kafka broker ids start at 0).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalSender};
use rill_net::message::ErrorCode;
use rill_storage::Notify;

use crate::cluster::consensus::{Applied, Group, ProposalId, ProposeError, RaftMessage};
use crate::cluster::metadata::Metadata;
use crate::cluster::state::{ClusterState, Command, NodeId, NodeInfo, Refusal};

/// The metadata group's clock: elections after 10 to 20 ticks without a leader (1 to 2 s),
/// heartbeats every 2.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// How long a proposal waits to commit (a minority side of a partition never commits).
pub(crate) const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The Raft id of a node.
pub(crate) fn raft_id(node: NodeId) -> u64 {
    node as u64 + 1
}

/// The node of a Raft id.
pub(crate) fn node_of(raft_id: u64) -> NodeId {
    (raft_id - 1) as NodeId
}

type Reply = Result<(), Refusal>;

/// What the driver proposes: a state change, or a change of the group's voters.
enum Proposal {
    Command(Command),
    Membership { node: NodeId, add: bool },
}

/// What the driver needs from the shard it runs on.
pub(crate) trait GroupHost: 'static {
    /// Has every shard of this node adopt `view` (opening and removing logs) and persists it
    /// as the node's `metadata.toml`; returns once done.
    async fn adopt(self: Rc<Self>, view: Metadata);
}

/// The driver's shared side (see the module documentation).
pub(crate) struct MetadataGroup {
    node: NodeId,
    /// What this node announces about itself (registered when the state differs).
    pub(crate) announce: NodeInfo,
    state: RefCell<Rc<ClusterState>>,
    leader: Cell<Option<NodeId>>,
    term: Cell<u64>,
    /// The group's voters as last applied.
    voters: RefCell<Vec<NodeId>>,
    /// This node leads and its published state is the latest (see `Group::leads_caught_up`).
    caught_up: Cell<bool>,
    /// Signalled after every pass of the driver.
    passed: Notify,
    proposals: RefCell<VecDeque<(Proposal, Option<LocalSender<Reply>>)>>,
    inbox: RefCell<Vec<RaftMessage>>,
    outbox: RefCell<Vec<RaftMessage>>,
    /// Wakes the driver: a proposal or a message arrived, or the group stops.
    wake: Notify,
    /// Signalled when the outbox has messages.
    sent: Notify,
    stopped: Cell<bool>,
    /// Where the other shards read the controller's id (-1: none).
    controller: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl MetadataGroup {
    pub(crate) fn new(
        node: NodeId,
        announce: NodeInfo,
        state: ClusterState,
        controller: std::sync::Arc<std::sync::atomic::AtomicI64>,
    ) -> Rc<MetadataGroup> {
        Rc::new(MetadataGroup {
            controller,
            node,
            announce,
            state: RefCell::new(Rc::new(state)),
            leader: Cell::new(None),
            term: Cell::new(0),
            voters: RefCell::new(Vec::new()),
            caught_up: Cell::new(false),
            passed: Notify::default(),
            proposals: RefCell::new(VecDeque::new()),
            inbox: RefCell::new(Vec::new()),
            outbox: RefCell::new(Vec::new()),
            wake: Notify::default(),
            sent: Notify::default(),
            stopped: Cell::new(false),
        })
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// The cluster state as last applied on this node.
    pub(crate) fn state(&self) -> Rc<ClusterState> {
        self.state.borrow().clone()
    }

    /// The group's voters as last applied here.
    pub(crate) fn voters(&self) -> Vec<NodeId> {
        self.voters.borrow().clone()
    }

    /// The controller (the group's leader) as this node knows it.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.leader.get()
    }

    /// The group's term as this node knows it (it grows with every election).
    #[expect(dead_code, reason = "the cluster transport wiring uses it; single nodes do not")]
    pub(crate) fn term(&self) -> u64 {
        self.term.get()
    }

    /// Waits (up to `timeout`) until this node leads with the latest state; false if another
    /// node leads, none does in time, or the group stopped.
    pub(crate) async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let passed = self.passed.changed();
            if self.caught_up.get() {
                return true;
            }
            let now = Instant::now();
            let elsewhere = self.leader.get().is_some_and(|l| l != self.node);
            if self.stopped.get() || elsewhere || now >= deadline {
                return false;
            }
            futures_lite::future::or(passed, glommio::timer::sleep(deadline - now)).await;
        }
    }

    /// Proposes `command` and waits until it is committed and applied here (every shard of this
    /// node has adopted the result). Only the leader proposes; others get `NotController`.
    pub(crate) async fn propose(&self, command: Command) -> Reply {
        if self.stopped.get() {
            return Err((ErrorCode::ShuttingDown, "the metadata group is stopped".into()));
        }
        self.submit(Proposal::Command(command)).await
    }

    /// Adds (`add`) or removes node `node` as a voter of the group, and waits until the change
    /// is applied here.
    pub(crate) async fn propose_membership(&self, node: NodeId, add: bool) -> Reply {
        if self.stopped.get() {
            return Err((ErrorCode::ShuttingDown, "the metadata group is stopped".into()));
        }
        self.submit(Proposal::Membership { node, add }).await
    }

    async fn submit(&self, proposal: Proposal) -> Reply {
        let (tx, rx) = local_channel::new_bounded(1);
        self.proposals.borrow_mut().push_back((proposal, Some(tx)));
        self.wake.notify_all();
        // The driver answers within PROPOSAL_TIMEOUT of taking it, or once every shard adopted it.
        rx.recv().await.unwrap_or(Err((ErrorCode::NotController, "the metadata group stopped".into())))
    }

    /// Hands the group a message from a peer.
    pub(crate) fn receive(&self, message: RaftMessage) {
        self.inbox.borrow_mut().push(message);
        self.wake.notify_all();
    }

    /// Takes the messages waiting to be sent, waiting for some if there are none.
    pub(crate) async fn outgoing(&self) -> Vec<RaftMessage> {
        loop {
            let changed = self.sent.changed();
            let messages = std::mem::take(&mut *self.outbox.borrow_mut());
            if !messages.is_empty() || self.stopped.get() {
                return messages;
            }
            changed.await;
        }
    }

    /// Whether the driver has stopped.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Stops the driver; waiting proposals fail.
    pub(crate) fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify_all();
        self.sent.notify_all();
        self.passed.notify_all();
    }

    /// The driver loop; returns when stopped or when the group fails (its disk is unknown).
    pub(crate) async fn run<H: GroupHost>(
        self: Rc<Self>,
        mut group: Group<ClusterState>,
        host: Rc<H>,
        mut adopted: Metadata,
    ) {
        let mut waiters: BTreeMap<ProposalId, (Instant, LocalSender<Reply>)> = BTreeMap::new();
        if group.voters() == [raft_id(self.node)] {
            group.campaign();
        }
        let mut next_tick = Instant::now() + TICK;
        // A proposal made by the loop itself, or the first pass: advance without waiting.
        let mut busy = true;
        // The first pass looks at the replayed state even if nothing new was applied.
        let mut first = true;
        while !self.stopped.get() {
            let changed = self.wake.changed();
            let idle = !busy && self.inbox.borrow().is_empty() && self.proposals.borrow().is_empty();
            busy = false;
            let now = Instant::now();
            if idle && now < next_tick {
                let sleep = glommio::timer::sleep(next_tick - now);
                futures_lite::future::or(changed, sleep).await;
            }
            if Instant::now() >= next_tick {
                group.tick();
                next_tick = Instant::now() + TICK;
            }
            for message in std::mem::take(&mut *self.inbox.borrow_mut()) {
                group.step(message);
            }
            for (proposal, reply) in std::mem::take(&mut *self.proposals.borrow_mut()) {
                let proposed = match proposal {
                    Proposal::Command(command) => group.propose(command.encode()),
                    Proposal::Membership { node, add } => group.propose_membership(raft_id(node), add),
                };
                match proposed {
                    Ok(id) => {
                        if let Some(reply) = reply {
                            waiters.insert(id, (Instant::now() + PROPOSAL_TIMEOUT, reply));
                        }
                    }
                    Err(e) => {
                        let why = match e {
                            ProposeError::NotLeader { leader } => {
                                format!(
                                    "node {} is not the controller (controller: {:?})",
                                    self.node,
                                    leader.map(node_of)
                                )
                            }
                            ProposeError::Dropped => "the controller refused the proposal; retry".into(),
                        };
                        if let Some(reply) = reply {
                            let _ = reply.try_send(Err((ErrorCode::NotController, why)));
                        }
                    }
                }
            }
            let output = match group.advance().await {
                Ok(output) => output,
                Err(error) => {
                    tracing::error!(%error, "the metadata group failed; this node stops taking metadata changes");
                    self.stopped.set(true);
                    break;
                }
            };
            if !output.messages.is_empty() {
                self.outbox.borrow_mut().extend(output.messages);
                self.sent.notify_all();
            }
            let mut replies = Vec::new();
            let mut changed = false;
            for applied in output.applied {
                match applied {
                    Applied::Command { proposal, outcome, .. } => {
                        changed |= outcome.is_ok();
                        if let Some((_, waiter)) = proposal.and_then(|p| waiters.remove(&p)) {
                            replies.push((waiter, outcome));
                        }
                    }
                    Applied::Membership { proposal, voters, .. } => {
                        tracing::info!(voters = ?voters.iter().map(|v| node_of(*v)).collect::<Vec<_>>(), "metadata group voters changed");
                        changed = true;
                        if let Some((_, waiter)) = proposal.and_then(|p| waiters.remove(&p)) {
                            replies.push((waiter, Ok(())));
                        }
                    }
                    Applied::Restored { .. } => changed = true,
                }
            }
            let leader = group.leader().map(node_of);
            if leader != self.leader.get() {
                tracing::info!(node = self.node, controller = ?leader, term = group.term(), "metadata group leader changed");
                if leader != Some(self.node) {
                    for (_, (_, waiter)) in std::mem::take(&mut waiters) {
                        let _ = waiter.try_send(Err((
                            ErrorCode::NotController,
                            "the controller changed; retry".into(),
                        )));
                    }
                }
                self.leader.set(leader);
                self.controller.store(leader.map_or(-1, i64::from), std::sync::atomic::Ordering::Relaxed);
            }
            self.term.set(group.term());
            if changed || first {
                first = false;
                let state = group.machine().clone();
                *self.state.borrow_mut() = Rc::new(state);
            }
            // The node adopts the group's view once the group has caught up with the view the
            // shards opened at start-up (a replaying group, a follower the leader has not yet
            // reached, must never make the node drop a topic it has).
            if group.applied() > adopted.applied_index {
                let mut view = self.state.borrow().local_view(self.node);
                view.applied_index = group.applied();
                if !view.same_placement(&adopted) {
                    host.clone().adopt(view.clone()).await;
                }
                adopted = view;
            }
            for (waiter, outcome) in replies {
                let _ = waiter.try_send(outcome);
            }
            // Proposals not committed in time (a leader without its quorum) fail; one committed
            // later is still applied, as Kafka's controller does after a timeout.
            let now = Instant::now();
            let expired: Vec<ProposalId> =
                waiters.iter().filter(|(_, (d, _))| *d <= now).map(|(id, _)| *id).collect();
            for id in expired {
                if let Some((_, waiter)) = waiters.remove(&id) {
                    let _ = waiter.try_send(Err((
                        ErrorCode::Timeout,
                        "the metadata change did not commit in time".into(),
                    )));
                }
            }
            *self.voters.borrow_mut() = group.voters().iter().map(|v| node_of(*v)).collect();
            self.caught_up.set(group.leads_caught_up());
            self.passed.notify_all();
        }
        for (_, (_, waiter)) in waiters {
            let _ = waiter.try_send(Err((ErrorCode::ShuttingDown, "the metadata group stopped".into())));
        }
        for (_, reply) in std::mem::take(&mut *self.proposals.borrow_mut()) {
            if let Some(reply) = reply {
                let _ = reply.try_send(Err((ErrorCode::ShuttingDown, "the metadata group stopped".into())));
            }
        }
        self.caught_up.set(false);
        self.sent.notify_all();
        self.passed.notify_all();
    }
}
