//! The log family: `log` (each pod's last lines) and `log -f` (a [`Follower`] that turns each
//! poll into [`Event`]s, which the CLI prints and a portal could stream; pods that join while it
//! runs are followed too).

use std::borrow::Cow;
use std::time::Duration;

use ochopod_api::PodClient;
use serde_json::{json, Value};

use super::discovery::{select_seqs, PodEntry, Zk};
use super::error::ToolError;
use super::fanout::{accept, fan_out, Failure};
use super::output;
use super::reach::{self, Outcome, Query};
use super::read::header;
use super::views::{self, pod_json};
use super::{Common, Report};

/// Every selected pod's log lines (what the pod keeps; [`tail`] cuts them).
pub async fn fetch(common: &Common, query: Query<'_>) -> Result<Outcome<Vec<String>>, ToolError> {
    let timeout = common.pod_timeout;
    reach::ask(common, query, timeout + Duration::from_secs(1), |client, address| log_of(client, address, timeout))
        .await
}

async fn log_of(client: PodClient, address: String, timeout: Duration) -> Result<Vec<String>, Failure> {
    let reply = client.call(&address, "log", None, timeout).await?;
    parse_log(&accept(reply, &[200])?.body)
}

/// `log`: the last `n` lines of each pod (all of them with `None`).
pub struct Logs {
    pub outcome: Outcome<Vec<String>>,
    pub n: Option<usize>,
    /// Show the lines escaped (for a terminal): a pod's log is the pod's word.
    pub escape: bool,
}

impl Report for Logs {
    fn document(&self) -> Value {
        let entries = self
            .outcome
            .results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                let lines = r.result.as_ref().map_or(Value::Null, |l| json!(tail(l, self.n)));
                m.insert("lines".into(), lines);
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        self.outcome.document("pods", entries)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.outcome.results {
            out.push_str(&header(&r.pod));
            out.push('\n');
            match &r.result {
                Ok(lines) => {
                    for l in tail(lines, self.n) {
                        out.push_str(&shown(l, self.escape));
                        out.push('\n');
                    }
                }
                Err(f) => out.push_str(&format!("failed: {f}\n")),
            }
        }
        out
    }

    fn warnings(&self) -> &[String] {
        &self.outcome.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.outcome.verdict()
    }
}

/// What following pods' logs sees, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A line a pod logged (`pod` is its key, `test.web #3`).
    Line { pod: String, line: String },
    /// A pod registered after following started: its last lines follow.
    Joined { pod: String },
    /// A pod's registration is gone (it stopped, or its session expired).
    Left { pod: String },
    /// The pod stopped answering `/log`: reported once, until it is back.
    Failing { pod: String, failure: Failure },
    /// The pod answers again; its last lines follow.
    Back { pod: String },
    /// Something worth knowing that changes nothing: a node skipped in ZooKeeper, or ZooKeeper
    /// not answering (the pods already known are still followed).
    Warning(String),
}

impl Event {
    /// As a portal streams it to `log -f --portal` (one JSON object a line); [`Event::from_wire`]
    /// reads it back, the same event, so the CLI prints what it prints without a portal.
    pub fn to_wire(&self) -> Value {
        match self {
            Event::Line { pod, line } => json!({"pod": pod, "line": line}),
            Event::Joined { pod } => json!({"pod": pod, "joined": true}),
            Event::Left { pod } => json!({"pod": pod, "left": true}),
            Event::Failing { pod, failure } => json!({"pod": pod, "failing": failure_to_wire(failure)}),
            Event::Back { pod } => json!({"pod": pod, "back": true}),
            Event::Warning(w) => json!({"warning": w}),
        }
    }

    pub fn from_wire(v: &Value) -> Option<Event> {
        if let Some(w) = v["warning"].as_str() {
            return Some(Event::Warning(w.to_string()));
        }
        let pod = v["pod"].as_str()?.to_string();
        Some(if let Some(line) = v["line"].as_str() {
            Event::Line { pod, line: line.to_string() }
        } else if v["joined"] == true {
            Event::Joined { pod }
        } else if v["left"] == true {
            Event::Left { pod }
        } else if v["back"] == true {
            Event::Back { pod }
        } else {
            Event::Failing { pod, failure: failure_from_wire(&v["failing"])? }
        })
    }
}

