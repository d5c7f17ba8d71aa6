//! The shard's unit tests: memory budgets shared by the partitions a shard holds.

use super::*;
use crate::cluster::metadata::TopicSettings;
use glommio::channels::channel_mesh::MeshBuilder;

/// Topics created one at a time used to keep the shares computed when each was opened: the
/// first partition kept the whole shard budget, the second half of it, and so on, so the
/// shard's cache budget grew with every topic. (Seen failing before the fix: two one-partition
/// topics held 1.5 times the shard's cache budget, eight would hold 2.7 times.)
#[test]
fn topics_created_one_by_one_share_the_shard_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let (senders, _receivers) = MeshBuilder::<Msg, _>::full(1, 16).join().await.unwrap();
            let profile = Profile::shipped("small-vm");
            let budget = profile.memory.cache_bytes_per_shard as usize;
            let shutdown = Arc::new(AtomicBool::new(false));
            let shard =
                std::rc::Rc::new(Shard::new(0, data, profile, Metadata::new(1), senders, vec![0], shutdown));
            let mut metadata = Metadata::new(1);
            for i in 0..8 {
                let name = TopicName::new(&format!("t{i}")).unwrap();
                metadata.create_topic(name, 1, TopicSettings::default()).unwrap();
                shard.apply(metadata.clone()).await;
                let (cache, _) = shard.memory_budgets();
                assert!(cache <= budget, "{} topics: caches of {cache} bytes, budget {budget}", i + 1);
            }
            let (cache, _) = shard.memory_budgets();
            assert!(cache * 10 >= budget * 9, "the shares use the budget: {cache} of {budget}");
            // Deleting topics gives the rest a larger share again.
            for i in 0..6 {
                metadata.delete_topic(&TopicName::new(&format!("t{i}")).unwrap()).unwrap();
            }
            shard.apply(metadata.clone()).await;
            let (cache, _) = shard.memory_budgets();
            assert!(cache <= budget && cache * 10 >= budget * 9, "{cache} of {budget}");
            shard.close_logs().await;
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A node's shard adopts a view taken before the node registered its shard count (the cluster
/// state then gives it one shard): shard 1 must take it, not index past the view's shard table.
/// (Seen failing before the fix: index out of bounds in `rebalance_memory`, which ended a
/// three-node cluster's second shard in the first multi-shard benchmark.)
#[test]
fn a_view_with_fewer_shards_than_the_node_runs_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let (senders, _receivers) = MeshBuilder::<Msg, _>::full(1, 16).join().await.unwrap();
            let profile = Profile::shipped("small-vm");
            let shutdown = Arc::new(AtomicBool::new(false));
            let shard = std::rc::Rc::new(Shard::new(
                1,
                data,
                profile,
                Metadata::new(2),
                senders,
                vec![0, 0],
                shutdown,
            ));
            let mut view = Metadata::new(1);
            view.create_topic(TopicName::new("early").unwrap(), 1, TopicSettings::default()).unwrap();
            shard.apply(view).await;
            assert_eq!(shard.memory_budgets(), (0, 0), "the topic is on shard 0, none here");
            shard.close_logs().await;
        })
        .unwrap()
        .join()
        .unwrap();
}
