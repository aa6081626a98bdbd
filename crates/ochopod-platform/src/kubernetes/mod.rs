//! Kubernetes: a cluster is a StatefulSet, created, scaled and deleted through the Kubernetes API
//! with kube-rs ([`Kubernetes`], in [`api`]).
//!
//! A deploy is three objects ([`Objects`]), built with k8s-openapi's typed structs so that a
//! misspelled field or a wrong type does not compile, and serialised by those types: a ConfigMap
//! holding the declaration (mounted by `subPath` at the spec's path), a headless Service (the
//! StatefulSet's `serviceName`, and every pod's DNS name) and a StatefulSet whose pods get the
//! downward API's variables that ochopod's kubernetes binding reads ([`DOWNWARD_API`]).
//! `ochopod deploy --platform kubernetes --dry-run` prints the same objects as a `v1` `List`
//! (what `kubectl apply -f` takes).
//!
//! Scaling a StatefulSet down removes the highest ordinal first, which is the newest pod, not
//! necessarily the highest seq: Kubernetes offers no way to pick which pod of a StatefulSet goes.

pub mod api;
#[cfg(any(test, feature = "fake"))]
pub mod fake;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

pub use api::{Config, Kubernetes};

use crate::{dns_name, Spec, CLUSTER_LABEL};

/// The downward API's variables every pod gets, and the fields they come from: what
/// `crates/ochopod-bindings/src/kubernetes.rs` reads (`POD_IP` and `POD_NAME` are required,
/// `POD_NAMESPACE` names the application, `NODE_NAME` the node, `HOST_IP` the public address).
pub const DOWNWARD_API: [(&str, &str); 5] = [
    ("POD_IP", "status.podIP"),
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("NODE_NAME", "spec.nodeName"),
    ("HOST_IP", "status.hostIP"),
];

/// The label the StatefulSet selects its pods by (its selector is immutable: one label only).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The container's name in every pod.
pub const CONTAINER: &str = "pod";
/// The ConfigMap's key holding the declaration.
pub const DECLARATION_KEY: &str = "pod.yaml";

/// The objects of one cluster, all named after it ([`dns_name`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Objects {
    pub config_map: ConfigMap,
    pub service: Service,
    pub stateful_set: StatefulSet,
}

/// The StatefulSet's and the Service's name.
pub fn name_of(cluster: &str) -> String {
    dns_name(cluster)
}

/// The ConfigMap's name.
pub fn config_map_name(cluster: &str) -> String {
    format!("{}-declaration", dns_name(cluster))
}

