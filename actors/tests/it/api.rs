//! The HTTP API over real loopback HTTP: an actix-web server on port 0
//! mounting `Api::configure`, awc as the client, the engine behind it.

use std::time::Duration;

use actix_web::{App, HttpServer};
use awc::http::StatusCode;
use bytes::Bytes;
use ferry_actors::api::{self, Api, Tokens};
use ferry_core::Principal;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::util::{DEADLINE, Harness};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const ROOT: &str = "root-token";

struct Server {
    base: String,
    client: awc::Client,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    fn start(h: &Harness) -> Self {
        let mut tokens = Tokens::new();
        tokens.insert(ALICE, Principal::user("alice"));
        tokens.insert(BOB, Principal::user("bob"));
        tokens.insert(ROOT, Principal::admin("root"));
        let api = Api::new(h.engine.clone(), move |req: &actix_web::HttpRequest| {
            let token = api::bearer_token(req).ok_or(api::AuthError::Missing)?;
            tokens.find(token).cloned().ok_or(api::AuthError::Invalid)
        });
        let server = HttpServer::new(move || App::new().configure(api.configure()))
            .workers(1)
            .disable_signals()
            // SSE streams never end by themselves: do not wait for them.
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder().timeout(DEADLINE).finish(),
            handle,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> (StatusCode, Value) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let mut res = match body {
            Some(body) => req
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await
                .unwrap(),
            None => req.send().await.unwrap(),
        };
        let bytes = res.body().limit(64 << 20).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (res.status(), value)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let body = Bytes::from(body.to_string());
        self.call("POST", path, Some(token), Some(body)).await
    }

    async fn text(&self, path: &str, token: &str) -> (StatusCode, String) {
        let mut res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body = res.body().await.unwrap();
        (res.status(), String::from_utf8_lossy(&body).into_owned())
    }
}

/// Reads SSE messages (`id`, `event`, `data`) until `want` of them have
/// arrived; comments are skipped.
struct Sse {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>>>,
    >,
    buffer: String,
}

#[derive(Debug, Clone)]
struct Message {
    id: Option<String>,
    event: String,
    data: Value,
}

