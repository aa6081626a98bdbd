//! Raw YAML + environment overrides → [`Settings`]: defaults, cross-field rules, names, the
//! token, and a compile of every template. Each error is placed with [`locate`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{format_duration, Dur};
use crate::env::Overrides;
use crate::error::{suggest, ConfigError};
use crate::etcd::{Coordination, EtcdSettings, EtcdTarget};
use crate::locate::{locate, FieldPath};
use crate::raw::*;
use crate::settings::*;
use crate::zk::ZkTarget;
use crate::Env;
use crate::TokenSource;

/// Where errors point: the file name as given, and its text for [`locate`].
struct Ctx<'a> {
    file: String,
    text: &'a str,
    /// Relative `token_file` paths are read from the YAML file's folder, not from wherever the
    /// pod happens to be started.
    dir: PathBuf,
    env: &'a Env,
}

type Result<T> = std::result::Result<T, ConfigError>;

impl Ctx<'_> {
    fn err(&self, path: &FieldPath, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.file, locate(self.text, path), path, message)
    }

    fn template(&self, path: &FieldPath, source: &str) -> Result<()> {
        let env = minijinja::Environment::new();
        env.template_from_str(source).map(drop).map_err(|e| {
            let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
            let line = e.line().map(|n| format!(" (line {n} of the template)")).unwrap_or_default();
            self.err(path, format!("invalid template: {what}{line}"))
        })
    }

    fn non_empty(&self, path: &FieldPath, value: Option<String>, what: &str) -> Result<String> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(self.err(path, format!("must not be empty: expected {what}"))),
            None => Err(self.err(path, format!("is required: expected {what}"))),
        }
    }

    /// Periods and timeouts: zero would mean a busy loop or an instant failure.
    fn positive(&self, path: &FieldPath, value: Option<Dur>, default: Duration) -> Result<Duration> {
        let d = value.map_or(default, |d| d.0);
        if d.is_zero() {
            return Err(self.err(path, "expected a duration greater than zero, got `0s`"));
        }
        Ok(d)
    }
}

pub(crate) fn validate(source: &Path, text: &str, mut raw: RawPod, env: &Env) -> Result<Settings> {
    let ctx = Ctx {
        file: source.display().to_string(),
        text,
        dir: source.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
    };
    let ov = Overrides::read(env)?;
    let root = FieldPath::root();

    let cluster = match ov.cluster {
        Some(c) => check_name(&c.value, false).map(|_| c.value).map_err(|m| ConfigError::env(c.var, "cluster", m))?,
        None => {
            let path = root.key("cluster");
            let c = ctx.non_empty(&path, raw.cluster, "the cluster name, e.g. `cluster: zookeeper`")?;
            check_name(&c, false).map_err(|m| ctx.err(&path, m))?;
            c
        }
    };
    let namespace = match ov.namespace {
        Some(n) => check_name(&n.value, true).map(|_| n.value).map_err(|m| ConfigError::env(n.var, "namespace", m))?,
        None => {
            let n = raw.namespace.unwrap_or_else(|| defaults::NAMESPACE.to_owned());
            check_name(&n, true).map_err(|m| ctx.err(&root.key("namespace"), m))?;
            n
        }
    };
    let port = ov.port.or(raw.port.map(|p| p.0)).unwrap_or(defaults::PORT);
    let mut ports: BTreeMap<u16, u16> = raw.ports.unwrap_or_default().into_iter().map(|p| (p.0, p.0)).collect();
    ports.insert(port, port);
    ports.extend(ov.port_remaps);

    let zk = {
        let target = match ov.zk {
            Some(z) => ZkTarget::parse(&z.value).map_err(|m| ConfigError::env(z.var, "zk", m))?,
            None => {
                ZkTarget::parse(raw.zk.as_deref().unwrap_or(defaults::ZK)).map_err(|m| ctx.err(&root.key("zk"), m))?
            }
        };
        let session_timeout = raw.zk_session_timeout.map_or_else(defaults::session_timeout, |d| d.0);
        if session_timeout < defaults::min_session_timeout() {
            return Err(ctx.err(
                &root.key("zk_session_timeout"),
                format!(
                    "expected at least {} (ZooKeeper refuses shorter sessions), got {}",
                    format_duration(defaults::min_session_timeout()),
                    format_duration(session_timeout)
                ),
            ));
        }
        ZkSettings { target, session_timeout }
    };

    let coordination = coordination(&ctx, raw.coordination.take(), zk.session_timeout)?;

    let binding = if ov.local {
        BindingKind::Local
    } else {
        match raw.binding.as_deref() {
            None => BindingKind::Auto,
            Some(b) => parse_binding(b).map_err(|m| ctx.err(&root.key("binding"), m))?,
        }
    };

    let model = model(&ctx, raw.model.unwrap_or_default())?;
    let process = match raw.process {
        Some(p) => Some(process(&ctx, p, ov.start)?),
        None => None,
    };
    let files = files(&ctx, raw.files.unwrap_or_default())?;
    let hooks = hooks(&ctx, raw.hooks.unwrap_or_default())?;
    let mut warnings = Vec::new();
    let control = control(&ctx, raw.control.unwrap_or_default(), &mut warnings)?;

    let settings = Settings {
        source: source.to_path_buf(),
        cluster,
        namespace,
        port,
        zk,
        coordination,
        binding,
        debug: ov.debug.or(raw.debug).unwrap_or(false),
        ports,
        application: ov.application.or(raw.application).unwrap_or_default(),
        task: ov.task.or(raw.task).unwrap_or_default(),
        model,
        process,
        files,
        hooks,
        control,
        warnings,
    };
    Ok(settings)
}

