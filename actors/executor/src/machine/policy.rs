//! The parts of the settings the machine decides with: which hooks exist, the stop's grace, and
//! the restart policy with its backoff.

use std::time::Duration;

use ochopod_config::{RestartPolicy, Settings};

use super::HookKind;

/// The parts of the settings the machine decides with.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub sidecar: bool,
    pub strict: bool,
    pub start: bool,
    pub soft: bool,
    pub grace: Duration,
    pub restart: RestartPolicy,
    /// `(every, retries)`.
    pub sanity: Option<(Duration, u32)>,
    pub hooks: HookSet,
}

/// Which hooks are declared.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HookSet {
    pub initialize: bool,
    pub can_configure: bool,
    pub configured: bool,
    pub signaled: bool,
    pub tear_down: bool,
    pub finalize: bool,
}

impl HookSet {
    pub(super) fn has(&self, hook: HookKind) -> bool {
        match hook {
            HookKind::Initialize => self.initialize,
            HookKind::CanConfigure => self.can_configure,
            HookKind::Configured => self.configured,
            HookKind::Signaled => self.signaled,
            HookKind::TearDown => self.tear_down,
            HookKind::Finalize => self.finalize,
        }
    }
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Self {
        let h = &s.hooks;
        let hooks = HookSet {
            initialize: h.initialize.is_some(),
            can_configure: h.can_configure.is_some(),
            configured: h.configured.is_some(),
            signaled: h.signaled.is_some(),
            tear_down: h.tear_down.is_some(),
            finalize: h.finalize.is_some(),
        };
        match &s.process {
            Some(p) => Policy {
                sidecar: false,
                strict: p.strict,
                start: p.start,
                soft: p.soft,
                grace: p.grace,
                restart: p.restart.clone(),
                sanity: p.sanity.as_ref().map(|s| (s.every, s.retries)),
                hooks,
            },
            None => Policy {
                sidecar: true,
                strict: false,
                start: false,
                soft: false,
                grace: Duration::ZERO,
                restart: RestartPolicy {
                    when: ochopod_config::RestartWhen::Dependencies,
                    initial_delay: Duration::ZERO,
                    max_delay: Duration::ZERO,
                    crashloop_after: 0,
                    reset_after: Duration::ZERO,
                    give_up_after: 0,
                },
                sanity: None,
                hooks,
            },
        }
    }
}

/// The restart delay: decorrelated jitter, shared with the leader's failed-round retries.
pub use ochopod_core::backoff::Backoff;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::testkit::*;
    use crate::machine::*;

    #[test]
    fn failures_back_off_with_growing_capped_delays_and_report_a_crash_loop() {
        let mut t = T::new(policy());
        let mut gen = t.configure_and_run(10);
        let mut delays = vec![];
        for i in 0..6 {
            let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
            let d = restart_delay(&a).expect("restart armed");
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_secs(2), "{d:?}");
            delays.push(d);
            assert_eq!(t.state(), if i + 1 >= 3 { "crashloop" } else { "backoff" });
            let a = t.input(Input::TimerFired(Timer::Restart(gen)));
            gen = spawn_gen(&a).expect("respawn");
            t.input(Input::Spawned { gen, pid: 20 + i });
            t.later(Duration::from_millis(100));
        }
        assert_eq!(t.m.status(t.now).restarts, 6);
        assert_eq!(t.m.status(t.now).last_exit, Some(1));
        // A long healthy run resets the streak.
        t.later(Duration::from_secs(11));
        assert_eq!(t.state(), "running");
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(restart_delay(&a).unwrap() <= Duration::from_millis(150));
        assert_eq!(t.state(), "backoff");
    }

    #[test]
    fn backoff_grows_on_average_and_stays_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut sums = [0f64; 8];
        for _ in 0..2000 {
            let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
            for s in sums.iter_mut() {
                let d = b.next(&mut rng);
                assert!(d >= Duration::from_millis(10) && d <= Duration::from_secs(1));
                *s += d.as_secs_f64();
            }
        }
        assert!(sums.windows(2).all(|w| w[1] > w[0]), "{sums:?}");
    }

    #[test]
    fn give_up_after_turns_the_process_off() {
        let mut p = policy();
        p.restart.give_up_after = 2;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        t.input(Input::Exited { gen, code: Some(1), signal: None });
        let a = t.input(Input::TimerFired(Timer::Restart(gen)));
        let gen = spawn_gen(&a).unwrap();
        t.input(Input::Spawned { gen, pid: 11 });
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(restart_delay(&a).is_none());
        assert_eq!(t.state(), "stopped");
    }
}
