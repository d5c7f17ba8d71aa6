//! Idempotent producers: producer ids, and each partition's sequence state.
//!
//! A producer that called InitProducerId stamps each batch with its id, epoch and the sequence
//! number of its first record. Per partition the broker keeps, for each producer, its epoch and
//! its last five batches (Kafka's `max.in.flight` for idempotence is at most 5): a batch that
//! repeats one of them is acknowledged with the offset it got the first time and not written
//! again; a batch that is not the next in sequence gets OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! The state is rebuilt the first time an idempotent producer writes to the partition after the
//! broker starts: from the newest `<offset>.snapshot` file (written at each segment roll and at
//! clean close, as Kafka does; `producer/snapshot.rs`), then the batches after it that were
//! appended within the producer-id expiration (Kafka's `producer.id.expiration.ms`, 1 day; a
//! producer silent for longer is forgotten anyway). Without a snapshot every segment of that
//! window is replayed, so a client retrying across a crash gets its duplicates recognised however
//! many segments were written in between. Producers
//! silent for the expiration are dropped, and a partition tracks at most
//! `PRODUCERS_PER_PARTITION_MAX`, a shard `PRODUCERS_PER_SHARD_MAX`: past that a new producer
//! id is refused (the oldest silent ones are dropped first). Checks and offset assignment run
//! while the append holds its partition's ticket (`order::Sequencer`), so pipelined batches take
//! offsets in the order their sequences were checked; the writes are awaited outside it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use rill_net::message::ErrorCode;
use rill_net::record_batch::{BatchHeader, parse_header};
use rill_storage::Log;

mod snapshot;

/// Recent batches remembered per producer and partition.
pub(crate) const BATCHES_KEPT: usize = 5;

/// How long a producer id is remembered after its last batch (Kafka's
/// `producer.id.expiration.ms` default, one day).
pub(crate) const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// Producers tracked per partition and per shard: client-chosen ids cannot grow memory without
/// bound.
pub(crate) const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
pub(crate) const PRODUCERS_PER_SHARD_MAX: usize = 200_000;

/// Wall-clock milliseconds.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Hands out producer ids unique across shards and broker runs: the start time in ms, the
/// shard, and a counter. A shard that uses up its counter moves to the next millisecond.
pub(crate) struct IdAllocator {
    shard: i64,
    epoch_ms: Cell<i64>,
    next: Cell<i64>,
}

const SHARD_BITS: u32 = 8;
const COUNTER_BITS: u32 = 14;

impl IdAllocator {
    pub fn new(shard: usize) -> IdAllocator {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        IdAllocator {
            shard: shard as i64 & ((1 << SHARD_BITS) - 1),
            epoch_ms: Cell::new(now),
            next: Cell::new(0),
        }
    }

    pub fn next(&self) -> i64 {
        if self.next.get() == 1 << COUNTER_BITS {
            self.epoch_ms.set(self.epoch_ms.get() + 1);
            self.next.set(0);
        }
        let id = (self.epoch_ms.get() << (SHARD_BITS + COUNTER_BITS))
            | (self.shard << COUNTER_BITS)
            | self.next.get();
        self.next.set(self.next.get() + 1);
        assert!(id >= 0, "producer ids are non-negative");
        id
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recent {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
}

#[derive(Debug, Default)]
struct ProducerState {
    epoch: i16,
    recent: VecDeque<Recent>,
    /// When its last batch was appended (ms).
    last_ms: i64,
}

/// What to do with a request's batches for one partition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write them.
    Append,
    /// All were written before: answer with this base offset, write nothing.
    Duplicate(u64),
    /// Refuse them.
    Reject(ErrorCode),
}

/// The idempotent-producer state of one partition.
pub(crate) struct Producers {
    loaded: Cell<bool>,
    /// The active segment's base when the last snapshot was taken: a roll takes the next.
    snapshot_base: Cell<u64>,
    table: RefCell<HashMap<i64, ProducerState>>,
    /// Producers tracked by every partition of the shard.
    shard_total: std::rc::Rc<Cell<usize>>,
}

impl Default for Producers {
    fn default() -> Producers {
        Producers::new(std::rc::Rc::default())
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.shard_total.set(self.shard_total.get() - self.table.borrow().len());
    }
}

impl Producers {
    /// An empty table counting its producers into the shard's `shard_total`.
    pub fn new(shard_total: std::rc::Rc<Cell<usize>>) -> Producers {
        Producers {
            loaded: Cell::new(false),
            snapshot_base: Cell::new(0),
            table: RefCell::default(),
            shard_total,
        }
    }

