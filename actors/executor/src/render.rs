//! Rendering a declaration against a cluster view: the command line, the child's environment and
//! the files. Pure apart from reading nothing and writing nothing (writing is [`write_files`]), so
//! `ochopod render` shows exactly what a pod would run.
//!
//! Templates use minijinja with strict undefined behaviour: a typo (`{{ pod.prots }}`) is an error
//! naming the template, not an empty string that would start a broken process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, Serde, Value as JinjaValue};
use minijinja::{Environment, UndefinedBehavior};
use ochopod_config::{SanityCheck, Settings};
use ochopod_core::ClusterView;

/// What a configuration produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The child's argv; `["sh", "-c", command]` when `process.shell`. Empty for a sidecar.
    pub argv: Vec<String>,
    /// The child's complete environment (the pod's + `process.env` + `OCHOPOD_*`).
    pub env: BTreeMap<String, String>,
    /// `(absolute path, contents, mode)` for every declared file.
    pub files: Vec<(PathBuf, String, Option<u32>)>,
    /// The sanity check with its target rendered (ports are only known once configured).
    pub sanity: Option<SanityCheck>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("{file}: template {name}: {message}")]
    Template { file: PathBuf, name: String, message: String },
    #[error("{file}: process.command rendered to {command:?}, which does not split into arguments: {message}")]
    Split { file: PathBuf, command: String, message: String },
    #[error("{file}: process.command rendered to an empty command")]
    EmptyCommand { file: PathBuf },
}

struct Renderer<'a> {
    settings: &'a Settings,
    jinja: Environment<'static>,
    ctx: JinjaValue,
}

/// The work one template may do: minijinja's fuel, about one unit per instruction and per 64
/// bytes of data made, so it bounds both the time (well under a second in a release build) and
/// the memory of a render. Real configurations use a few thousand.
pub const FUEL: u64 = 2_000_000;

/// The most one template may produce.
pub const MAX_OUTPUT: usize = 16 << 20;

/// A sink that refuses to grow past [`MAX_OUTPUT`].
struct Bounded {
    text: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Renderer<'_> {
    fn render(&self, name: &str, template: &str) -> Result<String, RenderError> {
        let fail = |message: String| RenderError::Template {
            file: self.settings.source.clone(),
            name: name.to_string(),
            message,
        };
        let compiled = self.jinja.template_from_named_str(name, template).map_err(|e| fail(describe(&e)))?;
        let mut out = Bounded { text: Vec::new(), over: false };
        match compiled.render_captured_to(self.ctx.clone(), &mut out) {
            Ok(_) => String::from_utf8(out.text).map_err(|e| fail(e.to_string())),
            Err(_) if out.over => Err(fail(format!("rendered more than {} MiB: refused", MAX_OUTPUT >> 20))),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(fail(format!(
                "too much work: the template ran out of fuel ({FUEL} steps; its loops or data are too large)"
            ))),
            Err(e) => Err(fail(describe(&e))),
        }
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn renderer<'a>(settings: &'a Settings, view: Arc<ClusterView>, env: &BTreeMap<String, String>) -> Renderer<'a> {
    let mut jinja = Environment::new();
    jinja.set_undefined_behavior(UndefinedBehavior::Strict);
    jinja.set_fuel(Some(FUEL));
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
        jinja.set_syntax(syntax);
    }
    let shared = view.clone();
    jinja.add_function("grep", move |cluster: String, port: u16, public: Option<bool>| {
        shared.grep(&cluster, port, public.unwrap_or(false))
    });
    let ctx = Context {
        view,
        env: env.clone(),
        cluster: settings.cluster.clone(),
        namespace: settings.namespace.clone(),
        pod: OnceLock::new(),
        pods: OnceLock::new(),
        dependencies: OnceLock::new(),
        env_value: OnceLock::new(),
    };
    Renderer { settings, jinja, ctx: JinjaValue::from_object(ctx) }
}

