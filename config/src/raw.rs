//! The YAML as written: every field optional, unknown fields rejected (`deny_unknown_fields`),
//! leaves that have a syntax of their own (durations, ports, sizes, modes) parsed right here so
//! that their errors carry the node's position. Cross-field rules and defaults are applied later,
//! in `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

pub use crate::duration::Dur;
use crate::settings::RestartWhen;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPod {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub port: Option<Port>,
    pub ports: Option<Vec<Port>>,
    pub zk: Option<String>,
    pub zk_session_timeout: Option<Dur>,
    /// `etcd://…` to coordinate through etcd instead of ZooKeeper.
    pub coordination: Option<String>,
    pub binding: Option<String>,
    pub debug: Option<bool>,
    pub application: Option<String>,
    pub task: Option<String>,
    pub model: Option<RawModel>,
    pub process: Option<RawProcess>,
    pub files: Option<Vec<RawFile>>,
    pub hooks: Option<RawHooks>,
    pub control: Option<RawControl>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub depends_on: Option<Vec<String>>,
    pub damper: Option<Dur>,
    pub sequential: Option<bool>,
    pub min_size: Option<u32>,
    pub full_shutdown: Option<bool>,
    pub grace: Option<Dur>,
    pub probe: Option<RawProbe>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub command: Option<String>,
    pub every: Option<Dur>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub command: Option<String>,
    pub shell: Option<bool>,
    pub cwd: Option<PathBuf>,
    pub env: Option<BTreeMap<String, String>>,
    pub strict: Option<bool>,
    pub start: Option<bool>,
    pub pipe_output: Option<bool>,
    pub grace: Option<Dur>,
    pub soft: Option<bool>,
    pub sanity: Option<RawSanity>,
    pub restart: Option<RawRestartField>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSanity {
    pub command: Option<String>,
    pub http: Option<String>,
    pub tcp: Option<String>,
    pub every: Option<Dur>,
    pub retries: Option<u32>,
    pub timeout: Option<Dur>,
}

/// `restart: changed` (when a running process is restarted by a round), or a mapping with
/// `when` and the backoff after failures (`initial`, `max`, …).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub when: Option<When>,
    pub initial: Option<Dur>,
    pub max: Option<Dur>,
    pub crashloop_after: Option<u32>,
    pub reset_after: Option<Dur>,
    pub give_up_after: Option<u32>,
}

/// [`RawRestart`] as written: a word or a mapping.
#[derive(Debug, Default)]
pub struct RawRestartField(pub RawRestart);

impl<'de> Deserialize<'de> for RawRestartField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRestartField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`dependencies`, `always` or `changed`, or a mapping with `when` and the backoff")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRestartField, E> {
                let when = parse_when(v).map_err(E::custom)?;
                Ok(RawRestartField(RawRestart { when: Some(When(when)), ..Default::default() }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRestartField, A::Error> {
                // Through yaml_serde's own MapAccess, so unknown keys keep their position.
                RawRestart::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawRestartField)
            }
        }
        d.deserialize_any(V)
    }
}

/// When a round restarts a running process: `dependencies`, `always` or `changed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct When(pub RestartWhen);

