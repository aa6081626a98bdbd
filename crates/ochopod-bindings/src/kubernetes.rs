//! Kubernetes: the downward API tells the pod who it is; pods reach each other at the pod IP on
//! container ports, so nothing is remapped (a `PORT_<n>` would only mislead peers).

use std::net::IpAddr;

use ochopod_config::Settings;
use ochopod_config::ZkTarget;

use crate::{listen_all, parse_ip, BindingError, Found, Platform};

const B: &str = "kubernetes";

pub(crate) fn resolve(settings: &Settings, platform: &Platform) -> Result<Found, BindingError> {
    let ip = platform
        .var("POD_IP")
        .ok_or_else(|| BindingError::missing(B, "POD_IP", "expose it with the downward API: fieldRef status.podIP"))?;
    let ip = parse_ip(B, "POD_IP", ip)?;
    // Kubernetes sets HOSTNAME to the pod name; POD_NAME is preferred because a pod spec may
    // override the hostname.
    let name = platform.var("POD_NAME").or_else(|| platform.var("HOSTNAME")).ok_or_else(|| {
        BindingError::missing(B, "POD_NAME (nor HOSTNAME)", "expose it with the downward API: fieldRef metadata.name")
    })?;
    let public = match platform.var("HOST_IP") {
        Some(h) => parse_ip(B, "HOST_IP", h)?.to_string(),
        None => ip.to_string(),
    };
    let application = match (settings.application.is_empty(), platform.var("POD_NAMESPACE")) {
        (true, Some(ns)) => Some(ns.to_string()),
        _ => None,
    };
    if settings.ports.iter().any(|(c, h)| c != h) {
        tracing::info!("kubernetes binding: PORT_<n> remaps are ignored, peers reach container ports at the pod IP");
    }
    Ok(Found {
        binding: B,
        ip,
        public,
        node: platform.var("NODE_NAME").unwrap_or_default().to_string(),
        ports: settings.ports.keys().map(|p| (*p, *p)).collect(),
        application,
        task: Some(name.to_string()),
        zk: zk_service(platform)?,
        listen: listen_all(settings),
    })
}

