//! What the members of a partition group send each other.

use rill_storage::StoredBatch;

use super::RaftMessage;

/// What members of a partition group send each other.
#[derive(Clone, Debug)]
pub enum ReplicaMessage {
    /// A Raft message (`from` and `to` inside).
    Raft(RaftMessage),
    /// A member installing a snapshot asks the leader for its log from `offset` up to `until`.
    FetchLog {
        /// The asking member.
        from: u64,
        /// The member asked.
        to: u64,
        /// The first offset wanted.
        offset: u64,
        /// The snapshot's end offset.
        until: u64,
    },
    /// An idle leader stops heartbeating; the follower may stop its election timer (see
    /// [`Replica::may_sleep`]).
    Hibernate {
        /// The leader.
        from: u64,
        /// The follower.
        to: u64,
        /// The leader's term.
        term: u64,
    },
    /// The answer to [`ReplicaMessage::FetchLog`]: the batches from `offset` on, as stored
    /// (raft index and term included), up to about [`FETCH_LOG_BYTES_MAX`].
    LogChunk {
        /// The member answering.
        from: u64,
        /// The member that asked.
        to: u64,
        /// The offset asked for.
        offset: u64,
        /// The batches (empty if the answering member does not hold that offset).
        batches: Vec<StoredBatch>,
    },
}

impl ReplicaMessage {
    /// The member the message is for.
    pub fn to(&self) -> u64 {
        match self {
            ReplicaMessage::Raft(m) => m.to,
            ReplicaMessage::FetchLog { to, .. }
            | ReplicaMessage::LogChunk { to, .. }
            | ReplicaMessage::Hibernate { to, .. } => *to,
        }
    }

    /// The member that sent it.
    pub fn from(&self) -> u64 {
        match self {
            ReplicaMessage::Raft(m) => m.from,
            ReplicaMessage::FetchLog { from, .. }
            | ReplicaMessage::LogChunk { from, .. }
            | ReplicaMessage::Hibernate { from, .. } => *from,
        }
    }
}
