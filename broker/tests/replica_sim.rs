//! Deterministic simulation of a partition's Raft group (`rill_broker::replica`): three or five
//! members in one thread, each with its own storage `Log` and shard journal on a simulated disk
//! ([`rill_storage::SimDisk`]); virtual time; a network that drops, duplicates, delays,
//! reorders and partitions messages; crashes that cut a member's power at a random file
//! operation (mid-persist, most often) or between steps.
//!
//! The leader of the moment takes batches as a producer with acks=all would send them; a batch
//! counts as acknowledged when its member reports it committed (at its base offset). Readers
//! read each member's log below its high watermark, as consumers would.
//!
//! Checked while the faults run: one leader per term; no member shows a record below its high
//! watermark at an offset where another record was shown before. Checked after the network heals
//! and crashes stop: a new batch commits everywhere; every member's log holds the same batches
//! at the same offsets; every acknowledged batch is there once, at its acknowledged offset; and
//! everything a reader ever saw is still there (no consumer saw a record that disappeared).
//!
//! `RILL_SIM_SEEDS` sets the number of seeds (default 300; `RILL_SLOW=1` runs ten times as
//! many); `RILL_SIM_SEED=N` replays one. A failure prints its seed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_broker::replica::journal::ReplicaJournal;
use rill_broker::replica::{Outcome, Proposal, Proposed, Replica, ReplicaConfig, ReplicaMessage};
use rill_storage::{Clock, Disk, Durability, Log, LogConfig, SimDisk, SystemClock};

const STEPS_PER_TICK: u64 = 4;
const DELAY_MAX: u64 = 7;
const GROUP: u64 = 7;

fn log_config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 8 << 10,
        durability: Durability::Always,
        batch_bytes_max: 4 << 10,
        write_buffer_bytes_max: 64 << 10,
        cache_bytes_max: 16 << 10,
        index_interval_bytes: 512,
        read_chunk_bytes: 8 << 10,
        read_ahead_chunks: 1,
        group_commit_window_us: 0,
        ..LogConfig::default()
    }
}

struct Member {
    id: u64,
    disk: SimDisk,
    replica: Option<Replica>,
    restart_at: u64,
    incarnation: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    crashes: u64,
    crashes_mid_persist: u64,
    installs: u64,
    terms: u64,
    partitions: u64,
    acked: u64,
    lost_proposals: u64,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: u64,
    members: Vec<Member>,
    voters: Vec<u64>,
    in_flight: BTreeMap<(u64, u64), ReplicaMessage>,
    sent: u64,
    side: Vec<u8>,
    drop_per_mille: u32,
    duplicate_per_mille: u32,
    leaders: BTreeMap<u64, u64>,
    /// Proposals not yet known committed or lost: (member, proposal, payload).
    waiting: Vec<(usize, Proposed, Bytes, u32)>,
    /// Acknowledged batches: payload -> base offset.
    acked: BTreeMap<Bytes, u64>,
    /// Batches reported lost (another entry took their place): they must not be in the log.
    lost: Vec<Bytes>,
    /// What readers saw below a high watermark: base offset -> payload.
    seen: BTreeMap<u64, Bytes>,
    proposed: u64,
    window_bytes_max: usize,
    stats: Stats,
}

async fn open(seed: u64, m: &Member, voters: &[u64], window_bytes_max: usize) -> Result<Replica, String> {
    let disk = Disk::Simulated(m.disk.clone());
    let clock: Rc<dyn Clock> = Rc::new(SystemClock);
    let dir = PathBuf::from(format!("/sim/node-{}/topic-0", m.id));
    let log = Log::open_on(disk.clone(), &dir, log_config(), clock).await.map_err(|e| format!("log: {e}"))?;
    let path = PathBuf::from(format!("/sim/node-{}/raft/partitions", m.id));
    let (journal, mut groups) =
        ReplicaJournal::open(disk, path).await.map_err(|e| format!("journal: {e}"))?;
    // Compactions (a rewrite of the journal) often, so power cuts land in them too.
    journal.set_compact_after(64);
    let config = ReplicaConfig {
        election_seed: Some(seed.wrapping_mul(1_000_003) ^ (m.id << 32) ^ m.incarnation),
        window_bytes_max,
        ..ReplicaConfig::new(m.id, GROUP)
    };
    Replica::open(&config, log, journal, groups.remove(&GROUP), voters)
        .await
        .map_err(|e| format!("replica: {e}"))
}

