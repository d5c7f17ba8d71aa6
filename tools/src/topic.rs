//! `rill topic create|list|describe|delete|add-partitions`.

use anyhow::bail;
use clap::Subcommand;
use rill_net::message::{RETENTION_UNLIMITED, RequestBody, ResponseBody, TopicSettings};

use crate::client::Client;

/// Topic administration.
#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: 1-249 of letters, digits, '.', '_', '-'.
        name: String,
        /// Partition count.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Replicas per partition, on as many nodes (a cluster; default 1).
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        /// Delete sealed segments older than this many ms (-1: never).
        #[arg(long, allow_negative_numbers = true, value_parser = parse_limit)]
        retention_ms: Option<u64>,
        /// Delete oldest segments while a partition is larger than this (-1: never).
        #[arg(long, allow_negative_numbers = true, value_parser = parse_limit)]
        retention_bytes: Option<u64>,
        /// Segment size (a multiple of 4096).
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// always, never or interval:<ms>.
        #[arg(long)]
        durability: Option<String>,
    },
    /// List topic names.
    List,
    /// Show partitions (owning shard, start and end offsets) and settings.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Change a topic's settings; those not named keep their values, `default` returns one to
    /// the broker's default. Every partition reopens with the new settings at once.
    Alter {
        /// Topic name.
        name: String,
        /// Delete sealed segments older than this many ms (-1: never; `default`).
        #[arg(long, allow_negative_numbers = true)]
        retention_ms: Option<String>,
        /// Delete oldest segments while a partition is larger than this (-1: never; `default`).
        #[arg(long, allow_negative_numbers = true)]
        retention_bytes: Option<String>,
        /// Segment size, a multiple of 4096 (or `default`); new segments get it.
        #[arg(long)]
        segment_bytes: Option<String>,
        /// always, never, interval:<ms> (or `default`).
        #[arg(long)]
        durability: Option<String>,
    },
    /// Grow a topic to a larger partition count.
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total partition count.
        #[arg(long)]
        total: u32,
    },
}

/// Runs one topic subcommand against `broker`.
pub fn run(broker: &str, cmd: TopicCommand) -> anyhow::Result<()> {
    let mut client = Client::connect(broker)?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            retention_ms,
            retention_bytes,
            segment_bytes,
            durability,
        } => {
            let settings = TopicSettings { segment_bytes, retention_ms, retention_bytes, durability };
            client.call_status(&RequestBody::CreateTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                settings,
            })?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCommand::List => match client.call(&RequestBody::ListTopics, &[])?.0 {
            ResponseBody::Topics { names } => names.iter().for_each(|n| println!("{n}")),
            other => bail!("unexpected response {other:?}"),
        },
        TopicCommand::Describe { name } => match client.call(&RequestBody::DescribeTopic { name }, &[])?.0 {
            ResponseBody::Topic { name, settings, partitions } => {
                println!("topic {name}: {} partitions", partitions.len());
                let shown = |v: Option<String>| v.unwrap_or_else(|| "default".to_string());
                let limit =
                    |v: u64| if v >= RETENTION_UNLIMITED { "unlimited".to_string() } else { v.to_string() };
                println!(
                    "settings: segment_bytes={} retention_ms={} retention_bytes={} durability={}",
                    shown(settings.segment_bytes.map(|v| v.to_string())),
                    shown(settings.retention_ms.map(limit)),
                    shown(settings.retention_bytes.map(limit)),
                    shown(settings.durability)
                );
                println!("{:>9} {:>5} {:>14} {:>14}", "partition", "shard", "start", "end");
                for p in partitions {
                    println!("{:>9} {:>5} {:>14} {:>14}", p.partition, p.shard, p.log_start, p.log_end);
                }
            }
            ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
            other => bail!("unexpected response {other:?}"),
        },
        TopicCommand::Delete { name } => {
            client.call_status(&RequestBody::DeleteTopic { name: name.clone() })?;
            println!("deleted topic {name}");
        }
        TopicCommand::Alter { name, retention_ms, retention_bytes, segment_bytes, durability } => {
            let mut settings = match client.call(&RequestBody::DescribeTopic { name: name.clone() }, &[])?.0 {
                ResponseBody::Topic { settings, .. } => settings,
                ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
                other => bail!("unexpected response {other:?}"),
            };
            alter_number(&mut settings.retention_ms, "--retention-ms", retention_ms)?;
            alter_number(&mut settings.retention_bytes, "--retention-bytes", retention_bytes)?;
            if let Some(v) = segment_bytes {
                settings.segment_bytes = match v.as_str() {
                    "default" => None,
                    _ => Some(v.parse().map_err(|_| {
                        anyhow::anyhow!("--segment-bytes: {v:?} is neither a number nor `default`")
                    })?),
                };
            }
            if let Some(d) = durability {
                settings.durability = (d != "default").then_some(d);
            }
            client.call_status(&RequestBody::AlterTopic { name: name.clone(), settings })?;
            println!("altered topic {name}");
        }
        TopicCommand::AddPartitions { name, total } => {
            client.call_status(&RequestBody::AddPartitions { name: name.clone(), total })?;
            println!("topic {name} now has {total} partitions");
        }
    }
    Ok(())
}

/// Applies one `rill topic alter` flag: a number (-1: no limit) sets the setting, `default`
/// clears it.
fn alter_number(setting: &mut Option<u64>, flag: &str, value: Option<String>) -> anyhow::Result<()> {
    match value.as_deref() {
        None => {}
        Some("default") => *setting = None,
        Some(v) => {
            *setting = Some(parse_limit(v).map_err(|e| anyhow::anyhow!("{flag}: {e}, nor `default`"))?)
        }
    }
    Ok(())
}

/// A size or age limit: a number, or -1 for none.
fn parse_limit(v: &str) -> Result<u64, String> {
    match v {
        "-1" => Ok(RETENTION_UNLIMITED),
        _ => v.parse::<u64>().map_err(|_| format!("{v:?} is neither a number nor -1")),
    }
}

/// Partition count of a topic.
pub fn partition_count(client: &mut Client, topic: &str) -> anyhow::Result<u32> {
    match client.call(&RequestBody::DescribeTopic { name: topic.to_string() }, &[])?.0 {
        ResponseBody::Topic { partitions, .. } => Ok(partitions.len() as u32),
        ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
        other => bail!("unexpected response {other:?}"),
    }
}
