//! `ochopod validate` and `ochopod render`, run as a user would: the binary, its output and its
//! exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ochopod");

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// Runs the binary from the config crate's folder with an empty environment, so fixture paths
/// and messages are the ones recorded in `fixtures/bad/*.err`.
fn ochopod(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(config_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run ochopod")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn validate_prints_the_exact_error_of_every_bad_fixture_and_exits_2() {
    let bad = yaml_files(&config_dir().join("fixtures/bad"));
    assert!(bad.len() >= 12, "{bad:?}");
    for file in bad {
        let name = format!("fixtures/bad/{}", file.file_name().unwrap().to_string_lossy());
        let out = ochopod(&["validate", &name]);
        let expected = std::fs::read_to_string(file.with_extension("err")).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), expected.trim(), "{name}");
        assert!(out.stdout.is_empty(), "{name} printed settings");
    }
}

#[test]
fn validate_prints_the_settings_of_a_good_declaration_without_secrets() {
    let out = ochopod(&["validate", "fixtures/good/zookeeper.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cluster: zookeeper"), "{text}");
    assert!(text.contains("damper: 5s"), "{text}");

    let secrets = ochopod(&["validate", "fixtures/good/sidecar.yaml"]);
    assert_eq!(secrets.status.code(), Some(0), "{secrets:?}");
    let token = std::fs::read_to_string(config_dir().join("fixtures/good/secrets/ochopod-token")).unwrap();
    let text = String::from_utf8_lossy(&secrets.stdout);
    assert!(text.contains("token_source: file"), "{text}");
    assert!(!text.contains(token.trim()), "the token was printed: {text}");
}

#[test]
fn render_shows_the_command_env_and_files_for_a_cluster_view() {
    let dir = tempfile::tempdir().unwrap();
    let view = dir.path().join("view.json");
    let reg = |ip: &str, seq: u64| {
        serde_json::json!({"ip": ip, "public": ip, "node": "n", "port": "8080", "seq": seq,
            "ports": {"8080": 8080, "2181": 2181, "2888": 2888, "3888": 3888}})
    };
    std::fs::write(
        &view,
        serde_json::json!({"pods": {"a": reg("10.0.0.1", 4), "b": reg("10.0.0.2", 7)}, "dependencies": {}, "key": "b"})
            .to_string(),
    )
    .unwrap();
    let out = ochopod(&["render", "fixtures/good/zookeeper.yaml", "--cluster", view.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# pod b (index 1, seq 7, size 2)"), "{text}");
    assert!(text.contains("command: bin/zkServer.sh start-foreground"), "{text}");
    assert!(text.contains("env: ZOO_MY_ID=7"), "{text}");
    assert!(text.contains("server.4=10.0.0.1:2888:3888\nserver.7=10.0.0.2:2888:3888"), "{text}");

    let bad_key =
        ochopod(&["render", "fixtures/good/zookeeper.yaml", "--cluster", view.to_str().unwrap(), "--key", "zz"]);
    assert_eq!(bad_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("\"zz\" is not one of its pods"), "{bad_key:?}");
}

/// A ZooKeeper password given by the environment is used but never printed, and credentials the
/// session could not use are a load error: `ochopod run` exits 2 before touching ZooKeeper
/// (nothing listens at 127.0.0.1:1, so a run that got further would not exit on its own).
#[test]
fn zk_credentials_are_never_printed_and_unusable_ones_stop_run_at_load() {
    let with_env = |args: &[&str], zk: &str| {
        Command::new(BIN)
            .args(args)
            .current_dir(config_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OCHOPOD_ZK", zk)
            .output()
            .expect("run ochopod")
    };
    let out = with_env(&["validate", "fixtures/good/minimal.yaml"], "zk://bob:s3cret@127.0.0.1:1/apps");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hosts: 127.0.0.1:1") && text.contains("chroot: /apps"), "{text}");
    assert!(!text.contains("s3cret") && !String::from_utf8_lossy(&out.stderr).contains("s3cret"), "{out:?}");

    let expected = "env OCHOPOD_ZK: zk: expected `host:port[,host:port…]` or \
                    `zk://[user:pass@]host:port[,host:port…][/chroot]`; the credentials before `@` must be \
                    `user:password` (digest scheme)";
    for args in [["validate", "fixtures/good/minimal.yaml"], ["run", "fixtures/good/minimal.yaml"]] {
        let out = with_env(&args, "nos3cret@127.0.0.1:1");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().ends_with(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}
