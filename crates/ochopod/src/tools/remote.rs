//! The tools through a portal (`--portal URL`, `OCHOPOD_PORTAL`): both ends of the wire.
//!
//! The CLI turns its arguments into a [`ToolRequest`] ([`request_of`]) and posts it to
//! `/v1/<tool>`; the portal turns it back into the same [`Tool`] ([`tool_of`]), runs it with
//! [`super::report`] — the function the CLI runs without a portal — and answers a [`ToolReply`]:
//! the `--json` document, the table, the warnings, and how the CLI must end (its stderr text and
//! exit code). The CLI prints them as it would have, so output and exit codes cannot drift. A
//! tool that could not run at all (bad usage, no cluster, ZooKeeper down) is an HTTP error whose
//! JSON body carries the same message and exit code.

use std::time::Duration;

use ochopod_api::PodClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ToolError;
use super::{args::*, output, Report};

/// What a tool is asked, minus where ZooKeeper and the pods are (the portal knows).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolRequest {
    /// Cluster globs over `<namespace>.<cluster>`.
    pub clusters: Vec<String>,
    /// Only the pods with these seqs (`-i`).
    pub seq: Vec<u64>,
    /// Act on every pod of the clusters (`--force`).
    pub force: bool,
    /// `ls --all`, `log --all`.
    pub all: bool,
    /// `log -n`.
    pub lines: Option<usize>,
    /// `port <n>`.
    pub port: Option<u16>,
    /// `-t`: `60s`, `500ms`, or seconds.
    pub timeout: Option<String>,
    /// `--pod-timeout`.
    pub pod_timeout: Option<String>,
    /// `signal`'s JSON body.
    pub data: Option<Value>,
    /// `wait --count`.
    pub count: Option<usize>,
    /// `wait --healthy`.
    pub healthy: bool,
    /// `log`: show lines escaped (the client's stdout is a terminal).
    pub escape: bool,
    /// `log -f`: the answer is a stream of JSON lines ([`follow_lines`]), not a reply.
    pub follow: bool,
}

/// A tool's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolReply {
    /// The `--json` document.
    pub report: Value,
    /// The table or sections, for people.
    pub text: String,
    /// What discovery skipped, said on stderr before the output.
    pub warnings: Vec<String>,
    /// 0 when every targeted pod succeeded.
    pub exit_code: u8,
    /// What stderr says at the end (empty on success).
    pub message: String,
}

impl ToolReply {
    pub fn of(report: &dyn Report) -> ToolReply {
        let (exit_code, message) = match report.verdict() {
            Ok(()) => (0, String::new()),
            Err(e) => (e.exit_code(), e.message()),
        };
        ToolReply {
            report: report.document(),
            text: report.text(),
            warnings: report.warnings().to_vec(),
            exit_code,
            message,
        }
    }
}

/// The tools a portal serves, by route name.
pub const TOOLS: &[&str] =
    &["ls", "grep", "info", "poll", "port", "log", "on", "off", "kill", "reset", "signal", "reconfigure", "wait"];

