//! The OpenAPI document matches the routes: every mounted route is in it,
//! and every response it documents is one the route really returns (each has
//! a request below that provokes it).

mod common;

use std::collections::BTreeSet;

use common::{free_port, session_id, TestApp};
use rocket::http::{ContentType, Header, Method, Status};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

fn document() -> Value {
    serde_json::from_str(include_str!("../src/api/openapi.json")).expect("the document is JSON")
}

/// `/api/users/<id>` and `/api/users/{user}` both become `/api/users/{}`.
fn shape(path: &str) -> String {
    let mut shaped = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '<' | '{' => {
                in_param = true;
                shaped.push_str("{}");
            }
            '>' | '}' => in_param = false,
            _ if !in_param => shaped.push(c),
            _ => {}
        }
    }
    shaped
}

fn documented_operations() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if method != "parameters" {
                operations.insert((method.to_uppercase(), shape(path)));
            }
        }
    }
    operations
}

#[rocket::async_test]
async fn every_mounted_route_is_documented_and_nothing_else() {
    let app = TestApp::spawn().await;
    let mounted: BTreeSet<(String, String)> = app
        .client
        .rocket()
        .routes()
        .map(|route| (route.method.as_str().to_owned(), shape(route.uri.path())))
        .collect();
    assert_eq!(documented_operations(), mounted);
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string());
}

#[rocket::async_test]
async fn the_document_is_served_at_api_openapi_json() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/openapi.json").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.json(), document());
}

#[rocket::async_test]
async fn the_docs_page_loads_only_local_assets() {
    let app = TestApp::spawn().await;
    let reply = app.get("/docs").await;
    assert_eq!(reply.status, Status::Ok);
    assert!(reply.body.contains("/api/openapi.json"));
    assert!(
        !reply.body.contains("http://") && !reply.body.contains("https://"),
        "{}",
        reply.body
    );
    let script = app.get("/files/vendor/redoc/redoc.standalone.js").await;
    assert_eq!(script.status, Status::Ok);
    assert!(script.body.len() > 100_000);
}

/// Which app a request goes to.
#[derive(Clone, Copy)]
enum Target {
    Up,
    /// Redis unreachable.
    Down,
    /// Failed logins already reached the limit for this user.
    Throttled,
}

enum Auth {
    None,
    Own,
    Other,
    /// A well-formed token of no session.
    Forged,
}

enum Body {
    None,
    Json(Value),
    Raw(Option<ContentType>, Vec<u8>),
}

struct Case {
    method: Method,
    doc_path: &'static str,
    status: u16,
    target: Target,
    uri: &'static str,
    auth: Auth,
    body: Body,
}

fn case(method: Method, doc_path: &'static str, status: u16, uri: &'static str) -> Case {
    Case {
        method,
        doc_path,
        status,
        target: Target::Up,
        uri,
        auth: Auth::None,
        body: Body::None,
    }
}

impl Case {
    fn on(mut self, target: Target) -> Self {
        self.target = target;
        self
    }
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    fn raw(mut self, content_type: Option<ContentType>, body: &[u8]) -> Self {
        self.body = Body::Raw(content_type, body.to_vec());
        self
    }
}

/// The body-related failures every JSON route documents.
fn body_failures(method: Method, doc_path: &'static str, uri: &'static str) -> Vec<Case> {
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(17 * 1024));
    vec![
        case(method, doc_path, 400, uri).raw(Some(ContentType::JSON), b"{\"name\":"),
        case(method, doc_path, 413, uri).raw(Some(ContentType::JSON), big.as_bytes()),
        case(method, doc_path, 415, uri).raw(Some(ContentType::Form), b"name=x"),
    ]
}

