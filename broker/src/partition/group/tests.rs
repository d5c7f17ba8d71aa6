//! The group coordinator against a real offsets log on a glommio executor.

use std::collections::HashSet;

use super::compaction::sibling;
use super::*;

#[test]
fn keys_and_values_round_trip() {
    let key = encode_key("g", "orders", 7);
    assert_eq!(decode_key(&key), Some(("g".into(), "orders".into(), 7)));
    let c = Committed { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_ms: 9 };
    assert_eq!(decode_value(&encode_value(&c)), Some(c));
    assert_eq!(decode_key(&key[..5]), None);
    assert_eq!(decode_value(&[1, 2, 3]), None);
}

fn in_executor<F, Fut>(f: F)
where
    F: FnOnce(std::path::PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets");
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || f(path))
        .unwrap()
        .join()
        .unwrap();
}

fn join_request(group: &str, member: &str) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

async fn open(path: &std::path::Path) -> Rc<Coordinator> {
    let clock: Rc<dyn rill_storage::Clock> = Rc::new(rill_storage::SystemClock);
    let log = Log::open(path, rill_storage::LogConfig::default(), clock).await.unwrap();
    let c = Rc::new(Coordinator::default());
    assert!(c.open(log, 0, 1).await.unwrap().is_empty());
    c
}

#[test]
fn the_classic_protocol_answers_where_kafka_does() {
    in_executor(|path| async move {
        let c = open(&path).await;
        // A new member first gets an id.
        let first = c.join(join_request("g", "")).await;
        assert_eq!(first.error, MEMBER_ID_REQUIRED);
        assert_eq!(c.join(join_request("g", "made-up")).await.error, UNKNOWN_MEMBER_ID);
        let a = first.member_id.clone();
        let joined = c.join(join_request("g", &a)).await;
        assert_eq!((joined.error, joined.generation, joined.leader.as_str()), (0, 1, a.as_str()));
        assert_eq!(joined.members.len(), 1, "the leader gets the members");
        // Before the leader's sync, heartbeats are fine; a wrong generation is not.
        assert_eq!(c.heartbeat("g", 1, &a, None), 0);
        assert_eq!(c.heartbeat("g", 0, &a, None), ILLEGAL_GENERATION);
        assert_eq!(c.heartbeat("g", 1, "nobody", None), UNKNOWN_MEMBER_ID);
        assert_eq!(c.check_commit("g", 1, &a, None), REBALANCE_IN_PROGRESS, "no commits before the sync");
        let (error, assignment) =
            c.sync("g", 1, (&a, None), vec![(a.clone(), Bytes::from_static(b"all"))]).await;
        assert_eq!((error, &assignment[..]), (0, &b"all"[..]));
        assert_eq!(c.check_commit("g", 1, &a, None), 0);
        assert_eq!(c.check_commit("g", 0, &a, None), ILLEGAL_GENERATION, "stale generation");
        assert_eq!(
            c.check_commit("g", -1, "", None),
            UNKNOWN_MEMBER_ID,
            "standalone commits need an empty group"
        );
        // A second member starts a rebalance: the first hears REBALANCE_IN_PROGRESS.
        let b = c.join(join_request("g", "")).await.member_id;
        let c2 = c.clone();
        let b_join = glommio::spawn_local(async move { c2.join(join_request("g", &b)).await });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(c.heartbeat("g", 1, &a, None), REBALANCE_IN_PROGRESS);
        assert_eq!(c.sync("g", 1, (&a, None), vec![]).await.0, REBALANCE_IN_PROGRESS);
        let rejoined = c.join(join_request("g", &a)).await;
        let b_joined = b_join.await;
        assert_eq!((rejoined.generation, b_joined.generation), (2, 2));
        assert_eq!(rejoined.leader, a, "the earliest member keeps leading");
        assert!(b_joined.members.is_empty(), "followers get no member list");
        // The follower's sync waits for the leader's.
        let (c3, bid) = (c.clone(), b_joined.member_id.clone());
        let b_sync = glommio::spawn_local(async move { c3.sync("g", 2, (&bid, None), vec![]).await });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"p0")),
            (b_joined.member_id.clone(), Bytes::from_static(b"p1")),
        ];
        assert_eq!(c.sync("g", 2, (&a, None), assignments).await, (0, Bytes::from_static(b"p0")));
        assert_eq!(b_sync.await, (0, Bytes::from_static(b"p1")));
        // Leaving empties the group; then standalone commits are allowed.
        assert_eq!(c.leave("g", &[(a.clone(), None), (b_joined.member_id.clone(), None)]), vec![0, 0]);
        assert_eq!(c.check_commit("g", -1, "", None), 0);
        assert_eq!(c.groups.borrow()["g"].phase, Phase::Empty);
        c.close().await;
    });
}

