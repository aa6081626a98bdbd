//! The ochopod vocabulary, shared by every other crate.
//!
//! Theory of operation: this crate owns no state and runs nothing. It defines what a pod *is* on
//! the wire (its [`Registration`] in ZooKeeper), what a configuration round hands to every pod
//! (the [`ControlPayload`] and its read-only [`ClusterView`]), how the leader decides that
//! something changed (the canonical [`hash`]), how `depends_on` entries map to clusters
//! ([`deps`]), where things live in ZooKeeper ([`paths`]), and the two observability channels
//! that every actor writes to: the lifecycle [`events`] bus and the [`logring`] behind `/log`.
//!
//! Everything here is a plain type or a pure function, unit-tested next to its code.

pub mod backoff;
pub mod deps;
pub mod events;
pub mod hash;
pub mod logring;
pub mod paths;
pub mod registration;
pub mod view;

pub use registration::{InvalidRegistration, Registration};
pub use view::{ClusterView, ControlPayload};
