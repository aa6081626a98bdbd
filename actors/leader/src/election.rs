//! The leader lock, in the kazoo `Lock` recipe's naming so that original Python pods and ours
//! contend in one queue: every contender creates an ephemeral-sequential
//! `coordinator/<32 hex>__lock__<seq>`; the lowest sequence holds the lock and every other
//! contender watches only its immediate predecessor (no herd effect when the leader leaves).
//!
//! Our contenders store `{"key", "address"}` in their node so that a follower can name the leader;
//! kazoo writes nothing there, so the data is optional everywhere.

use serde::{Deserialize, Serialize};

use ochopod_core::paths::{sequence_of, LOCK_MARKER};

/// What our lock node holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockData {
    /// The contender's pod uuid.
    #[serde(default)]
    pub key: String,
    /// Its control address `ip:port`.
    #[serde(default)]
    pub address: String,
}

impl LockData {
    /// `None` for kazoo's empty data or anything that is not our JSON: never an error, other
    /// implementations share this queue.
    pub fn parse(data: &[u8]) -> Option<LockData> {
        serde_json::from_slice::<LockData>(data).ok().filter(|d| !d.address.is_empty())
    }
}

/// The prefix given to the ephemeral-sequential create (ZooKeeper appends the sequence).
pub fn lock_prefix(coordinator: &str, contender_hex: &str) -> String {
    format!("{coordinator}/{contender_hex}{LOCK_MARKER}")
}

/// One contender, parsed from a child name of `coordinator/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    pub name: String,
    pub seq: u64,
}

impl Contender {
    /// Only `…__lock__<digits>` names take part: other kazoo recipes (`__rlock__`…) or stray
    /// nodes are ignored rather than blocking the election.
    pub fn parse(name: &str) -> Option<Contender> {
        let (_, tail) = name.rsplit_once(LOCK_MARKER)?;
        if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Contender { name: name.to_string(), seq: sequence_of(name)? })
    }
}

/// Contenders in queue order: by numeric sequence (never by string: sequences may exceed ten
/// digits), the name breaking ties so the order is total.
pub fn queue<S: AsRef<str>>(children: &[S]) -> Vec<Contender> {
    let mut all: Vec<Contender> = children.iter().filter_map(|c| Contender::parse(c.as_ref())).collect();
    all.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.name.cmp(&b.name)));
    all
}

/// Where our node stands in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// Ours is the lowest: we hold the lock.
    Leader,
    /// Watch `predecessor`; `leader` heads the queue.
    Follower { predecessor: String, leader: String },
    /// Our node is not among the children (deleted, or the session that made it is gone).
    Missing,
}

pub fn position<S: AsRef<str>>(children: &[S], own: &str) -> Position {
    let queue = queue(children);
    match queue.iter().position(|c| c.name == own) {
        None => Position::Missing,
        Some(0) => Position::Leader,
        Some(i) => Position::Follower { predecessor: queue[i - 1].name.clone(), leader: queue[0].name.clone() },
    }
}

/// A node of ours left over by a create whose reply was lost (connection loss after the server
/// applied it): found by the contender's unique hex prefix, as kazoo does.
pub fn find_own<S: AsRef<str>>(children: &[S], contender_hex: &str) -> Option<Contender> {
    let prefix = format!("{contender_hex}{LOCK_MARKER}");
    queue(children).into_iter().find(|c| c.name.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn names_follow_the_kazoo_recipe() {
        assert_eq!(lock_prefix("/x/coordinator", A), format!("/x/coordinator/{A}__lock__"));
        let c = Contender::parse(&format!("{A}__lock__0000000042")).unwrap();
        assert_eq!(c.seq, 42);
        assert_eq!(Contender::parse(&format!("{A}__rlock__0000000001")), None);
        assert_eq!(Contender::parse(&format!("{A}__lock__")), None);
        assert_eq!(Contender::parse("garbage"), None);
    }

    #[test]
    fn the_queue_sorts_by_number_not_by_string() {
        let children = vec![
            format!("{A}__lock__9999999999"),
            format!("{B}__lock__10000000000"),
            format!("{B}__lock__0000000007"),
            "junk".to_string(),
        ];
        let q: Vec<u64> = queue(&children).iter().map(|c| c.seq).collect();
        assert_eq!(q, vec![7, 9_999_999_999, 10_000_000_000]);
    }

    #[test]
    fn each_contender_watches_its_predecessor_only() {
        let one = format!("{A}__lock__0000000003");
        let two = format!("{B}__lock__0000000005");
        let three = format!("{A}__lock__0000000011");
        let children = vec![three.clone(), one.clone(), two.clone()];
        assert_eq!(position(&children, &one), Position::Leader);
        assert_eq!(position(&children, &two), Position::Follower { predecessor: one.clone(), leader: one.clone() });
        assert_eq!(position(&children, &three), Position::Follower { predecessor: two, leader: one });
        assert_eq!(position(&children, "gone__lock__0000000001"), Position::Missing);
    }

    #[test]
    fn an_orphan_node_is_found_by_its_prefix() {
        let children = vec![format!("{B}__lock__0000000001"), format!("{A}__lock__0000000002")];
        assert_eq!(find_own(&children, A).unwrap().seq, 2);
        assert_eq!(find_own(&children, "ffff"), None);
    }

    #[test]
    fn lock_data_tolerates_kazoo_and_garbage() {
        assert_eq!(LockData::parse(b""), None);
        assert_eq!(LockData::parse(b"not json"), None);
        assert_eq!(LockData::parse(b"{}"), None);
        let d = LockData::parse(br#"{"key":"k","address":"10.0.0.1:8080"}"#).unwrap();
        assert_eq!(d.address, "10.0.0.1:8080");
    }
}