    /// Rebuilds the table, once per broker run: from the newest snapshot at or below the log
    /// end, then every later batch appended within the producer-id expiration (without a
    /// snapshot, every such batch). Call holding the partition's ticket.
    pub async fn ensure_loaded(&self, log: &Log) -> Result<(), rill_storage::Error> {
        if self.loaded.get() {
            return Ok(());
        }
        let since = now_ms() - PRODUCER_ID_EXPIRATION_MS;
        let (dir, end) = (log.dir().to_path_buf(), log.log_end_offset());
        let snapshot = glommio::executor().spawn_blocking(move || snapshot::read_newest(&dir, end)).await;
        let mut offset = log.first_offset_appended_since(since);
        if let Some((snapshot_end, table)) = snapshot {
            let mut loaded = table.into_iter().filter(|(_, s)| s.last_ms >= since).collect::<Vec<_>>();
            // The newest producers matter most if the bounds are smaller than the snapshot.
            loaded.sort_by_key(|(_, s)| std::cmp::Reverse(s.last_ms));
            let room = PRODUCERS_PER_PARTITION_MAX
                .min(PRODUCERS_PER_SHARD_MAX.saturating_sub(self.shard_total.get()));
            loaded.truncate(room);
            self.shard_total.set(self.shard_total.get() + loaded.len());
            self.table.borrow_mut().extend(loaded);
            offset = offset.max(snapshot_end);
        }
        while offset < log.log_end_offset() {
            let batches = log.read(offset, 8 << 20).await?;
            let Some(last) = batches.last() else { break };
            offset = last.end_offset();
            for batch in batches.iter().filter(|b| b.append_time_ms >= since) {
                if let Ok(header) = parse_header(&batch.payload)
                    && header.producer_id >= 0
                    && header.base_sequence >= 0
                {
                    self.make_room(&header, since);
                    self.record_at(&header, batch.base_offset, batch.append_time_ms);
                }
            }
        }
        self.loaded.set(true);
        self.snapshot_base.set(log.active_segment_base());
        Ok(())
    }

    /// Once loaded: if the log rolled to a new segment since the last snapshot (or `always`),
    /// the table as a snapshot image at the log's next offset, to hand to [`write_snapshot`].
    /// Synchronous, so the image matches the offset; call holding the partition's ticket.
    pub fn snapshot_due(&self, log: &Log, always: bool) -> Option<(u64, Vec<u8>)> {
        let base = log.active_segment_base();
        if !self.loaded.get() || (!always && base == self.snapshot_base.get()) {
            return None;
        }
        self.snapshot_base.set(base);
        let end = log.next_offset();
        Some((end, snapshot::encode(end, &self.table.borrow())))
    }

    /// Whether the batches' producers fit in the table (known ones always do); drops producers
    /// silent for the expiration to make room, then the least recently seen ones while
    /// replaying (`since` is the expiration's start).
    fn make_room(&self, h: &BatchHeader, since: i64) -> bool {
        let mut table = self.table.borrow_mut();
        if table.contains_key(&h.producer_id) {
            return true;
        }
        let full = |table: &HashMap<i64, ProducerState>| {
            table.len() >= PRODUCERS_PER_PARTITION_MAX || self.shard_total.get() >= PRODUCERS_PER_SHARD_MAX
        };
        if full(&table) {
            let before = table.len();
            table.retain(|_, state| state.last_ms >= since);
            self.shard_total.set(self.shard_total.get() - (before - table.len()));
        }
        if full(&table) && !self.loaded.get() {
            // Replaying: the newest producers matter most.
            if let Some(oldest) = table.iter().min_by_key(|(_, s)| s.last_ms).map(|(id, _)| *id) {
                table.remove(&oldest);
                self.shard_total.set(self.shard_total.get() - 1);
            }
        }
        !full(&table)
    }

