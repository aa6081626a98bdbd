//! The Docker Engine API through bollard, over the local socket (`DOCKER_HOST` when set).
//!
//! A member is a container named `<cluster as a DNS name>-<8 hex>` (its hostname too), on the
//! configured network, labelled with the cluster, the [`Spec`] and the portal's own labels; its
//! entrypoint is `ochopod run <spec.path>`, and the declaration is copied to that path before it
//! starts. Stopping is `docker stop` with the spec's grace (SIGTERM: ochopod tears its process
//! down and closes its session), then the container and its anonymous volumes are removed. The
//! API version is negotiated with the engine (20.10 speaks 1.41, older than bollard's default).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
    UploadToContainerOptions,
};
use futures::future::{join_all, BoxFuture, FutureExt};

use crate::{dns_name, Member, Platform, PlatformError, Spec, CLUSTER_LABEL, SPEC_LABEL};

const NAME: &str = "docker";

/// Where and how members are created.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The network members join (`--network`); the engine's default bridge when `None`.
    pub network: Option<String>,
    /// Labels put on every member, and required when listing: a portal sees only its own.
    pub labels: BTreeMap<String, String>,
}

pub struct Docker {
    api: bollard::Docker,
    config: Config,
}

fn api_error(e: impl std::fmt::Display) -> PlatformError {
    PlatformError::Api { platform: NAME, detail: e.to_string() }
}

impl Docker {
    /// Connects to the local engine and agrees on an API version, or says why it cannot.
    pub async fn connect(config: Config) -> Result<Docker, PlatformError> {
        let api = bollard::Docker::connect_with_local_defaults().map_err(api_error)?;
        let api = api.negotiate_version().await.map_err(|e| PlatformError::Api {
            platform: NAME,
            detail: format!("cannot reach the Docker engine ({e}); is it running, and may this user use its socket?"),
        })?;
        Ok(Docker { api, config })
    }

    fn filters(&self, cluster: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut labels: Vec<String> = self.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.push(match cluster {
            Some(c) => format!("{CLUSTER_LABEL}={c}"),
            None => CLUSTER_LABEL.to_string(),
        });
        HashMap::from([("label".to_string(), labels)])
    }

    async fn summaries(&self, cluster: Option<&str>) -> Result<Vec<ContainerSummary>, PlatformError> {
        let options = ListContainersOptions { all: true, filters: Some(self.filters(cluster)), ..Default::default() };
        let mut list = self.api.list_containers(Some(options)).await.map_err(api_error)?;
        list.sort_by_key(|c| (c.created.unwrap_or_default(), c.names.clone()));
        Ok(list)
    }

    fn member(&self, c: &ContainerSummary) -> Member {
        let networks = c.network_settings.as_ref().and_then(|n| n.networks.as_ref());
        let ip = networks.and_then(|n| {
            let on = |e: &bollard::models::EndpointSettings| e.ip_address.clone().filter(|ip| !ip.is_empty());
            match &self.config.network {
                Some(name) => n.get(name).and_then(on),
                None => n.values().find_map(on),
            }
        });
        Member {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            cluster: c.labels.as_ref().and_then(|l| l.get(CLUSTER_LABEL)).cloned().unwrap_or_default(),
            ip,
            state: c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        }
    }

    async fn create_one(&self, spec: &Spec) -> Result<String, PlatformError> {
        let name = format!("{}-{:08x}", dns_name(&spec.cluster), rand_u32());
        let mut labels: HashMap<String, String> =
            self.config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(CLUSTER_LABEL.into(), spec.cluster.clone());
        labels.insert(SPEC_LABEL.into(), serde_json::to_string(spec).map_err(api_error)?);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: Some(name.clone()),
            entrypoint: Some(vec!["ochopod".into(), "run".into(), spec.path.clone()]),
            cmd: Some(Vec::new()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            stop_signal: Some("SIGTERM".into()),
            stop_timeout: Some(spec.grace_secs as i64),
            host_config: Some(HostConfig { network_mode: self.config.network.clone(), ..Default::default() }),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let created = self.api.create_container(Some(options), body).await.map_err(|e| PlatformError::Api {
            platform: NAME,
            detail: format!("cannot create a container of {} from image {}: {e}", spec.cluster, spec.image),
        })?;
        let (dir, file) = match spec.path.rsplit_once('/') {
            Some(("", file)) => ("/".to_string(), file),
            Some((dir, file)) => (dir.to_string(), file),
            None => {
                return Err(PlatformError::Unsupported(format!("the declaration's path {} is not absolute", spec.path)))
            }
        };
        let archive = crate::tar::single_file(file, spec.declaration.as_bytes());
        let upload = UploadToContainerOptions { path: dir.clone(), ..Default::default() };
        self.api.upload_to_container(&created.id, Some(upload), bollard::body_full(archive.into())).await.map_err(
            |e| PlatformError::Api {
                platform: NAME,
                detail: format!(
                    "cannot copy the declaration to {dir} in {name} (does the image have that folder?): {e}"
                ),
            },
        )?;
        self.api
            .start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| PlatformError::Api { platform: NAME, detail: format!("cannot start {name}: {e}") })?;
        Ok(created.id)
    }

