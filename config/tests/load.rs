//! Loading whole declarations: defaults, the fixtures' values, environment overrides on top of
//! YAML, the token, and what `to_display_yaml` shows (and hides).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ochopod_config::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse(text: &str, env: &Env) -> Result<Settings, ConfigError> {
    parse_str(Path::new("pod.yaml"), text, env)
}

fn err(text: &str, env: &Env) -> String {
    match parse(text, env) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn minimal_declaration_gets_every_default() {
    let s = load(Path::new("fixtures/good/minimal.yaml"), &Env::new()).unwrap();
    let expected = Settings {
        source: PathBuf::from("fixtures/good/minimal.yaml"),
        cluster: "minimal".into(),
        namespace: defaults::NAMESPACE.into(),
        port: defaults::PORT,
        zk: ZkSettings {
            target: ZkTarget { hosts: defaults::ZK.into(), chroot: None, digest: None },
            session_timeout: defaults::session_timeout(),
        },
        coordination: Coordination::ZooKeeper,
        binding: BindingKind::Auto,
        debug: false,
        ports: BTreeMap::from([(8080, 8080)]),
        application: String::new(),
        task: String::new(),
        model: ModelSettings {
            min_size: 1,
            depends_on: vec![],
            damper: defaults::damper(),
            sequential: false,
            full_shutdown: false,
            grace: defaults::model_grace(),
            probe: None,
        },
        process: None,
        files: vec![],
        hooks: Hooks::default(),
        control: ControlSettings {
            token: None,
            token_source: None,
            protect_reads: false,
            tls: None,
            body_limit: defaults::BODY_LIMIT,
            log_lines: defaults::LOG_LINES,
        },
        warnings: vec![],
    };
    assert_eq!(s, expected);
}

#[test]
fn process_defaults() {
    let s = parse("cluster: c\nprocess: { command: run }", &Env::new()).unwrap();
    let p = s.process.unwrap();
    assert_eq!(
        p,
        ProcessSettings {
            command: "run".into(),
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            strict: false,
            start: true,
            pipe_output: true,
            grace: defaults::process_grace(),
            soft: false,
            sanity: None,
            restart: RestartPolicy {
                when: RestartWhen::Dependencies,
                initial_delay: defaults::restart_initial(),
                max_delay: defaults::restart_max(),
                crashloop_after: defaults::CRASHLOOP_AFTER,
                reset_after: defaults::restart_reset_after(),
                give_up_after: defaults::GIVE_UP_AFTER,
            },
        }
    );
    let s =
        parse("cluster: c\nprocess: { command: run, sanity: { command: ok } }\nhooks: { finalize: bye }", &Env::new())
            .unwrap();
    let sanity = s.process.unwrap().sanity.unwrap();
    assert_eq!(
        (sanity.every, sanity.retries, sanity.timeout),
        (defaults::sanity_every(), defaults::SANITY_RETRIES, defaults::sanity_timeout())
    );
    assert_eq!(s.hooks.finalize, Some(Hook { command: "bye".into(), timeout: defaults::hook_timeout() }));
}

#[test]
fn zookeeper_fixture_values() {
    let s = load(Path::new("fixtures/good/zookeeper.yaml"), &Env::new()).unwrap();
    assert_eq!((s.cluster.as_str(), s.namespace.as_str(), s.port), ("zookeeper", "demo", 8080));
    assert_eq!(s.ports, BTreeMap::from([(2181, 2181), (2888, 2888), (3888, 3888), (8080, 8080)]));
    assert_eq!(s.zk.target.hosts, "10.0.0.1:2181,10.0.0.2:2181");
    assert_eq!(s.zk.target.chroot.as_deref(), Some("/ochopod"));
    assert_eq!(s.zk.session_timeout, SECS(10));
    assert_eq!(s.binding, BindingKind::Local);
    assert!(s.model.sequential);
    assert_eq!((s.model.damper, s.model.grace), (SECS(5), SECS(60)));
    assert_eq!(s.model.probe.as_ref().unwrap().timeout, SECS(5));
    let p = s.process.as_ref().unwrap();
    assert_eq!(p.command, "bin/zkServer.sh start-foreground");
    assert_eq!(p.cwd.as_deref(), Some(Path::new("/opt/zookeeper")));
    assert_eq!(p.env["ZOO_MY_ID"], "{{ seq }}");
    let sanity = p.sanity.as_ref().unwrap();
    assert_eq!(sanity.check, SanityCheck::Tcp("127.0.0.1:{{ pod.ports['2181'] }}".into()));
    assert_eq!((sanity.every, sanity.retries, sanity.timeout), (SECS(10), 3, SECS(2)));
    assert_eq!(p.restart.initial_delay, Duration::from_millis(500));
    assert_eq!(p.restart.reset_after, SECS(60));
    assert_eq!(s.files.len(), 2);
    // Relative paths stay relative: the executor resolves them against `cwd`.
    assert_eq!(s.files[0].path, Path::new("conf/zoo.cfg"));
    assert_eq!(s.files[0].mode, Some(0o644));
    assert!(s.files[0].template.contains("{% for p in pods %}"));
    assert_eq!(s.files[1].mode, None);
    assert_eq!(s.hooks.configured, Some(Hook { command: "echo configured".into(), timeout: SECS(5) }));
    assert_eq!(s.hooks.can_configure.as_ref().unwrap().timeout, defaults::hook_timeout());
}

#[test]
fn sidecar_fixture_reads_its_token_and_never_shows_it() {
    let s = load(Path::new("fixtures/good/sidecar.yaml"), &Env::new()).unwrap();
    assert!(s.process.is_none());
    assert_eq!(s.namespace, "my-app.staging");
    assert_eq!(s.model.depends_on, vec!["web-*", "/other.kafka"]);
    assert_eq!(s.control.token, Some(Secret("not-a-real-token-fixture".into())));
    assert_eq!(s.control.token_source, Some(TokenSource::File("fixtures/good/secrets/ochopod-token".into())));
    assert!(s.control.protect_reads);
    assert_eq!((s.control.body_limit, s.control.log_lines), (512 * 1024, 200));
    let secret = "not-a-real-token-fixture";
    assert!(!format!("{s:?}").contains(secret));
    assert!(!serde_json::to_string(&s).unwrap().contains(secret));
    let shown = to_display_yaml(&s);
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("token_source: file fixtures/good/secrets/ochopod-token"), "{shown}");
}

