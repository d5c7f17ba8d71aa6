//! A produce on the shard that owns the partition: the topic's `min.insync.replicas` and
//! `message.timestamp.type` applied, the request's batches placed in arrival order under the
//! partition's ticket, idempotent producers' sequences checked, then the wait for the acks asked.

use std::rc::Rc;

use bytes::Bytes;
use rill_net::message::{Acks, ErrorCode};
use rill_net::record_batch::BatchHeader;
use rill_storage::Batch;

use super::{Appended, IN_SYNC_REPLICAS, Shard, storage_error};
use crate::cluster::metadata::TopicName;
use crate::cluster::topic_config::stored;
use crate::partition::producer::{Producers, Verdict};

/// A batch's bytes and its first and largest timestamps as stored: stamped with the broker's
/// time `append_time_ms` on a LogAppendTime topic (its CRC recomputed), else as produced.
fn timestamps(
    header: &BatchHeader,
    payload: Bytes,
    append_time_ms: Option<i64>,
) -> Result<(Bytes, i64, i64), ErrorCode> {
    match append_time_ms {
        Some(now_ms) => {
            let stamped = rill_net::record_batch::with_log_append_time(&payload, now_ms)
                .map_err(|_| ErrorCode::CorruptBatch)?;
            Ok((stamped, now_ms, now_ms))
        }
        None => Ok((payload, header.base_timestamp, header.max_timestamp.max(header.base_timestamp))),
    }
}

impl Shard {
    pub(super) async fn produce_local(
        self: &Rc<Self>,
        topic: &TopicName,
        partition: u32,
        batches: Vec<(BatchHeader, Bytes)>,
        acks: Acks,
    ) -> Result<Appended, ErrorCode> {
        // The ticket is taken before anything awaits: appends are placed in the order their
        // requests reached this shard (`order.rs`). It is held until the offsets are assigned.
        let sequencer = self.sequencers.borrow_mut().entry((topic.clone(), partition)).or_default().clone();
        let ticket = sequencer.ticket();
        let log = self.log(topic, partition)?;
        let (min_insync, log_append_time, compacted) = {
            let metadata = self.metadata();
            let settings = metadata.topics.get(topic).map(|t| &t.settings);
            let min_insync = settings.and_then(|s| stored::<u32>(s, "min.insync.replicas")).unwrap_or(1);
            let timestamps = settings.and_then(|s| stored::<String>(s, "message.timestamp.type"));
            let compacted = settings.is_some_and(crate::partition::cleaner::compacts);
            (min_insync, timestamps.as_deref() == Some("LogAppendTime"), compacted)
        };
        // A compacted topic keeps the latest record per key: Kafka refuses keyless records.
        if compacted {
            batches.iter().try_for_each(|(_, payload)| crate::partition::cleaner::check_keys(payload))?;
        }
        if let Some(slot) = self.replication.slot(topic, partition) {
            let now_ms = if log_append_time { crate::partition::group::now_ms() } else { -1 };
            let mut proposals = Vec::with_capacity(batches.len());
            for (header, payload) in batches {
                let (payload, first, max) = timestamps(&header, payload, log_append_time.then_some(now_ms))?;
                let proposal = crate::partition::replica::Proposal {
                    payload,
                    record_count: header.offset_count(),
                    first_timestamp_ms: first,
                    max_timestamp_ms: max,
                    base_offset_field: Some(rill_net::record_batch::BASE_OFFSET_AT),
                };
                proposals.push((header, proposal));
            }
            let base = self.produce_replicated(&slot, ticket, proposals, acks, min_insync).await?;
            return Ok(Appended { base, log_append_time_ms: now_ms, log_start: log.log_start_offset() });
        }
        // Kafka refuses acks=all when fewer replicas are in sync than `min.insync.replicas`;
        // a partition that is not replicated has its leader as its only in-sync replica.
        if acks == Acks::Durable && min_insync > IN_SYNC_REPLICAS {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        ticket.turn().await;
        let headers: Vec<BatchHeader> = batches.iter().map(|(h, _)| *h).collect();
        let now_ms = if log_append_time { crate::partition::group::now_ms() } else { -1 };
        let appended =
            |base| Appended { base, log_append_time_ms: now_ms, log_start: log.log_start_offset() };
        let mut stored_batches = Vec::with_capacity(batches.len());
        for (header, payload) in batches {
            let (payload, first, max) = timestamps(&header, payload, log_append_time.then_some(now_ms))?;
            stored_batches.push(Batch {
                // `split_produced` checked the CRC field against the bytes it covers (and a
                // stamped batch's was just computed).
                known_suffix_crc: rill_net::record_batch::crc_field(&payload)
                    .ok()
                    .map(|crc| (rill_net::record_batch::CRC_COVERS_FROM, crc)),
                raft_index: 0,
                payload,
                record_count: header.offset_count(),
                first_timestamp_ms: first,
                max_timestamp_ms: max,
                leader_epoch: 0,
                base_offset_field: Some(rill_net::record_batch::BASE_OFFSET_AT),
            });
        }
        let batches = stored_batches;
        let durable = acks == Acks::Durable;
        if !headers.iter().any(|h| h.producer_id >= 0 && h.base_sequence >= 0) {
            // All of a request's batches for one partition go in together, or none does.
            let enqueued = log.enqueue_all(batches).await.map_err(storage_error)?;
            drop(ticket);
            let bases = enqueued.wait(durable).await.map_err(storage_error)?;
            let base = bases.first().copied().ok_or(ErrorCode::InvalidRequest)?;
            return Ok(appended(base));
        }
        // Idempotent: check sequences and take offsets while holding the partition's ticket, so
        // pipelined batches are ordered as checked; wait for the write outside it.
        let producers = self
            .producers
            .borrow_mut()
            .entry((topic.clone(), partition))
            .or_insert_with(|| Rc::new(Producers::new(self.producer_count.clone())))
            .clone();
        producers.ensure_loaded(&log).await.map_err(storage_error)?;
        let refs: Vec<&BatchHeader> = headers.iter().collect();
        producers.admit(&refs)?;
        match producers.check(&refs) {
            Verdict::Append => {}
            Verdict::Reject(code) => return Err(code),
            Verdict::Duplicate(base) => {
                drop(ticket);
                // Acknowledge the first copy only once it meets this request's acks.
                let count: u64 = headers.iter().map(|h| h.offset_count() as u64).sum();
                log.wait_stored(base + count, durable).await.map_err(storage_error)?;
                return Ok(appended(base));
            }
        }
        let enqueued = log.enqueue_all(batches).await.map_err(storage_error)?;
        for (h, base) in headers.iter().zip(&enqueued.bases) {
            producers.record(h, *base);
        }
        let snapshot = producers.snapshot_due(&log, false);
        drop(ticket);
        if let Some(snapshot) = snapshot {
            let log = log.clone();
            glommio::spawn_local(
                async move { crate::partition::producer::write_snapshot(&log, snapshot).await },
            )
            .detach();
        }
        let bases = enqueued.wait(durable).await.map_err(storage_error)?;
        let base = bases.first().copied().ok_or(ErrorCode::InvalidRequest)?;
        Ok(appended(base))
    }
}
