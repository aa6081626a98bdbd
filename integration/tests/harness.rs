//! The harness itself: a real ZooKeeper starts, answers, survives a restart, and stops by pid.

use std::time::Duration;

use ochopod_integration::zk::{self, ZkServer};

#[test]
fn zookeeper_starts_answers_restarts_and_stops_by_pid() {
    let mut server = ZkServer::start().expect("start ZooKeeper");
    assert_eq!(server.four_letter("ruok").unwrap().trim(), "imok");
    let srvr = server.four_letter("srvr").unwrap();
    assert!(srvr.contains("Mode: standalone"), "srvr: {srvr}");
    let pid = server.pid().unwrap();

    server.restart().expect("restart on the same port");
    assert_eq!(server.four_letter("ruok").unwrap().trim(), "imok");
    let new_pid = server.pid().unwrap();
    assert_ne!(pid, new_pid);
    // The old JVM is gone (no such process, or a zombie would still show in /proc).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "old ZooKeeper pid {pid} still exists");

    let port = server.port();
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{new_pid}")).exists(), "ZooKeeper pid {new_pid} left running");
    assert!(zk::four_letter(port, "ruok").is_err(), "something still answers on {port}");
}

#[test]
fn mntr_output_parses_into_keys() {
    let server = ZkServer::start().expect("start ZooKeeper");
    let m = zk::parse_mntr(&server.four_letter("mntr").unwrap());
    assert_eq!(m.get("zk_server_state").map(String::as_str), Some("standalone"));
    let _ = Duration::from_secs(0);
}
