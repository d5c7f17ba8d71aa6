//! Administration of the logs a shard owns that Kafka's admin APIs reach: DeleteRecords (the
//! log start moves, durably), DescribeLogDirs (the size of each log) and DescribeProducers (a
//! partition's idempotent producers).

use rill_net::message::ErrorCode;

use super::{Shard, storage_error};
use crate::cluster::metadata::TopicName;
use crate::partition::producer::Producers;

impl Shard {
    /// Deletes the records of a partition below `offset`, or below the high watermark when
    /// `offset` is -1 (Kafka's DeleteRecords); answers the new log start (the low watermark).
    /// Beyond the high watermark, or another negative offset: OFFSET_OUT_OF_RANGE.
    pub(crate) async fn delete_records_local(
        &self,
        topic: &TopicName,
        partition: u32,
        offset: i64,
    ) -> Result<i64, ErrorCode> {
        let log = self.log(topic, partition)?;
        // Kafka refuses to delete records of a topic that is compacted and not deleted.
        let metadata = self.metadata();
        if metadata.topics.get(topic).is_some_and(|t| !crate::partition::cleaner::deletes(&t.settings)) {
            return Err(ErrorCode::PolicyViolation);
        }
        let target = match offset {
            -1 => log.log_end_offset(),
            o if o < 0 => return Err(ErrorCode::OffsetOutOfRange),
            o => o as u64,
        };
        let start = log.delete_records_before(target).await.map_err(storage_error)?;
        Ok(start as i64)
    }

    /// A partition's active idempotent producers (see [`Producers::describe`]), the table
    /// rebuilt from the log first if no produce has touched it since the start.
    pub(crate) async fn describe_producers_local(
        &self,
        topic: &TopicName,
        partition: u32,
    ) -> Result<Vec<(i64, i16, i32, i64)>, ErrorCode> {
        let log = self.log(topic, partition)?;
        let producers = self
            .producers
            .borrow_mut()
            .entry((topic.clone(), partition))
            .or_insert_with(|| std::rc::Rc::new(Producers::new(self.producer_count.clone())))
            .clone();
        producers.ensure_loaded(&log).await.map_err(storage_error)?;
        Ok(producers.describe())
    }

    /// Every log this shard holds, by topic and partition.
    pub(crate) fn logs_by_partition(&self) -> Vec<((TopicName, u32), rill_storage::Log)> {
        self.logs.borrow().iter().map(|(k, log)| (k.clone(), log.clone())).collect()
    }

    /// Every log this shard holds with its size on disk, by topic and partition.
    pub(crate) fn log_sizes(&self) -> Vec<(TopicName, u32, u64)> {
        let logs = self.logs.borrow();
        logs.iter()
            .map(|((topic, partition), log)| (topic.clone(), *partition, log.stats().size_bytes))
            .collect()
    }
}