    /// Checks a request's batches against the bounds: a new producer id past them is refused.
    pub fn admit(&self, batches: &[&BatchHeader]) -> Result<(), ErrorCode> {
        let since = now_ms() - PRODUCER_ID_EXPIRATION_MS;
        for h in batches.iter().filter(|h| h.producer_id >= 0 && h.base_sequence >= 0) {
            if !self.make_room(h, since) {
                tracing::warn!(
                    producer_id = h.producer_id,
                    partition_max = PRODUCERS_PER_PARTITION_MAX,
                    shard_max = PRODUCERS_PER_SHARD_MAX,
                    "too many idempotent producers: refusing a new producer id"
                );
                return Err(ErrorCode::InvalidRequest);
            }
        }
        Ok(())
    }

    /// Checks a request's batches for one partition against the table.
    pub fn check(&self, batches: &[&BatchHeader]) -> Verdict {
        let table = self.table.borrow();
        let mut duplicates = Vec::new();
        // Sequences the earlier batches of this request would leave.
        let mut pending: HashMap<i64, (i16, i32)> = HashMap::new();
        for h in batches {
            if h.producer_id < 0 || h.base_sequence < 0 {
                duplicates.push(None);
                continue;
            }
            let last_seq = last_sequence(h);
            let known = pending.get(&h.producer_id).copied().or_else(|| {
                table.get(&h.producer_id).map(|s| (s.epoch, s.recent.back().map_or(-1, |r| r.last_seq)))
            });
            match known {
                // A producer never seen here (or whose batches are gone): any sequence starts it.
                None => {}
                Some((epoch, _)) if h.producer_epoch < epoch => {
                    return Verdict::Reject(ErrorCode::InvalidProducerEpoch);
                }
                // A new epoch restarts the sequence at 0.
                Some((epoch, _)) if h.producer_epoch > epoch && h.base_sequence != 0 => {
                    return Verdict::Reject(ErrorCode::OutOfOrderSequence);
                }
                Some((epoch, _)) if h.producer_epoch > epoch => {}
                Some((_, last)) => {
                    if let Some(state) = table.get(&h.producer_id) {
                        let seen = state
                            .recent
                            .iter()
                            .find(|r| r.first_seq == h.base_sequence && r.last_seq == last_seq);
                        if let Some(seen) = seen.filter(|_| !pending.contains_key(&h.producer_id)) {
                            duplicates.push(Some(seen.base_offset));
                            continue;
                        }
                    }
                    if h.base_sequence != next_sequence(last) {
                        return Verdict::Reject(ErrorCode::OutOfOrderSequence);
                    }
                }
            }
            duplicates.push(None);
            pending.insert(h.producer_id, (h.producer_epoch, last_seq));
        }
        match (duplicates.first(), duplicates.iter().all(Option::is_some)) {
            (Some(Some(base)), true) => Verdict::Duplicate(*base),
            _ if duplicates.iter().any(Option::is_some) => Verdict::Reject(ErrorCode::OutOfOrderSequence),
            _ => Verdict::Append,
        }
    }

    /// Remembers a batch written at `base_offset` now.
    pub fn record(&self, h: &BatchHeader, base_offset: u64) {
        self.record_at(h, base_offset, now_ms());
    }

    fn record_at(&self, h: &BatchHeader, base_offset: u64, at_ms: i64) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let mut table = self.table.borrow_mut();
        let state = table.entry(h.producer_id).or_insert_with(|| {
            self.shard_total.set(self.shard_total.get() + 1);
            ProducerState::default()
        });
        state.last_ms = state.last_ms.max(at_ms);
        if h.producer_epoch != state.epoch {
            state.recent.clear();
            state.epoch = h.producer_epoch;
        }
        state.recent.push_back(Recent {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            base_offset,
        });
        while state.recent.len() > BATCHES_KEPT {
            state.recent.pop_front();
        }
    }

    /// The active producers (Kafka's DescribeProducers): id, epoch, last sequence (-1 if none is
    /// remembered) and when its last batch was appended, by id.
    pub fn describe(&self) -> Vec<(i64, i16, i32, i64)> {
        let table = self.table.borrow();
        let mut out: Vec<_> = table
            .iter()
            .map(|(id, s)| (*id, s.epoch, s.recent.back().map_or(-1, |r| r.last_seq), s.last_ms))
            .collect();
        out.sort_unstable();
        out
    }

