//! Where the pod runs: its address, node, published ports and platform ids, as the registration
//! needs them, and the address the control server listens on.
//!
//! Only the local binding exists so far (every `binding:` value resolves to it, logged as such):
//! ip and public address 127.0.0.1, node `local`, ports remapped by `PORT_<n>`, and the control
//! server listening on the *remapped* control port on loopback, so several pods share one host.

use std::net::SocketAddr;

use ochopod_config::{BindingKind, Settings};
use ochopod_core::Registration;

pub struct Placement {
    /// Every registration field but `seq`, which the session assigns.
    pub registration: Registration,
    /// Where the control server binds.
    pub listen: SocketAddr,
}

pub fn resolve(settings: &Settings) -> Placement {
    if settings.binding != BindingKind::Local && settings.binding != BindingKind::Auto {
        tracing::warn!(binding = ?settings.binding, "this binding is not implemented yet; running as local");
    }
    let ports = settings.ports.iter().map(|(c, h)| (c.to_string(), *h)).collect();
    let control = settings.ports.get(&settings.port).copied().unwrap_or(settings.port);
    let registration = Registration {
        ip: "127.0.0.1".into(),
        public: "127.0.0.1".into(),
        node: "local".into(),
        ports,
        port: settings.port.to_string(),
        seq: 0,
        cluster: settings.cluster.clone(),
        namespace: settings.namespace.clone(),
        application: settings.application.clone(),
        task: settings.task.clone(),
        fwk: "local".into(),
        zk: without_credentials(&settings.zk.connect),
        debug: Registration::flag(settings.debug),
        start: Registration::flag(settings.process.as_ref().is_none_or(|p| p.start)),
        local: Registration::flag(true),
        extra: Default::default(),
    };
    Placement { registration, listen: SocketAddr::from(([127, 0, 0, 1], control)) }
}

/// The connect string with any `user:pass@` removed: credentials never go into ZooKeeper.
fn without_credentials(connect: &str) -> String {
    match connect.rsplit_once('@') {
        Some((_, hosts)) => hosts.to_string(),
        None => connect.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_registered() {
        assert_eq!(without_credentials("u:p@10.0.0.1:2181,10.0.0.2:2181"), "10.0.0.1:2181,10.0.0.2:2181");
        assert_eq!(without_credentials("127.0.0.1:2181"), "127.0.0.1:2181");
    }
}
