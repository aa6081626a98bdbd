//! One log stream for everything: ochopod's own events, the ZooKeeper client's and actix's
//! records, and the child's output (target `child`), to stdout and into the `/log` ring.

use ochopod_core::logring::{LogRing, LogRingLayer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::cli::LogFormat;

/// `RUST_LOG` wins; otherwise `-v` (or `debug: true`) raises ochopod's level. The ZooKeeper
/// client is kept at `warn` unless asked, because it logs every reconnect attempt at info.
pub fn init(verbose: u8, debug: bool, format: LogFormat, ring: LogRing) {
    let level = match (verbose, debug) {
        (0, false) => "info",
        (0, true) | (1, _) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},zookeeper_client=warn,actix_server=warn,actix_web=warn")));
    let stdout = match format {
        LogFormat::Text => fmt::layer().with_target(false).with_ansi(colour()).boxed(),
        LogFormat::Json => fmt::layer().json().boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(stdout).with(LogRingLayer::new(ring)).try_init();
}

/// Colour codes only for a person at a terminal: never in a file or a platform's log collector,
/// and never when `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
