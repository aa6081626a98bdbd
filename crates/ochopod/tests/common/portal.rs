//! `ochopod portal` (a pod whose process serves the API) and `ochopod dashboard`, started by a
//! test in a temp dir of their own, logging to `served.log` there, stopped with SIGTERM (then
//! killed, with everything below them) when dropped, also on panic, when their log is printed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ochopod_integration::ports::free_port;

use super::{wait, ZkServer, BIN};

pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:<port>` (`https://` with `--tls-cert`).
    pub url: String,
    /// The portal pod's control port (`PORT_8080`).
    pub control: u16,
    pub dir: tempfile::TempDir,
}

impl Served {
    /// `ochopod portal --listen 127.0.0.1:<free> --namespace test <extra>` on `zk`, with `token`
    /// for its clients (a `--platform` is for `extra` to say).
    pub fn portal(zk: &ZkServer, token: &str, extra: &[&str], env: &[(&str, String)]) -> Served {
        Served::portal_in(tempfile::tempdir().unwrap(), zk, token, extra, env)
    }

    /// [`Served::portal`] in `dir` (where a test wrote what the portal reads first).
    pub fn portal_in(
        dir: tempfile::TempDir,
        zk: &ZkServer,
        token: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Served {
        Served::portal_with(dir, &[("OCHOPOD_ZK", zk.connect_string())], token, extra, env)
    }

    /// [`Served::portal`] on etcd: `OCHOPOD_ETCD` is `etcd_url` (credentials included, as a user
    /// gives them) and `OCHOPOD_ZK` points nowhere, so a portal that read ZooKeeper would find
    /// nothing.
    pub fn portal_on_etcd(etcd_url: &str, token: &str, extra: &[&str], env: &[(&str, String)]) -> Served {
        let store = [("OCHOPOD_ETCD", etcd_url.to_string()), ("OCHOPOD_ZK", "127.0.0.1:1".to_string())];
        Served::portal_with(tempfile::tempdir().unwrap(), &store, token, extra, env)
    }

    /// The portal in `dir` with `store`: the variables that name its coordination store.
    pub fn portal_with(
        dir: tempfile::TempDir,
        store: &[(&str, String)],
        token: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Served {
        let api = free_port();
        let listen = format!("127.0.0.1:{api}");
        let mut args = vec!["portal", "--listen", &listen, "--namespace", "test"];
        args.extend_from_slice(extra);
        let scheme = if extra.contains(&"--tls-cert") { "https" } else { "http" };
        let control = free_port();
        let mut all = store.to_vec();
        all.extend([("OCHOPOD_PORTAL_TOKEN", token.to_string()), ("PORT_8080", control.to_string())]);
        all.extend(env.iter().cloned());
        let mut served = Served::start_in(dir, BIN, &args, &all, format!("{scheme}://{listen}"));
        served.control = control;
        served
    }

    /// `ochopod dashboard --listen 127.0.0.1:<free>` on `zk`, without a token.
    pub fn dashboard(zk: &ZkServer) -> Served {
        let api = free_port();
        let listen = format!("127.0.0.1:{api}");
        let env = [("OCHOPOD_ZK", zk.connect_string())];
        Served::start_in(
            tempfile::tempdir().unwrap(),
            BIN,
            &["dashboard", "--listen", &listen],
            &env,
            format!("http://{listen}"),
        )
    }

    /// `bin args` with `env` (and none of the caller's tokens, CA or portal), in `dir`.
    pub fn start_in(dir: tempfile::TempDir, bin: &str, args: &[&str], env: &[(&str, String)], url: String) -> Served {
        let log = std::fs::File::create(dir.path().join("served.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("OCHOPOD_PLATFORM_ROOT", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for k in [
            "OCHOPOD_TOKEN",
            "OCHOPOD_PORTAL_TOKEN",
            "OCHOPOD_CA",
            "OCHOPOD_PORTAL",
            "OCHOPOD_ETCD",
            "KUBERNETES_SERVICE_HOST",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start ochopod");
        Served { child, url, control: 0, dir }
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        self.url.split_once("://").map_or(&self.url, |(_, a)| a)
    }

    /// Waits until it answers: `/healthz` over HTTP, a connection over HTTPS.
    pub async fn ready(&self) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let (url, address, https) = (self.url.clone(), self.address().to_string(), self.url.starts_with("https"));
        wait::until("the server to answer", Duration::from_secs(40), || {
            let (http, url, address) = (http.clone(), url.clone(), address.clone());
            async move {
                if https {
                    return tokio::net::TcpStream::connect(&address).await.map(|_| ()).map_err(|e| e.to_string());
                }
                match http.get(format!("{url}/healthz")).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    /// `GET <route>` with the bearer `token`: the status and the JSON body (null if none).
    pub async fn get(&self, route: &str, token: &str) -> (u16, serde_json::Value) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let reply = http.get(format!("{}{route}", self.url)).bearer_auth(token).send().await.expect("it answers");
        let code = reply.status().as_u16();
        (code, reply.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("served.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = wait::until_blocking("the server to exit", Duration::from_secs(20), || match self.child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("running".to_string()),
        });
        kill_tree(&mut self.child);
        if std::thread::panicking() {
            eprintln!("---- server log:\n{}", self.log());
        }
    }
}

/// Kills a process and everything below it (the portal pod → its server; chromedriver →
/// chromium → its helpers).
pub fn kill_tree(child: &mut Child) {
    let tree = ochopod_integration::pods::descendants(child.id());
    let _ = child.kill();
    for pid in tree {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    // Its own process group too, for a helper that was reparented meanwhile.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// Runs the `ochopod` CLI as a user would, without the portal, token or store variables of the
/// test's own environment (only `env`'s): `(exit code, stdout, stderr)`.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("OCHOPOD_PORTAL")
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("OCHOPOD_ETCD")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
