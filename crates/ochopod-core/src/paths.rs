//! The ZooKeeper layout, identical to the original Ochopod so that Rust and Python pods can share
//! a cluster and the original tooling can list our pods.
//!
//! ```text
//! /ochopod/clusters/<namespace>.<cluster>/
//!     pods/<uuid>.<10-digit seq>            ephemeral-sequential registration JSON
//!     hash                                  persistent, colon-hex MD5 of the last configured state
//!     snapshot                              ephemeral (leader), {uuid: registration} of configured pods
//!     coordinator/<32 hex>__lock__<seq>     leader lock contenders (kazoo Lock naming)
//! ```

/// Parent of every cluster node; tools list its children and match them with globs.
pub const ROOT: &str = "/ochopod/clusters";

/// Suffix that the kazoo `Lock` recipe puts between the contender's hex uuid and the sequence.
pub const LOCK_MARKER: &str = "__lock__";

/// `<namespace>.<cluster>`, the name tools show and globs match.
pub fn cluster_name(namespace: &str, cluster: &str) -> String {
    format!("{namespace}.{cluster}")
}

/// `/ochopod/clusters/<namespace>.<cluster>`.
pub fn cluster_prefix(namespace: &str, cluster: &str) -> String {
    format!("{ROOT}/{}", cluster_name(namespace, cluster))
}

pub fn pods_dir(prefix: &str) -> String {
    format!("{prefix}/pods")
}

/// Prefix given to the ephemeral-sequential create; ZooKeeper appends the 10-digit sequence.
pub fn pod_node_prefix(prefix: &str, uuid: &str) -> String {
    format!("{prefix}/pods/{uuid}.")
}

pub fn hash_node(prefix: &str) -> String {
    format!("{prefix}/hash")
}

pub fn snapshot_node(prefix: &str) -> String {
    format!("{prefix}/snapshot")
}

/// Ours, not the original's: the highest fencing epoch a leader of the cluster took, so that
/// epochs keep rising when the lock sequence restarts (see the leader's `take_over`).
pub fn epoch_node(prefix: &str) -> String {
    format!("{prefix}/epoch")
}

pub fn coordinator_dir(prefix: &str) -> String {
    format!("{prefix}/coordinator")
}

/// The pod key is the uuid part of a pod node name: `<uuid>.<seq>` → `<uuid>`.
pub fn pod_key(node_name: &str) -> &str {
    node_name.split('.').next().unwrap_or(node_name)
}

/// The sequence suffix of a sequential node name (`…<seq>`), whatever separator precedes it.
/// Sequence numbers may exceed 10 digits, so they are parsed, never compared as strings.
pub fn sequence_of(node_name: &str) -> Option<u64> {
    let digits = node_name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    node_name[node_name.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_original() {
        let p = cluster_prefix("demo", "zookeeper");
        assert_eq!(p, "/ochopod/clusters/demo.zookeeper");
        assert_eq!(pod_node_prefix(&p, "abc"), "/ochopod/clusters/demo.zookeeper/pods/abc.");
        assert_eq!(hash_node(&p), "/ochopod/clusters/demo.zookeeper/hash");
        assert_eq!(snapshot_node(&p), "/ochopod/clusters/demo.zookeeper/snapshot");
        assert_eq!(coordinator_dir(&p), "/ochopod/clusters/demo.zookeeper/coordinator");
    }

    #[test]
    fn keys_and_sequences_are_read_from_node_names() {
        assert_eq!(pod_key("7c9e6679-7425-40de-944b-e07fc1f90ae7.0000000012"), "7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(sequence_of("7c9e.0000000012"), Some(12));
        assert_eq!(sequence_of("0f1e__lock__0000000003"), Some(3));
        assert_eq!(sequence_of("x__lock__12345678901"), Some(12_345_678_901));
        assert_eq!(sequence_of("nodigits"), None);
    }
}
