//! The test harness: real things only.
//!
//! Theory of operation: [`zk::ZkServer`] (and [`etcd::EtcdCluster`], one or three members of
//! Debian's etcd) starts a real ZooKeeper (the Debian package's jar) on a
//! free loopback port with its data in a temp dir, waits until it serves requests, and stops it by
//! pid when dropped. [`pods`] starts real `ochopod` binaries on claimed ports and talks to them
//! over their control API. [`settle`] is the one definition of a settled cluster (DESIGN.md §8)
//! that the benchmark and the tests wait for, [`reliability`] the fault tests' own record of their
//! measured bounds, [`stamp`] the machine and commit a measurement was taken on. [`netns`] makes
//! network namespaces for partition tests. [`wait`] polls a condition until it holds or a timeout
//! expires, so a test waits for an outcome instead of sleeping and hoping. Anything missing on the
//! machine (Java, the ZooKeeper jar, the built binary) is an error that says how to install it:
//! tests never skip.
//!
//! Scenario tests that run pods live in `crates/ochopod/tests/`, not here: only there does Cargo
//! hand tests the freshly built `ochopod` binary (`CARGO_BIN_EXE_ochopod`), so a test can never
//! run a stale one.

pub mod etcd;
pub mod netns;
pub mod pods;
pub mod ports;
pub mod reliability;
pub mod settle;
pub mod stamp;
pub mod wait;
pub mod zk;
