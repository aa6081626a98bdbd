//! Rendering a declaration against a cluster view: the command line, the child's environment and
//! the files. Pure apart from reading nothing and writing nothing (writing is [`write_files`]), so
//! `ochopod render` shows exactly what a pod would run.
//!
//! Templates use minijinja with strict undefined behaviour: a typo (`{{ pod.prots }}`) is an error
//! naming the template, not an empty string that would start a broken process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::value::Value as JinjaValue;
use minijinja::{Environment, UndefinedBehavior};
use ochopod_config::{SanityCheck, Settings};
use ochopod_core::ClusterView;
use serde_json::json;

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

impl Renderer<'_> {
    fn render(&self, name: &str, template: &str) -> Result<String, RenderError> {
        self.jinja.render_named_str(name, template, self.ctx.clone()).map_err(|e| RenderError::Template {
            file: self.settings.source.clone(),
            name: name.to_string(),
            message: describe(&e),
        })
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

fn renderer<'a>(settings: &'a Settings, view: &ClusterView, env: &BTreeMap<String, String>) -> Renderer<'a> {
    let mut jinja = Environment::new();
    jinja.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
        jinja.set_syntax(syntax);
    }
    let shared = Arc::new(view.clone());
    jinja.add_function("grep", move |cluster: String, port: u16, public: Option<bool>| {
        shared.grep(&cluster, port, public.unwrap_or(false))
    });
    let ctx = json!({
        "pod": view.pod,
        "key": view.key,
        "index": view.index,
        "seq": view.seq,
        "size": view.size,
        "pods": view.pods,
        "dependencies": view.dependencies,
        "env": env,
        "epoch": view.epoch,
        "cluster": settings.cluster,
        "namespace": settings.namespace,
    });
    Renderer { settings, jinja, ctx: JinjaValue::from(minijinja::value::Serde(&ctx)) }
}

/// Render everything a configuration needs. `env` is ochopod's own environment; the template's
/// `env` and the base of the child's environment are what [`Settings::pod_env`] keeps of it (no
/// token variable, no ZooKeeper credentials), and the child does not get the token variable
/// even when `process.env` names it.
pub fn render(
    settings: &Settings,
    view: &ClusterView,
    env: &BTreeMap<String, String>,
) -> Result<Rendered, RenderError> {
    let env = &settings.pod_env(env).vars;
    let r = renderer(settings, view, env);
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
                command: command.clone(),
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
    child_env.extend(settings.ochopod_vars(Some(view)));
    if let Some(name) = settings.token_env() {
        child_env.remove(name);
    }
    Ok(Rendered { argv, env: child_env, files, sanity })
}

/// Write the rendered files (creating their folders), each through a temporary file and a rename
/// so that a process reading its configuration never sees half of it.
pub fn write_files(files: &[(PathBuf, String, Option<u32>)]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for (path, contents, mode) in files {
        let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.ochopod-tmp"));
        std::fs::write(&tmp, contents).map_err(|e| fail("write", e))?;
        if let Some(m) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*m)).map_err(|e| fail("chmod", e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))?;
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
        let r = render(&s, &view(), &env).unwrap();
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
        assert_eq!(render(&s, &view(), &BTreeMap::new()).unwrap().argv, vec!["echo", "a b", "c d", "e f"]);
        s.process.as_mut().unwrap().shell = true;
        let argv = render(&s, &view(), &BTreeMap::new()).unwrap().argv;
        assert_eq!(argv, vec!["sh", "-c", "echo \"a b\" 'c d' e\\ f"]);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_template() {
        let mut s = settings(Some("probe"));
        s.process.as_mut().unwrap().env.insert("X".into(), "{{ pod.prots }}".into());
        let e = render(&s, &view(), &BTreeMap::new()).unwrap_err();
        assert!(matches!(&e, RenderError::Template { name, .. } if name == "process.env.X"), "{e}");
        assert!(e.to_string().contains("pod.yml"), "{e}");
    }

    #[test]
    fn unbalanced_quotes_and_empty_commands_are_errors() {
        let s = settings(Some("probe 'oops"));
        assert!(matches!(render(&s, &view(), &BTreeMap::new()), Err(RenderError::Split { .. })));
        let s = settings(Some("{{ '' }}"));
        assert!(matches!(render(&s, &view(), &BTreeMap::new()), Err(RenderError::EmptyCommand { .. })));
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
        let r = render(&s, &view(), &env).unwrap();
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
        let r = render(&s, &view(), &BTreeMap::new()).unwrap();
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
        let r = render(&s, &view(), &env).unwrap();
        assert_eq!(r.files[0].1, "hidden o");
        assert_eq!(r.env.get("POD_TOKEN"), None);
        assert_eq!(r.env["OTHER"], "o");
        // A token from a file hides nothing.
        s.control.token_source = Some(ochopod_config::TokenSource::File("/run/secrets/token".into()));
        assert_eq!(render(&s, &view(), &env).unwrap().env["POD_TOKEN"], "declared");
    }

    #[test]
    fn files_are_written_whole_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.cfg");
        write_files(&[(path.clone(), "x=1\n".into(), Some(0o640))]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x=1\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