/// `OCHOPOD_ETCD` (non-empty) wins over `coordination:`; neither means ZooKeeper. The lease
/// lives as long as a ZooKeeper session would (`zk_session_timeout`).
fn coordination(ctx: &Ctx, raw: Option<String>, lease_ttl: Duration) -> Result<Coordination> {
    let target = match ctx.env.get(crate::etcd::ENV).filter(|v| !v.trim().is_empty()) {
        Some(v) => EtcdTarget::parse(v).map_err(|m| ConfigError::env(crate::etcd::ENV, "coordination", m))?,
        None => match raw {
            None => return Ok(Coordination::ZooKeeper),
            Some(text) => EtcdTarget::parse(&text).map_err(|m| ctx.err(&FieldPath::root().key("coordination"), m))?,
        },
    };
    Ok(Coordination::Etcd(EtcdSettings { target, lease_ttl }))
}

/// Cluster names are one token; namespaces may be several joined by dots (`my-app.staging`),
/// because ZooKeeper paths use `<namespace>.<cluster>` and dependency names split on the last dot.
fn check_name(name: &str, dotted: bool) -> std::result::Result<(), String> {
    let token_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok = if dotted { name.split('.').all(token_ok) } else { token_ok(name) };
    if ok {
        return Ok(());
    }
    let expected = if dotted {
        "letters, digits, `-` and `_`, in dot-separated parts (e.g. `my-app.staging`)"
    } else {
        "letters, digits, `-` and `_` only (dots separate the namespace from the cluster)"
    };
    Err(format!("expected {expected}, got `{name}`"))
}

const BINDINGS: [(&str, BindingKind); 6] = [
    ("auto", BindingKind::Auto),
    ("local", BindingKind::Local),
    ("marathon", BindingKind::Marathon),
    ("kubernetes", BindingKind::Kubernetes),
    ("ec2", BindingKind::Ec2),
    ("docker", BindingKind::Docker),
];

fn parse_binding(text: &str) -> std::result::Result<BindingKind, String> {
    if let Some((_, kind)) = BINDINGS.iter().find(|(name, _)| *name == text) {
        return Ok(*kind);
    }
    let names = BINDINGS.map(|(n, _)| n);
    match suggest(text, names) {
        Some(s) => Err(format!("unknown binding `{text}`, did you mean `{s}`?")),
        None => Err(format!("unknown binding `{text}`, expected one of {}", names.join(", "))),
    }
}

