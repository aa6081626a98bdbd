//! Pod-wide policy that several actors apply, decided here once so that none re-derives it:
//! where the pod's processes run, and the environment they (and the templates) get.
//!
//! Everything the pod starts (the child, hooks, sanity commands, the leader's probe) runs in
//! [`Settings::run_dir`] and gets [`Settings::pod_env`] plus its `OCHOPOD_*` variables
//! ([`Settings::ochopod_vars`]); the templates' `env` is the same [`PodEnv::vars`]. What the
//! environment never carries:
//!
//! - the variable the control token was read from ([`TokenSource::Env`]);
//! - ZooKeeper credentials: `OCHOPOD_ZK`/`ochopod_zk` holding a `zk://user:pass@…` URL are given
//!   without the credentials (`zk://hosts/chroot`), and removed when they do not even parse.

use std::fmt;
use std::path::{Path, PathBuf};

use ochopod_core::ClusterView;
use serde::Serialize;

use crate::settings::Settings;
use crate::zk::ZkTarget;
use crate::Env;

/// Where the control token was read from. Shown as `file PATH` or `env NAME` (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The full path of `control.token_file`.
    File(PathBuf),
    /// The name of `control.token_env`, which nothing the pod starts may see.
    Env(String),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "file {}", path.display()),
            TokenSource::Env(name) => write!(f, "env {name}"),
        }
    }
}

impl Serialize for TokenSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The variables of ochopod's own environment that may carry the ZooKeeper credentials.
const ZK_VARS: [&str; 2] = ["OCHOPOD_ZK", "ochopod_zk"];

/// The environment the pod's processes and templates get (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodEnv {
    /// The variables given explicitly: ochopod's own, without the secrets.
    pub vars: Env,
    /// Variables to remove from an inherited environment (a hook's or the probe's `sh` inherits
    /// ochopod's): never in `vars`.
    pub hidden: Vec<String>,
}

impl Settings {
    /// Where relative paths (files, `process.cwd`) are anchored and where everything the pod
    /// starts runs: `process.cwd` (relative to the declaration's folder), else that folder.
    pub fn work_dir(&self) -> PathBuf {
        let source_dir = self.source.parent().map(Path::to_path_buf).unwrap_or_default();
        match self.process.as_ref().and_then(|p| p.cwd.as_ref()) {
            Some(cwd) => source_dir.join(cwd),
            None => source_dir,
        }
    }

    /// [`Settings::work_dir`] as a process's working directory: `None` when it is empty (a
    /// declaration given as a bare file name), which is ochopod's own directory already.
    pub fn run_dir(&self) -> Option<PathBuf> {
        Some(self.work_dir()).filter(|dir| !dir.as_os_str().is_empty())
    }

    /// The variable the control token was read from, if it came from the environment.
    pub fn token_env(&self) -> Option<&str> {
        match &self.control.token_source {
            Some(TokenSource::Env(name)) => Some(name),
            _ => None,
        }
    }

    /// What the pod's processes and templates get of ochopod's environment `env`.
    pub fn pod_env(&self, env: &Env) -> PodEnv {
        let mut vars = env.clone();
        let mut hidden: Vec<String> = self.token_env().map(str::to_string).into_iter().collect();
        for var in ZK_VARS {
            let Some(value) = vars.get(var) else { continue };
            match without_credentials(value) {
                Some(Some(clean)) => {
                    vars.insert(var.to_string(), clean);
                }
                Some(None) => hidden.push(var.to_string()),
                None => {}
            }
        }
        // etcd credentials likewise: the URL is passed on without them, or dropped unparsed.
        if let Some(value) = vars.get(crate::etcd::ENV) {
            match crate::etcd::EtcdTarget::parse(value) {
                Ok(target) => {
                    vars.insert(crate::etcd::ENV.to_string(), target.redacted());
                }
                Err(_) if value.contains('@') => hidden.push(crate::etcd::ENV.to_string()),
                Err(_) => {}
            }
        }
        for name in &hidden {
            vars.remove(name);
        }
        PodEnv { vars, hidden }
    }

    /// The `OCHOPOD_*` variables of a process started for `view` (or before any view).
    pub fn ochopod_vars(&self, view: Option<&ClusterView>) -> Env {
        let mut env = Env::new();
        env.insert("OCHOPOD_CLUSTER".to_string(), self.cluster.clone());
        env.insert("OCHOPOD_NAMESPACE".to_string(), self.namespace.clone());
        if let Some(v) = view {
            env.insert("OCHOPOD_INDEX".to_string(), v.index.to_string());
            env.insert("OCHOPOD_SEQ".to_string(), v.seq.to_string());
            env.insert("OCHOPOD_SIZE".to_string(), v.size.to_string());
            env.insert("OCHOPOD_KEY".to_string(), v.key.clone());
            if let Some(e) = v.epoch {
                env.insert("OCHOPOD_EPOCH".to_string(), e.to_string());
            }
        }
        env
    }
}

