//! The executor actor with real processes: the probe workload records what it received.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ochopod_api::Task;
use ochopod_config::{FileTemplate, Sanity, SanityCheck};
use ochopod_core::events::Event;
use ochopod_executor::{Reply, Shutdown};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn restarted_n_times_after_non_zero_exits_with_growing_delays() {
    run(async {
        let f = Fixture::new("--exit-after 30 --code 3");
        let (addr, events) = f.start();
        let mut rx = events.subscribe();
        assert_eq!(send(&addr, Task::On, Some(payload(Some(1)))).await, ok());
        let n = 6;
        let mut saw_crashloop = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = status(&addr).await;
            saw_crashloop |= s.process == "crashloop";
            if f.events("start").len() > n {
                break;
            }
            assert!(Instant::now() < deadline, "only {} starts; status {s:?}", f.events("start").len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = status(&addr).await;
        assert!(s.restarts >= n as u64, "{s:?}");
        assert_eq!(s.last_exit, Some(3));
        assert_eq!(send(&addr, Task::Off, None).await, ok());
        assert!(saw_crashloop, "the crash loop (3 failures in a row) was never reported");

        let delays: Vec<u64> = drain(&mut rx)
            .into_iter()
            .filter_map(|e| match e {
                Event::Restart { delay_ms, exit_code, .. } => {
                    assert_eq!(exit_code, Some(3));
                    Some(delay_ms)
                }
                _ => None,
            })
            .take(n)
            .collect();
        assert_eq!(delays.len(), n, "{delays:?}");
        assert!(delays.iter().all(|d| (50..=500).contains(d)), "delays outside [initial, max]: {delays:?}");
        // Decorrelated jitter: random, but the sum of n delays is well above n × initial unless
        // the backoff does not grow (probability of a false alarm ≈ 1e-4).
        assert!(delays.iter().sum::<u64>() >= 50 * n as u64 * 12 / 10, "not growing: {delays:?}");
        assert!(*delays.iter().max().unwrap() > 75, "not growing: {delays:?}");
        // Each restart waited its delay: start[i+1] - start[i] ≥ 30 ms run + delay[i].
        let starts: Vec<u64> = f.events("start").iter().map(|r| r["at_ms"].as_u64().unwrap()).collect();
        for (i, d) in delays.iter().enumerate() {
            let gap = starts[i + 1] - starts[i];
            assert!(gap + 2 >= d + 30, "restart {i} came after {gap} ms, its delay was {d} ms: {starts:?}");
        }
    });
}

#[test]
fn not_restarted_after_exit_zero_and_answers_410_afterwards() {
    run(async {
        let mut f = Fixture::new("--exit-after 100 --code 0");
        let marker = f.path("finalized");
        f.settings.hooks.finalize = Fixture::hook(&format!("echo $OCHOPOD_KEY > {}", marker.display()));
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        wait_status(&addr, "dead", WAIT, |s| s.process == "dead").await;
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "b\n", "finalize ran with the view's env");
        for task in [Task::Check, Task::On, Task::Off, Task::Ok, Task::Kill, Task::Signal] {
            let body = if task == Task::Signal { None } else { Some(payload(None)) };
            assert_eq!(send(&addr, task, body).await, Reply::Dead, "{task}");
        }
        assert_eq!(send(&addr, Task::On, None).await, Reply::Dead);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(f.events("start").len(), 1, "restarted after exit 0");
        let s = status(&addr).await;
        assert_eq!((s.restarts, s.last_exit, s.pid), (0, Some(0), None));
        assert_eq!(Reply::Dead.status(), 410);
    });
}

