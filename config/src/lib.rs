//! The YAML pod declaration, turned once, before any actor starts, into the validated
//! [`Settings`] every actor reads.
//!
//! # Theory of operation
//!
//! [`load`] reads the file and hands it to [`parse_str`], which runs a pipeline of plain
//! functions with no I/O except reading the control token:
//!
//! 1. **raw** (`raw.rs`): yaml_serde deserializes the text into structs whose fields are all
//!    optional and which reject unknown fields. Leaves with a syntax of their own (durations,
//!    ports, sizes, file modes, the string-or-mapping hooks) are parsed by their own `Deserialize`,
//!    so their errors come out of yaml_serde already stamped with the node's line, column and
//!    field path. serde's "unknown field" wording is rewritten with a "did you mean" suggestion
//!    (strsim), and YAML syntax errors keep libyaml's description.
//! 2. **env** (`env.rs`): the original's environment overrides (`OCHOPOD_ZK` > `ochopod_zk` >
//!    YAML, `ochopod_cluster`, …, `PORT_<n>`) are parsed; a bad value names its variable.
//! 3. **validate** (`validate.rs`): defaults (`settings::defaults`), required fields, names,
//!    cross-field rules (one sanity kind, `token_file` xor `token_env`, minimum session timeout),
//!    the token read from its file or variable, and a minijinja compile of every template, so a
//!    typo in `{% for %}` fails at load and not at the first configuration round.
//!
//! **Positions.** yaml_serde values carry no positions, but yaml_serde stamps every error raised
//! while deserializing a node with that node's position. Errors of step 1 use that directly. For
//! the later steps, `locate.rs` re-walks the text along the field path (`process.sanity.every`)
//! with a serde seed that fails on purpose at the target and reads the position off that error:
//! the real parser finds the node, so flow and block style, quotes and comments all work, and the
//! cost (one re-parse per reported error) is only paid on failure. A field that is absent is
//! reported at its parent (a missing `cluster` at the document's first line).
//!
//! **Errors.** Every failure is one [`ConfigError`] shown as `file:line:column: field: message`,
//! the message saying what was expected. Environment errors read `env NAME: field: message` and
//! an unreadable file `file: message`. Nothing here panics on bad input.
//!
//! **ZooKeeper.** Every connect string (`zk:`, `OCHOPOD_ZK`, the bindings' platform files, the
//! CLI's `--zk`) is read by the one parser, [`ZkTarget::parse`] (`zk.rs`), so what loads is what
//! the session can connect with; a bad one is a load error naming its variable or field.
//!
//! **Limits.** Every duration is at most [`duration::MAX`] (one day), so `now + damper` or
//! `grace × 1.25` can never overflow anywhere else.
//!
//! **Secrets.** The control token and the ZooKeeper credentials live in [`Secret`] (redacted
//! `Debug`, skipped by `Serialize`); [`to_display_yaml`] and every error show neither.

pub mod duration;
pub mod env;
pub mod error;
pub mod etcd;
pub mod locate;
pub mod policy;
pub mod raw;
pub mod settings;
pub mod zk;

mod display;
mod guard;
mod validate;

pub use display::to_display_yaml;
pub use error::ConfigError;
pub use etcd::{Coordination, EtcdSettings, EtcdTarget, EtcdTls};
pub use policy::{PodEnv, TokenSource};
pub use settings::*;
pub use zk::ZkTarget;

use std::collections::BTreeMap;
use std::path::Path;

/// The process environment as a map, so tests can pass a recorded one.
pub type Env = BTreeMap<String, String>;

/// The current process environment as an [`Env`] (variables that are not UTF-8 are left out:
/// none of ours can be).
pub fn process_env() -> Env {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// Read, parse and validate a declaration, applying the environment overrides.
pub fn load(path: &Path, env: &Env) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&path.display().to_string(), format!("cannot read the pod declaration: {e}")))?;
    parse_str(path, &text, env)
}

/// Same as [`load`] for YAML text already read (`source` names it in errors).
pub fn parse_str(source: &Path, text: &str, env: &Env) -> Result<Settings, ConfigError> {
    let file = source.display().to_string();
    guard::check(text).map_err(|(line, column, message)| ConfigError {
        file: file.clone(),
        line,
        column,
        field: String::new(),
        message,
    })?;
    let raw: raw::RawPod = if locate::is_blank(text) {
        // yaml_serde reports an empty document as "EOF while parsing"; what is really missing is
        // `cluster`, which validation says with a position.
        raw::RawPod::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(&file, text, &e))?
    };
    validate::validate(source, text, raw, env)
}