#[test]
fn token_from_env_and_its_errors() {
    let yaml = "cluster: c\ncontrol: { token_env: MY_TOKEN }";
    let s = parse(yaml, &env(&[("MY_TOKEN", "s3cret\n")])).unwrap();
    assert_eq!(s.control.token, Some(Secret("s3cret".into())));
    assert_eq!(s.control.token_source, Some(TokenSource::Env("MY_TOKEN".into())));
    assert_eq!(
        err(yaml, &env(&[("MY_TOKEN", "")])),
        "pod.yaml:2:23: control.token_env: the environment variable `MY_TOKEN` is not set or empty"
    );
    assert_eq!(
        err("cluster: c\ncontrol:\n  protect_reads: true", &Env::new()),
        "pod.yaml:3:18: control.protect_reads: needs a token: set `token_file` or `token_env`"
    );
}

#[test]
fn token_files_are_bounded_regular_files_and_loose_ones_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(&yaml, "cluster: c\ncontrol: { token_file: token }\n").unwrap();
    let token = dir.path().join("token");

    std::fs::write(&token, "abc\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load(&yaml, &Env::new()).unwrap().warnings, Vec::<String>::new());
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = load(&yaml, &Env::new()).unwrap().warnings;
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("can be read by other users") && !warnings[0].contains("abc"), "{warnings:?}");

    std::fs::write(&token, "x".repeat(100_000)).unwrap();
    let e = load(&yaml, &Env::new()).unwrap_err();
    assert!(e.message.contains("larger than 65536 bytes"), "{e}");

    // A FIFO nobody writes to used to block here forever.
    std::fs::remove_file(&token).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&token).status().expect("mkfifo (coreutils)");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let y = yaml.clone();
    std::thread::spawn(move || tx.send(load(&y, &Env::new()).map_err(|e| e.to_string())).unwrap());
    let e = rx.recv_timeout(Duration::from_secs(10)).expect("validation returned").unwrap_err();
    assert!(e.contains("is not a regular file"), "{e}");
}

