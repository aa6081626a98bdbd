//! The shared plumbing against a real ZooKeeper: chroot creation and entry, digest auth, a
//! refused connect, and the pod scan over every kind of child `pods/` can hold.

use std::time::Duration;

use ochopod_core::Registration;
use ochopod_integration::zk::ZkServer;
use ochopod_zk::{close, connect, scan_pods, ConnectOptions, SkipReason, ZkTarget};
use zookeeper_client::{Acls, Client, CreateMode};

const SESSION: Duration = Duration::from_secs(10);

fn start_zk() -> ZkServer {
    ZkServer::start().expect("these tests need a real ZooKeeper and could not start one")
}

async fn root_client(zk: &ZkServer) -> Client {
    Client::connect(&zk.connect_string()).await.expect("plain client")
}

#[tokio::test]
async fn connect_creates_and_enters_the_chroot_and_authenticates() {
    let zk = start_zk();
    let target = ZkTarget::parse(&format!("zk://bob:s3cret@{}/apps/one", zk.connect_string())).unwrap();
    let options = ConnectOptions { create_chroot: true, ..ConnectOptions::new(SESSION) };
    let (client, mut states) = connect(&target, &options).await.expect("connect");
    assert!(!states.state().is_terminated());
    assert_eq!(client.path(), "/apps/one");

    // Written through the chroot with an ACL only the digest user holds.
    let only_bob = CreateMode::Persistent.with_acls(Acls::creator_all());
    client.create("/private", b"x", &only_bob).await.expect("create under the chroot");

    let plain = root_client(&zk).await;
    assert!(plain.check_stat("/apps/one/private").await.unwrap().is_some(), "written inside the chroot");
    let denied = plain.get_data("/apps/one/private").await.unwrap_err();
    assert_eq!(denied, zookeeper_client::Error::NoAuth, "the node is bob's: the session was authenticated");
    assert_eq!(client.get_data("/private").await.unwrap().0, b"x");

    // The chroot exists now: a second connect enters it without creating anything.
    let (again, _) = connect(&target, &ConnectOptions::new(SESSION)).await.expect("second connect");
    assert_eq!(again.get_data("/private").await.unwrap().0, b"x");

    assert!(close(again, Duration::from_secs(3)).await.is_some_and(|s| s.is_terminated()));
    assert!(close(client, Duration::from_secs(3)).await.is_some_and(|s| s.is_terminated()));
    drop(plain);
}

#[tokio::test]
async fn a_refused_connect_names_the_target_without_its_password() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = ZkTarget::parse(&format!("zk://bob:s3cret@127.0.0.1:{port}/x")).unwrap();
    let options = ConnectOptions { connect_timeout: Duration::from_secs(5), ..ConnectOptions::new(SESSION) };
    let e = match connect(&target, &options).await {
        Ok(_) => panic!("connected to 127.0.0.1:{port}, where nothing listens"),
        Err(e) => e.to_string(),
    };
    assert!(e.starts_with(&format!("cannot connect to ZooKeeper at 127.0.0.1:{port}/x")), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[tokio::test]
async fn scan_keys_pods_by_uuid_and_returns_what_it_skipped() {
    let zk = start_zk();
    let client = root_client(&zk).await;
    let dir = "/ochopod/clusters/test.web/pods";
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());

    let missing = scan_pods(&client, dir, Duration::from_secs(5)).await.unwrap_err();
    assert!(missing.is_no_node(), "{missing}");

    client.mkdir(dir, &persistent).await.unwrap();
    let reg = |ip: &str, seq: Option<u64>| {
        let mut v = serde_json::to_value(Registration { ip: ip.into(), ..Default::default() }).unwrap();
        match seq {
            Some(s) => v["seq"] = s.into(),
            None => drop(v.as_object_mut().unwrap().remove("seq")),
        }
        serde_json::to_vec(&v).unwrap()
    };
    let a = "aaaaaaaa-0000-4000-8000-000000000001";
    let b = "bbbbbbbb-0000-4000-8000-000000000002";
    let nodes: [(String, Vec<u8>); 5] = [
        (format!("{a}.0000000001"), reg("10.0.0.1", Some(1))),
        // `a` re-registered: the newer node wins, with the seq it keeps for life.
        (format!("{a}.0000000007"), reg("10.0.0.11", Some(1))),
        // Another writer's registration without a seq: the node suffix stands in.
        (format!("{b}.0000000003"), reg("10.0.0.2", None)),
        ("cccccccc-0000-4000-8000-000000000003.0000000004".into(), Vec::new()),
        ("dddddddd-0000-4000-8000-000000000004.0000000005".into(), b"{not json".to_vec()),
    ];
    for (name, data) in &nodes {
        client.create(&format!("{dir}/{name}"), data, &persistent).await.unwrap();
    }

    let scan = scan_pods(&client, dir, Duration::from_secs(5)).await.unwrap();
    assert_eq!(scan.pods.keys().collect::<Vec<_>>(), [a, b]);
    assert_eq!(scan.pods[a].node, format!("{a}.0000000007"));
    assert_eq!((scan.pods[a].registration.ip.as_str(), scan.pods[a].registration.seq), ("10.0.0.11", 1));
    assert_eq!(scan.pods[b].registration.seq, 3);
    let mut skipped: Vec<String> = scan.skipped.iter().map(ToString::to_string).collect();
    skipped.sort();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].starts_with(&format!(
            "{dir}/cccccccc-0000-4000-8000-000000000003.0000000004: skipped: no registration yet"
        )),
        "{skipped:?}"
    );
    assert!(skipped[1].contains("dddddddd") && skipped[1].contains("unreadable registration"), "{skipped:?}");
    assert!(scan.skipped.iter().all(|s| matches!(s.reason, SkipReason::Invalid(_))));
    assert!(scan.unreadable().is_none());
    let pods = scan.into_pods();
    assert_eq!(pods[a].ip, "10.0.0.11");
    drop(client);
}
