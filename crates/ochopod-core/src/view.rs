//! What a configuration round hands to every pod, and the read-only view templates and hooks see.
//!
//! The leader POSTs a [`ControlPayload`] (`{"pods", "dependencies", "key"}`, plus our `epoch`,
//! which original pods ignore) to `/control/<task>/<grace>`. The executor turns it into a
//! [`ClusterView`]: the same data plus the derived `index`, `seq` and `size`, and `grep`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::registration::Registration;

/// `{uuid: registration}`, sorted by uuid (the original's key order).
pub type Pods = BTreeMap<String, Registration>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPayload {
    #[serde(default)]
    pub pods: Pods,
    /// `depends_on` entry as written (relative, absolute or glob) → the pods it resolved to.
    #[serde(default)]
    pub dependencies: BTreeMap<String, Pods>,
    /// The uuid of the pod this payload is addressed to.
    #[serde(default)]
    pub key: String,
    /// The round's fencing epoch (the leader lock's sequence). Absent from original leaders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl ControlPayload {
    /// Reads either shape a person may hold: the leader's payload (`pods` a map by uuid) or the
    /// cluster view that hooks and the probe get on stdin (`pods` a list of entries with their
    /// `key`), so that what a hook saw can be fed back to `ochopod render --cluster`.
    pub fn from_json(text: &str) -> Result<ControlPayload, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        if value.get("pods").is_some_and(serde_json::Value::is_array) {
            let view: ViewInput = serde_json::from_value(value)?;
            let to_map = |entries: Vec<PodEntry>| entries.into_iter().map(|e| (e.key, e.registration)).collect();
            return Ok(ControlPayload {
                pods: to_map(view.pods),
                dependencies: view.dependencies.into_iter().map(|(k, v)| (k, to_map(v))).collect(),
                key: view.key,
                epoch: view.epoch,
            });
        }
        serde_json::from_value(value)
    }
}

/// The parts of a serialised [`ClusterView`] that are not derived from the others.
#[derive(Deserialize)]
struct ViewInput {
    #[serde(default)]
    key: String,
    pods: Vec<PodEntry>,
    #[serde(default)]
    dependencies: BTreeMap<String, Vec<PodEntry>>,
    #[serde(default)]
    epoch: Option<u64>,
}

/// A registration plus its key, as templates iterate it (`{% for p in pods %}{{ p.key }}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodEntry {
    pub key: String,
    #[serde(flatten)]
    pub registration: Registration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterView {
    pub key: String,
    /// 0-based position of `key` in the sorted keys. Shifts when members change: use `seq` for
    /// anything that must stay stable (server ids, broker ids).
    pub index: usize,
    pub seq: u64,
    pub size: usize,
    /// This pod's own registration.
    pub pod: Registration,
    /// Every pod, sorted by key.
    pub pods: Vec<PodEntry>,
    pub dependencies: BTreeMap<String, Vec<PodEntry>>,
    pub epoch: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewError {
    /// The payload names a key that is not among its pods.
    UnknownKey(String),
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewError::UnknownKey(k) => write!(f, "payload key {k:?} is not one of its pods"),
        }
    }
}

impl std::error::Error for ViewError {}

fn entries(pods: &Pods) -> Vec<PodEntry> {
    pods.iter().map(|(key, registration)| PodEntry { key: key.clone(), registration: registration.clone() }).collect()
}

fn into_entries(pods: Pods) -> Vec<PodEntry> {
    pods.into_iter().map(|(key, registration)| PodEntry { key, registration }).collect()
}

impl ClusterView {
    /// [`Self::from_payload`] taking the payload: a pod's view of a large cluster is built
    /// without copying every registration.
    pub fn from_owned_payload(payload: ControlPayload) -> Result<Self, ViewError> {
        let ControlPayload { pods, dependencies, key, epoch } = payload;
        let index = pods.keys().position(|k| *k == key).ok_or_else(|| ViewError::UnknownKey(key.clone()))?;
        let pod = pods[&key].clone();
        Ok(ClusterView {
            key,
            index,
            seq: pod.seq,
            size: pods.len(),
            pod,
            pods: into_entries(pods),
            dependencies: dependencies.into_iter().map(|(k, v)| (k, into_entries(v))).collect(),
            epoch,
        })
    }

