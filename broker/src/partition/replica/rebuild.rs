//! A group's window rebuilt at open from the shard journal's state and the partition's log.

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, Snapshot};
use rill_storage::Log;

use super::journal::{RecoveredGroup, ReplicaJournal, truncate_record};
use super::window::{Core, Held};
use super::{Proposal, damaged, record_context};
use crate::cluster::consensus::ConsensusError;

pub(super) fn snapshot_end_offset(snapshot: &Snapshot) -> Option<u64> {
    Some(u64::from_le_bytes(snapshot.data.get(..8)?.try_into().ok()?))
}

/// Rebuilds a group's window from the journal's state and the log above the compaction point.
/// Entries after the first gap or conflict (what a crash between the log's and the journal's
/// writes can leave; none of it was acknowledged) are cut from the log.
pub(super) async fn rebuild(
    log: &Log,
    journal: &ReplicaJournal,
    group: u64,
    recovered: RecoveredGroup,
) -> Result<Core, ConsensusError> {
    let point = recovered.point.expect("a recovered group has a compaction point");
    // A log that ends below the point is filled from another member (a crash while catching
    // up); one whose start passed the point lost entries the group still needs.
    if log.log_start_offset() > point.end_offset {
        return Err(damaged(
            log,
            format!(
                "group {group}: the log holds [{}, {}), its compaction point is at offset {}",
                log.log_start_offset(),
                log.next_offset(),
                point.end_offset
            ),
        ));
    }
    let mut core = Core { conf: point.conf.clone(), point: point.clone(), ..Default::default() };
    let mut controls = recovered.controls.into_iter().peekable();
    let mut at = point.end_offset;
    let mut cut: Option<u64> = None;
    'read: while at < log.next_offset() {
        let batches = log.read(at, 1 << 20).await?;
        if batches.is_empty() {
            break;
        }
        for b in batches {
            // Control entries that come before this batch.
            while let Some((index, _)) = controls.peek() {
                if *index >= b.raft_index {
                    break;
                }
                let (index, entry) = controls.next().expect("peeked");
                if index != core.last_index() + 1 {
                    cut = Some(b.base_offset);
                    break 'read;
                }
                let end_offset = core.end_offset();
                core.push(Held { entry, end_offset });
            }
            if b.raft_index != core.last_index() + 1 || b.base_offset != core.end_offset() {
                cut = Some(b.base_offset);
                break 'read;
            }
            at = b.end_offset();
            let context = record_context(&Proposal {
                payload: Bytes::new(),
                record_count: b.record_count,
                first_timestamp_ms: b.first_timestamp_ms,
                max_timestamp_ms: b.max_timestamp_ms,
                base_offset_field: None,
            });
            let entry = Entry {
                entry_type: EntryType::EntryNormal,
                term: u64::try_from(b.leader_epoch).unwrap_or(0),
                index: b.raft_index,
                data: b.payload,
                context,
                ..Default::default()
            };
            core.push(Held { entry, end_offset: at });
        }
    }
    if let Some(offset) = cut {
        tracing::warn!(group, offset, "partition group: log entries after a gap in the raft log are cut");
        journal.write(vec![truncate_record(group, core.last_index() + 1)], true).await?;
        log.truncate(offset).await?;
    } else {
        // Control entries after the last record entry.
        for (index, entry) in controls {
            if index != core.last_index() + 1 {
                journal.write(vec![truncate_record(group, core.last_index() + 1)], true).await?;
                break;
            }
            let end_offset = core.end_offset();
            core.push(Held { entry, end_offset });
        }
    }
    let mut hs = recovered.hard_state;
    hs.commit = hs.commit.max(point.index).min(core.last_index());
    hs.term = hs.term.max(core.entries.back().map_or(point.term, |h| h.entry.term));
    core.hard_state = hs;
    Ok(core)
}