fn model(ctx: &Ctx, raw: RawModel) -> Result<ModelSettings> {
    let path = FieldPath::root().key("model");
    let depends_on = raw.depends_on.unwrap_or_default();
    for (i, dep) in depends_on.iter().enumerate() {
        if dep.trim().is_empty() || dep.contains(char::is_whitespace) {
            return Err(ctx.err(
                &path.key("depends_on").index(i),
                format!("expected a cluster name: relative (`zookeeper`), absolute (`/ns.kafka`) or a glob (`web-*`), got `{dep}`"),
            ));
        }
    }
    let probe = match raw.probe {
        None => None,
        Some(p) => {
            let path = path.key("probe");
            Some(Probe {
                command: ctx.non_empty(&path.key("command"), p.command, "a shell command")?,
                every: ctx.positive(&path.key("every"), p.every, defaults::probe_every())?,
                timeout: ctx.positive(&path.key("timeout"), p.timeout, defaults::probe_timeout())?,
            })
        }
    };
    let min_size = raw.min_size.unwrap_or(1);
    if min_size == 0 {
        return Err(ctx.err(&path.key("min_size"), "expected a number of pods of at least 1, got 0"));
    }
    Ok(ModelSettings {
        min_size: min_size as usize,
        depends_on,
        damper: raw.damper.map_or_else(defaults::damper, |d| d.0),
        sequential: raw.sequential.unwrap_or(false),
        full_shutdown: raw.full_shutdown.unwrap_or(false),
        grace: ctx.positive(&path.key("grace"), raw.grace, defaults::model_grace())?,
        probe,
    })
}

fn process(ctx: &Ctx, raw: RawProcess, start_override: Option<bool>) -> Result<ProcessSettings> {
    let path = FieldPath::root().key("process");
    let command = ctx.non_empty(&path.key("command"), raw.command, "the command to run (a template)")?;
    ctx.template(&path.key("command"), &command)?;
    if let Some(cwd) = &raw.cwd {
        if cwd.as_os_str().is_empty() {
            return Err(ctx.err(&path.key("cwd"), "must not be empty: expected a directory"));
        }
    }
    let env = raw.env.unwrap_or_default();
    for (name, value) in &env {
        let at = path.key("env").key(name);
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(ctx.err(&at, format!("expected an environment variable name (no `=`), got `{name}`")));
        }
        ctx.template(&at, value)?;
    }
    let sanity = match raw.sanity {
        None => None,
        Some(s) => Some(sanity(ctx, &path.key("sanity"), s)?),
    };
    let strict = raw.strict.unwrap_or(false);
    let mut restart = restart(ctx, &path.key("restart"), raw.restart.unwrap_or_default().0, strict)?;
    if strict {
        restart.when = RestartWhen::Always;
    }
    Ok(ProcessSettings {
        command,
        shell: raw.shell.unwrap_or(false),
        cwd: raw.cwd,
        env,
        strict,
        start: start_override.or(raw.start).unwrap_or(defaults::START),
        pipe_output: raw.pipe_output.unwrap_or(defaults::PIPE_OUTPUT),
        grace: raw.grace.map_or_else(defaults::process_grace, |d| d.0),
        soft: raw.soft.unwrap_or(false),
        sanity,
        restart,
    })
}

fn sanity(ctx: &Ctx, path: &FieldPath, raw: RawSanity) -> Result<Sanity> {
    let kinds = [("command", raw.command), ("http", raw.http), ("tcp", raw.tcp)];
    let given: Vec<(&str, String)> = kinds.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    let (kind, value) = match given.as_slice() {
        [] => return Err(ctx.err(path, "expected exactly one of `command:`, `http:` or `tcp:`, got none")),
        [one] => one.clone(),
        [first, second, ..] => {
            return Err(ctx.err(
                &path.key(second.0),
                format!(
                    "expected exactly one of `command:`, `http:` or `tcp:`, got both `{}` and `{}`",
                    first.0, second.0
                ),
            ))
        }
    };
    let at = path.key(kind);
    if value.trim().is_empty() {
        return Err(ctx.err(&at, "must not be empty"));
    }
    let check = match kind {
        "command" => SanityCheck::Command(value),
        "http" => {
            ctx.template(&at, &value)?;
            SanityCheck::Http(value)
        }
        _ => {
            ctx.template(&at, &value)?;
            SanityCheck::Tcp(value)
        }
    };
    Ok(Sanity {
        check,
        every: ctx.positive(&path.key("every"), raw.every, defaults::sanity_every())?,
        retries: raw.retries.unwrap_or(defaults::SANITY_RETRIES),
        timeout: ctx.positive(&path.key("timeout"), raw.timeout, defaults::sanity_timeout())?,
    })
}