    /// A clean stop (SIGTERM, then the grace), then removal with anonymous volumes.
    async fn remove(&self, id: &str, grace: Duration) -> Result<(), PlatformError> {
        let stop = StopContainerOptions { t: Some(grace.as_secs() as i32), ..Default::default() };
        match self.api.stop_container(id, Some(stop)).await {
            // 304: already stopped; 404: already gone.
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
            Err(e) => return Err(api_error(format!("cannot stop {id}: {e}"))),
        }
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.api.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(api_error(format!("cannot remove {id}: {e}"))),
        }
    }

    async fn grace_of(&self, id: &str) -> Duration {
        let spec = self.api.inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>).await;
        let secs = spec
            .ok()
            .and_then(|c| c.config?.labels?.get(SPEC_LABEL).cloned())
            .and_then(|s| serde_json::from_str::<Spec>(&s).ok())
            .map_or(30, |s| s.grace_secs);
        Duration::from_secs(secs)
    }

    async fn members(&self, ids: &[String]) -> Result<Vec<Member>, PlatformError> {
        let all = self.summaries(None).await?;
        Ok(all.iter().filter(|c| c.id.as_ref().is_some_and(|id| ids.contains(id))).map(|c| self.member(c)).collect())
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u32
}

impl Platform for Docker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create<'a>(&'a self, spec: &'a Spec, count: usize) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let created = join_all((0..count).map(|_| self.create_one(spec))).await;
            let mut ids = Vec::new();
            for c in created {
                ids.push(c?);
            }
            self.members(&ids).await
        }
        .boxed()
    }

    fn list<'a>(&'a self, cluster: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move { Ok(self.summaries(cluster).await?.iter().map(|c| self.member(c)).collect()) }.boxed()
    }

    fn scale<'a>(
        &'a self,
        cluster: &'a str,
        replicas: usize,
        first: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let summaries = self.summaries(Some(cluster)).await?;
            let have = summaries.len();
            if replicas > have {
                let spec =
                    summaries.iter().find_map(|c| c.labels.as_ref()?.get(SPEC_LABEL).cloned()).ok_or_else(|| {
                        PlatformError::Unsupported(format!("{cluster} has no member to copy the spec from"))
                    })?;
                let spec: Spec = serde_json::from_str(&spec).map_err(|e| {
                    PlatformError::Unsupported(format!("{cluster}: unreadable {SPEC_LABEL} label: {e}"))
                })?;
                self.create(&spec, replicas - have).await?;
            } else if replicas < have {
                // The ones asked for first, then the newest.
                let mut order: Vec<String> =
                    first.iter().filter(|id| summaries.iter().any(|c| c.id.as_ref() == Some(id))).cloned().collect();
                for c in summaries.iter().rev() {
                    if let Some(id) = &c.id {
                        if !order.contains(id) {
                            order.push(id.clone());
                        }
                    }
                }
                // One at a time: each stop is clean, and the cluster reconfigures between them.
                for id in order.into_iter().take(have - replicas) {
                    let grace = self.grace_of(&id).await;
                    self.remove(&id, grace).await?;
                }
            }
            self.list(Some(cluster)).await
        }
        .boxed()
    }

    fn delete<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PlatformError>> {
        async move {
            let members = self.list(Some(cluster)).await?;
            let removed = join_all(members.iter().map(|m| async move {
                let grace = self.grace_of(&m.id).await;
                self.remove(&m.id, grace).await
            }))
            .await;
            for r in removed {
                r?;
            }
            Ok(members)
        }
        .boxed()
    }
}
