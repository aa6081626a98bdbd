//! The leader's decisions, as a plain state machine: fed with what the watches saw (local pods,
//! dependency snapshots), the stored hash, the clock, `/reconfigure` requests and round results,
//! it says what to do next (arm the damper, start a round, republish the snapshot, nothing) and
//! what `/info` shows as `state` and `status`. The actor only carries these decisions out.
//!
//! The rules, as in the original `Reactive` model:
//! - a change is the canonical hash of (local pods, dependency snapshots) differing from the stored
//!   `hash` node; the first one arms the damper and later changes do *not* restart the countdown;
//! - back to the stored hash within the damper (a pod left and came back) cancels the round and
//!   republishes `snapshot`;
//! - a failed round is retried even if the hash went back (pods that accepted `on` may hold a
//!   configuration that differs from the stored one: there is no rollback), after the damper or
//!   a jittered backoff that grows with each failure in a row (capped), whichever is longer: a
//!   pod that keeps refusing must not make the leader spin; the reason shows in `status`;
//! - no round while fewer than `min_size` live pods are registered (`status` says how many are
//!   awaited), so a system that bootstraps from a static member list forms once, complete.
//!
//! - with a damper of zero, a change that arrived while a round ran does not start the next
//!   round the moment it ends: the leader waits until the cluster has been quiet for half as long
//!   as that round took (at most [`GATHER_QUIET_MAX`]), and at most four times as long as it took
//!   (at most [`GATHER_MAX`]). Pods that register back to back are then configured in a few
//!   rounds rather than one round per handful of them, each over every pod registered so far; a
//!   change into a cluster at rest still starts a round at once.
//!
//! Unlike the original, pods that answered 410 (dead) are remembered and left out of the hash and
//! of later rounds while their registration stays, so a dead pod does not cause a round every
//! damper; and no round runs while a (non-glob) dependency has no snapshot yet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ochopod_core::backoff::Backoff;
use ochopod_core::hash::state_hash;
use ochopod_core::view::Pods;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// First retry of a failed round (at least the damper), growing to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// With a damper of zero, the longest quiet awaited after a round during which the cluster
/// changed, and the longest wait for it (see the module's rules).
pub const GATHER_QUIET_MAX: Duration = Duration::from_millis(100);
pub const GATHER_MAX: Duration = Duration::from_secs(2);

/// The wait after a round during which the cluster changed (damper zero only): until nothing
/// changed for `quiet`, and no later than `until`. Measured from the round it follows, so the
/// wait stays small next to the work a round costs: cheap rounds of a few pods follow one
/// another closely, rounds over hundreds of pods are not repeated for every few that join.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Gather {
    quiet: Duration,
    until: Instant,
}

impl Gather {
    fn after(round: Duration, now: Instant) -> Self {
        let quiet = (round / 2).min(GATHER_QUIET_MAX);
        Gather { quiet, until: now + (round * 4).clamp(quiet, GATHER_MAX) }
    }

    /// When the next round may start, the last change being at `last_change`.
    fn deadline(&self, last_change: Option<Instant>, now: Instant) -> Instant {
        last_change.map_or(now, |t| t + self.quiet).max(now).min(self.until)
    }
}

/// What the actor must do after feeding the planner.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing changes (a damper already armed stays armed).
    Nothing,
    /// (Re)arm the damper timer to call [`Planner::damper_elapsed`] at this instant.
    Arm(Instant),
    /// No round is needed: drop any damper timer and, if `publish` is set, rewrite `snapshot`
    /// with these pods (the hash is unchanged).
    Settle { publish: Option<Pods> },
    /// Drop any damper timer and run a round now.
    Round(RoundPlan),
}

/// The state a round configures.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundPlan {
    pub pods: Pods,
    pub dependencies: BTreeMap<String, Pods>,
    /// Why the round runs, for logs and events.
    pub reason: String,
}

/// How a round ended, as the planner needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum RoundResult {
    /// `snapshot` and `hash` were written: `configured` are the live pods, `dropped` answered 410.
    Done { configured: Pods, dropped: Vec<String>, hash: String },
    /// The round failed (`error` says why): retried after a backoff.
    Failed { error: String },
    /// The round was refused for a stale epoch and our epoch was raised above it: retried now.
    EpochRaised,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pending {
    deadline: Instant,
    /// Set after a failed round: run at the deadline even if the hash went back.
    forced: bool,
}