#[test]
fn commits_replay_with_the_latest_value_and_deletes() {
    in_executor(|path| async move {
        let c = open(&path).await;
        let commit = |offset| Committed { offset, leader_epoch: 0, metadata: "m".into(), commit_ms: offset };
        c.persist(&[("g".into(), "t".into(), 0, commit(5)), ("g".into(), "t".into(), 1, commit(7))])
            .await
            .unwrap();
        c.persist(&[("g".into(), "t".into(), 0, commit(9))]).await.unwrap();
        c.persist(&[("h".into(), "t".into(), 0, commit(1))]).await.unwrap();
        assert_eq!(c.delete("h").await, 0);
        c.close().await;
        let c = open(&path).await;
        let offsets = c.offsets.borrow();
        assert_eq!(offsets["g"][&("t".to_string(), 0)].offset, 9, "the latest commit wins");
        assert_eq!(offsets["g"][&("t".to_string(), 1)].offset, 7);
        assert!(offsets.get("h").is_none_or(|m| m.is_empty()), "deleted group stays deleted");
    });
}

#[test]
fn deletions_hold_for_topics_and_for_groups_that_moved_shard() {
    in_executor(|path| async move {
        let c = open(&path).await;
        let commit = |offset| Committed { offset, leader_epoch: 0, metadata: "m".into(), commit_ms: offset };
        // Two groups that hash to different shards out of two.
        let (a, b) = (
            "g-0",
            (1..100)
                .map(|i| format!("g-{i}"))
                .find(|g| coordinator_shard(g, 2) != coordinator_shard("g-0", 2))
                .unwrap(),
        );
        for g in [a.to_string(), b.clone()] {
            c.persist(&[(g.clone(), "gone".into(), 0, commit(5)), (g.clone(), "kept".into(), 0, commit(6))])
                .await
                .unwrap();
        }
        assert_eq!(c.forget_topics(|t| t == "kept").await, Ok(2));
        assert!(c.offsets.borrow().values().all(|m| m.keys().all(|(t, _)| t == "kept")));
        c.close().await;
        // Reopened as one of two shards: the other shard's group comes back as foreign, without
        // the deleted topic's offset.
        let clock: Rc<dyn rill_storage::Clock> = Rc::new(rill_storage::SystemClock);
        let log = Log::open(&path, rill_storage::LogConfig::default(), clock).await.unwrap();
        let c = Rc::new(Coordinator::default());
        let mine = coordinator_shard(a, 2);
        let foreign = c.open(log, mine, 2).await.unwrap();
        let foreign: Vec<(String, String)> = foreign.into_iter().map(|(g, t, _, _)| (g, t)).collect();
        assert_eq!(foreign, vec![(b.clone(), "kept".to_string())]);
        let offsets = c.offsets.borrow();
        assert_eq!(offsets[a].keys().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), vec!["kept"]);
    });
}

