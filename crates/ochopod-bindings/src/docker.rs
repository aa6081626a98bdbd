//! Docker: the container's own address (the first non-loopback one of its network namespace),
//! and the ports it publishes as `PORT_<n>`. Peers can only use a published port at the Docker
//! host's address, so a remapped control port needs `OCHOPOD_DOCKER_IP` (the host's address);
//! containers that share a network (compose) need no `PORT_<n>` at all. A container on several
//! networks registers its lowest address (the kernel's order, not the order it joined them in):
//! set `OCHOPOD_DOCKER_IP` when peers sit on another one. `make e2e` runs this binding on a real
//! engine: detected from `/.dockerenv`, the address read from `/proc/net/fib_trie`, `HOSTNAME` as
//! the node, and published ports announced with `PORT_<n>` and the host's address.

use std::net::Ipv4Addr;

use ochopod_config::Settings;

use crate::{listen_all, parse_ip, read_optional, BindingError, Found, Platform};

const B: &str = "docker";
/// The address to register instead of the container's own.
pub(crate) const IP_VAR: &str = "OCHOPOD_DOCKER_IP";
/// The kernel's list of this namespace's addresses; readable without privileges or extra crates.
const FIB_TRIE: &str = "/proc/net/fib_trie";

pub(crate) fn control_port_remapped(settings: &Settings) -> bool {
    settings.ports.get(&settings.port).is_some_and(|h| *h != settings.port)
}

pub(crate) fn resolve(settings: &Settings, platform: &Platform) -> Result<Found, BindingError> {
    let ip = match platform.var(IP_VAR) {
        Some(v) => parse_ip(B, IP_VAR, v)?,
        None => {
            if control_port_remapped(settings) {
                let host = settings.ports[&settings.port];
                return Err(BindingError::Unusable {
                    binding: B,
                    detail: format!(
                        "PORT_{} publishes the control port on host port {host}, which peers cannot reach at the \
                         container's own address: set {IP_VAR} to the Docker host's address, or drop PORT_<n> \
                         when the pods share a network",
                        settings.port
                    ),
                });
            }
            container_address(platform)?.into()
        }
    };
    let hostname = platform.var("HOSTNAME");
    Ok(Found {
        binding: B,
        ip,
        public: ip.to_string(),
        node: hostname.map_or_else(|| ip.to_string(), str::to_string),
        ports: settings.ports.clone(),
        application: None,
        // Docker sets HOSTNAME to the short container id unless told otherwise.
        task: hostname.map(str::to_string),
        zk: None,
        listen: listen_all(settings),
    })
}

fn container_address(platform: &Platform) -> Result<Ipv4Addr, BindingError> {
    let path = platform.file(FIB_TRIE);
    let text = read_optional(B, &path)?.ok_or_else(|| BindingError::Unreadable {
        binding: B,
        path: path.display().to_string(),
        detail: format!("it does not exist (set {IP_VAR} to the address peers reach this container at)"),
    })?;
    local_addresses(&text).into_iter().find(|a| !a.is_loopback()).ok_or_else(|| BindingError::Unusable {
        binding: B,
        detail: format!(
            "{} lists no address but loopback (set {IP_VAR} to the address peers reach this container at)",
            path.display()
        ),
    })
}

