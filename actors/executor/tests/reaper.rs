//! The reaper in subreaper mode (what a pod does when it is not PID 1): orphans of the
//! supervised group come back to us and are reaped, while the exit status of every child that
//! tokio awaits is left to tokio.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{probe, Fixture};
use ochopod_executor::process::spawn_child;
use ochopod_proc::reaper::{self, zombie_children, Mode};

#[test]
fn orphans_are_reaped_and_the_supervised_childs_status_is_kept() {
    assert_eq!(reaper::install(), Mode::Subreaper);
    let me = std::process::id() as i32;
    let f = Fixture::new("");
    let record = f.path("record.jsonl");
    let env = BTreeMap::from([("PROBE_RECORD".to_string(), record.display().to_string())]);
    let argv: Vec<String> = [
        probe().display().to_string(),
        "--orphan-zombie".into(),
        "--exit-after".into(),
        "400".into(),
        "--code".into(),
        "3".into(),
    ]
    .into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Several rounds, with plain (unregistered) tokio children exiting at the same time, so a
        // reaper that waits blindly would steal at least one of these statuses.
        for round in 0..3 {
            let (mut child, owned) = spawn_child(&argv, &env, None, false).unwrap();
            let others: Vec<_> = (0..5)
                .map(|i| {
                    tokio::process::Command::new("sh")
                        .arg("-c")
                        .arg(format!("sleep 0.0{i}; exit {}", 10 + i))
                        .spawn()
                        .unwrap()
                })
                .collect();
            for (i, mut o) in others.into_iter().enumerate() {
                let status = o.wait().await.expect("tokio lost an unregistered child's status");
                assert_eq!(status.code(), Some(10 + i as i32), "round {round}");
            }
            let status = child.wait().await.expect("tokio lost the supervised child's status");
            drop(owned);
            assert_eq!(status.code(), Some(3), "round {round}");
        }

        // A registered child whose status is collected late is still left to its owner, however
        // long the reaper has seen it as a zombie.
        let late: Vec<String> =
            [probe().display().to_string(), "--exit-after".into(), "10".into(), "--code".into(), "5".into()].into();
        let (mut child, owned) = spawn_child(&late, &env, None, false).unwrap();
        tokio::time::sleep(reaper::GRACE * 3).await;
        let status = child.wait().await.expect("the reaper stole a registered child's status");
        drop(owned);
        assert_eq!(status.code(), Some(5));

        let orphans: Vec<serde_json::Value> = std::fs::read_to_string(&record)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &serde_json::Value| r["event"] == "orphan")
            .collect();
        assert_eq!(orphans.len(), 3, "{orphans:?}");
        for o in &orphans {
            assert_eq!(o["ppid"].as_i64(), Some(me as i64), "the orphan was not re-parented to the subreaper");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let zombies = zombie_children(me);
            let ours: Vec<_> =
                orphans.iter().filter_map(|o| o["pid"].as_i64()).filter(|p| zombies.contains(&(*p as i32))).collect();
            if ours.is_empty() && zombies.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "zombies left: {zombies:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
