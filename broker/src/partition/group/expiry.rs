//! Deleting committed offsets the coordinator no longer needs: those of deleted topics, and
//! those of groups without members past the offset retention (Kafka's KIP-211).

use std::rc::Rc;

use super::{Coordinator, DEAD_GROUP_GRACE_MS, GATE_PERMITS, Phase, code};

impl Coordinator {
    /// Deletes, durably, every committed offset for a topic that `exists` says is gone: a topic
    /// deleted and created again starts from scratch, so old positions must not carry over (a
    /// consumer resuming at them would skip the new topic's first records). Returns how many
    /// offsets went.
    pub async fn forget_topics(self: &Rc<Self>, exists: impl Fn(&str) -> bool) -> Result<usize, i16> {
        // The whole gate: commits being written finish first (and are seen below), compaction
        // cannot run meanwhile.
        let _all = self.gate.acquire_permit(GATE_PERMITS).await.map_err(|_| code::KAFKA_STORAGE_ERROR)?;
        let stale: Vec<(String, Vec<(String, i32)>)> = self
            .offsets
            .borrow()
            .iter()
            .map(|(group, m)| {
                (group.clone(), m.keys().filter(|(t, _)| !exists(t)).cloned().collect::<Vec<_>>())
            })
            .filter(|(_, keys)| !keys.is_empty())
            .collect();
        self.write_tombstones_of(&stale).await?;
        let removed = stale.iter().map(|(_, keys)| keys.len()).sum();
        self.offsets.borrow_mut().retain(|_, m| !m.is_empty());
        Ok(removed)
    }

    /// Offset retention (Kafka's `offsets.retention.minutes`, KIP-211): the committed offsets of
    /// a group without members expire once `retention_ms` has passed both since they were
    /// committed and since the group became empty (for a group unknown since the offsets log was
    /// opened: since then); offsets of groups with members never do. A
    /// group left Empty with no offsets is forgotten (Kafka's Dead) after the same time, or a
    /// minute if that is shorter. Returns how many offsets and groups went.
    pub async fn expire_offsets(
        self: &Rc<Self>,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<(usize, usize), i16> {
        let _all = self.gate.acquire_permit(GATE_PERMITS).await.map_err(|_| code::KAFKA_STORAGE_ERROR)?;
        let expired: Vec<(String, Vec<(String, i32)>)> = {
            let groups = self.groups.borrow();
            self.offsets
                .borrow()
                .iter()
                .filter_map(|(group, m)| {
                    // Group state lives in memory only: a group unknown since the start
                    // emptied no earlier than the start.
                    let empty_since = match groups.get(group) {
                        Some(g) if !g.members.is_empty() => return None,
                        Some(g) => g.empty_since_ms,
                        None => self.opened_ms.get(),
                    };
                    let keys: Vec<(String, i32)> = m
                        .iter()
                        .filter(|(_, c)| now_ms.saturating_sub(c.commit_ms.max(empty_since)) >= retention_ms)
                        .map(|(k, _)| k.clone())
                        .collect();
                    (!keys.is_empty()).then(|| (group.clone(), keys))
                })
                .collect()
        };
        self.write_tombstones_of(&expired).await?;
        let offsets = expired.iter().map(|(_, keys)| keys.len()).sum();
        self.offsets.borrow_mut().retain(|_, m| !m.is_empty());
        let grace = retention_ms.min(DEAD_GROUP_GRACE_MS);
        let dead: Vec<String> = self
            .groups
            .borrow()
            .values()
            .filter(|g| g.phase == Phase::Empty && g.members.is_empty() && g.pending.is_empty())
            .filter(|g| now_ms.saturating_sub(g.empty_since_ms) >= grace)
            .filter(|g| !self.offsets.borrow().contains_key(&g.id))
            .map(|g| g.id.clone())
            .collect();
        let mut groups = self.groups.borrow_mut();
        for id in &dead {
            groups.remove(id);
        }
        Ok((offsets, dead.len()))
    }
}