fn duration_text(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The CLI's side: the route and the request for a tool.
pub fn request_of(tool: &Tool) -> Result<(&'static str, ToolRequest), ToolError> {
    let c = tool.common();
    let mut r = ToolRequest { pod_timeout: Some(duration_text(c.pod_timeout)), ..ToolRequest::default() };
    let sel = |r: &mut ToolRequest, s: &Selection| {
        r.clusters = s.clusters.clone();
        r.seq = s.seq.clone();
    };
    let targets = |r: &mut ToolRequest, t: &Targets| {
        r.clusters = t.clusters.clone();
        r.seq = t.seq.clone();
        r.force = t.force;
    };
    let name = match tool {
        Tool::Ls(a) => {
            sel(&mut r, &a.sel);
            r.all = a.all;
            "ls"
        }
        Tool::Grep(a) | Tool::Info(a) | Tool::Poll(a) => {
            sel(&mut r, &a.sel);
            match tool {
                Tool::Grep(_) => "grep",
                Tool::Info(_) => "info",
                _ => "poll",
            }
        }
        Tool::Port(a) => {
            sel(&mut r, &a.sel);
            r.port = Some(a.port);
            "port"
        }
        Tool::Log(a) => {
            sel(&mut r, &a.sel);
            r.all = a.all;
            r.lines = Some(a.lines);
            r.escape = output::stdout_is_terminal();
            r.follow = a.follow;
            "log"
        }
        Tool::On(a) | Tool::Off(a) | Tool::Kill(a) => {
            targets(&mut r, &a.targets);
            r.timeout = Some(duration_text(a.timeout));
            match tool {
                Tool::On(_) => "on",
                Tool::Off(_) => "off",
                _ => "kill",
            }
        }
        Tool::Reset(a) => {
            targets(&mut r, &a.targets);
            "reset"
        }
        Tool::Signal(a) => {
            let (clusters, body) = super::drive::signal_body(&a.args, a.data.as_deref()).map_err(ToolError::Usage)?;
            r.clusters = clusters;
            r.data = body;
            r.seq = a.seq.clone();
            r.force = a.force;
            r.timeout = Some(duration_text(a.timeout));
            "signal"
        }
        Tool::Reconfigure(a) => {
            r.clusters = a.clusters.clone();
            r.timeout = Some(duration_text(a.timeout));
            "reconfigure"
        }
        Tool::Wait(a) => {
            r.clusters = a.clusters.clone();
            r.count = a.count;
            r.healthy = a.healthy;
            r.timeout = Some(duration_text(a.timeout));
            "wait"
        }
    };
    Ok((name, r))
}

/// The portal's side: the tool a request names, run against `common` (the portal's ZooKeeper,
/// the pods' token and CA). Bad input is [`ToolError::Usage`], which says what is wrong.
pub fn tool_of(name: &str, r: ToolRequest, mut common: Common) -> Result<Tool, ToolError> {
    let bad = |what: &str, text: &str, e: String| ToolError::Usage(format!("{what} {text:?}: {e}"));
    let duration = |what: &str, text: &Option<String>, default: Duration| -> Result<Duration, ToolError> {
        match text {
            Some(t) => parse_duration_arg(t).map_err(|e| bad(what, t, e)),
            None => Ok(default),
        }
    };
    common.pod_timeout = duration("pod_timeout", &r.pod_timeout, Duration::from_secs(5))?;
    common.json = true;
    let sel = Selection { clusters: r.clusters.clone(), seq: r.seq.clone() };
    let targets = || -> Result<Targets, ToolError> {
        if r.clusters.is_empty() {
            return Err(ToolError::Usage(format!("{name} needs `clusters`: the cluster globs to act on")));
        }
        Ok(Targets { clusters: r.clusters.clone(), seq: r.seq.clone(), force: r.force })
    };
    let read = ReadArgs { sel: sel.clone(), common: common.clone() };
    let timeout = |default| duration("timeout", &r.timeout, Duration::from_secs(default));
    Ok(match name {
        "ls" => Tool::Ls(LsArgs { sel, all: r.all, common }),
        "grep" => Tool::Grep(read),
        "info" => Tool::Info(read),
        "poll" => Tool::Poll(read),
        "port" => {
            let port = r.port.ok_or_else(|| ToolError::Usage("port needs `port`: the container port".into()))?;
            Tool::Port(PortArgs { port, sel, common })
        }
        "log" => Tool::Log(LogArgs {
            sel,
            lines: r.lines.unwrap_or(16),
            all: r.all,
            follow: r.follow,
            escape: Some(r.escape),
            common,
        }),
        "on" | "off" | "kill" => {
            let a = ControlArgs { targets: targets()?, timeout: timeout(60)?, common };
            match name {
                "on" => Tool::On(a),
                "off" => Tool::Off(a),
                _ => Tool::Kill(a),
            }
        }
        "reset" => Tool::Reset(ResetArgs { targets: targets()?, common }),
        "signal" => {
            let t = targets()?;
            Tool::Signal(SignalArgs {
                args: t.clusters,
                data: r.data.as_ref().map(Value::to_string),
                seq: t.seq,
                force: t.force,
                timeout: timeout(60)?,
                common,
            })
        }
        "reconfigure" => {
            Tool::Reconfigure(ReconfigureArgs { clusters: targets()?.clusters, timeout: timeout(30)?, common })
        }
        "wait" => Tool::Wait(WaitArgs {
            clusters: targets()?.clusters,
            count: r.count,
            timeout: timeout(60)?,
            healthy: r.healthy,
            common,
        }),
        other => {
            return Err(ToolError::Usage(format!("no tool {other:?}; the tools are {}", TOOLS.join(", "))));
        }
    })
}

/// Where a portal answers: `http://host:port` or `https://host:port` (which needs `--ca`).
pub fn portal_client(common: &Common, url: &str) -> Result<(PodClient, String), ToolError> {
    let token = super::reach::token(common).map_err(ToolError::Usage)?;
    let (https, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => {
            return Err(ToolError::Usage(format!("--portal {url}: scheme {scheme} is neither http nor https")))
        }
        None => (common.ca.is_some(), url),
    };
    let address = rest.trim_end_matches('/').to_string();
    if address.is_empty() || address.contains('/') {
        return Err(ToolError::Usage(format!("--portal {url}: expected http[s]://host:port")));
    }
    let client = match (&common.ca, https) {
        (Some(ca), true) => PodClient::with_tls(token, ca).map_err(|e| ToolError::Usage(e.to_string()))?,
        (None, true) => return Err(ToolError::Usage(format!("--portal {url}: HTTPS needs --ca with the portal's CA"))),
        (_, false) => PodClient::new(token),
    };
    Ok((client, address))
}

/// Posts `body` to the portal's `route` and reads its JSON answer: `Ok` for 2xx, else the
/// error it names as a [`ToolError`] that ends the CLI as the tool would have.
pub async fn post(common: &Common, url: &str, route: &str, body: &Value, wait: Duration) -> Result<Value, ToolError> {
    let (client, address) = portal_client(common, url)?;
    let reply =
        client.call(&address, route, Some(body), wait).await.map_err(|e| ToolError::Portal(format!("{url}: {e}")))?;
    if (200..300).contains(&reply.code) {
        return Ok(reply.body);
    }
    Err(refused(url, reply.code, &reply.body))
}

/// The portal's error answer as the error that ends the CLI as the tool would have.
fn refused(url: &str, status: u16, body: &Value) -> ToolError {
    let code = body.get("exit_code").and_then(Value::as_u64).and_then(|c| u8::try_from(c).ok());
    let message = body.get("message").and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => ToolError::Remote { message: message.to_string(), code },
        _ => {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("no error message");
            ToolError::Portal(format!("{url} answered {status}: {error}"))
        }
    }
}

