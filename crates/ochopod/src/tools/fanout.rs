//! One request per pod, all in parallel, each bounded by a timeout; why a pod failed, and the
//! report that names the pods that did.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use ochopod_api::client::Reply;
use ochopod_api::ClientError;
use serde_json::{json, Value};

use super::discovery::PodEntry;

/// Why a pod did not do what was asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Its registration publishes no control port.
    NoAddress,
    /// Its registration failed validation (the reason, values escaped): nothing is sent to it.
    Invalid(String),
    Unreachable(String),
    Timeout(Duration),
    /// It answered with an error status.
    Http {
        code: u16,
        error: String,
    },
    /// It answered 200 with something that is not what the route returns.
    BadReply(String),
    /// Its reply was over the size limit of the route, in bytes; reading stopped there.
    TooLarge(usize),
    /// Its registration does not publish this container port.
    Unpublished(u16),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoAddress => f.write_str("registers no control port"),
            Failure::Invalid(why) => write!(f, "invalid registration: {why}"),
            Failure::Unreachable(why) => write!(f, "unreachable ({why})"),
            Failure::Timeout(t) => write!(f, "no reply within {t:?}"),
            Failure::Http { code, error } if error.is_empty() => write!(f, "HTTP {code}"),
            Failure::Http { code, error } => write!(f, "HTTP {code}: {error}"),
            Failure::BadReply(why) => write!(f, "unexpected reply ({why})"),
            Failure::TooLarge(limit) => write!(f, "reply larger than {limit} bytes"),
            Failure::Unpublished(port) => write!(f, "does not publish port {port}"),
        }
    }
}

impl Failure {
    /// A short word for table cells and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NoAddress => "no-address",
            Failure::Invalid(_) => "invalid-registration",
            Failure::Unreachable(_) => "unreachable",
            Failure::Timeout(_) => "timeout",
            Failure::Http { .. } => "http",
            Failure::BadReply(_) => "bad-reply",
            Failure::TooLarge(_) => "too-large",
            Failure::Unpublished(_) => "unpublished",
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            Failure::Http { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { source, .. } => Failure::Unreachable(root_cause(&source)),
            ClientError::Timeout { timeout, .. } => Failure::Timeout(timeout),
            ClientError::BadReply { source, .. } => Failure::BadReply(root_cause(&source)),
            ClientError::TooLarge { limit, .. } => Failure::TooLarge(limit),
        }
    }
}

/// reqwest's top-level message is "error sending request for url (…)"; the useful part
/// ("Connection refused") is at the bottom of the chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The error a pod put in its reply: `{"error": "..."}` from our pods, `{}` from the original.
/// Cut and escaped: it is the peer's text, printed to a terminal.
pub fn reply_error(body: &Value) -> String {
    match body.get("error") {
        Some(Value::String(s)) => printable(s, MAX_SHOWN),
        _ if body.is_null() || body.as_object().is_some_and(|o| o.is_empty()) => String::new(),
        _ => printable(&body.to_string(), MAX_SHOWN),
    }
}

/// The most characters of a peer's text shown in a report line.
pub const MAX_SHOWN: usize = 300;

/// `text` with control characters escaped (`\u{1b}`, `\n`) and cut after `max` characters
/// (marked `…`): what a peer or a registration says may be shown, never interpreted by the
/// terminal, and never at unbounded length.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A reply whose code is in `accepted` is a success; anything else is a [`Failure::Http`].
pub fn accept(reply: Reply, accepted: &[u16]) -> Result<Reply, Failure> {
    if accepted.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(Failure::Http { code: reply.code, error: reply_error(&reply.body) })
    }
}

/// What one pod did.
#[derive(Clone, Debug)]
pub struct PodResult<T> {
    pub pod: PodEntry,
    pub result: Result<T, Failure>,
}

/// Calls `call(address)` for every pod at once. `limit` bounds each call even if the call's own
/// timeout does not fire (a pod that accepts the connection and never answers).
pub async fn fan_out<T, F, Fut>(pods: &[PodEntry], limit: Duration, call: F) -> Vec<PodResult<T>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let calls = pods.iter().map(|pod| {
        let fut = pod.address.clone().map(&call);
        async move {
            let result = match fut {
                None => Err(unaddressed(pod)),
                Some(fut) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::Timeout(limit)),
                },
            };
            PodResult { pod: pod.clone(), result }
        }
    });
    futures::future::join_all(calls).await
}

/// Why a pod without an address cannot be asked anything.
pub fn unaddressed(pod: &PodEntry) -> Failure {
    match &pod.invalid {
        Some(why) => Failure::Invalid(why.to_string()),
        None => Failure::NoAddress,
    }
}

/// A pod that did not succeed, for the report and `--json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Failed {
    pub pod: PodEntry,
    pub failure: Failure,
}