fn failure_to_wire(f: &Failure) -> Value {
    let kind = f.kind();
    match f {
        Failure::NoAddress => json!({"kind": kind}),
        Failure::Invalid(why) | Failure::Unreachable(why) | Failure::BadReply(why) => json!({"kind": kind, "why": why}),
        Failure::Timeout(t) => json!({"kind": kind, "ms": t.as_millis() as u64}),
        Failure::Http { code, error } => json!({"kind": kind, "code": code, "error": error}),
        Failure::TooLarge(limit) => json!({"kind": kind, "limit": limit}),
        Failure::Unpublished(port) => json!({"kind": kind, "port": port}),
    }
}

fn failure_from_wire(v: &Value) -> Option<Failure> {
    let why = || v["why"].as_str().map(String::from);
    Some(match v["kind"].as_str()? {
        "no-address" => Failure::NoAddress,
        "invalid-registration" => Failure::Invalid(why()?),
        "unreachable" => Failure::Unreachable(why()?),
        "bad-reply" => Failure::BadReply(why()?),
        "timeout" => Failure::Timeout(Duration::from_millis(v["ms"].as_u64()?)),
        "http" => {
            Failure::Http { code: u16::try_from(v["code"].as_u64()?).ok()?, error: v["error"].as_str()?.to_string() }
        }
        "too-large" => Failure::TooLarge(usize::try_from(v["limit"].as_u64()?).ok()?),
        "unpublished" => Failure::Unpublished(u16::try_from(v["port"].as_u64()?).ok()?),
        _ => return None,
    })
}

/// How long one look for joined and departed pods may take before this poll goes on without it.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// `log -f`: the pods' tails first, then on every [`poll`](Follower::poll) the lines each pod
/// added since. Its ZooKeeper session stays open: each poll also looks the pods up again, so
/// that pods that join are followed (from their last lines) and pods that leave are dropped.
pub struct Follower {
    client: PodClient,
    zk: Zk,
    globs: Vec<String>,
    seq: Vec<u64>,
    pod_timeout: Duration,
    n: Option<usize>,
    pods: Vec<Followed>,
    /// Set once more than one pod was followed: lines keep their pod's key in front from then on,
    /// so the output does not change shape when a second pod joins or leaves.
    many: bool,
    /// The last lookup failed (said once, until it works again).
    lookup_failing: bool,
}

/// A pod followed, and the lines last seen from it (`None` while it does not answer).
struct Followed {
    pod: PodEntry,
    seen: Option<Vec<String>>,
    /// Not read yet: its first answer shows its last lines.
    fresh: bool,
}

/// A pod is the same pod as long as its cluster and uuid are (its address may move).
fn same(a: &PodEntry, b: &PodEntry) -> bool {
    a.cluster == b.cluster && a.uuid == b.uuid
}

impl Follower {
    /// Finds the pods and reads their tails (the first events).
    pub async fn start(
        common: &Common,
        query: Query<'_>,
        n: Option<usize>,
    ) -> Result<(Follower, Vec<Event>), ToolError> {
        let client = reach::pod_client(common)?;
        let zk = Zk::connect(reach::zk_target(common)?).await.map_err(ToolError::ZooKeeper)?;
        let targeted = match zk.find(query.globs).await.map_err(ToolError::ZooKeeper) {
            Ok(found) => reach::select(found, query),
            Err(e) => Err(e),
        };
        let targeted = match targeted {
            Ok(t) => t,
            Err(e) => {
                zk.close().await;
                return Err(e);
            }
        };
        let pods: Vec<Followed> =
            targeted.found.pods.into_iter().map(|pod| Followed { pod, seen: None, fresh: true }).collect();
        let mut follower = Follower {
            client,
            zk,
            globs: query.globs.to_vec(),
            seq: query.seq.to_vec(),
            pod_timeout: common.pod_timeout,
            n,
            many: pods.len() > 1,
            pods,
            lookup_failing: false,
        };
        let mut events: Vec<Event> = targeted.found.warnings.into_iter().map(Event::Warning).collect();
        events.extend(follower.read().await);
        Ok((follower, events))
    }

    /// Whether lines need their pod's key in front: more than one pod is, or was, followed.
    pub fn many(&self) -> bool {
        self.many
    }

