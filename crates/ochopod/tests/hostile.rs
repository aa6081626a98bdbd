//! Hostile registrations, against the real binary: a "pod" in ZooKeeper whose control port
//! answers gigabytes, and a registration whose `ip` would put an address of the attacker's
//! choosing into the control URL (issue 13, items 4 and 5).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use zookeeper_client::{Acls, Client, CreateMode};

/// What a fake pod does with one request.
#[derive(Clone, Debug)]
enum Answer {
    /// A JSON reply with this status code.
    Json(u16, Value),
    /// `200`, chunked, 64 KiB chunks without end (up to [`FLOOD_CAP`]).
    Endless,
    /// `200` declaring `content-length: 8 GiB`, then the body as it comes (up to [`FLOOD_CAP`]).
    LyingLength,
}

/// The most a flooding fake sends on one connection: far past every client limit (4 MiB), yet
/// bounded, so that a regression fails the memory assertion instead of exhausting the machine.
/// Past it the connection stays open and silent.
const FLOOD_CAP: usize = 256 << 20;

/// One request a fake pod saw, and how its answer ended.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
    /// Body bytes sent before the peer closed (or the cap was reached).
    sent: usize,
    /// The peer hung up while the body was still flowing.
    cut_by_peer: bool,
}

/// A loopback HTTP server standing in for a pod: `answer(path)` decides each reply, and every
/// request is recorded. Its threads are detached: they only serve its own port and end with the
/// test process.
struct FakePod {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests whose answer has started (recorded at once, before the body is sent).
    started: Arc<Mutex<Vec<String>>>,
}

impl FakePod {
    fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> FakePod {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (log, starts) = (seen.clone(), started.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (answer, log, starts) = (answer.clone(), log.clone(), starts.clone());
                std::thread::spawn(move || serve_one(stream, &*answer, &log, &starts));
            }
        });
        FakePod { port, seen, started }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

fn serve_one(stream: TcpStream, answer: &dyn Fn(&str) -> Answer, log: &Mutex<Vec<Seen>>, starts: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    starts.lock().unwrap().push(path.clone());
    let mut stream = stream;
    let how = answer(&path);
    let (sent, cut_by_peer) = match how {
        Answer::Json(code, value) => {
            let text = value.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            (text.len(), false)
        }
        Answer::Endless | Answer::LyingLength => flood(&mut stream, matches!(how, Answer::Endless)),
    };
    log.lock().unwrap().push(Seen { path, authorization, sent, cut_by_peer });
    if !cut_by_peer {
        // Past the cap: silent, until the peer gives up (its timeout) and closes.
        let _ = stream.set_read_timeout(None);
        let _ = stream.read(&mut [0u8; 1]);
    }
}

/// Sends a 200 whose body has no end in sight; returns the bytes sent and whether the peer
/// closed first.
fn flood(stream: &mut TcpStream, chunked: bool) -> (usize, bool) {
    let head = if chunked {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    } else {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8589934592\r\n\r\n"
    };
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, true);
    }
    let chunk = vec![b' '; 64 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    let mut sent = 0;
    while sent < FLOOD_CAP {
        let out = if chunked { stream.write_all(&framed) } else { stream.write_all(&chunk) };
        if out.is_err() {
            return (sent, true);
        }
        sent += chunk.len();
    }
    (sent, false)
}

/// Registers `registration` as a pod of `test.<cluster>`, held by `client`'s session.
async fn register(client: &Client, cluster: &str, uuid: &str, registration: &Value) {
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    match client.mkdir(&dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
        Err(e) => panic!("mkdir {dir}: {e}"),
    }
    let mode = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    client.create(&format!("{dir}/{uuid}."), registration.to_string().as_bytes(), &mode).await.unwrap();
}

/// One tool run: exit code, stdout, stderr.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ochopod <args>` against `zk` with `env`, killing it past `limit`.
fn ochopod(zk: &ZkServer, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    ochopod_as(Command::new(BIN), args, zk, env, limit)
}

fn ochopod_as(mut cmd: Command, args: &[&str], zk: &ZkServer, env: &[(&str, &str)], limit: Duration) -> Run {
    cmd.args(args)
        .env("OCHOPOD_ZK", zk.connect_string())
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start ochopod");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait::until_blocking(&format!("ochopod {args:?} to exit"), limit, || match child.try_wait() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("still running".into()),
        Err(e) => Err(e.to_string()),
    });
    let status = status.unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}")
    });
    let run = Run { code: status.code(), stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    eprintln!("$ ochopod {}\n{}{}-> {:?}", args.join(" "), run.stdout, run.stderr, run.code);
    run
}

/// Resident set now and at its peak, in KiB, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the pod's /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn alive(pid: u32) -> bool {
    matches!(ochopod_integration::pods::state_of(pid), Some(s) if s != 'Z')
}

