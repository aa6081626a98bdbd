//! The coordination interface: what the session hands its subscribers, and the few calls the
//! actor makes without caring which store it talks to.
//!
//! A [`Link`] is one live session of one backend (a ZooKeeper client and its session; an etcd
//! client and its lease). It is an enum, not a trait object: the actors need a `Clone + Send`
//! value that crosses actix messages, each backend has a handful of calls, and a `match` keeps
//! every call site exhaustive when a backend is added. The backend-specific protocol (how a
//! registration gets its seq, how a lock is taken) stays in one module per backend.

use std::sync::Arc;
use std::time::Duration;

use crate::{etcd, zk, SessionError};

/// One session of one coordination backend, valid for the generation it was announced with.
#[derive(Clone)]
pub enum Link {
    Zk(zookeeper_client::Client),
    /// Boxed: an etcd client is a few KiB, a ZooKeeper one a pointer or two.
    Etcd(Box<ochopod_etcd::Session>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Zk(c) => write!(f, "Link::Zk({})", c.session_id()),
            Link::Etcd(s) => write!(f, "Link::Etcd({s:?})"),
        }
    }
}

impl From<zookeeper_client::Client> for Link {
    fn from(client: zookeeper_client::Client) -> Self {
        Link::Zk(client)
    }
}

impl Link {
    /// The session's id as the backend shows it (for logs).
    pub fn session_id(&self) -> String {
        match self {
            Link::Zk(c) => c.session_id().to_string(),
            Link::Etcd(s) => format!("lease {:x}", s.lease),
        }
    }

    /// Where a cluster's nodes live in this backend: `/ochopod/clusters/<namespace>.<cluster>` on
    /// ZooKeeper, as in the original.
    pub fn cluster_prefix(&self, namespace: &str, cluster: &str) -> String {
        match self {
            Link::Zk(_) => ochopod_core::paths::cluster_prefix(namespace, cluster),
            Link::Etcd(s) => ochopod_etcd::keys::cluster_prefix(&s.root, namespace, cluster),
        }
    }

    /// Deletes the registration `node` (bounded); it would go with the session anyway.
    pub(crate) async fn delete(&self, node: &str, op_timeout: Duration) {
        let result = match self {
            Link::Zk(c) => {
                ochopod_zk::timed("delete", node, op_timeout, c.delete(node, None)).await.map_err(|e| e.to_string())
            }
            Link::Etcd(s) => {
                let mut kv = s.client.kv_client();
                ochopod_etcd::timed("delete", node, op_timeout, kv.delete(node, None))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not delete the registration; it goes with its session");
        }
    }

    /// Lets go of a session being replaced (a reset): ZooKeeper's closes once its last clone is
    /// dropped; an etcd lease is revoked (bounded), or its keys, the lock key among them, would
    /// stay ahead of everyone until it expires.
    pub(crate) async fn retire(self, op_timeout: Duration) {
        match self {
            Link::Zk(c) => drop(c),
            Link::Etcd(s) => {
                let _ = tokio::time::timeout(op_timeout, (*s).close()).await;
            }
        }
    }

    /// Ends the session and waits (bounded) until the backend confirms; tells what it saw.
    pub(crate) async fn close(self, wait: Duration) -> Option<String> {
        match self {
            Link::Zk(c) => ochopod_zk::close(c, wait).await.map(|s| format!("{s:?}")),
            // Revoking the lease takes every key bound to it (registration, lock, snapshot).
            Link::Etcd(s) => tokio::time::timeout(wait, (*s).close()).await.ok().flatten().map(|s| format!("{s:?}")),
        }
    }
}

/// A session's state in the backends' common vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Talking to the store; the registration and the lock are ours.
    Connected,
    /// No contact; the session may still come back (leader duties stop).
    Suspended,
    /// The store dropped the session (its ephemerals or lease are gone).
    Expired,
    /// Closed, or refused (authentication).
    Closed,
}

impl LinkState {
    pub fn is_terminal(self) -> bool {
        matches!(self, LinkState::Expired | LinkState::Closed)
    }
}

impl From<zookeeper_client::SessionState> for LinkState {
    fn from(state: zookeeper_client::SessionState) -> Self {
        use zookeeper_client::SessionState as S;
        match state {
            S::SyncConnected => LinkState::Connected,
            // A read-only server cannot take writes: for a leader that is as good as disconnected.
            S::Disconnected | S::ConnectedReadOnly => LinkState::Suspended,
            S::Expired => LinkState::Expired,
            S::Closed | S::AuthFailed => LinkState::Closed,
        }
    }
}

impl From<ochopod_etcd::LeaseState> for LinkState {
    fn from(state: ochopod_etcd::LeaseState) -> Self {
        use ochopod_etcd::LeaseState as L;
        match state {
            L::Alive => LinkState::Connected,
            L::Unsure => LinkState::Suspended,
            L::Expired => LinkState::Expired,
            L::Closed => LinkState::Closed,
        }
    }
}

/// The state changes of one registered session.
pub(crate) enum States {
    Zk(zookeeper_client::StateWatcher),
    Etcd(tokio::sync::watch::Receiver<ochopod_etcd::LeaseState>),
}

impl States {
    pub(crate) async fn changed(&mut self) -> LinkState {
        match self {
            States::Zk(w) => w.changed().await.into(),
            States::Etcd(w) => match w.changed().await {
                Ok(()) => (*w.borrow_and_update()).into(),
                // The keep-alive task is gone: so is the session.
                Err(_) => LinkState::Closed,
            },
        }
    }
}

/// A registered generation: the session, its state changes (taken before registering so no
/// transition is missed) and what was registered.
pub(crate) struct Registered {
    pub link: Link,
    pub states: States,
    pub seq: u64,
    pub node: String,
}

/// Which backend a session talks to, with what it needs to establish a generation.
#[derive(Debug, Clone)]
pub(crate) enum Params {
    Zk(Arc<zk::Params>),
    Etcd(Arc<etcd::Params>),
}

impl Params {
    pub(crate) fn op_timeout(&self) -> Duration {
        match self {
            Params::Zk(p) => p.op_timeout,
            Params::Etcd(p) => p.op_timeout,
        }
    }

    /// Where it connects, without credentials.
    pub(crate) fn target(&self) -> String {
        match self {
            Params::Zk(p) => p.target.to_string(),
            Params::Etcd(p) => p.target.to_string(),
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Params::Zk(_) => "ZooKeeper",
            Params::Etcd(_) => "etcd",
        }
    }

    /// Connects, prepares and registers (the first time `seq` is `None`).
    pub(crate) async fn establish(&self, seq: Option<u64>) -> Result<Registered, SessionError> {
        match self {
            Params::Zk(p) => {
                let r = zk::establish(p, seq).await?;
                Ok(Registered { link: Link::Zk(r.client), states: States::Zk(r.states), seq: r.seq, node: r.node })
            }
            Params::Etcd(p) => {
                let r = etcd::establish(p, seq).await?;
                let states = States::Etcd(r.session.states());
                Ok(Registered { link: Link::Etcd(Box::new(r.session)), states, seq: r.seq, node: r.node })
            }
        }
    }
}
