//! `ochopod-probe`: a tiny workload that ochopod supervises in tests.
//!
//! Theory of operation: it records what it received as JSON lines appended to the file named by
//! `PROBE_RECORD` (stderr when unset), each stamped with `at_ms` (unix milliseconds), so tests
//! assert on behaviour (arguments, environment, rendered files, signals, process groups) instead
//! of log lines:
//!
//! - at start: `{"event":"start","pid","ppid","pgid","args","env","files"}` where `env` holds every
//!   `OCHOPOD_*` and `PROBE_*` variable plus those named by `--env-keys a,b`, and `files` maps
//!   each `--read <path>` to its contents (`null` if unreadable);
//! - on SIGTERM, SIGINT, SIGHUP, SIGUSR1: `{"event":"signal","name":"TERM","pid"}`; TERM and INT
//!   then exit 0 unless `--ignore-term`;
//! - `--grandchild`: a long-running grandchild in the same process group records
//!   `{"event":"grandchild","pid"}` (it keeps the default signal dispositions, so the group's
//!   SIGTERM ends it);
//! - `--orphan-zombie`: a child starts a grandchild and exits at once; the grandchild waits until
//!   it has been re-parented, records `{"event":"orphan","pid","ppid"}` and exits, leaving a zombie
//!   that only the new parent (a subreaper or PID 1) can reap;
//! - `--exit-after <ms> [--code <n>]`, `--listen <port>` (TCP accept loop), `--http <port>`
//!   (answers any request 200 with `--metrics <json>` or `{}`), `--print <text>` (one stdout line).
//!
//! Signals are blocked and taken with `sigwait`, which needs no `unsafe`. A spawned process
//! inherits the mask, so every mode starts by unblocking everything.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{getpgrp, getpid, getppid};
use serde_json::{json, Value};

#[derive(Default)]
struct Options {
    exit_after: Option<u64>,
    code: i32,
    ignore_term: bool,
    grandchild: bool,
    orphan_zombie: bool,
    listen: Option<u16>,
    http: Option<u16>,
    metrics: Option<String>,
    print: Option<String>,
    env_keys: Vec<String>,
    read: Vec<String>,
}

fn record(mut value: Value) {
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    value["at_ms"] = json!(at_ms);
    let line = format!("{value}\n");
    match std::env::var_os("PROBE_RECORD") {
        Some(path) => {
            // One write of one line with O_APPEND keeps lines whole across the probe's processes.
            let written =
                OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                eprintln!("ochopod-probe: cannot record to {}: {e}", path.to_string_lossy());
            }
        }
        None => eprint!("{line}"),
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, flag: &str| {
        it.next().cloned().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--exit-after" => o.exit_after = Some(num(&value(&mut it, arg)?, arg)?),
            "--code" => o.code = num(&value(&mut it, arg)?, arg)?,
            "--ignore-term" => o.ignore_term = true,
            "--grandchild" => o.grandchild = true,
            "--orphan-zombie" => o.orphan_zombie = true,
            "--listen" => o.listen = Some(num(&value(&mut it, arg)?, arg)?),
            "--http" => o.http = Some(num(&value(&mut it, arg)?, arg)?),
            "--metrics" => o.metrics = Some(value(&mut it, arg)?),
            "--print" => o.print = Some(value(&mut it, arg)?),
            "--env-keys" => o.env_keys.extend(value(&mut it, arg)?.split(',').map(str::to_string)),
            "--read" => o.read.push(value(&mut it, arg)?),
            // Anything else is recorded in `args` only, so tests can check argv splitting.
            _ => {}
        }
    }
    Ok(o)
}

fn num<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{flag}: {s:?} is not a number"))
}