const MEMORY_BOUND_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_answering_gigabytes_takes_down_neither_the_leader_nor_the_tools() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let pod = start_pod(&zk, &simple_yaml("web", ""));
    wait_settled(&[&pod], 1, SETTLE).await;
    let child = pod.descendants();
    assert!(!child.is_empty(), "the pod's process runs");

    // A "pod" of the same cluster whose control port floods: the leader sends it `check`.
    let flood = FakePod::start(|path| match path {
        "/info" => Answer::LyingLength,
        _ => Answer::Endless,
    });
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let registration = json!({"ip": "127.0.0.1", "port": "8080", "ports": {"8080": flood.port}, "seq": 9001,
        "cluster": "web", "namespace": "test", "node": "hostile", "public": ""});
    register(&client, "web", "0badf00d-0000-4000-8000-000000000000", &registration).await;

    // The leader runs rounds that reach the flood: each `check` is cut by the leader well
    // before the flood's end, and the leader (and its process) lives on, small.
    let cut = wait::until("two floods cut short by the leader", Duration::from_secs(90), || async {
        let checks: Vec<Seen> = flood.seen().into_iter().filter(|s| s.path.starts_with("/control/check")).collect();
        let cut: Vec<&Seen> = checks.iter().filter(|s| s.cut_by_peer && s.sent < FLOOD_CAP).collect();
        if !alive(pod.pid()) {
            return Err(format!("the leader died: {}", pod.log_tail(20)));
        }
        if cut.len() >= 2 {
            Ok(cut.iter().map(|s| s.sent).collect::<Vec<_>>())
        } else {
            Err(format!("checks so far: {checks:?}; started: {:?}", flood.started()))
        }
    })
    .await;
    let (rss, peak) = memory_kib(pod.pid());
    let cut = cut.unwrap_or_else(|e| panic!("{e}\n(leader RSS {rss} KiB, peak {peak} KiB)"));
    eprintln!("floods cut after {cut:?} bytes; leader RSS {rss} KiB, peak {peak} KiB");
    assert!(alive(pod.pid()), "the leader died:\n{}", pod.log_tail(30));
    assert!(peak < MEMORY_BOUND_KIB, "the leader grew to {peak} KiB (now {rss} KiB)");
    assert!(child.iter().all(|p| alive(*p)), "the pod's process was lost: {child:?}");
    assert_eq!(pod.info().await.unwrap().process, "running");

    // The tools read the flood too, and report it as that pod's failure.
    for args in [&["ls"][..], &["info", "web"], &["grep", "web"], &["on", "web", "-i", "9001", "-t", "5s"]] {
        let run = ochopod(&zk, args, &[], Duration::from_secs(60));
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(run.stderr.contains("1 of 2 pods failed") || args[0] == "on", "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!("test.web #9001 (127.0.0.1:{}): reply larger than 4194304 bytes", flood.port)),
            "{args:?}: {run:?}"
        );
    }
    let info = ochopod(&zk, &["info", "web", "--json"], &[], Duration::from_secs(60));
    let doc: Value = serde_json::from_str(&info.stdout).unwrap();
    let kinds: Vec<&str> = doc["failed"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds, ["too-large"]);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_names_another_address_is_never_contacted() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // The attacker's listener: whatever reaches it would carry the token.
    let bait = TcpListener::bind("127.0.0.1:0").unwrap();
    let bait_port = bait.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = hits.clone();
    std::thread::spawn(move || {
        for mut stream in bait.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 512];
            let n = stream.read(&mut head).unwrap_or(0);
            record.lock().unwrap().push(String::from_utf8_lossy(&head[..n]).into_owned());
        }
    });
    // A well-formed pod of the same cluster that claims the bait leads (`/reconfigure` 409).
    let bait_address = format!("127.0.0.1:{bait_port}");
    let named = bait_address.clone();
    let honest = FakePod::start(move |path| match path {
        "/info" => Answer::Json(
            200,
            json!({"application": "", "dependencies": [], "ip": "127.0.0.1", "metrics": {}, "node": "local",
                   "port": "8080", "ports": {}, "process": "running", "public": "", "state": "follower",
                   "status": "", "task": ""}),
        ),
        "/log" => Answer::Json(200, json!(["hello\n"])),
        "/reconfigure" => Answer::Json(409, json!({"error": "not the leader", "leader": named})),
        _ => Answer::Json(200, json!({})),
    });

    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let evil_ip = format!("127.0.0.1:{bait_port}/steal?\u{1b}[2J");
    let evil = json!({"ip": evil_ip, "port": "8080", "ports": {"8080": bait_port}, "seq": 7,
        "cluster": "evil", "namespace": "test", "node": "n", "public": ""});
    register(&client, "evil", "0badf00d-0000-4000-8000-000000000007", &evil).await;
    let fine = json!({"ip": "127.0.0.1", "port": "8080", "ports": {"8080": honest.port}, "seq": 8,
        "cluster": "evil", "namespace": "test", "node": "n", "public": ""});
    register(&client, "evil", "0badf00d-0000-4000-8000-000000000008", &fine).await;

    let token = [("OCHOPOD_TOKEN", "s3cret")];
    let limit = Duration::from_secs(60);
    // The honest pod names the bait as its leader: a reply's word is not a registration.
    let reconfigure = ochopod(&zk, &["reconfigure", "evil"], &token, limit);
    assert_eq!(reconfigure.code, Some(1), "{reconfigure:?}");
    assert!(hits.lock().unwrap().is_empty(), "the token went to the attacker: {:?}", hits.lock().unwrap());
    assert!(reconfigure.stderr.contains("is no registered pod of this cluster (not followed)"), "{reconfigure:?}");

    let why = format!(r#"invalid registration: `ip` "127.0.0.1:{bait_port}/steal?\\u{{1b}}[2J" is neither"#);
    let commands: [&[&str]; 11] = [
        &["ls"],
        &["grep", "evil"],
        &["info", "evil"],
        &["poll", "evil"],
        &["log", "evil"],
        &["port", "8080", "evil"],
        &["on", "evil", "--force", "-t", "5s"],
        &["off", "evil", "-i", "7", "-t", "5s"],
        &["signal", "evil", "--force", "-t", "5s", r#"{"x": 1}"#],
        &["reset", "evil", "--force"],
        &["kill", "evil", "-i", "7,8", "-t", "5s"],
    ];
    for args in commands {
        let run = ochopod(&zk, args, &token, limit);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(run.stderr.contains(&format!("test.evil #7: {why}")), "{args:?}: {run:?}");
        assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'), "{args:?}: unescaped: {run:?}");
    }
    let ls = ochopod(&zk, &["ls", "evil"], &token, limit);
    assert!(ls.stdout.contains("test.evil  1/2  [1 invalid registration]"), "{ls:?}");
    let grep = ochopod(&zk, &["grep", "evil", "--json"], &token, limit);
    let doc: Value = serde_json::from_str(&grep.stdout).unwrap();
    assert_eq!(doc["pods"].as_array().unwrap().len(), 2, "the invalid pod keeps its row: {doc}");
    assert_eq!(doc["failed"][0]["kind"], "invalid-registration", "{doc}");

    // The bait saw nothing; the honest pod got every command, with the token.
    assert!(hits.lock().unwrap().is_empty(), "the token went to the attacker: {:?}", hits.lock().unwrap());
    let seen = honest.seen();
    for path in ["/info", "/log", "/control/on/5", "/control/kill/5", "/control/signal/5", "/reset", "/reconfigure"] {
        assert!(seen.iter().any(|s| s.path == path), "{path} never reached the honest pod: {seen:?}");
    }
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some("Bearer s3cret")), "{seen:?}");
    drop(client);
}