/// The addresses of this network namespace, in the kernel's order, from `/proc/net/fib_trie`:
/// each `|-- <address>` leaf followed by a `/32 host LOCAL` line is one of ours.
pub fn local_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in fib_trie.lines().map(str::trim) {
        if let Some(address) = line.strip_prefix("|-- ") {
            leaf = address.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(a) = leaf.take().filter(|a| !found.contains(a)) {
                found.push(a);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use ochopod_core::Registration;

    use super::*;
    use crate::testing::*;
    use crate::{resolve, Placement};

    /// `/proc/net/fib_trie` of a container on a bridge network (abridged from a real one, with the
    /// container's address in the documentation range: parsed, never contacted).
    const BRIDGE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
";

    /// `/proc/net/fib_trie` as Docker 20.10 gave it, unabridged, to a container attached to two
    /// user-defined networks (created in the documentation ranges for the recording).
    const TWO_NETWORKS: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.0.0/5 2 0 2
        +-- 192.0.2.0/24 2 0 2
           +-- 192.0.2.0/30 2 0 2
              |-- 192.0.2.0
                 /24 link UNICAST
              |-- 192.0.2.2
                 /32 host LOCAL
           |-- 192.0.2.255
              /32 link BROADCAST
        +-- 198.51.100.0/24 2 0 2
           +-- 198.51.100.0/30 2 0 2
              |-- 198.51.100.0
                 /24 link UNICAST
              |-- 198.51.100.2
                 /32 host LOCAL
           |-- 198.51.100.255
              /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.0.0/5 2 0 2
        +-- 192.0.2.0/24 2 0 2
           +-- 192.0.2.0/30 2 0 2
              |-- 192.0.2.0
                 /24 link UNICAST
              |-- 192.0.2.2
                 /32 host LOCAL
           |-- 192.0.2.255
              /32 link BROADCAST
        +-- 198.51.100.0/24 2 0 2
           +-- 198.51.100.0/30 2 0 2
              |-- 198.51.100.0
                 /24 link UNICAST
              |-- 198.51.100.2
                 /32 host LOCAL
           |-- 198.51.100.255
              /32 link BROADCAST
";

    #[test]
    fn reads_the_namespace_addresses() {
        assert_eq!(local_addresses(BRIDGE), vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]);
        assert_eq!(local_addresses(""), Vec::<Ipv4Addr>::new());
    }

    #[tokio::test]
    async fn on_two_networks_the_lowest_address_unless_told() {
        assert_eq!(
            local_addresses(TWO_NETWORKS),
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(198, 51, 100, 2)]
        );
        let root = tempfile::tempdir().unwrap();
        write(root.path(), FIB_TRIE, TWO_NETWORKS);
        // The kernel lists addresses in order, whichever network the container joined first:
        // peers on the other network need OCHOPOD_DOCKER_IP.
        let p = placement(&[("HOSTNAME", "web-1")], root.path()).await.unwrap();
        assert_eq!((p.registration.ip.as_str(), p.registration.node.as_str()), ("192.0.2.2", "web-1"));
        let p = placement(&[("HOSTNAME", "web-1"), ("OCHOPOD_DOCKER_IP", "198.51.100.2")], root.path()).await.unwrap();
        assert_eq!(p.registration.ip, "198.51.100.2");
        assert_eq!(p.listen, "0.0.0.0:8080".parse().unwrap());
    }

    async fn placement(pairs: &[(&str, &str)], root: &Path) -> Result<Placement, BindingError> {
        let env = env(pairs);
        let yaml = format!("{YAML}binding: docker\n");
        resolve(&settings(&yaml, &env), &Platform::new(env, root)).await
    }

    #[tokio::test]
    async fn container_address_and_container_ports() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), FIB_TRIE, BRIDGE);
        let p = placement(&[("HOSTNAME", "3f2a9c1b7d10")], root.path()).await.unwrap();
        let expected = Registration {
            ip: "192.0.2.2".into(),
            public: "192.0.2.2".into(),
            node: "3f2a9c1b7d10".into(),
            ports: BTreeMap::from([("2181".into(), 2181), ("2888".into(), 2888), ("8080".into(), 8080)]),
            port: "8080".into(),
            seq: 0,
            cluster: "zookeeper".into(),
            namespace: "demo".into(),
            application: "".into(),
            task: "3f2a9c1b7d10".into(),
            fwk: "docker".into(),
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
                binding: "docker".into()
            }
        );
    }

    #[tokio::test]
    async fn published_ports_at_the_given_host_address() {
        let root = tempfile::tempdir().unwrap();
        let p = placement(
            &[("OCHOPOD_DOCKER_IP", "127.0.0.5"), ("PORT_8080", "18080"), ("PORT_2181", "12181")],
            root.path(),
        )
        .await
        .unwrap();
        assert_eq!(p.registration.ip, "127.0.0.5");
        assert_eq!(p.registration.node, "127.0.0.5");
        assert_eq!(
            p.registration.ports,
            BTreeMap::from([("2181".into(), 12181), ("2888".into(), 2888), ("8080".into(), 18080)])
        );
        assert_eq!(p.listen, "0.0.0.0:8080".parse().unwrap());
    }

    #[tokio::test]
    async fn missing_and_malformed_data_are_named() {
        let root = tempfile::tempdir().unwrap();
        let msg = |r: Result<Placement, BindingError>| r.unwrap_err().to_string();
        let fib = root.path().join("proc/net/fib_trie");
        assert_eq!(
            msg(placement(&[], root.path()).await),
            format!(
                "docker binding: cannot read {}: it does not exist (set OCHOPOD_DOCKER_IP to the address peers reach this container at)",
                fib.display()
            )
        );
        write(root.path(), FIB_TRIE, "Main:\n     |-- 127.0.0.1\n        /32 host LOCAL\n");
        assert_eq!(
            msg(placement(&[], root.path()).await),
            format!(
                "docker binding: {} lists no address but loopback (set OCHOPOD_DOCKER_IP to the address peers reach this container at)",
                fib.display()
            )
        );
        assert_eq!(
            msg(placement(&[("OCHOPOD_DOCKER_IP", "docker-host")], root.path()).await),
            "docker binding: OCHOPOD_DOCKER_IP is malformed: expected an IP address, got `docker-host`"
        );
        assert_eq!(
            msg(placement(&[("PORT_8080", "18080")], root.path()).await),
            "docker binding: PORT_8080 publishes the control port on host port 18080, which peers cannot reach at the \
             container's own address: set OCHOPOD_DOCKER_IP to the Docker host's address, or drop PORT_<n> when the \
             pods share a network"
        );
    }
}
