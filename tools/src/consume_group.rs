//! `rill consume --group G`: a consumer-group member over the native protocol. It speaks Kafka's
//! consumer protocol inside the group (subscription and assignment bytes, the `range`
//! assignor), so it can share a group with Kafka clients.
//!
//! Loop: join (the leader computes the assignment), sync, read the committed offsets of the
//! assigned partitions (or start at `--from`), then fetch, print, commit and heartbeat until
//! the coordinator asks for a rebalance, which starts the loop again. On exit: commit, leave.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use rill_net::consumer_protocol::{self as cp, PROTOCOL_TYPE, RANGE};
use rill_net::message::{OffsetSpec, RequestBody, ResponseBody};

use crate::client::Client;
use crate::consume::ConsumeArgs;

const SESSION_TIMEOUT_MS: u32 = 10_000;
const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;

struct Membership {
    member_id: String,
    generation: i32,
    partitions: Vec<u32>,
}

fn group_code(client: &mut Client, body: &RequestBody) -> anyhow::Result<i16> {
    match client.call(body, &[])?.0 {
        ResponseBody::GroupCode { error } => Ok(error),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Joins (or rejoins) and syncs; returns this member's partitions of `topic`.
fn join(client: &mut Client, group: &str, topic: &str, member_id: &str) -> anyhow::Result<Membership> {
    let subscription = cp::subscription(&[topic.to_string()]);
    let mut member_id = member_id.to_string();
    loop {
        let body = RequestBody::JoinGroup {
            group: group.to_string(),
            member_id: member_id.clone(),
            client_id: "rill-consume".into(),
            session_timeout_ms: SESSION_TIMEOUT_MS,
            protocol_type: PROTOCOL_TYPE.into(),
            protocols: vec![(RANGE.into(), subscription.clone())],
        };
        let ResponseBody::Joined { error, generation, leader, member_id: me, members, .. } =
            client.call(&body, &[])?.0
        else {
            bail!("unexpected reply to JoinGroup");
        };
        match error {
            0 => {}
            UNKNOWN_MEMBER_ID => {
                member_id.clear();
                continue;
            }
            REBALANCE_IN_PROGRESS => continue,
            e => bail!("joining group {group}: Kafka error {e}"),
        }
        member_id = me;
        let assignments = if member_id == leader {
            let mut counts = BTreeMap::new();
            for t in cp::all_topics(&members).map_err(anyhow::Error::msg)? {
                let n = crate::topic::partition_count(client, &t)?;
                counts.insert(t, n);
            }
            cp::range_assign(&members, &counts).map_err(anyhow::Error::msg)?
        } else {
            Vec::new()
        };
        let body = RequestBody::SyncGroup {
            group: group.to_string(),
            generation,
            member_id: member_id.clone(),
            assignments,
        };
        let ResponseBody::Synced { error, assignment } = client.call(&body, &[])?.0 else {
            bail!("unexpected reply to SyncGroup");
        };
        match error {
            0 => {}
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => continue,
            UNKNOWN_MEMBER_ID => {
                member_id.clear();
                continue;
            }
            e => bail!("syncing group {group}: Kafka error {e}"),
        }
        let partitions = cp::assigned_partitions(&assignment)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p)
            .collect();
        return Ok(Membership { member_id, generation, partitions });
    }
}

/// Runs `rill consume --group`.
pub fn run(
    broker: &str,
    args: &ConsumeArgs,
    group: &str,
    json: bool,
    start: OffsetSpec,
) -> anyhow::Result<()> {
    let mut client = Client::connect(broker)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut member = join(&mut client, group, &args.topic, "")?;
    let mut quiet_rounds = 0;
    let mut turn = 0usize;
    'member: loop {
        // Start each assigned partition at the group's commit, else at --from.
        let parts = member.partitions.iter().map(|p| (args.topic.clone(), *p)).collect();
        let ResponseBody::Committed { parts } =
            client.call(&RequestBody::FetchOffsets { group: group.into(), parts }, &[])?.0
        else {
            bail!("unexpected reply to FetchOffsets");
        };
        let mut position: BTreeMap<u32, u64> = BTreeMap::new();
        let missing: Vec<u32> = parts.iter().filter(|(_, _, o)| *o < 0).map(|(_, p, _)| *p).collect();
        let fallback = crate::consume::list_offsets(&mut client, &args.topic, &missing, start)?;
        let latest = crate::consume::list_offsets(&mut client, &args.topic, &missing, OffsetSpec::Latest)?;
        for (_, p, o) in parts {
            let at = if o >= 0 {
                o
            } else if fallback[&p] >= 0 {
                fallback[&p]
            } else {
                latest[&p]
            };
            position.insert(p, at as u64);
        }
        loop {
            if args.max_messages.is_some_and(|m| printed >= m) || (!args.follow && quiet_rounds >= 2) {
                break 'member;
            }
            let error = group_code(
                &mut client,
                &RequestBody::Heartbeat {
                    group: group.into(),
                    generation: member.generation,
                    member_id: member.member_id.clone(),
                },
            )?;
            if error != 0 {
                let keep = if error == UNKNOWN_MEMBER_ID { String::new() } else { member.member_id.clone() };
                member = join(&mut client, group, &args.topic, &keep)?;
                continue 'member;
            }
            if position.is_empty() {
                quiet_rounds += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
                continue;
            }
            turn += 1;
            let wait = if args.follow { 500 } else { 100 };
            let any = crate::consume::fetch_and_print(
                &mut client,
                args,
                json,
                &mut position,
                turn,
                wait,
                &mut out,
                &mut printed,
            )?;
            out.flush()?;
            quiet_rounds = if any { 0 } else { quiet_rounds + 1 };
            if any {
                commit(&mut client, group, &member, &args.topic, &position)?;
            }
        }
    }
    out.flush()?;
    let leave = RequestBody::LeaveGroup { group: group.into(), member_id: member.member_id.clone() };
    group_code(&mut client, &leave)?;
    Ok(())
}

fn commit(
    client: &mut Client,
    group: &str,
    member: &Membership,
    topic: &str,
    position: &BTreeMap<u32, u64>,
) -> anyhow::Result<()> {
    let offsets = position.iter().map(|(p, o)| (topic.to_string(), *p, *o as i64)).collect();
    let body = RequestBody::CommitOffsets {
        group: group.into(),
        generation: member.generation,
        member_id: member.member_id.clone(),
        offsets,
    };
    match group_code(client, &body)? {
        // A rebalance started: the next heartbeat rejoins; the next owner re-reads from the
        // last good commit (at least once).
        0 | REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => Ok(()),
        e => bail!("committing offsets: Kafka error {e}"),
    }
}
