//! Plain logic of the session, without actix or a server: how long to wait before retrying,
//! what JSON to register, what a state change means. (Where to connect is parsed once, at load,
//! by the config crate's `ZkTarget`.) Unit-tested here; the actor only drives it.

use std::time::Duration;

use ochopod_config::ZkTarget;
use ochopod_core::Registration;
use rand::Rng;

use crate::link::LinkState;
use crate::SessionError;

/// The exact bytes registered: the caller's registration with `seq` set. Fields written by other
/// implementations (`extra`) are dropped and `zk` is the target this session really connects to,
/// as [`ZkTarget::registered`] gives it (hosts only), so that whatever the caller passes, no
/// secret and no arbitrary environment reaches ZooKeeper.
pub fn registration_json(registration: &Registration, seq: u64, target: &ZkTarget) -> Result<Vec<u8>, SessionError> {
    registration_json_as(registration, seq, target.registered())
}

/// [`registration_json`] with `zk` set to `coordination`: the store really connected to, without
/// credentials (ZooKeeper's hosts, or an etcd target's `etcd://endpoints/prefix`).
pub fn registration_json_as(
    registration: &Registration,
    seq: u64,
    coordination: String,
) -> Result<Vec<u8>, SessionError> {
    let mut r = registration.clone();
    r.seq = seq;
    r.extra.clear();
    r.zk = coordination;
    Ok(serde_json::to_vec(&r)?)
}

/// Capped exponential backoff with jitter for reconnecting while ZooKeeper is unreachable, so a
/// restarting ensemble is not hammered by every pod at the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The next delay: the nominal one is `initial × 2^attempt` capped at `max`, and the delay
    /// returned lies in `[nominal / 2, nominal]`.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.initial.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        (half + Duration::from_millis(jitter_ms)).min(nominal)
    }
}

/// What a change of the client's session state means to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Resume,
    /// Terminal; `expired` tells an expiry (the server dropped us) from a close or auth failure.
    Lose {
        expired: bool,
    },
    Nothing,
}

/// Phase of the current generation, as reported by `GetSessionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Connected,
    Suspended,
    Expired,
    Closed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Connected => "connected",
            Phase::Suspended => "suspended",
            Phase::Expired => "expired",
            Phase::Closed => "closed",
        }
    }

    /// Only a registered generation moves between connected and suspended: before `Up` the
    /// subscribers know nothing to suspend, and after a loss nothing can resume.
    pub fn on_state(self, state: LinkState) -> Transition {
        use LinkState as S;
        match (self, state) {
            (Phase::Expired | Phase::Closed, _) => Transition::Nothing,
            (_, S::Expired) => Transition::Lose { expired: true },
            (_, S::Closed) => Transition::Lose { expired: false },
            (Phase::Connected, S::Suspended) => Transition::Suspend,
            (Phase::Suspended, S::Connected) => Transition::Resume,
            _ => Transition::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zookeeper_client::SessionState as S;

    #[test]
    fn the_registration_is_the_callers_fields_and_seq_only() {
        let mut r = Registration {
            ip: "10.0.0.5".into(),
            port: "8080".into(),
            zk: "zk://u:pw@elsewhere:2181".into(),
            cluster: "web".into(),
            ..Default::default()
        };
        r.ports.insert("8080".into(), 31000);
        r.extra.insert("token".into(), serde_json::Value::String("secret".into()));
        let target = ZkTarget::parse("zk://bob:s3cret@h1:2181,h2:2181/mesos").unwrap();
        let bytes = registration_json(&r, 42, &target).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("pw@"), "{text}");
        let js: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(js["seq"], 42);
        assert_eq!(js["ip"], "10.0.0.5");
        assert_eq!(js["ports"]["8080"], 31000);
        assert_eq!(js["zk"], "h1:2181,h2:2181", "the hosts really connected to, as the original registered them");
        assert!(js.get("token").is_none());
        let fields: Vec<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "application",
                "cluster",
                "debug",
                "fwk",
                "ip",
                "local",
                "namespace",
                "node",
                "port",
                "ports",
                "public",
                "seq",
                "start",
                "task",
                "zk"
            ]
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400) && delays[3] <= Duration::from_millis(800));
        for d in &delays[5..] {
            assert!(*d >= Duration::from_secs(1) && *d <= Duration::from_secs(2), "{d:?}");
        }
    }

    #[test]
    fn state_changes_map_to_transitions_only_when_they_mean_something() {
        let on = |phase: Phase, state: S| phase.on_state(state.into());
        assert_eq!(on(Phase::Connected, S::Disconnected), Transition::Suspend);
        assert_eq!(on(Phase::Connected, S::ConnectedReadOnly), Transition::Suspend);
        assert_eq!(on(Phase::Suspended, S::SyncConnected), Transition::Resume);
        assert_eq!(on(Phase::Connected, S::SyncConnected), Transition::Nothing);
        assert_eq!(on(Phase::Suspended, S::Disconnected), Transition::Nothing);
        assert_eq!(on(Phase::Suspended, S::Expired), Transition::Lose { expired: true });
        assert_eq!(on(Phase::Connected, S::AuthFailed), Transition::Lose { expired: false });
        assert_eq!(on(Phase::Connected, S::Closed), Transition::Lose { expired: false });
        assert_eq!(on(Phase::Expired, S::Closed), Transition::Nothing);
        assert_eq!(on(Phase::Closed, S::SyncConnected), Transition::Nothing);
    }
}