#[test]
fn a_process_ignoring_sigterm_is_sigkilled_after_grace() {
    run(async {
        let f = Fixture::new("--ignore-term");
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let start = f.wait_records("start", WAIT, |r| r.iter().any(|e| e["event"] == "start")).await;
        let pid = start[0]["pid"].as_i64().unwrap();
        let t = Instant::now();
        // The mailbox stays open while the command waits: the status shows the stop under way.
        let (reply, seen) = tokio::join!(send(&addr, Task::Off, None), async {
            wait_status(&addr, "terminating", WAIT, |s| s.process == "terminating").await
        });
        assert_eq!(reply, ok());
        assert_eq!(seen.pid, Some(pid as u32));
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(300), "killed before the grace ran out ({took:?})");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(f.events("signal").iter().any(|e| e["name"] == "TERM" && e["pid"] == pid), "no SIGTERM first");
        assert!(!alive(pid), "still alive after off");
        let s = status(&addr).await;
        assert_eq!((s.process.as_str(), s.last_exit, s.restarts), ("stopped", Some(-9), 0));
    });
}

#[test]
fn with_soft_a_process_ignoring_sigterm_is_left_running_after_grace() {
    run(async {
        let mut f = Fixture::new("--ignore-term");
        f.process().soft = true;
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let start = f.wait_records("start", WAIT, |r| r.iter().any(|e| e["event"] == "start")).await;
        let pid = start[0]["pid"].as_i64().unwrap();
        let t = Instant::now();
        assert_eq!(send(&addr, Task::Off, None).await, ok());
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(f.events("signal").iter().any(|e| e["name"] == "TERM"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let still = alive(pid);
        kill_group(pid);
        assert!(still, "soft must not SIGKILL");
        assert_eq!(status(&addr).await.process, "stopped");
    });
}

#[test]
fn a_shell_commands_grandchildren_die_with_the_group() {
    run(async {
        let mut f = Fixture::new("--grandchild; echo the shell outlived its child");
        // The shell leaves only once its child is done with the TERM: were it to die first, the
        // group's SIGKILL that follows its exit could beat the probe's record of the TERM.
        let command = format!("trap 'exit 143' TERM; {}", f.process().command);
        f.process().command = command;
        f.process().shell = true;
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let r = f
            .wait_records("start and grandchild", WAIT, |r| {
                r.iter().any(|e| e["event"] == "start") && r.iter().any(|e| e["event"] == "grandchild")
            })
            .await;
        let start = r.iter().find(|e| e["event"] == "start").unwrap();
        let grandchild = r.iter().find(|e| e["event"] == "grandchild").unwrap();
        let shell = status(&addr).await.pid.expect("a pid") as i64;
        assert_ne!(start["pid"].as_i64().unwrap(), shell, "the probe must run under the shell for this test");
        assert_eq!(start["pgid"].as_i64(), Some(shell), "the child leads its own group");
        assert_eq!(grandchild["pgid"].as_i64(), Some(shell));
        assert_eq!(send(&addr, Task::Off, None).await, ok());
        let probe_pid = start["pid"].as_i64().unwrap();
        assert!(
            f.events("signal").iter().any(|e| e["name"] == "TERM" && e["pid"] == probe_pid),
            "the shell's child did not get the group's SIGTERM"
        );
        for pid in [shell, start["pid"].as_i64().unwrap(), grandchild["pid"].as_i64().unwrap()] {
            wait_gone(pid, Duration::from_secs(2)).await;
        }
    });
}

#[test]
fn files_env_and_command_are_rendered_from_the_cluster_view() {
    run(async {
        let mut f = Fixture::new(
            "--id {{ seq }} --index {{ index }}/{{ size }} 'two words' --read conf/peers.cfg --env-keys PEERS,HOME",
        );
        f.process().cwd = Some(".".into());
        f.process().env.insert("PEERS".into(), "{{ grep('zookeeper', 2181) }}".into());
        f.settings.files.push(FileTemplate {
            path: "conf/peers.cfg".into(),
            template: "{% for p in pods %}server.{{ p.seq }}={{ p.ip }}:{{ p.ports['2888'] }}\n{% endfor %}".into(),
            mode: Some(0o640),
        });
        let (addr, events) = f.start();
        let mut rx = events.subscribe();
        assert_eq!(send(&addr, Task::On, Some(payload(Some(3)))).await, ok());
        let r = f.wait_records("start", WAIT, |r| !r.is_empty()).await;
        let start = &r[0];
        assert_eq!(
            start["args"],
            json!(["--id", "7", "--index", "1/2", "two words", "--read", "conf/peers.cfg", "--env-keys", "PEERS,HOME"])
        );
        assert_eq!(start["env"]["PEERS"], "10.0.1.1:31001,10.0.1.2:31002");
        assert_eq!(start["env"]["OCHOPOD_INDEX"], "1");
        assert_eq!(start["env"]["OCHOPOD_SEQ"], "7");
        assert_eq!(start["env"]["OCHOPOD_SIZE"], "2");
        assert_eq!(start["env"]["OCHOPOD_KEY"], "b");
        assert_eq!(start["env"]["OCHOPOD_CLUSTER"], "web");
        assert_eq!(start["env"]["OCHOPOD_NAMESPACE"], "test");
        assert_eq!(start["env"]["OCHOPOD_EPOCH"], "3");
        assert_eq!(start["env"]["HOME"].as_str(), std::env::var("HOME").ok().as_deref(), "the pod's env is passed on");
        assert_eq!(start["files"]["conf/peers.cfg"], "server.9=127.0.0.2:2888\nserver.7=127.0.0.1:2888\n");
        let s = status(&addr).await;
        assert_eq!((s.configurations, s.epoch, s.process.as_str()), (1, Some(3), "running"));
        assert!(drain(&mut rx).contains(&Event::Configured {
            epoch: Some(3),
            index: 1,
            size: 2,
            changed: vec![],
            restart: false
        }));

        // Same dependencies: the files follow the new view, the process is left alone.
        let mut p = payload(Some(4));
        p["pods"]["c"] = p["pods"]["a"].clone();
        p["pods"]["c"]["seq"] = json!(11);
        assert_eq!(send(&addr, Task::On, Some(p.clone())).await, ok());
        assert_eq!(
            std::fs::read_to_string(f.path("conf/peers.cfg")).unwrap(),
            "server.9=127.0.0.2:2888\nserver.7=127.0.0.1:2888\nserver.11=127.0.0.2:2888\n"
        );
        assert_eq!(f.events("start").len(), 1, "restarted although the dependencies did not change");

        // A stale epoch is refused.
        assert_eq!(send(&addr, Task::On, Some(payload(Some(2)))).await, Reply::StaleEpoch { epoch: 2, newest: 4 });

        // Changed dependencies: restarted with the new rendering.
        p["epoch"] = json!(5);
        p["dependencies"]["zookeeper"].as_object_mut().unwrap().remove("z2");
        assert_eq!(send(&addr, Task::On, Some(p)).await, ok());
        let r =
            f.wait_records("a second start", WAIT, |r| r.iter().filter(|e| e["event"] == "start").count() == 2).await;
        let second = r.iter().filter(|e| e["event"] == "start").nth(1).unwrap();
        assert_eq!(second["env"]["PEERS"], "10.0.1.1:31001");
        assert_eq!(second["env"]["OCHOPOD_SIZE"], "3");
        assert!(r.iter().any(|e| e["event"] == "signal" && e["name"] == "TERM"), "the old one was stopped first");

        // A bad template fails the command and keeps the pod alive.
        let mut f2 = Fixture::new("{{ pod.prots }}");
        f2.process().start = true;
        let (addr2, _) = f2.start();
        match send(&addr2, Task::On, Some(payload(None))).await {
            Reply::SoftFailure(m) => assert!(m.contains("process.command") && m.contains("pod.yml"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(&addr2).await.process, "stopped");
        addr.send(Shutdown).await.unwrap();
    });
}

#[test]
fn hook_failures_give_the_documented_codes() {
    run(async {
        let mut f = Fixture::new("");
        let stdin = f.path("stdin.json");
        let env = f.path("env.txt");
        f.settings.hooks.can_configure = Fixture::hook(&format!(
            "cat > {}; env | grep ^OCHOPOD_ | sort > {}; [ \"$OCHOPOD_SIZE\" = 2 ] || {{ echo only $OCHOPOD_SIZE pods >&2; exit 1; }}",
            stdin.display(),
            env.display()
        ));
        f.settings.hooks.configured = Fixture::hook("echo configured failed >&2; exit 2");
        f.settings.hooks.signaled = Fixture::hook(
            "read body; [ \"$body\" = '\"bad\"' ] && { echo bad signal >&2; exit 3; }; echo \"{\\\"got\\\": $body}\"",
        );
        let (addr, _) = f.start();

        assert_eq!(send(&addr, Task::Check, Some(payload(None))).await, ok());
        let view: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stdin).unwrap()).unwrap();
        assert_eq!(
            (view["key"].as_str(), view["index"].as_u64(), view["pod"]["seq"].as_u64()),
            (Some("b"), Some(1), Some(7))
        );
        let env = std::fs::read_to_string(&env).unwrap();
        for line in
            ["OCHOPOD_CLUSTER=web", "OCHOPOD_INDEX=1", "OCHOPOD_KEY=b", "OCHOPOD_NAMESPACE=test", "OCHOPOD_SEQ=7"]
        {
            assert!(env.lines().any(|l| l == line), "{line} missing from {env}");
        }

        let mut three = payload(None);
        three["pods"]["c"] = three["pods"]["a"].clone();
        let reply = send(&addr, Task::Check, Some(three)).await;
        assert!(matches!(&reply, Reply::SoftFailure(m) if m.contains("only 3 pods")), "{reply:?}");
        assert_eq!(reply.status(), 406);
        assert_eq!(send(&addr, Task::Check, None).await.status(), 406, "check needs a payload");
        // As the original: a payload check cannot use is a soft failure too (the leader retries).
        assert_eq!(send(&addr, Task::Check, Some(json!({"pods": []}))).await.status(), 406);

        let reply = send(&addr, Task::Ok, Some(payload(None))).await;
        assert!(matches!(&reply, Reply::HookFailure(m) if m.contains("configured failed")), "{reply:?}");
        assert_eq!(reply.status(), 500);

        assert_eq!(send(&addr, Task::Signal, Some(json!({"x": 1}))).await, Reply::Ok(json!({"got": {"x": 1}})));
        let reply = send(&addr, Task::Signal, Some(json!("bad"))).await;
        assert!(matches!(&reply, Reply::HookFailure(m) if m.contains("bad signal")), "{reply:?}");

        // A failing initialize: 406 and the pod kills itself.
        let mut f = Fixture::new("");
        f.settings.hooks.initialize = Fixture::hook("echo no disk >&2; exit 1");
        let (addr, _) = f.start();
        let reply = send(&addr, Task::On, Some(payload(None))).await;
        assert!(matches!(&reply, Reply::SoftFailure(m) if m.contains("no disk")), "{reply:?}");
        assert_eq!(send(&addr, Task::Check, Some(payload(None))).await, Reply::Dead);
        assert!(f.records().is_empty(), "the process was started after a failed initialize");

        // A hook that hangs fails after its timeout.
        let mut f = Fixture::new("");
        f.settings.hooks.can_configure =
            Some(ochopod_config::Hook { command: "sleep 5".into(), timeout: Duration::from_millis(200) });
        let (addr, _) = f.start();
        let reply = send(&addr, Task::Check, Some(payload(None))).await;
        assert!(matches!(&reply, Reply::SoftFailure(m) if m.contains("timed out")), "{reply:?}");
    });
}

#[test]
fn a_sidecar_renders_its_files_on_each_round() {
    run(async {
        let mut f = Fixture::sidecar();
        let out = f.path("out/peers.txt");
        f.settings.files.push(FileTemplate {
            path: "out/peers.txt".into(),
            template: "epoch={{ epoch }} size={{ size }}".into(),
            mode: None,
        });
        let marker = f.path("configured");
        f.settings.hooks.configured = Fixture::hook(&format!("echo $OCHOPOD_EPOCH >> {}", marker.display()));
        let (addr, _) = f.start();
        assert_eq!(status(&addr).await.process, "sidecar");
        assert_eq!(send(&addr, Task::On, None).await.status(), 406, "never configured");
        for epoch in 1..=2u64 {
            let mut p = payload(Some(epoch));
            if epoch == 2 {
                p["pods"]["c"] = p["pods"]["a"].clone();
            }
            assert_eq!(send(&addr, Task::On, Some(p)).await, ok());
            assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("epoch={epoch} size={}", epoch + 1));
            assert_eq!(send(&addr, Task::Ok, None).await, ok());
        }
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1\n2\n");
        let s = status(&addr).await;
        assert!(s.sidecar);
        assert_eq!((s.process.as_str(), s.configurations, s.pid), ("sidecar", 2, None));
        assert_eq!(send(&addr, Task::Kill, None).await, ok());
        assert_eq!(status(&addr).await.process, "dead");
    });
}

#[test]
fn a_failing_sanity_check_turns_the_process_off_after_the_retries() {
    run(async {
        let mut f = Fixture::new("");
        let port = free_port();
        f.process().sanity = Some(Sanity {
            check: SanityCheck::Tcp(format!("{{{{ pod.ip }}}}:{port}")),
            every: Duration::from_millis(100),
            retries: 3,
            timeout: Duration::from_millis(200),
        });
        let (addr, events) = f.start();
        let mut rx = events.subscribe();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        assert_eq!(status(&addr).await.process, "running");
        let s = wait_status(&addr, "the process turned off", WAIT, |s| s.process == "stopped").await;
        assert_eq!(s.sanity_failures, 3);
        assert_eq!(s.restarts, 0);
        let failures: Vec<u32> = drain(&mut rx)
            .into_iter()
            .filter_map(|e| match e {
                Event::Sanity { failures, error } => {
                    assert!(error.unwrap().contains(&format!("127.0.0.1:{port}")));
                    Some(failures)
                }
                _ => None,
            })
            .collect();
        assert_eq!(failures, vec![1, 2, 3]);
        assert!(f.events("signal").iter().any(|e| e["name"] == "TERM"), "turned off gracefully");
    });
}

#[test]
fn a_passing_http_sanity_check_becomes_the_metrics() {
    run(async {
        let port = free_port();
        let mut f = Fixture::new(&format!("--http {port} --metrics '{{\"uptime\": 5}}'"));
        f.process().sanity = Some(Sanity {
            check: SanityCheck::Http(format!("http://127.0.0.1:{port}/health")),
            every: Duration::from_millis(100),
            retries: 5,
            timeout: Duration::from_millis(500),
        });
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let s = wait_status(&addr, "metrics", WAIT, |s| s.metrics == json!({"uptime": 5})).await;
        assert_eq!(s.process, "running");
        addr.send(Shutdown).await.unwrap();
        assert_eq!(status(&addr).await.process, "dead");
    });
}

#[test]
fn start_false_waits_for_a_body_less_on_and_shutdown_tears_down() {
    run(async {
        let mut f = Fixture::new("");
        f.process().start = false;
        let marker = f.path("finalized");
        f.settings.hooks.finalize = Fixture::hook(&format!("touch {}", marker.display()));
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(f.records().is_empty(), "started despite start: false");
        assert_eq!(status(&addr).await.process, "stopped");
        assert_eq!(send(&addr, Task::On, None).await, ok());
        let r = f.wait_records("start", WAIT, |r| !r.is_empty()).await;
        let pid = r[0]["pid"].as_i64().unwrap();
        addr.send(Shutdown).await.unwrap();
        assert!(!alive(pid));
        assert!(marker.exists(), "finalize did not run on shutdown");
        assert_eq!(status(&addr).await.process, "dead");
    });
}

#[test]
fn piped_output_goes_to_the_pod_log_line_by_line_with_the_pid() {
    use tracing_subscriber::layer::SubscriberExt;
    let ring = ochopod_core::logring::LogRing::new(1000);
    let subscriber = tracing_subscriber::registry().with(ochopod_core::logring::LogRingLayer::new(ring.clone()));
    // The actor and the forwarding tasks run on this thread (actix's current-thread runtime).
    let _guard = tracing::subscriber::set_default(subscriber);
    run(async {
        let mut f = Fixture::new("--print 'hello from the probe'");
        f.process().pipe_output = true;
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let pid = status(&addr).await.pid.unwrap();
        let deadline = Instant::now() + WAIT;
        while !ring.tail(None).iter().any(|l| l.contains("hello from the probe") && l.contains(&format!("pid={pid}"))) {
            assert!(Instant::now() < deadline, "not in the log: {:#?}", ring.tail(None));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        addr.send(Shutdown).await.unwrap();
    });
}

#[test]
fn tear_down_replaces_sigterm() {
    run(async {
        let mut f = Fixture::new("");
        f.settings.hooks.tear_down = Fixture::hook("kill -USR1 $OCHOPOD_PID; sleep 0.1; kill -TERM $OCHOPOD_PID");
        // A grace far longer than the hook, so a busy machine cannot blur the two.
        f.process().grace = Duration::from_secs(5);
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        f.wait_records("start", WAIT, |r| !r.is_empty()).await;
        let t = Instant::now();
        assert_eq!(send(&addr, Task::Off, None).await, ok());
        assert!(t.elapsed() < Duration::from_secs(3), "waited for the grace: {:?}", t.elapsed());
        let names: Vec<_> = f.events("signal").iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["USR1", "TERM"]);
        assert_eq!(status(&addr).await.last_exit, Some(0));
    });
}

#[test]
fn finalize_starts_after_a_tear_down_that_outlives_the_grace_and_its_cut_is_an_event() {
    run(async {
        let mut f = Fixture::new("");
        let (done, cut, finalized) = (f.path("tear_down.done"), f.path("tear_down.cut"), f.path("finalize.start"));
        // tear_down stops the child at once, keeps working past the grace, then hangs until its
        // timeout cuts it off; finalize records when it starts.
        let tear_down = format!(
            "kill -TERM $OCHOPOD_PID; sleep 1; date +%s%N > {}; sleep 30; touch {}",
            done.display(),
            cut.display()
        );
        f.settings.hooks.tear_down = Some(ochopod_config::Hook { command: tear_down, timeout: Duration::from_secs(2) });
        f.settings.hooks.finalize = Fixture::hook(&format!("date +%s%N > {}", finalized.display()));
        f.process().grace = Duration::from_millis(300);
        let (addr, events) = f.start();
        let mut rx = events.subscribe();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        f.wait_records("start", WAIT, |r| !r.is_empty()).await;
        let started = Instant::now();
        addr.send(Shutdown).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(2), "the shutdown did not wait for tear_down");
        let ns = |p: &std::path::Path| -> u128 {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().parse().unwrap()
        };
        assert!(ns(&finalized) > ns(&done), "finalize started while tear_down still ran");
        assert!(!cut.exists(), "tear_down ran past its timeout");
        let timed_out: Vec<Event> =
            drain(&mut rx).into_iter().filter(|e| matches!(e, Event::HookTimedOut { .. })).collect();
        assert_eq!(timed_out, [Event::HookTimedOut { hook: "tear_down".into(), timeout_ms: 2000 }]);
        assert_eq!(status(&addr).await.process, "dead");
    });
}
