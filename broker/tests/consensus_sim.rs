//! Deterministic simulation of a Raft group (`rill_broker::consensus`): several members in one
//! thread, virtual time, a network that drops, duplicates, delays, reorders and partitions
//! messages, and crashes that cut each member's power on the simulated disk
//! ([`rill_storage::SimDisk`]) at a random file operation, in the middle of persisting or
//! between steps.
//!
//! Every run checks Raft's safety properties while faults run:
//! - election safety: at most one leader per term;
//! - state machine safety: no two members ever apply different commands at one index, a
//!   restarted member included (it rebuilds from its snapshot and log);
//! - log order: each member applies indexes in increasing order.
//!
//! A third of the seeds start with three voters of five members; the leader adds the other two
//! (Raft membership changes) while the faults run.
//!
//! And, after the network heals and crashes stop, that a leader is elected, a new command
//! commits, and every member holds the same applied sequence, which contains every command any
//! member ever applied (nothing committed was lost).
//!
//! `RILL_SIM_SEEDS` sets the number of seeds (default 2,000; `RILL_SLOW=1` runs ten times as
//! many); `RILL_SIM_SEED=N` replays one. A failure prints its seed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use glommio::LocalExecutorBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_broker::consensus::{Applied, Bootstrap, Group, GroupConfig, RaftMessage, StateMachine};
use rill_storage::{Disk, SimDisk};

/// Records every command it applies; its snapshot is the whole record.
#[derive(Default)]
struct Recorder {
    entries: Vec<(u64, Vec<u8>)>,
}

impl StateMachine for Recorder {
    type Outcome = Vec<u8>;

    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.entries.push((index, command.to_vec()));
        command.to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut image = Vec::new();
        for (index, command) in &self.entries {
            image.extend_from_slice(&index.to_le_bytes());
            image.extend_from_slice(&(command.len() as u32).to_le_bytes());
            image.extend_from_slice(command);
        }
        image
    }

    fn restore(&mut self, mut image: &[u8]) -> Result<(), String> {
        self.entries.clear();
        while !image.is_empty() {
            if image.len() < 12 {
                return Err("truncated snapshot".into());
            }
            let index = u64::from_le_bytes(image[..8].try_into().unwrap());
            let len = u32::from_le_bytes(image[8..12].try_into().unwrap()) as usize;
            let command = image.get(12..12 + len).ok_or("truncated snapshot")?;
            self.entries.push((index, command.to_vec()));
            image = &image[12 + len..];
        }
        Ok(())
    }
}

/// Steps per Raft tick: messages take 1 to `DELAY_MAX` steps, so they overtake each other.
const STEPS_PER_TICK: u64 = 4;
const DELAY_MAX: u64 = 7;

struct Member {
    id: u64,
    disk: SimDisk,
    group: Option<Group<Recorder>>,
    /// When a crashed member comes back.
    restart_at: u64,
    incarnation: u64,
    /// The last index this incarnation applied.
    last_applied: u64,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: u64,
    members: Vec<Member>,
    /// (deliver at, sequence) -> message.
    in_flight: BTreeMap<(u64, u64), RaftMessage>,
    sent: u64,
    /// Side of the partition each member is on (all 0: no partition).
    side: Vec<u8>,
    drop_per_mille: u32,
    duplicate_per_mille: u32,
    /// The one leader of each term.
    leaders: BTreeMap<u64, u64>,
    /// The command applied at each index, by whichever member applied it first.
    applied: BTreeMap<u64, Vec<u8>>,
    proposed: u64,
    stats: Stats,
    /// Members 4 and 5 start outside the group and are added by the leader while faults run.
    growth: bool,
}

/// What the faults did, summed over seeds: the test fails if a kind of fault never happened.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    crashes: u64,
    crashes_mid_persist: u64,
    restores: u64,
    terms: u64,
    partitions: u64,
    committed: u64,
    memberships: u64,
}

fn config(seed: u64, id: u64, incarnation: u64) -> GroupConfig {
    GroupConfig {
        election_seed: Some(seed.wrapping_mul(1_000_003) ^ (id << 32) ^ incarnation),
        compact_every: 16,
        ..GroupConfig::new(id)
    }
}

async fn open(seed: u64, member: &mut Member, voters: &[u64]) -> Group<Recorder> {
    let path = PathBuf::from(format!("/sim/node-{}/raft/metadata/journal", member.id));
    let cfg = config(seed, member.id, member.incarnation);
    Group::open(
        Disk::Simulated(member.disk.clone()),
        path,
        &cfg,
        Bootstrap::Voters(voters.to_vec()),
        Recorder::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("seed {seed}: member {} does not reopen: {e}", member.id))
}