impl Sse {
    async fn connect(server: &Server, query: &str, token: &str, last: Option<&str>) -> Self {
        let mut req = server
            .client
            .get(format!("{}/v1/events{query}", server.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(3600));
        if let Some(last) = last {
            req = req.insert_header(("Last-Event-ID", last));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        Self {
            body: Box::pin(res),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Message {
        let read = async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut message = Message {
                        id: None,
                        event: String::new(),
                        data: Value::Null,
                    };
                    let mut comment = true;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            message.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            message.event = v.to_owned();
                            comment = false;
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            message.data = serde_json::from_str(v).unwrap();
                        }
                    }
                    if !comment {
                        return message;
                    }
                }
                let chunk = self.body.next().await.expect("stream ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        actix_rt::time::timeout(DEADLINE, read)
            .await
            .expect("no event before the deadline")
    }

    /// The next message about `job` whose event is `event`.
    async fn wait(&mut self, job: &str, event: &str) -> Message {
        loop {
            let m = self.next().await;
            if m.event == event && m.data["job"] == job {
                return m;
            }
        }
    }
}

/// Creates alice's job with files from the origin, resumed or not.
async fn job_with(h: &Harness, s: &Server, files: &[(&str, u64)]) -> String {
    let (status, job) = s.post("/v1/jobs", ALICE, json!({"name": "api test"})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let specs: Vec<Value> = files
        .iter()
        .map(|(name, size)| {
            let path = format!("/{name}");
            h.origin.add(&path, *size);
            json!({"remote": h.origin.url(&path), "local": h.local(name)})
        })
        .collect();
    let (status, added) = s
        .post(&format!("/v1/jobs/{id}/files"), ALICE, Value::Array(specs))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, _) = s
        .call(
            "PATCH",
            &format!("/v1/jobs/{id}"),
            Some(ALICE),
            Some(Bytes::from(json!({"min_retry_delay_secs": 1}).to_string())),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    id
}

#[actix_rt::test]
async fn the_whole_lifecycle_over_http() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let (status, job) = s
        .post(
            "/v1/jobs",
            ALICE,
            json!({"name": "nightly", "priority": "high", "description": "d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(job["state"], "suspended");
    assert_eq!(job["priority"], "high");
    assert_eq!(job["type"], "download");
    assert_eq!(job["owner"], "alice");
    assert_eq!(job["progress"]["bytes_total"], 0);
    assert_eq!(job["error"], Value::Null);
    assert!(job["times"]["created"].as_str().unwrap().ends_with('Z'));
    let id = job["id"].as_str().unwrap().to_owned();

    h.origin.add("/one", 70_000);
    h.origin.add("/two", 1_000);
    // One file as an object, then a list.
    let (status, added) = s
        .post(
            &format!("/v1/jobs/{id}/files"),
            ALICE,
            json!({"remote": h.origin.url("/one"), "local": h.local("one")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(added["files"][0]["id"], 0);
    let (status, _) = s
        .post(
            &format!("/v1/jobs/{id}/files"),
            ALICE,
            json!([{"remote": h.origin.url("/two"), "local": h.local("two")}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut events = Sse::connect(&s, &format!("?job={id}"), ALICE, None).await;
    let (status, job) = s
        .post(&format!("/v1/jobs/{id}/resume"), ALICE, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(job["state"], "suspended");
    events.wait(&id, "job_transferred").await;

    let (status, job) = s.get(&format!("/v1/jobs/{id}"), ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "transferred");
    assert_eq!(job["progress"]["bytes_total"], 71_000);
    assert_eq!(job["progress"]["files_transferred"], 2);
    assert!(job["times"]["transfer_completed"].is_string());
    assert_eq!(job["files"].as_array().unwrap().len(), 2);
    assert_eq!(job["files"][0]["transferred"], true);
    // The same document without its files, on request.
    let (status, summary) = s.get(&format!("/v1/jobs/{id}?files=false"), ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert!(summary.get("files").is_none(), "{summary}");
    assert_eq!(summary["progress"], job["progress"]);
    let (status, err) = s.get(&format!("/v1/jobs/{id}?files=maybe"), ALICE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(job["files"][0]["completed"], false);

    let (status, answer) = s
        .post(&format!("/v1/jobs/{id}/complete"), ALICE, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], "complete");
    assert_eq!(answer["files"][0]["outcome"], "saved");
    assert_eq!(
        answer["files"][1]["local"],
        h.local("two").to_str().unwrap()
    );
    h.assert_file("one");
    h.assert_file("two");

    // Final: not listed, but its state and answer are kept.
    let (_, list) = s.get("/v1/jobs", ALICE).await;
    assert!(list["jobs"].as_array().unwrap().is_empty());
    let (status, job) = s.get(&format!("/v1/jobs/{id}"), ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "acknowledged");
    assert_eq!(job["answer"]["command"], "complete");
    assert_eq!(job["answer"]["result"], "complete");
    assert_eq!(job["files"][1]["completed"], true);
    // Without the files, the stored answer still names them.
    let (status, summary) = s.get(&format!("/v1/jobs/{id}?files=false"), ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert!(summary.get("files").is_none(), "{summary}");
    assert_eq!(summary["answer"], job["answer"]);
    // And nothing more may be done with it.
    let (status, err) = s
        .post(&format!("/v1/jobs/{id}/resume"), ALICE, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"], "invalid_state");
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let id = job_with(&h, &s, &[("f", 10)]).await;
    let job = |suffix: &str| format!("/v1/jobs/{id}{suffix}");
    let raw = |body: &str| Some(Bytes::from(body.to_owned()));

    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        Option<Bytes>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            raw("{not json"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            raw(r#"{"name":"x","extra":1}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            raw(r#"{"name":"x","priority":"urgent"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            raw(r#"{"name":"x","type":"upload"}"#),
            StatusCode::BAD_REQUEST,
            "unsupported",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            raw(&json!({"name": "n".repeat(300)}).to_string()),
            StatusCode::BAD_REQUEST,
            "string_too_long",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(ALICE),
            Some(Bytes::from(vec![b' '; api::MAX_BODY + 10])),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            None,
            raw(r#"{"name":"x"}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some("forged"),
            raw(r#"{"name":"x"}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "POST",
            job("/files"),
            Some(ALICE),
            raw(r#"{"remote":"ftp://x/y","local":"/tmp/y"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_remote_name",
        ),
        (
            "POST",
            job("/files"),
            Some(ALICE),
            raw(r#"{"remote":"http://x/y","local":"relative/y"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_local_name",
        ),
        (
            "POST",
            job("/files"),
            Some(ALICE),
            raw(r#"{"remote":"http://x/y","local":"/nonexistent-dir-ferry/y"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_local_name",
        ),
        (
            "POST",
            job("/files"),
            Some(ALICE),
            raw("[]"),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/jobs/not-a-uuid".into(),
            Some(ALICE),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
        ),
        (
            "GET",
            "/v1/jobs/0190d2f0-0000-7000-8000-000000000000".into(),
            Some(ALICE),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        // Others see nothing, not even that the job is there.
        (
            "GET",
            job(""),
            Some(BOB),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            job("/cancel"),
            Some(BOB),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/jobs?all=true".into(),
            Some(ALICE),
            None,
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            "GET",
            "/v1/jobs?all=maybe".into(),
            Some(ALICE),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            job("/take-ownership"),
            Some(ALICE),
            None,
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            "PATCH",
            job(""),
            Some(ALICE),
            raw(r#"{"description":"new","parallel_files":0}"#),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "PATCH",
            job(""),
            Some(ALICE),
            raw("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/nothing".into(),
            Some(ALICE),
            None,
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            "DELETE",
            "/v1/jobs".into(),
            Some(ALICE),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, token, body, status, code) in cases {
        let (got, err) = s.call(method, &path, token, body).await;
        assert_eq!(
            (got, err["error"].as_str()),
            (status, Some(code)),
            "{method} {path}: {err}"
        );
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing above changed the job.
    let (_, after) = s.get(&job(""), ALICE).await;
    assert_eq!(after["description"], "");
    assert_eq!(after["parallel_files"], 1);
    assert_eq!(after["state"], "suspended");
    assert_eq!(after["files"].as_array().unwrap().len(), 1);
    let (_, list) = s.get("/v1/jobs", ALICE).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);

    // An empty job cannot be resumed; a cancelled one cannot be changed.
    let (_, empty) = s.post("/v1/jobs", ALICE, json!({"name": "empty"})).await;
    let empty = empty["id"].as_str().unwrap();
    let (status, err) = s
        .post(&format!("/v1/jobs/{empty}/resume"), ALICE, json!({}))
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::CONFLICT, Some("empty_job"))
    );
    let (status, answer) = s
        .post(&format!("/v1/jobs/{empty}/cancel"), ALICE, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"], "ok");
    let (status, err) = s
        .call(
            "PATCH",
            &format!("/v1/jobs/{empty}"),
            Some(ALICE),
            raw(r#"{"priority":"low"}"#),
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );

    // An admin sees and acts on everyone's jobs.
    let (status, all) = s.get("/v1/jobs?all=true", ROOT).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["jobs"].as_array().unwrap().len(), 1);
    let (status, taken) = s.post(&job("/take-ownership"), ROOT, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(taken["owner"], "root");
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn a_patch_applies_every_property_at_once() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let id = job_with(&h, &s, &[("p", 10)]).await;
    let patch = json!({
        "name": "renamed",
        "description": "about it",
        "priority": "low",
        "min_retry_delay_secs": 30,
        "no_progress_timeout_secs": 600,
        "max_download_time_secs": 3600,
        "parallel_files": 4,
        "max_bytes_per_second": 100000,
        "notify_command": {"program": "/bin/true", "args": ["x"]},
    });
    let (status, job) = s
        .call(
            "PATCH",
            &format!("/v1/jobs/{id}"),
            Some(ALICE),
            Some(Bytes::from(patch.to_string())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["name"], "renamed");
    assert_eq!(job["description"], "about it");
    assert_eq!(job["priority"], "low");
    assert_eq!(job["min_retry_delay_secs"], 30);
    assert_eq!(job["no_progress_timeout_secs"], 600);
    assert_eq!(job["max_download_time_secs"], 3600);
    assert_eq!(job["parallel_files"], 4);
    assert_eq!(job["max_bytes_per_second"], 100000);
    assert_eq!(job["notify_command"]["args"][0], "x");
    // `null` removes the notify command and lifts the cap.
    let (_, job) = s
        .call(
            "PATCH",
            &format!("/v1/jobs/{id}"),
            Some(ALICE),
            Some(Bytes::from(
                r#"{"notify_command":null,"max_bytes_per_second":null}"#,
            )),
        )
        .await;
    assert_eq!(job["notify_command"], Value::Null);
    assert_eq!(job["max_bytes_per_second"], Value::Null);
    assert_eq!(job["name"], "renamed");
    // A zero cap is refused, and changes nothing.
    let (status, err) = s
        .call(
            "PATCH",
            &format!("/v1/jobs/{id}"),
            Some(ALICE),
            Some(Bytes::from(r#"{"max_bytes_per_second":0,"name":"x"}"#)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"], "invalid_argument");
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn events_can_be_limited_to_some_types() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let id = job_with(&h, &s, &[("t1", 100), ("t2", 100), ("t3", 100)]).await;
    let mut all = Sse::connect(&s, &format!("?job={id}"), ALICE, None).await;
    let mut jobs = Sse::connect(
        &s,
        &format!("?job={id}&types=job_transferred,job_error"),
        ALICE,
        None,
    )
    .await;
    s.post(&format!("/v1/jobs/{id}/resume"), ALICE, json!({}))
        .await;
    // The whole stream has the file events; the limited one only the
    // job's (with an id that moves past the events it skipped).
    for _ in 0..3 {
        all.wait(&id, "file_transferred").await;
    }
    let whole = all.wait(&id, "job_transferred").await;
    let limited = jobs.next().await;
    assert_eq!(limited.event, "job_transferred", "{limited:?}");
    assert_eq!(limited.id, whole.id);
    // An unknown type is refused.
    let (status, body) = s
        .get(
            &format!("/v1/events?job={id}&types=job_transferred,nope"),
            ALICE,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_argument", "{body}");
    let (status, _) = s.get("/v1/events?types=,", ALICE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn events_resume_from_last_event_id_and_start_with_a_snapshot() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let first = job_with(&h, &s, &[("e1", 100)]).await;
    let mut events = Sse::connect(&s, "", ALICE, None).await;
    s.post(&format!("/v1/jobs/{first}/resume"), ALICE, json!({}))
        .await;
    let file = events.wait(&first, "file_transferred").await;
    assert_eq!(file.data["file"], 0);
    let transferred = events.wait(&first, "job_transferred").await;
    let last_seen = transferred.id.clone().expect("live events carry ids");
    drop(events);

    // While disconnected: a second job is created and transferred.
    let second = job_with(&h, &s, &[("e2", 100)]).await;
    let mut watcher = Sse::connect(&s, &format!("?job={second}"), ALICE, None).await;
    s.post(&format!("/v1/jobs/{second}/resume"), ALICE, json!({}))
        .await;
    watcher.wait(&second, "job_transferred").await;

    // Reconnecting with the last id: the snapshot (both jobs transferred,
    // without ids), then exactly what was missed, in order.
    let mut events = Sse::connect(&s, "", ALICE, Some(&last_seen)).await;
    let mut snapshot = Vec::new();
    for _ in 0..2 {
        let m = events.next().await;
        assert_eq!(m.event, "job_transferred");
        assert!(m.id.is_none());
        snapshot.push(m.data["job"].as_str().unwrap().to_owned());
    }
    snapshot.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(snapshot, want);
    let missed = events.wait(&second, "job_transferred").await;
    assert!(missed.id.is_some());

    // Bob sees none of alice's events, and a stale id gets a gap marker.
    let mut bob = Sse::connect(&s, "", BOB, Some("0-1")).await;
    let gap = bob.next().await;
    assert_eq!(gap.event, "gap");
    // Bob's own job is the next thing he hears about.
    let (_, bobs) = s.post("/v1/jobs", BOB, json!({"name": "bob's"})).await;
    let bobs = bobs["id"].as_str().unwrap().to_owned();
    s.call(
        "PATCH",
        &format!("/v1/jobs/{bobs}"),
        Some(BOB),
        Some(Bytes::from(r#"{"description":"mine"}"#)),
    )
    .await;
    let m = bob.next().await;
    assert_eq!(m.event, "job_modified");
    assert_eq!(m.data["job"], bobs.as_str(), "{m:?}");
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn metrics_and_health() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let id = job_with(&h, &s, &[("m", 50_000)]).await;
    let mut events = Sse::connect(&s, "", ALICE, None).await;
    s.post(&format!("/v1/jobs/{id}/resume"), ALICE, json!({}))
        .await;
    events.wait(&id, "job_transferred").await;
    let (status, text) = s.text("/metrics", ALICE).await;
    assert_eq!(status, StatusCode::OK);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert!(value("ferry_transferred_bytes_total") >= 50_000.0);
    assert_eq!(value("ferry_transferred_files_total"), 1.0);
    assert_eq!(value("ferry_active_transfers"), 0.0);
    assert_eq!(value("ferry_jobs{state=\"transferred\"}"), 1.0);
    assert!(value("ferry_store_write_seconds_count") >= 1.0);
    let (status, health) = s.get("/healthz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (status, _) = s.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn openapi_describes_exactly_the_routes_and_the_job_document() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap(),
    )
    .unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = api::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes, "openapi.json and api::ROUTES differ");

    // Every route is served (an unknown job, not an unknown route).
    let some = "0190d2f0-0000-7000-8000-000000000000";
    for (method, path) in api::ROUTES {
        if *path == "/v1/events" {
            continue; // a stream: checked in its own test
        }
        let path = path.replace("{id}", some);
        let (status, body) = s
            .call(method, &path, Some(ALICE), Some(Bytes::from_static(b"{}")))
            .await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["error"], "no_route", "{method} {path}");
    }

    // The Job schema names exactly the fields a real job has.
    let id = job_with(&h, &s, &[("o", 10)]).await;
    let (_, job) = s.get(&format!("/v1/jobs/{id}"), ALICE).await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let schema = &doc["components"]["schemas"];
    assert_eq!(keys(&schema["Job"]["properties"]), keys(&job));
    assert_eq!(keys(&schema["File"]["properties"]), keys(&job["files"][0]));
    assert_eq!(
        keys(&schema["Progress"]["properties"]),
        keys(&job["progress"])
    );
    assert_eq!(keys(&schema["Times"]["properties"]), keys(&job["times"]));
    s.handle.stop(true).await;
}

#[actix_rt::test]
async fn event_streams_end_when_the_engine_stops() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let mut events = Sse::connect(&s, "", ALICE, None).await;
    h.engine.clone().shutdown().await.unwrap();
    let drained = async {
        while let Some(chunk) = events.body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    };
    actix_rt::time::timeout(DEADLINE, drained)
        .await
        .expect("the event stream outlived the engine");
    s.handle.stop(true).await;
}

/// Quotas over HTTP: `GET /v1/quotas` gives the caller's limits and use; a
/// job over the limit is 403 too_many_jobs and is not created; admins are
/// exempt.
#[actix_rt::test]
async fn quotas_are_exposed_and_enforced_over_http() {
    let h = Harness::with(|c| {
        c.max_jobs_per_owner = 1;
        c.core.max_files_per_job = 1;
    })
    .await;
    let s = Server::start(&h);
    let (status, body) = s.get("/v1/quotas", ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"max_jobs_per_owner": 1, "max_files_per_job": 1, "unfinished_jobs": 0, "exempt": false})
    );
    let (status, job) = s.post("/v1/jobs", ALICE, json!({"name": "one"})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let (status, body) = s.post("/v1/jobs", ALICE, json!({"name": "two"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "too_many_jobs", "{body}");
    let id = job["id"].as_str().unwrap();
    // Why it does not transfer, in the job document.
    assert_eq!(job["waiting"], json!({"reason": "no_files"}), "{job}");
    let local = |n: &str| h.local(n).to_string_lossy().into_owned();
    let two = json!([
        {"remote": "http://127.0.0.1:1/a", "local": local("a")},
        {"remote": "http://127.0.0.1:1/b", "local": local("b")}
    ]);
    let (status, body) = s.post(&format!("/v1/jobs/{id}/files"), ALICE, two).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "too_many_files_in_job", "{body}");
    let (_, list) = s.get("/v1/jobs", ALICE).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let (status, _) = s.post("/v1/jobs", ROOT, json!({"name": "r1"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s.post("/v1/jobs", ROOT, json!({"name": "r2"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = s.get("/v1/quotas", ROOT).await;
    assert_eq!(body["exempt"], true);
    assert_eq!(body["unfinished_jobs"], 2);
    s.handle.stop(false).await;
}

/// Runtime limits over HTTP: anyone reads them, only admins change them;
/// `null` lifts the bandwidth cap; zero is refused and changes nothing.
#[actix_rt::test]
async fn limits_are_read_by_all_and_changed_by_admins() {
    let h = Harness::new().await;
    let s = Server::start(&h);
    let patch = |body: Value| Some(Bytes::from(body.to_string()));
    // The budgets, cap and slice; the schedule is checked at the end.
    let budgets = |body: &Value| {
        let mut b = body.clone();
        let o = b.as_object_mut().unwrap();
        o.remove("bandwidth_schedule");
        o.remove("in_force");
        b
    };
    let (status, body) = s.get("/v1/limits", ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        budgets(&body),
        json!({"max_transfers": 8, "max_transfers_per_host": 8, "max_bytes_per_second": null, "time_slice_secs": 60})
    );
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ALICE),
            patch(json!({"max_transfers": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let change =
        json!({"max_transfers": 3, "max_bytes_per_second": 1_000_000, "time_slice_secs": 5});
    let (status, body) = s
        .call("PATCH", "/v1/limits", Some(ROOT), patch(change))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        budgets(&body),
        json!({"max_transfers": 3, "max_transfers_per_host": 8, "max_bytes_per_second": 1_000_000, "time_slice_secs": 5})
    );
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ROOT),
            patch(json!({"max_transfers": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ROOT),
            patch(json!({"time_slice_secs": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ROOT),
            patch(json!({"max_bytes_per_second": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = s.get("/v1/limits", BOB).await;
    assert_eq!(
        budgets(&body),
        json!({"max_transfers": 3, "max_transfers_per_host": 8, "max_bytes_per_second": null, "time_slice_secs": 5})
    );
    // A bandwidth schedule: bad windows are refused and change nothing.
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ROOT),
            patch(
                json!({"bandwidth_schedule": ["mon-fri 08:00-18:00 1000", "funday 01:00-02:00 5"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("funday"),
        "{body}"
    );
    let (_, body) = s.get("/v1/limits", BOB).await;
    assert_eq!(body["bandwidth_schedule"], json!([]));
    assert_eq!(
        body["in_force"],
        json!({"window": null, "max_bytes_per_second": null, "background_paused": false, "until": null})
    );
    let (status, body) = s
        .call(
            "PATCH",
            "/v1/limits",
            Some(ROOT),
            patch(json!({"bandwidth_schedule": ["all 00:00-24:00 2048", "sat,sun 00:00-24:00 pause"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["bandwidth_schedule"],
        json!(["all 00:00-24:00 2048", "sat,sun 00:00-24:00 pause"])
    );
    assert_eq!(
        body["in_force"],
        json!({"window": 0, "max_bytes_per_second": 2048, "background_paused": false, "until": null})
    );
    s.handle.stop(false).await;
}

#[actix_rt::test]
async fn a_job_is_created_with_its_files_and_properties_resumed_or_not_at_all() {
    let mut h = Harness::new().await;
    let s = Server::start(&h);
    h.origin.add("/a", 80_000);
    h.origin.add("/b", 10);
    let files = json!([
        {"remote": h.origin.url("/a"), "local": h.local("a")},
        {"remote": h.origin.url("/b"), "local": h.local("b")},
    ]);
    // Any part refused: no job at all.
    let refusals = [
        // A destination that is a directory.
        json!({"name": "x", "files": [{"remote": h.origin.url("/a"), "local": h.downloads.path()}], "resume": true}),
        // A relative destination.
        json!({"name": "x", "files": [{"remote": h.origin.url("/a"), "local": "a"}]}),
        // A property out of range.
        json!({"name": "x", "files": files, "properties": {"parallel_files": 0}, "resume": true}),
        // An unknown property.
        json!({"name": "x", "files": files, "properties": {"speed": 1}}),
        // Resumed without files.
        json!({"name": "x", "resume": true}),
        // Empty lists and sets.
        json!({"name": "x", "files": []}),
        json!({"name": "x", "files": files, "properties": {}}),
        // Another command's business.
        json!({"name": "x", "files": files, "complete": true}),
    ];
    for body in refusals {
        let (status, err) = s.post("/v1/jobs", ALICE, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status} {err}");
        let (_, list) = s.get("/v1/jobs", ALICE).await;
        assert!(
            list["jobs"].as_array().unwrap().is_empty(),
            "{body}: {list}"
        );
    }
    let (status, job) = s
        .post(
            "/v1/jobs",
            ALICE,
            json!({"name": "at once", "files": files, "properties": {"parallel_files": 2}, "resume": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_ne!(job["state"], "suspended");
    assert_eq!(job["parallel_files"], 2, "{job}");
    assert_eq!(job["progress"]["files_total"], 2);
    let id: ferry_core::JobId = job["id"].as_str().unwrap().parse().unwrap();
    h.transferred(id).await;
    let (status, answer) = s
        .post(&format!("/v1/jobs/{id}/complete"), ALICE, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    h.assert_file("a");
    h.assert_file("b");
    // Without `resume`, the job waits suspended with its files.
    let (status, job) = s
        .post(
            "/v1/jobs",
            ALICE,
            json!({"name": "later", "files": {"remote": h.origin.url("/b"), "local": h.local("c")}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["state"], "suspended");
    assert_eq!(job["progress"]["files_total"], 1);
    assert_eq!(job["files"].as_array().map(Vec::len), Some(1));
    // The answer without the files, on request.
    let (status, job) = s
        .post(
            "/v1/jobs?files=false",
            ALICE,
            json!({"name": "lean", "files": {"remote": h.origin.url("/b"), "local": h.local("d")}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert!(job.get("files").is_none(), "{job}");
    assert_eq!(job["progress"]["files_total"], 1);
    s.handle.stop(true).await;
}
