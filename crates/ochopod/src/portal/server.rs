//! The portal's HTTP API: routes that translate HTTP to the tools and the platform, nothing more.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <token>`. Answers are JSON; errors
//! are `{"error": "...", "kind": "...", "exit_code": n, "message": "..."}` with a 4xx for bad
//! input (what is wrong, said plainly), 404 for what does not exist (naming what does), 5xx
//! when the coordination store (ZooKeeper or etcd) or the platform failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde_json::{json, Value};

use super::PortalArgs;
use crate::tools::remote::{tool_of, ToolReply, ToolRequest, TOOLS};
use crate::tools::{Common, ToolError};

/// What every route needs.
pub struct Portal {
    /// The token clients present; never logged.
    pub token: String,
    /// ZooKeeper (unused when `OCHOPOD_ETCD` selects etcd), the pods' token and CA: what the
    /// tools run with.
    pub common: Common,
    pub args: PortalArgs,
    pub platform: Option<Arc<dyn ochopod_platform::Platform>>,
    /// The etcd URL deployed pods get as `OCHOPOD_ETCD`, credentials included (`--deploy-etcd`,
    /// else the portal's own); `None`: they get `OCHOPOD_ZK`. Never logged or shown.
    pub deploy_etcd: Option<ochopod_config::Secret>,
}

/// An answer that is not a tool's reply.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, error: impl Into<String>) -> ApiError {
        let error = error.into();
        let code = if status.is_client_error() { 2 } else { 1 };
        ApiError {
            status,
            body: json!({"error": error, "kind": kind, "exit_code": code, "message": format!("error: {error}\n")}),
        }
    }

    pub fn bad(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", error)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.body[key] = value.into();
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.body["error"].as_str().unwrap_or("error"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(&self.body)
    }
}

impl From<ToolError> for ApiError {
    fn from(e: ToolError) -> ApiError {
        let status = match &e {
            ToolError::Usage(_) => StatusCode::BAD_REQUEST,
            ToolError::NoCluster(_) | ToolError::NoPods { .. } | ToolError::Gone(_) => StatusCode::NOT_FOUND,
            ToolError::ZooKeeper(_) => StatusCode::SERVICE_UNAVAILABLE,
            ToolError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body =
            json!({"error": e.to_string(), "kind": e.kind(), "exit_code": e.exit_code(), "message": e.message()});
        ApiError { status, body }
    }
}

/// Proof that the request carried the token.
pub struct Authorized;

impl actix_web::FromRequest for Authorized {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(authorize(req, false).map(|_| Authorized))
    }
}

/// Whether the request carried the portal's token (`Ok(true)`), or may read without it
/// (`open_reads`: `Ok(false)`); otherwise the 401 every route answers.
pub fn authorize(req: &HttpRequest, open_reads: bool) -> Result<bool, ApiError> {
    let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let token = req.app_data::<web::Data<Portal>>().is_some_and(|p| token_matches(&p.token, presented));
    if token || open_reads {
        Ok(token)
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        ))
    }
}

/// Comma-separated cluster globs (every cluster when absent or empty).
pub fn globs_of(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("").split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect()
}

/// No token expected (a read-only `ochopod dashboard`) matches nothing.
pub(super) fn token_matches(expected: &str, authorization: Option<&str>) -> bool {
    if expected.is_empty() {
        return false;
    }
    let Some((scheme, presented)) = authorization.and_then(|v| v.trim().split_once(' ')) else { return false };
    let (a, b) = (presented.trim().as_bytes(), expected.as_bytes());
    // Time that depends on the lengths only.
    scheme.eq_ignore_ascii_case("bearer")
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a JSON body (an empty one is `{}`), saying what is wrong with it.
pub fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("the request body is not a valid request: {e}")))
}

/// `POST /v1/<tool>`: the tool, run as the CLI runs it.
async fn tool(
    _: Authorized,
    portal: web::Data<Portal>,
    name: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if !TOOLS.contains(&name.as_str()) {
        return Err(not_found(&format!("no tool {name:?}")));
    }
    let request: ToolRequest = body(&bytes)?;
    let follow = name == "log" && request.follow;
    let tool = tool_of(&name, request, portal.common.clone())?;
    if follow {
        return super::follow::log(tool).await;
    }
    match crate::tools::report(tool).await {
        Ok(report) => Ok(HttpResponse::Ok().json(ToolReply::of(&*report))),
        Err(ToolError::NoCluster(globs)) => {
            let existing = super::deploy::cluster_names(&portal.common).await.unwrap_or_default();
            Err(ApiError::from(ToolError::NoCluster(globs)).with("clusters", existing))
        }
        Err(e) => Err(e.into()),
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("{what}: see the routes")).with("routes", routes())
}

