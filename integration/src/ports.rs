//! Free loopback ports for servers started by tests.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out by this process, so two claims in one test run never collide even before
/// either port is bound.
static CLAIMED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that was free on 127.0.0.1 a moment ago and was not handed out before by this process.
/// (The kernel may still give it to someone else before the caller binds it; with ephemeral ports
/// allocated upward that is rare enough for tests.)
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        if claimed.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}