    pub fn from_payload(payload: &ControlPayload) -> Result<Self, ViewError> {
        let index = payload
            .pods
            .keys()
            .position(|k| *k == payload.key)
            .ok_or_else(|| ViewError::UnknownKey(payload.key.clone()))?;
        let pod = payload.pods[&payload.key].clone();
        Ok(ClusterView {
            key: payload.key.clone(),
            index,
            seq: pod.seq,
            size: payload.pods.len(),
            pod,
            pods: entries(&payload.pods),
            dependencies: payload.dependencies.iter().map(|(k, v)| (k.clone(), entries(v))).collect(),
            epoch: payload.epoch,
        })
    }

    /// The original's most used helper: `ip:host-port` (or `public:host-port`) of every pod of a
    /// dependency that exposes `port`, comma-joined in key order. An unknown dependency gives `""`.
    pub fn grep(&self, dependency: &str, port: u16, public: bool) -> String {
        let Some(pods) = self.dependencies.get(dependency) else { return String::new() };
        pods.iter()
            .filter_map(|p| {
                let host_port = p.registration.host_port(port)?;
                let ip = if public { &p.registration.public } else { &p.registration.ip };
                Some(format!("{ip}:{host_port}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ip: &str, seq: u64, ports: &[(u16, u16)]) -> Registration {
        Registration {
            ip: ip.into(),
            public: format!("pub-{ip}"),
            seq,
            ports: ports.iter().map(|(c, h)| (c.to_string(), *h)).collect(),
            ..Default::default()
        }
    }

    fn payload() -> ControlPayload {
        let mut pods = Pods::new();
        pods.insert("b".into(), reg("10.0.0.2", 7, &[(8080, 8080)]));
        pods.insert("a".into(), reg("10.0.0.1", 9, &[(8080, 8080)]));
        let mut zk = Pods::new();
        zk.insert("z2".into(), reg("10.0.1.2", 2, &[(2181, 31002)]));
        zk.insert("z1".into(), reg("10.0.1.1", 1, &[(2181, 31001)]));
        zk.insert("z3".into(), reg("10.0.1.3", 3, &[]));
        ControlPayload { pods, dependencies: [("zookeeper".to_string(), zk)].into(), key: "b".into(), epoch: Some(4) }
    }

    #[test]
    fn index_seq_and_size_come_from_the_sorted_keys() {
        let v = ClusterView::from_payload(&payload()).unwrap();
        assert_eq!((v.index, v.seq, v.size), (1, 7, 2));
        assert_eq!(v.pods[0].key, "a");
        assert_eq!(v.epoch, Some(4));
    }

    #[test]
    fn grep_lists_the_dependency_pods_that_expose_the_port() {
        let v = ClusterView::from_payload(&payload()).unwrap();
        assert_eq!(v.grep("zookeeper", 2181, false), "10.0.1.1:31001,10.0.1.2:31002");
        assert_eq!(v.grep("zookeeper", 2181, true), "pub-10.0.1.1:31001,pub-10.0.1.2:31002");
        assert_eq!(v.grep("kafka", 9092, false), "");
    }

    #[test]
    fn a_key_outside_the_pods_is_an_error() {
        let mut p = payload();
        p.key = "nope".into();
        assert_eq!(ClusterView::from_payload(&p), Err(ViewError::UnknownKey("nope".into())));
    }

    #[test]
    fn the_epoch_is_optional_on_the_wire() {
        let p: ControlPayload = serde_json::from_str(r#"{"pods":{},"dependencies":{},"key":"k"}"#).unwrap();
        assert_eq!(p.epoch, None);
        assert!(!serde_json::to_string(&p).unwrap().contains("epoch"));
    }

    #[test]
    fn the_view_a_hook_sees_reads_back_as_the_payload() {
        let payload = payload();
        let view = ClusterView::from_payload(&payload).unwrap();
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(ControlPayload::from_json(&text).unwrap(), payload);
        let raw = serde_json::to_string(&payload).unwrap();
        assert_eq!(ControlPayload::from_json(&raw).unwrap(), payload);
    }
}
