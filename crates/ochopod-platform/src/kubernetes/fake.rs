//! A fake Kubernetes API server on loopback, for tests: it answers the requests [`super::api`]
//! makes the way the API server does (the paths, verbs, status codes and `Status` bodies of the
//! real one) and records every request, so that tests assert on what the client sent.
//!
//! What it checks, as the API server would: the bearer token; that a body's `apiVersion` and
//! `kind` fit the path; that it deserializes into k8s-openapi's type and serialises back to the
//! same document (no unknown or misplaced field, no wrong type); names are DNS labels; a
//! StatefulSet's selector matches its template's labels, its volume mounts name its volumes, its
//! ports are in range and its downward-API `fieldPath`s are ones the API server accepts for
//! environment variables; a scale patch is a merge patch. A refused request is answered 422
//! `Invalid` and kept in [`FakeApi::rejected`].
//!
//! What it does not do: run anything. Its "controller" creates and removes a StatefulSet's pods
//! at once (`<name>-<ordinal>`, phase `Running`, an address in 10.0.0.0/8); deletion is
//! immediate whatever the propagation policy (`Orphan` aside, which leaves the pods); there is
//! no admission, no defaulting beyond what the client sees, no watch.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Option<Value>,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct State {
    /// `<group>/<namespace>/<plural>/<name>` → the stored object.
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    rejected: Vec<String>,
    version: u64,
    next_ip: u32,
}

pub struct FakeApi {
    pub url: String,
    pub token: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeApi {
    /// Listens on a free loopback port, served by its own thread (any test runtime will do).
    pub fn start(token: &str) -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake API server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let state = Arc::new(Mutex::new(State { next_ip: 1, ..Default::default() }));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (s, t) = (state.clone(), token.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        _ = &mut stopped => return,
                        a = listener.accept() => match a { Ok((stream, _)) => stream, Err(_) => continue },
                    };
                    let (s, t) = (s.clone(), t.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(s.clone(), t.clone(), req));
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        FakeApi { url, token: token.to_string(), state, stop: Some(stop), thread: Some(thread) }
    }

    /// A client of this server, as kube-rs builds one from a configuration.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("the fake's URL"));
        config.auth_info.token = Some(self.token.clone().into());
        kube::Client::try_from(config).expect("a client of the fake")
    }

    /// Writes a kubeconfig naming this server, its token and `namespace` (for a `KUBECONFIG`).
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: fake\n    namespace: {namespace}\n",
            url = self.url,
            token = self.token,
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Why requests were refused (empty when the client sent only what the API server accepts).
    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }

    /// The stored objects whose key starts with `prefix` (`core/demo/pods/`), by key.
    pub fn objects(&self, prefix: &str) -> BTreeMap<String, Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `(method, path)` of every request, in order, without the pod listings (`GET …/pods`).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.requests()
            .into_iter()
            .filter(|r| !(r.method == "GET" && r.path.contains("/pods")))
            .map(|r| (r.method, r.path))
            .collect()
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, body)
}

async fn handle(
    state: Arc<Mutex<State>>,
    token: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (content_type, auth) = (header("content-type"), header("authorization"));
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Option<Value> = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
    let mut s = state.lock().unwrap();
    let (code, answer) = if auth != format!("Bearer {token}") {
        status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into())
    } else {
        route(&mut s, &method, &path, &query, &content_type, body.clone(), bytes.is_empty())
    };
    if code == StatusCode::UNPROCESSABLE_ENTITY || code == StatusCode::BAD_REQUEST {
        let why = answer["message"].as_str().unwrap_or("").to_string();
        s.rejected.push(format!("{method} {path}: {why}"));
    }
    s.requests.push(Recorded { method, path, query, content_type, body, status: code.as_u16() });
    let response = Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("a response");
    Ok(response)
}

/// `(group, kind, apiVersion)` of a resource path's plural.
fn kind_of(group: &str, plural: &str) -> Option<(&'static str, &'static str)> {
    match (group, plural) {
        ("core", "configmaps") => Some(("ConfigMap", "v1")),
        ("core", "services") => Some(("Service", "v1")),
        ("core", "pods") => Some(("Pod", "v1")),
        ("apps", "statefulsets") => Some(("StatefulSet", "apps/v1")),
        _ => None,
    }
}

