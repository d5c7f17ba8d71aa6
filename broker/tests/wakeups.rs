//! Cross-shard wake-ups never get lost.
//!
//! Rill's glommio copy (`vendor/glommio`) orders an executor's going to sleep against another
//! executor's message with `SeqCst` fences on both sides instead of `membarrier`. A lost wake-up
//! would leave a message in a sleeping shard's channel until something else woke it; here
//! nothing else does, so the ping-pong below would hang and the deadline would fail the test.
//! The pauses make both executors park between messages, again and again, so most messages
//! race a shard going to sleep.

use std::sync::mpsc;
use std::time::Duration;

use glommio::LocalExecutorBuilder;
use glommio::channels::channel_mesh::MeshBuilder;

const ROUND_TRIPS: u64 = 20_000;

#[test]
fn ping_pong_between_shards_through_sleeps_loses_no_wakeup() {
    let mesh = MeshBuilder::<u64, _>::full(2, 16);
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for shard in 0..2u64 {
        let (mesh, done_tx) = (mesh.clone(), done_tx.clone());
        let thread = LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .name(&format!("wakeups-{shard}"))
            .spawn(move || async move {
                let (senders, receivers) = mesh.join().await.expect("mesh joins");
                let me = senders.peer_id() as u64;
                let peer = 1 - senders.peer_id();
                let last = 2 * ROUND_TRIPS;
                if me == 0 {
                    senders.send_to(peer, 0).await.expect("peer is there");
                }
                // Shard 1 receives the even numbers, shard 0 the odd ones.
                let mut got = 0u64;
                while let Some(n) = receivers.recv_from(peer).await.expect("a channel from the peer") {
                    assert_eq!(n, 2 * got + (1 - me), "messages arrive in order, none lost");
                    got += 1;
                    if n == last {
                        break;
                    }
                    // Every few messages, pause long enough for the peer to park first.
                    if n % 7 == 0 {
                        glommio::timer::sleep(Duration::from_micros(50 + n % 200)).await;
                    }
                    senders.send_to(peer, n + 1).await.expect("peer is there");
                    if n + 1 == last {
                        break;
                    }
                }
                done_tx.send((senders.peer_id(), got)).expect("main waits");
            })
            .expect("executor starts");
        threads.push(thread);
    }
    drop(done_tx);
    let mut finished = Vec::new();
    for _ in 0..2 {
        match done_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(r) => finished.push(r),
            Err(e) => panic!("a shard stopped hearing its peer after {finished:?}: {e} (lost wake-up)"),
        }
    }
    for t in threads {
        t.join().expect("executor thread");
    }
    finished.sort();
    assert!(finished.iter().all(|(_, got)| *got >= ROUND_TRIPS), "{finished:?}");
}