fn cases() -> Vec<Case> {
    use Method::*;
    let user = "/api/users/{user}";
    let sessions = "/api/users/{id}/sessions";
    let session = "/api/users/{id}/sessions/{session_id}";
    let activity = "/api/users/{id}/activity";
    let current = "/api/sessions/current";
    let mut cases = vec![
        case(Get, "/ping", 200, "/ping"),
        case(Get, "/health/live", 200, "/health/live"),
        case(Get, "/health/ready", 200, "/health/ready"),
        case(Get, "/health/ready", 503, "/health/ready").on(Target::Down),
        case(Get, "/metrics", 200, "/metrics"),
        case(Get, "/api/openapi.json", 200, "/api/openapi.json"),
        case(Get, "/docs", 200, "/docs"),
        case(Get, "/files/{path}", 200, "/files/index.html"),
        case(Get, "/files/{path}", 404, "/files/missing.txt"),
        case(Post, "/api/users", 201, "/api/users")
            .json(json!({"name": "New", "email": "{fresh}", "password": PASSWORD})),
        case(Post, "/api/users", 409, "/api/users")
            .json(json!({"name": "Twin", "email": "{email}", "password": PASSWORD})),
        case(Post, "/api/users", 422, "/api/users")
            .json(json!({"name": "", "email": "x", "password": "x"})),
        case(Post, "/api/users", 503, "/api/users")
            .on(Target::Down)
            .json(json!({"name": "New", "email": "{fresh}", "password": PASSWORD})),
        case(Get, "/api/users", 200, "/api/users"),
        case(Get, "/api/users", 422, "/api/users?limit=0"),
        case(Get, "/api/users", 503, "/api/users").on(Target::Down),
        case(Get, user, 200, "/api/users/{id}"),
        case(Get, user, 404, "/api/users/{missing}"),
        case(Get, user, 503, "/api/users/{id}").on(Target::Down),
        case(Put, user, 200, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 401, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": "wrong password"})),
        case(Put, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .json(json!({"name": "Renamed", "email": "{email}"})),
        case(Put, user, 404, "/api/users/{missing}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 409, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{other_email}", "password": PASSWORD})),
        case(Put, user, 422, "/api/users/{id}")
            .json(json!({"name": "", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Patch, user, 200, "/api/users/{id}")
            .json(json!({"password": PASSWORD, "new_password": "an entirely new passphrase"})),
        case(Patch, user, 401, "/api/users/{id}").json(
            json!({"password": "wrong password", "new_password": "an entirely new passphrase"}),
        ),
        case(Patch, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .json(json!({"new_password": "an entirely new passphrase"})),
        case(Patch, user, 404, "/api/users/{missing}")
            .json(json!({"password": PASSWORD, "new_password": "an entirely new passphrase"})),
        case(Patch, user, 422, "/api/users/{id}").json(json!({"password": PASSWORD})),
        case(Patch, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"password": PASSWORD, "new_password": "an entirely new passphrase"})),
        case(Delete, user, 200, "/api/users/{id}").json(json!({"password": PASSWORD})),
        case(Delete, user, 401, "/api/users/{id}").json(json!({"password": "wrong password"})),
        case(Delete, user, 403, "/api/users/{id}").auth(Auth::Other),
        case(Delete, user, 404, "/api/users/{missing}").json(json!({"password": PASSWORD})),
        case(Delete, user, 422, "/api/users/{id}").json(json!({})),
        case(Delete, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"password": PASSWORD})),
        case(Get, sessions, 200, "/api/users/{id}/sessions").auth(Auth::Own),
        case(Get, sessions, 401, "/api/users/{id}/sessions"),
        case(Get, sessions, 403, "/api/users/{id}/sessions").auth(Auth::Other),
        case(Get, sessions, 404, "/api/users/not-a-uuid/sessions").auth(Auth::Own),
        case(Get, sessions, 503, "/api/users/{id}/sessions")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(
            Delete,
            sessions,
            204,
            "/api/users/{id}/sessions?keep_current=true",
        )
        .auth(Auth::Own),
        case(Delete, sessions, 401, "/api/users/{id}/sessions"),
        case(Delete, sessions, 403, "/api/users/{id}/sessions").auth(Auth::Other),
        case(Delete, sessions, 404, "/api/users/not-a-uuid/sessions").auth(Auth::Own),
        case(Delete, sessions, 503, "/api/users/{id}/sessions")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(
            Delete,
            session,
            204,
            "/api/users/{id}/sessions/{session_id}",
        )
        .auth(Auth::Own),
        case(
            Delete,
            session,
            401,
            "/api/users/{id}/sessions/{session_id}",
        ),
        case(
            Delete,
            session,
            403,
            "/api/users/{id}/sessions/{session_id}",
        )
        .auth(Auth::Other),
        case(
            Delete,
            session,
            404,
            "/api/users/{id}/sessions/{missing_session}",
        )
        .auth(Auth::Own),
        case(
            Delete,
            session,
            503,
            "/api/users/{id}/sessions/{missing_session}",
        )
        .on(Target::Down)
        .auth(Auth::Forged),
        case(Get, activity, 200, "/api/users/{id}/activity").auth(Auth::Own),
        case(Get, activity, 401, "/api/users/{id}/activity"),
        case(Get, activity, 403, "/api/users/{id}/activity").auth(Auth::Other),
        case(Get, activity, 404, "/api/users/not-a-uuid/activity").auth(Auth::Own),
        case(Get, activity, 503, "/api/users/{id}/activity")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Post, "/api/sessions", 201, "/api/sessions")
            .json(json!({"email": "{email}", "password": PASSWORD})),
        case(Post, "/api/sessions", 401, "/api/sessions")
            .json(json!({"email": "{email}", "password": "wrong password"})),
        case(Post, "/api/sessions", 422, "/api/sessions").json(json!({"email": "{email}"})),
        case(Post, "/api/sessions", 429, "/api/sessions")
            .on(Target::Throttled)
            .json(json!({"email": "{email}", "password": PASSWORD})),
        case(Post, "/api/sessions", 503, "/api/sessions")
            .on(Target::Down)
            .json(json!({"email": "{email}", "password": PASSWORD})),
        case(Get, current, 200, current).auth(Auth::Own),
        case(Get, current, 401, current).auth(Auth::Forged),
        case(Get, current, 503, current)
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Delete, current, 204, current).auth(Auth::Own),
        case(Delete, current, 401, current),
        case(Delete, current, 503, current)
            .on(Target::Down)
            .auth(Auth::Forged),
    ];
    for (method, uri) in [(Post, "/api/users"), (Post, "/api/sessions")] {
        cases.extend(body_failures(method, uri, uri));
    }
    for method in [Put, Patch, Delete] {
        cases.extend(body_failures(method, user, "/api/users/{id}"));
    }
    cases
}

