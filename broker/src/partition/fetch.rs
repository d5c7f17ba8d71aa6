//! Fetch across partitions for both protocols: each part read from its owner within the
//! request's byte budget, Kafka's long-poll (`min_bytes`, `max_wait_ms`), and the response's
//! size rule (only the first batch may exceed `max_bytes`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use rill_net::message::{ErrorCode, FetchPart};

use crate::partition::routing::route;
use crate::partition::shard::{FetchOutcome, Shard, ShardReply, ShardRequest};

/// Reads every part (each from its owner), waiting up to `max_wait_ms` for `min_bytes` as
/// Kafka's fetch does; one outcome per part, in order. The batches returned total at most
/// `max_bytes`, and each part's at most its own `max_bytes`, except that the first batch of
/// the response comes back whatever its size (Kafka's rule, so a consumer always progresses),
/// however many parts the request names and however often it repeats one.
pub(crate) async fn fetch_outcomes(
    shard: &Rc<Shard>,
    parts: &[FetchPart],
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
) -> Vec<FetchOutcome> {
    let network = &shard.profile().network;
    let max_bytes = max_bytes.min(network.fetch_response_bytes_max);
    let max_wait_ms = max_wait_ms.min(network.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    let mut outcomes = fetch_round(shard, parts, max_bytes).await;
    let available: usize = outcomes.iter().map(FetchOutcome::bytes).sum();
    let errors = outcomes.iter().any(|o| o.error != ErrorCode::None);
    if available < (min_bytes as usize).max(1) && !errors && max_wait_ms > 0 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        wait_any(shard, parts, remaining).await;
        outcomes = fetch_round(shard, parts, max_bytes).await;
    }
    trim(parts, &mut outcomes, max_bytes as usize);
    outcomes
}

/// Reads all parts at once, each within its share of the budget (batches that do not fit stay
/// behind). If that finds nothing while some part has data (its next batch is larger than its
/// share), the first such part is read again allowed one batch of any size.
async fn fetch_round(shard: &Rc<Shard>, parts: &[FetchPart], max_bytes: u32) -> Vec<FetchOutcome> {
    let mut tasks = Vec::new();
    // Shares are handed out in request order; once the budget is spent, later parts only
    // report their offsets (a share of 0 reads nothing).
    let mut budget = max_bytes;
    for part in parts {
        let (shard, part) = (shard.clone(), part.clone());
        let share = part.max_bytes.min(budget);
        budget -= share;
        tasks.push(glommio::spawn_local(async move { fetch_one(&shard, &part, share, false, 0).await }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    if out.iter().all(|o| o.batches.is_empty()) {
        let first_with_data = parts
            .iter()
            .zip(&out)
            .position(|(part, o)| o.error == ErrorCode::None && o.high_watermark > part.offset);
        if let Some(i) = first_with_data {
            let share = parts[i].max_bytes.min(max_bytes).max(1);
            out[i] = fetch_one(shard, &parts[i], share, true, 0).await;
        }
    }
    out
}

/// Enforces the response's size rule on whatever the owners returned: each part keeps the
/// prefix of its batches that fits both its own limit and what is left of `max_bytes`, except
/// that the response's first batch is always kept.
fn trim(parts: &[FetchPart], outcomes: &mut [FetchOutcome], max_bytes: usize) {
    let mut used = 0usize;
    for (part, outcome) in parts.iter().zip(outcomes.iter_mut()) {
        let mut part_used = 0usize;
        let keep = outcome
            .batches
            .iter()
            .take_while(|b| {
                let first = used == 0;
                let fits = used + b.len() <= max_bytes && part_used + b.len() <= part.max_bytes as usize;
                if first || fits {
                    used += b.len();
                    part_used += b.len();
                    true
                } else {
                    false
                }
            })
            .count();
        outcome.batches.truncate(keep);
    }
}

async fn fetch_one(
    shard: &Rc<Shard>,
    part: &FetchPart,
    max_bytes: u32,
    min_one: bool,
    wait_ms: u32,
) -> FetchOutcome {
    let empty = |error| FetchOutcome { error, log_start: 0, high_watermark: 0, batches: Vec::new() };
    let (name, owner) = match route(shard, &part.topic, part.partition) {
        Ok(r) => r,
        Err(e) => return empty(e),
    };
    let request = ShardRequest::Fetch {
        topic: name,
        partition: part.partition,
        offset: part.offset,
        max_bytes,
        min_one,
        wait_ms,
    };
    match shard.call(owner, request).await {
        ShardReply::Fetched(outcome) => outcome,
        _ => empty(ErrorCode::ShuttingDown),
    }
}

/// Returns when any partition has data at its fetch offset, or after `timeout`.
async fn wait_any(shard: &Rc<Shard>, parts: &[FetchPart], timeout: Duration) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded(parts.len().max(1));
    let tx = Rc::new(tx);
    let wait_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
    let mut tasks = Vec::new();
    for part in parts {
        let (shard, part, tx) = (shard.clone(), part.clone(), tx.clone());
        tasks.push(glommio::spawn_local(async move {
            // Wait without reading: the owner answers with offsets once data is there.
            let outcome = fetch_one(&shard, &part, 0, false, wait_ms).await;
            let _ = tx.try_send(outcome.error != ErrorCode::None || outcome.high_watermark > part.offset);
        }));
    }
    drop(tx);
    let timer = glommio::timer::sleep(timeout);
    let first = async {
        while let Some(got) = rx.recv().await {
            if got {
                return;
            }
        }
    };
    futures_lite::future::or(first, timer).await;
    // The remaining waits end at their own timeout; their answers are ignored.
    for t in tasks {
        t.detach();
    }
}
