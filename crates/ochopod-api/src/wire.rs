//! JSON shapes and status codes of the control API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `/control/<task>` verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Leader pre-check: runs `can_configure`; 406 aborts the round.
    Check,
    /// Configure (with a payload) or restart the stored command (without one).
    On,
    /// Stop the process gracefully.
    Off,
    /// Every pod accepted `on`: runs the `configured` hook.
    Ok,
    /// Stop the process, run `finalize`, and idle as dead (410 from then on).
    Kill,
    /// Run the `signaled` hook with the request body; its JSON output is the reply.
    Signal,
}

impl Task {
    pub const ALL: [Task; 6] = [Task::Check, Task::On, Task::Off, Task::Ok, Task::Kill, Task::Signal];

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Check => "check",
            Task::On => "on",
            Task::Off => "off",
            Task::Ok => "ok",
            Task::Kill => "kill",
            Task::Signal => "signal",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task {s:?} (expected one of check, on, off, ok, kill, signal)"))
    }
}

/// The status codes of `/control/*`, as the original documents them (plus 409 and 401).
pub mod status {
    pub const OK: u16 = 200;
    /// Unknown task, malformed body.
    pub const BAD_REQUEST: u16 = 400;
    /// Missing or wrong bearer token on a mutating route.
    pub const UNAUTHORIZED: u16 = 401;
    /// Soft failure: `can_configure`, `initialize` or the configuration failed.
    pub const SOFT_FAILURE: u16 = 406;
    /// The command did not complete within the timeout; it stays queued and runs later.
    pub const TIMEOUT: u16 = 408;
    /// A configuration from an epoch older than one already accepted; or `/reconfigure` on a
    /// follower.
    pub const CONFLICT: u16 = 409;
    /// The pod is dead (its process exited 0 or it was killed) and idles.
    pub const DEAD: u16 = 410;
    /// Body over the size limit.
    pub const TOO_LARGE: u16 = 413;
    /// A hook (`configured`, `signaled`) failed.
    pub const HOOK_FAILURE: u16 = 500;
}

/// The values of [`Info::sanity`] and [`Info::probe`].
pub mod health {
    /// The last check (since the process started, or the last probe since the last round)
    /// succeeded.
    pub const PASSING: &str = "passing";
    /// The last one failed.
    pub const FAILING: &str = "failing";
    /// None has finished yet (since the process started; since the last round for the probe).
    pub const PENDING: &str = "pending";
    /// None is declared.
    pub const NONE: &str = "none";
}

/// Every error response: `{"error": "<what is wrong>"}` plus optional details.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(flatten, default)]
    pub details: BTreeMap<String, Value>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        ErrorBody { error: error.into(), details: BTreeMap::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// `/info`: the original's fields first, then ours. Unknown fields from other implementations
/// are kept in `extra`, so the CLI can show original pods too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub application: String,
    /// The `depends_on` entries as declared.
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub ip: String,
    /// The last sanity check's JSON output (`{}` when none).
    #[serde(default)]
    pub metrics: Value,
    #[serde(default)]
    pub node: String,
    /// Control port inside the container (string, original spelling).
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// `stopped`, `running`, `terminating`, `dead`, `backoff`, `crashloop`, or `sidecar`.
    #[serde(default)]
    pub process: String,
    #[serde(default)]
    pub public: String,
    /// `follower`, `leader`, `leader (configuration pending)`, `leader (configuring)`.
    #[serde(default)]
    pub state: String,
    /// The cluster status on the leader (probe output, `* configuring N pods`…), else `""`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// The newest configuration epoch this pod accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The pod's sanity check right now (see [`health`]): `passing`, `failing`, `pending` or
    /// `none`. Absent from pods that do not report it (original pods, older ochopod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanity: Option<String>,
    /// On the leader, its probe right now (see [`health`]): `passing`, `failing`, `pending` or
    /// `none`. Absent on followers and from pods that do not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    #[serde(flatten, default)]
    pub extra: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_and_print_as_the_original_spells_them() {
        for t in Task::ALL {
            assert_eq!(t.as_str().parse::<Task>(), Ok(t));
        }
        assert!("reboot".parse::<Task>().unwrap_err().contains("unknown task"));
    }

    #[test]
    fn an_original_info_reply_parses() {
        let js = r#"{"application":"","dependencies":[],"ip":"127.0.0.1","metrics":{},"node":"local",
            "port":"8080","ports":{"8080":8080},"process":"running","public":"127.0.0.1",
            "state":"follower","task":""}"#;
        let i: Info = serde_json::from_str(js).unwrap();
        assert_eq!(i.process, "running");
        assert_eq!(i.seq, None);
        assert_eq!((i.sanity, i.probe), (None, None));
        assert!(i.extra.is_empty());
    }

    #[test]
    fn health_fields_are_optional_and_round_trip() {
        let i = Info { sanity: Some(health::FAILING.into()), ..Default::default() };
        let js = serde_json::to_value(&i).unwrap();
        assert_eq!(js["sanity"], "failing");
        assert!(js.get("probe").is_none(), "{js}");
        assert_eq!(serde_json::from_value::<Info>(js).unwrap(), i);
    }
}
