//! `rill consume`: reads a topic's partitions from a start position and prints records as raw
//! lines or JSON; `--follow` keeps long-polling for new records.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use bytes::Bytes;
use rill_net::message::{ErrorCode, FetchPart, OffsetSpec, RequestBody, ResponseBody, range};
use rill_net::record_batch::{decode_records, split_batches};

use crate::client::Client;

/// Arguments of `rill consume`.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(long)]
    pub(crate) topic: String,
    /// One partition; default: all.
    #[arg(long)]
    partition: Option<u32>,
    /// Where to start: earliest, latest, offset:<n> or timestamp:<ms>.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub(crate) follow: bool,
    /// raw (one value per line) or json (one object per line).
    #[arg(long, default_value = "raw")]
    format: String,
    /// With raw output, print the key and this separator before the value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max_messages: Option<u64>,
    /// Consume as a member of this consumer group: the group shares out the partitions and
    /// remembers the position (committed offsets); `--from` applies where nothing is committed.
    #[arg(long)]
    group: Option<String>,
}

enum Start {
    Spec(OffsetSpec),
    Offset(u64),
}

fn parse_start(s: &str) -> anyhow::Result<Start> {
    Ok(match s {
        "earliest" => Start::Spec(OffsetSpec::Earliest),
        "latest" => Start::Spec(OffsetSpec::Latest),
        _ => match s.split_once(':') {
            Some(("offset", n)) => Start::Offset(n.parse()?),
            Some(("timestamp", ms)) => Start::Spec(OffsetSpec::Timestamp(ms.parse()?)),
            _ => bail!("--from must be earliest, latest, offset:<n> or timestamp:<ms>, not {s:?}"),
        },
    })
}

pub(crate) fn list_offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<u32, i64>> {
    let parts = partitions.iter().map(|p| (topic.to_string(), *p, spec)).collect();
    match client.call(&RequestBody::ListOffsets { parts }, &[])?.0 {
        ResponseBody::Offsets { parts } => {
            let mut out = BTreeMap::new();
            for (_, p, error, offset) in parts {
                if error != ErrorCode::None {
                    bail!("partition {p}: {error:?}");
                }
                out.insert(p, offset);
            }
            Ok(out)
        }
        ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
        other => bail!("unexpected response {other:?}"),
    }
}

/// Runs the consumer.
pub fn run(broker: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    let json = match args.format.as_str() {
        "raw" => false,
        "json" => true,
        other => bail!("--format must be raw or json, not {other:?}"),
    };
    if let Some(group) = &args.group {
        anyhow::ensure!(args.partition.is_none(), "--group shares out partitions; drop --partition");
        let start = match parse_start(&args.from)? {
            Start::Spec(spec) => spec,
            Start::Offset(_) => bail!("with --group, --from must be earliest, latest or timestamp:<ms>"),
        };
        return crate::consume_group::run(broker, &args, group, json, start);
    }
    let mut client = Client::connect(broker)?;
    let count = crate::topic::partition_count(&mut client, &args.topic)?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p < count => vec![p],
        Some(p) => bail!("topic {} has {count} partitions; there is no partition {p}", args.topic),
        None => (0..count).collect(),
    };
    let latest = list_offsets(&mut client, &args.topic, &partitions, OffsetSpec::Latest)?;
    let mut position: BTreeMap<u32, u64> = match parse_start(&args.from)? {
        Start::Offset(n) => partitions.iter().map(|p| (*p, n)).collect(),
        Start::Spec(spec) => list_offsets(&mut client, &args.topic, &partitions, spec)?
            .into_iter()
            .map(|(p, o)| (p, if o < 0 { latest[&p] as u64 } else { o as u64 }))
            .collect(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut turn = 0usize;
    loop {
        if !args.follow {
            position.retain(|p, at| (*at as i64) < latest[p]);
        }
        if position.is_empty() || args.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        turn += 1;
        let wait = if args.follow { 500 } else { 0 };
        fetch_and_print(&mut client, &args, json, &mut position, turn, wait, &mut out, &mut printed)?;
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// One fetch of every position (rotated by `turn`: the response budget goes to partitions in
/// request order, so a fixed order would starve the last ones), printing records at or past
/// each position up to `--max-messages`, and moving the positions past what was printed.
/// Returns whether anything was printed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_and_print(
    client: &mut Client,
    args: &ConsumeArgs,
    json: bool,
    position: &mut BTreeMap<u32, u64>,
    turn: usize,
    wait_ms: u32,
    out: &mut impl Write,
    printed: &mut u64,
) -> anyhow::Result<bool> {
    let parts = position
        .iter()
        .cycle()
        .skip(turn % position.len().max(1))
        .take(position.len())
        .map(|(p, at)| FetchPart {
            topic: args.topic.clone(),
            partition: *p,
            offset: *at,
            max_bytes: 1 << 20,
        })
        .collect();
    let body = RequestBody::Fetch { max_wait_ms: wait_ms, min_bytes: 1, max_bytes: 8 << 20, parts };
    let (response, data) = client.call(&body, &[])?;
    let ResponseBody::Fetched { parts } = response else { bail!("unexpected response {response:?}") };
    let full = |printed: u64| args.max_messages.is_some_and(|m| printed >= m);
    let mut any = false;
    for part in parts {
        if part.error != ErrorCode::None {
            bail!("partition {}: {:?}", part.partition, part.error);
        }
        let records = range(&data, part.records_at, part.records_len)?;
        for (header, batch) in split_batches(&records)? {
            for (offset, record) in decode_records(&batch)? {
                if (offset as u64) < position[&part.partition] || full(*printed) {
                    continue;
                }
                print_record(out, json, args, part.partition, offset, &record)?;
                *printed += 1;
                position.insert(part.partition, offset as u64 + 1);
                any = true;
            }
            if !full(*printed) {
                let next = header.base_offset as u64 + header.offset_count() as u64;
                position.insert(part.partition, next.max(position[&part.partition]));
            }
        }
    }
    Ok(any)
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(crate) fn print_record(
    out: &mut impl Write,
    json: bool,
    args: &ConsumeArgs,
    partition: u32,
    offset: i64,
    record: &rill_net::record_batch::Record,
) -> anyhow::Result<()> {
    if json {
        let headers: serde_json::Map<String, serde_json::Value> = record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), text(v).map_or(serde_json::Value::Null, Into::into)))
            .collect();
        let value = serde_json::json!({
            "topic": args.topic,
            "partition": partition,
            "offset": offset,
            "timestamp": record.timestamp_ms,
            "key": text(&record.key),
            "value": text(&record.value),
            "headers": headers,
        });
        writeln!(out, "{value}")?;
    } else {
        if let Some(sep) = &args.key_separator {
            write!(out, "{}{sep}", text(&record.key).unwrap_or_default())?;
        }
        writeln!(out, "{}", text(&record.value).unwrap_or_default())?;
    }
    Ok(())
}