fn payload(seed: u64, n: u64, len: usize) -> Bytes {
    let mut bytes = format!("{seed}:{n}:").into_bytes();
    bytes.resize(len.max(bytes.len()), b'.');
    bytes.into()
}

impl Sim {
    fn send(&mut self, messages: Vec<ReplicaMessage>) {
        for message in messages {
            let (from, to) = (message.from() as usize - 1, message.to() as usize - 1);
            if self.side[from] != self.side[to] || self.rng.random_range(0..1000) < self.drop_per_mille {
                continue;
            }
            let copies = if self.rng.random_range(0..1000) < self.duplicate_per_mille { 2 } else { 1 };
            for _ in 0..copies {
                let at = self.now + self.rng.random_range(1..=DELAY_MAX);
                self.sent += 1;
                self.in_flight.insert((at, self.sent), message.clone());
            }
        }
    }

    fn crash(&mut self, i: usize) {
        if std::env::var("RILL_SIM_TRACE").is_ok() {
            eprintln!("t{} crash m{}", self.now, i + 1);
        }
        self.stats.crashes += 1;
        let restart_at = self.now + self.rng.random_range(20..400);
        let m = &mut self.members[i];
        m.disk.cut_now();
        m.replica = None;
        m.restart_at = restart_at;
        self.waiting.retain(|(member, ..)| *member != i);
    }

    /// A failure is only allowed with the power off; it crashes the member.
    fn failed(&mut self, i: usize, what: &str, e: impl std::fmt::Display) {
        assert!(
            !self.members[i].disk.is_powered(),
            "seed {}: member {} failed with power on ({what}): {e}",
            self.seed,
            i + 1
        );
        self.stats.crashes_mid_persist += 1;
        self.crash(i);
    }

    async fn advance(&mut self, i: usize) {
        let Some(replica) = self.members[i].replica.as_mut() else { return };
        let was_installing = replica.catching_up();
        match replica.advance().await {
            Ok(output) => {
                if !was_installing && replica.catching_up() {
                    self.stats.installs += 1;
                }
                self.send(output.messages);
                for (proposed, outcome) in output.outcomes {
                    self.resolved(i, proposed, outcome);
                }
            }
            Err(e) => self.failed(i, "advance", e),
        }
    }

    async fn deliver(&mut self, message: ReplicaMessage) {
        let i = message.to() as usize - 1;
        let Some(replica) = self.members[i].replica.as_mut() else { return };
        match message {
            ReplicaMessage::Raft(m) => {
                replica.step(m);
                // What the step committed is known at once (a leader answers before its next write).
                for (proposed, outcome) in replica.outcomes_now() {
                    self.resolved(i, proposed, outcome);
                }
            }
            ReplicaMessage::FetchLog { from, offset, until, .. } => {
                match replica.serve_fetch(from, offset, until).await {
                    Ok(reply) => self.send(vec![reply]),
                    Err(e) => self.failed(i, "serve fetch", e),
                }
            }
            // Hibernation belongs to the shard's driver, not simulated here.
            ReplicaMessage::Hibernate { .. } => {}
            ReplicaMessage::LogChunk { offset, batches, .. } => {
                if let Err(e) = replica.on_log_chunk(offset, batches).await {
                    self.failed(i, "log chunk", e);
                }
            }
        }
    }

