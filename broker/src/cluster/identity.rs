//! `node.toml`: which node and which cluster a data directory belongs to, written the first
//! time the directory is used and never changed, so a directory cannot be started as another
//! node (whose Raft votes and log it does not hold) or joined to another cluster.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// The file's name in the data directory.
pub const NODE_FILE: &str = "node.toml";

/// A data directory's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node id (0 for a single node).
    pub node_id: u32,
    /// The cluster id, as Kafka clients see it (Metadata, DescribeCluster): derived from the
    /// cluster CA for a cluster, random for a single node.
    pub cluster_id: String,
}

/// The identity of `dir` for a node started as `node_id`, in the cluster `cluster_id` (`None`
/// for a single node): read from `node.toml` and checked, or written there on first use.
pub fn settle(dir: &Path, node_id: u32, cluster_id: Option<&str>) -> Result<NodeIdentity> {
    let path = dir.join(NODE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: NodeIdentity =
                toml::from_str(&text).map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))?;
            if found.node_id != node_id {
                return Err(BrokerError::Config(format!(
                    "{} belongs to node {} (its {NODE_FILE}), not node {node_id}: start it as node {}, \
                     or give node {node_id} an empty data directory",
                    dir.display(),
                    found.node_id,
                    found.node_id
                )));
            }
            if let Some(cluster) = cluster_id.filter(|c| *c != found.cluster_id) {
                return Err(BrokerError::Config(format!(
                    "{} belongs to cluster {} (its {NODE_FILE}), but this node's CA is cluster {cluster}",
                    dir.display(),
                    found.cluster_id
                )));
            }
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = NodeIdentity {
                node_id,
                cluster_id: cluster_id.map_or_else(rill_net::tls::random_cluster_id, str::to_string),
            };
            write(dir, &identity)?;
            Ok(identity)
        }
        Err(e) => Err(BrokerError::Runtime(format!("reading {}: {e}", path.display()))),
    }
}

/// Writes `node.toml` crash-safely: temp file, fsync, rename, fsync of the directory.
fn write(dir: &Path, identity: &NodeIdentity) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        BrokerError::Runtime(format!("{what} {NODE_FILE} in {}: {e}", dir.display()))
    };
    let text = format!(
        "# Written when this data directory was first used; it never changes.\n{}",
        toml::to_string(identity).expect("an identity serializes")
    );
    let tmp = dir.join(format!("{NODE_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    file.write_all(text.as_bytes()).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, dir.join(NODE_FILE)).map_err(|e| io("renaming", e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the directory of", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_first_node_and_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let first = settle(dir.path(), 2, Some("AAAAAAAAAAAAAAAAAAAAAA")).unwrap();
        assert_eq!(first, NodeIdentity { node_id: 2, cluster_id: "AAAAAAAAAAAAAAAAAAAAAA".into() });
        assert_eq!(settle(dir.path(), 2, Some("AAAAAAAAAAAAAAAAAAAAAA")).unwrap(), first);
        let err = settle(dir.path(), 3, Some("AAAAAAAAAAAAAAAAAAAAAA")).unwrap_err().to_string();
        assert!(err.contains("belongs to node 2") && err.contains("not node 3"), "{err}");
        let err = settle(dir.path(), 2, Some("BBBBBBBBBBBBBBBBBBBBBB")).unwrap_err().to_string();
        assert!(err.contains("belongs to cluster AAAAAAAAAAAAAAAAAAAAAA"), "{err}");
        assert!(!dir.path().join("node.toml.tmp").exists());
    }

    #[test]
    fn a_single_node_gets_a_random_cluster_id_once() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = settle(a.path(), 0, None).unwrap();
        assert_eq!(id.cluster_id.len(), 22);
        assert_eq!(settle(a.path(), 0, None).unwrap(), id, "kept across restarts");
        assert_ne!(settle(b.path(), 0, None).unwrap().cluster_id, id.cluster_id);
    }
}