fn routes() -> Vec<String> {
    let mut r: Vec<String> = TOOLS.iter().map(|t| format!("POST /v1/{t}")).collect();
    r.extend(
        [
            "GET /v1/events",
            "POST /v1/deploy",
            "POST /v1/scale",
            "POST /v1/delete",
            "GET /v1/platform",
            "GET /healthz",
            "POST /v1/log with \"follow\": true (a stream of JSON lines)",
            "GET / (the dashboard)",
            "GET /v1/dashboard",
            "GET /v1/dashboard/events",
            "GET /v1/dashboard/log",
        ]
        .map(String::from),
    );
    r
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "log_follows": super::follow::open()}))
}

async fn fallback(req: HttpRequest) -> HttpResponse {
    not_found(&format!("no route {} {}", req.method(), req.path())).error_response()
}

/// The routes, shared by the server and the tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(4 << 20))
        .app_data(
            web::QueryConfig::default().error_handler(|e, _| ApiError::bad(format!("bad query string: {e}")).into()),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/v1/events", web::get().to(super::events::events))
        .route("/v1/deploy", web::post().to(super::deploy::deploy_route))
        .route("/v1/scale", web::post().to(super::deploy::scale_route))
        .route("/v1/delete", web::post().to(super::deploy::delete_route))
        .route("/v1/platform", web::get().to(super::deploy::platform_route))
        .configure(super::dashboard::configure)
        .route("/v1/{tool}", web::post().to(tool))
        .default_service(web::to(fallback));
}

/// The token in `file` (trimmed), else in the variable `env`; empty when neither has one.
pub fn read_token(file: Option<&Path>, env: &str) -> Result<String, String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?,
        None => std::env::var(env).unwrap_or_default(),
    };
    Ok(token.trim().to_string())
}

/// What the tools run with in a server: ZooKeeper (checked), the pods' token file and CA.
pub fn common(zk: &str, pod_token_file: Option<PathBuf>, ca: Option<PathBuf>) -> Result<Common, String> {
    ochopod_config::ZkTarget::parse(zk).map_err(|e| format!("--zk {zk}: {e}"))?;
    Ok(Common {
        zk: zk.to_string(),
        token_file: pod_token_file,
        ca,
        json: true,
        pod_timeout: std::time::Duration::from_secs(5),
        portal: None,
    })
}

/// Logs to stderr at `level` unless `RUST_LOG` says otherwise.
pub fn init_logs(level: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .init();
}

/// Serves the routes (HTTPS with `tls`) on the portal's `--listen` until SIGTERM or SIGINT:
/// what `ochopod portal --serve` and `ochopod dashboard` run. `open_reads`: the dashboard's data
/// without the token. `banner` is said on stderr once listening.
pub async fn serve(
    what: &str,
    portal: Portal,
    open_reads: bool,
    tls: Option<ochopod_config::Tls>,
    banner: String,
) -> ExitCode {
    let listen = portal.args.listen;
    let tls = match tls.map(|t| ochopod_control::tls::server_config(&t)).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{what}: {e}");
            return ExitCode::from(1);
        }
    };
    let portal = web::Data::new(portal);
    let open = web::Data::new(super::dashboard::OpenReads);
    let server = HttpServer::new(move || {
        let app = App::new().app_data(portal.clone());
        let app = if open_reads { app.app_data(open.clone()) } else { app };
        app.configure(configure)
    })
    .workers(2)
    // Event and log streams never end by themselves: a stop waits this long for them.
    .shutdown_timeout(5)
    .disable_signals();
    let server = match tls {
        Some(config) => server.bind_rustls_0_23(listen, config),
        None => server.bind(listen),
    };
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            eprintln!("{what}: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(%listen, "serving");
    if !banner.is_empty() {
        eprintln!("{banner}");
    }
    let handle = server.handle();
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        handle.stop(true).await;
    };
    tokio::select! {
        r = server => if let Err(e) = r { eprintln!("{what}: {e}"); return ExitCode::from(1); },
        _ = stop => {},
    }
    ExitCode::SUCCESS
}