/// `OCHOPOD_ZK_SERVICE=<service>[:<port>][/<chroot>]`: the ZooKeeper behind a Kubernetes service.
/// The service's `<NAME>_SERVICE_HOST`/`_PORT` variables are used when Kubernetes injected them
/// (a service of the same namespace, created before the pod); otherwise the name is left to the
/// cluster DNS, on port 2181 unless given.
fn zk_service(platform: &Platform) -> Result<Option<ZkTarget>, BindingError> {
    let Some(spec) = platform.var("OCHOPOD_ZK_SERVICE") else { return Ok(None) };
    let bad = |detail: String| BindingError::malformed(B, "OCHOPOD_ZK_SERVICE", detail);
    let (service, chroot) = match spec.find('/') {
        Some(i) => (&spec[..i], &spec[i..]),
        None => (spec, ""),
    };
    let (name, port) = match service.rsplit_once(':') {
        Some((n, p)) => {
            let port = p.parse::<u16>().ok().filter(|p| *p != 0);
            (n, Some(port.ok_or_else(|| bad(format!("expected a port number after `:`, got `{p}`")))?))
        }
        None => (service, None),
    };
    let dns_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    if !dns_ok {
        return Err(bad(format!(
            "expected `<service>[:<port>][/<chroot>]` with a lowercase DNS service name, got `{spec}`"
        )));
    }
    let prefix = name.to_ascii_uppercase().replace('-', "_");
    let injected = if name.contains('.') { None } else { platform.var(&format!("{prefix}_SERVICE_HOST")) };
    let connect = match injected {
        Some(host) => {
            let host: IpAddr = parse_ip(B, &format!("{prefix}_SERVICE_HOST"), host)?;
            let port = match port {
                Some(p) => p,
                None => {
                    let var = format!("{prefix}_SERVICE_PORT");
                    let value = platform.var(&var).unwrap_or("2181");
                    value.parse::<u16>().map_err(|_| {
                        BindingError::malformed(B, var, format!("expected a port number, got `{value}`"))
                    })?
                }
            };
            format!("{host}:{port}")
        }
        None => format!("{name}:{}", port.unwrap_or(2181)),
    };
    ZkTarget::parse(&format!("{connect}{chroot}")).map(Some).map_err(bad)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ochopod_config::ZkSettings;
    use ochopod_core::Registration;

    use crate::testing::*;
    use crate::{resolve, BindingError, Placement, Platform};

    const DOWNWARD: [(&str, &str); 6] = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.9"),
        ("POD_IP", "127.0.0.2"),
        ("POD_NAME", "zookeeper-1"),
        ("POD_NAMESPACE", "demo-ns"),
        ("NODE_NAME", "node-a"),
        ("HOSTNAME", "zookeeper-1"),
    ];

    async fn placement(extra: &[(&str, &str)]) -> Result<Placement, BindingError> {
        let mut pairs: Vec<(&str, &str)> = DOWNWARD.to_vec();
        pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        let env = env(&pairs);
        let root = tempfile::tempdir().unwrap();
        resolve(&settings(YAML, &env), &Platform::new(env, root.path())).await
    }

    #[tokio::test]
    async fn downward_api_without_remapping() {
        // A stray PORT_<n> does not remap: peers use the pod IP and container ports.
        let p = placement(&[("PORT_2181", "31001")]).await.unwrap();
        let expected = Registration {
            ip: "127.0.0.2".into(),
            public: "127.0.0.2".into(),
            node: "node-a".into(),
            ports: BTreeMap::from([("2181".into(), 2181), ("2888".into(), 2888), ("8080".into(), 8080)]),
            port: "8080".into(),
            seq: 0,
            cluster: "zookeeper".into(),
            namespace: "demo".into(),
            application: "demo-ns".into(),
            task: "zookeeper-1".into(),
            fwk: "kubernetes".into(),
            zk: "127.0.0.1:2181".into(),
            debug: "false".into(),
            start: "true".into(),
            local: "false".into(),
            extra: Default::default(),
        };
        assert_eq!(
            p,
            Placement {
                registration: expected,
                listen: "0.0.0.0:8080".parse().unwrap(),
                zk: None,
                binding: "kubernetes".into()
            }
        );
    }

    #[tokio::test]
    async fn host_ip_is_public_and_hostname_names_the_pod() {
        let p = placement(&[("HOST_IP", "127.0.0.3"), ("POD_NAME", ""), ("HOSTNAME", "web-0"), ("NODE_NAME", "")])
            .await
            .unwrap();
        assert_eq!(p.registration.public, "127.0.0.3");
        assert_eq!(p.registration.task, "web-0");
        assert_eq!(p.registration.node, "");
        let p = placement(&[("ochopod_application", "explicit")]).await.unwrap();
        assert_eq!(p.registration.application, "explicit");
    }

    #[tokio::test]
    async fn zookeeper_from_a_service() {
        let zk = |p: Placement| p.zk.map(|z| (z.target.hosts, z.target.chroot));
        let injected = [
            ("OCHOPOD_ZK_SERVICE", "ochopod-zk"),
            ("OCHOPOD_ZK_SERVICE_HOST", "127.0.0.7"),
            ("OCHOPOD_ZK_SERVICE_PORT", "2182"),
        ];
        let p = placement(&injected).await.unwrap();
        assert_eq!(p.registration.zk, "127.0.0.7:2182");
        assert_eq!(
            p.zk,
            Some(ZkSettings {
                target: ochopod_config::ZkTarget::parse("127.0.0.7:2182").unwrap(),
                session_timeout: ochopod_config::defaults::session_timeout()
            })
        );
        let p = placement(&[("OCHOPOD_ZK_SERVICE", "ochopod-zk:2281/pods"), ("OCHOPOD_ZK_SERVICE_HOST", "127.0.0.7")]);
        assert_eq!(zk(p.await.unwrap()), Some(("127.0.0.7:2281".into(), Some("/pods".into()))));
        let p = placement(&[("OCHOPOD_ZK_SERVICE", "zk.infra.svc.cluster.local")]).await.unwrap();
        assert_eq!(zk(p), Some(("zk.infra.svc.cluster.local:2181".into(), None)));
        // The operator's OCHOPOD_ZK wins over the service.
        let p = placement(&[("OCHOPOD_ZK_SERVICE", "ochopod-zk"), ("OCHOPOD_ZK", "127.0.0.8:2181")]).await.unwrap();
        assert_eq!((p.zk, p.registration.zk.as_str()), (None, "127.0.0.8:2181"));
    }

    #[tokio::test]
    async fn missing_and_malformed_data_are_named() {
        let msg = |r: Result<Placement, BindingError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(placement(&[("POD_IP", "")]).await),
            "kubernetes binding: POD_IP is not set (expose it with the downward API: fieldRef status.podIP)"
        );
        assert_eq!(
            msg(placement(&[("POD_IP", "zookeeper-1")]).await),
            "kubernetes binding: POD_IP is malformed: expected an IP address, got `zookeeper-1`"
        );
        assert_eq!(
            msg(placement(&[("POD_NAME", ""), ("HOSTNAME", "")]).await),
            "kubernetes binding: POD_NAME (nor HOSTNAME) is not set (expose it with the downward API: fieldRef metadata.name)"
        );
        assert_eq!(
            msg(placement(&[("HOST_IP", "node-a")]).await),
            "kubernetes binding: HOST_IP is malformed: expected an IP address, got `node-a`"
        );
        assert_eq!(
            msg(placement(&[("OCHOPOD_ZK_SERVICE", "Ochopod_ZK")]).await),
            "kubernetes binding: OCHOPOD_ZK_SERVICE is malformed: expected `<service>[:<port>][/<chroot>]` with a lowercase DNS service name, got `Ochopod_ZK`"
        );
        assert_eq!(
            msg(placement(&[("OCHOPOD_ZK_SERVICE", "zk:http")]).await),
            "kubernetes binding: OCHOPOD_ZK_SERVICE is malformed: expected a port number after `:`, got `http`"
        );
        assert_eq!(
            msg(placement(&[("OCHOPOD_ZK_SERVICE", "zk"), ("ZK_SERVICE_HOST", "127.0.0.7"), ("ZK_SERVICE_PORT", "x")])
                .await),
            "kubernetes binding: ZK_SERVICE_PORT is malformed: expected a port number, got `x`"
        );
    }
}
