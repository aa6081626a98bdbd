//! The control API on the wire: tasks, replies, `/info`, error bodies, and a typed client.
//!
//! Theory of operation: the leader, the `ochopod` CLI and the tests talk to pods only through
//! [`client::PodClient`], so the routes, status codes and JSON shapes live in one place and stay
//! compatible with the original Ochopod (`POST /control/<task>/<timeout>` with a JSON body,
//! `/info`, `/log`, `/reset`), which means the same client also drives original Python pods.
//! The client speaks plain HTTP by default; built with [`PodClient::with_tls`] it speaks HTTPS to
//! pods with `control.tls`, trusting only the given roots (the [`tls`] module says how peers are
//! verified). Failures come back as [`ClientError`], naming the pod's address.

pub mod client;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod wire;

pub use client::{ClientError, PodClient, TransportError};
/// Request and reply bodies (`hyper`'s, re-exported so callers need no HTTP crate).
pub use hyper::body::Bytes;
pub use tls::TlsSetupError;
pub use wire::{ErrorBody, Info, Task};
