//! EC2: the instance metadata (IMDSv2: a session token first, then each value with it) gives the
//! private address, the instance id and the public address (absent in a VPC without one). Ports
//! are the published ones (`PORT_<n>`); Marathon ids and the Mesos ZooKeeper are taken when the
//! instance is a Mesos agent, as the original's `marathon (ec2)` binding did.

use std::time::Duration;

use ochopod_config::Settings;
use reqwest::StatusCode;

use crate::marathon::{app_id, mesos_zk};
use crate::{listen_all, parse_ip, BindingError, Found, Platform};

const B: &str = "ec2";
/// The token is used at once; a short life limits what a leaked one is worth.
const TOKEN_TTL_SECONDS: &str = "60";

pub(crate) async fn resolve(settings: &Settings, platform: &Platform) -> Result<Found, BindingError> {
    let imds = Metadata::new(platform)?;
    let token = imds.token().await?;
    let ip = imds.get(&token, "local-ipv4").await?.ok_or_else(|| imds.missing("local-ipv4"))?;
    let ip = parse_ip(B, "the metadata local-ipv4", &ip)?;
    let node = imds.get(&token, "instance-id").await?.ok_or_else(|| imds.missing("instance-id"))?;
    let public = match imds.get(&token, "public-ipv4").await? {
        Some(p) => parse_ip(B, "the metadata public-ipv4", &p)?.to_string(),
        None => String::new(),
    };
    Ok(Found {
        binding: B,
        ip,
        public,
        node,
        ports: settings.ports.clone(),
        application: platform.var("MARATHON_APP_ID").map(app_id),
        task: platform.var("MESOS_TASK_ID").map(str::to_string),
        zk: mesos_zk(B, platform)?,
        listen: listen_all(settings),
    })
}

struct Metadata {
    base: String,
    client: reqwest::Client,
    /// For messages: the client enforces it.
    timeout: Duration,
}

impl Metadata {
    fn new(platform: &Platform) -> Result<Self, BindingError> {
        let client = reqwest::Client::builder()
            .timeout(platform.timeout)
            .connect_timeout(platform.timeout)
            // A proxy would answer for another machine, or not at all.
            .no_proxy()
            .build()
            .map_err(|e| BindingError::Metadata { url: platform.ec2_metadata.clone(), detail: e.to_string() })?;
        Ok(Metadata { base: platform.ec2_metadata.clone(), client, timeout: platform.timeout })
    }

    fn error(&self, path: &str, detail: impl Into<String>) -> BindingError {
        BindingError::Metadata { url: format!("{}{path}", self.base), detail: detail.into() }
    }

    fn missing(&self, item: &str) -> BindingError {
        self.error(&format!("/latest/meta-data/{item}"), "not found (404)")
    }

    fn failed(&self, path: &str, e: reqwest::Error) -> BindingError {
        let detail = if e.is_timeout() { format!("no answer within {:?}", self.timeout) } else { without_url(e) };
        self.error(path, detail)
    }

    async fn token(&self) -> Result<String, BindingError> {
        let path = "/latest/api/token";
        let rsp = self
            .client
            .put(format!("{}{path}", self.base))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await
            .map_err(|e| self.failed(path, e))?;
        if !rsp.status().is_success() {
            return Err(self.error(path, format!("answered {} to the IMDSv2 token request", rsp.status())));
        }
        let token = rsp.text().await.map_err(|e| self.failed(path, e))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(self.error(path, "answered an empty IMDSv2 token"));
        }
        Ok(token.to_string())
    }

    /// The first line of a metadata item; `None` when it does not exist (404).
    async fn get(&self, token: &str, item: &str) -> Result<Option<String>, BindingError> {
        let path = format!("/latest/meta-data/{item}");
        let rsp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-aws-ec2-metadata-token", token)
            .send()
            .await
            .map_err(|e| self.failed(&path, e))?;
        match rsp.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => return Err(self.error(&path, format!("answered {s}"))),
            _ => {}
        }
        let text = rsp.text().await.map_err(|e| self.failed(&path, e))?;
        Ok(text.lines().next().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string))
    }
}

