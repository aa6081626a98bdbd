//! The log family: `log` (each pod's last lines) and `log -f` (a [`Follower`] that turns each
//! poll into [`Event`]s, which the CLI prints and a portal could stream).

use std::borrow::Cow;
use std::time::Duration;

use ochopod_api::PodClient;
use serde_json::{json, Value};

use super::discovery::PodEntry;
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
    /// The pod stopped answering `/log`: reported once, until it is back.
    Failing { pod: String, failure: Failure },
    /// The pod answers again; its last lines follow.
    Back { pod: String },
}

/// `log -f`: the pods' tails first, then on every [`poll`](Follower::poll) the lines each pod
/// added since.
pub struct Follower {
    client: PodClient,
    pod_timeout: Duration,
    n: Option<usize>,
    /// The pods followed and the lines last seen from each (`None` while it does not answer).
    pods: Vec<(PodEntry, Option<Vec<String>>)>,
}

impl Follower {
    /// Finds the pods and reads their tails (the first events).
    pub async fn start(
        common: &Common,
        query: Query<'_>,
        n: Option<usize>,
    ) -> Result<(Follower, Vec<Event>), ToolError> {
        let reached = reach::reach(common, query).await?;
        for w in &reached.targeted.found.warnings {
            output::note_line(&format!("warning: {w}"));
        }
        let mut follower = Follower {
            client: reached.client,
            pod_timeout: common.pod_timeout,
            n,
            pods: reached.targeted.found.pods.into_iter().map(|p| (p, None)).collect(),
        };
        let events = follower.read(true).await;
        Ok((follower, events))
    }

    /// Whether lines need their pod's key in front: more than one pod is followed.
    pub fn many(&self) -> bool {
        self.pods.len() > 1
    }

    /// The lines added since the last poll.
    pub async fn poll(&mut self) -> Vec<Event> {
        self.read(false).await
    }

    async fn read(&mut self, first: bool) -> Vec<Event> {
        let pods: Vec<PodEntry> = self.pods.iter().map(|(p, _)| p.clone()).collect();
        let timeout = self.pod_timeout;
        let client = &self.client;
        let results =
            fan_out(&pods, timeout + Duration::from_secs(1), |address| log_of(client.clone(), address, timeout)).await;
        let mut events = Vec::new();
        for (r, (_, prev)) in results.into_iter().zip(self.pods.iter_mut()) {
            let pod = r.pod.key();
            let line = |l: &String| Event::Line { pod: pod.clone(), line: l.clone() };
            match (&r.result, prev.as_ref()) {
                (Ok(lines), Some(before)) => events.extend(new_lines(before, lines).iter().map(line)),
                (Ok(lines), None) => {
                    if !first {
                        events.push(Event::Back { pod: pod.clone() });
                    }
                    events.extend(tail(lines, self.n).iter().map(line));
                }
                (Err(failure), Some(_)) => events.push(Event::Failing { pod: pod.clone(), failure: failure.clone() }),
                (Err(failure), None) if first => {
                    events.push(Event::Failing { pod: pod.clone(), failure: failure.clone() })
                }
                (Err(_), None) => {}
            }
            // What the pod answered is what the next poll compares with.
            *prev = r.result.ok();
        }
        events
    }
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