#[test]
fn token_file_is_read_relative_to_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "  abc  \n").unwrap();
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(&yaml, "cluster: c\ncontrol: { token_file: token }\n").unwrap();
    let s = load(&yaml, &Env::new()).unwrap();
    assert_eq!(s.control.token, Some(Secret("abc".into())));
    assert_eq!(s.control.token_source, Some(TokenSource::File(dir.path().join("token"))));
    std::fs::write(dir.path().join("token"), "\n").unwrap();
    let e = load(&yaml, &Env::new()).unwrap_err();
    assert_eq!((e.line, e.column, e.field.as_str()), (2, 24, "control.token_file"));
    assert!(e.message.ends_with("is empty"), "{e}");
}

#[test]
fn zk_precedence_env_upper_then_lower_then_yaml() {
    let yaml = "cluster: c\nzk: yaml:2181";
    assert_eq!(parse(yaml, &Env::new()).unwrap().zk.target.hosts, "yaml:2181");
    let s = parse(yaml, &env(&[("ochopod_zk", "zk://lower:2181")])).unwrap();
    assert_eq!(s.zk.target.hosts, "lower:2181");
    let s = parse(yaml, &env(&[("ochopod_zk", "zk://lower:2181"), ("OCHOPOD_ZK", "upper:2181/root")])).unwrap();
    assert_eq!((s.zk.target.hosts.as_str(), s.zk.target.chroot.as_deref()), ("upper:2181", Some("/root")));
    let s = parse(yaml, &env(&[("OCHOPOD_ZK", "zk://user:pass@10.0.0.1:2181,10.0.0.2:2181/mesos")])).unwrap();
    assert_eq!(s.zk.target.hosts, "10.0.0.1:2181,10.0.0.2:2181");
    assert_eq!(s.zk.target.chroot.as_deref(), Some("/mesos"));
    assert_eq!(s.zk.target.digest, Some(Secret("user:pass".into())));
    assert_eq!(
        err(yaml, &env(&[("OCHOPOD_ZK", "zk://nohost")])),
        "env OCHOPOD_ZK: zk: expected `host:port[,host:port…]` or `zk://[user:pass@]host:port[,host:port…][/chroot]`; `nohost` has no port"
    );
}

#[test]
fn env_overrides_ids_flags_and_ports() {
    let yaml = "cluster: yaml\nnamespace: ns\nports: [2181]\nprocess: { command: run, start: true }";
    let s = parse(
        yaml,
        &env(&[
            ("ochopod_cluster", "from-env"),
            ("ochopod_namespace", "a.b"),
            ("ochopod_port", "9000"),
            ("ochopod_start", "false"),
            ("ochopod_debug", "true"),
            ("ochopod_application", "app"),
            ("ochopod_task", "task-1"),
            ("PORT_9000", "31000"),
            ("PORT_3888", "31888"),
        ]),
    )
    .unwrap();
    assert_eq!((s.cluster.as_str(), s.namespace.as_str(), s.port), ("from-env", "a.b", 9000));
    assert!(!s.process.unwrap().start);
    assert!(s.debug);
    assert_eq!((s.application.as_str(), s.task.as_str()), ("app", "task-1"));
    // The control port is always exposed; PORT_3888 adds a port the YAML did not list.
    assert_eq!(s.ports, BTreeMap::from([(2181, 2181), (3888, 31888), (9000, 31000)]));
}