/// A store's target from the file `ochopod portal` wrote for its server (`option` names it),
/// checked by `parse`; errors name the option and the file, never the text.
fn read_target(option: &str, path: &Path, parse: impl Fn(&str) -> Result<(), String>) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{option} {}: {e}", path.display()))?;
    let target = text.trim().to_string();
    parse(&target).map_err(|e| format!("{option} {}: {e}", path.display()))?;
    Ok(target)
}

/// Reads `--zk-file` and `--deploy-zk-file` into `--zk` and `--deploy-zk`. Errors never quote
/// a connect string (it may hold credentials).
fn zk_of(args: &mut PortalArgs) -> Result<(), String> {
    let read = |option: &str, path: &Path| read_target(option, path, |t| ochopod_config::ZkTarget::parse(t).map(drop));
    if let Some(path) = &args.zk_file {
        args.zk = read("--zk-file", path)?;
    }
    if let Some(path) = &args.deploy_zk_file {
        args.deploy_zk = Some(read("--deploy-zk-file", path)?);
    }
    Ok(())
}

/// Reads `--etcd-file` into `OCHOPOD_ETCD` (the tools, the hub and deploy read etcd through
/// it), and says where deployed pods coordinate: `--deploy-etcd(-file)`, else that etcd. Called
/// before any thread starts. Errors never quote a URL (it may hold credentials).
fn etcd_of(args: &PortalArgs) -> Result<Option<ochopod_config::Secret>, String> {
    let read =
        |option: &str, path: &Path| read_target(option, path, |t| ochopod_config::EtcdTarget::parse(t).map(drop));
    if let Some(path) = &args.etcd_file {
        let url = read("--etcd-file", path)?;
        std::env::set_var(ochopod_config::etcd::ENV, url);
    }
    let own = std::env::var(ochopod_config::etcd::ENV).ok().filter(|u| !u.trim().is_empty());
    deploys_where_it_reads(args, own.is_some())?;
    let deploy = match (&args.deploy_etcd_file, &args.deploy_etcd) {
        (Some(path), _) => Some(read("--deploy-etcd-file", path)?),
        (None, Some(url)) => {
            ochopod_config::EtcdTarget::parse(&url.0).map_err(|e| format!("--deploy-etcd: {e}"))?;
            Some(url.0.clone())
        }
        (None, None) => own,
    };
    Ok(deploy.map(ochopod_config::Secret))
}

/// The portal watches deployed pods form in its own store: `--deploy-etcd` on a portal that
/// reads ZooKeeper is refused (the pods would never be seen to form).
pub fn deploys_where_it_reads(args: &PortalArgs, on_etcd: bool) -> Result<(), String> {
    if !on_etcd && (args.deploy_etcd.is_some() || args.deploy_etcd_file.is_some()) {
        return Err(format!(
            "--deploy-etcd: this portal reads ZooKeeper, where pods on etcd would never be seen to form; \
             give the portal {} too",
            ochopod_config::etcd::ENV
        ));
    }
    Ok(())
}

pub fn main(mut args: PortalArgs) -> ExitCode {
    init_logs("info");
    if let Err(e) = zk_of(&mut args) {
        eprintln!("ochopod portal: {e}");
        return ExitCode::from(2);
    }
    let deploy_etcd = match etcd_of(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ochopod portal: {e}");
            return ExitCode::from(2);
        }
    };
    let token = match read_token(args.token_file.as_deref(), "OCHOPOD_PORTAL_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            eprintln!(
                "ochopod portal: the portal needs a token for its clients: --token-file PATH or OCHOPOD_PORTAL_TOKEN"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ochopod portal: {e}");
            return ExitCode::from(2);
        }
    };
    let common = match common(&args.zk, args.pod_token_file.clone(), args.ca.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ochopod portal: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ochopod_config::Tls { cert: cert.clone(), key: key.clone(), ca: None }),
        _ => None,
    };
    actix_web::rt::System::new().block_on(async move {
        let platform = match super::deploy::platform(&args).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("ochopod portal: {e}");
                return ExitCode::from(1);
            }
        };
        let portal = Portal { token, common, args, platform, deploy_etcd };
        serve("ochopod portal", portal, false, tls, String::new()).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_token_passes() {
        assert!(token_matches("s3cret", Some("Bearer s3cret")));
        assert!(token_matches("s3cret", Some("bearer  s3cret ")));
        assert!(!token_matches("s3cret", Some("Bearer s3cre")));
        assert!(!token_matches("s3cret", Some("Basic s3cret")));
        assert!(!token_matches("s3cret", None));
        assert!(!token_matches("", Some("Bearer ")));
        assert!(!token_matches("", Some("Bearer")));
    }
}