/// The longest line of a `log -f` stream: one event, a pod's log line (16 KiB at most) escaped.
const MAX_FOLLOW_LINE: usize = 1 << 20;

/// The portal's side of `log -f`: the [`log::Follower`](super::log::Follower) the CLI runs
/// without a portal, each of its events as a JSON line `{"many", "event"}`
/// ([`Event::to_wire`](super::log::Event::to_wire)) as it comes, and an empty line for a poll
/// that found nothing (so that a client that went away is noticed). The follower's ZooKeeper
/// session is closed when the stream is dropped.
pub async fn follow_lines(tool: Tool) -> Result<impl futures::Stream<Item = String>, ToolError> {
    let Tool::Log(a) = tool else { return Err(ToolError::Usage("only log follows".into())) };
    let n = if a.all { None } else { Some(a.lines) };
    let query = super::reach::Query::pods(&a.sel.clusters, &a.sel.seq);
    let (follower, first) = super::log::Follower::start(&a.common, query, n).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let following = Following { follower: Some(follower), queue: first.into(), fresh: true, tick };
    Ok(futures::stream::unfold(following, |mut st| async move {
        let follower = st.follower.as_mut()?;
        if st.queue.is_empty() {
            if std::mem::take(&mut st.fresh) {
                // No tail at all: say so at once rather than after the first poll.
                return Some(("\n".to_string(), st));
            }
            st.tick.tick().await;
            st.queue.extend(follower.poll().await);
            if st.queue.is_empty() {
                return Some(("\n".to_string(), st));
            }
        }
        st.fresh = false;
        let many = follower.many();
        let event = st.queue.pop_front()?;
        Some((format!("{}\n", serde_json::json!({"many": many, "event": event.to_wire()})), st))
    }))
}

/// A follower streamed by a portal.
struct Following {
    follower: Option<super::log::Follower>,
    /// Events found and not sent yet.
    queue: std::collections::VecDeque<super::log::Event>,
    /// Nothing sent yet.
    fresh: bool,
    tick: tokio::time::Interval,
}

impl Drop for Following {
    fn drop(&mut self) {
        if let (Some(follower), Ok(runtime)) = (self.follower.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(follower.close());
        }
    }
}

/// `log -f --portal URL`: the portal follows, this prints each event as `log -f` prints it,
/// until interrupted, until nobody reads stdout, or until the portal ends the stream (an error).
async fn follow(tool: &Tool, url: &str) -> Result<(), ToolError> {
    let common = tool.common().clone();
    let (_, request) = request_of(tool)?;
    let (client, address) = portal_client(&common, url)?;
    let body = serde_json::to_vec(&request).map_err(|e| ToolError::Usage(e.to_string()))?;
    let portal = |e: std::io::Error| ToolError::Portal(format!("{url}: {e}"));
    // The tails of every pod come first: as long as `log` takes.
    let wait = common.pod_timeout * 2 + Duration::from_secs(30);
    let started = crate::portal::stream::request(&client, &address, "POST", "/v1/log", Some(&body), wait);
    let (code, mut stream) = started.await.map_err(portal)?;
    if code != 200 {
        let text = stream.rest(64 << 10).await.map_err(portal)?;
        return Err(refused(url, code, &serde_json::from_slice(&text).unwrap_or(Value::Null)));
    }
    let escape = output::stdout_is_terminal();
    loop {
        let line = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            line = stream.line(MAX_FOLLOW_LINE) => line.map_err(portal)?,
        };
        let Some(line) = line else {
            return Err(ToolError::Portal(format!("{url}: the portal ended the log stream")));
        };
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(&line)
            .map_err(|e| ToolError::Portal(format!("{url}: a log -f line that is not JSON ({e})")))?;
        let Some(event) = super::log::Event::from_wire(&record["event"]) else {
            return Err(ToolError::Portal(format!("{url}: a log -f line that is no event: {line}")));
        };
        let many = record["many"].as_bool().unwrap_or(false);
        // As without a portal: a stdout nobody reads ends it (`Closed`), like any other error.
        super::print_events(&[event], many, common.json, escape)?;
    }
}