#[test]
fn offsets_of_groups_without_members_expire_after_the_retention() {
    in_executor(|path| async move {
        let c = open(&path).await;
        let day = 86_400_000i64;
        let now = now_ms();
        let commit =
            |at: i64| Committed { offset: 1, leader_epoch: 0, metadata: String::new(), commit_ms: at };
        // Standalone commits (no group state): the later of the commit and the start counts.
        let standalone = [(0, now - 8 * day), (1, now), (2, now + 2 * day)];
        let entries: Vec<_> =
            standalone.iter().map(|(p, at)| ("old".to_string(), "t".to_string(), *p, commit(*at))).collect();
        c.persist(&entries).await.unwrap();
        // A group with a live member keeps even old offsets.
        let a = c.join(join_request("live", "")).await.member_id;
        let joined = c.join(join_request("live", &a)).await;
        c.sync("live", joined.generation, (&a, None), vec![(a.clone(), Bytes::new())]).await;
        c.persist(&[("live".into(), "t".into(), 0, commit(now - 30 * day))]).await.unwrap();
        // An emptied group: its old offsets wait a retention from when it emptied.
        let b = c.join(join_request("left", "")).await.member_id;
        let joined = c.join(join_request("left", &b)).await;
        c.sync("left", joined.generation, (&b, None), vec![(b.clone(), Bytes::new())]).await;
        c.persist(&[("left".into(), "t".into(), 0, commit(now - 30 * day))]).await.unwrap();
        assert_eq!(c.leave("left", &[(b, None)]), vec![0]);

        assert_eq!(c.expire_offsets(now, 7 * day).await, Ok((0, 0)), "nothing is a retention past the start");
        // Eight days on: old/t-0 and t-1 and left/t-0, and the emptied group itself.
        assert_eq!(c.expire_offsets(now + 8 * day, 7 * day).await, Ok((3, 1)));
        let remaining: Vec<(String, i32)> = c.offsets.borrow()["old"].keys().cloned().collect();
        assert_eq!(remaining, vec![("t".to_string(), 2)], "committed six days before: kept");
        assert!(c.offsets.borrow().get("left").is_none());
        assert!(c.groups.borrow().get("left").is_none(), "an Empty group without offsets is forgotten");
        assert!(c.groups.borrow().contains_key("live") && c.offsets.borrow().contains_key("live"));
        c.close().await;
        // The expiry was written: a restart does not bring the offsets back.
        let c = open(&path).await;
        let mut groups: Vec<String> = c.offsets.borrow().keys().cloned().collect();
        groups.sort();
        assert_eq!(groups, vec!["live".to_string(), "old".to_string()]);
    });
}

#[test]
fn compaction_keeps_the_latest_commit_per_key_and_shrinks_the_log() {
    in_executor(|path| async move {
        let config = rill_storage::LogConfig {
            segment_size_bytes_max: 1 << 20,
            batch_bytes_max: 64 << 10,
            write_buffer_bytes_max: 256 << 10,
            ..Default::default()
        };
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, config.clone(), 0, 1).await.unwrap();
        c.compact_bytes_min.set(256 << 10);
        let commit =
            |offset| Committed { offset, leader_epoch: 0, metadata: "x".repeat(200), commit_ms: offset };
        for i in 0..3000i64 {
            let entries = [("g".to_string(), "t".to_string(), (i % 4) as i32, commit(i))];
            c.persist(&entries).await.unwrap();
        }
        while c.compacting.get() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let size = c.log.borrow().as_ref().unwrap().stats().size_bytes;
        assert!(size < 256 << 10, "compacted to {size} bytes");
        c.close().await;
        // A crash between the two renames leaves only `<dir>.compact`: the next open uses it.
        let compact = sibling(&path, "compact");
        std::fs::rename(&path, &compact).unwrap();
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, config, 0, 1).await.unwrap();
        let offsets = c.offsets.borrow();
        let latest: Vec<i64> = (0..4).map(|p| offsets["g"][&("t".to_string(), p)].offset).collect();
        assert_eq!(latest, vec![2996, 2997, 2998, 2999]);
        assert!(!compact.exists());
    });
}

#[test]
fn groups_spread_over_shards_stably() {
    assert_eq!(coordinator_shard("orders-app", 4), coordinator_shard("orders-app", 4));
    let shards: HashSet<usize> = (0..64).map(|i| coordinator_shard(&format!("g{i}"), 4)).collect();
    assert_eq!(shards.len(), 4);
}

#[test]
fn misbehaving_clients_get_errors_not_memory_growth() {
    in_executor(|path| async move {
        let c = open(&path).await;
        // Heartbeats and syncs for groups nobody joined create nothing.
        assert_eq!(c.heartbeat("ghost", 1, "m", None), UNKNOWN_MEMBER_ID);
        assert_eq!(c.sync("ghost", 1, ("m", None), vec![]).await.0, UNKNOWN_MEMBER_ID);
        assert!(c.groups.borrow().is_empty());
        // Oversized metadata is refused.
        let mut big = join_request("g", "");
        big.protocols = vec![("range".into(), Bytes::from(vec![0u8; MEMBER_BLOB_BYTES_MAX + 1]))];
        assert_eq!(c.join(big).await.error, INCONSISTENT_GROUP_PROTOCOL);
        // A join storm: ids handed out with MEMBER_ID_REQUIRED are capped per group.
        for _ in 0..MEMBERS_PER_GROUP_MAX + 50 {
            assert_eq!(c.join(join_request("storm", "")).await.error, MEMBER_ID_REQUIRED);
        }
        assert_eq!(c.groups.borrow()["storm"].pending.len(), MEMBERS_PER_GROUP_MAX);
        // Session timeouts outside Kafka's bounds are refused.
        let mut short = join_request("g", "");
        short.session_timeout_ms = 10;
        assert_eq!(c.join(short).await.error, INVALID_SESSION_TIMEOUT);
        c.close().await;
    });
}