#[derive(Debug)]
pub struct Planner {
    damper: Duration,
    /// Every `depends_on` entry; `None` until its snapshot was read, and for an exact entry while
    /// the dependency has no snapshot node.
    dependencies: BTreeMap<String, Option<Pods>>,
    local: Option<Pods>,
    stored: Option<String>,
    /// Keys that answered 410: dead pods keep their registration but never come back.
    dead: BTreeSet<String>,
    pending: Option<Pending>,
    reconfigure: bool,
    /// Number of pods of the round in flight.
    configuring: Option<usize>,
    /// What `snapshot` holds as far as we know, to avoid rewriting it for nothing.
    published: Option<Pods>,
    /// What the last round of this leadership configured, to say what changed since.
    configured: Option<(Pods, BTreeMap<String, Pods>)>,
    in_flight: Option<(Pods, BTreeMap<String, Pods>)>,
    probe_status: String,
    /// The last probe's verdict since the last round (`None`: none finished yet).
    probe_passing: Option<bool>,
    min_size: usize,
    /// Failed rounds in a row and the last one's reason.
    failures: u32,
    last_error: Option<String>,
    retry: Backoff,
    rng: StdRng,
    /// When the local pods or a dependency last changed.
    last_change: Option<Instant>,
    /// When the round in flight started.
    round_started: Option<Instant>,
    gather: Option<Gather>,
}

impl Planner {
    pub fn new<S: Into<String>>(damper: Duration, entries: impl IntoIterator<Item = S>) -> Self {
        Planner {
            damper,
            dependencies: entries.into_iter().map(|e| (e.into(), None)).collect(),
            local: None,
            stored: None,
            dead: BTreeSet::new(),
            pending: None,
            reconfigure: false,
            configuring: None,
            published: None,
            configured: None,
            in_flight: None,
            probe_status: String::new(),
            probe_passing: None,
            min_size: 1,
            failures: 0,
            last_error: None,
            retry: Backoff::new(RETRY_INITIAL, RETRY_MAX),
            rng: StdRng::from_os_rng(),
            last_change: None,
            round_started: None,
            gather: None,
        }
    }

    /// No round until `n` live pods are registered.
    pub fn with_min_size(mut self, n: usize) -> Self {
        self.min_size = n.max(1);
        self
    }

    /// Failed rounds in a row, and the last one's reason.
    pub fn failures(&self) -> (u32, Option<&str>) {
        (self.failures, self.last_error.as_deref())
    }

    /// The pods registered under `pods/` (keyed by uuid).
    pub fn local(&mut self, pods: Pods, now: Instant) -> Decision {
        self.dead.retain(|k| pods.contains_key(k));
        if self.local.as_ref() != Some(&pods) {
            self.last_change = Some(now);
        }
        self.local = Some(pods);
        self.evaluate(now)
    }

    /// A dependency's (merged) snapshot, `None` while it does not exist.
    pub fn dependency(&mut self, entry: &str, pods: Option<Pods>, now: Instant) -> Decision {
        match self.dependencies.get_mut(entry) {
            Some(slot) if *slot != pods => {
                *slot = pods;
                self.last_change = Some(now);
            }
            Some(_) => {}
            None => return Decision::Nothing,
        }
        self.evaluate(now)
    }

    /// The content of the `hash` node when leadership started (`""` when never configured).
    pub fn stored_hash(&mut self, hash: String, now: Instant) -> Decision {
        self.stored = Some(hash);
        self.evaluate(now)
    }

    /// What the `snapshot` node holds (read at takeover, or after a publish succeeded).
    pub fn published(&mut self, pods: Pods) {
        self.published = Some(pods);
    }

    pub fn damper_elapsed(&mut self, now: Instant) -> Decision {
        self.keep_gathering(now);
        match self.pending {
            // Timers may fire a hair early on coarse clocks: re-arm rather than lose the round.
            Some(p) if now < p.deadline && self.configuring.is_none() => Decision::Arm(p.deadline),
            _ => self.evaluate(now),
        }
    }

    /// `/reconfigure`: a round now (or right after the one in flight), even with an unchanged hash.
    pub fn reconfigure(&mut self, now: Instant) -> Decision {
        self.reconfigure = true;
        self.evaluate(now)
    }