/// `ochopod <tool> --portal URL`: the tool runs on the portal; what it says is printed here as
/// the tool prints it.
pub async fn run(tool: Tool, url: &str) -> Result<(), ToolError> {
    if let Tool::Log(a) = &tool {
        if a.follow {
            return follow(&tool, url).await;
        }
    }
    let common = tool.common().clone();
    let (route, request) = request_of(&tool)?;
    let longest = [request.timeout.as_deref(), request.pod_timeout.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|t| parse_duration_arg(t).ok())
        .max()
        .unwrap_or_default();
    let wait = longest.mul_f64(2.5) + Duration::from_secs(30);
    let body = serde_json::to_value(&request).map_err(|e| ToolError::Usage(e.to_string()))?;
    let answer = post(&common, url, &format!("v1/{route}"), &body, wait).await?;
    let reply: ToolReply = serde_json::from_value(answer)
        .map_err(|e| ToolError::Portal(format!("{url}: the answer to /v1/{route} is no tool reply: {e}")))?;
    for w in &reply.warnings {
        output::note_line(&format!("warning: {w}"));
    }
    let printed = if common.json { output::print_json(&reply.report) } else { output::print(&reply.text) };
    match printed {
        Ok(()) | Err(ToolError::Closed) if reply.exit_code == 0 => Ok(()),
        Ok(()) | Err(ToolError::Closed) => Err(ToolError::Remote { message: reply.message, code: reply.exit_code }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        tool: Tool,
    }

    fn parse(args: &[&str]) -> Tool {
        Cli::try_parse_from(std::iter::once("ochopod").chain(args.iter().copied())).unwrap().tool
    }

    /// Every tool survives the trip CLI → request → portal with the same arguments.
    #[test]
    fn a_tool_comes_back_from_its_request_as_it_left() {
        for args in [
            &["ls", "-a", "web", "-i", "3"][..],
            &["grep", "web", "db-*"],
            &["info", "-i", "1,2", "web"],
            &["poll"],
            &["port", "2181", "zookeeper"],
            &["log", "-n", "3", "web"],
            &["log", "-f", "-i", "2", "web"],
            &["on", "web", "--force", "-t", "5s"],
            &["off", "web", "-i", "2"],
            &["kill", "web", "--force"],
            &["reset", "web", "-i", "1"],
            &["signal", "web", r#"{"a": 1}"#, "--force"],
            &["reconfigure", "web", "-t", "3s"],
            &["wait", "web", "-c", "3", "--healthy", "-t", "20s"],
        ] {
            let tool = parse(args);
            let (route, request) = request_of(&tool).unwrap();
            let json = serde_json::to_value(&request).unwrap();
            let back: ToolRequest = serde_json::from_value(json).unwrap();
            let again = tool_of(route, back, tool.common().clone()).unwrap();
            let mut before = format!("{tool:?}");
            let mut after = format!("{again:?}");
            // The portal always reports JSON and decides escaping from the request.
            for s in [&mut before, &mut after] {
                *s = s.replace("json: true", "json: false").replace("escape: Some(false)", "escape: None");
            }
            if let Tool::Signal(_) = tool {
                // The body comes back as `data`, the globs alone as `args`.
                assert!(after.contains(r#"data: Some("{\"a\":1}")"#), "{after}");
                continue;
            }
            assert_eq!(before, after, "{args:?}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let common = parse(&["ls"]).common().clone();
        let e = tool_of("nope", ToolRequest::default(), common.clone()).unwrap_err();
        assert!(e.to_string().contains("no tool \"nope\"; the tools are ls,"), "{e}");
        let e = tool_of("off", ToolRequest::default(), common.clone()).unwrap_err();
        assert!(e.to_string().contains("off needs `clusters`"), "{e}");
        let r = ToolRequest { clusters: vec!["web".into()], timeout: Some("soon".into()), ..Default::default() };
        let e = tool_of("on", r, common.clone()).unwrap_err();
        assert!(e.to_string().starts_with("timeout \"soon\": "), "{e}");
        assert!(serde_json::from_str::<ToolRequest>(r#"{"forse": true}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field `forse`"));
    }
}