#[test]
fn env_cluster_fills_a_missing_yaml_cluster_and_is_checked() {
    let s = parse("namespace: ns", &env(&[("ochopod_cluster", "zk")])).unwrap();
    assert_eq!(s.cluster, "zk");
    assert_eq!(
        err("cluster: ok", &env(&[("ochopod_cluster", "a.b")])),
        "env ochopod_cluster: cluster: expected letters, digits, `-` and `_` only (dots separate the namespace from the cluster), got `a.b`"
    );
    assert_eq!(
        err("cluster: ok", &env(&[("ochopod_debug", "1")])),
        "env ochopod_debug: debug: expected `true` or `false`, got `1`"
    );
    assert_eq!(
        err("cluster: ok", &env(&[("PORT_8080", "0")])),
        "env PORT_8080: ports: host port: expected a port number between 1 and 65535, got 0"
    );
}

#[test]
fn ochopod_local_forces_the_local_binding() {
    let s = parse("cluster: c\nbinding: kubernetes", &env(&[("ochopod_local", "true")])).unwrap();
    assert_eq!(s.binding, BindingKind::Local);
    let s = parse("cluster: c\nbinding: kubernetes", &env(&[("ochopod_local", "false")])).unwrap();
    assert_eq!(s.binding, BindingKind::Kubernetes);
}

#[test]
fn empty_or_unreadable_files() {
    assert_eq!(
        err("", &Env::new()),
        "pod.yaml:1:1: cluster: is required: expected the cluster name, e.g. `cluster: zookeeper`"
    );
    assert_eq!(
        err("# nothing\n---\n", &Env::new()),
        "pod.yaml:1:1: cluster: is required: expected the cluster name, e.g. `cluster: zookeeper`"
    );
    let e = load(Path::new("fixtures/none.yaml"), &Env::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "fixtures/none.yaml: cannot read the pod declaration: No such file or directory (os error 2)"
    );
    let e = err("- a\n- b\n", &Env::new());
    assert_eq!(e, "pod.yaml:1:1: invalid type: sequence, expected a mapping");
    let e = err("cluster: c\nprocess: run", &Env::new());
    assert_eq!(e, "pod.yaml:2:10: process: invalid type: string \"run\", expected a mapping");
}

#[test]
fn positions_in_flow_style_and_hooks() {
    assert_eq!(
        err("cluster: c\nhooks: { initialize: '' }", &Env::new()),
        "pod.yaml:2:22: hooks.initialize: must not be empty: expected a shell command"
    );
    assert_eq!(
        err("cluster: c\nhooks:\n  tear_down: { command: x, timeout: 0s }", &Env::new()),
        "pod.yaml:3:37: hooks.tear_down.timeout: expected a duration greater than zero, got `0s`"
    );
    assert_eq!(
        err("cluster: c\nprocess: { command: run, sanity: { http: '{{ x' } }", &Env::new()),
        "pod.yaml:2:42: process.sanity.http: invalid template: syntax error: unexpected end of input, expected end of variable block (line 1 of the template)"
    );
    assert_eq!(
        err("cluster: c\nmodel: { depends_on: [ok, 'a b'] }", &Env::new()),
        "pod.yaml:2:27: model.depends_on[1]: expected a cluster name: relative (`zookeeper`), absolute (`/ns.kafka`) or a glob (`web-*`), got `a b`"
    );
}

#[test]
fn scalars_are_read_as_text_where_text_is_expected() {
    let s =
        parse("cluster: 42\napplication: 7\nprocess: { command: run, env: { N: 3, B: true } }", &Env::new()).unwrap();
    assert_eq!((s.cluster.as_str(), s.application.as_str()), ("42", "7"));
    let p = s.process.unwrap();
    assert_eq!((p.env["N"].as_str(), p.env["B"].as_str()), ("3", "true"));
}

