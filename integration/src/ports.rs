//! Free loopback ports for servers started by tests.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out by this process, so two claims in one test run never collide even before
/// either port is bound.
static CLAIMED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port handed out.
const LOW: u16 = 10_000;

/// A port that was free on 127.0.0.1 a moment ago and was not handed out before by this process.
///
/// Taken at random below the kernel's ephemeral range (`ip_local_port_range`) when there is room:
/// every outgoing connection (a pod's to ZooKeeper, the leader's to its peers, the harness's to
/// the pods) takes its local port from that range, and with hundreds of pods starting at once one
/// of them took a claimed port before its pod could bind it (seen in the benchmark's 50 clusters
/// of 10). Below the range only another listener can take it, which the bind check sees.
pub fn free_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(0);
    let span = ephemeral_start.saturating_sub(LOW);
    loop {
        let port = if span >= 1_000 {
            LOW + (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u16
        } else {
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        if claimed.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for p in ports.iter().take(20) {
            TcpListener::bind(("127.0.0.1", *p)).unwrap();
        }
    }
}
