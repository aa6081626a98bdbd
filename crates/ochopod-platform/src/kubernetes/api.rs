//! The Kubernetes API through kube-rs: [`Kubernetes`] implements [`Platform`] on one namespace.
//!
//! - create: the ConfigMap, the headless Service, then the StatefulSet (`POST`, each refused
//!   with a clear error if it already exists); then waits, briefly, until the StatefulSet
//!   controller has created the pods, and returns them (forming is the portal's to wait for).
//! - list: the pods carrying the cluster label and the portal's labels (`labelSelector`),
//!   ordered by cluster and ordinal; a member's id and name are the pod's name.
//! - scale: up, one merge patch of the `scale` subresource; down, one replica at a time, each
//!   step waiting until the pod that went (the highest ordinal) is gone, so that each stop is
//!   clean (SIGTERM, the grace) and the cluster reconfigures between them.
//! - delete: the StatefulSet with `propagationPolicy: Foreground` (its pods go first), the
//!   Service and the ConfigMap (404 is fine: a failed deploy may have created only some), then
//!   waits until no pod of the cluster is left, so the portal can purge its ZooKeeper nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{config_map_name, name_of, Objects};
use crate::{Member, Platform, PlatformError, Spec, CLUSTER_LABEL};

const NAME: &str = "kubernetes";

/// Where and how clusters are created.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The namespace; the kubeconfig's (or the pod's service account's) when `None`.
    pub namespace: Option<String>,
    /// Labels put on every object and pod, and required when listing: a portal sees only its own.
    pub labels: BTreeMap<String, String>,
}

pub struct Kubernetes {
    client: kube::Client,
    namespace: String,
    labels: BTreeMap<String, String>,
    /// How long create and scale up wait for the controller to create the pods (not an error
    /// when it runs out: forming is judged by the portal).
    settle: Duration,
    /// How often the waits look.
    poll: Duration,
}

