//! `rill bench`: the load generator. Producers and consumers run as glommio tasks on one
//! executor, each with its own connection; every message carries its send time, so consumers
//! measure end-to-end latency. Figures come from raw counts and elapsed time; percentiles from
//! HDR histograms of every batch (weighted by its messages), never smoothed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rill_net::message::{
    Acks, ErrorCode, FetchPart, FetchResult, OffsetSpec, ProducePart, RequestBody, ResponseBody,
    TopicSettings,
};
use rill_net::record_batch::{BatchBuilder, Record, first_value, split_batches};
use serde::Serialize;

use crate::client::{Client, Protocol};
use crate::workload::{Keys, Workload};

/// Arguments of `rill bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Broker address (default: 127.0.0.1:9300 for native, 127.0.0.1:9092 for kafka).
    #[arg(long)]
    pub broker: Option<String>,
    /// Protocol: native (Rill's own) or kafka (any Kafka-compatible broker).
    #[arg(long, default_value = "native")]
    pub protocol: String,
    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the latency distributions as an SVG plot to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// The workload.
    #[command(flatten)]
    pub workload: crate::workload::WorkloadArgs,
}

/// Percentiles of one latency distribution, microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    /// Samples (messages).
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest sample.
    pub max: u64,
    /// The distribution as (percentile, microseconds) points from 0 to 99.999, for plots.
    pub curve: Vec<(f64, u64)>,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            curve: crate::plot::curve(h),
        }
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The workload that ran.
    pub workload: Workload,
    /// Measured seconds.
    pub seconds: f64,
    /// Messages acknowledged in the measured window.
    pub published_msgs: u64,
    /// Messages per second published.
    pub publish_msgs_per_s: f64,
    /// Megabytes (10^6) per second published.
    pub publish_mb_per_s: f64,
    /// Messages consumed in the measured window.
    pub consumed_msgs: u64,
    /// Megabytes per second consumed.
    pub consume_mb_per_s: f64,
    /// Publish latency (send to acknowledgement), microseconds.
    pub publish_latency_us: Percentiles,
    /// End-to-end latency (send to consumed), microseconds.
    pub end_to_end_latency_us: Percentiles,
    /// Catch-up read of everything produced, from the earliest offset (MB/s of messages).
    pub backlog_consume_mb_per_s: Option<f64>,
    /// With a target rate: how late the load generator sent each batch against its schedule,
    /// microseconds. Latencies count from the schedule, so a generator that was itself held up
    /// (a busy or descheduled CPU) shows here as well as in the latencies.
    pub generator_lag_us: Option<Percentiles>,
    /// With a consumer group and `rebalance_at_s`: milliseconds from a member's leave until all
    /// its partitions were owned by others.
    pub rebalance_ms: Option<f64>,
}