fn signal_name(sig: Signal) -> &'static str {
    match sig {
        Signal::SIGTERM => "TERM",
        Signal::SIGINT => "INT",
        Signal::SIGHUP => "HUP",
        Signal::SIGUSR1 => "USR1",
        _ => "OTHER",
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `--sleeper`: the long-running grandchild.
fn sleeper() -> ! {
    record(json!({"event": "grandchild", "pid": getpid().as_raw(), "pgid": getpgrp().as_raw()}));
    sleep_forever()
}

/// `--orphan-parent`: start the leaf and exit without waiting for it.
fn orphan_parent() -> ! {
    let exe = std::env::current_exe().expect("own path");
    if let Err(e) = Command::new(exe).arg("--orphan-leaf").arg(getpid().as_raw().to_string()).spawn() {
        eprintln!("ochopod-probe: cannot start the orphan leaf: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// `--orphan-leaf <parent pid>`: exit once re-parented, as a zombie nobody but the adopter reaps.
fn orphan_leaf(parent: i32) -> ! {
    for _ in 0..500 {
        if getppid().as_raw() != parent {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    record(json!({"event": "orphan", "pid": getpid().as_raw(), "ppid": getppid().as_raw()}));
    std::process::exit(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A spawned process inherits the signal mask (std does not reset it), and the helpers below
    // must die of the group's SIGTERM like any ordinary process.
    let _ = SigSet::all().thread_unblock();
    match args.first().map(String::as_str) {
        Some("--sleeper") => sleeper(),
        Some("--orphan-parent") => orphan_parent(),
        Some("--orphan-leaf") => orphan_leaf(args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0)),
        _ => {}
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ochopod-probe: {e}");
            std::process::exit(2);
        }
    };

    // Block before any thread starts so that every thread inherits the mask and only sigwait
    // sees these signals.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("ochopod-probe: cannot block signals: {e}");
        std::process::exit(2);
    }

    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OCHOPOD_") || k.starts_with("PROBE_") || opts.env_keys.contains(k))
        .collect();
    let files: BTreeMap<&str, Value> = opts
        .read
        .iter()
        .map(|p| (p.as_str(), std::fs::read_to_string(p).map(Value::String).unwrap_or(Value::Null)))
        .collect();
    record(json!({
        "event": "start",
        "pid": getpid().as_raw(),
        "ppid": getppid().as_raw(),
        "pgid": getpgrp().as_raw(),
        "args": args,
        "env": env,
        "files": files,
    }));
    if let Some(text) = &opts.print {
        println!("{text}");
    }

    let exe = std::env::current_exe().expect("own path");
    if opts.grandchild {
        // Not waited for: it lives as long as the group.
        if let Err(e) = Command::new(&exe).arg("--sleeper").spawn() {
            eprintln!("ochopod-probe: cannot start the grandchild: {e}");
        }
    }
    if opts.orphan_zombie {
        match Command::new(&exe).arg("--orphan-parent").spawn() {
            Ok(mut child) => {
                let _ = child.wait();
            }
            Err(e) => eprintln!("ochopod-probe: cannot start the orphan parent: {e}"),
        }
    }
    if let Some(port) = opts.listen {
        let listener = bind(port);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
    }
    if let Some(port) = opts.http {
        let listener = bind(port);
        let body = opts.metrics.clone().unwrap_or_else(|| "{}".to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
    }
    if let Some(ms) = opts.exit_after {
        let code = opts.code;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            record(json!({"event": "exit", "pid": getpid().as_raw(), "code": code}));
            std::process::exit(code);
        });
    }

    loop {
        match signals.wait() {
            Ok(sig) => {
                let name = signal_name(sig);
                record(json!({"event": "signal", "name": name, "pid": getpid().as_raw()}));
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && !opts.ignore_term {
                    std::process::exit(0);
                }
            }
            Err(e) => {
                eprintln!("ochopod-probe: sigwait failed: {e}");
                std::process::exit(2);
            }
        }
    }
}

fn bind(port: u16) -> TcpListener {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ochopod-probe: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(2);
        }
    }
}
