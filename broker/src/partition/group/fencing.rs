//! Static members (KIP-345): a member with a `group.instance.id` keeps its identity across
//! restarts, and a newer instance with the same id replaces it. The replaced instance is
//! fenced: every later request it makes with its old member id and that instance id gets
//! FENCED_INSTANCE_ID (its client then stops with a fatal error), so two processes never both
//! believe they own the instance's partitions.

use bytes::Bytes;

use super::errors::FENCED_INSTANCE_ID;
use super::{Group, JoinResult};

impl Group {
    /// The member id that currently holds `instance`, if a member does.
    pub(super) fn static_member(&self, instance: &str) -> Option<String> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance)).map(|m| m.id.clone())
    }

    /// Whether a request naming `member_id` and `instance` comes from a replaced instance: the
    /// instance is held by another member id (Kafka's `isStaticMemberFenced`).
    pub(super) fn is_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        instance.and_then(|i| self.static_member(i)).is_some_and(|current| current != member_id)
    }

    /// A new instance joined with `old`'s instance id: the member keeps its assignment and
    /// leadership under `new`, and requests `old` has parked get FENCED_INSTANCE_ID.
    pub(super) fn replace_static_member(&mut self, old: &str, new: &str) {
        let Some(mut member) = self.members.remove(old) else { return };
        member.id = new.to_string();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.try_send(JoinResult { error: FENCED_INSTANCE_ID, ..JoinResult::default() });
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.try_send((FENCED_INSTANCE_ID, Bytes::new()));
        }
        if self.leader == old {
            self.leader = new.to_string();
        }
        tracing::info!(group = %self.id, old, new, "static member replaced by a new instance");
        self.members.insert(new.to_string(), member);
    }
}
