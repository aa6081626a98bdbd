//! The etcd side of one generation: a lease (the session), then the registration bound to it.
//!
//! The pod's `seq` comes from the cluster's counter key `seq`, taken in the same transaction
//! that creates the registration: the transaction compares the counter's revision with the one
//! read, so two pods registering together cannot get the same seq (the loser reads again). As on
//! ZooKeeper, the seq is fixed for the pod's life: a later generation (a new lease) writes the
//! same key again.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use ochopod_config::EtcdTarget;
use ochopod_core::Registration;
use ochopod_etcd::{keys, timed, EtcdError, Session};
use rand::Rng;

use crate::plan::registration_json_as;
use crate::SessionError;

/// Everything one generation needs, cloned out of the actor so the future owns it.
#[derive(Debug, Clone)]
pub struct Params {
    pub target: EtcdTarget,
    pub lease_ttl: Duration,
    pub op_timeout: Duration,
    /// `<prefix>/clusters/<namespace>.<cluster>`.
    pub prefix: String,
    pub key: String,
    pub registration: Registration,
}

pub struct Registered {
    pub session: Session,
    pub seq: u64,
    pub node: String,
}

/// How often the first registration may lose the race for the counter before the attempt is
/// given up (and retried later with backoff).
const RESERVE_ATTEMPTS: u32 = 64;

/// Grants the lease, removes what an earlier generation of ours left, registers. A failure
/// drops the session (its lease expires, taking a half-made registration with it).
pub async fn establish(p: &Params, seq: Option<u64>) -> Result<Registered, SessionError> {
    let session = Session::start(&p.target, p.lease_ttl, p.op_timeout).await?;
    let registered = async {
        remove_leftovers(&session, p).await?;
        match seq {
            Some(seq) => register(&session, p, seq).await.map(|node| (seq, node)),
            None => register_first(&session, p).await,
        }
    }
    .await;
    match registered {
        Ok((seq, node)) => Ok(Registered { session, seq, node }),
        Err(e) => {
            session.close().await;
            Err(e)
        }
    }
}

/// Keys of our own uuid still there (a generation whose lease has not expired yet).
async fn remove_leftovers(session: &Session, p: &Params) -> Result<(), SessionError> {
    let mine = format!("{}{}.", keys::pods_dir(&p.prefix), p.key);
    let mut kv = session.client.kv_client();
    let options = etcd_client::DeleteOptions::new().with_prefix();
    let deleted = timed("delete", &mine, p.op_timeout, kv.delete(mine.as_str(), Some(options))).await?;
    if deleted.deleted() > 0 {
        tracing::info!(key = %mine, "removed a leftover registration of this pod");
    }
    Ok(())
}

fn json(p: &Params, seq: u64) -> Result<Vec<u8>, SessionError> {
    registration_json_as(&p.registration, seq, p.target.registered())
}

/// A later registration: the seq is known.
async fn register(session: &Session, p: &Params, seq: u64) -> Result<String, SessionError> {
    let node = keys::pod(&p.prefix, &p.key, seq);
    let mut kv = session.client.kv_client();
    let options = PutOptions::new().with_lease(session.lease);
    timed("put", &node, p.op_timeout, kv.put(node.as_str(), json(p, seq)?, Some(options))).await?;
    Ok(node)
}

/// The first registration: read the counter, then in one transaction (if the counter is still
/// as read) raise it and create the registration with the seq read.
async fn register_first(session: &Session, p: &Params) -> Result<(u64, String), SessionError> {
    let counter = keys::seq_counter(&p.prefix);
    let mut kv = session.client.kv_client();
    for attempt in 0..RESERVE_ATTEMPTS {
        let read = timed("get", &counter, p.op_timeout, kv.get(counter.as_str(), None)).await?;
        let (next, guard) = match read.kvs().first() {
            Some(found) => {
                let text = std::str::from_utf8(found.value()).unwrap_or_default();
                let next = text.trim().parse::<u64>().map_err(|_| SessionError::Sequence {
                    dir: counter.clone(),
                    reason: format!("the counter holds `{}`, not a number", text.escape_default()),
                })?;
                (next, Compare::mod_revision(counter.as_str(), CompareOp::Equal, found.mod_revision()))
            }
            None => (0, Compare::version(counter.as_str(), CompareOp::Equal, 0)),
        };
        let node = keys::pod(&p.prefix, &p.key, next);
        let txn = Txn::new().when([guard]).and_then([
            TxnOp::put(counter.as_str(), next.saturating_add(1).to_string(), None),
            TxnOp::put(node.as_str(), json(p, next)?, Some(PutOptions::new().with_lease(session.lease))),
        ]);
        let done = timed("txn", &node, p.op_timeout, kv.txn(txn)).await?;
        if done.succeeded() {
            return Ok((next, node));
        }
        tracing::debug!(attempt, next, "another pod took that seq first; reading the counter again");
        let pause = rand::rng().random_range(0..=10 * u64::from(attempt.min(10)));
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Err(SessionError::Sequence { dir: counter, reason: format!("lost the race {RESERVE_ATTEMPTS} times in a row") })
}

impl From<EtcdError> for SessionError {
    fn from(e: EtcdError) -> Self {
        SessionError::Etcd(e)
    }
}