fn route(
    s: &mut State,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: Option<Value>,
    empty: bool,
) -> (StatusCode, Value) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", "namespaces", rest @ ..] => ("core", rest),
        ["apis", "apps", "v1", "namespaces", rest @ ..] => ("apps", rest),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {path}")),
    };
    let (ns, plural, name, sub) = match rest {
        [ns, plural] => (*ns, *plural, None, None),
        [ns, plural, name] => (*ns, *plural, Some(*name), None),
        [ns, plural, name, sub] => (*ns, *plural, Some(*name), Some(*sub)),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {path}")),
    };
    let Some((kind, api_version)) = kind_of(group, plural) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server does not serve {plural}"));
    };
    let prefix = format!("{group}/{ns}/{plural}/");
    match (method, name, sub) {
        ("GET", None, None) => {
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = s
                .objects
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .filter(|v| selects(&selector, &v["metadata"]["labels"]))
                .collect();
            let list = json!({
                "apiVersion": api_version, "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": s.version.to_string()}, "items": items,
            });
            (StatusCode::OK, list)
        }
        ("POST", None, None) => {
            let Some(body) = body else { return status(StatusCode::BAD_REQUEST, "BadRequest", "no body".into()) };
            let mut problems = check(kind, api_version, &body);
            if body["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
                problems.push(format!("metadata.namespace does not match the namespace of the request ({ns})"));
            }
            if !problems.is_empty() {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{kind} is invalid: {}", problems.join("; ")),
                );
            }
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = format!("{prefix}{name}");
            if s.objects.contains_key(&key) {
                return status(StatusCode::CONFLICT, "AlreadyExists", format!("{plural} \"{name}\" already exists"));
            }
            let stored = s.store(&key, ns, body);
            if kind == "StatefulSet" {
                s.reconcile(ns, &name);
            }
            (StatusCode::CREATED, stored)
        }
        ("GET", Some(name), None) => match s.objects.get(&format!("{prefix}{name}")) {
            Some(v) => (StatusCode::OK, v.clone()),
            None => status(StatusCode::NOT_FOUND, "NotFound", format!("{plural} \"{name}\" not found")),
        },
        ("PATCH", Some(name), Some("scale")) if kind == "StatefulSet" => {
            if content_type != "application/merge-patch+json" {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", content_type.to_string());
            }
            let key = format!("{prefix}{name}");
            if !s.objects.contains_key(&key) {
                return status(StatusCode::NOT_FOUND, "NotFound", format!("statefulsets.apps \"{name}\" not found"));
            }
            let replicas = body.as_ref().and_then(|b| b["spec"]["replicas"].as_i64());
            let extra = body.as_ref().and_then(Value::as_object).is_some_and(|o| o.keys().any(|k| k != "spec"));
            let Some(replicas) = replicas.filter(|r| *r >= 0 && !extra) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("a scale patch sets spec.replicas only: {body:?}"),
                );
            };
            s.version += 1;
            let version = s.version.to_string();
            let set = s.objects.get_mut(&key).expect("checked");
            set["spec"]["replicas"] = json!(replicas);
            set["metadata"]["resourceVersion"] = json!(version);
            let selector = set["spec"]["selector"]["matchLabels"].clone();
            s.reconcile(ns, name);
            let selector: Vec<String> = selector
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
                .unwrap_or_default();
            let scale = json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": version},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas, "selector": selector.join(",")},
            });
            (StatusCode::OK, scale)
        }
        ("DELETE", Some(name), None) => {
            let key = format!("{prefix}{name}");
            let options = body.unwrap_or_else(|| json!({}));
            let policy = options["propagationPolicy"].as_str();
            if !empty
                && (!options.is_object()
                    || policy.is_some_and(|p| !["Foreground", "Background", "Orphan"].contains(&p)))
            {
                return status(StatusCode::BAD_REQUEST, "BadRequest", format!("not DeleteOptions: {options}"));
            }
            let Some(gone) = s.objects.remove(&key) else {
                return status(StatusCode::NOT_FOUND, "NotFound", format!("{plural} \"{name}\" not found"));
            };
            if kind == "StatefulSet" && options["propagationPolicy"] != "Orphan" {
                let pods = format!("core/{ns}/pods/{name}-");
                s.objects.retain(|k, _| !(k.starts_with(&pods) && k[pods.len()..].parse::<u32>().is_ok()));
            }
            (StatusCode::OK, gone)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} {path}")),
    }
}

impl State {
    fn store(&mut self, key: &str, ns: &str, mut object: Value) -> Value {
        self.version += 1;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.version));
        meta["resourceVersion"] = json!(self.version.to_string());
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.objects.insert(key.to_string(), object.clone());
        object
    }

    /// The StatefulSet controller, instantly: pods `<name>-0..replicas`, the others removed.
    fn reconcile(&mut self, ns: &str, name: &str) {
        let Some(set) = self.objects.get(&format!("apps/{ns}/statefulsets/{name}")).cloned() else { return };
        let replicas = set["spec"]["replicas"].as_u64().unwrap_or(1);
        let prefix = format!("core/{ns}/pods/{name}-");
        self.objects
            .retain(|k, _| k.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()).is_none_or(|i| i < replicas));
        for i in 0..replicas {
            let key = format!("{prefix}{i}");
            if self.objects.contains_key(&key) {
                continue;
            }
            let template = &set["spec"]["template"];
            let mut labels = template["metadata"]["labels"].clone();
            labels["statefulset.kubernetes.io/pod-name"] = json!(format!("{name}-{i}"));
            let ip = format!("10.0.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1);
            self.next_ip += 1;
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-{i}"), "labels": labels},
                "spec": template["spec"].clone(),
                "status": {"phase": "Running", "podIP": ip, "hostIP": "10.1.0.1"},
            });
            self.store(&key, ns, pod);
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An equality-based label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated).
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels[k.trim()].is_null()
        } else {
            !labels[term.trim()].is_null()
        }
    })
}