    /// The pods that joined or left, and the lines added since the last poll.
    pub async fn poll(&mut self) -> Vec<Event> {
        let mut events = self.lookup().await;
        events.extend(self.read().await);
        events
    }

    /// Ends the ZooKeeper session now.
    pub async fn close(self) {
        self.zk.close().await;
    }

    async fn lookup(&mut self) -> Vec<Event> {
        let found = match tokio::time::timeout(LOOKUP_LIMIT, self.zk.find(&self.globs)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return self.lookup_failed(e),
            Err(_) => return self.lookup_failed(format!("no answer from ZooKeeper within {LOOKUP_LIMIT:?}")),
        };
        self.lookup_failing = false;
        let (now, _) = select_seqs(found.pods, &self.seq);
        let (pods, events) = regroup(std::mem::take(&mut self.pods), now);
        self.pods = pods;
        self.many |= self.pods.len() > 1;
        events
    }

    fn lookup_failed(&mut self, error: String) -> Vec<Event> {
        if std::mem::replace(&mut self.lookup_failing, true) {
            return Vec::new();
        }
        vec![Event::Warning(format!("cannot look the pods up ({error}); following the pods already known"))]
    }

    async fn read(&mut self) -> Vec<Event> {
        let pods: Vec<PodEntry> = self.pods.iter().map(|f| f.pod.clone()).collect();
        let timeout = self.pod_timeout;
        let client = &self.client;
        let results =
            fan_out(&pods, timeout + Duration::from_secs(1), |address| log_of(client.clone(), address, timeout)).await;
        let mut events = Vec::new();
        for (r, followed) in results.into_iter().zip(self.pods.iter_mut()) {
            let pod = r.pod.key();
            let line = |l: &String| Event::Line { pod: pod.clone(), line: l.clone() };
            match (&r.result, followed.seen.as_ref()) {
                (Ok(lines), Some(before)) => events.extend(new_lines(before, lines).iter().map(line)),
                (Ok(lines), None) => {
                    if !followed.fresh {
                        events.push(Event::Back { pod: pod.clone() });
                    }
                    events.extend(tail(lines, self.n).iter().map(line));
                }
                (Err(failure), Some(_)) => events.push(Event::Failing { pod: pod.clone(), failure: failure.clone() }),
                (Err(failure), None) if followed.fresh => {
                    events.push(Event::Failing { pod: pod.clone(), failure: failure.clone() })
                }
                (Err(_), None) => {}
            }
            // What the pod answered is what the next poll compares with.
            followed.seen = r.result.ok();
            followed.fresh = false;
        }
        events
    }
}

/// The pods to follow after a lookup found `now`: the ones known keep what was seen of them, new
/// ones join (fresh), missing ones leave.
fn regroup(mut before: Vec<Followed>, now: Vec<PodEntry>) -> (Vec<Followed>, Vec<Event>) {
    let mut events: Vec<Event> = before
        .iter()
        .filter(|f| !now.iter().any(|p| same(p, &f.pod)))
        .map(|f| Event::Left { pod: f.pod.key() })
        .collect();
    let mut pods = Vec::with_capacity(now.len());
    for pod in now {
        match before.iter().position(|f| same(&f.pod, &pod)) {
            Some(i) => {
                let mut kept = before.swap_remove(i);
                kept.pod = pod;
                pods.push(kept);
            }
            None => {
                events.push(Event::Joined { pod: pod.key() });
                pods.push(Followed { pod, seen: None, fresh: true });
            }
        }
    }
    (pods, events)
}

/// The lines of `next` that were not in `prev`: the longest tail of `prev` that starts `next`
/// is what both saw, so following works while the pod's ring buffer drops its oldest lines.
pub fn new_lines<'a>(prev: &[String], next: &'a [String]) -> &'a [String] {
    let max = prev.len().min(next.len());
    for k in (1..=max).rev() {
        if prev[prev.len() - k..] == next[..k] {
            return &next[k..];
        }
    }
    next
}

/// A pod's line as printed: escaped for a terminal, as the pod has it for a file or a pipe.
pub fn shown(line: &str, escape: bool) -> Cow<'_, str> {
    if escape {
        output::escaped(line)
    } else {
        Cow::Borrowed(line)
    }
}

/// The last `n` lines (all with `None`).
pub fn tail(lines: &[String], n: Option<usize>) -> &[String] {
    match n {
        Some(n) => &lines[lines.len().saturating_sub(n)..],
        None => lines,
    }
}