#[test]
fn display_yaml_reads_like_the_declaration() {
    let s = load(Path::new("fixtures/good/zookeeper.yaml"), &Env::new()).unwrap();
    let shown = to_display_yaml(&s);
    let v: serde_yaml::Value = serde_yaml::from_str(&shown).unwrap();
    assert_eq!(v["cluster"].as_str(), Some("zookeeper"));
    assert_eq!(v["zk"]["session_timeout"].as_str(), Some("10s"));
    assert_eq!(v["model"]["grace"].as_str(), Some("1m"));
    assert_eq!(v["process"]["restart"]["initial"].as_str(), Some("500ms"));
    assert_eq!(v["process"]["sanity"]["tcp"].as_str(), Some("127.0.0.1:{{ pod.ports['2181'] }}"));
    assert_eq!(v["files"][0]["mode"].as_str(), Some("0644"));
    assert_eq!(v["ports"][2888].as_u64(), Some(2888));
    assert_eq!(v["binding"].as_str(), Some("local"));
}

/// `ochopod validate` says which store the pod coordinates through, etcd's credentials hidden
/// as ZooKeeper's are.
#[test]
fn display_yaml_names_the_coordination_store_without_credentials() {
    let v = |s: &Settings| serde_yaml::from_str::<serde_yaml::Value>(&to_display_yaml(s)).unwrap();
    assert_eq!(v(&parse("cluster: c", &Env::new()).unwrap())["coordination"].as_str(), Some("zookeeper"));
    let secret = "etcd-s3cret-fixture";
    for s in [
        parse(&format!("cluster: c\ncoordination: etcd://root:{secret}@10.0.0.1:2379/p"), &Env::new()).unwrap(),
        parse("cluster: c", &env(&[("OCHOPOD_ETCD", &format!("etcd://root:{secret}@10.0.0.1:2379/p"))])).unwrap(),
    ] {
        let shown = to_display_yaml(&s);
        assert!(!shown.contains(secret), "{shown}");
        assert!(!format!("{s:?}").contains(secret));
        assert!(!serde_json::to_string(&s).unwrap().contains(secret));
        let etcd = &v(&s)["coordination"]["etcd"];
        assert_eq!(etcd["target"].as_str(), Some("etcd://10.0.0.1:2379/p"), "{shown}");
        assert_eq!(etcd["auth"].as_str(), Some("user (hidden)"));
        assert_eq!(etcd["lease_ttl"].as_str(), Some("15s"));
    }
}

/// The ZooKeeper password of a declaration is in none of the places settings are shown: load
/// errors, `Debug`, `Serialize`, `ochopod validate`'s YAML.
#[test]
fn zk_credentials_are_never_shown() {
    let secret = "zk-s3cret-fixture";
    let url = format!("zk://bob:{secret}@10.0.0.1:2181,10.0.0.2:2181/mesos");
    for s in [
        parse(&format!("cluster: c\nzk: {url}"), &Env::new()).unwrap(),
        parse("cluster: c", &env(&[("OCHOPOD_ZK", &url)])).unwrap(),
    ] {
        assert_eq!(s.zk.target.digest, Some(Secret(format!("bob:{secret}"))));
        assert!(!format!("{s:?}").contains(secret));
        assert!(!serde_json::to_string(&s).unwrap().contains(secret));
        let shown = to_display_yaml(&s);
        assert!(!shown.contains(secret), "{shown}");
        let v: serde_yaml::Value = serde_yaml::from_str(&shown).unwrap();
        assert_eq!(v["zk"]["hosts"].as_str(), Some("10.0.0.1:2181,10.0.0.2:2181"));
        assert_eq!(v["zk"]["chroot"].as_str(), Some("/mesos"));
        assert_eq!(v["zk"]["auth"].as_str(), Some("digest (hidden)"));
    }
    for bad in [
        format!("zk://bob:{secret}@10.0.0.1:0"),
        format!("zk://bob:{secret}@"),
        format!("bob{secret}@10.0.0.1:2181"),
        format!("bob:{secret}@10.0.0.1:2181/a//b"),
        format!("bob:{secret}/x@10.0.0.1:2181"),
    ] {
        let from_env = err("cluster: c", &env(&[("OCHOPOD_ZK", &bad)]));
        let from_yaml = err(&format!("cluster: c\nzk: '{bad}'"), &Env::new());
        for e in [from_env, from_yaml] {
            assert!(!e.contains(secret), "{e}");
        }
    }
}