impl Failed {
    pub fn line(&self) -> String {
        match &self.pod.address {
            Some(a) => format!("{} ({a}): {}", self.pod.key(), self.failure),
            None => format!("{}: {}", self.pod.key(), self.failure),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "pod": self.pod.key(),
            "cluster": self.pod.cluster,
            "seq": self.pod.seq,
            "address": self.pod.address,
            "error": self.failure.to_string(),
            "kind": self.failure.kind(),
            "code": self.failure.code(),
        })
    }
}

pub fn failures<T>(results: &[PodResult<T>]) -> Vec<Failed> {
    results
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(|f| Failed { pod: r.pod.clone(), failure: f.clone() }))
        .collect()
}

/// Which pods failed and why, and the seqs that matched nothing: what stderr says when a tool
/// did not fully succeed.
pub fn report(targeted: usize, failed: &[Failed], problems: &[String]) -> String {
    let mut out = String::new();
    if !failed.is_empty() {
        out.push_str(&format!("{} of {targeted} pods failed:\n", failed.len()));
        for f in failed {
            out.push_str(&format!("  {}\n", f.line()));
        }
    }
    for p in problems {
        out.push_str(&format!("{p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochopod_core::Registration;

    fn pod(seq: u64, address: Option<&str>) -> PodEntry {
        PodEntry {
            cluster: "test.web".into(),
            seq,
            uuid: format!("u{seq}"),
            address: address.map(str::to_string),
            invalid: None,
            registration: Registration::default(),
        }
    }

    #[test]
    fn replies_outside_the_accepted_codes_fail_with_the_pods_error() {
        let ok = Reply { code: 200, body: json!({}) };
        assert!(accept(ok, &[200]).is_ok());
        let dead = Reply { code: 410, body: json!({}) };
        assert!(accept(dead.clone(), &[200, 410]).is_ok());
        assert_eq!(accept(dead, &[200]).unwrap_err().to_string(), "HTTP 410");
        let soft = Reply { code: 406, body: json!({"error": "can_configure failed"}) };
        assert_eq!(accept(soft, &[200]).unwrap_err().to_string(), "HTTP 406: can_configure failed");
        let odd = Reply { code: 500, body: json!({"trace": 1}) };
        assert_eq!(accept(odd, &[200]).unwrap_err().to_string(), r#"HTTP 500: {"trace":1}"#);
    }

    #[tokio::test]
    async fn every_pod_gets_a_result_and_slow_or_unaddressed_ones_fail() {
        let pods = vec![pod(1, Some("a:1")), pod(2, None), pod(3, Some("slow:1"))];
        let results = fan_out(&pods, Duration::from_millis(50), |address| async move {
            if address.starts_with("slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Ok::<_, Failure>(address)
        })
        .await;
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].result, Ok("a:1".to_string()));
        assert_eq!(results[1].result, Err(Failure::NoAddress));
        assert_eq!(results[2].result, Err(Failure::Timeout(Duration::from_millis(50))));
        let failed = failures(&results);
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].line(), "test.web #2: registers no control port");
        assert_eq!(failed[1].line(), "test.web #3 (slow:1): no reply within 50ms");
        assert_eq!(failed[1].json()["kind"], "timeout");
        assert_eq!(failed[1].json()["pod"], "test.web #3");
    }

    #[tokio::test]
    async fn nothing_is_sent_to_an_invalid_registration() {
        let mut bad = pod(4, None);
        bad.invalid = Some(ochopod_core::InvalidRegistration::Address("ip", "1.2.3.4:9/x?".into()));
        let results = fan_out(&[bad], Duration::from_secs(1), |address| async move {
            panic!("called for {address}");
            #[allow(unreachable_code)]
            Ok::<(), Failure>(())
        })
        .await;
        let failed = failures(&results);
        assert_eq!(failed[0].failure.kind(), "invalid-registration");
        assert_eq!(
            failed[0].line(),
            r#"test.web #4: invalid registration: `ip` "1.2.3.4:9/x?" is neither an IP address nor a DNS name"#
        );
    }

    #[test]
    fn a_peers_text_is_escaped_and_cut() {
        assert_eq!(printable("ok \x1b[31mred\n", 100), "ok \\u{1b}[31mred\\n");
        assert_eq!(printable("abcdef", 3), "abc…");
        let long = json!({"error": "x".repeat(10_000)});
        assert_eq!(reply_error(&long).chars().count(), MAX_SHOWN + 1);
    }

    #[test]
    fn the_report_names_each_failed_pod_and_each_problem() {
        let failed = [Failed { pod: pod(2, Some("h:1")), failure: Failure::Unreachable("Connection refused".into()) }];
        assert_eq!(
            report(3, &failed, &["no pod has seq 9".into()]),
            "1 of 3 pods failed:\n  test.web #2 (h:1): unreachable (Connection refused)\nno pod has seq 9\n"
        );
        assert_eq!(report(3, &[], &[]), "");
    }
}