/// A user of its own for each case, so cases cannot disturb each other.
struct Fixture {
    id: String,
    email: String,
    token: String,
    other_email: String,
    other_token: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let email = format!("u{}@example.com", uuid::Uuid::new_v4().simple());
    let other_email = format!("o{}@example.com", uuid::Uuid::new_v4().simple());
    let user = app.create_user("User", &email, PASSWORD).await;
    app.create_user("Other", &other_email, PASSWORD).await;
    Fixture {
        id: user["id"].as_str().expect("id").to_owned(),
        token: app.token_for(&email, PASSWORD).await,
        other_token: app.token_for(&other_email, PASSWORD).await,
        email,
        other_email,
    }
}

fn fill(text: &str, fixture: &Fixture) -> String {
    let session_id = session_id(&fixture.token);
    text.replace("{id}", &fixture.id)
        .replace("{missing}", &uuid::Uuid::new_v4().to_string())
        .replace("{missing_session}", &"0".repeat(64))
        .replace("{session_id}", &session_id)
        .replace("{other_email}", &fixture.other_email)
        .replace("{email}", &fixture.email)
        .replace(
            "{fresh}",
            &format!("f{}@example.com", uuid::Uuid::new_v4().simple()),
        )
}

fn fill_json(value: &Value, fixture: &Fixture) -> Value {
    match value {
        Value::String(text) => Value::String(fill(text, fixture)),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), fill_json(v, fixture)))
            .collect(),
        other => other.clone(),
    }
}

#[rocket::async_test]
async fn every_documented_response_is_provoked_by_a_request() {
    // Wrong passwords below must not throttle the loopback client's IP...
    let up = TestApp::spawn_on(
        &common::shared_redis_url(),
        &[("LOGIN_MAX_FAILURES", "100000")],
    )
    .await;
    // ...except here, where one failure is the limit.
    let strict =
        TestApp::spawn_with_prefix(&up.redis_url, &up.prefix, &[("LOGIN_MAX_FAILURES", "1")]).await;
    let down = TestApp::spawn_on(
        &format!("redis://127.0.0.1:{}/", free_port()),
        &[("REDIS_TIMEOUT_MS", "200")],
    )
    .await;
    let cases = cases();

    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            if method == "parameters" {
                continue;
            }
            for status in operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
            {
                documented.insert((method.to_uppercase(), path.clone(), status.clone()));
            }
        }
    }
    let provoked: BTreeSet<(String, String, String)> = cases
        .iter()
        .map(|c| {
            (
                c.method.as_str().to_owned(),
                c.doc_path.to_owned(),
                c.status.to_string(),
            )
        })
        .collect();
    assert_eq!(
        documented, provoked,
        "documented responses and provoking requests differ"
    );

    for case in cases {
        let fixture = fixture(&up).await;
        let app = match case.target {
            Target::Up => &up,
            Target::Down => &down,
            Target::Throttled => {
                strict.login(&fixture.email, "wrong password").await;
                &strict
            }
        };
        let uri = fill(case.uri, &fixture);
        let mut request = app.client.req(case.method, uri.clone());
        let token = match case.auth {
            Auth::None => None,
            Auth::Own => Some(fixture.token.clone()),
            Auth::Other => Some(fixture.other_token.clone()),
            Auth::Forged => Some("A".repeat(43)),
        };
        if let Some(token) = token {
            request = request.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        request = match &case.body {
            Body::None => request,
            Body::Json(body) => request
                .header(ContentType::JSON)
                .body(fill_json(body, &fixture).to_string()),
            Body::Raw(content_type, bytes) => {
                let request = request.body(bytes.clone());
                match content_type {
                    Some(content_type) => request.header(content_type.clone()),
                    None => request,
                }
            }
        };
        let response = request.dispatch().await;
        assert_eq!(
            response.status(),
            Status::new(case.status),
            "{} {uri} ({})",
            case.method,
            case.doc_path
        );
    }
}
