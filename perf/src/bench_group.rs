//! `rill bench --consumer-group`: the consumers share the partitions as one consumer group
//! (native protocol, Kafka's consumer protocol and range assignor inside the group), commit as
//! they go, and optionally one leaves mid-run so the rebalance time can be reported: from its
//! LeaveGroup until every partition it held has been handed to another member.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rill_net::consumer_protocol::{self as cp, PROTOCOL_TYPE, RANGE};
use rill_net::message::{OffsetSpec, RequestBody, ResponseBody};

use crate::bench::{Counters, fetch_round};
use crate::client::Client;

const SESSION_TIMEOUT_MS: u32 = 10_000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// What the members share: the leaver's partitions and when it left, and the measured rebalance.
#[derive(Default)]
pub(crate) struct Rebalance {
    left_at: Cell<Option<Instant>>,
    orphans: RefCell<HashSet<(String, u32)>>,
    pub took: Cell<Option<Duration>>,
}

impl Rebalance {
    /// A member now owns `partitions`: the leaver's ones it took are no longer orphans.
    fn owned(&self, partitions: &[(String, u32)]) {
        let Some(left) = self.left_at.get() else { return };
        let mut orphans = self.orphans.borrow_mut();
        if orphans.is_empty() {
            return;
        }
        for p in partitions {
            orphans.remove(p);
        }
        if orphans.is_empty() && self.took.get().is_none() {
            self.took.set(Some(left.elapsed()));
        }
    }
}

struct Member {
    id: String,
    generation: i32,
    partitions: Vec<(String, u32)>,
}

async fn join(
    client: &Client,
    group: &str,
    topics: &[String],
    counts: &BTreeMap<String, u32>,
    id: &str,
) -> anyhow::Result<Member> {
    let mut member_id = id.to_string();
    loop {
        let body = RequestBody::JoinGroup {
            group: group.into(),
            member_id: member_id.clone(),
            client_id: "rill-bench".into(),
            session_timeout_ms: SESSION_TIMEOUT_MS,
            protocol_type: PROTOCOL_TYPE.into(),
            protocols: vec![(RANGE.into(), cp::subscription(topics))],
        };
        let ResponseBody::Joined { error, generation, leader, member_id: me, members, .. } =
            client.call(&body, &[]).await?.0
        else {
            anyhow::bail!("unexpected reply to JoinGroup");
        };
        match error {
            0 => {}
            25 => {
                member_id.clear();
                continue;
            }
            27 => continue,
            e => anyhow::bail!("joining {group}: Kafka error {e}"),
        }
        member_id = me;
        let assignments = if member_id == leader {
            cp::range_assign(&members, counts).map_err(anyhow::Error::msg)?
        } else {
            Vec::new()
        };
        let body = RequestBody::SyncGroup {
            group: group.into(),
            generation,
            member_id: member_id.clone(),
            assignments,
        };
        let ResponseBody::Synced { error, assignment } = client.call(&body, &[]).await?.0 else {
            anyhow::bail!("unexpected reply to SyncGroup");
        };
        match error {
            0 => {
                let partitions = cp::assigned_partitions(&assignment).map_err(anyhow::Error::msg)?;
                return Ok(Member { id: member_id, generation, partitions });
            }
            25 => member_id.clear(),
            22 | 27 => {}
            e => anyhow::bail!("syncing {group}: Kafka error {e}"),
        }
    }
}

async fn code(client: &Client, body: &RequestBody) -> anyhow::Result<i16> {
    match client.call(body, &[]).await?.0 {
        ResponseBody::GroupCode { error } => Ok(error),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

/// One group member: joins, consumes its partitions from the committed offsets (or the log
/// end, as the fixed-partition consumers start), commits, heartbeats, rejoins on rebalance;
/// with `leave_at`, leaves then and records what it held.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn member(
    client: Rc<Client>,
    group: String,
    topics: Vec<String>,
    partitions_per_topic: u32,
    counters: Rc<Counters>,
    rebalance: Rc<Rebalance>,
    leave_at: Option<Instant>,
) -> anyhow::Result<()> {
    let counts: BTreeMap<String, u32> = topics.iter().map(|t| (t.clone(), partitions_per_topic)).collect();
    let mut m = join(&client, &group, &topics, &counts, "").await?;
    'generation: loop {
        rebalance.owned(&m.partitions);
        let parts = m.partitions.clone();
        let ResponseBody::Committed { parts } =
            client.call(&RequestBody::FetchOffsets { group: group.clone(), parts }, &[]).await?.0
        else {
            anyhow::bail!("unexpected reply to FetchOffsets");
        };
        let latest: Vec<(String, u32, OffsetSpec)> =
            parts.iter().filter(|p| p.2 < 0).map(|(t, p, _)| (t.clone(), *p, OffsetSpec::Latest)).collect();
        let mut positions: Vec<(String, u32, u64)> =
            parts.iter().filter(|p| p.2 >= 0).map(|(t, p, o)| (t.clone(), *p, *o as u64)).collect();
        if !latest.is_empty()
            && let ResponseBody::Offsets { parts } =
                client.call(&RequestBody::ListOffsets { parts: latest }, &[]).await?.0
        {
            positions.extend(parts.into_iter().map(|(t, p, _, o)| (t, p, o.max(0) as u64)));
        }
        let mut beat = Instant::now();
        let mut turn = 0usize;
        loop {
            if leave_at.is_some_and(|at| Instant::now() >= at) {
                commit(&client, &group, &m, &positions).await?;
                rebalance.orphans.borrow_mut().extend(m.partitions.iter().cloned());
                rebalance.left_at.set(Some(Instant::now()));
                code(&client, &RequestBody::LeaveGroup { group: group.clone(), member_id: m.id.clone() })
                    .await?;
                return Ok(());
            }
            if beat.elapsed() >= HEARTBEAT_EVERY {
                beat = Instant::now();
                commit(&client, &group, &m, &positions).await?;
                let body = RequestBody::Heartbeat {
                    group: group.clone(),
                    generation: m.generation,
                    member_id: m.id.clone(),
                };
                let error = code(&client, &body).await?;
                if error != 0 {
                    let keep = if error == 25 { String::new() } else { m.id.clone() };
                    m = join(&client, &group, &topics, &counts, &keep).await?;
                    continue 'generation;
                }
            }
            if positions.is_empty() {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
            turn += 1;
            fetch_round(&client, &counters, &mut positions, turn).await?;
        }
    }
}

async fn commit(
    client: &Client,
    group: &str,
    m: &Member,
    positions: &[(String, u32, u64)],
) -> anyhow::Result<()> {
    let offsets = positions.iter().map(|(t, p, o)| (t.clone(), *p, *o as i64)).collect();
    let body = RequestBody::CommitOffsets {
        group: group.into(),
        generation: m.generation,
        member_id: m.id.clone(),
        offsets,
    };
    match code(client, &body).await? {
        // A rebalance is under way: the next heartbeat rejoins.
        0 | 22 | 25 | 27 => Ok(()),
        e => anyhow::bail!("committing: Kafka error {e}"),
    }
}