/// reqwest's message repeats the URL, which the error already names.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ochopod_core::Registration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::testing::*;
    use crate::{resolve, BindingError, Placement, Platform};

    /// A recorded instance metadata service on loopback: IMDSv2 only (a GET without the token
    /// it handed out gets 401, as on a real instance that requires v2).
    struct Imds {
        base: String,
        /// `METHOD path token-header` of every request, in order.
        seen: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Imds {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Imds {
        /// `items`: meta-data item → body; `token_status`: the answer to the token PUT;
        /// `stall`: a path whose request is never answered.
        async fn start(items: &[(&str, &str)], token_status: u16, stall: Option<&str>) -> Imds {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let items: BTreeMap<String, String> = items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let stall = stall.map(str::to_string);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else { return };
                    let (items, stall, log) = (items.clone(), stall.clone(), log.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        let mut words = head.split_whitespace();
                        let (method, path) =
                            (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
                                .map(|(_, v)| v.trim().to_string())
                        };
                        let token = header("x-aws-ec2-metadata-token");
                        log.lock().unwrap().push(format!("{method} {path} {}", token.clone().unwrap_or_default()));
                        if stall.as_deref() == Some(path.as_str()) {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        let (status, body) = match (method.as_str(), path.as_str()) {
                            ("PUT", "/latest/api/token")
                                if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
                            {
                                (token_status, "recorded-token".to_string())
                            }
                            ("GET", p) if token.as_deref() != Some("recorded-token") => {
                                (401, format!("no token for {p}"))
                            }
                            ("GET", p) => match p.strip_prefix("/latest/meta-data/").and_then(|i| items.get(i)) {
                                Some(body) => (200, body.clone()),
                                None => (404, "not found".into()),
                            },
                            _ => (400, "bad request".into()),
                        };
                        let rsp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(rsp.as_bytes()).await;
                    });
                }
            });
            Imds { base, seen, task }
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    const INSTANCE: [(&str, &str); 3] =
        [("local-ipv4", "127.0.0.4\n"), ("instance-id", "i-0d5d1b53a"), ("public-ipv4", "127.0.0.5")];

    async fn placement(imds: &Imds, pairs: &[(&str, &str)], root: &Path) -> Result<Placement, BindingError> {
        let mut pairs = pairs.to_vec();
        pairs.push(("OCHOPOD_EC2_METADATA", &imds.base));
        let env = env(&pairs);
        let yaml = format!("{YAML}binding: ec2\n");
        resolve(&settings(&yaml, &env), &Platform::new(env, root)).await
    }

    #[tokio::test]
    async fn instance_metadata_with_a_session_token() {
        let imds = Imds::start(&INSTANCE, 200, None).await;
        let root = tempfile::tempdir().unwrap();
        let p = placement(&imds, &[("PORT_8080", "31000"), ("ochopod_application", "app")], root.path()).await.unwrap();
        let expected = Registration {
            ip: "127.0.0.4".into(),
            public: "127.0.0.5".into(),
            node: "i-0d5d1b53a".into(),
            ports: BTreeMap::from([("2181".into(), 2181), ("2888".into(), 2888), ("8080".into(), 31000)]),
            port: "8080".into(),
            seq: 0,
            cluster: "zookeeper".into(),
            namespace: "demo".into(),
            application: "app".into(),
            task: "".into(),
            fwk: "ec2".into(),
            zk: "127.0.0.1:2181".into(),
            debug: "false".into(),
            start: "true".into(),
            local: "false".into(),
            extra: Default::default(),
        };
        assert_eq!(
            p,
            Placement {
                registration: expected,
                listen: "0.0.0.0:8080".parse().unwrap(),
                zk: None,
                binding: "ec2".into()
            }
        );
        assert_eq!(
            imds.seen(),
            [
                "PUT /latest/api/token ",
                "GET /latest/meta-data/local-ipv4 recorded-token",
                "GET /latest/meta-data/instance-id recorded-token",
                "GET /latest/meta-data/public-ipv4 recorded-token",
            ]
        );
    }

    #[tokio::test]
    async fn a_mesos_agent_on_ec2_without_a_public_address() {
        let imds = Imds::start(&INSTANCE[..2], 200, None).await;
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/etc/mesos/zk", "zk://127.0.0.6:2181/mesos");
        let pairs = [("MARATHON_APP_ID", "/demo/zk"), ("MESOS_TASK_ID", "demo_zk.1")];
        let p = placement(&imds, &pairs, root.path()).await.unwrap();
        assert_eq!(p.registration.public, "");
        assert_eq!((p.registration.application.as_str(), p.registration.task.as_str()), ("demo/zk", "demo_zk.1"));
        assert_eq!(p.registration.zk, "127.0.0.6:2181");
        assert_eq!(p.zk.map(|z| z.target.chroot), Some(Some("/mesos".into())));
    }

    #[tokio::test]
    async fn missing_and_malformed_metadata_are_named() {
        let root = tempfile::tempdir().unwrap();
        let msg = |r: Result<Placement, BindingError>| r.unwrap_err().to_string();
        let hint = "(not on EC2? OCHOPOD_EC2_METADATA overrides the address)";

        let imds = Imds::start(&INSTANCE, 403, None).await;
        assert_eq!(
            msg(placement(&imds, &[], root.path()).await),
            format!(
                "ec2 binding: instance metadata at {}/latest/api/token: answered 403 Forbidden to the IMDSv2 token request {hint}",
                imds.base
            )
        );
        let imds = Imds::start(&INSTANCE[1..], 200, None).await;
        assert_eq!(
            msg(placement(&imds, &[], root.path()).await),
            format!(
                "ec2 binding: instance metadata at {}/latest/meta-data/local-ipv4: not found (404) {hint}",
                imds.base
            )
        );
        let imds = Imds::start(&[("local-ipv4", "127.0.0.4"), ("public-ipv4", "127.0.0.5")], 200, None).await;
        assert_eq!(
            msg(placement(&imds, &[], root.path()).await),
            format!(
                "ec2 binding: instance metadata at {}/latest/meta-data/instance-id: not found (404) {hint}",
                imds.base
            )
        );
        let imds = Imds::start(&[("local-ipv4", "<html>"), ("instance-id", "i-1")], 200, None).await;
        assert_eq!(
            msg(placement(&imds, &[], root.path()).await),
            "ec2 binding: the metadata local-ipv4 is malformed: expected an IP address, got `<html>`"
        );

        // A metadata address that answers nothing costs the timeout, not a hang.
        let imds = Imds::start(&INSTANCE, 200, Some("/latest/api/token")).await;
        let started = std::time::Instant::now();
        assert_eq!(
            msg(placement(&imds, &[], root.path()).await),
            format!("ec2 binding: instance metadata at {}/latest/api/token: no answer within 1s {hint}", imds.base)
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

        // Nothing listens there: refused at once.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let env = env(&[("OCHOPOD_EC2_METADATA", &format!("http://{closed}"))]);
        let yaml = format!("{YAML}binding: ec2\n");
        let e = resolve(&settings(&yaml, &env), &Platform::new(env, root.path())).await.unwrap_err().to_string();
        assert!(e.starts_with(&format!("ec2 binding: instance metadata at http://{closed}/latest/api/token: ")), "{e}");
        assert!(e.ends_with(hint), "{e}");
    }
}
