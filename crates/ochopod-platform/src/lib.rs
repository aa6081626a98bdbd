//! Where clusters are deployed: a platform's API behind one small trait.
//!
//! Theory of operation: a [`Platform`] creates members (containers, or a StatefulSet's pods)
//! from a [`Spec`] — an image, the pod declaration it runs and the environment it gets —, lists
//! them, scales a cluster to a number of members and deletes a cluster. It knows nothing about
//! ZooKeeper or ochopod's pods: the portal decides which members go first (the highest seq, as
//! ZooKeeper says) and waits for the cluster to form; the platform only does what it is told and
//! says what it holds. Like kube-rs's `Api<K>`, the surface is four calls; each implementation
//! labels what it creates with the cluster (`org.ochopod.cluster`) and finds it again by that
//! label alone, so a portal that restarts knows its clusters.
//!
//! - [`docker::Docker`]: the Docker Engine API over its unix socket (bollard). Real: containers
//!   are created, started, stopped cleanly (SIGTERM, the grace) and removed.
//! - [`kubernetes::Kubernetes`]: the Kubernetes API through kube-rs. A cluster is a ConfigMap (the
//!   declaration), a headless Service and a StatefulSet whose pods get the downward API, built
//!   with k8s-openapi's types; scaled through the `scale` subresource, deleted in the
//!   foreground. Tested against [`kubernetes::fake`], a fake API server on loopback: no real
//!   cluster ran here.

pub mod docker;
pub mod kubernetes;
mod tar;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// The label every member carries: `<namespace>.<cluster>`.
pub const CLUSTER_LABEL: &str = "org.ochopod.cluster";
/// The label that keeps the [`Spec`] (JSON) on every member, so that scaling up needs nothing
/// but the platform.
pub const SPEC_LABEL: &str = "org.ochopod.spec";

/// What a member runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// `<namespace>.<cluster>`, as the declaration says.
    pub cluster: String,
    pub image: String,
    /// The pod declaration (YAML), written at [`path`](Self::path) in each member.
    pub declaration: String,
    /// Where the declaration goes in the member; the entrypoint is `ochopod run <path>`.
    pub path: String,
    /// Extra environment (`OCHOPOD_ZK`…).
    pub env: BTreeMap<String, String>,
    /// The declaration's container ports, the control port included.
    pub ports: Vec<u16>,
    /// How long a member may take to stop cleanly before it is killed.
    pub grace_secs: u64,
}

/// One member as the platform sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub cluster: String,
    /// Its address on the platform's network, once it has one.
    pub ip: Option<String>,
    /// running, created, exited…
    pub state: String,
}

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform's API answered with an error, or could not be reached.
    #[error("{platform}: {detail}")]
    Api { platform: &'static str, detail: String },
    /// The request cannot be done here (no client for this platform, a spec that cannot be read).
    #[error("{0}")]
    Unsupported(String),
}

/// A platform: create, list, scale, delete. Object-safe (boxed futures), so the portal holds
/// whichever was configured.
pub trait Platform: Send + Sync {
    /// `docker`, `kubernetes`.
    fn name(&self) -> &'static str;
    /// Adds `count` members running `spec`; returns them. On error, what was created so far is
    /// left for the caller to [`delete`](Self::delete) (a failed deploy removes its cluster).
    fn create<'a>(&'a self, spec: &'a Spec, count: usize) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>>;
    /// Every member of `cluster` (of every cluster with `None`), oldest first.
    fn list<'a>(&'a self, cluster: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>>;
    /// Brings `cluster` to `replicas` members: new ones from the spec the members carry, or,
    /// going down, `first` (member ids, in order) removed first through a clean stop.
    fn scale<'a>(
        &'a self,
        cluster: &'a str,
        replicas: usize,
        first: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>>;
    /// Stops and removes every member of `cluster`; returns what it removed.
    fn delete<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>>;
}

/// `demo.zookeeper` → `demo-zookeeper`: a name every platform accepts (DNS label characters).
pub fn dns_name(cluster: &str) -> String {
    let mut out: String = cluster
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    out.truncate(52);
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_names_keep_letters_digits_and_dashes() {
        assert_eq!(super::dns_name("demo.zookeeper"), "demo-zookeeper");
        assert_eq!(super::dns_name("Team_A.web-1"), "team-a-web-1");
    }
}