    fn check_leaders(&mut self) {
        for m in &self.members {
            if let Some(r) = m.replica.as_ref().filter(|r| r.is_leader()) {
                let leader = *self.leaders.entry(r.term()).or_insert(m.id);
                assert_eq!(leader, m.id, "seed {}: two leaders in term {}", self.seed, r.term());
            }
        }
    }

    fn resolved(&mut self, i: usize, proposed: Proposed, outcome: Outcome) {
        let seed = self.seed;
        let Some(at) = self.waiting.iter().position(|w| w.0 == i && w.1 == proposed) else { return };
        let (_, _, body, _) = self.waiting.remove(at);
        match outcome {
            Outcome::Lost => {
                self.stats.lost_proposals += 1;
                self.lost.push(body);
            }
            Outcome::Unknown => {}
            Outcome::Committed { base_offset } => {
                if std::env::var("RILL_SIM_TRACE").is_ok() {
                    eprintln!(
                        "t{} ack m{} {:?} at {base_offset}: {:?}",
                        self.now,
                        i + 1,
                        proposed,
                        &body[..6]
                    );
                }
                let before = self.acked.insert(body, base_offset);
                assert!(
                    before.is_none_or(|b| b == base_offset),
                    "seed {seed}: a batch acknowledged at two offsets"
                );
                self.stats.acked += 1;
            }
        }
    }

    /// A reader reads member `i` below its high watermark.
    async fn read(&mut self, i: usize) {
        let seed = self.seed;
        let Some(replica) = self.members[i].replica.as_ref() else { return };
        if replica.catching_up() {
            return;
        }
        let hw = replica.high_watermark();
        let log = replica.log().clone();
        let from = self.rng.random_range(0..=hw);
        let Ok(batches) = log.read(from, 16 << 10).await else { return };
        for b in batches.into_iter().filter(|b| b.end_offset() <= hw) {
            let before = self.seen.insert(b.base_offset, b.payload.clone());
            assert!(
                before.as_ref().is_none_or(|p| *p == b.payload),
                "seed {seed}: member {} shows another batch at {} below its high watermark {hw}",
                i + 1,
                b.base_offset
            );
        }
    }

    async fn step(&mut self, faults: bool) {
        self.now += 1;
        let n = self.members.len();
        if faults && self.rng.random_range(0..1000) < 8 {
            let heal = self.rng.random_range(0..3) == 0;
            self.side.iter_mut().for_each(|s| *s = 0);
            if !heal {
                self.stats.partitions += 1;
                for i in 0..n {
                    self.side[i] = self.rng.random_range(0..2);
                }
            }
        }
        if faults && self.rng.random_range(0..1000) < 3 {
            let i = self.rng.random_range(0..n);
            if self.members[i].replica.is_some() {
                if self.rng.random_range(0..2) == 0 {
                    self.crash(i);
                } else {
                    let disk = &self.members[i].disk;
                    disk.cut_after(disk.ops() + self.rng.random_range(1..12));
                }
            }
        }
        for i in 0..n {
            if self.members[i].replica.is_none() && (self.now >= self.members[i].restart_at || !faults) {
                self.members[i].disk.restart();
                self.members[i].incarnation += 1;
                match open(self.seed, &self.members[i], &self.voters, self.window_bytes_max).await {
                    Ok(r) => self.members[i].replica = Some(r),
                    Err(e) => self.failed(i, "reopen", e),
                }
            }
        }
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let message = entry.remove();
            self.deliver(message).await;
        }
        for i in 0..n {
            if (self.now + i as u64).is_multiple_of(STEPS_PER_TICK)
                && let Some(r) = self.members[i].replica.as_mut()
            {
                r.tick();
            }
        }
        if self.rng.random_range(0..10) < if faults { 4 } else { 1 } {
            let i = self.rng.random_range(0..n);
            if let Some(r) = self.members[i].replica.as_mut().filter(|r| r.is_leader()) {
                self.proposed += 1;
                let len = self.rng.random_range(8..600);
                let count = self.rng.random_range(1..4u32);
                let body = payload(self.seed, self.proposed, len);
                let proposal = Proposal {
                    payload: body.clone(),
                    record_count: count,
                    first_timestamp_ms: self.now as i64,
                    max_timestamp_ms: self.now as i64,
                    base_offset_field: None,
                };
                if let Ok(p) = r.propose(&proposal) {
                    if std::env::var("RILL_SIM_TRACE").is_ok() {
                        eprintln!("t{} propose m{} {:?} {:?}", self.now, i + 1, p, &body[..6]);
                    }
                    self.waiting.push((i, p, body, count));
                }
            }
        }
        for i in 0..n {
            self.advance(i).await;
        }
        self.check_leaders();
        if self.rng.random_range(0..4) == 0 {
            let i = self.rng.random_range(0..n);
            self.read(i).await;
        }
    }
}