/// Runs `ochopod <args>` on a pseudo-terminal (util-linux `script`): what the terminal received.
fn on_terminal(zk: &ZkServer, args: &[&str], limit: Duration) -> Run {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(BIN).chain(args.iter().copied()).map(quote).collect::<Vec<_>>().join(" ");
    ochopod_as(Command::new("script"), &["-q", "-e", "-c", &line, "/dev/null"], zk, &[("TERM", "xterm")], limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_log_reaches_a_terminal_escaped() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let rogue = FakePod::start(|path| match path {
        "/log" => Answer::Json(200, json!(["plain\n", "clear \u{1b}[2J\u{1b}]0;pwned\u{7}\n"])),
        _ => Answer::Json(200, json!({})),
    });
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let registration = json!({"ip": "127.0.0.1", "port": "8080", "ports": {"8080": rogue.port}, "seq": 1,
        "cluster": "rogue", "namespace": "test", "node": "n", "public": ""});
    register(&client, "rogue", "0badf00d-0000-4000-8000-000000000001", &registration).await;
    let limit = Duration::from_secs(60);

    let tty = on_terminal(&zk, &["log", "rogue"], limit);
    assert_eq!(tty.code, Some(0), "{tty:?}");
    assert!(tty.stdout.contains(r"clear \u{1b}[2J\u{1b}]0;pwned\u{7}"), "{tty:?}");
    assert!(!tty.stdout.contains('\u{1b}'), "escape codes reached the terminal: {tty:?}");

    // A file or a pipe gets the lines as the pod has them.
    let piped = ochopod(&zk, &["log", "rogue"], &[], limit);
    assert_eq!(piped.code, Some(0), "{piped:?}");
    assert!(piped.stdout.contains("clear \u{1b}[2J\u{1b}]0;pwned\u{7}\n"), "{piped:?}");
    drop(client);
}
