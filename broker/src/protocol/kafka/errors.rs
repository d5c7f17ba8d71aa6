//! The error codes a Kafka response carries, for `rill_kafka_errors_total` (produce and fetch
//! count theirs per partition where they are built, in `records.rs`).

use kafka_protocol::messages::*;

/// A response whose error codes are counted.
pub(crate) trait ErrorCodes {
    /// Calls `f` with every error code in the response (0 included).
    fn each(&self, f: &mut dyn FnMut(i16));
}

macro_rules! top_level {
    ($($t:ty),*) => {$(
        impl ErrorCodes for $t {
            fn each(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

top_level!(HeartbeatResponse, SyncGroupResponse, JoinGroupResponse, InitProducerIdResponse);

impl ErrorCodes for FindCoordinatorResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.coordinators.iter().for_each(|c| f(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.members.iter().for_each(|m| f(m.error_code));
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        for g in &self.groups {
            f(g.error_code);
            g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for MetadataResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for ListGroupsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for OffsetForLeaderEpochResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for ElectLeadersResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.replica_election_results.iter().flat_map(|t| &t.partition_result).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for ListPartitionReassignmentsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for DeleteRecordsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for DescribeLogDirsResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DescribeProducersResponse {
    fn each(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}
