//! The reaper's scan, in its own test binary: it reaps every unregistered zombie child of the
//! process, so it must not run next to tests that await plain children of their own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ochopod_proc::reaper::{any_zombie_child, reap_once, spawn, zombie_children, GRACE};

#[test]
fn a_registered_zombie_is_never_reaped_and_an_unregistered_one_after_the_grace() {
    let me = std::process::id() as i32;
    let mut first_seen = HashMap::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new("true");
        let (mut child, owned) = spawn(&mut cmd).unwrap();
        let pid = child.id().unwrap() as i32;
        // A plain std child: nobody registered it, so it is the reaper's after the grace.
        // Not waited for on purpose: reaping it is the reaper's job.
        #[allow(clippy::zombie_processes)]
        let stray = std::process::Command::new("true").spawn().unwrap().id() as i32;
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(5);
        while !(zombie_children(me).contains(&pid) && zombie_children(me).contains(&stray)) {
            assert!(Instant::now() < deadline, "the children never became zombies");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(any_zombie_child());
        assert!(zombie_children(me).contains(&stray), "looking reaped nothing");
        let wait = reap_once(&mut first_seen, t0).expect("the stray waits out its grace");
        assert!(wait <= GRACE);
        assert!(zombie_children(me).contains(&stray), "reaped before its grace");
        assert_eq!(reap_once(&mut first_seen, t0 + GRACE * 10), None);
        assert!(!zombie_children(me).contains(&stray), "the stray is still a zombie");
        assert!(zombie_children(me).contains(&pid), "the reaper took a registered child");
        let status = child.wait().await.expect("the registered child's status was stolen");
        assert!(status.success());
        drop(owned);
        assert!(!any_zombie_child(), "every zombie was reaped");
        assert_eq!(reap_once(&mut first_seen, t0 + GRACE * 20), None);
    });
}