fn api_error(what: impl std::fmt::Display, e: kube::Error) -> PlatformError {
    PlatformError::Api { platform: NAME, detail: format!("{what}: {e}") }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// `web-3` → 3.
fn ordinal(pod: &str) -> u64 {
    pod.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(u64::MAX)
}

impl Kubernetes {
    /// The client from the environment (in a pod: its service account; else `KUBECONFIG` or
    /// `~/.kube/config`), checked by asking the API server for the namespace's StatefulSets.
    pub async fn connect(config: Config) -> Result<Kubernetes, PlatformError> {
        let inferred = kube::Config::infer().await.map_err(|e| PlatformError::Api {
            platform: NAME,
            detail: format!("no Kubernetes API to talk to ({e}): run in a pod, or set KUBECONFIG"),
        })?;
        let namespace = config.namespace.clone().unwrap_or_else(|| inferred.default_namespace.clone());
        let client = kube::Client::try_from(inferred)
            .map_err(|e| api_error("cannot build a client from the Kubernetes configuration", e))?;
        let k = Kubernetes::new(client, &namespace, config.labels);
        k.sets().list(&ListParams::default().limit(1)).await.map_err(|e| {
            api_error(format!("cannot list the StatefulSets of namespace {namespace} (reachable? allowed?)"), e)
        })?;
        Ok(k)
    }

    pub fn new(client: kube::Client, namespace: &str, labels: BTreeMap<String, String>) -> Kubernetes {
        Kubernetes {
            client,
            namespace: namespace.to_string(),
            labels,
            settle: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }

    /// Shorter waits (tests).
    pub fn with_waits(mut self, settle: Duration, poll: Duration) -> Kubernetes {
        self.settle = settle;
        self.poll = poll;
        self
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn selector(&self, cluster: Option<&str>) -> String {
        let mut terms: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        terms.push(match cluster {
            Some(c) => format!("{CLUSTER_LABEL}={c}"),
            None => CLUSTER_LABEL.to_string(),
        });
        terms.join(",")
    }

    async fn members(&self, cluster: Option<&str>) -> Result<Vec<Member>, PlatformError> {
        let params = ListParams::default().labels(&self.selector(cluster));
        let pods = self.pods().list(&params).await.map_err(|e| api_error("cannot list pods", e))?;
        let mut members: Vec<Member> = pods
            .items
            .iter()
            .map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let status = p.status.as_ref();
                let state = if p.metadata.deletion_timestamp.is_some() {
                    "terminating".to_string()
                } else {
                    status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "pending".into()).to_lowercase()
                };
                Member {
                    id: name.clone(),
                    name,
                    cluster: p.metadata.labels.as_ref().and_then(|l| l.get(CLUSTER_LABEL)).cloned().unwrap_or_default(),
                    ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
                    state,
                }
            })
            .collect();
        members.sort_by(|a, b| (&a.cluster, ordinal(&a.name), &a.name).cmp(&(&b.cluster, ordinal(&b.name), &b.name)));
        Ok(members)
    }

    /// Waits until `cluster` has `count` pods, for at most `limit`; returns the last listing.
    async fn until_count(&self, cluster: &str, count: usize, limit: Duration) -> Result<Vec<Member>, PlatformError> {
        let deadline = Instant::now() + limit;
        loop {
            let members = self.members(Some(cluster)).await?;
            if members.len() == count || Instant::now() >= deadline {
                return Ok(members);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The StatefulSet's grace for one pod, and a margin for the kubelet.
    async fn stop_limit(&self, set: &StatefulSet) -> Duration {
        let grace = set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        Duration::from_secs(grace + 30)
    }

    async fn set_replicas(&self, name: &str, replicas: usize) -> Result<(), PlatformError> {
        let patch = json!({"spec": {"replicas": replicas}});
        self.sets()
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(format!("cannot scale StatefulSet {name} to {replicas}"), e))?;
        Ok(())
    }

    async fn until_gone(&self, pod: &str, limit: Duration) -> Result<(), PlatformError> {
        let deadline = Instant::now() + limit;
        loop {
            match self.pods().get_opt(pod).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if Instant::now() < deadline => tokio::time::sleep(self.poll).await,
                Ok(Some(_)) => {
                    return Err(PlatformError::Api {
                        platform: NAME,
                        detail: format!("pod {pod} is still there after {limit:?}"),
                    })
                }
                Err(e) => return Err(api_error(format!("cannot read pod {pod}"), e)),
            }
        }
    }
}

impl Platform for Kubernetes {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create<'a>(&'a self, spec: &'a Spec, count: usize) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let o = Objects::new(spec, count, &self.labels);
            let post = PostParams { field_manager: Some("ochopod".into()), ..Default::default() };
            let exists = |kind: &str, name: Option<&String>, e: kube::Error| {
                if is_status(&e, 409) {
                    PlatformError::Api {
                        platform: NAME,
                        detail: format!(
                            "{kind} {} already exists in namespace {} (left by an earlier deploy? delete the cluster)",
                            name.map_or("?", |n| n.as_str()),
                            self.namespace
                        ),
                    }
                } else {
                    api_error(format!("cannot create {kind} {}", name.map_or("?", |n| n.as_str())), e)
                }
            };
            self.config_maps()
                .create(&post, &o.config_map)
                .await
                .map_err(|e| exists("ConfigMap", o.config_map.metadata.name.as_ref(), e))?;
            self.services()
                .create(&post, &o.service)
                .await
                .map_err(|e| exists("Service", o.service.metadata.name.as_ref(), e))?;
            self.sets()
                .create(&post, &o.stateful_set)
                .await
                .map_err(|e| exists("StatefulSet", o.stateful_set.metadata.name.as_ref(), e))?;
            self.until_count(&spec.cluster, count, self.settle).await
        }
        .boxed()
    }

    fn list<'a>(&'a self, cluster: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        self.members(cluster).boxed()
    }

    fn scale<'a>(
        &'a self,
        cluster: &'a str,
        replicas: usize,
        first: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let name = name_of(cluster);
            let set = self
                .sets()
                .get_opt(&name)
                .await
                .map_err(|e| api_error(format!("cannot read StatefulSet {name}"), e))?
                .ok_or_else(|| PlatformError::Api {
                    platform: NAME,
                    detail: format!("{cluster} has no StatefulSet {name} in namespace {}", self.namespace),
                })?;
            let have = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
            if replicas >= have {
                if replicas > have {
                    self.set_replicas(&name, replicas).await?;
                }
                return self.until_count(cluster, replicas, self.settle).await;
            }
            let going: Vec<String> = (replicas..have).rev().map(|i| format!("{name}-{i}")).collect();
            let wanted: Vec<&String> = first.iter().take(have - replicas).collect();
            if wanted.iter().any(|w| !going.contains(w)) {
                tracing::info!(?wanted, ?going, "a StatefulSet removes its highest ordinals, not the pods asked for");
            }
            let limit = self.stop_limit(&set).await;
            // One at a time: each stop is clean, and the cluster reconfigures between them.
            for (step, pod) in (replicas..have).rev().zip(&going) {
                self.set_replicas(&name, step).await?;
                self.until_gone(pod, limit).await?;
            }
            self.members(Some(cluster)).await
        }
        .boxed()
    }

    fn delete<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let members = self.members(Some(cluster)).await?;
            let name = name_of(cluster);
            let limit = match self.sets().get_opt(&name).await {
                Ok(Some(set)) => self.stop_limit(&set).await,
                _ => Duration::from_secs(60),
            };
            let gone = |kind: &str, name: &str, r: Result<(), kube::Error>| match r {
                Err(e) if !is_status(&e, 404) => Err(api_error(format!("cannot delete {kind} {name}"), e)),
                _ => Ok(()),
            };
            let r = self.sets().delete(&name, &DeleteParams::foreground()).await.map(|_| ());
            gone("StatefulSet", &name, r)?;
            let r = self.services().delete(&name, &DeleteParams::default()).await.map(|_| ());
            gone("Service", &name, r)?;
            let cm = config_map_name(cluster);
            let r = self.config_maps().delete(&cm, &DeleteParams::default()).await.map(|_| ());
            gone("ConfigMap", &cm, r)?;
            let left = self.until_count(cluster, 0, limit).await?;
            if !left.is_empty() {
                let names: Vec<&str> = left.iter().map(|m| m.name.as_str()).collect();
                return Err(PlatformError::Api {
                    platform: NAME,
                    detail: format!("{cluster}: pods still there after {limit:?}: {}", names.join(", ")),
                });
            }
            Ok(members)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::super::fake::FakeApi;
    use super::super::tests::spec;
    use super::*;

    const NS: &str = "demo";

    fn platform(fake: &FakeApi) -> Kubernetes {
        let labels = BTreeMap::from([("org.example/portal".to_string(), "p1".to_string())]);
        Kubernetes::new(fake.client(), NS, labels).with_waits(Duration::from_secs(5), Duration::from_millis(20))
    }

    fn call(method: &str, path: &str) -> (String, String) {
        (method.to_string(), path.to_string())
    }

    const SETS: &str = "/apis/apps/v1/namespaces/demo/statefulsets";

    #[tokio::test]
    async fn create_scale_and_delete_through_the_api() {
        let fake = FakeApi::start("t0ken");
        let k = platform(&fake);

        let members = k.create(&spec(), 3).await.unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["demo-zookeeper-0", "demo-zookeeper-1", "demo-zookeeper-2"]);
        assert!(members.iter().all(|m| m.cluster == "demo.zookeeper" && m.ip.is_some() && m.state == "running"));
        assert_eq!(
            fake.calls(),
            [
                call("POST", "/api/v1/namespaces/demo/configmaps"),
                call("POST", "/api/v1/namespaces/demo/services"),
                call("POST", SETS),
            ]
        );
        assert_eq!(fake.rejected(), Vec::<String>::new());
        // What was sent is exactly the objects (the same typed structs, the portal's labels on).
        let objects = Objects::new(&spec(), 3, &k.labels);
        let sent: Vec<serde_json::Value> =
            fake.requests().iter().filter(|r| r.method == "POST").filter_map(|r| r.body.clone()).collect();
        assert_eq!(sent, objects.to_list()["items"].as_array().unwrap().clone());
        // Pods are listed by the cluster's label and the portal's.
        let listing = fake.requests().into_iter().find(|r| r.path.ends_with("/pods")).unwrap();
        assert!(
            listing.query.contains("labelSelector=org.example%2Fportal%3Dp1%2Corg.ochopod.cluster%3Ddemo.zookeeper"),
            "{}",
            listing.query
        );
        // A second deploy of the same cluster is refused by the API server, and said plainly.
        let again = k.create(&spec(), 3).await.unwrap_err().to_string();
        assert!(again.contains("ConfigMap demo-zookeeper-declaration already exists in namespace demo"), "{again}");

        // Up: one merge patch of the scale subresource.
        let before = fake.requests().len();
        let members = k.scale("demo.zookeeper", 5, &[]).await.unwrap();
        assert_eq!(members.len(), 5);
        let scale: Vec<_> = fake.requests()[before..].iter().filter(|r| r.method == "PATCH").cloned().collect();
        assert_eq!(scale.len(), 1);
        assert_eq!(scale[0].path, format!("{SETS}/demo-zookeeper/scale"));
        assert_eq!(scale[0].content_type, "application/merge-patch+json");
        assert_eq!(scale[0].body, Some(json!({"spec": {"replicas": 5}})));

        // Down: one replica at a time, each step once the pod that went is gone.
        let before = fake.requests().len();
        let members = k.scale("demo.zookeeper", 3, &["demo-zookeeper-4".into()]).await.unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["demo-zookeeper-0", "demo-zookeeper-1", "demo-zookeeper-2"]);
        let steps: Vec<(String, Option<serde_json::Value>)> = fake.requests()[before..]
            .iter()
            .filter(|r| r.method == "PATCH" || r.path.contains("/pods/"))
            .map(|r| (format!("{} {}", r.method, r.path), r.body.clone()))
            .collect();
        assert_eq!(
            steps,
            [
                (format!("PATCH {SETS}/demo-zookeeper/scale"), Some(json!({"spec": {"replicas": 4}}))),
                ("GET /api/v1/namespaces/demo/pods/demo-zookeeper-4".into(), None),
                (format!("PATCH {SETS}/demo-zookeeper/scale"), Some(json!({"spec": {"replicas": 3}}))),
                ("GET /api/v1/namespaces/demo/pods/demo-zookeeper-3".into(), None),
            ]
        );
        assert_eq!(
            fake.objects("apps/demo/statefulsets/demo-zookeeper")["apps/demo/statefulsets/demo-zookeeper"]["spec"]
                ["replicas"],
            3
        );

        // Another portal's labels see nothing.
        let other = Kubernetes::new(fake.client(), NS, BTreeMap::from([("org.example/portal".into(), "p2".into())]));
        assert!(other.list(None).await.unwrap().is_empty());
        assert_eq!(k.list(None).await.unwrap().len(), 3);

        // Delete: the StatefulSet in the foreground, the Service, the ConfigMap; nothing left.
        let before = fake.requests().len();
        let removed = k.delete("demo.zookeeper").await.unwrap();
        assert_eq!(removed.len(), 3);
        let deletes: Vec<_> = fake.requests()[before..].iter().filter(|r| r.method == "DELETE").cloned().collect();
        let paths: Vec<&str> = deletes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                format!("{SETS}/demo-zookeeper").as_str(),
                "/api/v1/namespaces/demo/services/demo-zookeeper",
                "/api/v1/namespaces/demo/configmaps/demo-zookeeper-declaration",
            ]
        );
        assert_eq!(deletes[0].body.as_ref().unwrap()["propagationPolicy"], "Foreground");
        assert!(fake.objects("").is_empty(), "left: {:?}", fake.objects("").keys().collect::<Vec<_>>());
        assert!(k.list(None).await.unwrap().is_empty());
        // Deleting what is gone is not an error (a failed deploy's cleanup may find little).
        assert!(k.delete("demo.zookeeper").await.unwrap().is_empty());
        assert_eq!(fake.rejected(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn errors_name_what_failed() {
        let fake = FakeApi::start("t0ken");
        let k = platform(&fake);
        let e = k.scale("demo.nosuch", 2, &[]).await.unwrap_err().to_string();
        assert!(e.contains("demo.nosuch has no StatefulSet demo-nosuch in namespace demo"), "{e}");
        // A wrong token: the API server's 401, passed on.
        let mut config = kube::Config::new(fake.url.parse().unwrap());
        config.auth_info.token = Some("wrong".to_string().into());
        let k = Kubernetes::new(kube::Client::try_from(config).unwrap(), NS, BTreeMap::new());
        let e = k.list(None).await.unwrap_err().to_string();
        assert!(e.starts_with("kubernetes: cannot list pods:") && e.contains("Unauthorized"), "{e}");
    }

    #[tokio::test]
    async fn the_fake_refuses_what_the_api_server_would() {
        // The fake's own checks, so that an empty `rejected()` above means something.
        let fake = FakeApi::start("t0ken");
        let mut o = Objects::new(&spec(), 1, &BTreeMap::new());
        let tpl = o.stateful_set.spec.as_mut().unwrap();
        tpl.selector.match_labels = Some(BTreeMap::from([("app.kubernetes.io/name".into(), "other".into())]));
        let env = tpl.template.spec.as_mut().unwrap().containers[0].env.as_mut().unwrap();
        env[0].value_from.as_mut().unwrap().field_ref.as_mut().unwrap().field_path = "status.podIp".into();
        let sets: Api<StatefulSet> = Api::namespaced(fake.client(), NS);
        assert!(sets.create(&PostParams::default(), &o.stateful_set).await.is_err());
        let rejected = fake.rejected().join("\n");
        assert!(rejected.contains("`selector` does not match template `labels`"), "{rejected}");
        assert!(rejected.contains("Unsupported value: \"status.podIp\""), "{rejected}");
        // An unknown field (what a hand-built JSON could carry) is refused too.
        let client = fake.client();
        let request = hyper::Request::post(format!("/api/v1/namespaces/{NS}/configmaps"))
            .header("content-type", "application/json")
            .body(
                serde_json::to_vec(
                    &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datas": {}}),
                )
                .unwrap(),
            )
            .unwrap();
        assert!(client.request::<ConfigMap>(request).await.is_err());
        assert!(fake.rejected().last().unwrap().contains("unknown or misplaced fields"), "{:?}", fake.rejected());
    }
}
