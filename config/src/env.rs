//! Environment overrides in the original's spelling, so an existing Marathon or Kubernetes
//! application definition keeps working when it switches to this image:
//!
//! | variable | effect |
//! |---|---|
//! | `OCHOPOD_ZK`, then `ochopod_zk` | `zk` (connect string or `zk://[user:pass@]h:p,h:p/chroot`, read by [`crate::ZkTarget::parse`] in validation); empty = unset, as the original's default `''` |
//! | `ochopod_cluster`, `ochopod_namespace` | `cluster`, `namespace` |
//! | `ochopod_port` | the control port |
//! | `ochopod_start` | `process.start` (`true`/`false`; a sidecar has no process and ignores it) |
//! | `ochopod_debug` | `debug` (`true`/`false`) |
//! | `ochopod_local` | `true` forces `binding: local` (the original's local mode) |
//! | `ochopod_application`, `ochopod_task` | the registered ids |
//! | `PORT_<n>` | container port `n` is reached on host port `<value>` (added to `ports` if absent) |
//!
//! Values are checked here and a bad one names its variable. Other `ochopod_*` variables are
//! ignored: the original copied them into ZooKeeper, which leaked secrets such as tokens.

use std::collections::BTreeMap;

use crate::error::ConfigError;
use crate::raw::parse_port;
use crate::Env;

/// A value taken from the environment, with the variable it came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromEnv<T> {
    pub var: &'static str,
    pub value: T,
}

/// What the environment overrides, already parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub zk: Option<FromEnv<String>>,
    pub cluster: Option<FromEnv<String>>,
    pub namespace: Option<FromEnv<String>>,
    pub port: Option<u16>,
    pub start: Option<bool>,
    pub debug: Option<bool>,
    pub local: bool,
    pub application: Option<String>,
    pub task: Option<String>,
    /// Container port → host port, from `PORT_<n>`.
    pub port_remaps: BTreeMap<u16, u16>,
}

impl Overrides {
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        let text = |var: &'static str| env.get(var).map(|v| FromEnv { var, value: v.clone() });
        let zk =
            ["OCHOPOD_ZK", "ochopod_zk"].into_iter().find_map(|var| text(var).filter(|z| !z.value.trim().is_empty()));
        let mut port_remaps = BTreeMap::new();
        for (var, value) in env {
            // Only numeric suffixes: Marathon also sets `PORT_<NAME>` for named ports.
            let Some(n) = var.strip_prefix("PORT_").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let container = parse_port(n)
                .map_err(|m| ConfigError::env(var, "ports", format!("the container port in the name: {m}")))?;
            let host = parse_port(value).map_err(|m| ConfigError::env(var, "ports", format!("host port: {m}")))?;
            port_remaps.insert(container, host);
        }
        Ok(Overrides {
            zk,
            cluster: text("ochopod_cluster"),
            namespace: text("ochopod_namespace"),
            port: env
                .get("ochopod_port")
                .map(|v| parse_port(v).map_err(|m| ConfigError::env("ochopod_port", "port", m)))
                .transpose()?,
            start: flag(env, "ochopod_start", "process.start")?,
            debug: flag(env, "ochopod_debug", "debug")?,
            local: flag(env, "ochopod_local", "binding")?.unwrap_or(false),
            application: env.get("ochopod_application").cloned(),
            task: env.get("ochopod_task").cloned(),
            port_remaps,
        })
    }
}

fn flag(env: &Env, var: &str, field: &str) -> Result<Option<bool>, ConfigError> {
    let Some(value) = env.get(var) else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(ConfigError::env(var, field, format!("expected `true` or `false`, got `{value}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn zk_precedence_upper_then_lower() {
        let o = Overrides::read(&env(&[("OCHOPOD_ZK", "a:1"), ("ochopod_zk", "b:2")])).unwrap();
        assert_eq!(o.zk, Some(FromEnv { var: "OCHOPOD_ZK", value: "a:1".into() }));
        let o = Overrides::read(&env(&[("ochopod_zk", "b:2")])).unwrap();
        assert_eq!(o.zk, Some(FromEnv { var: "ochopod_zk", value: "b:2".into() }));
        // The original's default `ochopod_zk=''` means "not set".
        let o = Overrides::read(&env(&[("OCHOPOD_ZK", ""), ("ochopod_zk", "b:2")])).unwrap();
        assert_eq!(o.zk.unwrap().var, "ochopod_zk");
        assert_eq!(Overrides::read(&env(&[("ochopod_zk", " ")])).unwrap().zk, None);
    }

    #[test]
    fn port_remaps_and_their_errors() {
        let o = Overrides::read(&env(&[("PORT_8080", "31000"), ("PORT_2181", "31001"), ("PORT_HTTP", "x")])).unwrap();
        assert_eq!(o.port_remaps, BTreeMap::from([(8080, 31000), (2181, 31001)]));
        let e = Overrides::read(&env(&[("PORT_8080", "abc")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "env PORT_8080: ports: host port: expected a port number between 1 and 65535, got `abc`"
        );
        let e = Overrides::read(&env(&[("PORT_70000", "1")])).unwrap_err();
        assert_eq!(e.file, "env PORT_70000");
    }

    #[test]
    fn flags_and_ids() {
        let o = Overrides::read(&env(&[
            ("ochopod_start", "false"),
            ("ochopod_debug", "TRUE"),
            ("ochopod_local", "true"),
            ("ochopod_port", "9000"),
            ("ochopod_application", "app"),
            ("ochopod_task", "t-1"),
            ("ochopod_token", "not copied anywhere"),
        ]))
        .unwrap();
        assert_eq!((o.start, o.debug, o.local, o.port), (Some(false), Some(true), true, Some(9000)));
        assert_eq!((o.application.as_deref(), o.task.as_deref()), (Some("app"), Some("t-1")));
        let e = Overrides::read(&env(&[("ochopod_start", "yes")])).unwrap_err();
        assert_eq!(e.to_string(), "env ochopod_start: process.start: expected `true` or `false`, got `yes`");
        let e = Overrides::read(&env(&[("ochopod_port", "0")])).unwrap_err();
        assert_eq!(e.to_string(), "env ochopod_port: port: expected a port number between 1 and 65535, got 0");
    }
}
