//! The control API on the wire: tasks, replies, `/info`, error bodies, and a typed client.
//!
//! Theory of operation: the leader, the `ochopod` CLI and the tests talk to pods only through
//! [`client::PodClient`], so the routes, status codes and JSON shapes live in one place and stay
//! compatible with the original Ochopod (`POST /control/<task>/<timeout>` with a JSON body,
//! `/info`, `/log`, `/reset`), which means the same client also drives original Python pods.

pub mod client;
pub mod wire;

pub use client::{ClientError, PodClient};
pub use wire::{ErrorBody, Info, Task};