/// What the API server would refuse in `object` (empty: nothing).
fn check(kind: &str, api_version: &str, object: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if object["kind"] != kind || object["apiVersion"] != api_version {
        problems.push(format!("expected {api_version} {kind}, got {} {}", object["apiVersion"], object["kind"]));
        return problems;
    }
    match kind {
        "ConfigMap" => round_trip::<ConfigMap>(object, &mut problems),
        "Service" => round_trip::<Service>(object, &mut problems),
        "StatefulSet" => round_trip::<StatefulSet>(object, &mut problems),
        _ => problems.push(format!("{kind} cannot be created here")),
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    if !dns_label(name) {
        problems.push(format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 label"));
    }
    for (k, v) in object["metadata"]["labels"].as_object().into_iter().flatten() {
        if !label_value(v.as_str().unwrap_or("-")) {
            problems.push(format!("metadata.labels: Invalid value: {v}: not a label value ({k})"));
        }
    }
    match kind {
        "Service" => {
            let mut names = Vec::new();
            for p in object["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    problems.push(format!("spec.ports.port: Invalid value: {port}"));
                }
                let n = p["name"].as_str().unwrap_or("");
                if names.contains(&n) || (object["spec"]["ports"].as_array().map_or(0, Vec::len) > 1 && !dns_label(n)) {
                    problems.push(format!("spec.ports.name: Invalid value: {n:?}"));
                }
                names.push(n);
            }
        }
        "StatefulSet" => check_stateful_set(object, &mut problems),
        _ => {}
    }
    problems
}

fn round_trip<T: Serialize + DeserializeOwned>(object: &Value, problems: &mut Vec<String>) {
    match serde_json::from_value::<T>(object.clone()) {
        Err(e) => problems.push(format!("does not decode: {e}")),
        Ok(typed) => {
            let back = serde_json::to_value(&typed).unwrap_or_default();
            if &back != object {
                problems.push(format!("unknown or misplaced fields: sent {object}, understood {back}"));
            }
        }
    }
}

/// Pod fields an environment variable's `fieldRef` may name (the API server's list).
const ENV_FIELDS: [&str; 10] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
    "metadata.labels",
];

fn check_stateful_set(o: &Value, problems: &mut Vec<String>) {
    let spec = &o["spec"];
    let selector = spec["selector"]["matchLabels"].as_object();
    let labels = &spec["template"]["metadata"]["labels"];
    match selector {
        Some(m) if !m.is_empty() => {
            if m.iter().any(|(k, v)| &labels[k] != v) {
                problems.push(
                    "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into(),
                );
            }
        }
        _ => problems.push("spec.selector: Required value: empty selector is invalid for statefulset".into()),
    }
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        problems.push("spec.replicas: must be greater than or equal to 0".into());
    }
    if !matches!(spec["podManagementPolicy"].as_str(), None | Some("Parallel") | Some("OrderedReady")) {
        problems.push(format!("spec.podManagementPolicy: Unsupported value: {}", spec["podManagementPolicy"]));
    }
    let pod = &spec["template"]["spec"];
    let volumes: Vec<&str> =
        pod["volumes"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        problems.push("spec.template.spec.containers: Required value".into());
    }
    for c in &containers {
        let name = c["name"].as_str().unwrap_or("");
        if !dns_label(name) {
            problems.push(format!("containers.name: Invalid value: {name:?}"));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("containers[{name}].image: Required value"));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if !(1..=65535).contains(&p["containerPort"].as_i64().unwrap_or(0)) {
                problems.push(format!("containers[{name}].ports: Invalid value: {p}"));
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let var = e["name"].as_str().unwrap_or("");
            let ok = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !ok {
                problems.push(format!("env.name: Invalid value: {var:?}"));
            }
            if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                if !ENV_FIELDS.iter().any(|f| {
                    path == *f || path.starts_with("metadata.labels[") || path.starts_with("metadata.annotations[")
                }) {
                    problems.push(format!("env[{var}].valueFrom.fieldRef.fieldPath: Unsupported value: {path:?}"));
                }
            }
            if e.get("value").is_some() && e.get("valueFrom").is_some() {
                problems.push(format!("env[{var}]: may not have both value and valueFrom"));
            }
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let v = m["name"].as_str().unwrap_or("");
            if !volumes.contains(&v) {
                problems.push(format!("volumeMounts[{v}].name: Not found"));
            }
            if !m["mountPath"].as_str().is_some_and(|p| p.starts_with('/')) {
                problems.push(format!("volumeMounts[{v}].mountPath: must be absolute"));
            }
        }
    }
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}
