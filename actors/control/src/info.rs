//! `/info`: the registration's static fields plus what the actors report right now.

use std::collections::BTreeMap;
use std::time::Duration;

use ochopod_api::Info;
use ochopod_core::Registration;
use ochopod_executor::ExecutorStatus;
use ochopod_leader::LeaderStatus;
use ochopod_session::SessionStatus;
use serde_json::{json, Value};

/// What `/info` shows for a state nobody reported in time.
pub const UNKNOWN: &str = "unknown";

/// The actors' answers; `None` for one that did not answer within the query timeout.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub executor: Option<ExecutorStatus>,
    pub leader: Option<LeaderStatus>,
    pub session: Option<SessionStatus>,
}

/// The original's twelve fields are always present (with `unknown`, `""` or `{}` when an actor
/// did not answer), so original tooling never misses a key; ours follow when known.
pub fn build_info(identity: &Registration, dependencies: &[String], uptime: Duration, now: &Snapshot) -> Info {
    let ex = now.executor.as_ref();
    let leader = now.leader.as_ref();
    let mut extra = BTreeMap::new();
    extra.insert(
        "session".to_string(),
        Value::String(now.session.as_ref().map_or(UNKNOWN.to_string(), |s| s.state.clone())),
    );
    Info {
        application: identity.application.clone(),
        dependencies: dependencies.to_vec(),
        ip: identity.ip.clone(),
        metrics: ex.map_or_else(|| json!({}), |e| if e.metrics.is_null() { json!({}) } else { e.metrics.clone() }),
        node: identity.node.clone(),
        port: identity.port.clone(),
        ports: identity.ports.clone(),
        process: ex.map_or_else(|| UNKNOWN.to_string(), |e| e.process.clone()),
        public: identity.public.clone(),
        state: leader.map_or_else(|| UNKNOWN.to_string(), |l| l.state.clone()),
        status: leader.map(|l| l.status.clone()).unwrap_or_default(),
        task: identity.task.clone(),
        seq: now.session.as_ref().and_then(|s| s.seq),
        cluster: identity.cluster.clone(),
        namespace: identity.namespace.clone(),
        // Millisecond resolution is plenty and keeps the JSON short.
        uptime: Some((uptime.as_millis() as f64) / 1000.0),
        restarts: ex.map(|e| e.restarts),
        epoch: ex.and_then(|e| e.epoch),
        sanity: ex.and_then(|e| e.sanity.map(Into::into)),
        probe: leader.filter(|l| l.leader).and_then(|l| l.probe.map(Into::into)),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Registration {
        Registration {
            ip: "10.0.0.2".into(),
            public: "1.2.3.4".into(),
            node: "n1".into(),
            ports: [("8080".to_string(), 31000u16)].into(),
            port: "8080".into(),
            application: "demo.zk".into(),
            task: "t-1".into(),
            cluster: "zk".into(),
            namespace: "demo".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_full_snapshot_fills_every_field() {
        let now = Snapshot {
            executor: Some(ExecutorStatus {
                process: "running".into(),
                restarts: 2,
                metrics: json!({"lag": 1}),
                epoch: Some(7),
                sanity: Some("failing"),
                ..Default::default()
            }),
            leader: Some(LeaderStatus { state: "leader".into(), status: "ok".into(), ..Default::default() }),
            session: Some(SessionStatus { state: "connected".into(), seq: Some(12), ..Default::default() }),
        };
        let info = build_info(&identity(), &["kafka".into()], Duration::from_millis(1500), &now);
        let js = serde_json::to_value(&info).unwrap();
        assert_eq!(js["process"], "running");
        assert_eq!(js["state"], "leader");
        assert_eq!(js["status"], "ok");
        assert_eq!(js["metrics"], json!({"lag": 1}));
        assert_eq!(js["seq"], 12);
        assert_eq!(js["restarts"], 2);
        assert_eq!(js["epoch"], 7);
        assert_eq!(js["uptime"], 1.5);
        assert_eq!(js["ports"]["8080"], 31000);
        assert_eq!(js["port"], "8080");
        assert_eq!(js["dependencies"], json!(["kafka"]));
        assert_eq!(js["session"], "connected");
        assert_eq!(js["cluster"], "zk");
        assert_eq!(js["namespace"], "demo");
        assert_eq!(js["sanity"], "failing");
    }

    #[test]
    fn silent_actors_still_give_every_original_field() {
        let info = build_info(&identity(), &[], Duration::ZERO, &Snapshot::default());
        let js = serde_json::to_value(&info).unwrap();
        for key in [
            "application",
            "dependencies",
            "ip",
            "metrics",
            "node",
            "port",
            "ports",
            "process",
            "public",
            "state",
            "status",
            "task",
        ] {
            assert!(js.get(key).is_some(), "{key} missing from {js}");
        }
        assert_eq!(js["process"], UNKNOWN);
        assert_eq!(js["state"], UNKNOWN);
        assert_eq!(js["status"], "");
        assert_eq!(js["metrics"], json!({}));
        assert!(js.get("seq").is_none() && js.get("restarts").is_none() && js.get("sanity").is_none());
    }
}