/// The bug this parser fixes: a string the config took and the session then refused forever.
#[test]
fn credentials_without_a_password_fail_at_load_naming_the_source() {
    let expected = "expected `host:port[,host:port…]` or `zk://[user:pass@]host:port[,host:port…][/chroot]`; \
                    the credentials before `@` must be `user:password` (digest scheme)";
    assert_eq!(err("cluster: c", &env(&[("ochopod_zk", "nopass@h:2181")])), format!("env ochopod_zk: zk: {expected}"));
    assert_eq!(err("cluster: c\nzk: nopass@h:2181", &Env::new()), format!("pod.yaml:2:5: zk: {expected}"));
}

#[test]
fn every_duration_is_capped_at_a_day_naming_its_field() {
    assert_eq!(
        err("cluster: c\nmodel: { damper: 25h }", &Env::new()),
        "pod.yaml:2:18: model.damper: expected at most 24h, got `25h`"
    );
    assert_eq!(
        err("cluster: c\nprocess: { command: run, grace: 1000000000h }", &Env::new()),
        "pod.yaml:2:33: process.grace: expected at most 24h, got `1000000000h`"
    );
    assert_eq!(
        err("cluster: c\nhooks: { finalize: { command: x, timeout: 2d } }", &Env::new()),
        "pod.yaml:2:43: hooks.finalize.timeout: expected at most 24h, got `2d`"
    );
    let s = parse("cluster: c\nzk_session_timeout: 24h\nmodel: { damper: 1d, grace: 24h }", &Env::new()).unwrap();
    assert_eq!((s.model.damper, s.model.grace), (SECS(86_400), SECS(86_400)));
}

#[test]
fn restart_when_is_a_word_or_part_of_the_backoff_mapping_and_strict_means_always() {
    let when = |yaml: &str| parse(yaml, &Env::new()).unwrap().process.unwrap().restart;
    assert_eq!(when("cluster: c\nprocess: { command: run }").when, RestartWhen::Dependencies);
    assert_eq!(when("cluster: c\nprocess: { command: run, restart: changed }").when, RestartWhen::Changed);
    let r = when("cluster: c\nprocess:\n  command: run\n  restart: { when: changed, initial: 2s }");
    assert_eq!((r.when, r.initial_delay), (RestartWhen::Changed, Duration::from_secs(2)));
    assert_eq!(when("cluster: c\nprocess: { command: run, strict: true }").when, RestartWhen::Always);
    assert_eq!(when("cluster: c\nprocess: { command: run, strict: true, restart: always }").when, RestartWhen::Always);
    assert_eq!(
        err("cluster: c\nprocess:\n  command: run\n  strict: true\n  restart: changed\n", &Env::new()),
        "pod.yaml:4:11: process.strict: `strict: true` restarts the process on every round, which contradicts \
         `restart: changed`; keep one"
    );
    let e = err("cluster: c\nprocess:\n  command: run\n  restart: { when: sometimes }\n", &Env::new());
    assert!(e.starts_with("pod.yaml:4:20: process.restart.when: expected `dependencies`"), "{e}");
    let shown =
        to_display_yaml(&parse("cluster: c\nprocess: { command: run, restart: changed }", &Env::new()).unwrap());
    assert!(shown.contains("when: changed"), "{shown}");
}