/// What templates see: `pod`, `key`, `index`, `seq`, `size`, `pods`, `dependencies`, `env`,
/// `epoch`, `cluster` and `namespace`. Each is made into a template value when a template first
/// reads it, once per render: a template that never reads `pods` does not pay for converting
/// every registration of the cluster, which made most of the CPU a pod of a 200-pod cluster
/// spent in each round (bench/findings.md, "Scale").
#[derive(Debug)]
struct Context {
    view: Arc<ClusterView>,
    env: BTreeMap<String, String>,
    cluster: String,
    namespace: String,
    pod: OnceLock<JinjaValue>,
    pods: OnceLock<JinjaValue>,
    dependencies: OnceLock<JinjaValue>,
    env_value: OnceLock<JinjaValue>,
}

impl Context {
    const FIELDS: &'static [&'static str] =
        &["cluster", "dependencies", "env", "epoch", "index", "key", "namespace", "pod", "pods", "seq", "size"];
}

impl Object for Context {
    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let once = |cell: &OnceLock<JinjaValue>, make: &dyn Fn() -> JinjaValue| cell.get_or_init(make).clone();
        let view = &self.view;
        Some(match key.as_str()? {
            "pod" => once(&self.pod, &|| JinjaValue::from(Serde(&view.pod))),
            "pods" => once(&self.pods, &|| JinjaValue::from(Serde(&view.pods))),
            "dependencies" => once(&self.dependencies, &|| JinjaValue::from(Serde(&view.dependencies))),
            "env" => once(&self.env_value, &|| JinjaValue::from(Serde(&self.env))),
            "key" => JinjaValue::from(view.key.as_str()),
            "index" => JinjaValue::from(view.index),
            "seq" => JinjaValue::from(view.seq),
            "size" => JinjaValue::from(view.size),
            "epoch" => JinjaValue::from(Serde(&view.epoch)),
            "cluster" => JinjaValue::from(self.cluster.as_str()),
            "namespace" => JinjaValue::from(self.namespace.as_str()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(Self::FIELDS)
    }
}

/// Render everything a configuration needs. `env` is ochopod's own environment; the template's
/// `env` and the base of the child's environment are what [`Settings::pod_env`] keeps of it (no
/// token variable, no ZooKeeper credentials), and the child does not get the token variable
/// even when `process.env` names it.
pub fn render(
    settings: &Settings,
    view: impl Into<Arc<ClusterView>>,
    env: &BTreeMap<String, String>,
) -> Result<Rendered, RenderError> {
    let view = view.into();
    let env = &settings.pod_env(env).vars;
    let r = renderer(settings, view.clone(), env);
    let base = settings.work_dir();
    let mut files = Vec::with_capacity(settings.files.len());
    for (i, f) in settings.files.iter().enumerate() {
        let name = format!("files[{i}] ({})", f.path.display());
        let contents = r.render(&name, &f.template)?;
        files.push((base.join(&f.path), contents, f.mode));
    }
    let mut child_env = env.clone();
    let mut argv = Vec::new();
    let mut sanity = None;
    if let Some(p) = &settings.process {
        for (k, v) in &p.env {
            child_env.insert(k.clone(), r.render(&format!("process.env.{k}"), v)?);
        }
        let command = r.render("process.command", &p.command)?;
        argv = if p.shell {
            vec!["sh".to_string(), "-c".to_string(), command]
        } else {
            shell_words::split(&command).map_err(|e| RenderError::Split {
                file: settings.source.clone(),
                // Shown in the log and to the leader: masked as `process started` is.
                command: if settings.debug { command.clone() } else { mask(&command, &child_env) },
                message: e.to_string(),
            })?
        };
        if argv.first().is_none_or(|a| a.trim().is_empty()) {
            return Err(RenderError::EmptyCommand { file: settings.source.clone() });
        }
        sanity = match p.sanity.as_ref().map(|s| &s.check) {
            Some(SanityCheck::Command(c)) => Some(SanityCheck::Command(r.render("process.sanity.command", c)?)),
            Some(SanityCheck::Http(u)) => Some(SanityCheck::Http(r.render("process.sanity.http", u)?)),
            Some(SanityCheck::Tcp(t)) => Some(SanityCheck::Tcp(r.render("process.sanity.tcp", t)?)),
            None => None,
        };
    }
    child_env.extend(settings.ochopod_vars(Some(&view)));
    if let Some(name) = settings.token_env() {
        child_env.remove(name);
    }
    Ok(Rendered { argv, env: child_env, files, sanity })
}

/// Variables whose values are no secret and too common to mask (`/root` in every path…).
const PLAIN: [&str; 12] =
    ["PATH", "HOME", "PWD", "OLDPWD", "SHELL", "TERM", "LANG", "USER", "LOGNAME", "HOSTNAME", "SHLVL", "TZ"];

/// What the log may show of `text` (a rendered command line): every value of `env` in it masked
/// as `***`, since the environment is where secrets come from and `/log` is served to anyone who
/// reaches the control port. Values of ochopod's own variables (`OCHOPOD_*`, `ochopod_*`), of a
/// few common ones (`PATH`, `HOME`, …) and of under 3 characters are left as they are.
pub fn mask(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut secrets: Vec<&str> = env
        .iter()
        .filter(|(name, value)| {
            !name.to_ascii_uppercase().starts_with("OCHOPOD_")
                && !PLAIN.contains(&name.as_str())
                && !name.starts_with("LC_")
                && value.chars().count() >= 3
        })
        .map(|(_, value)| value.as_str())
        .collect();
    // Longest first: a value that contains another is masked whole.
    secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut shown = text.to_string();
    for secret in secrets {
        if shown.contains(secret) {
            shown = shown.replace(secret, "***");
        }
    }
    shown
}

/// What differs between what a process was started with (`before`) and a new configuration, as
/// `/events` and the log name it: `command`, `env NAME` (never its value), `file PATH` (as
/// declared; its content or mode). `OCHOPOD_EPOCH` does not count: a new leader is no new
/// configuration.
pub fn changed_inputs(settings: &Settings, before: &Rendered, after: &Rendered) -> Vec<String> {
    let mut changed = Vec::new();
    if before.argv != after.argv {
        changed.push("command".to_string());
    }
    let names: std::collections::BTreeSet<&String> = before.env.keys().chain(after.env.keys()).collect();
    for name in names {
        if name != "OCHOPOD_EPOCH" && before.env.get(name) != after.env.get(name) {
            changed.push(format!("env {name}"));
        }
    }
    for i in 0..before.files.len().max(after.files.len()) {
        let (old, new) = (before.files.get(i), after.files.get(i));
        if old != new {
            let path = settings.files.get(i).map(|f| f.path.clone());
            let path = path.or_else(|| new.or(old).map(|f| f.0.clone())).unwrap_or_default();
            changed.push(format!("file {}", path.display()));
        }
    }
    changed
}

/// Write the rendered files (creating their folders), each through a temporary file and a rename
/// so that a process reading its configuration never sees half of it.
///
/// A file inside the pod's folder `root` (a relative `path:`; `..` is refused by validation) is
/// never written through a symlink that leads outside it, be it a folder on the way or the file
/// itself: such a file fails the configuration. Links that stay inside are followed.
pub fn write_files(files: &[(PathBuf, String, Option<u32>)], root: &Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let root = if root.as_os_str().is_empty() { Path::new(".") } else { root };
    for (path, contents, mode) in files {
        let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
        // `root.join(relative)`: the declaration put it inside the pod's folder.
        let inside = path.starts_with(root) || path.is_relative();
        if inside {
            confine(path, root)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
        }
        if inside {
            // Again, now that the folders exist: one may have been swapped for a link meanwhile.
            confine(path, root)?;
        }
        if unchanged(path, contents, *mode) {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.ochopod-tmp"));
        // A link in the way (planted, or left over) goes rather than being written through; the
        // file is then opened without following one.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&tmp).map_err(|e| fail("remove the link in the way of", e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| fail("write", e))?;
        file.write_all(contents.as_bytes()).map_err(|e| fail("write", e))?;
        drop(file);
        if let Some(m) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*m)).map_err(|e| fail("chmod", e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))?;
    }
    Ok(())
}

/// Whether `path` is already a regular file with these contents (and this mode, if one is
/// declared): it is then left alone. A process that watches its configuration sees no change
/// when there is none, and a round does not cost each pod a new file: replacing a file by
/// renaming takes a new inode, and on ext4 allocating inodes among thousands freed by earlier
/// rounds was most of what a pod of a 200-pod cluster spent per round (bench/findings.md).
fn unchanged(path: &Path, contents: &str, mode: Option<u32>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.is_file() || meta.len() != contents.len() as u64 {
        return false;
    }
    if mode.is_some_and(|m| meta.permissions().mode() & 0o7777 != m) {
        return false;
    }
    std::fs::read(path).is_ok_and(|old| old == contents.as_bytes())
}

/// Refuse `path` (inside `root`) when a part of it that exists is a symlink leading outside
/// `root`, or nowhere.
fn confine(path: &Path, root: &Path) -> Result<(), String> {
    let Ok(top) = root.canonicalize() else {
        // No folder yet: nothing under it exists to lead anywhere.
        return Ok(());
    };
    let relative = path.strip_prefix(root).unwrap_or(path);
    let mut at = root.to_path_buf();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Err(_) => break,
            Ok(m) if m.file_type().is_symlink() => match at.canonicalize() {
                Ok(target) if target.starts_with(&top) => {}
                Ok(target) => {
                    return Err(format!(
                        "refused to write {}: {} is a symlink to {}, outside the pod's folder {}",
                        path.display(),
                        at.display(),
                        target.display(),
                        top.display()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "refused to write {}: {} is a symlink that leads nowhere ({e})",
                        path.display(),
                        at.display()
                    ))
                }
            },
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{settings, view};

    #[test]
    fn renders_command_env_and_files_from_the_view() {
        let mut s = settings(Some("probe --id {{ seq }} --peers '{{ grep(\"zookeeper\", 2181) }}'"));
        s.process.as_mut().unwrap().env.insert("INDEX".into(), "{{ index }}/{{ size }}".into());
        s.files.push(ochopod_config::FileTemplate {
            path: "conf/servers.cfg".into(),
            template: "{% for p in pods %}server.{{ p.seq }}={{ p.ip }}:{{ p.ports[\"2888\"] }}\n{% endfor %}".into(),
            mode: Some(0o600),
        });
        let env = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        let r = render(&s, view(), &env).unwrap();
        assert_eq!(r.argv, vec!["probe", "--id", "7", "--peers", "10.0.1.1:31001,10.0.1.2:31002"]);
        assert_eq!(r.env["INDEX"], "1/2");
        assert_eq!(r.env["HOME"], "/root");
        assert_eq!(r.env["OCHOPOD_KEY"], "b");
        assert_eq!(r.env["OCHOPOD_EPOCH"], "4");
        assert_eq!(r.files.len(), 1);
        assert_eq!(r.files[0].0, PathBuf::from("/etc/ochopod/conf/servers.cfg"));
        assert_eq!(r.files[0].1, "server.9=10.0.0.1:2888\nserver.7=10.0.0.2:2888\n");
        assert_eq!(r.files[0].2, Some(0o600));
    }

    #[test]
    fn a_shell_command_runs_through_sh_and_quoting_is_respected_otherwise() {
        let mut s = settings(Some("echo \"a b\" 'c d' e\\ f"));
        assert_eq!(render(&s, view(), &BTreeMap::new()).unwrap().argv, vec!["echo", "a b", "c d", "e f"]);
        s.process.as_mut().unwrap().shell = true;
        let argv = render(&s, view(), &BTreeMap::new()).unwrap().argv;
        assert_eq!(argv, vec!["sh", "-c", "echo \"a b\" 'c d' e\\ f"]);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_template() {
        let mut s = settings(Some("probe"));
        s.process.as_mut().unwrap().env.insert("X".into(), "{{ pod.prots }}".into());
        let e = render(&s, view(), &BTreeMap::new()).unwrap_err();
        assert!(matches!(&e, RenderError::Template { name, .. } if name == "process.env.X"), "{e}");
        assert!(e.to_string().contains("pod.yml"), "{e}");
    }

    #[test]
    fn unbalanced_quotes_and_empty_commands_are_errors() {
        let s = settings(Some("probe 'oops"));
        assert!(matches!(render(&s, view(), &BTreeMap::new()), Err(RenderError::Split { .. })));
        let s = settings(Some("{{ '' }}"));
        assert!(matches!(render(&s, view(), &BTreeMap::new()), Err(RenderError::EmptyCommand { .. })));
    }

    #[test]
    fn a_sidecar_renders_files_only_and_the_env_is_in_the_context() {
        let mut s = settings(None);
        s.files.push(ochopod_config::FileTemplate {
            path: "/tmp/x".into(),
            template: "{{ env.WHO }} {{ key }} {{ epoch }}".into(),
            mode: None,
        });
        let env = BTreeMap::from([("WHO".to_string(), "me".to_string())]);
        let r = render(&s, view(), &env).unwrap();
        assert!(r.argv.is_empty());
        assert_eq!(r.files[0].1, "me b 4");
    }

    #[test]
    fn sanity_targets_are_templates() {
        let mut s = settings(Some("probe"));
        s.process.as_mut().unwrap().sanity = Some(ochopod_config::Sanity {
            check: SanityCheck::Tcp("{{ pod.ip }}:{{ pod.ports[\"8080\"] }}".into()),
            every: std::time::Duration::from_secs(1),
            retries: 1,
            timeout: std::time::Duration::from_secs(1),
        });
        let r = render(&s, view(), &BTreeMap::new()).unwrap();
        assert_eq!(r.sanity, Some(SanityCheck::Tcp("10.0.0.2:8080".into())));
    }

    #[test]
    fn the_token_variable_is_neither_in_the_template_env_nor_in_the_childs() {
        let mut s = settings(Some("probe"));
        s.control.token_source = Some(ochopod_config::TokenSource::Env("POD_TOKEN".into()));
        s.process.as_mut().unwrap().env.insert("POD_TOKEN".into(), "declared".into());
        s.files.push(ochopod_config::FileTemplate {
            path: "/tmp/x".into(),
            template: "{{ env.POD_TOKEN | default('hidden') }} {{ env.OTHER }}".into(),
            mode: None,
        });
        let env = BTreeMap::from([("POD_TOKEN".to_string(), "s3cret".to_string()), ("OTHER".into(), "o".into())]);
        let r = render(&s, view(), &env).unwrap();
        assert_eq!(r.files[0].1, "hidden o");
        assert_eq!(r.env.get("POD_TOKEN"), None);
        assert_eq!(r.env["OTHER"], "o");
        // A token from a file hides nothing.
        s.control.token_source = Some(ochopod_config::TokenSource::File("/run/secrets/token".into()));
        assert_eq!(render(&s, view(), &env).unwrap().env["POD_TOKEN"], "declared");
    }

    #[test]
    fn files_are_written_whole_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.cfg");
        write_files(&[(path.clone(), "x=1\n".into(), Some(0o640))], dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x=1\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_file_whose_contents_and_mode_did_not_change_is_left_alone() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cfg");
        write_files(&[(path.clone(), "x=1\n".into(), Some(0o640))], dir.path()).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        write_files(&[(path.clone(), "x=1\n".into(), Some(0o640))], dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "the same file, not a copy");
        // Another mode, other contents, same length: replaced each time.
        write_files(&[(path.clone(), "x=1\n".into(), Some(0o600))], dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        write_files(&[(path.clone(), "x=2\n".into(), Some(0o600))], dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x=2\n");
    }

    #[test]
    fn a_symlink_leading_outside_the_pods_folder_is_never_written_through() {
        let outside = tempfile::tempdir().unwrap();
        let pod = tempfile::tempdir().unwrap();
        let root = pod.path();
        std::os::unix::fs::symlink(outside.path(), root.join("conf")).unwrap();
        let e = write_files(&[(root.join("conf/x.cfg"), "x".into(), None)], root).unwrap_err();
        assert!(e.contains("conf is a symlink to") && e.contains("outside the pod's folder"), "{e}");
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("file.cfg")).unwrap();
        let e = write_files(&[(root.join("file.cfg"), "x".into(), None)], root).unwrap_err();
        assert!(e.contains("file.cfg is a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
        // A planted temporary file is replaced, not written through.
        std::fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("t"), root.join("data/.y.ochopod-tmp")).unwrap();
        write_files(&[(root.join("data/y"), "y".into(), None)], root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("data/y")).unwrap(), "y");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
        // Links inside the folder are followed; absolute files elsewhere are written as declared.
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        write_files(&[(root.join("alias/z"), "z".into(), None)], root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("real/z")).unwrap(), "z");
        write_files(&[(outside.path().join("abs"), "a".into(), None)], root).unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("abs")).unwrap(), "a");
    }

