//! Every route and status code, through `actix_web::test::init_service` and the same
//! `configure` the server uses, with probe actors behind the recipients.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use common::probe::{self, Options, Script};
use common::schema::{info_schema, validate};
use ochopod_api::Task;
use ochopod_control::{configure, ControlState};
use ochopod_executor::Reply;
use ochopod_leader::NotLeader;
use serde_json::{json, Value};

struct Got {
    code: u16,
    headers: HeaderMap,
    text: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

async fn send<S, B>(app: &S, req: TestRequest) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req.to_request()).await;
    let code = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = test::read_body(res).await;
    Got { code, headers, text: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn app(
    state: ControlState,
) -> impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(App::new().app_data(web::Data::new(state)).configure(configure)).await
}

fn post(path: &str) -> TestRequest {
    TestRequest::post().uri(path)
}

fn with_probes(opts: Options) -> (ControlState, std::sync::Arc<Script>) {
    probe::state(opts)
}

#[actix_web::test]
async fn info_answers_get_and_post_with_every_field_and_matches_the_schema() {
    let (state, _script) = with_probes(Options::default());
    let app = app(state).await;
    let schema = info_schema();
    for req in [TestRequest::get().uri("/info"), post("/info")] {
        let got = send(&app, req).await;
        assert_eq!(got.code, 200);
        assert!(got.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("application/json"));
        let js = got.json();
        assert_eq!(validate(&schema, &js), Vec::<String>::new(), "{js}");
        assert_eq!(js["process"], "running");
        assert_eq!(js["state"], "leader");
        assert_eq!(js["status"], "all good");
        assert_eq!(js["metrics"], json!({"lag": 0}));
        assert_eq!(js["seq"], 17);
        assert_eq!(js["restarts"], 1);
        assert_eq!(js["epoch"], 3);
        assert_eq!(js["dependencies"], json!(["kafka"]));
        assert_eq!(js["ports"], json!({"8080": 31080, "2181": 31181}));
        assert_eq!(js["port"], "8080");
        assert_eq!(js["cluster"], "zookeeper");
        assert_eq!(js["namespace"], "demo");
        assert_eq!(js["session"], "connected");
        assert!(js["uptime"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn the_schema_checker_rejects_what_it_should() {
    let schema = info_schema();
    let good = json!({"application":"","dependencies":[],"ip":"","metrics":{},"node":"","port":"8080",
        "ports":{"8080":8080},"process":"running","public":"","state":"follower","status":"","task":""});
    assert!(validate(&schema, &good).is_empty());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("status");
    assert!(validate(&schema, &missing)[0].contains("missing required property \"status\""));
    let mut extra = good.clone();
    extra["token"] = json!("s3cret");
    assert!(validate(&schema, &extra)[0].contains("/token: property not allowed"));
    let mut wrong = good.clone();
    wrong["port"] = json!(8080);
    wrong["ports"]["8080"] = json!(70000);
    wrong["process"] = json!("exploded");
    wrong["dependencies"] = json!([1]);
    assert_eq!(validate(&schema, &wrong).len(), 4, "{:?}", validate(&schema, &wrong));
}

#[actix_web::test]
async fn info_answers_with_what_is_known_when_an_actor_is_stuck() {
    let (mut state, script) = with_probes(Options::default());
    state.query_timeout = Duration::from_millis(200);
    script.leader_stuck.store(true, Ordering::SeqCst);
    let app = app(state).await;
    let start = Instant::now();
    let got = send(&app, post("/info")).await;
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(got.code, 200);
    let js = got.json();
    assert_eq!(js["state"], "unknown");
    assert_eq!(js["status"], "");
    assert_eq!(js["process"], "running");
    assert!(validate(&info_schema(), &js).is_empty());

    let got = send(&app, TestRequest::get().uri("/metrics")).await;
    assert_eq!(got.code, 200);
    assert!(got.text.contains("ochopod_up{actor=\"leader\"} 0"), "{}", got.text);
    assert!(got.text.contains("ochopod_up{actor=\"executor\"} 1"));
}

#[actix_web::test]
async fn control_maps_every_executor_reply_to_the_original_codes() {
    let (state, script) = with_probes(Options::default());
    script.reply(Task::Check, Reply::SoftFailure("can_configure said no".into()), Duration::ZERO);
    script.reply(Task::On, Reply::StaleEpoch { epoch: 2, newest: 3 }, Duration::ZERO);
    script.reply(Task::Ok, Reply::HookFailure("configured exited 1".into()), Duration::ZERO);
    script.reply(Task::Kill, Reply::Dead, Duration::ZERO);
    script.reply(Task::Off, Reply::BadRequest("off takes no payload field x".into()), Duration::ZERO);
    let app = app(state).await;

    let cases = [
        ("/control/check", 406, json!({"error": "can_configure said no"})),
        (
            "/control/on/5",
            409,
            json!({"error": "stale epoch 2: this pod already accepted epoch 3", "epoch": 2, "newest": 3}),
        ),
        ("/control/ok", 500, json!({"error": "configured exited 1"})),
        ("/control/kill/1", 410, json!({"error": "the pod is dead and idles"})),
        ("/control/off", 400, json!({"error": "off takes no payload field x"})),
        ("/control/signal/3", 200, json!({})),
    ];
    for (path, code, body) in cases {
        let got = send(&app, post(path)).await;
        assert_eq!((got.code, got.json()), (code, body), "{path}");
    }
    let got = send(&app, post("/control/signal").set_payload(r#"{"reload": true}"#)).await;
    assert_eq!((got.code, got.json()), (200, json!({"reload": true})));
}

#[actix_web::test]
async fn control_hands_the_task_and_body_to_the_executor() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    let payload = json!({"pods": {}, "dependencies": {}, "key": "abc", "epoch": 4});
    let got = send(&app, post("/control/on/5").set_json(&payload)).await;
    assert_eq!(got.code, 200);
    let got = send(&app, post("/control/check").set_payload("  \n")).await;
    assert_eq!(got.code, 200);

    let seen = script.commands();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].task, Task::On);
    assert_eq!(seen[0].body.as_ref().map(|b| b.to_value()), Some(payload));
    assert_eq!(seen[1].task, Task::Check);
    assert_eq!(seen[1].body, None, "a blank body is no body");
}

#[actix_web::test]
async fn unknown_tasks_and_bad_timeouts_are_400s_that_say_why() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    let got = send(&app, post("/control/reboot/5")).await;
    assert_eq!(got.code, 400);
    let js = got.json();
    assert_eq!(js["error"], "unknown task \"reboot\"");
    assert_eq!(js["tasks"], json!(["check", "on", "off", "ok", "kill", "signal"]));

    for bad in ["abc", "-1", "1.5", "86401"] {
        let got = send(&app, post(&format!("/control/on/{bad}"))).await;
        assert_eq!(got.code, 400, "{bad}");
        assert!(got.json()["error"].as_str().unwrap().starts_with("invalid timeout"), "{}", got.text);
    }
    assert!(script.commands().is_empty(), "nothing reached the executor");
}

#[actix_web::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    for path in ["/control/on/5", "/reset", "/reconfigure"] {
        let got =
            send(&app, post(path).insert_header(("content-type", "application/json")).set_payload("{\"pods\": ")).await;
        assert_eq!(got.code, 400, "{path}");
        let err = got.json()["error"].as_str().unwrap().to_string();
        assert!(err.starts_with("malformed JSON body: EOF while parsing"), "{err}");
        assert!(err.contains("line 1 column 9"), "{err}");
    }
    let got = send(&app, post("/control/signal").set_payload("hello")).await;
    assert_eq!(got.code, 400);
    assert!(got.json()["error"].as_str().unwrap().contains("expected value at line 1 column 1"));
    assert!(script.commands().is_empty());
    assert_eq!(script.resets.load(Ordering::SeqCst), 0);
}

