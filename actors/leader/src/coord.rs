//! The leader's side of the coordination interface: every call the actor makes to the store,
//! dispatched on the session's [`Link`] to the backend's module ([`crate::zk`]). Each backend
//! implements the same protocol: contend (fair order, an epoch that rises with each
//! leadership), watch the cluster's pods and the dependencies' snapshots, publish `snapshot` and
//! `hash` in one write fenced by the lock, raise the epoch by a fenced write, tell who leads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ochopod_core::deps::Dependency;
use ochopod_core::view::Pods;
use ochopod_session::Link;

use crate::etcd;
use crate::round::Fence;
use crate::zk::{self, ElectionEvent, LockNode, Takeover};

/// A failed call of either backend; a lost fence is told apart because it ends leadership.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordError {
    #[error(transparent)]
    Zk(#[from] ochopod_zk::ZkError),
    #[error(transparent)]
    Etcd(#[from] ochopod_etcd::EtcdError),
}

impl CoordError {
    /// Which store failed, as `/events` and `/metrics` name it.
    pub fn kind(&self) -> ochopod_core::events::RoundFailureKind {
        match self {
            CoordError::Zk(_) => ochopod_core::events::RoundFailureKind::Zookeeper,
            CoordError::Etcd(_) => ochopod_core::events::RoundFailureKind::Etcd,
        }
    }

    /// The write was refused because our lock is gone: we are not the leader.
    pub fn is_fenced(&self) -> bool {
        match self {
            CoordError::Zk(e) => matches!(e, ochopod_zk::ZkError::Fenced { .. }),
            CoordError::Etcd(e) => matches!(e, ochopod_etcd::EtcdError::Fenced { .. }),
        }
    }
}

pub async fn contend(
    link: Link,
    prefix: String,
    contender_hex: String,
    data: Vec<u8>,
    own: Option<LockNode>,
    report: impl Fn(ElectionEvent) + Send,
) {
    match link {
        Link::Zk(c) => {
            zk::contend(c, ochopod_core::paths::coordinator_dir(&prefix), contender_hex, data, own, report).await
        }
        Link::Etcd(s) => etcd::contend(*s, prefix, contender_hex, data, own, report).await,
    }
}

pub async fn take_over(link: &Link, lock: &LockNode, prefix: &str) -> Result<Takeover, CoordError> {
    match link {
        Link::Zk(c) => Ok(zk::take_over(c, lock, prefix).await?),
        Link::Etcd(s) => Ok(etcd::take_over(s, lock, prefix).await?),
    }
}

pub async fn watch_local(link: Link, prefix: String, report: impl Fn(Pods) + Send) {
    match link {
        Link::Zk(c) => zk::watch_local(c, ochopod_core::paths::pods_dir(&prefix), report).await,
        Link::Etcd(s) => etcd::watch_local(*s, prefix, report).await,
    }
}

pub async fn watch_dependency(
    link: Link,
    dependency: Dependency,
    report: impl Fn(Result<Option<Pods>, String>) + Send,
) {
    match link {
        Link::Zk(c) => zk::watch_dependency(c, dependency, report).await,
        Link::Etcd(s) => etcd::watch_dependency(*s, dependency, report).await,
    }
}

pub async fn publish(
    link: &Link,
    lock: &LockNode,
    prefix: &str,
    snapshot: &Pods,
    hash: Option<&str>,
) -> Result<(), CoordError> {
    match link {
        Link::Zk(c) => Ok(zk::publish(c, lock, prefix, snapshot, hash).await?),
        Link::Etcd(s) => Ok(etcd::publish(s, lock, prefix, snapshot, hash).await?),
    }
}

pub async fn record_epoch(link: &Link, lock: &LockNode, prefix: &str, epoch: u64) -> Result<(), CoordError> {
    match link {
        Link::Zk(c) => Ok(zk::record_epoch(c, lock, prefix, epoch).await?),
        Link::Etcd(s) => Ok(etcd::record_epoch(s, lock, prefix, epoch).await?),
    }
}

pub async fn delete_lock(link: &Link, lock: &LockNode) -> Result<(), CoordError> {
    match link {
        Link::Zk(c) => Ok(zk::delete_lock(c, lock).await?),
        Link::Etcd(s) => Ok(etcd::delete_lock(s, lock).await?),
    }
}

pub async fn leader_address(link: &Link, prefix: &str) -> Option<String> {
    match link {
        Link::Zk(c) => zk::leader_address(c, &ochopod_core::paths::coordinator_dir(prefix)).await,
        Link::Etcd(s) => etcd::leader_address(s, prefix).await,
    }
}

/// The round's fence for this backend (see [`Fence`]).
pub enum CoordFence {
    Zk(zk::ZkFence),
    Etcd(etcd::EtcdFence),
}

impl CoordFence {
    pub fn new(link: &Link, lock: &LockNode, active: Arc<AtomicBool>) -> Self {
        match link {
            Link::Zk(c) => CoordFence::Zk(zk::ZkFence { client: c.clone(), lock_path: lock.path.clone(), active }),
            Link::Etcd(s) => CoordFence::Etcd(etcd::EtcdFence { session: s.clone(), lock: lock.clone(), active }),
        }
    }
}

impl Fence for CoordFence {
    async fn holds(&self) -> bool {
        match self {
            CoordFence::Zk(f) => f.holds().await,
            CoordFence::Etcd(f) => f.holds().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ochopod_core::events::RoundFailureKind;

    use super::CoordError;

    /// `/events` and `/metrics` name the store that failed a round's write, not always ZooKeeper.
    #[test]
    fn a_store_error_is_named_after_its_store() {
        let etcd =
            CoordError::Etcd(ochopod_etcd::EtcdError::Timeout { op: "txn", key: "k".into(), after: Duration::ZERO });
        assert_eq!(etcd.kind(), RoundFailureKind::Etcd);
        assert_eq!(etcd.kind().name(), "etcd");
        let zk = CoordError::Zk(ochopod_zk::ZkError::ConnectTimeout { target: "h:2181".into(), after: Duration::ZERO });
        assert_eq!(zk.kind().name(), "zookeeper");
        assert!(!etcd.is_fenced() && !zk.is_fenced());
        assert!(CoordError::Etcd(ochopod_etcd::EtcdError::Fenced { lock: "l".into() }).is_fenced());
    }
}
