//! Marathon/Mesos: the agent's address (`HOST`), the published host ports (`PORT_<n>`), the
//! Marathon ids, and the ZooKeeper of the Mesos cluster read from the agent's configuration files
//! (mounted read-only into the container, as the original's tooling did).

use std::net::IpAddr;
use std::time::Duration;

use ochopod_config::Settings;
use ochopod_config::ZkTarget;

use crate::{listen_all, read_optional, BindingError, Found, Platform};

const B: &str = "marathon";

/// Where a Mesos agent says where its masters' ZooKeeper is, first found wins (the original's order):
/// `MESOS_MASTER=` in the DC/OS agent files, then the package install's `/etc/mesos/zk`.
pub(crate) const MESOS_ZK_FILES: [(&str, Option<&str>); 3] = [
    ("/opt/mesosphere/etc/mesos-slave-common", Some("MESOS_MASTER=")),
    ("/opt/mesosphere/etc/mesos-slave", Some("MESOS_MASTER=")),
    ("/etc/mesos/zk", None),
];

/// A `HOST` that is a name is resolved once; DNS gets longer than the metadata timeout.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn resolve(settings: &Settings, platform: &Platform) -> Result<Found, BindingError> {
    let host = platform.var("HOST").ok_or_else(|| {
        BindingError::missing(B, "HOST", "Marathon sets it to the agent's address; is this a Marathon task?")
    })?;
    let application = platform
        .var("MARATHON_APP_ID")
        .ok_or_else(|| BindingError::missing(B, "MARATHON_APP_ID", "Marathon sets it for every task"))?;
    let task = platform
        .var("MESOS_TASK_ID")
        .ok_or_else(|| BindingError::missing(B, "MESOS_TASK_ID", "Mesos sets it for every task"))?;
    let ip = host_address(host).await?;
    Ok(Found {
        binding: B,
        ip,
        // The agent's address is the best public address Mesos tells us about.
        public: ip.to_string(),
        node: host.to_string(),
        ports: settings.ports.clone(),
        application: Some(app_id(application)),
        task: Some(task.to_string()),
        zk: mesos_zk(B, platform)?,
        listen: listen_all(settings),
    })
}

/// Marathon ids start with `/` (`/my-service/database`); the original registered them without it.
pub(crate) fn app_id(id: &str) -> String {
    id.strip_prefix('/').unwrap_or(id).to_string()
}

async fn host_address(host: &str) -> Result<IpAddr, BindingError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let unresolved = |detail: String| BindingError::Unusable { binding: B, detail: format!("HOST `{host}` {detail}") };
    let addresses = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| unresolved(format!("did not resolve within {DNS_TIMEOUT:?}")))?
        .map_err(|e| unresolved(format!("does not resolve: {e}")))?
        .map(|a| a.ip())
        .collect::<Vec<_>>();
    // IPv4 first, as the original's `getent ahostsv4`.
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| unresolved("resolves to no address".into()))
}