impl Objects {
    /// The objects of `spec` with `replicas` pods; `extra` labels (the portal's own) go on every
    /// object and pod, so that a portal lists only what it created.
    pub fn new(spec: &Spec, replicas: usize, extra: &BTreeMap<String, String>) -> Objects {
        let name = name_of(&spec.cluster);
        let mut labels = extra.clone();
        labels.insert(NAME_LABEL.into(), name.clone());
        labels.insert("app.kubernetes.io/managed-by".into(), "ochopod".into());
        labels.insert(CLUSTER_LABEL.into(), spec.cluster.clone());
        let meta = |name: String| ObjectMeta { name: Some(name), labels: Some(labels.clone()), ..Default::default() };
        let selector = BTreeMap::from([(NAME_LABEL.to_string(), name.clone())]);

        let config_map = ConfigMap {
            metadata: meta(config_map_name(&spec.cluster)),
            data: Some(BTreeMap::from([(DECLARATION_KEY.to_string(), spec.declaration.clone())])),
            ..Default::default()
        };
        let service = Service {
            metadata: meta(name.clone()),
            spec: Some(ServiceSpec {
                // Headless: every pod gets a DNS name, nothing is load-balanced.
                cluster_ip: Some("None".into()),
                selector: Some(selector.clone()),
                ports: Some(
                    spec.ports
                        .iter()
                        .map(|p| ServicePort {
                            name: Some(format!("p{p}")),
                            port: i32::from(*p),
                            target_port: Some(IntOrString::Int(i32::from(*p))),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                // Peers find each other before they are ready: ochopod forms the cluster itself.
                publish_not_ready_addresses: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut env: Vec<EnvVar> = DOWNWARD_API
            .iter()
            .map(|(var, path)| EnvVar {
                name: var.to_string(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { field_path: path.to_string(), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        env.extend(spec.env.iter().map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        }));
        let container = Container {
            name: CONTAINER.into(),
            image: Some(spec.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["ochopod".into(), "run".into(), spec.path.clone()]),
            env: Some(env),
            ports: Some(
                spec.ports
                    .iter()
                    .map(|p| ContainerPort {
                        container_port: i32::from(*p),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            // Only the declaration's file: the image's folder keeps its other files.
            volume_mounts: Some(vec![VolumeMount {
                name: "declaration".into(),
                mount_path: spec.path.clone(),
                sub_path: Some(DECLARATION_KEY.into()),
                read_only: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let stateful_set = StatefulSet {
            metadata: meta(name.clone()),
            spec: Some(StatefulSetSpec {
                service_name: Some(name.clone()),
                replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
                // ochopod forms the cluster itself: every pod starts at once, none waits for another.
                pod_management_policy: Some("Parallel".into()),
                selector: LabelSelector { match_labels: Some(selector), ..Default::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                    spec: Some(PodSpec {
                        // SIGTERM, then the process's grace and ochopod's own shutdown.
                        termination_grace_period_seconds: Some(spec.grace_secs as i64 + 15),
                        containers: vec![container],
                        volumes: Some(vec![Volume {
                            name: "declaration".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: config_map_name(&spec.cluster),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        Objects { config_map, service, stateful_set }
    }

    /// The objects as a `v1` `List`, in the order they are created.
    pub fn to_list(&self) -> Value {
        let item = |v: Result<Value, serde_json::Error>| v.unwrap_or_else(|e| json!({"error": e.to_string()}));
        json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                item(serde_json::to_value(&self.config_map)),
                item(serde_json::to_value(&self.service)),
                item(serde_json::to_value(&self.stateful_set)),
            ],
        })
    }
}

/// The objects of a deploy as a `v1` `List` (what `ochopod deploy --dry-run` prints).
pub fn objects(spec: &Spec, replicas: usize) -> Value {
    Objects::new(spec, replicas, &BTreeMap::new()).to_list()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    pub fn spec() -> Spec {
        Spec {
            cluster: "demo.zookeeper".into(),
            image: "ochopod-zookeeper:latest".into(),
            declaration: "cluster: zookeeper\nnamespace: demo\n".into(),
            path: "/opt/ochopod/pod.yaml".into(),
            env: [("OCHOPOD_ZK".to_string(), "zk:2181".to_string())].into(),
            ports: vec![8080, 2181, 2888, 3888],
            grace_secs: 30,
        }
    }

    /// JSON → the typed struct → JSON gives the same document: k8s-openapi's deserializers drop
    /// fields they do not know, so a misspelled or misplaced field fails here.
    fn round_trips<T: Serialize + DeserializeOwned>(item: &Value) {
        let typed: T = serde_json::from_value(item.clone()).unwrap_or_else(|e| panic!("{e}: {item:#}"));
        assert_eq!(&serde_json::to_value(&typed).unwrap(), item);
    }

    #[test]
    fn the_dry_run_list_round_trips_through_the_kubernetes_types() {
        let list = objects(&spec(), 3);
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!((items[0]["apiVersion"].as_str(), items[0]["kind"].as_str()), (Some("v1"), Some("ConfigMap")));
        assert_eq!((items[1]["apiVersion"].as_str(), items[1]["kind"].as_str()), (Some("v1"), Some("Service")));
        assert_eq!(
            (items[2]["apiVersion"].as_str(), items[2]["kind"].as_str()),
            (Some("apps/v1"), Some("StatefulSet"))
        );
        round_trips::<ConfigMap>(&items[0]);
        round_trips::<Service>(&items[1]);
        round_trips::<StatefulSet>(&items[2]);
        // And the whole list, as kubectl reads it.
        let typed: k8s_openapi::List<StatefulSet> = serde_json::from_value(
            json!({"apiVersion": "apps/v1", "kind": "StatefulSetList", "metadata": {}, "items": [items[2]]}),
        )
        .unwrap();
        assert_eq!(typed.items.len(), 1);
    }

    #[test]
    fn the_stateful_set_holds_together() {
        let o = Objects::new(&spec(), 3, &BTreeMap::from([("org.example/portal".into(), "a".into())]));
        let sts = o.stateful_set.spec.as_ref().unwrap();
        let template_labels = sts.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        // The selector selects the template's pods (the API server refuses it otherwise), and
        // the Service selects the same pods.
        for (k, v) in sts.selector.match_labels.as_ref().unwrap() {
            assert_eq!(template_labels.get(k), Some(v), "{k}");
        }
        assert_eq!(o.service.spec.as_ref().unwrap().selector, sts.selector.match_labels);
        // serviceName names the headless Service.
        assert_eq!(sts.service_name, o.service.metadata.name);
        assert_eq!(o.service.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
        assert_eq!(sts.replicas, Some(3));
        assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
        // The portal's labels and the cluster's are on the pods, so that listing finds them.
        assert_eq!(template_labels.get("org.example/portal").map(String::as_str), Some("a"));
        assert_eq!(template_labels.get(CLUSTER_LABEL).map(String::as_str), Some("demo.zookeeper"));

        let pod = sts.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.command.as_ref().unwrap(), &["ochopod", "run", "/opt/ochopod/pod.yaml"]);
        // Every declared port is a container port and a Service port, to the same number.
        let container_ports: Vec<i32> = c.ports.as_ref().unwrap().iter().map(|p| p.container_port).collect();
        let service_ports: Vec<(i32, Option<IntOrString>)> = o
            .service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.port, p.target_port.clone()))
            .collect();
        assert_eq!(container_ports, vec![8080, 2181, 2888, 3888]);
        assert_eq!(service_ports, container_ports.iter().map(|p| (*p, Some(IntOrString::Int(*p)))).collect::<Vec<_>>());
        // The downward API: exactly the variables the kubernetes binding reads, from their fields.
        let env = c.env.as_ref().unwrap();
        let fields: Vec<(&str, &str)> = env
            .iter()
            .filter_map(|e| Some((e.name.as_str(), e.value_from.as_ref()?.field_ref.as_ref()?.field_path.as_str())))
            .collect();
        assert_eq!(
            fields,
            [
                ("POD_IP", "status.podIP"),
                ("POD_NAME", "metadata.name"),
                ("POD_NAMESPACE", "metadata.namespace"),
                ("NODE_NAME", "spec.nodeName"),
                ("HOST_IP", "status.hostIP"),
            ]
        );
        let binding = include_str!("../../../ochopod-bindings/src/kubernetes.rs");
        for (var, _) in DOWNWARD_API {
            assert!(binding.contains(&format!("var(\"{var}\")")), "the binding does not read {var}");
        }
        assert!(env.iter().any(|e| e.name == "OCHOPOD_ZK" && e.value.as_deref() == Some("zk:2181")));
        // The declaration: the ConfigMap's key, mounted by subPath at the path `ochopod run` reads.
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.sub_path.as_deref()),
            ("/opt/ochopod/pod.yaml", Some(DECLARATION_KEY))
        );
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, mount.name);
        assert_eq!(volume.config_map.as_ref().unwrap().name, o.config_map.metadata.name.clone().unwrap());
        assert_eq!(o.config_map.data.as_ref().unwrap()[DECLARATION_KEY], "cluster: zookeeper\nnamespace: demo\n");
        assert_eq!(pod.termination_grace_period_seconds, Some(45));
    }
}