#[test]
fn a_restarted_static_member_replaces_and_fences_the_old_instance_without_a_rebalance() {
    in_executor(|path| async move {
        let c = open(&path).await;
        let static_join =
            |member: &str| JoinRequest { instance_id: Some("pod-1".into()), ..join_request("s", member) };
        // A dynamic leader, then a static follower: one rebalance to generation 2.
        let leader = c.join(join_request("s", "")).await.member_id;
        assert_eq!(c.join(join_request("s", &leader)).await.generation, 1);
        assert_eq!(
            c.sync("s", 1, (&leader, None), vec![(leader.clone(), Bytes::from_static(b"all"))]).await.0,
            0
        );
        let c2 = c.clone();
        let s_join = glommio::spawn_local(async move { c2.join(static_join("")).await });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let l = c.join(join_request("s", &leader)).await;
        let member = s_join.await;
        assert_eq!((l.generation, member.generation), (2, 2));
        let c3 = c.clone();
        let id = member.member_id.clone();
        let s_sync = glommio::spawn_local(async move { c3.sync("s", 2, (&id, None), vec![]).await });
        let given = vec![
            (leader.clone(), Bytes::from_static(b"a")),
            (member.member_id.clone(), Bytes::from_static(b"b")),
        ];
        assert_eq!(c.sync("s", 2, (&leader, None), given).await.0, 0);
        assert_eq!(s_sync.await, (0, Bytes::from_static(b"b")));
        // The static member's process restarts: no member id, same instance id. It replaces
        // the old instance under a new member id (KIP-345), without a rebalance.
        let again = c.join(static_join("")).await;
        assert_ne!(again.member_id, member.member_id, "a new member id");
        assert_eq!((again.error, again.generation), (0, 2), "no rebalance");
        assert_eq!(
            c.sync("s", 2, (&again.member_id, Some("pod-1")), vec![]).await,
            (0, Bytes::from_static(b"b")),
            "same assignment"
        );
        assert_eq!(c.heartbeat("s", 2, &leader, None), 0, "the leader is undisturbed");
        // The old instance is fenced on every group request that names its instance id.
        let old = member.member_id.as_str();
        assert_eq!(c.heartbeat("s", 2, old, Some("pod-1")), FENCED_INSTANCE_ID);
        assert_eq!(c.sync("s", 2, (old, Some("pod-1")), vec![]).await.0, FENCED_INSTANCE_ID);
        assert_eq!(c.check_commit("s", 2, old, Some("pod-1")), FENCED_INSTANCE_ID);
        assert_eq!(c.join(static_join(old)).await.error, FENCED_INSTANCE_ID);
        assert_eq!(c.leave("s", &[(old.to_string(), Some("pod-1".into()))]), [FENCED_INSTANCE_ID]);
        assert_eq!(c.heartbeat("s", 2, old, None), UNKNOWN_MEMBER_ID, "without it, the id is unknown");
        assert_eq!(c.heartbeat("s", 2, &again.member_id, Some("pod-1")), 0, "the new one stays");
        c.close().await;
    });
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    in_executor(|path| async move {
        let c = open(&path).await;
        let quick = |member: &str| JoinRequest {
            rebalance_timeout_ms: 1_000,
            session_timeout_ms: 1_000,
            ..join_request("r", member)
        };
        let a = c.join(quick("")).await.member_id;
        let b = c.join(quick("")).await.member_id;
        let (ca, cb) = (c.clone(), c.clone());
        let (a2, b2) = (a.clone(), b.clone());
        let ja = glommio::spawn_local(async move { ca.join(quick(&a2)).await });
        let jb = glommio::spawn_local(async move { cb.join(quick(&b2)).await });
        let (ja, jb) = (ja.await, jb.await);
        assert_eq!((ja.generation, jb.generation), (1, 1));
        let leader = ja.leader.clone();
        let follower = if leader == a { b.clone() } else { a.clone() };
        assert_eq!(c.sync("r", 1, (&leader, None), vec![]).await.0, 0);
        // A third member joins; the leader rejoins, the other member never does (a consumer
        // stuck past max.poll.interval): at the deadline the rebalance completes without it.
        let newcomer = c.join(quick("")).await.member_id;
        let (cn, cl) = (c.clone(), c.clone());
        let (n2, l2) = (newcomer.clone(), leader.clone());
        let jn = glommio::spawn_local(async move { cn.join(quick(&n2)).await });
        let jl = glommio::spawn_local(async move { cl.join(quick(&l2)).await });
        let started = std::time::Instant::now();
        let (jn, jl) = (jn.await, jl.await);
        assert_eq!((jn.generation, jl.generation), (2, 2));
        assert!(started.elapsed() >= Duration::from_millis(900), "completed at the rebalance deadline");
        assert!(!c.groups.borrow()["r"].members.contains_key(&follower), "the laggard was removed");
        assert_eq!(c.heartbeat("r", 2, &follower, None), UNKNOWN_MEMBER_ID);
        c.close().await;
    });
}