/// The Mesos ZooKeeper, from the first agent file that names one; `None` when there is none.
/// A value that is not a `zk://` URL (a plain `MESOS_MASTER=host:5050`) names a master, not
/// ZooKeeper, and is skipped; a broken `zk://` URL is an error naming its file.
pub(crate) fn mesos_zk(binding: &'static str, platform: &Platform) -> Result<Option<ZkTarget>, BindingError> {
    for (path, key) in MESOS_ZK_FILES {
        let file = platform.file(path);
        let Some(text) = read_optional(binding, &file)? else { continue };
        let value = match key {
            Some(key) => text.lines().find_map(|l| l.trim().strip_prefix(key)),
            None => text.lines().map(str::trim).find(|l| !l.is_empty()),
        };
        let Some(value) = value.map(|v| v.trim().trim_matches('"')) else { continue };
        if !value.starts_with("zk://") {
            tracing::debug!(file = %file.display(), "no zk:// URL there, skipped");
            continue;
        }
        let target = ZkTarget::parse(value).map_err(|detail| {
            BindingError::malformed(binding, format!("the ZooKeeper URL in {}", file.display()), detail)
        })?;
        return Ok(Some(target));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use ochopod_config::ZkSettings;
    use ochopod_core::Registration;

    use crate::testing::*;
    use crate::{resolve, BindingError, Placement, Platform};

    const MARATHON: [(&str, &str); 5] = [
        ("MARATHON_APP_ID", "/demo/zookeeper"),
        ("MESOS_TASK_ID", "demo_zookeeper.4c27a1f2-0000"),
        ("HOST", "127.0.0.3"),
        ("PORT_8080", "31000"),
        ("PORT_2181", "31001"),
    ];

    async fn placement(extra: &[(&str, &str)], root: &Path) -> Result<Placement, BindingError> {
        let mut pairs: Vec<(&str, &str)> = MARATHON.to_vec();
        pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        let env = env(&pairs);
        resolve(&settings(YAML, &env), &Platform::new(env, root)).await
    }

    #[tokio::test]
    async fn marathon_task_with_the_mesos_zookeeper_and_its_chroot() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/etc/mesos/zk", "zk://user:secret@127.0.0.4:2181,127.0.0.5:2181/mesos\n");
        let p = placement(&[], root.path()).await.unwrap();
        let expected = Registration {
            ip: "127.0.0.3".into(),
            public: "127.0.0.3".into(),
            node: "127.0.0.3".into(),
            ports: BTreeMap::from([("2181".into(), 31001), ("2888".into(), 2888), ("8080".into(), 31000)]),
            port: "8080".into(),
            seq: 0,
            cluster: "zookeeper".into(),
            namespace: "demo".into(),
            application: "demo/zookeeper".into(),
            task: "demo_zookeeper.4c27a1f2-0000".into(),
            fwk: "marathon".into(),
            zk: "127.0.0.4:2181,127.0.0.5:2181".into(),
            debug: "false".into(),
            start: "true".into(),
            local: "false".into(),
            extra: Default::default(),
        };
        let zk = ZkSettings {
            target: ochopod_config::ZkTarget {
                hosts: "127.0.0.4:2181,127.0.0.5:2181".into(),
                chroot: Some("/mesos".into()),
                digest: Some(ochopod_config::Secret("user:secret".into())),
            },
            session_timeout: ochopod_config::defaults::session_timeout(),
        };
        assert_eq!(
            p,
            Placement {
                registration: expected,
                listen: "0.0.0.0:8080".parse().unwrap(),
                zk: Some(zk),
                binding: "marathon".into()
            }
        );
    }

    #[tokio::test]
    async fn dcos_files_come_first_and_plain_masters_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/etc/mesos/zk", "zk://127.0.0.6:2181/mesos");
        write(
            root.path(),
            "/opt/mesosphere/etc/mesos-slave",
            "MESOS_WORK_DIR=/var\nMESOS_MASTER=zk://127.0.0.5:2181/old\n",
        );
        write(root.path(), "/opt/mesosphere/etc/mesos-slave-common", "MESOS_MASTER=127.0.0.4:5050\n");
        let p = placement(&[], root.path()).await.unwrap();
        assert_eq!(p.registration.zk, "127.0.0.5:2181");
        assert_eq!(p.zk.unwrap().target.chroot.as_deref(), Some("/old"));
        write(root.path(), "/opt/mesosphere/etc/mesos-slave-common", "MESOS_MASTER=zk://127.0.0.4:2181/mesos\n");
        let p = placement(&[], root.path()).await.unwrap();
        assert_eq!(p.registration.zk, "127.0.0.4:2181");
        // The operator's ochopod_zk wins; the declaration's zk stays when no file says anything.
        let p = placement(&[("ochopod_zk", "zk://127.0.0.8:2181")], root.path()).await.unwrap();
        assert_eq!((p.zk, p.registration.zk.as_str()), (None, "127.0.0.8:2181"));
        let empty = tempfile::tempdir().unwrap();
        let p = placement(&[], empty.path()).await.unwrap();
        assert_eq!((p.zk, p.registration.zk.as_str()), (None, "127.0.0.1:2181"));
    }

    #[tokio::test]
    async fn host_names_resolve() {
        let root = tempfile::tempdir().unwrap();
        let p = placement(&[("HOST", "localhost")], root.path()).await.unwrap();
        assert!(p.registration.ip.starts_with("127.") || p.registration.ip == "::1", "{}", p.registration.ip);
        assert_eq!(p.registration.node, "localhost");
    }

    #[tokio::test]
    async fn missing_and_malformed_data_are_named() {
        let root = tempfile::tempdir().unwrap();
        let msg = |r: Result<Placement, BindingError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(placement(&[("HOST", "")], root.path()).await),
            "marathon binding: HOST is not set (Marathon sets it to the agent's address; is this a Marathon task?)"
        );
        assert_eq!(
            msg(placement(&[("MARATHON_APP_ID", "")], root.path()).await),
            "marathon binding: MARATHON_APP_ID is not set (Marathon sets it for every task)"
        );
        assert_eq!(
            msg(placement(&[("MESOS_TASK_ID", "")], root.path()).await),
            "marathon binding: MESOS_TASK_ID is not set (Mesos sets it for every task)"
        );
        write(root.path(), "/etc/mesos/zk", "zk://127.0.0.4/mesos");
        let file = root.path().join("etc/mesos/zk");
        assert_eq!(
            msg(placement(&[], root.path()).await),
            format!(
                "marathon binding: the ZooKeeper URL in {} is malformed: expected `host:port[,host:port…]` or \
                 `zk://[user:pass@]host:port[,host:port…][/chroot]`; `127.0.0.4` has no port",
                file.display()
            )
        );
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let e = placement(&[], root.path()).await.unwrap_err();
        assert!(matches!(e, BindingError::Unreadable { binding: "marathon", .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("marathon binding: cannot read {}: ", file.display())), "{e}");
        // A PORT_<n> that is not a port is caught by the config crate, naming the variable.
        let env = env(&[("PORT_2181", "high")]);
        let e = ochopod_config::parse_str(Path::new("pod.yaml"), YAML, &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "env PORT_2181: ports: host port: expected a port number between 1 and 65535, got `high`"
        );
    }
}