pub fn parse_when(text: &str) -> Result<RestartWhen, String> {
    match text.trim() {
        "dependencies" => Ok(RestartWhen::Dependencies),
        "always" => Ok(RestartWhen::Always),
        "changed" => Ok(RestartWhen::Changed),
        _ => Err(format!(
            "expected `dependencies` (restart when the dependencies changed, the default), `always` (on every \
             round, as `strict: true`) or `changed` (only when the command, its environment or a rendered file \
             changed), got `{text}`"
        )),
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = When;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`dependencies`, `always` or `changed`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<When, E> {
                parse_when(v).map(When).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub path: Option<PathBuf>,
    /// Says that an absolute `path` is meant: files are otherwise written inside the pod's folder.
    pub absolute: Option<bool>,
    pub template: Option<String>,
    pub mode: Option<Mode>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub initialize: Option<RawHook>,
    pub can_configure: Option<RawHook>,
    pub configured: Option<RawHook>,
    pub signaled: Option<RawHook>,
    pub tear_down: Option<RawHook>,
    pub finalize: Option<RawHook>,
}

/// `hook: "shell command"` or `hook: { command: ..., timeout: 30s }`.
#[derive(Debug, Default)]
pub struct RawHook {
    pub command: Option<String>,
    pub timeout: Option<Dur>,
    /// Written as a mapping (so errors about the command point at its `command:` key).
    pub from_map: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHookMap {
    command: Option<String>,
    timeout: Option<Dur>,
}

impl<'de> Deserialize<'de> for RawHook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHook;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command or a mapping with `command` and `timeout`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHook, E> {
                Ok(RawHook { command: Some(v.to_owned()), timeout: None, from_map: false })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHook, A::Error> {
                // Through yaml_serde's own MapAccess, so unknown keys keep their position.
                let m = RawHookMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHook { command: m.command, timeout: m.timeout, from_map: true })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub protect_reads: Option<bool>,
    pub tls: Option<RawTls>,
    pub body_limit: Option<Size>,
    pub log_lines: Option<usize>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// A TCP port, 1-65535 (a quoted number is accepted: env-templated YAML often quotes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u64>() {
        Ok(n) => port_in_range(n),
        Err(_) => Err(format!("expected a port number between 1 and 65535, got `{text}`")),
    }
}

fn port_in_range(n: u64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("expected a port number between 1 and 65535, got {n}")),
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number between 1 and 65535")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                port_in_range(v).map(Port).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Err(E::custom(format!("expected a port number between 1 and 65535, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                parse_port(v).map(Port).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Unix permission bits written in octal: `"0644"`, `0o644`, or `644` (digits read as octal,
/// since nobody means decimal 644).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o7777 => Ok(m),
        _ => Err(format!("expected octal permission bits such as \"0644\" or \"0755\", got `{text}`")),
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("octal permission bits such as \"0644\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Mode, E> {
                parse_mode(&v.to_string()).map(Mode).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Mode, E> {
                parse_mode(&v.to_string()).map(Mode).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mode, E> {
                parse_mode(v).map(Mode).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: plain bytes, or with a unit `B`, `KiB`, `MiB`, `GiB` (also `KB`/`MB`/`GB`, which
/// are taken as powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub usize);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let bad = || format!("expected a size such as `1048576`, `512KiB` or `1MiB`, got `{text}`");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" => 1,
        u => SIZE_UNITS.iter().find(|(name, _)| *name == u).map(|(_, s)| *s).ok_or_else(bad)?,
    };
    n.checked_mul(scale).and_then(|b| usize::try_from(b).ok()).ok_or_else(bad)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `512KiB` or `1MiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                usize::try_from(v).map(Size).map_err(|_| E::custom(format!("size {v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                Err(E::custom(format!("expected a size such as `512KiB` or `1MiB`, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").unwrap_err().contains("between 1 and 65535"));
        assert!(parse_port("http").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("77777").is_err());
        // yaml reads 0644 as a string (YAML 1.2) and 644 as an integer: both mean rw-r--r--.
        let m: Mode = serde_yaml::from_str("0644").unwrap();
        assert_eq!(m, Mode(0o644));
        let m: Mode = serde_yaml::from_str("644").unwrap();
        assert_eq!(m, Mode(0o644));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2 MB"), Ok(2_000_000));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn restart_is_a_word_or_a_mapping() {
        let r: RawRestartField = serde_yaml::from_str("changed").unwrap();
        assert_eq!(r.0.when, Some(When(RestartWhen::Changed)));
        let r: RawRestartField = serde_yaml::from_str("{ when: always, give_up_after: 3 }").unwrap();
        assert_eq!((r.0.when, r.0.give_up_after), (Some(When(RestartWhen::Always)), Some(3)));
        let r: RawRestartField = serde_yaml::from_str("{ initial: 1s }").unwrap();
        assert_eq!(r.0.when, None);
        let e = serde_yaml::from_str::<RawRestartField>("sometimes").unwrap_err();
        assert!(e.to_string().contains("got `sometimes`"), "{e}");
        let e = serde_yaml::from_str::<RawRestartField>("{ when: never }").unwrap_err();
        assert!(e.to_string().contains("got `never`"), "{e}");
    }

    #[test]
    fn hooks_are_strings_or_maps() {
        let h: RawHook = serde_yaml::from_str("run.sh").unwrap();
        assert_eq!(h.command.as_deref(), Some("run.sh"));
        let h: RawHook = serde_yaml::from_str("{ command: run.sh, timeout: 5s }").unwrap();
        assert_eq!(h.timeout, Some(Dur(std::time::Duration::from_secs(5))));
        let e = serde_yaml::from_str::<RawHook>("{ comand: x }").unwrap_err();
        assert!(e.to_string().contains("unknown field `comand`"), "{e}");
    }
}