#[actix_web::test]
async fn an_oversized_body_is_a_413() {
    let (state, script) = with_probes(Options { body_limit: 64, ..Default::default() });
    let app = app(state).await;
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(200));
    let got = send(&app, post("/control/on").set_payload(big.clone())).await;
    assert_eq!(got.code, 413);
    assert_eq!(got.json(), json!({"error": "request body over the limit of 64 bytes", "limit": 64}));
    // A body that does not declare its length is cut off while it streams in.
    let chunked = post("/control/on").set_payload(big).insert_header((header::CONTENT_LENGTH, "10"));
    assert_eq!(send(&app, chunked).await.code, 413);
    let fits = post("/control/on").set_payload(r#"{"pods": {}}"#);
    assert_eq!(send(&app, fits).await.code, 200);
    assert_eq!(script.commands().len(), 1);
}

#[actix_web::test]
async fn a_slow_command_gets_408_and_still_runs_after_the_queue_ahead_of_it() {
    let (state, script) = with_probes(Options::default());
    script.reply(Task::Off, Reply::Ok(json!({})), Duration::from_millis(1500));
    let app = app(state).await;
    // `off` keeps the executor busy; `on` waits in its mailbox past its 1 s timeout.
    let (off, on) = futures::join!(send(&app, post("/control/off/5")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&app, post("/control/on/1").set_payload(r#"{"key": "late"}"#)).await
    });
    assert_eq!(off.code, 200);
    assert_eq!(on.code, 408);
    let js = on.json();
    assert!(js["error"].as_str().unwrap().contains("stays queued"), "{js}");
    assert_eq!(js["timeout"], 1);

    let deadline = Instant::now() + Duration::from_secs(5);
    while script.commands().len() < 2 {
        assert!(Instant::now() < deadline, "the timed-out command never ran: {:?}", script.commands());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = script.commands();
    assert_eq!((seen[0].task, seen[1].task), (Task::Off, Task::On));
    assert_eq!(seen[1].body.as_ref().map(|b| b.to_value()), Some(json!({"key": "late"})));
}

#[actix_web::test]
async fn a_zero_timeout_answers_408_at_once_and_the_command_still_runs() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    assert_eq!(send(&app, post("/control/check/0")).await.code, 408);
    let deadline = Instant::now() + Duration::from_secs(5);
    while script.commands().is_empty() {
        assert!(Instant::now() < deadline, "the command never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn a_gone_executor_answers_410_like_the_originals_dead_actor() {
    let (mut state, _script) = with_probes(Options::default());
    let gone = probe::Gone.start();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.connected() {
        assert!(Instant::now() < deadline, "the Gone actor never stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state.executor = gone.recipient();
    let app = app(state).await;
    let got = send(&app, post("/control/on")).await;
    assert_eq!(got.code, 410);
    assert!(got.json()["error"].as_str().unwrap().contains("executor is gone"));
}

#[actix_web::test]
async fn mutating_routes_need_the_token_and_reads_follow_the_policy() {
    let (state, script) = with_probes(Options { token: Some("s3cret-token"), ..Default::default() });
    let app = app(state).await;
    for path in ["/control/on", "/control/check/5", "/reset", "/reconfigure"] {
        for auth in [None, Some("Bearer wrong"), Some("s3cret-token"), Some("Basic s3cret-token")] {
            let mut req = post(path);
            if let Some(a) = auth {
                req = req.insert_header((header::AUTHORIZATION, a));
            }
            let got = send(&app, req).await;
            assert_eq!(got.code, 401, "{path} with {auth:?}");
            assert_eq!(got.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer realm=\"ochopod\"");
            assert_eq!(got.json(), json!({"error": "missing or invalid bearer token"}));
            assert!(!got.text.contains("s3cret"), "the token never appears in a reply");
        }
        let ok = send(&app, post(path).insert_header((header::AUTHORIZATION, "Bearer s3cret-token"))).await;
        assert_eq!(ok.code, 200, "{path}: {}", ok.text);
    }
    assert_eq!(script.commands().len(), 2);
    assert_eq!(script.resets.load(Ordering::SeqCst), 1);
    assert_eq!(script.reconfigures.load(Ordering::SeqCst), 1);

    for path in ["/info", "/log", "/metrics"] {
        assert_eq!(send(&app, TestRequest::get().uri(path)).await.code, 200, "{path} is open by default");
        let info = send(&app, post(path)).await;
        assert_eq!(info.code, 200);
        assert!(!info.text.contains("s3cret"));
    }
}

#[actix_web::test]
async fn protected_reads_need_the_token_too() {
    let (state, _script) = with_probes(Options { token: Some("tok"), protect_reads: true, ..Default::default() });
    let app = app(state).await;
    for path in ["/info", "/log", "/metrics", "/events"] {
        assert_eq!(send(&app, TestRequest::get().uri(path)).await.code, 401, "{path}");
        assert_eq!(send(&app, post(path).insert_header((header::AUTHORIZATION, "Bearer nope"))).await.code, 401);
    }
    for path in ["/info", "/log", "/metrics"] {
        let got = send(&app, TestRequest::get().uri(path).insert_header((header::AUTHORIZATION, "Bearer tok"))).await;
        assert_eq!(got.code, 200, "{path}");
    }
    // Unknown routes say 404 whatever the token: they reveal nothing.
    assert_eq!(send(&app, TestRequest::get().uri("/nope")).await.code, 404);
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let (state, _script) = with_probes(Options::default());
    let app = app(state).await;
    for path in ["/", "/exec", "/terminate", "/info/", "/control", "/control/on/5/extra", "/nope?x=1"] {
        let got = send(&app, post(path)).await;
        assert_eq!(got.code, 404, "{path}");
        assert!(got.json()["error"].as_str().unwrap().starts_with("no route POST /"), "{}", got.text);
    }
    let cases = [
        (TestRequest::get().uri("/control/on"), "POST"),
        (TestRequest::get().uri("/control/on/5"), "POST"),
        (TestRequest::get().uri("/reset"), "POST"),
        (TestRequest::get().uri("/reconfigure"), "POST"),
        (TestRequest::put().uri("/info"), "GET, POST"),
        (TestRequest::delete().uri("/log"), "GET, POST"),
        (TestRequest::patch().uri("/metrics"), "GET, POST"),
    ];
    for (req, allow) in cases {
        let got = send(&app, req).await;
        assert_eq!(got.code, 405);
        assert_eq!(got.headers.get(header::ALLOW).unwrap(), allow);
        let js = got.json();
        assert!(js["error"].as_str().unwrap().starts_with("method "), "{js}");
        assert_eq!(js["allow"], allow);
    }
}

#[actix_web::test]
async fn reset_tells_the_session() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    let got = send(&app, post("/reset")).await;
    assert_eq!((got.code, got.json()), (200, json!({})));
    assert_eq!(script.resets.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn reconfigure_runs_a_round_on_the_leader_and_names_the_leader_elsewhere() {
    let (state, script) = with_probes(Options::default());
    let app = app(state).await;
    let got = send(&app, post("/reconfigure")).await;
    assert_eq!((got.code, got.json()), (200, json!({})));

    *script.not_leader.lock().unwrap() = Some(NotLeader { leader: Some("10.0.0.9:8080".into()) });
    let got = send(&app, post("/reconfigure")).await;
    assert_eq!((got.code, got.json()), (409, json!({"error": "not the leader", "leader": "10.0.0.9:8080"})));

    *script.not_leader.lock().unwrap() = Some(NotLeader { leader: None });
    let got = send(&app, post("/reconfigure")).await;
    assert_eq!((got.code, got.json()), (409, json!({"error": "not the leader", "leader": null})));
    assert_eq!(script.reconfigures.load(Ordering::SeqCst), 3);
}

#[actix_web::test]
async fn log_serves_the_ring_in_the_original_shape() {
    let (state, _script) = with_probes(Options::default());
    let ring = state.log.clone();
    for i in 0..5 {
        ring.push(format!("line {i}"));
    }
    let app = app(state).await;
    let got = send(&app, post("/log")).await;
    assert_eq!(got.code, 200);
    assert_eq!(got.json(), json!(["line 0\n", "line 1\n", "line 2\n", "line 3\n", "line 4\n"]));
    let got = send(&app, TestRequest::get().uri("/log?n=2")).await;
    assert_eq!(got.json(), json!(["line 3\n", "line 4\n"]));
    let got = send(&app, TestRequest::get().uri("/log?n=many")).await;
    assert_eq!(got.code, 400);
    assert!(got.json()["error"].as_str().unwrap().starts_with("invalid query string"), "{}", got.text);
}

#[actix_web::test]
async fn metrics_are_prometheus_text() {
    let (state, _script) = with_probes(Options::default());
    let app = app(state).await;
    let got = send(&app, TestRequest::get().uri("/metrics")).await;
    assert_eq!(got.code, 200);
    assert_eq!(got.headers.get(header::CONTENT_TYPE).unwrap(), "text/plain; version=0.0.4; charset=utf-8");
    for line in [
        "ochopod_process_state{state=\"running\"} 1",
        "ochopod_restarts_total 1",
        "ochopod_rounds_total{outcome=\"ok\"} 2",
        "ochopod_round_duration_seconds_sum 0.25",
        "ochopod_round_duration_seconds_count 2",
        "ochopod_leader 1",
        "ochopod_zk_session_state{state=\"connected\"} 1",
        "ochopod_sanity_failures_total 0",
        "ochopod_event_subscribers 0",
    ] {
        assert!(got.text.lines().any(|l| l == line), "missing {line:?} in\n{}", got.text);
    }
    assert!(got.text.lines().any(|l| l.starts_with("ochopod_uptime_seconds ")));
}