    #[test]
    fn templates_that_work_or_write_too_much_fail_naming_the_template() {
        let mut s = settings(Some("probe"));
        s.files.push(ochopod_config::FileTemplate {
            path: "loop.txt".into(),
            template: "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}".into(),
            mode: None,
        });
        let started = std::time::Instant::now();
        let e = render(&s, view(), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("files[0] (loop.txt)") && e.contains("ran out of fuel"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        s.files[0].template = "{{ 'x' * 20000000 }}".into();
        let e = render(&s, view(), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("files[0] (loop.txt)"), "{e}");
        s.files[0].template = "{% for a in range(20) %}{{ 'x' * 1000000 }}{% endfor %}".into();
        let e = render(&s, view(), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("files[0] (loop.txt)") && e.contains("rendered more than 16 MiB"), "{e}");
    }

    #[test]
    fn changed_inputs_name_the_command_env_and_files_but_not_the_epoch() {
        let mut s = settings(Some("probe {{ size }}"));
        s.files.push(ochopod_config::FileTemplate { path: "a.cfg".into(), template: "{{ index }}".into(), mode: None });
        s.process.as_mut().unwrap().env.insert("SECRET".into(), "{{ env.S }}".into());
        let env = BTreeMap::from([("S".to_string(), "one".to_string())]);
        let before = render(&s, view(), &env).unwrap();
        let mut v = view();
        v.epoch = Some(99);
        assert_eq!(changed_inputs(&s, &before, &render(&s, v.clone(), &env).unwrap()), Vec::<String>::new());
        let env2 = BTreeMap::from([("S".to_string(), "two".to_string())]);
        v.size = 3;
        v.index = 0;
        let changed = changed_inputs(&s, &before, &render(&s, v.clone(), &env2).unwrap());
        assert_eq!(
            changed,
            ["command", "env OCHOPOD_INDEX", "env OCHOPOD_SIZE", "env S", "env SECRET", "file a.cfg"],
            "values are never shown"
        );
    }

    #[test]
    fn values_from_the_environment_are_masked_but_ochopods_own_and_common_ones_are_not() {
        let env = BTreeMap::from([
            ("DB_PASSWORD".to_string(), "hunter22".to_string()),
            ("TOKEN".to_string(), "hunter22-and-more".to_string()),
            ("OCHOPOD_CLUSTER".to_string(), "zookeeper".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            ("N".to_string(), "1".to_string()),
        ]);
        assert_eq!(
            mask("run --pw hunter22 --token=hunter22-and-more --cluster zookeeper /root/x -n 1", &env),
            "run --pw *** --token=*** --cluster zookeeper /root/x -n 1"
        );
        let mut s = settings(Some("probe --pw '{{ env.DB_PASSWORD }}"));
        let e = render(&s, view(), &env).unwrap_err().to_string();
        assert!(e.contains("--pw '***") && !e.contains("hunter22"), "{e}");
        s.debug = true;
        let e = render(&s, view(), &env).unwrap_err().to_string();
        assert!(e.contains("hunter22"), "{e}");
    }
}