fn restart(ctx: &Ctx, path: &FieldPath, raw: RawRestart, strict: bool) -> Result<RestartPolicy> {
    let when = raw.when.map(|w| w.0);
    if strict && when.is_some_and(|w| w != RestartWhen::Always) {
        let when = when.map_or("", |w| match w {
            RestartWhen::Dependencies => "dependencies",
            RestartWhen::Always => "always",
            RestartWhen::Changed => "changed",
        });
        return Err(ctx.err(
            &FieldPath::root().key("process").key("strict"),
            format!(
                "`strict: true` restarts the process on every round, which contradicts `restart: {when}`; keep one"
            ),
        ));
    }
    let initial_delay = raw.initial.map_or_else(defaults::restart_initial, |d| d.0);
    let max_delay = raw.max.map_or_else(defaults::restart_max, |d| d.0);
    if max_delay < initial_delay {
        return Err(ctx.err(
            &path.key("max"),
            format!(
                "expected at least `initial` ({}), got {}",
                format_duration(initial_delay),
                format_duration(max_delay)
            ),
        ));
    }
    let crashloop_after = raw.crashloop_after.unwrap_or(defaults::CRASHLOOP_AFTER);
    if crashloop_after == 0 {
        return Err(ctx.err(&path.key("crashloop_after"), "expected a number of failures of at least 1, got 0"));
    }
    Ok(RestartPolicy {
        when: when.unwrap_or_default(),
        initial_delay,
        max_delay,
        crashloop_after,
        reset_after: raw.reset_after.map_or_else(defaults::restart_reset_after, |d| d.0),
        give_up_after: raw.give_up_after.unwrap_or(defaults::GIVE_UP_AFTER),
    })
}

fn files(ctx: &Ctx, raw: Vec<RawFile>) -> Result<Vec<FileTemplate>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, f) in raw.into_iter().enumerate() {
        let at = FieldPath::root().key("files").index(i);
        let path = match f.path {
            Some(p) if !p.as_os_str().is_empty() => p,
            Some(_) => return Err(ctx.err(&at.key("path"), "must not be empty: expected the file to write")),
            None => return Err(ctx.err(&at.key("path"), "is required: expected the file to write")),
        };
        if path.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(ctx.err(
                &at.key("path"),
                format!("`{}` goes up with `..`: files are written inside the pod's folder", path.display()),
            ));
        }
        if path.is_absolute() && f.absolute != Some(true) {
            return Err(ctx.err(
                &at.key("path"),
                format!(
                    "`{}` is absolute: files are written inside the pod's folder; \
                     add `absolute: true` to this file to write there on purpose",
                    path.display()
                ),
            ));
        }
        let Some(template) = f.template else {
            return Err(ctx.err(&at.key("template"), "is required: expected the file's content (a template)"));
        };
        ctx.template(&at.key("template"), &template)?;
        out.push(FileTemplate { path, template, mode: f.mode.map(|m| m.0) });
    }
    Ok(out)
}

fn hooks(ctx: &Ctx, raw: RawHooks) -> Result<Hooks> {
    let path = FieldPath::root().key("hooks");
    let hook = |name: &str, raw: Option<RawHook>| -> Result<Option<Hook>> {
        let Some(h) = raw else { return Ok(None) };
        let at = path.key(name);
        // The string form has no `command` key to point at; the hook itself is the command.
        let command_at = if h.from_map { at.key("command") } else { at.clone() };
        Ok(Some(Hook {
            command: ctx.non_empty(&command_at, h.command, "a shell command")?,
            timeout: ctx.positive(&at.key("timeout"), h.timeout, defaults::hook_timeout())?,
        }))
    };
    Ok(Hooks {
        initialize: hook("initialize", raw.initialize)?,
        can_configure: hook("can_configure", raw.can_configure)?,
        configured: hook("configured", raw.configured)?,
        signaled: hook("signaled", raw.signaled)?,
        tear_down: hook("tear_down", raw.tear_down)?,
        finalize: hook("finalize", raw.finalize)?,
    })
}

/// `control.tls`: each file must be readable and hold what its field names, so a wrong path stops
/// the pod here rather than when it serves (`cert`, `key`) or at its first round as leader (`ca`).
/// Relative paths are read from the YAML file's folder, like `token_file`.
fn tls(ctx: &Ctx, at: &FieldPath, raw: RawTls) -> Result<Tls> {
    let cert = raw.cert.ok_or_else(|| ctx.err(&at.key("cert"), "is required: expected the certificate file (PEM)"))?;
    let key = raw.key.ok_or_else(|| ctx.err(&at.key("key"), "is required: expected the private key file (PEM)"))?;
    Ok(Tls {
        cert: pem_file(ctx, &at.key("cert"), cert, Pem::Certificates)?,
        key: pem_file(ctx, &at.key("key"), key, Pem::PrivateKey)?,
        ca: raw.ca.map(|ca| pem_file(ctx, &at.key("ca"), ca, Pem::Certificates)).transpose()?,
    })
}

