//! `rill group list|describe|delete|reset-offsets`: consumer groups from the command line.

use anyhow::bail;
use clap::Subcommand;
use rill_net::message::{OffsetSpec, RequestBody, ResponseBody};

use crate::client::Client;

/// Consumer-group administration.
#[derive(Subcommand)]
pub enum GroupCommand {
    /// List groups and their states.
    List,
    /// Show a group's state, members and their partitions, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
    /// Set a group's committed offsets for every partition of a topic (no members may be in it).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// earliest, latest or timestamp:<ms>.
        #[arg(long)]
        to: String,
    },
}

/// Runs one group subcommand against `broker`.
pub fn run(broker: &str, cmd: GroupCommand) -> anyhow::Result<()> {
    let mut client = Client::connect(broker)?;
    match cmd {
        GroupCommand::List => match client.call(&RequestBody::ListGroups, &[])?.0 {
            ResponseBody::Groups { groups } => {
                for (id, state) in groups {
                    println!("{id}\t{state}");
                }
            }
            other => bail!("unexpected reply {other:?}"),
        },
        GroupCommand::Describe { group } => {
            match client.call(&RequestBody::DescribeGroup { group }, &[])?.0 {
                ResponseBody::Group { group, state, protocol, members, offsets } => {
                    println!(
                        "group {group}: {state}, {} members, assignor {}",
                        members.len(),
                        dash(&protocol)
                    );
                    println!("MEMBER\tCLIENT\tHOST\tPARTITIONS");
                    for m in &members {
                        let parts: Vec<String> =
                            m.partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect();
                        println!(
                            "{}\t{}\t{}\t{}",
                            m.member_id,
                            m.client_id,
                            dash(&m.client_host),
                            parts.join(",")
                        );
                    }
                    println!("TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tMEMBER");
                    for o in &offsets {
                        let owner = members
                            .iter()
                            .find(|m| m.partitions.iter().any(|(t, p)| *t == o.topic && *p == o.partition))
                            .map_or("-", |m| m.member_id.as_str());
                        let (committed, lag) = match o.committed {
                            c if c < 0 => ("-".to_string(), "-".to_string()),
                            c => (c.to_string(), (o.log_end as i64 - c).max(0).to_string()),
                        };
                        println!("{}\t{}\t{committed}\t{}\t{lag}\t{owner}", o.topic, o.partition, o.log_end);
                    }
                }
                ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        GroupCommand::Delete { group } => {
            client.call_status(&RequestBody::DeleteGroup { group: group.clone() })?;
            println!("deleted group {group}");
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let to = match to.as_str() {
                "earliest" => OffsetSpec::Earliest,
                "latest" => OffsetSpec::Latest,
                other => match other.strip_prefix("timestamp:").and_then(|t| t.parse().ok()) {
                    Some(ts) => OffsetSpec::Timestamp(ts),
                    None => bail!("--to {other:?}: expected earliest, latest or timestamp:<ms>"),
                },
            };
            client.call_status(&RequestBody::ResetOffsets {
                group: group.clone(),
                topic: topic.clone(),
                to,
            })?;
            println!("reset group {group} on {topic}");
        }
    }
    Ok(())
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