/// Every batch of a member's log.
async fn contents(log: &Log) -> Vec<(u64, Bytes, u32)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let batches = log.read(at, 64 << 10).await.unwrap();
        let Some(last) = batches.last() else { break };
        at = last.end_offset();
        out.extend(batches.into_iter().map(|b| (b.base_offset, b.payload, b.record_count)));
    }
    out
}

async fn run_seed(seed: u64) -> Stats {
    struct Report(u64);
    impl Drop for Report {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("replica simulation failed with seed {0}; replay with RILL_SIM_SEED={0}", self.0);
            }
        }
    }
    let _report = Report(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let n: u64 = if rng.random_range(0..4) == 0 { 5 } else { 3 };
    let voters: Vec<u64> = (1..=n).collect();
    // A small window in some seeds, so that lagging members are sent snapshots and fetch logs.
    let window_bytes_max = if rng.random_range(0..2) == 0 { 2 << 10 } else { 1 << 20 };
    let drop_per_mille = rng.random_range(0..150);
    let duplicate_per_mille = rng.random_range(0..100);
    let mut members = Vec::new();
    for id in 1..=n {
        let mut m = Member {
            id,
            disk: SimDisk::new(seed ^ (id << 40)),
            replica: None,
            restart_at: 0,
            incarnation: 0,
        };
        m.replica = Some(open(seed, &m, &voters, window_bytes_max).await.unwrap());
        members.push(m);
    }
    let mut sim = Sim {
        seed,
        rng,
        now: 0,
        members,
        voters,
        in_flight: BTreeMap::new(),
        sent: 0,
        side: vec![0; n as usize],
        drop_per_mille,
        duplicate_per_mille,
        leaders: BTreeMap::new(),
        lost: Vec::new(),
        waiting: Vec::new(),
        acked: BTreeMap::new(),
        seen: BTreeMap::new(),
        proposed: 0,
        window_bytes_max,
        stats: Stats::default(),
    };
    for _ in 0..1200 {
        sim.step(true).await;
    }
    // Heal, then a marker batch must commit on every member and every log must agree.
    sim.side.iter_mut().for_each(|s| *s = 0);
    sim.drop_per_mille = 0;
    sim.duplicate_per_mille = 0;
    // Each attempt has its own marker, so that one whose fate is unknown cannot duplicate.
    let markers: Vec<Bytes> = (0..200).map(|k| payload(seed, u64::MAX - k, 24)).collect();
    let mut attempt = 0;
    let mut converged = false;
    for step in 0..6000 {
        sim.step(false).await;
        let acked_marker = markers.iter().find_map(|m| sim.acked.get(m).copied());
        if step % 40 == 0 && acked_marker.is_none() && !sim.waiting.iter().any(|w| markers.contains(&w.2)) {
            let marker = markers[attempt.min(markers.len() - 1)].clone();
            attempt += 1;
            for (i, m) in sim.members.iter_mut().enumerate() {
                if let Some(r) = m.replica.as_mut().filter(|r| r.is_leader()) {
                    let proposal = Proposal {
                        payload: marker.clone(),
                        record_count: 1,
                        first_timestamp_ms: 0,
                        max_timestamp_ms: 0,
                        base_offset_field: None,
                    };
                    if let Ok(p) = r.propose(&proposal) {
                        sim.waiting.push((i, p, marker.clone(), 1));
                    }
                }
            }
        }
        if let Some(at) = acked_marker {
            let all = sim.members.iter().all(|m| {
                m.replica.as_ref().is_some_and(|r| {
                    !r.catching_up() && r.high_watermark() > at && r.log().next_offset() == r.high_watermark()
                })
            });
            let hws: Vec<u64> =
                sim.members.iter().filter_map(|m| m.replica.as_ref()).map(|r| r.high_watermark()).collect();
            if all && hws.iter().all(|h| *h == hws[0]) && sim.in_flight.is_empty() {
                converged = true;
                break;
            }
        }
    }
    let states: Vec<String> = sim
        .members
        .iter()
        .map(|m| match &m.replica {
            Some(r) => format!(
                "{}: term {} leader {:?} commit {} hw {} log end {} installing {}",
                m.id,
                r.term(),
                r.leader(),
                r.commit_index(),
                r.high_watermark(),
                r.log().next_offset(),
                r.catching_up()
            ),
            None => format!("{}: down", m.id),
        })
        .collect();
    assert!(converged, "seed {seed}: the healed group did not converge: {states:#?}");
    let first = contents(sim.members[0].replica.as_ref().unwrap().log()).await;
    for m in &sim.members[1..] {
        let other = contents(m.replica.as_ref().unwrap().log()).await;
        assert!(other == first, "seed {seed}: members 1 and {} hold different logs", m.id);
    }
    let mut at_offset: BTreeMap<u64, &Bytes> = BTreeMap::new();
    let mut expected = first.first().map_or(0, |b| b.0);
    for (base, body, count) in &first {
        assert_eq!(*base, expected, "seed {seed}: offsets are contiguous");
        expected = base + *count as u64;
        at_offset.insert(*base, body);
    }
    let mut bodies: Vec<&Bytes> = first.iter().map(|b| &b.1).collect();
    bodies.sort();
    let before = bodies.len();
    bodies.dedup();

    assert_eq!(before, bodies.len(), "seed {seed}: a batch is in the log twice");
    for (body, at) in &sim.acked {
        assert_eq!(at_offset.get(at), Some(&body), "seed {seed}: acknowledged batch at {at} is not there");
    }
    for body in &sim.lost {
        assert!(!bodies.contains(&body), "seed {seed}: a batch reported lost is in the log");
    }
    for (at, body) in &sim.seen {
        assert_eq!(at_offset.get(at), Some(&body), "seed {seed}: a batch a reader saw at {at} disappeared");
    }
    sim.stats.terms = sim.leaders.len() as u64;
    sim.stats
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("RILL_SIM_SEED").ok().and_then(|v| v.parse().ok()) {
        return vec![seed];
    }
    let count: u64 = std::env::var("RILL_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let count = if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { count * 10 } else { count };
    (0..count).collect()
}

#[test]
fn acknowledged_batches_survive_loss_partitions_and_power_cuts() {
    let seeds = seeds();
    LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let mut total = Stats::default();
            let count = seeds.len();
            for seed in seeds {
                let s = run_seed(seed).await;
                total.crashes += s.crashes;
                total.crashes_mid_persist += s.crashes_mid_persist;
                total.installs += s.installs;
                total.terms += s.terms;
                total.partitions += s.partitions;
                total.acked += s.acked;
                total.lost_proposals += s.lost_proposals;
            }
            eprintln!("{count} seeds: {total:?}");
            if count >= 100 {
                assert!(
                    total.crashes_mid_persist > 0 && total.crashes > total.crashes_mid_persist,
                    "{total:?}"
                );
                assert!(
                    total.installs > 0 && total.partitions > 0 && total.terms > count as u64,
                    "{total:?}"
                );
                assert!(total.acked > 10 * count as u64, "{total:?}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
