//! Shared by the integration tests: probe actors, a state wired to them, the /info schema check.
#![allow(dead_code)]

pub mod probe;
pub mod schema;