/// `None`: `value` carries no credentials, keep it. `Some(Some(clean))`: the same target without
/// them. `Some(None)`: it may hold credentials but does not parse, so drop it.
fn without_credentials(value: &str) -> Option<Option<String>> {
    match ZkTarget::parse(value) {
        Ok(target) if target.digest.is_none() => None,
        Ok(target) => {
            let scheme = if value.trim().starts_with("zk://") { "zk://" } else { "" };
            Some(Some(format!("{scheme}{}", target.redacted())))
        }
        Err(_) if value.contains('@') => Some(None),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str, env: &[(&str, &str)]) -> Settings {
        let env: Env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        crate::parse_str(Path::new("/pods/web/pod.yaml"), yaml, &env).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_work_dir_is_process_cwd_relative_to_the_declaration() {
        let s = settings("cluster: c\nprocess: { command: x }", &[]);
        assert_eq!(s.work_dir(), PathBuf::from("/pods/web"));
        let s = settings("cluster: c\nprocess: { command: x, cwd: data }", &[]);
        assert_eq!(s.work_dir(), PathBuf::from("/pods/web/data"));
        let s = settings("cluster: c\nprocess: { command: x, cwd: /srv }", &[]);
        assert_eq!(s.run_dir(), Some(PathBuf::from("/srv")));
        let bare = crate::parse_str(Path::new("pod.yaml"), "cluster: c", &Env::new()).unwrap();
        assert_eq!(bare.run_dir(), None);
    }

    #[test]
    fn the_token_source_is_typed_and_its_variable_hidden() {
        let s = settings("cluster: c\ncontrol: { token_env: POD_TOKEN }", &[("POD_TOKEN", "s3cret")]);
        assert_eq!(s.control.token_source, Some(TokenSource::Env("POD_TOKEN".into())));
        assert_eq!(s.control.token_source.as_ref().unwrap().to_string(), "env POD_TOKEN");
        assert_eq!(s.token_env(), Some("POD_TOKEN"));
        let e = s.pod_env(&env(&[("POD_TOKEN", "s3cret"), ("HOME", "/root")]));
        assert_eq!(e.vars, env(&[("HOME", "/root")]));
        assert_eq!(e.hidden, vec!["POD_TOKEN".to_string()]);
        let file = TokenSource::File("/run/token".into());
        assert_eq!(file.to_string(), "file /run/token");
        assert_eq!(serde_json::to_value(&file).unwrap(), "file /run/token");
    }

    #[test]
    fn zookeeper_credentials_never_reach_the_pod_env() {
        let s = settings("cluster: c", &[]);
        let e = s.pod_env(&env(&[
            ("OCHOPOD_ZK", "zk://user:pa55@zk1:2181,zk2:2181/mesos"),
            ("ochopod_zk", "user:pa55@zk1:2181"),
            ("OTHER", "kept"),
        ]));
        assert_eq!(e.vars["OCHOPOD_ZK"], "zk://zk1:2181,zk2:2181/mesos");
        assert_eq!(e.vars["ochopod_zk"], "zk1:2181");
        assert_eq!(e.vars["OTHER"], "kept");
        assert!(e.hidden.is_empty());
        // Unparseable with an `@`: it may be credentials, it goes.
        let e = s.pod_env(&env(&[("ochopod_zk", "zk://user:pa/55@zk1:2181"), ("OCHOPOD_ZK", "zk1:2181")]));
        assert_eq!(e.vars.get("ochopod_zk"), None);
        assert_eq!(e.hidden, vec!["ochopod_zk".to_string()]);
        assert_eq!(e.vars["OCHOPOD_ZK"], "zk1:2181");
    }

    #[test]
    fn etcd_credentials_never_reach_the_pod_env() {
        let s = settings("cluster: c", &[]);
        let e = s.pod_env(&env(&[("OCHOPOD_ETCD", "etcd://root:pa55@e1:2379,e2:2379/p")]));
        assert_eq!(e.vars["OCHOPOD_ETCD"], "etcd://e1:2379,e2:2379/p");
        let e = s.pod_env(&env(&[("OCHOPOD_ETCD", "etcd://root:pa55@e1")]));
        assert_eq!(e.vars.get("OCHOPOD_ETCD"), None);
        assert_eq!(e.hidden, vec!["OCHOPOD_ETCD".to_string()]);
    }

    #[test]
    fn coordination_comes_from_the_env_then_the_declaration_with_positions() {
        let load = |yaml: &str, env_pairs: &[(&str, &str)]| {
            crate::parse_str(Path::new("pod.yaml"), yaml, &env(env_pairs)).map(|s| s.coordination)
        };
        assert_eq!(load("cluster: c", &[]).unwrap(), crate::Coordination::ZooKeeper);
        let crate::Coordination::Etcd(e) = load("cluster: c\ncoordination: etcd://h:2379/x", &[]).unwrap() else {
            panic!("etcd expected")
        };
        assert_eq!((e.target.prefix.as_str(), e.lease_ttl), ("/x", std::time::Duration::from_secs(15)));
        let crate::Coordination::Etcd(e) =
            load("cluster: c\ncoordination: etcd://h:2379/x", &[("OCHOPOD_ETCD", "etcd://g:1")]).unwrap()
        else {
            panic!("etcd expected")
        };
        assert_eq!(e.target.endpoints, ["g:1"]);
        let err = load("cluster: c\ncoordination: zk://h:2181", &[]).unwrap_err().to_string();
        assert!(err.starts_with("pod.yaml:2:15: coordination: expected `etcd://"), "{err}");
        let err = load("cluster: c", &[("OCHOPOD_ETCD", "nope")]).unwrap_err().to_string();
        assert!(err.starts_with("env OCHOPOD_ETCD: coordination:"), "{err}");
    }

    #[test]
    fn ochopod_vars_name_the_pod() {
        let s = settings("cluster: c\nnamespace: n", &[]);
        assert_eq!(s.ochopod_vars(None), env(&[("OCHOPOD_CLUSTER", "c"), ("OCHOPOD_NAMESPACE", "n")]));
    }
}
