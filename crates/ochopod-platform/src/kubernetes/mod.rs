//! Kubernetes: the objects a deploy creates, generated offline as JSON — a ConfigMap holding the
//! declaration, a headless Service (a StatefulSet's `serviceName`) and a StatefulSet whose pods
//! get the downward API's variables that ochopod's kubernetes binding reads (`POD_IP`,
//! `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`, `HOST_IP`).
//!
//! Why JSON and not k8s-openapi's types in the build: they would only be a typed way to write
//! these three objects, at the price of one of the slowest crates to compile in the ecosystem,
//! in every build of the binary. The types are used where they check something: the tests
//! deserialize every generated object into k8s-openapi's structs and serialize it back, so a
//! misspelled field (which the structs would drop) or a wrong type fails the test.
//!
//! There is no Kubernetes API client here (no kube-rs): [`Kubernetes`]'s calls say so, and the
//! objects are applied with `kubectl apply -f` (`ochopod deploy --platform kubernetes --dry-run`
//! prints them). Scaling a StatefulSet down removes the highest ordinal first, which is the
//! newest pod, not necessarily the highest seq.

use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Value};

use crate::{dns_name, Member, Platform, PlatformError, Spec, CLUSTER_LABEL};

/// The three objects of a deploy, as a `v1` `List` (what `kubectl apply -f` takes).
pub fn objects(spec: &Spec, replicas: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [config_map(spec), service(spec), stateful_set(spec, replicas)],
    })
}

fn labels(spec: &Spec) -> Value {
    json!({
        "app.kubernetes.io/name": dns_name(&spec.cluster),
        "app.kubernetes.io/managed-by": "ochopod",
        CLUSTER_LABEL: spec.cluster,
    })
}

fn selector(spec: &Spec) -> Value {
    json!({"app.kubernetes.io/name": dns_name(&spec.cluster)})
}

pub fn config_map(spec: &Spec) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{}-declaration", dns_name(&spec.cluster)), "labels": labels(spec)},
        "data": {"pod.yaml": spec.declaration},
    })
}

pub fn service(spec: &Spec) -> Value {
    let ports: Vec<Value> =
        spec.ports.iter().map(|p| json!({"name": format!("p{p}"), "port": p, "targetPort": p})).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": dns_name(&spec.cluster), "labels": labels(spec)},
        "spec": {"clusterIP": "None", "selector": selector(spec), "ports": ports, "publishNotReadyAddresses": true},
    })
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

pub fn stateful_set(spec: &Spec, replicas: usize) -> Value {
    let mut env = vec![
        field_env("POD_IP", "status.podIP"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("HOST_IP", "status.hostIP"),
    ];
    env.extend(spec.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    let ports: Vec<Value> = spec.ports.iter().map(|p| json!({"containerPort": p, "protocol": "TCP"})).collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": dns_name(&spec.cluster), "labels": labels(spec)},
        "spec": {
            "serviceName": dns_name(&spec.cluster),
            "replicas": replicas,
            // ochopod forms the cluster itself: every pod starts at once, none waits for another.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(spec)},
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": {
                    // SIGTERM, then the process's grace and ochopod's own shutdown.
                    "terminationGracePeriodSeconds": spec.grace_secs + 15,
                    "containers": [{
                        "name": "pod",
                        "image": spec.image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["ochopod", "run", spec.path],
                        "env": env,
                        "ports": ports,
                        // Only the declaration's file: the image's folder keeps its other files.
                        "volumeMounts": [{"name": "declaration", "mountPath": spec.path, "subPath": "pod.yaml", "readOnly": true}],
                    }],
                    "volumes": [{"name": "declaration", "configMap": {"name": format!("{}-declaration", dns_name(&spec.cluster))}}],
                },
            },
        },
    })
}

/// The Kubernetes platform without an API client: every call says what to do instead.
pub struct Kubernetes;

fn unsupported<T: Send + 'static>() -> BoxFuture<'static, Result<T, PlatformError>> {
    async {
        Err(PlatformError::Unsupported(
            "kubernetes: this build has no Kubernetes API client; generate the objects with `ochopod deploy \
             --platform kubernetes --dry-run` and apply them with kubectl"
                .into(),
        ))
    }
    .boxed()
}

impl Platform for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }
    fn create<'a>(&'a self, _: &'a Spec, _: usize) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        unsupported()
    }
    fn list<'a>(&'a self, _: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        unsupported()
    }
    fn scale<'a>(&'a self, _: &'a str, _: usize, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        unsupported()
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn spec() -> Spec {
        Spec {
            cluster: "demo.zookeeper".into(),
            image: "ochopod-zookeeper:latest".into(),
            declaration: "cluster: zookeeper\nnamespace: demo\n".into(),
            path: "/opt/ochopod/pod.yaml".into(),
            env: [("OCHOPOD_ZK".to_string(), "zk:2181".to_string())].into(),
            ports: vec![8080, 2181],
            grace_secs: 30,
        }
    }

    #[test]
    fn the_stateful_set_carries_the_downward_api_and_the_declaration() {
        let s = stateful_set(&spec(), 3);
        assert_eq!(s["spec"]["replicas"], 3);
        let c = &s["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["ochopod", "run", "/opt/ochopod/pod.yaml"]));
        let env = c["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})));
        assert!(env.contains(&json!({"name": "OCHOPOD_ZK", "value": "zk:2181"})));
        assert_eq!(
            s["spec"]["selector"]["matchLabels"],
            s["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                .as_str()
                .map(|n| json!({"app.kubernetes.io/name": n}))
                .unwrap()
        );
        assert_eq!(config_map(&spec())["data"]["pod.yaml"], "cluster: zookeeper\nnamespace: demo\n");
    }
}