impl Sim {
    fn check_applied(&mut self, member: usize, index: u64, command: &[u8]) {
        let seed = self.seed;
        let m = &mut self.members[member];
        assert!(
            index > m.last_applied,
            "seed {seed}: member {} applied {index} after {}",
            m.id,
            m.last_applied
        );
        m.last_applied = index;
        let first = self.applied.entry(index).or_insert_with(|| command.to_vec());
        assert_eq!(first, command, "seed {seed}: member {} applied a different command at {index}", m.id);
    }

    fn check_machine(&mut self, member: usize) {
        let entries = self.members[member].group.as_ref().unwrap().machine().entries.clone();
        self.members[member].last_applied = 0;
        for (index, command) in entries {
            self.check_applied(member, index, &command);
        }
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        for message in messages {
            let (from, to) = (message.from as usize - 1, message.to as usize - 1);
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

    /// Advances member `i`; a failure must be a power cut, which crashes it.
    async fn advance(&mut self, i: usize) {
        let Some(group) = self.members[i].group.as_mut() else { return };
        match group.advance().await {
            Ok(output) => {
                for applied in output.applied {
                    match applied {
                        Applied::Command { index, outcome, .. } => self.check_applied(i, index, &outcome),
                        Applied::Restored { .. } => {
                            self.stats.restores += 1;
                            self.check_machine(i)
                        }
                        Applied::Membership { .. } => self.stats.memberships += 1,
                    }
                }
                self.send(output.messages);
            }
            Err(e) => {
                assert!(
                    !self.members[i].disk.is_powered(),
                    "seed {}: member {} failed with power on: {e}",
                    self.seed,
                    i + 1
                );
                self.stats.crashes_mid_persist += 1;
                self.crash(i);
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let restart_at = self.now + self.rng.random_range(20..400);
        let m = &mut self.members[i];
        m.disk.cut_now();
        m.group = None;
        m.restart_at = restart_at;
    }

    /// The leader (if any) proposes the next member outside the group as a voter.
    fn add_next_member(&mut self) {
        let n = self.members.len() as u64;
        let leader = self.members.iter_mut().filter_map(|m| m.group.as_mut()).find(|g| g.is_leader());
        if let Some(group) = leader
            && let Some(next) = (1..=n).find(|id| !group.voters().contains(id))
        {
            let _ = group.propose_membership(next, true);
        }
    }

    fn check_leaders(&mut self) {
        for m in &self.members {
            if let Some(group) = m.group.as_ref().filter(|g| g.is_leader()) {
                let leader = *self.leaders.entry(group.term()).or_insert(m.id);
                assert_eq!(leader, m.id, "seed {}: two leaders in term {}", self.seed, group.term());
            }
        }
    }

    /// One step of virtual time; `faults` turns crashes, partitions, loss and duplication on.
    async fn step(&mut self, faults: bool, voters: &[u64]) {
        self.now += 1;
        let n = self.members.len();
        if faults && self.rng.random_range(0..1000) < 8 {
            // A new partition (or none).
            let split = self.rng.random_range(0..3) == 0;
            for s in self.side.iter_mut() {
                *s = 0;
            }
            if !split {
                self.stats.partitions += 1;
                for i in 0..n {
                    self.side[i] = self.rng.random_range(0..2);
                }
            }
        }
        if faults && self.rng.random_range(0..1000) < 3 {
            let i = self.rng.random_range(0..n);
            if self.members[i].group.is_some() {
                if self.rng.random_range(0..2) == 0 {
                    self.crash(i);
                } else {
                    // Cut the power a few file operations from now: mid-persist, most likely.
                    let disk = &self.members[i].disk;
                    disk.cut_after(disk.ops() + self.rng.random_range(1..12));
                }
            }
        }
        for i in 0..n {
            if self.members[i].group.is_none() && (self.now >= self.members[i].restart_at || !faults) {
                let m = &mut self.members[i];
                m.disk.restart();
                m.incarnation += 1;
                m.last_applied = 0;
                let group = open(self.seed, m, voters).await;
                m.group = Some(group);
                self.check_machine(i);
            }
        }
        // Deliver what is due.
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let message = entry.remove();
            if let Some(group) = self.members[message.to as usize - 1].group.as_mut() {
                group.step(message);
            }
        }
        for i in 0..n {
            if let Some(group) = self.members[i]
                .group
                .as_mut()
                .filter(|_| (self.now + i as u64).is_multiple_of(STEPS_PER_TICK))
            {
                group.tick();
            }
        }
        if self.growth && self.rng.random_range(0..if faults { 150 } else { 40 }) == 0 {
            self.add_next_member();
        }
        if faults && self.rng.random_range(0..10) < 3 {
            let i = self.rng.random_range(0..n);
            if let Some(group) = self.members[i].group.as_mut().filter(|g| g.is_leader()) {
                self.proposed += 1;
                let _ = group.propose(format!("{}:{}", self.seed, self.proposed).into_bytes());
            }
        }
        for i in 0..n {
            self.advance(i).await;
        }
        self.check_leaders();
    }
}

async fn run_seed(seed: u64) -> Stats {
    struct Report(u64);
    impl Drop for Report {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("consensus simulation failed with seed {0}; replay with RILL_SIM_SEED={0}", self.0);
            }
        }
    }
    let _report = Report(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let growth = rng.random_range(0..3) == 0;
    let n: u64 = if growth || rng.random_range(0..3) == 0 { 5 } else { 3 };
    let voters: Vec<u64> = if growth { vec![1, 2, 3] } else { (1..=n).collect() };
    let drop_per_mille = rng.random_range(0..150);
    let duplicate_per_mille = rng.random_range(0..100);
    let mut members = Vec::new();
    for id in 1..=n {
        let mut member = Member {
            id,
            disk: SimDisk::new(seed ^ id),
            group: None,
            restart_at: 0,
            incarnation: 0,
            last_applied: 0,
        };
        member.group = Some(open(seed, &mut member, &voters).await);
        members.push(member);
    }
    let mut sim = Sim {
        seed,
        rng,
        now: 0,
        members,
        in_flight: BTreeMap::new(),
        sent: 0,
        side: vec![0; n as usize],
        drop_per_mille,
        duplicate_per_mille,
        leaders: BTreeMap::new(),
        applied: BTreeMap::new(),
        proposed: 0,
        stats: Stats::default(),
        growth,
    };
    for _ in 0..1600 {
        sim.step(true, &voters).await;
    }
    // Heal: no partition, no loss, every member back; a new command must commit everywhere.
    sim.side.iter_mut().for_each(|s| *s = 0);
    sim.drop_per_mille = 0;
    sim.duplicate_per_mille = 0;
    let marker = format!("{seed}:final").into_bytes();
    let mut converged = false;
    for step in 0..4000 {
        sim.step(false, &voters).await;
        if step % 40 == 0 && !sim.applied.values().any(|c| *c == marker) {
            for m in sim.members.iter_mut() {
                if let Some(group) = m.group.as_mut().filter(|g| g.is_leader()) {
                    let _ = group.propose(marker.clone());
                }
            }
        }
        let all_have_it = sim
            .members
            .iter()
            .all(|m| m.group.as_ref().is_some_and(|g| g.machine().entries.iter().any(|(_, c)| *c == marker)));
        let commit = sim.members.iter().filter_map(|m| m.group.as_ref()).map(|g| g.commit_index()).max();
        let caught_up = sim.members.iter().all(|m| m.group.as_ref().map(|g| g.applied()) == commit);
        if all_have_it && caught_up && sim.in_flight.is_empty() {
            converged = true;
            break;
        }
    }
    let states: Vec<String> = sim
        .members
        .iter()
        .map(|m| match &m.group {
            Some(g) => format!(
                "{}: term {} leader {:?} commit {} applied {} voters {:?}",
                m.id,
                g.term(),
                g.leader(),
                g.commit_index(),
                g.applied(),
                g.voters()
            ),
            None => format!("{}: down", m.id),
        })
        .collect();
    assert!(
        converged,
        "seed {seed}: the healed group did not commit a new command on every member: {states:#?}"
    );
    let first = sim.members[0].group.as_ref().unwrap().machine().entries.clone();
    for m in &sim.members[1..] {
        let entries = &m.group.as_ref().unwrap().machine().entries;
        assert_eq!(*entries, first, "seed {seed}: members 1 and {} applied different sequences", m.id);
    }
    let everything: Vec<(u64, Vec<u8>)> = sim.applied.iter().map(|(i, c)| (*i, c.clone())).collect();
    // Every command ever applied anywhere is in the final sequence (the final one excepted if it
    // was applied twice: proposals may repeat the marker).
    for (index, command) in &everything {
        assert!(
            first.iter().any(|(i, c)| i == index && c == command),
            "seed {seed}: the command at {index} was lost"
        );
    }
    sim.stats.terms = sim.leaders.len() as u64;
    sim.stats.committed = first.len() as u64;
    sim.stats
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("RILL_SIM_SEED").ok().and_then(|v| v.parse().ok()) {
        return vec![seed];
    }
    let count: u64 = std::env::var("RILL_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let count = if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { count * 10 } else { count };
    (0..count).collect()
}

#[test]
fn raft_safety_holds_under_loss_partitions_and_power_cuts() {
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
                total.restores += s.restores;
                total.terms += s.terms;
                total.partitions += s.partitions;
                total.committed += s.committed;
                total.memberships += s.memberships;
            }
            eprintln!("{count} seeds: {total:?}");
            if count >= 100 {
                assert!(
                    total.crashes_mid_persist > 0 && total.crashes > total.crashes_mid_persist,
                    "{total:?}"
                );
                assert!(
                    total.restores > 0 && total.partitions > 0 && total.terms > count as u64,
                    "{total:?}"
                );
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
