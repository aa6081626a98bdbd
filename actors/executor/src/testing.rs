//! Fixtures for the unit tests: a declaration and a cluster view.

use std::collections::BTreeMap;
use std::time::Duration;

use ochopod_config::*;
use ochopod_core::ClusterView;
use serde_json::{json, Value};

pub fn settings(command: Option<&str>) -> Settings {
    Settings {
        source: "/etc/ochopod/pod.yml".into(),
        cluster: "web".into(),
        namespace: "test".into(),
        port: 8080,
        zk: ZkSettings { target: ZkTarget::parse("127.0.0.1:2181").unwrap(), session_timeout: Duration::from_secs(15) },
        coordination: Default::default(),
        binding: BindingKind::Local,
        debug: false,
        ports: BTreeMap::from([(8080, 8080)]),
        application: String::new(),
        task: String::new(),
        model: ModelSettings {
            min_size: 1,
            depends_on: vec!["zookeeper".into()],
            damper: Duration::ZERO,
            sequential: false,
            full_shutdown: false,
            grace: Duration::from_secs(1),
            probe: None,
        },
        process: command.map(|c| ProcessSettings {
            command: c.into(),
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            strict: false,
            start: true,
            pipe_output: false,
            grace: Duration::from_millis(300),
            soft: false,
            sanity: None,
            restart: RestartPolicy {
                when: ochopod_config::RestartWhen::Dependencies,
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(1),
                crashloop_after: 3,
                reset_after: Duration::from_secs(10),
                give_up_after: 0,
            },
        }),
        files: vec![],
        hooks: Hooks::default(),
        control: ControlSettings {
            token: None,
            token_source: None,
            protect_reads: false,
            tls: None,
            body_limit: 1 << 20,
            log_lines: 100,
        },
        warnings: vec![],
    }
}

fn reg(ip: &str, seq: u64, ports: &[(u16, u16)]) -> Value {
    let ports: BTreeMap<String, u16> = ports.iter().map(|(c, h)| (c.to_string(), *h)).collect();
    json!({"ip": ip, "public": ip, "seq": seq, "ports": ports, "port": "8080", "cluster": "web", "namespace": "test"})
}

/// Two pods `a` and `b` (this one, seq 7, index 1) and a `zookeeper` dependency of three pods,
/// one of which does not expose 2181.
pub fn payload(epoch: Option<u64>) -> Value {
    let mut p = json!({
        "pods": {
            "b": reg("10.0.0.2", 7, &[(8080, 8080), (2888, 2888)]),
            "a": reg("10.0.0.1", 9, &[(8080, 8080), (2888, 2888)]),
        },
        "dependencies": {"zookeeper": {
            "z1": reg("10.0.1.1", 1, &[(2181, 31001)]),
            "z2": reg("10.0.1.2", 2, &[(2181, 31002)]),
            "z3": reg("10.0.1.3", 3, &[]),
        }},
        "key": "b",
    });
    if let Some(e) = epoch {
        p["epoch"] = json!(e);
    }
    p
}

pub fn view() -> ClusterView {
    ClusterView::from_payload(&serde_json::from_value(payload(Some(4))).unwrap()).unwrap()
}