    pub fn round_finished(&mut self, result: RoundResult, now: Instant) -> Decision {
        self.configuring = None;
        let took = self.round_started.take().map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        match result {
            RoundResult::Done { configured, dropped, hash } => {
                let deps = self.in_flight.take().map(|(_, d)| d).unwrap_or_default();
                self.configured = Some((configured.clone(), deps));
                self.probe_passing = None;
                self.dead.extend(dropped);
                self.stored = Some(hash);
                self.published = Some(configured);
                self.pending = None;
                self.failures = 0;
                self.last_error = None;
                self.retry.reset();
                let changed_meanwhile = self.current_hash().is_some_and(|h| self.stored.as_ref() != Some(&h));
                self.gather = (self.damper.is_zero() && changed_meanwhile).then(|| Gather::after(took, now));
                self.evaluate(now)
            }
            RoundResult::Failed { error } => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(error);
                let deadline = now + self.damper.max(self.retry.next(&mut self.rng));
                self.pending = Some(Pending { deadline, forced: true });
                Decision::Arm(deadline)
            }
            RoundResult::EpochRaised => {
                self.pending = Some(Pending { deadline: now, forced: true });
                self.evaluate(now)
            }
        }
    }

    pub fn set_probe_status(&mut self, status: String) {
        // The probe module marks a failure (non-zero exit, timeout) with a leading `* `.
        self.probe_passing = Some(!status.starts_with("* "));
        self.probe_status = status;
    }

    /// `Some(passing)` once the probe ran since the last round, `None` before.
    pub fn probe_passing(&self) -> Option<bool> {
        self.probe_passing
    }

    /// When the round in flight started.
    pub fn round_started(&self) -> Option<Instant> {
        self.round_started
    }

    pub fn is_configuring(&self) -> bool {
        self.configuring.is_some()
    }

    /// The hash of the current state, once everything it covers was read.
    pub fn current_hash(&self) -> Option<String> {
        let (local, deps) = self.current()?;
        Some(state_hash(&local, &deps))
    }

    /// `/info`'s `state` and `status` on the leader.
    pub fn state(&self, now: Instant) -> (String, String) {
        if let Some(n) = self.configuring {
            return ("leader (configuring)".into(), format!("* configuring {n} pods"));
        }
        if let Some((live, _)) =
            self.current().filter(|_| self.stored.is_some()).filter(|(live, _)| live.len() < self.min_size)
        {
            let status = format!("* waiting for {} pods ({} registered)", self.min_size, live.len());
            return ("leader (configuration pending)".into(), status);
        }
        if let Some(p) = self.pending {
            let left = p.deadline.saturating_duration_since(now).as_secs_f64();
            let status = match (&self.last_error, p.forced) {
                (Some(error), true) => format!(
                    "* configuration failed ({} in a row: {error}), retrying in {left:.1} seconds",
                    self.failures
                ),
                _ => format!("* configuration in {left:.1} seconds"),
            };
            return ("leader (configuration pending)".into(), status);
        }
        let missing: Vec<&str> =
            self.dependencies.iter().filter(|(_, p)| p.is_none()).map(|(e, _)| e.as_str()).collect();
        if !missing.is_empty() {
            return ("leader (configuration pending)".into(), format!("* waiting for {}", missing.join(", ")));
        }
        if self.local.is_none() || self.stored.is_none() {
            return ("leader (configuration pending)".into(), "* reading the cluster state".into());
        }
        ("leader".into(), self.probe_status.clone())
    }

    /// Local pods without the dead ones, and every dependency, once all were read.
    pub fn current(&self) -> Option<(Pods, BTreeMap<String, Pods>)> {
        let local = self.local.as_ref()?;
        let mut deps = BTreeMap::new();
        for (entry, pods) in &self.dependencies {
            deps.insert(entry.clone(), pods.clone()?);
        }
        let live = local.iter().filter(|(k, _)| !self.dead.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Some((live, deps))
    }

    /// While gathering, a change pushes the pending round back until the cluster is quiet again.
    fn keep_gathering(&mut self, now: Instant) {
        if let (Some(p), Some(g)) = (self.pending.as_mut(), self.gather) {
            if !p.forced {
                p.deadline = g.deadline(self.last_change, now);
            }
        }
    }

    fn evaluate(&mut self, now: Instant) -> Decision {
        if self.configuring.is_some() {
            return Decision::Nothing;
        }
        self.keep_gathering(now);
        let Some((local, deps)) = self.current() else { return Decision::Nothing };
        let Some(stored) = self.stored.clone() else { return Decision::Nothing };
        if local.len() < self.min_size {
            // Waiting is not a failure: keep a forced retry (a failed round must still run once
            // the pods are back), drop a plain countdown so that `status` says what is awaited.
            self.pending = self.pending.filter(|p| p.forced);
            return Decision::Nothing;
        }
        if self.reconfigure {
            return self.start(local, deps, "reconfiguration requested".into(), now);
        }
        let changed = state_hash(&local, &deps) != stored;
        match self.pending {
            Some(p) if now >= p.deadline && (changed || p.forced) => {
                let reason = if !changed {
                    "retrying the failed configuration".into()
                } else {
                    self.what_changed(&local, &deps)
                };
                self.start(local, deps, reason, now)
            }
            Some(p) if p.forced || changed => Decision::Nothing,
            Some(_) | None if !changed => {
                self.pending = None;
                self.gather = None;
                let publish = (self.published.as_ref() != Some(&local)).then_some(local);
                Decision::Settle { publish }
            }
            _ => {
                let deadline = match self.gather {
                    Some(g) => g.deadline(self.last_change, now),
                    None => now + self.damper,
                };
                self.pending = Some(Pending { deadline, forced: false });
                Decision::Arm(deadline)
            }
        }
    }

    /// Names what differs from the last configured state, as far as it is known (a new leader
    /// knows only the stored hash).
    fn what_changed(&self, local: &Pods, deps: &BTreeMap<String, Pods>) -> String {
        let Some((configured, configured_deps)) = &self.configured else { return "cluster changed".into() };
        let mut parts = Vec::new();
        if configured.keys().ne(local.keys()) {
            parts.push(format!("pods changed ({} → {})", configured.len(), local.len()));
        } else if configured != local {
            parts.push("a pod's registration changed".to_string());
        }
        for (entry, pods) in deps {
            if configured_deps.get(entry) != Some(pods) {
                parts.push(format!("dependency {entry} changed"));
            }
        }
        if parts.is_empty() {
            "cluster changed".into()
        } else {
            parts.join(", ")
        }
    }

    fn start(&mut self, pods: Pods, dependencies: BTreeMap<String, Pods>, reason: String, now: Instant) -> Decision {
        self.pending = None;
        self.gather = None;
        self.round_started = Some(now);
        self.reconfigure = false;
        self.configuring = Some(pods.len());
        self.in_flight = Some((pods.clone(), dependencies.clone()));
        Decision::Round(RoundPlan { pods, dependencies, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochopod_core::Registration;

    const DAMPER: Duration = Duration::from_secs(10);

    fn pods(keys: &[&str]) -> Pods {
        keys.iter().map(|k| (k.to_string(), Registration { ip: format!("ip-{k}"), ..Default::default() })).collect()
    }

    fn hash_of(local: &Pods) -> String {
        state_hash(local, &BTreeMap::new())
    }

    fn round_plan(d: Decision) -> RoundPlan {
        match d {
            Decision::Round(p) => p,
            other => panic!("expected a round, got {other:?}"),
        }
    }

    #[test]
    fn a_fresh_cluster_is_configured_after_the_damper() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Nothing, "the stored hash is not read yet");
        assert_eq!(p.stored_hash(String::new(), t0), Decision::Arm(t0 + DAMPER));
        assert_eq!(p.state(t0 + Duration::from_secs(4)).0, "leader (configuration pending)");
        assert_eq!(p.state(t0 + Duration::from_secs(4)).1, "* configuration in 6.0 seconds");
        let plan = round_plan(p.damper_elapsed(t0 + DAMPER));
        assert_eq!(plan.pods, pods(&["a"]));
        assert_eq!(p.state(t0 + DAMPER), ("leader (configuring)".into(), "* configuring 1 pods".into()));
        let done = RoundResult::Done { configured: pods(&["a"]), dropped: vec![], hash: hash_of(&pods(&["a"])) };
        assert_eq!(p.round_finished(done, t0 + DAMPER), Decision::Settle { publish: None });
        p.set_probe_status("all good".into());
        assert_eq!(p.state(t0 + DAMPER), ("leader".into(), "all good".into()));
    }

    #[test]
    fn further_changes_do_not_restart_the_countdown() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Arm(t0 + DAMPER));
        assert_eq!(p.local(pods(&["a", "b"]), t0 + Duration::from_secs(5)), Decision::Nothing);
        let plan = round_plan(p.damper_elapsed(t0 + DAMPER));
        assert_eq!(plan.pods, pods(&["a", "b"]));
    }

    #[test]
    fn a_pod_that_leaves_and_comes_back_within_the_damper_causes_no_round() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(hash_of(&pods(&["a", "b"])), t0);
        p.published(pods(&["a", "b"]));
        assert_eq!(p.local(pods(&["a", "b"]), t0), Decision::Settle { publish: None });
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Arm(t0 + DAMPER));
        assert_eq!(p.local(pods(&["a", "b"]), t0 + Duration::from_secs(3)), Decision::Settle { publish: None });
        assert_eq!(p.damper_elapsed(t0 + DAMPER), Decision::Settle { publish: None });
        assert_eq!(p.state(t0 + DAMPER).0, "leader");
    }

    #[test]
    fn a_new_leader_with_the_same_state_republishes_without_a_round() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.local(pods(&["a", "b"]), t0);
        assert_eq!(
            p.stored_hash(hash_of(&pods(&["a", "b"])), t0),
            Decision::Settle { publish: Some(pods(&["a", "b"])) }
        );
        p.published(pods(&["a", "b"]));
        assert_eq!(p.local(pods(&["a", "b"]), t0), Decision::Settle { publish: None });
    }

    #[test]
    fn a_failed_round_is_retried_after_the_damper_even_if_the_hash_went_back() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(hash_of(&pods(&["a"])), t0);
        p.local(pods(&["a", "b"]), t0);
        round_plan(p.damper_elapsed(t0 + DAMPER));
        let t1 = t0 + DAMPER;
        assert_eq!(
            p.round_finished(RoundResult::Failed { error: "pod a: answered 406".into() }, t1),
            Decision::Arm(t1 + DAMPER)
        );
        assert_eq!(p.state(t1).0, "leader (configuration pending)");
        assert_eq!(p.local(pods(&["a"]), t1), Decision::Nothing);
        assert_eq!(p.damper_elapsed(t1 + Duration::from_secs(1)), Decision::Arm(t1 + DAMPER));
        assert_eq!(round_plan(p.damper_elapsed(t1 + DAMPER)).pods, pods(&["a"]));
    }

    #[test]
    fn dead_pods_leave_the_hash_and_later_rounds() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        p.local(pods(&["a", "dead"]), t0);
        round_plan(p.damper_elapsed(t0 + DAMPER));
        let done =
            RoundResult::Done { configured: pods(&["a"]), dropped: vec!["dead".into()], hash: hash_of(&pods(&["a"])) };
        assert_eq!(p.round_finished(done, t0 + DAMPER), Decision::Settle { publish: None });
        assert_eq!(p.local(pods(&["a", "dead", "c"]), t0 + DAMPER), Decision::Arm(t0 + DAMPER * 2));
        assert_eq!(round_plan(p.damper_elapsed(t0 + DAMPER * 2)).pods, pods(&["a", "c"]));
    }

    #[test]
    fn reconfigure_runs_now_or_right_after_the_round_in_flight() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(hash_of(&pods(&["a"])), t0);
        p.local(pods(&["a"]), t0);
        let plan = round_plan(p.reconfigure(t0));
        assert_eq!(plan.reason, "reconfiguration requested");
        assert_eq!(p.reconfigure(t0), Decision::Nothing, "one round at a time");
        let done = RoundResult::Done { configured: pods(&["a"]), dropped: vec![], hash: hash_of(&pods(&["a"])) };
        round_plan(p.round_finished(done.clone(), t0));
        assert_eq!(p.round_finished(done, t0), Decision::Settle { publish: None });
    }

    #[test]
    fn no_round_until_every_exact_dependency_has_a_snapshot() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, ["zookeeper"]);
        p.stored_hash(String::new(), t0);
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Nothing);
        assert_eq!(p.state(t0).1, "* waiting for zookeeper");
        assert_eq!(p.dependency("zookeeper", None, t0), Decision::Nothing);
        assert_eq!(p.dependency("zookeeper", Some(pods(&["z"])), t0), Decision::Arm(t0 + DAMPER));
        let plan = round_plan(p.damper_elapsed(t0 + DAMPER));
        assert_eq!(plan.dependencies["zookeeper"], pods(&["z"]));
        let hash = state_hash(&plan.pods, &plan.dependencies);
        let done = RoundResult::Done { configured: plan.pods.clone(), dropped: vec![], hash };
        p.round_finished(done, t0 + DAMPER);
        assert_eq!(p.dependency("zookeeper", Some(pods(&["z", "y"])), t0 + DAMPER), Decision::Arm(t0 + DAMPER * 2));
        assert_eq!(p.dependency("unknown", Some(pods(&["q"])), t0), Decision::Nothing);
    }

    #[test]
    fn a_zero_damper_starts_at_once() {
        let t0 = Instant::now();
        let mut p = Planner::new(Duration::ZERO, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Arm(t0));
        round_plan(p.damper_elapsed(t0));
    }

    /// A planner without damper whose first round (pod `a`) started at `t0`.
    fn first_round_without_damper(t0: Instant) -> (Planner, RoundPlan) {
        let mut p = Planner::new(Duration::ZERO, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        p.local(pods(&["a"]), t0);
        let plan = round_plan(p.damper_elapsed(t0));
        (p, plan)
    }

    #[test]
    fn a_zero_damper_gathers_the_pods_that_registered_during_a_round_until_they_stop() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (mut p, plan) = first_round_without_damper(t0);
        // Pods register while the round (100 ms) runs and after it, every 10 ms.
        p.local(pods(&["a", "b"]), t0 + ms(50));
        let hash = hash_of(&plan.pods);
        let done = RoundResult::Done { configured: plan.pods, dropped: vec![], hash };
        // Half the round (50 ms) of quiet after the last change, which was at 50 ms: due now,
        // but the timer fires after pods registered again.
        assert_eq!(p.round_finished(done, t0 + ms(100)), Decision::Arm(t0 + ms(100)));
        let mut t = t0 + ms(100);
        let mut keys = vec!["a".to_string(), "b".to_string()];
        for i in 0..5 {
            keys.push(format!("c{i}"));
            t += ms(10);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            assert_eq!(p.local(pods(&refs), t), Decision::Nothing, "gathering");
        }
        // The timer armed before the last changes fires: wait for 50 ms of quiet after them.
        assert_eq!(p.damper_elapsed(t), Decision::Arm(t + ms(50)));
        let plan = round_plan(p.damper_elapsed(t + ms(50)));
        assert_eq!(plan.pods.len(), 7, "one round for all of them");
    }

    #[test]
    fn a_zero_damper_gathers_at_most_four_rounds_long_and_a_change_at_rest_starts_at_once() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (mut p, plan) = first_round_without_damper(t0);
        p.local(pods(&["a", "b"]), t0 + ms(20));
        let done = RoundResult::Done { configured: plan.pods, dropped: vec![], hash: hash_of(&pods(&["a"])) };
        let end = t0 + ms(20);
        assert_eq!(p.round_finished(done, end), Decision::Arm(end + ms(10)));
        // Pods keep registering every 5 ms: the round starts 4 × 20 ms after the last one ended.
        let mut keys = vec!["a".to_string(), "b".to_string()];
        let mut t = end;
        let mut decision = Decision::Nothing;
        while t < end + ms(80) {
            t += ms(5);
            keys.push(format!("k{}", keys.len()));
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            decision = p.local(pods(&refs), t);
            if matches!(decision, Decision::Round(_)) {
                break;
            }
            decision = p.damper_elapsed(t);
            assert_eq!(decision, Decision::Arm((t + ms(10)).min(end + ms(80))), "gathering");
        }
        let plan = round_plan(decision);
        assert_eq!(t, end + ms(80));
        // Done at rest; a pod joins later: no gathering, the round starts at once.
        let hash = hash_of(&plan.pods);
        let settled = plan.pods.clone();
        p.round_finished(RoundResult::Done { configured: plan.pods, dropped: vec![], hash }, t + ms(30));
        let mut joined: Vec<&str> = settled.keys().map(String::as_str).collect();
        joined.push("late");
        assert_eq!(p.local(pods(&joined), t + ms(40)), Decision::Arm(t + ms(40)));
    }

    #[test]
    fn failed_rounds_back_off_with_the_reason_in_status_even_without_damper() {
        let t0 = Instant::now();
        let mut p = Planner::new(Duration::ZERO, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        let mut t = t0;
        let mut delays = Vec::new();
        assert_eq!(p.local(pods(&["a"]), t), Decision::Arm(t));
        let mut decision = p.damper_elapsed(t);
        for _ in 0..12 {
            round_plan(decision.clone());
            decision = p.round_finished(RoundResult::Failed { error: "pod a: answered 406".into() }, t);
            let Decision::Arm(at) = decision else { panic!("a failed round is retried later: {decision:?}") };
            delays.push(at - t);
            assert!(p.state(t).1.starts_with("* configuration failed"), "{}", p.state(t).1);
            assert!(p.state(t).1.contains("answered 406"));
            t = at;
            decision = p.damper_elapsed(t);
        }
        assert!(delays.iter().all(|d| *d >= RETRY_INITIAL && *d <= RETRY_MAX), "{delays:?}");
        // Decorrelated jitter may stay low by chance; what it guarantees is a floor per retry.
        let total: Duration = delays.iter().sum();
        assert!(total >= RETRY_INITIAL * 12, "12 failures in a row take a while, not 12 spins: {delays:?}");
        assert_eq!(p.failures().0, 12);
        let done = RoundResult::Done { configured: pods(&["a"]), dropped: vec![], hash: hash_of(&pods(&["a"])) };
        round_plan(decision);
        p.round_finished(done, t);
        assert_eq!(p.failures(), (0, None));
        assert_eq!(p.state(t).0, "leader");
    }

    #[test]
    fn a_raised_epoch_runs_the_round_again_at_once() {
        let t0 = Instant::now();
        let mut p = Planner::new(DAMPER, Vec::<String>::new());
        p.stored_hash(String::new(), t0);
        p.local(pods(&["a"]), t0);
        round_plan(p.damper_elapsed(t0 + DAMPER));
        assert_eq!(round_plan(p.round_finished(RoundResult::EpochRaised, t0 + DAMPER)).pods, pods(&["a"]));
    }

    #[test]
    fn no_round_until_min_size_pods_are_registered() {
        let t0 = Instant::now();
        let mut p = Planner::new(Duration::ZERO, Vec::<String>::new()).with_min_size(3);
        p.stored_hash(String::new(), t0);
        assert_eq!(p.local(pods(&["a"]), t0), Decision::Nothing);
        assert_eq!(
            p.state(t0),
            ("leader (configuration pending)".into(), "* waiting for 3 pods (1 registered)".into())
        );
        assert_eq!(p.local(pods(&["a", "b"]), t0), Decision::Nothing);
        assert_eq!(p.reconfigure(t0), Decision::Nothing, "not even on request");
        assert_eq!(p.state(t0).1, "* waiting for 3 pods (2 registered)");
        let plan = round_plan(p.local(pods(&["a", "b", "c"]), t0));
        assert_eq!(plan.pods.len(), 3);
    }

    #[test]
    fn the_reason_names_what_changed() {
        let t0 = Instant::now();
        let mut p = Planner::new(Duration::ZERO, ["db"]);
        p.stored_hash(String::new(), t0);
        p.dependency("db", Some(pods(&["d1"])), t0);
        p.local(pods(&["a"]), t0);
        let plan = round_plan(p.damper_elapsed(t0));
        assert_eq!(plan.reason, "cluster changed", "nothing configured yet to compare with");
        let hash = state_hash(&plan.pods, &plan.dependencies);
        p.round_finished(RoundResult::Done { configured: pods(&["a"]), dropped: vec![], hash }, t0);
        p.dependency("db", Some(pods(&["d1", "d2"])), t0);
        assert_eq!(round_plan(p.damper_elapsed(t0)).reason, "dependency db changed");
        let hash = state_hash(&pods(&["a"]), &[("db".to_string(), pods(&["d1", "d2"]))].into());
        p.round_finished(RoundResult::Done { configured: pods(&["a"]), dropped: vec![], hash }, t0);
        p.local(pods(&["a", "b"]), t0);
        assert_eq!(round_plan(p.damper_elapsed(t0)).reason, "pods changed (1 → 2)");
    }
}
