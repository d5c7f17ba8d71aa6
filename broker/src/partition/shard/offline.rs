//! Offline partitions, known on every shard: a shard whose partition log failed to open (damage
//! below its recovery point, an I/O error) tells every shard, so whichever shard answers a Kafka
//! Metadata request shows the partition without a leader (LEADER_NOT_AVAILABLE, its replica
//! offline), as Kafka shows a partition whose only replica's log directory failed.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::{Shard, ShardRequest};
use crate::cluster::metadata::TopicName;

/// Offline partitions of each shard, by topic, as each last announced them.
pub(crate) type OfflineKnown = HashMap<usize, HashMap<TopicName, HashSet<u32>>>;

impl Shard {
    /// Tells every shard, this one included, which of this shard's partitions are offline,
    /// when that changed since it last did.
    pub(crate) async fn announce_offline(self: &Rc<Self>) {
        let now: Vec<(TopicName, u32)> = self.offline.borrow().keys().cloned().collect();
        // What this shard announced last is what it learned from itself.
        let unchanged = {
            let known = self.offline_known.borrow();
            let mine = known.get(&self.index);
            let count: usize = mine.map_or(0, |m| m.values().map(HashSet::len).sum());
            count == now.len()
                && now.iter().all(|(t, p)| mine.is_some_and(|m| m.get(t).is_some_and(|s| s.contains(p))))
        };
        if unchanged {
            return;
        }
        for target in 0..self.count {
            let request = ShardRequest::Offline { shard: self.index, partitions: now.clone() };
            // Boxed: `handle` runs this, and a call to this shard runs `handle`.
            let call: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
                Box::pin(self.call(target, request));
            let _ = call.await;
        }
    }

    /// Takes another shard's (or this one's) announcement.
    pub(crate) fn learn_offline(&self, shard: usize, partitions: Vec<(TopicName, u32)>) {
        let mut by_topic: HashMap<TopicName, HashSet<u32>> = HashMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().insert(partition);
        }
        self.offline_known.borrow_mut().insert(shard, by_topic);
    }

    /// Whether a partition's log is offline on the shard that owns it (as it last said).
    pub(crate) fn is_offline(&self, topic: &TopicName, partition: u32) -> bool {
        self.offline_known.borrow().values().any(|t| t.get(topic).is_some_and(|p| p.contains(&partition)))
    }
}