/// `/log` replies are JSON arrays of lines, each ending with `\n` (the original's file lines).
pub fn parse_log(body: &Value) -> Result<Vec<String>, Failure> {
    match body {
        Value::Array(items) => Ok(items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.trim_end_matches(['\n', '\r']).to_string(),
                other => other.to_string(),
            })
            .collect()),
        other => Err(Failure::BadReply(format!("expected a JSON array of lines, got {}", short(other)))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn following_prints_only_lines_not_seen_before() {
        let a = lines(&["1", "2", "3"]);
        assert_eq!(new_lines(&a, &lines(&["1", "2", "3", "4", "5"])), lines(&["4", "5"]));
        // The ring dropped its oldest lines meanwhile.
        assert_eq!(new_lines(&a, &lines(&["3", "4"])), lines(&["4"]));
        assert!(new_lines(&a, &a).is_empty());
        assert_eq!(new_lines(&[], &a), a);
        // Nothing in common (everything rolled over): all of it is new.
        assert_eq!(new_lines(&a, &lines(&["7", "8"])), lines(&["7", "8"]));
    }

    fn pod(seq: u64, uuid: &str) -> PodEntry {
        let registration = ochopod_core::Registration { seq, ..Default::default() };
        PodEntry::from_node("t.web", &format!("{uuid}.{seq:010}"), registration)
    }

    #[test]
    fn a_lookup_keeps_what_was_seen_adds_the_pods_that_joined_and_drops_those_that_left() {
        let before = vec![
            Followed { pod: pod(1, "a"), seen: Some(lines(&["x"])), fresh: false },
            Followed { pod: pod(2, "b"), seen: Some(lines(&["y"])), fresh: false },
        ];
        let (pods, events) = regroup(before, vec![pod(1, "a"), pod(3, "c")]);
        assert_eq!(events, [Event::Left { pod: "t.web #2".into() }, Event::Joined { pod: "t.web #3".into() }]);
        let state: Vec<(String, Option<Vec<String>>, bool)> =
            pods.into_iter().map(|f| (f.pod.key(), f.seen, f.fresh)).collect();
        assert_eq!(state, [("t.web #1".into(), Some(lines(&["x"])), false), ("t.web #3".into(), None, true)]);
    }

    #[test]
    fn events_come_back_from_the_wire_as_they_left() {
        let pod = || "t.web #1".to_string();
        for e in [
            Event::Line { pod: pod(), line: "a \"quoted\" line".into() },
            Event::Joined { pod: pod() },
            Event::Left { pod: pod() },
            Event::Back { pod: pod() },
            Event::Warning("ZooKeeper slow".into()),
            Event::Failing { pod: pod(), failure: Failure::NoAddress },
            Event::Failing { pod: pod(), failure: Failure::Invalid("bad ip".into()) },
            Event::Failing { pod: pod(), failure: Failure::Unreachable("Connection refused".into()) },
            Event::Failing { pod: pod(), failure: Failure::BadReply("not JSON".into()) },
            Event::Failing { pod: pod(), failure: Failure::Timeout(Duration::from_millis(5500)) },
            Event::Failing { pod: pod(), failure: Failure::Http { code: 503, error: "busy".into() } },
            Event::Failing { pod: pod(), failure: Failure::TooLarge(1 << 25) },
            Event::Failing { pod: pod(), failure: Failure::Unpublished(8080) },
        ] {
            let wire = e.to_wire().to_string();
            let back = Event::from_wire(&serde_json::from_str(&wire).unwrap());
            assert_eq!(back.as_ref(), Some(&e), "{wire}");
        }
        assert_eq!(Event::from_wire(&json!({"pod": "x", "failing": {"kind": "nope"}})), None);
    }

    #[test]
    fn log_replies_are_parsed_and_tailed() {
        let body = json!(["a\n", "b\n", "c\n"]);
        let all = parse_log(&body).unwrap();
        assert_eq!(all, lines(&["a", "b", "c"]));
        assert_eq!(tail(&all, Some(2)), lines(&["b", "c"]));
        assert_eq!(tail(&all, Some(16)), all);
        assert_eq!(tail(&all, None), all);
        assert!(parse_log(&json!({"error": "x"})).unwrap_err().to_string().contains("array of lines"));
    }
}
