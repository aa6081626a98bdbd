//! Network namespaces for tests that cut a pod off the network: each joined to the host by a
//! veth pair on a /30 that no interface of the host uses, removed (with the processes left in
//! it) when dropped. Needs root and iproute2; without them a test fails saying so.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs `ip <args>`; the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`ip {}`: {e} (install iproute2: apt-get install -y iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`ip {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A network namespace joined to the host by a veth pair on a /30 of 10.213.0.0/16 that no
/// interface uses yet: the host end is `.1`, the namespace end `.2`. Everything it made is
/// removed on drop (processes still in the namespace are killed by pid first).
pub struct Netns {
    pub name: String,
    host_if: String,
    ns_if: String,
    /// The host end of the veth: bind what the namespace must reach here.
    pub host_ip: String,
    /// The namespace end: what a process in it registers.
    pub ns_ip: String,
}

impl Netns {
    pub fn create() -> Netns {
        if let Err(e) = ip(&["netns", "list"]) {
            panic!("this test needs iproute2 with network namespaces, run as root: {e}");
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let used = ip(&["-o", "-4", "addr", "show"]).unwrap_or_default();
        let bytes = uuid::Uuid::new_v4().into_bytes();
        // A third octet no address of this host uses, so the /30 overlaps nothing.
        let base = (0..16usize)
            .map(|k| (bytes[k], bytes[(k + 1) % 16] & 0xfc))
            .find(|(third, _)| !used.contains(&format!(" 10.213.{third}.")))
            .expect("a free /30 in 10.213.0.0/16");
        let ns = Netns {
            name: format!("ochopod-test-{}", &id[..12]),
            host_if: format!("och{}h", &id[..8]),
            ns_if: format!("och{}n", &id[..8]),
            host_ip: format!("10.213.{}.{}", base.0, base.1 + 1),
            ns_ip: format!("10.213.{}.{}", base.0, base.1 + 2),
        };
        let host_cidr = format!("{}/30", ns.host_ip);
        let ns_cidr = format!("{}/30", ns.ns_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &ns.name],
            vec!["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if, "netns", &ns.name],
            vec!["addr", "add", &host_cidr, "dev", &ns.host_if],
            vec!["link", "set", &ns.host_if, "up"],
            vec!["netns", "exec", &ns.name, "ip", "addr", "add", &ns_cidr, "dev", &ns.ns_if],
            vec!["netns", "exec", &ns.name, "ip", "link", "set", &ns.ns_if, "up"],
            vec!["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(&step) {
                // `ns` is dropped here, undoing what was made.
                panic!("cannot set up the test network (run as root, with iproute2 installed): {e}");
            }
        }
        ns
    }

    /// Take the host end down: the namespace loses its only way out, as if unplugged.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]).expect("cut the link");
    }

    /// Take the namespace's own end down: inside, the network is gone at once (connects fail
    /// with ENETUNREACH), as when a container is disconnected from its network.
    pub fn unplug(&self) {
        ip(&["netns", "exec", &self.name, "ip", "link", "set", &self.ns_if, "down"]).expect("unplug the namespace");
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]).expect("heal the link");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes this test started can be in a namespace it made.
        if let Ok(pids) = ip(&["netns", "pids", &self.name]) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // Deleting the namespace destroys its end of the pair, and with it the host end.
        let _ = ip(&["link", "del", &self.host_if]);
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}