#[test]
fn standalone_commits_count_against_the_group_cap() {
    in_executor(|path| async move {
        let c = open(&path).await;
        assert_eq!(c.check_commit("solo", -1, "", None), 0);
        for i in 0..GROUPS_PER_SHARD_MAX {
            c.offsets.borrow_mut().insert(format!("standalone-{i}"), GroupOffsets::default());
        }
        assert_eq!(c.check_commit("one-more", -1, "", None), GROUP_MAX_SIZE_REACHED);
        assert_eq!(c.check_commit("standalone-7", -1, "", None), 0, "a known group goes on");
        c.offsets.borrow_mut().remove("standalone-0");
        assert_eq!(c.check_commit("one-more", -1, "", None), 0);
        c.close().await;
    });
}

fn small_log_config() -> rill_storage::LogConfig {
    rill_storage::LogConfig {
        segment_size_bytes_max: 1 << 20,
        batch_bytes_max: 64 << 10,
        write_buffer_bytes_max: 256 << 10,
        ..Default::default()
    }
}

fn committed(offset: i64) -> Committed {
    Committed { offset, leader_epoch: 0, metadata: String::new(), commit_ms: offset }
}

/// A failed compaction used to leave the offsets log closed until restart: every later commit
/// failed with KAFKA_STORAGE_ERROR. (Seen failing before the fix.)
#[test]
fn a_failed_compaction_leaves_the_offsets_log_open() {
    in_executor(|path| async move {
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, small_log_config(), 0, 1).await.unwrap();
        c.persist(&[("g".into(), "t".into(), 0, committed(1))]).await.unwrap();
        // The swap's first rename cannot replace a non-empty directory.
        let old = sibling(&path, "old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("in-the-way"), b"x").unwrap();
        let error = c.compact().await.unwrap_err();
        assert!(error.contains("swapping"), "{error}");
        assert!(c.is_open());
        c.persist(&[("g".into(), "t".into(), 0, committed(2))]).await.unwrap();
        c.close().await;
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, small_log_config(), 0, 1).await.unwrap();
        assert_eq!(c.offsets.borrow()["g"][&("t".to_string(), 0)].offset, 2);
    });
}

/// While a compaction has the log closed for its swap, the coordinator still counts as open, so
/// a topic deletion applied then still removes the topic's offsets (it waits for the gate). The
/// shard used to skip the deletion in that window, and the offsets came back for a re-created
/// topic. (Seen failing before the fix.)
#[test]
fn a_topic_deletion_during_compaction_removes_its_offsets() {
    in_executor(|path| async move {
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, small_log_config(), 0, 1).await.unwrap();
        c.persist(&[
            ("g".into(), "gone".into(), 0, committed(5)),
            ("g".into(), "kept".into(), 0, committed(6)),
        ])
        .await
        .unwrap();
        let compaction = glommio::spawn_local({
            let c = c.clone();
            async move { c.compact().await }
        })
        .detach();
        let mut saw_window = false;
        while c.log.borrow().is_some() || !saw_window {
            if c.log.borrow().is_none() {
                saw_window = true;
                assert!(c.is_open(), "mid-compaction the coordinator counts as open");
                assert_eq!(c.forget_topics(|t| t == "kept").await, Ok(1));
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert!(saw_window);
        compaction.await.unwrap().unwrap();
        c.close().await;
        let c = Rc::new(Coordinator::default());
        c.open_dir(&path, small_log_config(), 0, 1).await.unwrap();
        let keys: Vec<String> = c.offsets.borrow()["g"].keys().map(|(t, _)| t.clone()).collect();
        assert_eq!(keys, vec!["kept".to_string()]);
    });
}
