//! `rill produce`: lines from stdin or a file become records (optionally `key<SEP>value`, with
//! headers), batched per partition into RecordBatch v2 and sent over the native protocol.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use rill_net::message::{Acks, ErrorCode, ProducePart, RequestBody, ResponseBody};
use rill_net::record_batch::{BatchBuilder, Record};

use crate::client::Client;

/// Arguments of `rill produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Partition; default: by key hash for keyed lines, round-robin per batch otherwise.
    #[arg(long)]
    partition: Option<u32>,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(long)]
    key_separator: Option<String>,
    /// A header added to every record, as name=value (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// durable (the topic's durability policy), leader (written to disk) or none.
    #[arg(long, default_value = "durable")]
    acks: String,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
}

/// FNV-1a: a stable key hash, so a key always lands on the same partition.
fn key_hash(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}

/// Runs the producer.
pub fn run(broker: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let acks = match args.acks.as_str() {
        "durable" | "all" => Acks::Durable,
        "leader" | "1" => Acks::Leader,
        "none" | "0" => Acks::None,
        other => bail!("--acks must be durable, leader or none, not {other:?}"),
    };
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), Some(Bytes::copy_from_slice(v.as_bytes())))),
            None => bail!("--header must be name=value, not {h:?}"),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut client = Client::connect(broker)?;
    let partitions = crate::topic::partition_count(&mut client, &args.topic)?;
    if let Some(p) = args.partition
        && p >= partitions
    {
        bail!("topic {} has {partitions} partitions; there is no partition {p}", args.topic);
    }
    let reader: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut pending: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
    let mut round_robin = 0u32;
    let mut sent = 0u64;
    for line in reader.lines() {
        let line = line.context("reading input")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::copy_from_slice(k.as_bytes())), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => key_hash(k) % partitions,
            (None, None) => round_robin % partitions,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let record =
            Record { timestamp_ms: now, key, value: Some(Bytes::from(value)), headers: headers.clone() };
        let builder = pending.entry(partition).or_default();
        builder.push(&record);
        if builder.len() >= args.batch_records || builder.size_bytes() >= 1 << 20 {
            let batch = pending.remove(&partition).expect("present").build();
            sent += send(&mut client, &args.topic, vec![(partition, batch)], acks)?;
            round_robin += 1;
        }
    }
    let rest: Vec<(u32, Bytes)> =
        std::mem::take(&mut pending).into_iter().map(|(p, b)| (p, b.build())).collect();
    if !rest.is_empty() {
        sent += send(&mut client, &args.topic, rest, acks)?;
    }
    eprintln!("produced {sent} batches to {}", args.topic);
    Ok(())
}

fn send(client: &mut Client, topic: &str, batches: Vec<(u32, Bytes)>, acks: Acks) -> anyhow::Result<u64> {
    let mut parts = Vec::new();
    let mut at = 0u32;
    for (partition, batch) in &batches {
        parts.push(ProducePart {
            topic: topic.to_string(),
            partition: *partition,
            records_at: at,
            records_len: batch.len() as u32,
        });
        at += batch.len() as u32;
    }
    let data: Vec<Bytes> = batches.iter().map(|(_, b)| b.clone()).collect();
    let body = RequestBody::Produce { acks, timeout_ms: 30_000, parts };
    if acks == Acks::None {
        client.send_only(&body, &data)?;
        return Ok(batches.len() as u64);
    }
    match client.call(&body, &data)?.0 {
        ResponseBody::Produced { parts } => {
            for p in parts {
                if p.error != ErrorCode::None {
                    bail!("partition {}: {:?}", p.partition, p.error);
                }
            }
            Ok(batches.len() as u64)
        }
        ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
        other => bail!("unexpected response {other:?}"),
    }
}
