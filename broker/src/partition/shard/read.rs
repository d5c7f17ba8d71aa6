//! Reads on the owning shard: Kafka and native fetch (long-polling, never above a replicated
//! partition's high watermark) and ListOffsets.

use std::time::Duration;

use bytes::Bytes;
use rill_net::message::{ErrorCode, OffsetSpec};
use rill_storage::Log;

use super::{FetchOutcome, Shard, storage_error};
use crate::cluster::metadata::TopicName;

impl Shard {
    pub(super) async fn fetch_local(
        &self,
        topic: &TopicName,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        wait_ms: u32,
    ) -> FetchOutcome {
        let outcome = |error, log: Option<&Log>, batches| FetchOutcome {
            error,
            log_start: log.map_or(0, |l| l.log_start_offset()),
            high_watermark: log.map_or(0, |l| l.log_end_offset()),
            batches,
        };
        let log = match self.log(topic, partition) {
            Ok(log) => log,
            Err(e) => return outcome(e, None, Vec::new()),
        };
        // A replicated partition is read from its leader, and only below its high watermark
        // (what a majority holds): nothing a consumer sees can be lost in a failover.
        let slot = self.replication.slot(topic, partition);
        if let Some(slot) = &slot {
            if !slot.leading() {
                return outcome(ErrorCode::NotLeaderOrFollower, None, Vec::new());
            }
            if wait_ms > 0 && offset >= slot.high_watermark() {
                let deadline = std::time::Instant::now() + Duration::from_millis(wait_ms as u64);
                loop {
                    let advanced = slot.advanced.changed();
                    let now = std::time::Instant::now();
                    if slot.high_watermark() > offset || now >= deadline || !slot.leading() {
                        break;
                    }
                    futures_lite::future::or(advanced, glommio::timer::sleep(deadline - now)).await;
                }
            }
        } else if wait_ms > 0 && offset == log.log_end_offset() {
            log.wait_for_data(offset, Duration::from_millis(wait_ms as u64)).await;
        }
        let end = slot.as_ref().map_or(u64::MAX, |s| s.high_watermark());
        let outcome = |error, log: Option<&Log>, batches| FetchOutcome {
            error,
            log_start: log.map_or(0, |l| l.log_start_offset()),
            high_watermark: log.map_or(0, |l| l.log_end_offset().min(end)),
            batches,
        };
        if max_bytes == 0 || offset >= end {
            // Offsets only: a spent response budget, or a long-poll that just waits for data.
            return outcome(ErrorCode::None, Some(&log), Vec::new());
        }
        // A compacted log may hold runs of batches without records (a read stops at a segment's
        // end): reading on past them until a record comes, the budget is spent or the log ends
        // keeps a consumer from fetching response after response without a record (librdkafka
        // takes ten of those for a record too large to fetch).
        let mut payloads: Vec<Bytes> = Vec::new();
        let (mut at, mut budget) = (offset, max_bytes as usize);
        loop {
            match log.read(at, budget).await {
                Ok(mut batches) => {
                    batches.retain(|b| b.end_offset() <= end);
                    let Some(last) = batches.last() else { break };
                    at = last.end_offset();
                    let records =
                        batches.iter().any(|b| rill_net::record_batch::parse_header(&b.payload).is_ok());
                    let bytes: usize = batches.iter().map(|b| b.payload.len()).sum();
                    payloads.extend(batches.into_iter().map(|b| b.payload));
                    if records || bytes >= budget || at >= log.log_end_offset().min(end) {
                        break;
                    }
                    budget -= bytes;
                }
                Err(e) if payloads.is_empty() => return outcome(storage_error(e), Some(&log), Vec::new()),
                Err(_) => break,
            }
        }
        outcome(ErrorCode::None, Some(&log), payloads)
    }

    pub(super) async fn offset_local(
        &self,
        topic: &TopicName,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<i64, ErrorCode> {
        let log = self.log(topic, partition)?;
        let end = match self.replication.slot(topic, partition) {
            Some(slot) if !slot.leading() => return Err(ErrorCode::NotLeaderOrFollower),
            Some(slot) => slot.high_watermark(),
            None => log.log_end_offset(),
        };
        match spec {
            OffsetSpec::Earliest => Ok(log.log_start_offset() as i64),
            OffsetSpec::Latest => Ok(end as i64),
            OffsetSpec::Timestamp(ts) => {
                Ok(log.offset_for_timestamp(ts).await.map_err(storage_error)?.map_or(-1, |o| o as i64))
            }
            OffsetSpec::MaxTimestamp => match log.max_timestamp_ms() {
                None => Ok(-1),
                Some(ts) => {
                    Ok(log.offset_for_timestamp(ts).await.map_err(storage_error)?.map_or(-1, |o| o as i64))
                }
            },
        }
    }
}
