//! `/metrics`: the Prometheus text exposition (format 0.0.4), written by hand because a
//! dozen gauges and counters read from status snapshots need no metrics library.

use std::fmt::Write as _;
use std::time::Duration;

use ochopod_core::events::RoundFailureKind;

use crate::info::Snapshot;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every state the executor reports, so a dashboard sees a 0 series rather than none.
const PROCESS_STATES: [&str; 7] = ["stopped", "running", "terminating", "dead", "backoff", "crashloop", "sidecar"];
const SESSION_STATES: [&str; 5] = ["connecting", "connected", "suspended", "expired", "closed"];

/// The exposition for one scrape. Series of an actor that did not answer are left out (a gap
/// in the graph, not a false zero) and `ochopod_up{actor=...}` says which.
pub fn render(now: &Snapshot, uptime: Duration, event_subscribers: usize) -> String {
    let mut out = String::with_capacity(2048);
    let w = &mut out;

    family(w, "ochopod_up", "gauge", "Whether the actor answered this scrape (1) or not (0).");
    for (actor, up) in
        [("executor", now.executor.is_some()), ("leader", now.leader.is_some()), ("session", now.session.is_some())]
    {
        sample(w, "ochopod_up", &[("actor", actor)], u64::from(up) as f64);
    }

    if let Some(ex) = &now.executor {
        family(w, "ochopod_process_state", "gauge", "The supervised process state (1 for the current one).");
        one_hot(w, "ochopod_process_state", &PROCESS_STATES, &ex.process);
        counter(w, "ochopod_restarts_total", "Restarts of the process after a failure.", ex.restarts);
        counter(w, "ochopod_sanity_failures_total", "Failed sanity checks.", ex.sanity_failures);
        counter(w, "ochopod_configurations_total", "Configurations applied by this pod.", ex.configurations);
        family(
            w,
            "ochopod_hook_failures_total",
            "counter",
            "Hooks that failed or could not run (reason failed) or were cut by their timeout (reason timed_out).",
        );
        sample(w, "ochopod_hook_failures_total", &[("reason", "failed")], ex.hook_failures as f64);
        sample(w, "ochopod_hook_failures_total", &[("reason", "timed_out")], ex.hook_timeouts as f64);
        if let Some(epoch) = ex.epoch {
            family(w, "ochopod_epoch", "gauge", "The newest configuration epoch this pod accepted.");
            sample(w, "ochopod_epoch", &[], epoch as f64);
        }
    }

    if let Some(l) = &now.leader {
        family(w, "ochopod_leader", "gauge", "1 while this pod leads its cluster.");
        sample(w, "ochopod_leader", &[], u64::from(l.leader) as f64);
        family(w, "ochopod_rounds_total", "counter", "Configuration rounds run by this pod as leader.");
        sample(w, "ochopod_rounds_total", &[("outcome", "ok")], l.rounds_ok as f64);
        sample(w, "ochopod_rounds_total", &[("outcome", "failed")], l.rounds_failed as f64);
        family(
            w,
            "ochopod_round_failures_total",
            "counter",
            "Failed configuration rounds by reason (timeout, refused, hook_failed, unreachable, too_large, ...).",
        );
        for kind in RoundFailureKind::ALL {
            let n = l.failures.get(&kind).copied().unwrap_or(0);
            sample(w, "ochopod_round_failures_total", &[("reason", kind.name())], n as f64);
        }
        family(
            w,
            "ochopod_round_refusals_total",
            "counter",
            "Rounds failed by a pod's refusal (reasons refused and hook_failed), by the HTTP code it answered.",
        );
        for (code, n) in &l.refusals {
            sample(w, "ochopod_round_refusals_total", &[("code", &code.to_string())], *n as f64);
        }
        family(w, "ochopod_round_duration_seconds", "summary", "Duration of the finished configuration rounds.");
        sample(w, "ochopod_round_duration_seconds_sum", &[], l.rounds_ms_total as f64 / 1000.0);
        sample(w, "ochopod_round_duration_seconds_count", &[], (l.rounds_ok + l.rounds_failed) as f64);
        if let Some(ms) = l.last_round_ms {
            family(w, "ochopod_last_round_duration_seconds", "gauge", "Duration of the last configuration round.");
            sample(w, "ochopod_last_round_duration_seconds", &[], ms as f64 / 1000.0);
        }
    }

    if let Some(s) = &now.session {
        family(w, "ochopod_zk_session_state", "gauge", "The ZooKeeper session state (1 for the current one).");
        one_hot(w, "ochopod_zk_session_state", &SESSION_STATES, &s.state);
        family(w, "ochopod_zk_session_generation", "gauge", "Sessions opened since the pod started.");
        sample(w, "ochopod_zk_session_generation", &[], s.generation as f64);
    }

    family(w, "ochopod_uptime_seconds", "gauge", "Seconds since the pod started.");
    sample(w, "ochopod_uptime_seconds", &[], uptime.as_secs_f64());
    family(w, "ochopod_event_subscribers", "gauge", "Open /events streams.");
    sample(w, "ochopod_event_subscribers", &[], event_subscribers as f64);
    out
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(w: &mut String, name: &str, help: &str, value: u64) {
    family(w, name, "counter", help);
    sample(w, name, &[], value as f64);
}

/// One series per known state plus the current one if it is new to us.
fn one_hot(w: &mut String, name: &str, known: &[&str], current: &str) {
    for state in known {
        sample(w, name, &[("state", state)], u64::from(*state == current) as f64);
    }
    if !known.contains(&current) {
        sample(w, name, &[("state", current)], 1.0);
    }
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    w.push_str(name);
    if !labels.is_empty() {
        w.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                w.push(',');
            }
            let _ = write!(w, "{k}=\"{}\"", escape_label(v));
        }
        w.push('}');
    }
    let _ = writeln!(w, " {value}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochopod_executor::ExecutorStatus;
    use ochopod_leader::LeaderStatus;
    use ochopod_session::SessionStatus;

    fn full() -> Snapshot {
        Snapshot {
            executor: Some(ExecutorStatus {
                process: "running".into(),
                restarts: 3,
                sanity_failures: 1,
                configurations: 4,
                hook_failures: 2,
                hook_timeouts: 1,
                epoch: Some(9),
                ..Default::default()
            }),
            leader: Some(LeaderStatus {
                state: "leader".into(),
                leader: true,
                rounds_ok: 5,
                rounds_failed: 1,
                last_round_ms: Some(120),
                rounds_ms_total: 1500,
                failures: [(RoundFailureKind::Refused, 1)].into(),
                refusals: [(406, 1)].into(),
                ..Default::default()
            }),
            session: Some(SessionStatus { state: "connected".into(), generation: 2, ..Default::default() }),
        }
    }

    #[test]
    fn every_series_is_rendered_with_its_value() {
        let text = render(&full(), Duration::from_millis(2500), 1);
        for line in [
            "ochopod_up{actor=\"executor\"} 1",
            "ochopod_process_state{state=\"running\"} 1",
            "ochopod_process_state{state=\"stopped\"} 0",
            "ochopod_restarts_total 3",
            "ochopod_sanity_failures_total 1",
            "ochopod_configurations_total 4",
            "ochopod_hook_failures_total{reason=\"failed\"} 2",
            "ochopod_hook_failures_total{reason=\"timed_out\"} 1",
            "ochopod_epoch 9",
            "ochopod_leader 1",
            "ochopod_rounds_total{outcome=\"ok\"} 5",
            "ochopod_rounds_total{outcome=\"failed\"} 1",
            "ochopod_round_failures_total{reason=\"refused\"} 1",
            "ochopod_round_failures_total{reason=\"timeout\"} 0",
            "ochopod_round_failures_total{reason=\"hook_failed\"} 0",
            "ochopod_round_failures_total{reason=\"unreachable\"} 0",
            "ochopod_round_failures_total{reason=\"too_large\"} 0",
            "ochopod_round_refusals_total{code=\"406\"} 1",
            "ochopod_round_duration_seconds_sum 1.5",
            "ochopod_round_duration_seconds_count 6",
            "ochopod_last_round_duration_seconds 0.12",
            "ochopod_zk_session_state{state=\"connected\"} 1",
            "ochopod_zk_session_state{state=\"suspended\"} 0",
            "ochopod_zk_session_generation 2",
            "ochopod_uptime_seconds 2.5",
            "ochopod_event_subscribers 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_exposition_is_well_formed() {
        let text = render(&full(), Duration::from_secs(1), 0);
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_string()), "family {name} declared twice");
            } else if !line.starts_with("# HELP ") {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let name = series.split('{').next().unwrap();
                assert!(
                    typed
                        .iter()
                        .any(|t| name == t || name.strip_prefix(t.as_str()).is_some_and(|s| s.starts_with('_'))),
                    "{name} has no TYPE line before it"
                );
            }
        }
    }

    #[test]
    fn silent_actors_leave_gaps_not_zeros_and_odd_states_are_escaped() {
        let text = render(&Snapshot::default(), Duration::ZERO, 0);
        assert!(text.contains("ochopod_up{actor=\"leader\"} 0"));
        assert!(!text.contains("ochopod_leader "));
        assert!(!text.contains("ochopod_process_state"));

        let odd = Snapshot {
            executor: Some(ExecutorStatus { process: "we\"ird\\".into(), ..Default::default() }),
            ..Default::default()
        };
        let text = render(&odd, Duration::ZERO, 0);
        assert!(text.contains("ochopod_process_state{state=\"we\\\"ird\\\\\"} 1"), "{text}");
    }
}
