//! Kafka's consumer protocol inside a group: the subscription a member joins with, the
//! assignment the leader hands out (each as a big-endian version then the struct, encoded with
//! the `kafka-protocol` crate), and the `range` assignor. Rill's own group members (`rill
//! consume --group`, `rill bench --consumer-group`) use it, so they share groups with Kafka
//! clients.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The assignor Rill's members offer.
pub const RANGE: &str = "range";

fn encode<T: Encodable>(value: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(0);
    value.encode(&mut out, 0).expect("version 0 encodes every field Rill sets");
    out.to_vec()
}

fn decode<T: Decodable>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() < 2 {
        return Err("consumer-protocol bytes too short".into());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let version = buf.get_i16().clamp(0, 3);
    T::decode(&mut buf, version).map_err(|e| e.to_string())
}

/// A subscription to `topics`.
pub fn subscription(topics: &[String]) -> Vec<u8> {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics.iter().map(|t| StrBytes::from_string(t.clone())).collect();
    encode(&sub)
}

/// The topics of a subscription.
pub fn subscribed_topics(bytes: &[u8]) -> Result<Vec<String>, String> {
    let sub: ConsumerProtocolSubscription = decode(bytes)?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// The (topic, partition) pairs of an assignment; empty bytes are an empty assignment.
pub fn assigned_partitions(bytes: &[u8]) -> Result<Vec<(String, u32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let a: ConsumerProtocolAssignment = decode(bytes)?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p as u32)))
        .collect())
}

/// Every topic some member subscribes to.
pub fn all_topics(members: &[(String, Vec<u8>)]) -> Result<Vec<String>, String> {
    let mut topics = std::collections::BTreeSet::new();
    for (_, metadata) in members {
        topics.extend(subscribed_topics(metadata)?);
    }
    Ok(topics.into_iter().collect())
}

/// The `range` assignor: per topic, the members subscribed to it, sorted by id, take
/// consecutive ranges of its partitions (the first `count % members` one more). `members` are
/// (member id, subscription bytes); `partitions` gives each topic's partition count (a topic
/// missing there has none).
pub fn range_assign(
    members: &[(String, Vec<u8>)],
    partitions: &BTreeMap<String, u32>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut subscribers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, metadata) in members {
        for topic in subscribed_topics(metadata)? {
            subscribers.entry(topic).or_default().push(id.clone());
        }
    }
    let mut assigned: BTreeMap<String, Vec<TopicPartition>> =
        members.iter().map(|(id, _)| (id.clone(), Vec::new())).collect();
    for (topic, mut ids) in subscribers {
        ids.sort();
        let count = partitions.get(&topic).copied().unwrap_or(0) as usize;
        let (each, extra) = (count / ids.len(), count % ids.len());
        let mut next = 0;
        for (i, id) in ids.iter().enumerate() {
            let take = each + usize::from(i < extra);
            let mut tp = TopicPartition::default();
            tp.topic = TopicName(StrBytes::from_string(topic.clone()));
            tp.partitions = (next..next + take).map(|p| p as i32).collect();
            next += take;
            assigned.get_mut(id).expect("every subscriber is a member").push(tp);
        }
    }
    Ok(assigned
        .into_iter()
        .map(|(id, partitions)| {
            let mut a = ConsumerProtocolAssignment::default();
            a.assigned_partitions = partitions;
            (id, encode(&a))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_splits_each_topic_among_its_subscribers() {
        let members = vec![
            ("b".to_string(), subscription(&["t".into()])),
            ("a".to_string(), subscription(&["t".into(), "u".into()])),
        ];
        assert_eq!(all_topics(&members).unwrap(), vec!["t".to_string(), "u".to_string()]);
        let counts = BTreeMap::from([("t".to_string(), 5), ("u".to_string(), 2)]);
        let out = range_assign(&members, &counts).unwrap();
        let of = |id: &str| assigned_partitions(&out.iter().find(|(m, _)| m == id).unwrap().1).unwrap();
        let t = |ps: &[u32]| ps.iter().map(|p| ("t".to_string(), *p)).collect::<Vec<_>>();
        let mut a = t(&[0, 1, 2]);
        a.extend([("u".to_string(), 0), ("u".to_string(), 1)]);
        assert_eq!(of("a"), a);
        assert_eq!(of("b"), t(&[3, 4]));
        assert_eq!(subscribed_topics(&members[1].1).unwrap(), vec!["t".to_string(), "u".to_string()]);
        assert!(assigned_partitions(&[]).unwrap().is_empty());
        assert!(subscribed_topics(&[1]).is_err());
    }
}
