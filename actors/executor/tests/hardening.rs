//! What a review found could hurt a real pod: a child blocked on its own output, the control
//! token leaking into what the pod starts, a client per HTTP check, file writes blocking the
//! executor.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ochopod_api::Task;
use ochopod_config::{FileTemplate, Sanity, SanityCheck};
use ochopod_executor::{Command, JsonBody, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_child_printing_invalid_utf8_then_plenty_more_is_never_blocked_and_all_of_it_is_logged() {
    use tracing_subscriber::layer::SubscriberExt;
    let ring = ochopod_core::logring::LogRing::new(10_000);
    let subscriber = tracing_subscriber::registry().with(ochopod_core::logring::LogRingLayer::new(ring.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    run(async {
        let mut f = Fixture::new("");
        // A bad line, then ~250 KiB (far more than a pipe holds), then a last line and exit 0.
        f.process().command = "printf 'before\\n\\377\\376 not utf-8\\n'; \
             yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n 3600; \
             echo the-last-line; exit 0"
            .into();
        f.process().shell = true;
        f.process().pipe_output = true;
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let s = wait_status(&addr, "the child to exit 0", WAIT, |s| s.last_exit.is_some()).await;
        assert_eq!(s.last_exit, Some(0));
        let deadline = Instant::now() + WAIT;
        while !ring.tail(None).iter().any(|l| l.contains("the-last-line")) {
            assert!(Instant::now() < deadline, "the last line never reached the log");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The child's lines only (the executor's own "process started" shows the command too).
        let lines: Vec<String> = ring.tail(None).into_iter().filter(|l| l.contains(" stream=stdout")).collect();
        assert!(lines.iter().any(|l| l.contains("\u{fffd}\u{fffd} not utf-8")), "the bad line is not logged lossily");
        let filler = lines.iter().filter(|l| l.contains("0123456789012345678901234567890123456789")).count();
        assert_eq!(filler, 3600, "some output lines were lost");
    });
}

#[test]
fn the_control_token_variable_reaches_no_child_hook_check_or_template() {
    // `CARGO_MANIFEST_DIR` plays the token variable: cargo sets it in this test's own environment,
    // so it also stands for what hooks and checks would inherit from ochopod itself (no
    // `set_var` in a test binary whose other threads spawn processes).
    const VAR: &str = "CARGO_MANIFEST_DIR";
    assert!(std::env::var_os(VAR).is_some(), "cargo did not set {VAR}");
    run(async {
        let mut f = Fixture::new(&format!("--env-keys {VAR},OTHER_VAR"));
        f.settings.control.token_source = Some(ochopod_config::TokenSource::Env(VAR.into()));
        let hook_out = f.path("hook.txt");
        let check_out = f.path("check.txt");
        let show = format!("${{{VAR}:-unset}} ${{OTHER_VAR:-unset}}");
        f.settings.hooks.configured = Fixture::hook(&format!("echo \"{show}\" > {}", hook_out.display()));
        f.process().sanity = Some(Sanity {
            check: SanityCheck::Command(format!("echo \"{show}\" > {}", check_out.display())),
            every: Duration::from_millis(50),
            retries: 5,
            timeout: Duration::from_secs(5),
        });
        f.settings.files.push(FileTemplate {
            path: "env.txt".into(),
            template: format!("{{{{ env.{VAR} | default('unset') }}}} {{{{ env.OTHER_VAR }}}}"),
            mode: None,
        });
        let (addr, _) = f.start_with_env(&[(VAR, "s3cret"), ("OTHER_VAR", "visible")]);
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        assert_eq!(send(&addr, Task::Ok, None).await, ok());
        let r = f.wait_records("start", WAIT, |r| !r.is_empty()).await;
        assert_eq!(r[0]["env"]["OTHER_VAR"], "visible");
        assert!(r[0]["env"].get(VAR).is_none(), "the child got the token variable: {}", r[0]["env"]);
        assert_eq!(std::fs::read_to_string(f.path("env.txt")).unwrap(), "unset visible");
        assert_eq!(std::fs::read_to_string(&hook_out).unwrap(), "unset visible\n");
        let deadline = Instant::now() + WAIT;
        while !check_out.exists() {
            assert!(Instant::now() < deadline, "no sanity check ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The check writes with `>`: wait for a complete line.
        let deadline = Instant::now() + WAIT;
        let text = loop {
            let t = std::fs::read_to_string(&check_out).unwrap_or_default();
            if t.ends_with('\n') {
                break t;
            }
            assert!(Instant::now() < deadline, "the check's output never completed: {t:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(text, "unset visible\n");
        addr.send(Shutdown).await.unwrap();
    });
}

/// An HTTP/1.1 server answering `{}` to every request, keeping connections open; counts both.
async fn keep_alive_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), requests.clone());
    actix::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            actix::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = sock.read(&mut buf).await {
                    pending.extend_from_slice(&buf[..n]);
                    // Requests are body-less GETs: each ends with an empty line.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, connections, requests)
}

#[test]
fn http_sanity_checks_share_one_client_and_its_connection() {
    run(async {
        let (port, connections, requests) = keep_alive_server().await;
        let mut f = Fixture::new("");
        f.process().sanity = Some(Sanity {
            check: SanityCheck::Http(format!("http://127.0.0.1:{port}/health")),
            every: Duration::from_millis(30),
            retries: 5,
            timeout: Duration::from_secs(2),
        });
        let (addr, _) = f.start();
        assert_eq!(send(&addr, Task::On, Some(payload(None))).await, ok());
        let deadline = Instant::now() + WAIT;
        while requests.load(Ordering::SeqCst) < 5 {
            assert!(Instant::now() < deadline, "only {} checks ran", requests.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status(&addr).await.sanity_failures, 0);
        assert_eq!(connections.load(Ordering::SeqCst), 1, "a connection per check: a client per check");
        addr.send(Shutdown).await.unwrap();
    });
}

#[test]
fn writing_the_files_does_not_block_the_executor_and_the_command_waits_for_it() {
    run(async {
        let mut f = Fixture::new("");
        f.settings.files.push(FileTemplate {
            path: "conf/app.cfg".into(),
            template: "index={{ index }}\n".into(),
            mode: None,
        });
        // The temporary file the writer goes through is a FIFO: the write blocks until a reader
        // opens it, as on a stuck disk.
        std::fs::create_dir_all(f.path("conf")).unwrap();
        let fifo = f.path("conf/.app.cfg.ochopod-tmp");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        // Opens after being told, or after 3 s so that a blocked executor fails the test
        // instead of hanging it.
        let reader = std::thread::spawn(move || {
            let _ = wait.recv_timeout(Duration::from_secs(3));
            std::fs::read_to_string(&fifo)
        });
        let (addr, _) = f.start();
        let on = addr.send(Command { task: Task::On, body: Some(JsonBody::from(&payload(None))) });
        let asked = Instant::now();
        let s = status(&addr).await;
        let answered = asked.elapsed();
        let _ = go.send(());
        assert!(answered < Duration::from_secs(1), "the executor was blocked {answered:?} by a file write");
        assert_eq!((s.configurations, s.pid), (0, None), "configured before its files were written");
        assert_eq!(tokio::time::timeout(WAIT, on).await.expect("on never answered").unwrap(), ok());
        assert_eq!(reader.join().unwrap().unwrap(), "index=1\n");
        let s = status(&addr).await;
        assert_eq!((s.configurations, s.process.as_str()), (1, "running"));
        addr.send(Shutdown).await.unwrap();
    });
}
