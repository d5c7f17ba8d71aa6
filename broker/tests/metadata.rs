//! Topic catalogue and shard table: Kafka's naming rules, balanced placement, persistence
//! across restarts and shard-count changes, damaged files reported.

use proptest::prelude::*;
use rill_broker::metadata::{Metadata, MetadataError, MetadataStore, TopicName, TopicSettings};

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

#[test]
fn topic_names_follow_kafka_rules() {
    for good in ["a", "orders", "orders.v2", "my_topic-1", &"x".repeat(249), "..."] {
        TopicName::new(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in ["", ".", "..", "has space", "slash/inside", "ünïcode", &"x".repeat(250), "tab\t"] {
        assert!(matches!(TopicName::new(bad), Err(MetadataError::InvalidName { .. })), "{bad:?} accepted");
    }
}

#[test]
fn partitions_are_balanced_over_shards() {
    let mut m = Metadata::new(4);
    m.create_topic(name("a"), 6, TopicSettings::default()).unwrap();
    m.create_topic(name("b"), 10, TopicSettings::default()).unwrap();
    assert_eq!(m.load_per_shard(), [4, 4, 4, 4]);
    m.add_partitions(&name("a"), 8).unwrap();
    let load = m.load_per_shard();
    assert_eq!(load.iter().sum::<u64>(), 18);
    assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 1);
    assert!(matches!(m.add_partitions(&name("a"), 8), Err(MetadataError::InvalidPartitions(_))));
    let dup = m.create_topic(name("a"), 1, TopicSettings::default());
    assert!(matches!(dup, Err(MetadataError::TopicExists(_))));
    let zero = m.create_topic(name("z"), 0, TopicSettings::default());
    assert!(matches!(zero, Err(MetadataError::InvalidPartitions(_))));
    m.delete_topic(&name("b")).unwrap();
    assert!(matches!(m.delete_topic(&name("b")), Err(MetadataError::UnknownTopic(_))));
}

#[test]
fn persists_across_restarts_and_shard_count_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::new(dir.path());
    assert!(store.load().unwrap().is_none(), "a new node has no metadata");
    let mut m = Metadata::new(4);
    let settings = TopicSettings {
        retention_ms: Some(60_000),
        durability: Some("always".into()),
        ..TopicSettings::default()
    };
    m.create_topic(name("events"), 16, settings).unwrap();
    store.save(&m).unwrap();
    assert_eq!(store.load().unwrap().unwrap(), m);

    // Fewer cores after a restart: partitions of missing shards move, the others stay.
    let before = m.topics[&name("events")].shards.clone();
    let moved = m.adapt_to_shards(2);
    let after = &m.topics[&name("events")].shards;
    assert_eq!(moved, before.iter().filter(|s| **s >= 2).count());
    for (b, a) in before.iter().zip(after) {
        if *b < 2 {
            assert_eq!(a, b, "partitions on surviving shards keep their shard");
        }
        assert!(*a < 2);
    }
    assert_eq!(m.load_per_shard(), [8, 8]);
    store.save(&m).unwrap();
    assert_eq!(store.load().unwrap().unwrap(), m);
}

#[test]
fn a_leftover_temp_file_is_ignored_and_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::new(dir.path());
    let mut m = Metadata::new(2);
    m.create_topic(name("t"), 3, TopicSettings::default()).unwrap();
    store.save(&m).unwrap();
    // A crash while writing the next version leaves a torn temp file: the old file stands.
    std::fs::write(dir.path().join("metadata.toml.tmp"), "shard_count = 2\n[topics.t]\nshar").unwrap();
    assert_eq!(store.load().unwrap().unwrap(), m);
    let bad_name = "shard_count = 2\n[topics.\"bad name\"]\nshards = [0]\n[topics.\"bad name\".settings]\n";
    std::fs::write(dir.path().join("metadata.toml"), bad_name).unwrap();
    assert!(matches!(store.load(), Err(MetadataError::Damaged { .. })));
    let bad_shard = "shard_count = 2\n[topics.t]\nshards = [5]\n[topics.t.settings]\n";
    std::fs::write(dir.path().join("metadata.toml"), bad_shard).unwrap();
    assert!(matches!(store.load(), Err(MetadataError::Damaged { .. })));
}

proptest! {
    #[test]
    fn placement_stays_within_shards_and_counts_agree(
        ops in proptest::collection::vec((0u8..3, 0usize..6, 1u32..20), 1..60),
        shards in 1u32..9,
    ) {
        let mut m = Metadata::new(shards);
        let names: Vec<TopicName> = (0..6).map(|i| name(&format!("t{i}"))).collect();
        let mut only_growth = true;
        for (op, which, n) in ops {
            let topic = &names[which];
            let _ = match op {
                0 => m.create_topic(topic.clone(), n, TopicSettings::default()).map(|_| ()),
                1 => {
                    let total = m.topics.get(topic).map_or(n, |t| t.shards.len() as u32 + n);
                    m.add_partitions(topic, total).map(|_| ())
                }
                _ => {
                    only_growth = false;
                    m.delete_topic(topic).map(|_| ())
                }
            };
            for t in m.topics.values() {
                prop_assert!(t.shards.iter().all(|s| *s < shards));
            }
        }
        let load = m.load_per_shard();
        let partitions: u64 = m.topics.values().map(|t| t.shards.len() as u64).sum();
        prop_assert_eq!(load.iter().sum::<u64>(), partitions);
        if only_growth {
            prop_assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 1, "{load:?}");
        }
    }
}