enum Pem {
    Certificates,
    PrivateKey,
}

/// The full path of a PEM file that parses as `kind`. Errors never quote the file's content.
fn pem_file(ctx: &Ctx, at: &FieldPath, file: PathBuf, kind: Pem) -> Result<PathBuf> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let full = if file.is_relative() { ctx.dir.join(&file) } else { file };
    let bytes = std::fs::read(&full).map_err(|e| ctx.err(at, format!("cannot read {}: {e}", full.display())))?;
    let problem = match kind {
        Pem::Certificates => match CertificateDer::pem_slice_iter(&bytes).collect::<std::result::Result<Vec<_>, _>>() {
            Ok(certs) if certs.is_empty() => Some("no certificate in it (expected `BEGIN CERTIFICATE`)".to_string()),
            Ok(_) => None,
            Err(e) => Some(format!("not a PEM certificate file: {e}")),
        },
        Pem::PrivateKey => match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(_) => None,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                Some("no private key in it (expected `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)".to_string())
            }
            Err(e) => Some(format!("not a PEM private key file: {e}")),
        },
    };
    match problem {
        Some(p) => Err(ctx.err(at, format!("{}: {p}", full.display()))),
        None => Ok(full),
    }
}

/// Longest token file read: a token is a line, `/dev/zero` must not fill the memory.
const TOKEN_FILE_MAX: u64 = 64 * 1024;

/// The token file's text, and whether others than its owner may read it. Only a regular file is
/// opened (a FIFO would block `validate` forever, a device never end), and only so much is read.
fn read_token_file(path: &Path) -> std::result::Result<(String, bool), String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    let cannot = |e: std::io::Error| format!("cannot read the token file {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("the token file {} is not a regular file", path.display()));
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(TOKEN_FILE_MAX + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > TOKEN_FILE_MAX {
        return Err(format!("the token file {} is larger than {TOKEN_FILE_MAX} bytes", path.display()));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("the token file {} is not UTF-8 text", path.display()))?;
    Ok((text, meta.permissions().mode() & 0o077 != 0))
}

fn control(ctx: &Ctx, raw: RawControl, warnings: &mut Vec<String>) -> Result<ControlSettings> {
    let path = FieldPath::root().key("control");
    let (token, token_source) = match (raw.token_file, raw.token_env) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(&path.key("token_env"), "expected either `token_file` or `token_env`, not both"))
        }
        (Some(file), None) => {
            let at = path.key("token_file");
            let full = if file.is_relative() { ctx.dir.join(&file) } else { file };
            let (text, loose) = read_token_file(&full).map_err(|e| ctx.err(&at, e))?;
            if loose {
                warnings.push(format!(
                    "{}: {at}: the token file {} can be read by other users (chmod 600 it)",
                    ctx.file,
                    full.display()
                ));
            }
            let token = text.trim();
            if token.is_empty() {
                return Err(ctx.err(&at, format!("the token file {} is empty", full.display())));
            }
            (Some(Secret(token.to_owned())), Some(TokenSource::File(full)))
        }
        (None, Some(name)) => {
            let at = path.key("token_env");
            let token = ctx.env.get(&name).map(|t| t.trim()).unwrap_or_default();
            if token.is_empty() {
                return Err(ctx.err(&at, format!("the environment variable `{name}` is not set or empty")));
            }
            (Some(Secret(token.to_owned())), Some(TokenSource::Env(name)))
        }
        (None, None) => (None, None),
    };
    let protect_reads = raw.protect_reads.unwrap_or(false);
    if protect_reads && token.is_none() {
        return Err(ctx.err(&path.key("protect_reads"), "needs a token: set `token_file` or `token_env`"));
    }
    let tls = raw.tls.map(|t| tls(ctx, &path.key("tls"), t)).transpose()?;
    let body_limit = raw.body_limit.map_or(defaults::BODY_LIMIT, |s| s.0);
    if body_limit == 0 {
        return Err(ctx.err(&path.key("body_limit"), "expected a size greater than zero, e.g. `1MiB`"));
    }
    Ok(ControlSettings {
        token,
        token_source,
        protect_reads,
        tls,
        body_limit,
        log_lines: raw.log_lines.unwrap_or(defaults::LOG_LINES),
    })
}