/// A message counts when its send time falls in the measured window, on both sides: so after
/// the drain every message counted as published must be counted as consumed.
pub(crate) struct Counters {
    window_start_us: Cell<u64>,
    window_end_us: Cell<u64>,
    measuring: Cell<bool>,
    stop: Cell<bool>,
    published_msgs: Cell<u64>,
    published_bytes: Cell<u64>,
    consumed_msgs: Cell<u64>,
    consumed_bytes: Cell<u64>,
    publish: RefCell<Option<Histogram<u64>>>,
    e2e: RefCell<Option<Histogram<u64>>>,
    /// With a target rate: how late each batch left against its schedule.
    lag: RefCell<Option<Histogram<u64>>>,
    pub(crate) errors: Cell<u64>,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            window_start_us: Cell::new(u64::MAX),
            window_end_us: Cell::new(u64::MAX),
            measuring: Cell::new(false),
            stop: Cell::new(false),
            published_msgs: Cell::new(0),
            published_bytes: Cell::new(0),
            consumed_msgs: Cell::new(0),
            consumed_bytes: Cell::new(0),
            publish: RefCell::new(Some(histogram())),
            e2e: RefCell::new(Some(histogram())),
            lag: RefCell::new(Some(histogram())),
            errors: Cell::new(0),
        }
    }

    fn in_window(&self, sent_us: u64) -> bool {
        sent_us >= self.window_start_us.get() && sent_us < self.window_end_us.get()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Runs a workload against a broker and returns the figures.
pub fn run_bench(args: BenchArgs) -> anyhow::Result<BenchResult> {
    let protocol: Protocol = args.protocol.parse()?;
    let workload = args.workload.resolve()?;
    let broker = args.broker.clone().unwrap_or_else(|| match protocol {
        Protocol::Native => "127.0.0.1:9300".to_string(),
        Protocol::Kafka => "127.0.0.1:9092".to_string(),
    });
    crate::on_executor_unpinned(move || async move { bench(protocol, &broker, workload).await })?
}

async fn bench(protocol: Protocol, broker: &str, w: Workload) -> anyhow::Result<BenchResult> {
    let admin = Client::connect(protocol, broker).await?;
    // Topics made beforehand (a cluster's, whose leader the caller pointed `broker` at) stay.
    let to_create = if w.existing_topics { Vec::new() } else { w.topic_names() };
    for topic in to_create {
        let _ = admin.call(&RequestBody::DeleteTopic { name: topic.clone() }, &[]).await?;
        let settings =
            TopicSettings { durability: Some(w.topic_durability.clone()), ..TopicSettings::default() };
        let (reply, _) = admin
            .call(
                &RequestBody::CreateTopic {
                    name: topic.clone(),
                    partitions: w.partitions_per_topic,
                    replication_factor: w.replication_factor,
                    settings,
                },
                &[],
            )
            .await?;
        let reply = match reply {
            // Other Kafka-compatible brokers refuse Rill's `rill.durability` topic config.
            ResponseBody::Status { error, .. } if error != ErrorCode::None && protocol == Protocol::Kafka => {
                let body = RequestBody::CreateTopic {
                    name: topic.clone(),
                    partitions: w.partitions_per_topic,
                    replication_factor: w.replication_factor,
                    settings: TopicSettings::default(),
                };
                admin.call(&body, &[]).await?.0
            }
            reply => reply,
        };
        if let ResponseBody::Status { error, message } = reply {
            anyhow::ensure!(error == ErrorCode::None, "creating {topic}: {error:?} {message}");
        }
    }
    let partitions: Vec<(String, u32)> = w
        .topic_names()
        .into_iter()
        .flat_map(|t| (0..w.partitions_per_topic).map(move |p| (t.clone(), p)))
        .collect();
    let counters = Rc::new(Counters::new());
    let mut consumers = Vec::new();
    let rebalance = Rc::new(crate::bench_group::Rebalance::default());
    if w.consumer_group {
        anyhow::ensure!(protocol == Protocol::Native, "--consumer-group runs over the native protocol");
        let group = format!("bench-{}", now_us());
        for c in 0..w.consumers {
            let leave_at = (c == 0 && w.rebalance_at_s > 0.0).then(|| {
                Instant::now() + Duration::from_secs(w.warmup_s) + Duration::from_secs_f64(w.rebalance_at_s)
            });
            let client = Client::connect(protocol, broker).await?;
            let member = crate::bench_group::member(
                client,
                group.clone(),
                w.topic_names(),
                w.partitions_per_topic,
                counters.clone(),
                rebalance.clone(),
                leave_at,
            );
            consumers.push(glommio::spawn_local(member));
        }
    }
    for c in 0..if w.consumer_group { 0 } else { w.consumers } {
        let mine: Vec<(String, u32)> = partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % w.consumers == c)
            .map(|(_, p)| p.clone())
            .collect();
        let client = Client::connect(protocol, broker).await?;
        consumers.push(glommio::spawn_local(consume(client, mine, counters.clone())));
    }
    let mut producers = Vec::new();
    let shared_turn = Rc::new(Cell::new(0usize));
    for p in 0..w.producers {
        let client = Client::connect(protocol, broker).await?;
        producers.push(glommio::spawn_local(produce(
            client,
            w.clone(),
            partitions.clone(),
            p,
            counters.clone(),
            shared_turn.clone(),
        )));
    }
    let progress = glommio::spawn_local(progress(counters.clone()));
    glommio::timer::sleep(Duration::from_secs(w.warmup_s)).await;
    counters.window_start_us.set(now_us());
    counters.measuring.set(true);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(w.duration_s.max(1));
    while Instant::now() < deadline || (w.total_bytes > 0 && counters.published_bytes.get() < w.total_bytes) {
        if w.total_bytes > 0 && counters.published_bytes.get() >= w.total_bytes {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    counters.window_end_us.set(now_us());
    counters.stop.set(true);
    for p in producers {
        p.await?;
    }
    let published = counters.published_msgs.get();
    let published_bytes = counters.published_bytes.get();
    // Let consumers drain what was published in the window, within a grace period.
    let grace = Instant::now() + Duration::from_secs(5);
    while w.consumers > 0 && counters.consumed_msgs.get() < published && Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    counters.measuring.set(false);
    drop(progress.cancel());
    for c in consumers {
        c.cancel().await;
    }
    anyhow::ensure!(
        counters.errors.get() == 0,
        "{} produce or fetch errors; see the log",
        counters.errors.get()
    );
    let backlog = if w.consume_backlog {
        Some(read_backlog(protocol, broker, &partitions, w.consumers.max(1)).await?)
    } else {
        None
    };
    let secs = elapsed.as_secs_f64();
    let w_rate = w.rate_msgs_per_s;
    let publish = counters.publish.borrow_mut().take().expect("set");
    let e2e = counters.e2e.borrow_mut().take().expect("set");
    let lag = counters.lag.borrow_mut().take().expect("set");
    Ok(BenchResult {
        workload: w,
        seconds: secs,
        published_msgs: published,
        publish_msgs_per_s: published as f64 / secs,
        publish_mb_per_s: published_bytes as f64 / secs / 1e6,
        consumed_msgs: counters.consumed_msgs.get(),
        consume_mb_per_s: counters.consumed_bytes.get() as f64 / secs / 1e6,
        publish_latency_us: Percentiles::of(&publish),
        end_to_end_latency_us: Percentiles::of(&e2e),
        backlog_consume_mb_per_s: backlog,
        generator_lag_us: (w_rate > 0).then(|| Percentiles::of(&lag)),
        rebalance_ms: rebalance.took.get().map(|d| d.as_secs_f64() * 1e3),
    })
}

/// Reads every partition from its earliest to its latest offset with `consumers` connections;
/// returns MB/s of message bytes.
async fn read_backlog(
    protocol: Protocol,
    broker: &str,
    partitions: &[(String, u32)],
    consumers: u32,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers {
        let mine: Vec<(String, u32)> = partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % consumers == c)
            .map(|(_, p)| p.clone())
            .collect();
        let client = Client::connect(protocol, broker).await?;
        tasks.push(glommio::spawn_local(async move { read_range(client, mine).await }));
    }
    let mut bytes = 0u64;
    for t in tasks {
        bytes += t.await?;
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn read_range(client: Rc<Client>, partitions: Vec<(String, u32)>) -> anyhow::Result<u64> {
    let offsets = |spec| {
        let parts: Vec<(String, u32, OffsetSpec)> =
            partitions.iter().map(|(t, p)| (t.clone(), *p, spec)).collect();
        let client = client.clone();
        async move {
            match client.call(&RequestBody::ListOffsets { parts }, &[]).await?.0 {
                ResponseBody::Offsets { parts } => {
                    Ok(parts.into_iter().map(|(_, _, _, o)| o.max(0) as u64).collect::<Vec<_>>())
                }
                other => anyhow::bail!("unexpected {other:?}"),
            }
        }
    };
    let mut positions = offsets(OffsetSpec::Earliest).await?;
    let ends = offsets(OffsetSpec::Latest).await?;
    let mut bytes = 0u64;
    loop {
        let parts: Vec<FetchPart> = partitions
            .iter()
            .zip(&positions)
            .zip(&ends)
            .filter(|((_, at), end)| at < end)
            .map(|(((t, p), at), _)| FetchPart {
                topic: t.clone(),
                partition: *p,
                offset: *at,
                max_bytes: 8 << 20,
            })
            .collect();
        if parts.is_empty() {
            return Ok(bytes);
        }
        let body = RequestBody::Fetch { max_wait_ms: 0, min_bytes: 1, max_bytes: 32 << 20, parts };
        let (reply, data) = client.call(&body, &[]).await?;
        let ResponseBody::Fetched { parts } = reply else { anyhow::bail!("unexpected {reply:?}") };
        for part in parts {
            anyhow::ensure!(part.error == ErrorCode::None, "fetch: {:?}", part.error);
            let i = partitions
                .iter()
                .position(|(t, p)| *t == part.topic && *p == part.partition)
                .expect("asked for");
            let records = rill_net::message::range(&data, part.records_at, part.records_len)?;
            for (header, batch) in split_batches(&records)? {
                positions[i] = header.base_offset as u64 + header.offset_count() as u64;
                let value_len = first_value(&batch)?.map_or(0, |v| v.len() as u64);
                bytes += header.records_count as u64 * value_len;
            }
        }
    }
}

/// A batch encoded once; each send copies it, writes the send time into the first message's
/// value (the one consumers read) and recomputes the CRC. Re-encoding every record per send
/// would make the load generator, not the broker, the bottleneck.
struct BatchTemplate {
    bytes: Bytes,
    stamp_at: usize,
    /// CRC32C of the bytes after the stamp, which never change.
    suffix_crc: u32,
}

/// Marks where the timestamp goes in the template's values.
const STAMP_MARKER: [u8; 8] = *b"RILLSENT";

impl BatchTemplate {
    fn new(w: &Workload, messages: u32) -> BatchTemplate {
        let mut value = vec![0x42u8; w.message_bytes as usize];
        value[..8].copy_from_slice(&STAMP_MARKER);
        let value = Bytes::from(value);
        let mut builder = BatchBuilder::new();
        let ts = (now_us() / 1000) as i64;
        for _ in 0..messages.max(1) {
            builder.push(&Record {
                timestamp_ms: ts,
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
            });
        }
        let bytes = builder.build();
        let stamp_at =
            bytes.windows(8).position(|win| win == STAMP_MARKER).expect("the marker is in the first value");
        let stamp_end = (stamp_at + STAMP_BYTES).min(bytes.len());
        let suffix_crc = crc32c::crc32c(&bytes[stamp_end..]);
        BatchTemplate { bytes, stamp_at, suffix_crc }
    }

    /// A batch stamped with `sent_us`, when its first message came into being, and
    /// `spread_us`, over which its messages arrived (0 at full speed), as two pieces: a fresh
    /// copy of the bytes up to the stamp and the template's unchanged rest, shared. The batch
    /// CRC is that of the fresh head combined with the rest's, computed once.
    fn stamp(&self, sent_us: u64, spread_us: u64) -> [Bytes; 2] {
        let stamp_end = self.stamp_end();
        let mut head = bytes::BytesMut::from(&self.bytes[..stamp_end]);
        self.stamp_head(&mut head, sent_us, spread_us);
        [head.freeze(), self.bytes.slice(stamp_end..)]
    }

    /// Stamps a copy of the template in place (`batch` holds the template's bytes): the same
    /// bytes as [`BatchTemplate::stamp`], for a client that copies the batch anyway.
    fn stamp_in_place(&self, batch: &mut [u8], sent_us: u64, spread_us: u64) {
        assert_eq!(batch.len(), self.bytes.len(), "a copy of the template");
        let stamp_end = self.stamp_end();
        self.stamp_head(&mut batch[..stamp_end], sent_us, spread_us);
    }

    fn stamp_end(&self) -> usize {
        (self.stamp_at + STAMP_BYTES).min(self.bytes.len())
    }

    /// Writes the stamp into `head` (the batch's bytes up to the stamp's end) and the batch CRC:
    /// that of `head`'s covered bytes combined with the unchanged rest's.
    fn stamp_head(&self, head: &mut [u8], sent_us: u64, spread_us: u64) {
        let mut stamp = [0u8; STAMP_BYTES];
        stamp[..8].copy_from_slice(&sent_us.to_le_bytes());
        stamp[8..].copy_from_slice(&spread_us.to_le_bytes());
        let room = head.len() - self.stamp_at;
        head[self.stamp_at..].copy_from_slice(&stamp[..room]);
        let tail_len = self.bytes.len() - head.len();
        let crc = crc32c::crc32c_combine(crc32c::crc32c(&head[21..]), self.suffix_crc, tail_len);
        head[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The send time and spread written at the start of a batch's first value.
const STAMP_BYTES: usize = 16;

/// Records a batch's messages: the first arrived `latency_us` ago, the others evenly later over
/// `spread_us`, so each message is charged from its own (scheduled) arrival, as a producer
/// calling `send()` per message would see it. Latency is counted from the schedule, not from
/// when the load generator got around to sending, so a generator that falls behind shows it.
fn record_spread(h: &mut Histogram<u64>, latency_us: u64, spread_us: u64, messages: u64) {
    const STEPS: u64 = 16;
    if spread_us == 0 || messages < STEPS {
        let _ = h.record_n(latency_us.saturating_sub(spread_us / 2).max(1), messages);
        return;
    }
    for step in 0..STEPS {
        let count = messages / STEPS + u64::from(step < messages % STEPS);
        let waited = spread_us * (2 * step + 1) / (2 * STEPS);
        let _ = h.record_n(latency_us.saturating_sub(waited).max(1), count);
    }
}

async fn produce(
    client: Rc<Client>,
    w: Workload,
    partitions: Vec<(String, u32)>,
    index: u32,
    counters: Rc<Counters>,
    shared_turn: Rc<Cell<usize>>,
) -> anyhow::Result<()> {
    let acks = match w.acks.as_str() {
        "leader" => Acks::Leader,
        "none" => Acks::None,
        _ => Acks::Durable,
    };
    // With a target rate, messages arrive one by one; a batch goes out when full or when its
    // first message has waited `linger_ms`, and its latency counts from that first message.
    let (messages, interval) = match w.rate_msgs_per_s {
        0 => (w.batch_messages() as u64, None),
        rate => {
            let per_producer = (rate as f64 / w.producers as f64).max(1.0);
            let fill = w.batch_messages() as f64 / per_producer;
            let linger = w.linger_ms / 1000.0;
            let messages = if fill <= linger || linger == 0.0 {
                w.batch_messages() as u64
            } else {
                ((per_producer * linger) as u64).max(1)
            };
            (messages, Some(Duration::from_secs_f64(messages as f64 / per_producer)))
        }
    };
    let template = Rc::new(BatchTemplate::new(&w, messages as u32));
    let inflight = Rc::new(glommio::sync::Semaphore::new(w.inflight_per_producer as u64));
    let mut turn = index as usize;
    let mut batch_open = Instant::now();
    let mut batch_open_us = now_us();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ index as u64;
    while !counters.stop.get() {
        match interval {
            Some(interval) => {
                // The batch's last message arrives `interval` after its first.
                let due = batch_open + interval;
                let now = Instant::now();
                if due > now {
                    glommio::timer::sleep(due - now).await;
                }
                if counters.measuring.get() {
                    let late = Instant::now().saturating_duration_since(due).as_micros() as u64;
                    if let Some(h) = counters.lag.borrow_mut().as_mut() {
                        let _ = h.record(late.max(1));
                    }
                }
            }
            None => {
                batch_open = Instant::now();
                batch_open_us = now_us();
            }
        }
        let (opened, opened_us) = (batch_open, batch_open_us);
        if let Some(interval) = interval {
            batch_open += interval;
            batch_open_us += interval.as_micros() as u64;
        }
        let (topic, partition) = match w.keys {
            Keys::None => {
                turn += 1;
                partitions[turn % partitions.len()].clone()
            }
            Keys::Random => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                partitions[(rng % partitions.len() as u64) as usize].clone()
            }
            Keys::RoundRobin => {
                shared_turn.set(shared_turn.get() + 1);
                partitions[shared_turn.get() % partitions.len()].clone()
            }
        };
        let permit =
            inflight.acquire_static_permit(1).await.map_err(|_| anyhow::anyhow!("semaphore closed"))?;
        let sent_us = opened_us;
        let spread_us = interval.map_or(0, |i| i.as_micros() as u64);
        // The native client sends the pieces as they are; the Kafka codec copies the batch into
        // the request anyway, so it gets the template and stamps its copy there.
        let (batch, patch): (Vec<Bytes>, Option<crate::client::Patch>) = match &*client {
            Client::Native(_) => (template.stamp(sent_us, spread_us).to_vec(), None),
            Client::Kafka(_) => {
                let t = template.clone();
                let stamp: crate::client::Patch = Box::new(move |b| t.stamp_in_place(b, sent_us, spread_us));
                (vec![template.bytes.clone()], Some(stamp))
            }
        };
        let (client, counters) = (client.clone(), counters.clone());
        let message_bytes = w.message_bytes as u64;
        glommio::spawn_local(async move {
            let _permit = permit;
            let bytes = batch.iter().map(|b| b.len() as u64).sum::<u64>();
            let parts = vec![ProducePart { topic, partition, records_at: 0, records_len: bytes as u32 }];
            let body = RequestBody::Produce { acks, timeout_ms: 30_000, parts };
            let started = opened;
            let ok = match acks {
                Acks::None => client.send_only_patched(&body, &batch, patch).await.is_ok(),
                _ => match client.call_patched(&body, &batch, patch).await {
                    Ok((ResponseBody::Produced { parts }, _)) => {
                        parts.iter().all(|p| p.error == ErrorCode::None)
                    }
                    _ => false,
                },
            };
            if !ok {
                counters.errors.set(counters.errors.get() + 1);
                return;
            }
            if counters.in_window(sent_us) {
                let us = started.elapsed().as_micros() as u64;
                if let Some(h) = counters.publish.borrow_mut().as_mut() {
                    record_spread(h, us, spread_us, messages);
                }
                counters.published_msgs.set(counters.published_msgs.get() + messages);
                counters.published_bytes.set(counters.published_bytes.get() + messages * message_bytes);
            }
        })
        .detach();
    }
    // Wait for the requests still in flight.
    let _all = inflight.acquire(w.inflight_per_producer as u64).await;
    Ok(())
}

async fn consume(
    client: Rc<Client>,
    partitions: Vec<(String, u32)>,
    counters: Rc<Counters>,
) -> anyhow::Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    let parts = partitions.iter().map(|(t, p)| (t.clone(), *p, OffsetSpec::Latest)).collect();
    let (reply, _) = client.call(&RequestBody::ListOffsets { parts }, &[]).await?;
    let ResponseBody::Offsets { parts } = reply else { anyhow::bail!("unexpected {reply:?}") };
    let mut positions: Vec<(String, u32, u64)> =
        parts.into_iter().map(|(t, p, _, o)| (t, p, o.max(0) as u64)).collect();
    let mut turn = 0usize;
    loop {
        turn += 1;
        fetch_round(&client, &counters, &mut positions, turn).await?;
    }
}

/// One fetch of every position (partitions rotated by `turn`: the response budget goes to
/// partitions in request order, so a fixed order would starve the last ones), counted, with
/// the positions moved past what arrived.
pub(crate) async fn fetch_round(
    client: &Client,
    counters: &Counters,
    positions: &mut [(String, u32, u64)],
    turn: usize,
) -> anyhow::Result<()> {
    let order: Vec<usize> = (0..positions.len()).map(|k| (k + turn) % positions.len()).collect();
    let fetch = order
        .iter()
        .map(|&i| {
            let (t, p, o) = &positions[i];
            FetchPart { topic: t.clone(), partition: *p, offset: *o, max_bytes: 4 << 20 }
        })
        .collect();
    let body = RequestBody::Fetch { max_wait_ms: 100, min_bytes: 1, max_bytes: 16 << 20, parts: fetch };
    let (reply, data) = client.call(&body, &[]).await?;
    let ResponseBody::Fetched { parts } = reply else { anyhow::bail!("unexpected {reply:?}") };
    for (part, &i) in parts.iter().zip(&order) {
        if part.error != ErrorCode::None {
            counters.errors.set(counters.errors.get() + 1);
            continue;
        }
        if let Some(next) = account(counters, part, &data)? {
            positions[i].2 = next;
        }
    }
    Ok(())
}

/// Counts a fetched partition's messages (those sent in the window) and their end-to-end
/// latency; returns the offset after its last batch, if it had any.
pub(crate) fn account(counters: &Counters, part: &FetchResult, data: &Bytes) -> anyhow::Result<Option<u64>> {
    let now = now_us();
    let records = rill_net::message::range(data, part.records_at, part.records_len)?;
    let mut next = None;
    for (header, batch) in split_batches(&records)? {
        let messages = header.records_count as u64;
        next = Some(header.base_offset as u64 + header.offset_count() as u64);
        let value = first_value(&batch)?.unwrap_or_default();
        let Some(sent) = value.get(..8).map(|v| u64::from_le_bytes(v.try_into().expect("8 bytes"))) else {
            continue;
        };
        if !counters.in_window(sent) {
            continue;
        }
        let spread = value.get(8..16).map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")));
        if let Some(h) = counters.e2e.borrow_mut().as_mut() {
            record_spread(h, now.saturating_sub(sent), spread, messages);
        }
        counters.consumed_msgs.set(counters.consumed_msgs.get() + messages);
        counters.consumed_bytes.set(counters.consumed_bytes.get() + messages * value.len() as u64);
    }
    Ok(next)
}

async fn progress(counters: Rc<Counters>) {
    let line = LiveLine::new();
    let mut last = (0u64, 0u64, Instant::now());
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let (p, c) = (counters.published_bytes.get(), counters.consumed_bytes.get());
        let secs = last.2.elapsed().as_secs_f64();
        let phase = if counters.measuring.get() { "measuring" } else { "warm-up" };
        let p99 = counters.publish.borrow().as_ref().map_or(0, |h| h.value_at_quantile(0.99));
        line.show(format!(
            "[{phase}] publish {:>8.1} MB/s  consume {:>8.1} MB/s  publish p99 {p99} us",
            p.saturating_sub(last.0) as f64 / secs / 1e6,
            c.saturating_sub(last.1) as f64 / secs / 1e6
        ));
        last = (p, c, Instant::now());
    }
}

/// The live progress line: redrawn in place (indicatif) on a terminal, one line per update
/// otherwise (logs and CI), and cleared when the run ends.
struct LiveLine(Option<indicatif::ProgressBar>);

impl LiveLine {
    fn new() -> LiveLine {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return LiveLine(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}").expect("valid template"),
        );
        LiveLine(Some(bar))
    }

    fn show(&self, text: String) {
        match &self.0 {
            Some(bar) => bar.set_message(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Drop for LiveLine {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Runs a workload and prints the result: JSON with `--json`, else a table.
pub fn run_bench_and_print(args: BenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    let plot = args.plot.clone();
    let result = run_bench(args)?;
    if let Some(path) = plot {
        std::fs::write(&path, crate::plot::svg(&result))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_table(&result);
    }
    Ok(())
}

/// Prints a result as a table.
pub fn print_table(r: &BenchResult) {
    println!(
        "workload {}: {} topic(s) x {} partition(s), {} producer(s), {} consumer(s), {} B messages, {} per batch, acks {}",
        r.workload.name,
        r.workload.topics,
        r.workload.partitions_per_topic,
        r.workload.producers,
        r.workload.consumers,
        r.workload.message_bytes,
        r.workload.batch_messages(),
        r.workload.acks
    );
    println!(
        "measured {:.1} s: publish {:.0} msg/s, {:.1} MB/s; consume {:.1} MB/s ({} of {} messages)",
        r.seconds,
        r.publish_msgs_per_s,
        r.publish_mb_per_s,
        r.consume_mb_per_s,
        r.consumed_msgs,
        r.published_msgs
    );
    println!("| latency (us) | p50 | p90 | p99 | p99.9 | p99.99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, p) in [("publish", &r.publish_latency_us), ("end-to-end", &r.end_to_end_latency_us)] {
        println!("| {name} | {} | {} | {} | {} | {} | {} |", p.p50, p.p90, p.p99, p.p999, p.p9999, p.max);
    }
    if let Some(p) = &r.generator_lag_us {
        println!(
            "load generator lag behind its schedule (us): p50 {} p99 {} p99.9 {} max {}",
            p.p50, p.p99, p.p999, p.max
        );
    }
    if let Some(mb) = r.backlog_consume_mb_per_s {
        println!("backlog read from earliest: {mb:.1} MB/s");
    }
    if let Some(ms) = r.rebalance_ms {
        println!("rebalance after a member left: {ms:.0} ms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_batches_carry_the_stamp_and_a_valid_crc() {
        for (message_bytes, messages) in [(16u32, 1u32), (16, 7), (1000, 500), (100_000, 3)] {
            let w = Workload { message_bytes, ..Workload::default() };
            let template = BatchTemplate::new(&w, messages);
            let [head, rest] = template.stamp(0x0102_0304_0506_0708, 4242);
            let batch = Bytes::from([&head[..], &rest[..]].concat());
            let mut in_place = template.bytes.to_vec();
            template.stamp_in_place(&mut in_place, 0x0102_0304_0506_0708, 4242);
            assert_eq!(in_place, batch, "both stampings give the same bytes");
            assert_eq!(batch.len(), template.bytes.len(), "stamping keeps the size");
            let header = rill_net::record_batch::parse_batch(&batch).expect("the CRC holds");
            assert_eq!(header.records_count as u32, messages);
            let value = first_value(&batch).expect("decodes").expect("a value");
            assert_eq!(u64::from_le_bytes(value[..8].try_into().unwrap()), 0x0102_0304_0506_0708);
            assert_eq!(u64::from_le_bytes(value[8..16].try_into().unwrap()), 4242);
            // The template stays as it was for the next batch.
            assert_eq!(&template.bytes[template.stamp_at..template.stamp_at + 8], &STAMP_MARKER);
        }
    }
}