    /// Producers tracked (for tests and stats).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }
}

/// Writes a snapshot image from [`Producers::snapshot_due`] into the log's directory; a failure
/// is logged (the next rebuild replays more).
pub(crate) async fn write_snapshot(log: &Log, (end, image): (u64, Vec<u8>)) {
    let dir = log.dir().to_path_buf();
    let written = glommio::executor().spawn_blocking(move || snapshot::write(&dir, end, &image)).await;
    if let Err(error) = written {
        tracing::warn!(dir = %log.dir().display(), %error, "writing a producer snapshot failed");
    }
}

/// Sequence of the batch's last record (sequences wrap from `i32::MAX` to 0).
fn last_sequence(h: &BatchHeader) -> i32 {
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            total_bytes: 0,
            partition_leader_epoch: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let p = Producers::default();
        let a = header(7, 0, 0, 10);
        assert_eq!(p.check(&[&a]), Verdict::Append);
        p.record(&a, 100);
        let b = header(7, 0, 10, 5);
        assert_eq!(p.check(&[&b]), Verdict::Append);
        p.record(&b, 110);
        // Retries of either recent batch are duplicates with their first offsets.
        assert_eq!(p.check(&[&a]), Verdict::Duplicate(100));
        assert_eq!(p.check(&[&b]), Verdict::Duplicate(110));
        // A gap and a rewind are out of order.
        assert_eq!(p.check(&[&header(7, 0, 16, 1)]), Verdict::Reject(ErrorCode::OutOfOrderSequence));
        assert_eq!(p.check(&[&header(7, 0, 3, 2)]), Verdict::Reject(ErrorCode::OutOfOrderSequence));
        // Two batches in one request chain.
        let (c, d) = (header(7, 0, 15, 2), header(7, 0, 17, 3));
        assert_eq!(p.check(&[&c, &d]), Verdict::Append);
        assert_eq!(p.check(&[&d, &c]), Verdict::Reject(ErrorCode::OutOfOrderSequence));
        // An older epoch is fenced; a newer one must restart at 0.
        assert_eq!(p.check(&[&header(7, -1, 15, 1)]), Verdict::Reject(ErrorCode::InvalidProducerEpoch));
        assert_eq!(p.check(&[&header(7, 1, 5, 1)]), Verdict::Reject(ErrorCode::OutOfOrderSequence));
        let e = header(7, 1, 0, 1);
        assert_eq!(p.check(&[&e]), Verdict::Append);
        p.record(&e, 200);
        assert_eq!(p.check(&[&a]), Verdict::Reject(ErrorCode::InvalidProducerEpoch));
        // Unknown producers start anywhere; non-idempotent batches always append.
        assert_eq!(p.check(&[&header(8, 3, 42, 1)]), Verdict::Append);
        assert_eq!(p.check(&[&header(-1, -1, -1, 1)]), Verdict::Append);
        // Only the last five batches are remembered.
        for i in 0..6 {
            p.record(&header(9, 0, i, 1), 300 + i as u64);
        }
        assert_eq!(p.check(&[&header(9, 0, 0, 1)]), Verdict::Reject(ErrorCode::OutOfOrderSequence));
        assert_eq!(p.check(&[&header(9, 0, 1, 1)]), Verdict::Duplicate(301));
        assert_eq!(p.len(), 2, "producers 7 and 9; 8 was only checked");
    }

    #[test]
    fn the_table_is_bounded_and_silent_producers_expire() {
        let shard = std::rc::Rc::new(Cell::new(0));
        let p = Producers::new(shard.clone());
        p.loaded.set(true);
        let stale = now_ms() - PRODUCER_ID_EXPIRATION_MS - 1;
        p.record_at(&header(0, 0, 0, 1), 0, stale);
        for pid in 1..PRODUCERS_PER_PARTITION_MAX as i64 {
            p.record(&header(pid, 0, 0, 1), pid as u64);
        }
        assert_eq!(shard.get(), PRODUCERS_PER_PARTITION_MAX);
        // Full: the producer silent for the expiration makes room for a new one.
        let new = header(1 << 40, 0, 0, 1);
        assert_eq!(p.admit(&[&new]), Ok(()));
        p.record(&new, 99);
        assert_eq!(shard.get(), PRODUCERS_PER_PARTITION_MAX);
        // Full of active producers: known ones go on, a new one is refused.
        assert_eq!(p.admit(&[&header(5, 0, 1, 1)]), Ok(()));
        assert_eq!(p.admit(&[&header((1 << 40) + 1, 0, 0, 1)]), Err(ErrorCode::InvalidRequest));
        drop(p);
        assert_eq!(shard.get(), 0, "a dropped table gives its count back");
    }

    #[test]
    fn sequences_wrap() {
        let p = Producers::default();
        let a = header(1, 0, i32::MAX - 1, 2);
        p.record(&a, 0);
        assert_eq!(p.check(&[&header(1, 0, 0, 1)]), Verdict::Append);
    }

    #[test]
    fn producer_ids_are_unique_per_shard() {
        let (a, b) = (IdAllocator::new(0), IdAllocator::new(1));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(1 << COUNTER_BITS) + 10 {
            assert!(seen.insert(a.next()));
            assert!(seen.insert(b.next()));
        }
    }

    /// An idempotent one-record batch as stored (the header fields the rebuild reads).
    fn stored_batch(pid: i64, seq: i32) -> rill_storage::Batch {
        let mut builder = rill_net::record_batch::BatchBuilder::new();
        builder.push(&rill_net::record_batch::Record {
            timestamp_ms: now_ms(),
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Vec::new(),
        });
        let mut payload = bytes::BytesMut::from(&builder.build()[..]);
        payload[43..51].copy_from_slice(&pid.to_be_bytes());
        payload[51..53].copy_from_slice(&0i16.to_be_bytes());
        payload[53..57].copy_from_slice(&seq.to_be_bytes());
        rill_storage::Batch {
            payload: payload.freeze(),
            record_count: 1,
            first_timestamp_ms: 0,
            max_timestamp_ms: 0,
            leader_epoch: 0,
            base_offset_field: Some(rill_net::record_batch::BASE_OFFSET_AT),
            known_suffix_crc: None,
            raft_index: 0,
        }
    }

    /// The rebuild starts from the newest snapshot and replays only what follows it: producer 99
    /// exists only in the snapshot, producer 8 only in the log after it. A truncation below the
    /// snapshot removes it.
    #[test]
    fn the_rebuild_starts_from_the_snapshot_and_replays_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .spawn(move || async move {
                let clock: std::rc::Rc<dyn rill_storage::Clock> = std::rc::Rc::new(rill_storage::SystemClock);
                let log = Log::open(&path, rill_storage::LogConfig::default(), clock).await.unwrap();
                assert_eq!(log.append(stored_batch(7, 0)).await.unwrap(), 0);
                let first = Producers::default();
                assert!(first.snapshot_due(&log, true).is_none(), "nothing to snapshot before a load");
                first.ensure_loaded(&log).await.unwrap();
                first.record(&header(99, 0, 0, 1), 0);
                let snapshot = first.snapshot_due(&log, true).unwrap();
                assert_eq!(snapshot.0, 1);
                assert!(first.snapshot_due(&log, false).is_none(), "no roll, no snapshot");
                write_snapshot(&log, snapshot).await;
                assert_eq!(log.append(stored_batch(8, 0)).await.unwrap(), 1);

                let rebuilt = Producers::default();
                rebuilt.ensure_loaded(&log).await.unwrap();
                assert_eq!(rebuilt.check(&[&header(99, 0, 0, 1)]), Verdict::Duplicate(0));
                assert_eq!(rebuilt.check(&[&header(7, 0, 0, 1)]), Verdict::Duplicate(0));
                assert_eq!(rebuilt.check(&[&header(8, 0, 0, 1)]), Verdict::Duplicate(1));
                assert_eq!(rebuilt.len(), 3);

                log.truncate(0).await.unwrap();
                assert!(!path.join(format!("{:020}.snapshot", 1)).exists());
                let after = Producers::default();
                after.ensure_loaded(&log).await.unwrap();
                assert_eq!(after.len(), 0);
                log.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
