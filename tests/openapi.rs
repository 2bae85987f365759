//! The OpenAPI document matches the routes: every mounted route is in it,
//! every response it documents is one the route really returns (each has a
//! request below that provokes it, and the answer fits what the document
//! says of it), and its examples fit their schemas and work.

mod common;

use std::collections::BTreeSet;

use common::{free_port, session_id, user_id, TestApp};
use rocket::http::{ContentType, Header, Method, Status};
use serde_json::{json, Value};
use user_accounts::domain::{
    CodePurpose, CodeSecret, KeyScope, OneTimeCode, RevertCode, UserEmail, UserId,
};
use user_accounts::store::layout::code_fields;

const PASSWORD: &str = "correct horse battery";
/// The `TOKEN_SECRET` of every app below, so the test can store codes.
const SECRET: &str = "a test secret of at least thirty-two bytes";
/// The code every fixture's user holds, for verification and for reset.
const CODE: &str = "135790";
/// The revert code every fixture's user holds for its own email.
const REVERT_CODE: &str = "AAAAAAAAAAAAAAAAAAAAAA";

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

// ---- the document's own rules ----

/// An operation of the document: its method, path and object.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if method != "parameters" {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

/// `value`, or what its `$ref` points at.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local reference");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} points at nothing"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Checks `value` against `schema`, for the keywords the document uses:
/// stricter than JSON Schema in one way, a property the schema does not
/// name is an error (the document describes every field there is).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            other => panic!("type {other}"),
        };
        if !names.iter().any(|name| has_type(value, name)) {
            return Err(format!("{at}: {value} is not of type {types}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if value != constant {
            return Err(format!("{at}: {value} is not {constant}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is none of {options:?}"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min)
            || schema["maxLength"].as_u64().is_some_and(|max| length > max)
        {
            return Err(format!("{at}: {text:?} has the wrong length"));
        }
        let well_formed = match schema["format"].as_str() {
            Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some("email") => text.contains('@'),
            _ => true,
        };
        if !well_formed {
            return Err(format!("{at}: {text:?} is not a {}", schema["format"]));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min)
            || schema["maximum"].as_f64().is_some_and(|max| number > max)
        {
            return Err(format!("{at}: {number} is out of range"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("a property name");
            if !object.contains_key(name) {
                return Err(format!("{at}: {name} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, field) in object {
                let Some(field_schema) = properties.get(name) else {
                    return Err(format!("{at}: {name} is not in the schema"));
                };
                check(doc, field_schema, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (index, element) in elements.iter().enumerate() {
            check(doc, items, element, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

/// The examples of a media type object: its `example`, or the values of
/// its `examples`.
fn examples_of(media: &Value) -> Vec<&Value> {
    match (media.get("example"), media.get("examples")) {
        (Some(example), _) => vec![example],
        (None, Some(examples)) => examples
            .as_object()
            .expect("examples is a map")
            .values()
            .map(|example| &example["value"])
            .collect(),
        (None, None) => Vec::new(),
    }
}

#[test]
fn every_request_and_response_body_has_an_example_that_fits_its_schema() {
    let doc = document();
    let mut bodies = Vec::new();
    for (method, path, operation) in operations(&doc) {
        if let Some(request) = operation.get("requestBody") {
            let content = resolve(&doc, request)["content"].as_object();
            for (media_type, media) in content.expect("request content") {
                bodies.push((format!("{method} {path} request {media_type}"), media));
            }
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            let content = resolve(&doc, response)["content"].as_object();
            for (media_type, media) in content.into_iter().flatten() {
                bodies.push((format!("{method} {path} {status} {media_type}"), media));
            }
        }
    }
    assert!(bodies.len() > 100, "{} bodies", bodies.len());
    for (at, media) in bodies {
        let examples = examples_of(media);
        assert!(!examples.is_empty(), "{at} has no example");
        for example in examples {
            assert!(!example.is_null(), "{at}: an example without a value");
            if let Err(error) = check(&doc, &media["schema"], example, &at) {
                panic!("{error}");
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        if let Some(example) = schema.get("example") {
            if let Err(error) = check(&doc, schema, example, name) {
                panic!("{error}");
            }
        }
    }
}

#[test]
fn every_operation_has_a_tag_a_description_and_a_security_requirement() {
    let doc = document();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for (name, format) in [("session", "session token"), ("adminKey", "uak_ admin key")] {
        let scheme = &schemes[name];
        assert_eq!(scheme["type"], "http", "{name}");
        assert_eq!(scheme["scheme"], "bearer", "{name}");
        assert_eq!(scheme["bearerFormat"], format, "{name}");
        assert!(scheme["description"].is_string(), "{name}");
    }
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|tag| tag["name"].as_str().expect("a tag name"))
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["users", "sessions", "admin", "operations"])
    );
    let mut used = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let at = format!("{method} {path}");
        let operation_tags = operation["tags"].as_array().expect("tags");
        assert_eq!(operation_tags.len(), 1, "{at}: one tag");
        let tag = operation_tags[0].as_str().expect("a tag");
        assert!(tags.contains(tag), "{at}: tag {tag}");
        used.insert(tag);
        assert!(
            operation["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{at}: a description"
        );
        let requirements = operation["security"].as_array().expect("security");
        assert!(!requirements.is_empty(), "{at}: a security requirement");
        for requirement in requirements {
            for (scheme, roles) in requirement.as_object().expect("a requirement") {
                assert!(schemes.contains_key(scheme), "{at}: scheme {scheme}");
                for role in roles.as_array().expect("roles") {
                    assert!(
                        scheme == "adminKey"
                            && ["admin", "read", "metrics"].contains(&role.as_str().unwrap_or("")),
                        "{at}: {scheme} role {role}"
                    );
                }
            }
        }
        let open = requirements
            .iter()
            .any(|r| r.as_object().is_some_and(|r| r.is_empty()));
        if !open {
            assert!(
                operation["responses"].get("401").is_some(),
                "{at} needs a credential, so it documents 401"
            );
        }
    }
    assert_eq!(used, tags, "every tag is used");
}

/// What schemathesis checks of each status: the headers it comes with.
#[test]
fn error_responses_document_their_headers() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            let response = resolve(&doc, response);
            let is_problem = response["content"]
                .get("application/problem+json")
                .is_some();
            let header = match status.as_str() {
                "401" => Some("WWW-Authenticate"),
                "429" => Some("Retry-After"),
                "503" if is_problem => Some("Retry-After"),
                _ => None,
            };
            if let Some(header) = header {
                assert_eq!(
                    response["headers"][header]["required"], true,
                    "{method} {path} {status} documents {header}"
                );
            }
            if status.starts_with('4') || status.starts_with('5') {
                let ready =
                    ["/health", "/health/ready"].contains(&path.as_str()) && status == "503";
                assert!(is_problem || ready, "{method} {path} {status} is a problem");
            }
        }
    }
}

// ---- the examples work ----

fn request_example(doc: &Value, method: &str, path: &str, name: Option<&str>) -> Value {
    let media = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
    match name {
        None => media["example"].clone(),
        Some(name) => media["examples"][name]["value"].clone(),
    }
}

#[rocket::async_test]
async fn the_sign_up_example_passes_validation_and_the_strength_check() {
    let app = TestApp::spawn().await;
    let doc = document();
    let example = request_example(&doc, "post", "/api/users", None);
    let reply = app.post_user(&example).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    let user = reply.json();
    assert_eq!(user["email"], example["email"]);
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/User"}),
        &user,
        "user",
    )
    .unwrap_or_else(|error| panic!("{error}"));
}

#[rocket::async_test]
async fn the_login_profile_and_password_examples_work_one_after_another() {
    let app = TestApp::spawn().await;
    let doc = document();
    let user = app
        .post_user(&request_example(&doc, "post", "/api/users", None))
        .await
        .json();
    let id = user["id"].as_str().expect("id");
    let uri = format!("/api/users/{id}");
    let login = request_example(&doc, "post", "/api/sessions", None);
    let token = app
        .token_for(
            login["email"].as_str().expect("email"),
            login["password"].as_str().expect("password"),
        )
        .await;
    let path = "/api/users/{user}";
    for (method, name, credential) in [
        (Method::Put, "rename", Some(token.as_str())),
        (Method::Put, "withPassword", None),
        (Method::Patch, "withPassword", None),
    ] {
        let body = request_example(&doc, &method.as_str().to_lowercase(), path, Some(name));
        let reply = match (credential, method) {
            (Some(token), _) => app.with_token(method, &uri, token, Some(&body)).await,
            (None, Method::Put) => app.put_user(id, &body).await,
            (None, _) => app.patch_user(id, &body).await,
        };
        assert_eq!(reply.status, Status::Ok, "{method} {name}: {}", reply.body);
    }
    let changed = request_example(&doc, "patch", path, Some("withPassword"));
    let email = request_example(&doc, "put", path, Some("withPassword"))["email"].clone();
    let reply = app
        .login(
            email.as_str().expect("email"),
            changed["new_password"].as_str().expect("new password"),
        )
        .await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    let admin = app.admin_key().await.to_owned();
    let body = request_example(&doc, "delete", path, Some("withCredential"));
    let reply = app
        .with_token(Method::Delete, &uri, &admin, Some(&body))
        .await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

// ---- every documented response happens ----

/// Which app a request goes to, in which state.
#[derive(Clone, Copy)]
enum Target {
    Up,
    /// Redis unreachable.
    Down,
    /// Failed logins already reached the limit for this user.
    Throttled,
    /// `SIGNUP=closed`: only an admin key creates users.
    Closed,
    /// `SESSION_REAUTH_SECS=1`: the old session is too old for a sensitive
    /// change.
    Reauth,
    /// The fixture's user was disabled first.
    Disabled,
    /// `REQUIRE_VERIFIED_EMAIL=true`: the fixture's user is unverified.
    VerifiedOnly,
    /// `MAIL_MAX_PER_ADDRESS=1`, and one request for a code was made first.
    CodesThrottled,
    /// `SIGNUP_EXISTING=notify`: sign-ups answer alike for every email.
    Notify,
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    Own,
    Other,
    /// A well-formed token of no session.
    Forged,
    AdminKey,
    ReadKey,
    MetricsKey,
    /// The session of the old user, whose login was over a second ago.
    OldSession,
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
    /// The problem type the answer must carry, when it matters.
    problem: Option<&'static str>,
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
        problem: None,
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
    fn problem(mut self, problem_type: &'static str) -> Self {
        self.problem = Some(problem_type);
        self
    }
}

const FORBIDDEN: &str = "/problems/forbidden";
const REAUTH: &str = "/problems/reauthentication-required";
const DISABLED: &str = "/problems/account-disabled";

/// The body-related failures every JSON route documents.
fn body_failures(method: Method, doc_path: &'static str, uri: &'static str) -> Vec<Case> {
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(17 * 1024));
    vec![
        case(method, doc_path, 400, uri).raw(Some(ContentType::JSON), b"{\"name\":"),
        case(method, doc_path, 413, uri).raw(Some(ContentType::JSON), big.as_bytes()),
        case(method, doc_path, 415, uri).raw(Some(ContentType::Form), b"name=x"),
    ]
}

fn operations_cases() -> Vec<Case> {
    use Method::*;
    vec![
        case(Get, "/ping", 200, "/ping"),
        case(Get, "/health/live", 200, "/health/live"),
        case(Get, "/health/ready", 200, "/health/ready"),
        case(Get, "/health/ready", 503, "/health/ready").on(Target::Down),
        case(Get, "/health", 200, "/health"),
        case(Get, "/health", 503, "/health").on(Target::Down),
        case(Get, "/", 303, "/"),
        case(Get, "/metrics", 200, "/metrics").auth(Auth::MetricsKey),
        case(Get, "/metrics", 200, "/metrics").auth(Auth::AdminKey),
        case(Get, "/metrics", 401, "/metrics"),
        case(Get, "/metrics", 403, "/metrics")
            .auth(Auth::ReadKey)
            .problem(FORBIDDEN),
        case(Get, "/metrics", 403, "/metrics")
            .auth(Auth::Own)
            .problem(FORBIDDEN),
        case(Get, "/metrics", 503, "/metrics")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Get, "/api/openapi.json", 200, "/api/openapi.json"),
        case(Get, "/docs", 200, "/docs"),
        case(Get, "/verify", 200, "/verify"),
        case(Get, "/reset", 200, "/reset"),
        case(Get, "/revert", 200, "/revert"),
        case(Get, "/files/{path}", 200, "/files/index.html"),
        case(Get, "/files/{path}", 404, "/files/missing.txt"),
    ]
}

fn user_cases() -> Vec<Case> {
    use Method::*;
    let user = "/api/users/{user}";
    let signup = json!({"name": "New", "email": "{fresh}", "password": PASSWORD});
    let new_password = "an entirely new passphrase";
    vec![
        case(Post, "/api/users", 201, "/api/users").json(signup.clone()),
        case(Post, "/api/users", 201, "/api/users")
            .on(Target::Closed)
            .auth(Auth::AdminKey)
            .json(signup.clone()),
        case(Post, "/api/users", 202, "/api/users")
            .on(Target::Notify)
            .json(json!({"name": "Twin", "email": "{email}", "password": PASSWORD})),
        case(Post, "/api/users", 403, "/api/users")
            .on(Target::Closed)
            .auth(Auth::ReadKey)
            .json(signup.clone())
            .problem("/problems/signup-closed"),
        case(Post, "/api/users", 409, "/api/users")
            .json(json!({"name": "Twin", "email": "{email}", "password": PASSWORD})),
        case(Post, "/api/users", 422, "/api/users")
            .json(json!({"name": "", "email": "x", "password": "x"})),
        case(Post, "/api/users", 503, "/api/users")
            .on(Target::Down)
            .json(signup),
        case(Get, "/api/users", 200, "/api/users").auth(Auth::ReadKey),
        case(Get, "/api/users", 200, "/api/users?limit=1").auth(Auth::AdminKey),
        case(Get, "/api/users", 401, "/api/users"),
        case(Get, "/api/users", 403, "/api/users")
            .auth(Auth::Own)
            .problem(FORBIDDEN),
        case(Get, "/api/users", 403, "/api/users")
            .auth(Auth::MetricsKey)
            .problem(FORBIDDEN),
        case(Get, "/api/users", 422, "/api/users?limit=0").auth(Auth::ReadKey),
        case(Get, "/api/users", 422, "/api/users?after=nonsense").auth(Auth::ReadKey),
        case(Get, "/api/users", 503, "/api/users")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Get, user, 200, "/api/users/{id}").auth(Auth::Own),
        case(Get, user, 200, "/api/users/{email}").auth(Auth::Own),
        case(Get, user, 200, "/api/users/{other_email}").auth(Auth::ReadKey),
        case(Get, user, 401, "/api/users/{id}"),
        case(Get, user, 401, "/api/users/{email}"),
        case(Get, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .problem(FORBIDDEN),
        case(Get, user, 403, "/api/users/{other_email}")
            .auth(Auth::Own)
            .problem(FORBIDDEN),
        case(Get, user, 403, "/api/users/{id}")
            .auth(Auth::MetricsKey)
            .problem(FORBIDDEN),
        case(Get, user, 404, "/api/users/{missing}").auth(Auth::ReadKey),
        case(Get, user, 404, "/api/users/nobody@example.com").auth(Auth::AdminKey),
        case(Get, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Put, user, 200, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 200, "/api/users/{id}")
            .auth(Auth::AdminKey)
            .json(json!({"name": "Renamed", "email": "{fresh}"})),
        case(Put, user, 200, "/api/users/{old_id}")
            .on(Target::Reauth)
            .auth(Auth::OldSession)
            .json(json!({"name": "Renamed", "email": "{old_email}"})),
        case(Put, user, 401, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": "wrong password"})),
        case(Put, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .json(json!({"name": "Renamed", "email": "{email}"}))
            .problem(FORBIDDEN),
        case(Put, user, 403, "/api/users/{id}")
            .auth(Auth::ReadKey)
            .json(json!({"name": "Renamed", "email": "{email}"}))
            .problem(FORBIDDEN),
        case(Put, user, 403, "/api/users/{old_id}")
            .on(Target::Reauth)
            .auth(Auth::OldSession)
            .json(json!({"name": "Renamed", "email": "{fresh}"}))
            .problem(REAUTH),
        case(Put, user, 403, "/api/users/{id}")
            .on(Target::Disabled)
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD}))
            .problem(DISABLED),
        case(Put, user, 404, "/api/users/{missing}")
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 409, "/api/users/{id}")
            .json(json!({"name": "Renamed", "email": "{other_email}", "password": PASSWORD})),
        case(Put, user, 422, "/api/users/{id}")
            .json(json!({"name": "", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 429, "/api/users/{id}")
            .on(Target::Throttled)
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Put, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"name": "Renamed", "email": "{email}", "password": PASSWORD})),
        case(Patch, user, 200, "/api/users/{id}")
            .json(json!({"password": PASSWORD, "new_password": new_password})),
        case(Patch, user, 200, "/api/users/{id}")
            .auth(Auth::Own)
            .json(json!({"new_password": new_password})),
        case(Patch, user, 401, "/api/users/{id}")
            .json(json!({"password": "wrong password", "new_password": new_password})),
        case(Patch, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .json(json!({"new_password": new_password}))
            .problem(FORBIDDEN),
        case(Patch, user, 403, "/api/users/{old_id}")
            .on(Target::Reauth)
            .auth(Auth::OldSession)
            .json(json!({"new_password": new_password}))
            .problem(REAUTH),
        case(Patch, user, 403, "/api/users/{id}")
            .on(Target::Disabled)
            .json(json!({"password": PASSWORD, "new_password": new_password}))
            .problem(DISABLED),
        case(Patch, user, 404, "/api/users/{missing}")
            .json(json!({"password": PASSWORD, "new_password": new_password})),
        case(Patch, user, 422, "/api/users/{id}").json(json!({"password": PASSWORD})),
        case(Patch, user, 422, "/api/users/{id}")
            .json(json!({"password": "wrong password", "new_password": "password123"})),
        case(Patch, user, 429, "/api/users/{id}")
            .on(Target::Throttled)
            .json(json!({"password": PASSWORD, "new_password": new_password})),
        case(Patch, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"password": PASSWORD, "new_password": new_password})),
        case(Delete, user, 200, "/api/users/{id}").json(json!({"password": PASSWORD})),
        case(Delete, user, 200, "/api/users/{id}").auth(Auth::AdminKey),
        case(Delete, user, 200, "/api/users/{id}").auth(Auth::Own),
        case(Delete, user, 401, "/api/users/{id}").json(json!({"password": "wrong password"})),
        case(Delete, user, 403, "/api/users/{id}")
            .auth(Auth::Other)
            .problem(FORBIDDEN),
        case(Delete, user, 403, "/api/users/{old_id}")
            .on(Target::Reauth)
            .auth(Auth::OldSession)
            .problem(REAUTH),
        case(Delete, user, 403, "/api/users/{id}")
            .on(Target::Disabled)
            .json(json!({"password": PASSWORD}))
            .problem(DISABLED),
        case(Delete, user, 404, "/api/users/{missing}").json(json!({"password": PASSWORD})),
        case(Delete, user, 422, "/api/users/{id}").json(json!({})),
        case(Delete, user, 429, "/api/users/{id}")
            .on(Target::Throttled)
            .json(json!({"password": PASSWORD})),
        case(Delete, user, 503, "/api/users/{id}")
            .on(Target::Down)
            .json(json!({"password": PASSWORD})),
    ]
}

fn admin_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (doc_path, uri) in [
        ("/api/users/{id}/disable", "/api/users/{id}/disable"),
        ("/api/users/{id}/enable", "/api/users/{id}/enable"),
    ] {
        let missing: &'static str = if uri.ends_with("disable") {
            "/api/users/{missing}/disable"
        } else {
            "/api/users/{missing}/enable"
        };
        cases.extend([
            case(Method::Post, doc_path, 200, uri).auth(Auth::AdminKey),
            case(Method::Post, doc_path, 401, uri),
            case(Method::Post, doc_path, 403, uri)
                .auth(Auth::ReadKey)
                .problem(FORBIDDEN),
            case(Method::Post, doc_path, 403, uri)
                .auth(Auth::Own)
                .problem(FORBIDDEN),
            case(Method::Post, doc_path, 404, missing).auth(Auth::AdminKey),
            case(Method::Post, doc_path, 503, uri)
                .on(Target::Down)
                .auth(Auth::Forged),
        ]);
    }
    cases
}

fn session_cases() -> Vec<Case> {
    use Method::*;
    let sessions = "/api/users/{id}/sessions";
    let session = "/api/users/{id}/sessions/{session_id}";
    let activity = "/api/users/{id}/activity";
    let current = "/api/sessions/current";
    let login = json!({"email": "{email}", "password": PASSWORD});
    let mut cases = Vec::new();
    for (doc_path, uri) in [
        (sessions, "/api/users/{id}/sessions"),
        (activity, "/api/users/{id}/activity"),
    ] {
        let not_a_uuid: &'static str = if doc_path == sessions {
            "/api/users/not-a-uuid/sessions"
        } else {
            "/api/users/not-a-uuid/activity"
        };
        cases.extend([
            case(Get, doc_path, 200, uri).auth(Auth::Own),
            case(Get, doc_path, 200, uri).auth(Auth::ReadKey),
            case(Get, doc_path, 401, uri),
            case(Get, doc_path, 403, uri)
                .auth(Auth::Other)
                .problem(FORBIDDEN),
            case(Get, doc_path, 403, uri)
                .auth(Auth::MetricsKey)
                .problem(FORBIDDEN),
            case(Get, doc_path, 404, not_a_uuid).auth(Auth::Own),
            case(Get, doc_path, 503, uri)
                .on(Target::Down)
                .auth(Auth::Forged),
        ]);
    }
    cases.extend([
        case(
            Delete,
            sessions,
            204,
            "/api/users/{id}/sessions?keep_current=true",
        )
        .auth(Auth::Own),
        case(Delete, sessions, 204, "/api/users/{id}/sessions").auth(Auth::AdminKey),
        case(Delete, sessions, 401, "/api/users/{id}/sessions"),
        case(Delete, sessions, 403, "/api/users/{id}/sessions")
            .auth(Auth::Other)
            .problem(FORBIDDEN),
        case(Delete, sessions, 403, "/api/users/{id}/sessions")
            .auth(Auth::ReadKey)
            .problem(FORBIDDEN),
        case(Delete, sessions, 404, "/api/users/not-a-uuid/sessions").auth(Auth::Own),
        case(Delete, sessions, 422, "/api/users/{id}/sessions?keep=true")
            .auth(Auth::Own)
            .problem("/problems/validation"),
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
            204,
            "/api/users/{id}/sessions/{session_id}",
        )
        .auth(Auth::AdminKey),
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
        .auth(Auth::Other)
        .problem(FORBIDDEN),
        case(
            Delete,
            session,
            403,
            "/api/users/{id}/sessions/{session_id}",
        )
        .auth(Auth::ReadKey)
        .problem(FORBIDDEN),
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
        case(Post, "/api/sessions", 201, "/api/sessions").json(login.clone()),
        case(Post, "/api/sessions", 401, "/api/sessions")
            .json(json!({"email": "{email}", "password": "wrong password"})),
        case(Post, "/api/sessions", 403, "/api/sessions")
            .on(Target::Disabled)
            .json(login.clone())
            .problem(DISABLED),
        case(Post, "/api/sessions", 422, "/api/sessions").json(json!({"email": "{email}"})),
        case(Post, "/api/sessions", 429, "/api/sessions")
            .on(Target::Throttled)
            .json(login.clone()),
        case(Post, "/api/sessions", 503, "/api/sessions")
            .on(Target::Down)
            .json(login),
        case(Get, current, 200, current).auth(Auth::Own),
        case(Get, current, 401, current).auth(Auth::Forged),
        case(Get, current, 401, current).auth(Auth::AdminKey),
        case(Get, current, 503, current)
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Delete, current, 204, current).auth(Auth::Own),
        case(Delete, current, 401, current),
        case(Delete, current, 503, current)
            .on(Target::Down)
            .auth(Auth::Forged),
    ]);
    cases
}

fn code_cases() -> Vec<Case> {
    use Method::*;
    let verify = "/api/email-verification";
    let verify_confirm = "/api/email-verification/confirm";
    let reset = "/api/password-reset";
    let reset_confirm = "/api/password-reset/confirm";
    let admin_reset = "/api/users/{id}/password-reset";
    let code_limits = "/api/users/{id}/code-limits";
    let revert = "/api/email-change/revert";
    let revert_body = json!({"email": "{email}", "code": "{revert_code}"});
    let confirm = json!({"email": "{email}", "code": "{code}"});
    let wrong = json!({"email": "{email}", "code": "000000"});
    let new_password = "an entirely new passphrase";
    let reset_body = json!({"email": "{email}", "code": "{code}", "new_password": new_password});
    let mut cases = Vec::new();
    for request in [verify, reset] {
        cases.extend([
            case(Post, request, 202, request).json(json!({"email": "{email}"})),
            case(Post, request, 202, request).json(json!({"email": "{fresh}"})),
            case(Post, request, 422, request).json(json!({"email": "not an email"})),
            case(Post, request, 429, request)
                .on(Target::CodesThrottled)
                .json(json!({"email": "{email}"})),
            case(Post, request, 503, request)
                .on(Target::Down)
                .json(json!({"email": "{email}"})),
        ]);
    }
    cases.extend([
        case(Post, verify_confirm, 200, verify_confirm).json(confirm.clone()),
        case(Post, verify_confirm, 422, verify_confirm)
            .json(wrong.clone())
            .problem("/problems/invalid-code"),
        case(Post, verify_confirm, 429, verify_confirm)
            .on(Target::Throttled)
            .json(confirm.clone()),
        case(Post, verify_confirm, 503, verify_confirm)
            .on(Target::Down)
            .json(confirm),
        case(Post, reset_confirm, 200, reset_confirm).json(reset_body.clone()),
        case(Post, reset_confirm, 422, reset_confirm)
            .json(json!({"email": "{email}", "code": "000000", "new_password": new_password}))
            .problem("/problems/invalid-code"),
        case(Post, reset_confirm, 422, reset_confirm)
            .json(json!({"email": "{email}", "code": "{code}", "new_password": "password123"})),
        case(Post, reset_confirm, 429, reset_confirm)
            .on(Target::Throttled)
            .json(reset_body.clone()),
        case(Post, reset_confirm, 503, reset_confirm)
            .on(Target::Down)
            .json(reset_body),
        case(Post, admin_reset, 202, "/api/users/{id}/password-reset").auth(Auth::AdminKey),
        case(Post, admin_reset, 401, "/api/users/{id}/password-reset"),
        case(Post, admin_reset, 403, "/api/users/{id}/password-reset")
            .auth(Auth::ReadKey)
            .problem(FORBIDDEN),
        case(Post, admin_reset, 403, "/api/users/{id}/password-reset")
            .auth(Auth::Own)
            .problem(FORBIDDEN),
        case(
            Post,
            admin_reset,
            404,
            "/api/users/{missing}/password-reset",
        )
        .auth(Auth::AdminKey),
        case(Post, admin_reset, 503, "/api/users/{id}/password-reset")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Delete, code_limits, 204, "/api/users/{id}/code-limits").auth(Auth::AdminKey),
        case(Delete, code_limits, 401, "/api/users/{id}/code-limits"),
        case(Delete, code_limits, 403, "/api/users/{id}/code-limits")
            .auth(Auth::ReadKey)
            .problem(FORBIDDEN),
        case(Delete, code_limits, 403, "/api/users/{id}/code-limits")
            .auth(Auth::Own)
            .problem(FORBIDDEN),
        case(Delete, code_limits, 404, "/api/users/{missing}/code-limits").auth(Auth::AdminKey),
        case(Delete, code_limits, 503, "/api/users/{id}/code-limits")
            .on(Target::Down)
            .auth(Auth::Forged),
        case(Post, revert, 200, revert).json(revert_body.clone()),
        case(Post, revert, 409, revert)
            .json(json!({"email": "{other_email}", "code": "{revert_code}"}))
            .problem("/problems/email-in-use"),
        case(Post, revert, 422, revert)
            .json(json!({"email": "{email}", "code": "BBBBBBBBBBBBBBBBBBBBBA"}))
            .problem("/problems/invalid-code"),
        case(Post, revert, 422, revert).json(json!({"email": "{email}", "code": "{code}"})),
        case(Post, revert, 429, revert)
            .on(Target::Throttled)
            .json(revert_body.clone()),
        case(Post, revert, 503, revert)
            .on(Target::Down)
            .json(revert_body),
        case(Post, "/api/sessions", 403, "/api/sessions")
            .on(Target::VerifiedOnly)
            .json(json!({"email": "{email}", "password": PASSWORD}))
            .problem("/problems/email-not-verified"),
    ]);
    for uri in [verify, verify_confirm, reset, reset_confirm, revert] {
        cases.extend(body_failures(Post, uri, uri));
    }
    cases
}

fn cases() -> Vec<Case> {
    use Method::*;
    let mut cases = operations_cases();
    cases.extend(user_cases());
    cases.extend(admin_cases());
    cases.extend(session_cases());
    cases.extend(code_cases());
    for (method, uri) in [(Post, "/api/users"), (Post, "/api/sessions")] {
        cases.extend(body_failures(method, uri, uri));
    }
    for method in [Put, Patch, Delete] {
        cases.extend(body_failures(
            method,
            "/api/users/{user}",
            "/api/users/{id}",
        ));
    }
    cases
}

/// A user of its own for each case, so cases cannot disturb each other,
/// and the one old session all cases share.
struct Fixture {
    id: String,
    email: String,
    token: String,
    other_email: String,
    other_token: String,
    old: Old,
}

/// A user whose only session was opened at the start.
#[derive(Clone)]
struct Old {
    id: String,
    email: String,
    token: String,
}

async fn fixture(app: &TestApp, old: &Old) -> Fixture {
    let email = format!("u{}@example.com", uuid::Uuid::new_v4().simple());
    let other_email = format!("o{}@example.com", uuid::Uuid::new_v4().simple());
    let user = app.create_user("User", &email, PASSWORD).await;
    app.create_user("Other", &other_email, PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    for purpose in [CodePurpose::VerifyEmail, CodePurpose::ResetPassword] {
        store_code(app, purpose, id, &email);
    }
    for old in [&email, &other_email] {
        store_revert_code(app, id, old);
    }
    Fixture {
        id: user["id"].as_str().expect("id").to_owned(),
        token: app.token_for(&email, PASSWORD).await,
        other_token: app.token_for(&other_email, PASSWORD).await,
        email,
        other_email,
        old: old.clone(),
    }
}

/// An app over `up`'s data with one setting of its own.
async fn beside(up: &TestApp, setting: (&str, &str)) -> TestApp {
    TestApp::spawn_with_prefix(
        &up.redis_url,
        &up.prefix,
        &[setting, ("TOKEN_SECRET", SECRET)],
    )
    .await
}

/// Gives the user `id` the live code [`CODE`] of `purpose`, as a mail
/// would have brought it.
fn store_code(app: &TestApp, purpose: CodePurpose, id: &str, email: &str) {
    let secret = CodeSecret::parse(SECRET.as_bytes()).expect("a valid secret");
    let user = UserId::parse(id).expect("a user id");
    let email = UserEmail::parse(email).expect("a valid email");
    let code = OneTimeCode::parse(CODE).expect("six digits");
    let digest = secret.digest(purpose, user, &email, &code);
    redis::cmd("HSET")
        .arg(app.keys_of_layout().code(purpose, user))
        .arg(code_fields::DIGEST)
        .arg(digest)
        .arg(code_fields::TRIES)
        .arg(0)
        .exec(&mut app.redis())
        .expect("HSET");
}

/// Gives the user `id` the revert code [`REVERT_CODE`] for `old`, as the notice
/// of a change from `old` would have brought it. For the other user's
/// email, it names an address another account holds.
fn store_revert_code(app: &TestApp, id: &str, old: &str) {
    let secret = CodeSecret::parse(SECRET.as_bytes()).expect("a valid secret");
    let old = UserEmail::parse(old).expect("a valid email");
    let code = RevertCode::parse(REVERT_CODE).expect("a revert code");
    let digest = secret.revert_digest(&old, &code);
    let keys = app.keys_of_layout();
    let code_key = keys.email_revert(&old, &digest);
    redis::cmd("SET")
        .arg(&code_key)
        .arg(id)
        .exec(&mut app.redis())
        .expect("SET");
    redis::cmd("ZADD")
        .arg(keys.email_reverts_of(user_id(id)))
        .arg(1)
        .arg(&code_key)
        .exec(&mut app.redis())
        .expect("ZADD");
}

fn fill(text: &str, fixture: &Fixture) -> String {
    let session_id = session_id(&fixture.token);
    text.replace("{code}", CODE)
        .replace("{revert_code}", REVERT_CODE)
        .replace("{old_id}", &fixture.old.id)
        .replace("{old_email}", &fixture.old.email)
        .replace("{id}", &fixture.id)
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

/// The documented (method, path, status) triples.
fn documented_responses(doc: &Value) -> BTreeSet<(String, String, String)> {
    let mut documented = BTreeSet::new();
    for (method, path, operation) in operations(doc) {
        for status in operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
        {
            documented.insert((method.clone(), path.clone(), status.clone()));
        }
    }
    documented
}

/// The answer to one case, read fully.
struct Answer {
    status: Status,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Checks the answer against its documented response: the content type,
/// the required headers and the body's schema.
fn check_answer(doc: &Value, case: &Case, answer: &Answer) -> Result<(), String> {
    let method = case.method.as_str().to_lowercase();
    let response =
        &doc["paths"][case.doc_path][method.as_str()]["responses"][case.status.to_string()];
    let response = resolve(doc, response);
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let Some(value) = answer.header(name) else {
            if header["required"] == true {
                return Err(format!("no {name} header"));
            }
            continue;
        };
        let value = match header["schema"]["type"].as_str() {
            Some("integer") => value
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("{name}: {value} is not an integer"))?,
            _ => Value::from(value),
        };
        check(doc, &header["schema"], &value, name)?;
    }
    let Some(content) = response["content"].as_object() else {
        return Ok(());
    };
    let media_type = answer
        .content_type
        .as_deref()
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .ok_or("no Content-Type")?;
    let media = content
        .get(media_type)
        .ok_or_else(|| format!("{media_type} is not documented"))?;
    let body = if media_type.ends_with("json") {
        serde_json::from_str(&answer.body).map_err(|error| format!("not JSON: {error}"))?
    } else {
        Value::String(answer.body.clone())
    };
    check(doc, &media["schema"], &body, "body")?;
    if let Some(problem_type) = case.problem {
        if body["type"] != problem_type {
            return Err(format!("type {} is not {problem_type}", body["type"]));
        }
    }
    Ok(())
}

#[rocket::async_test]
async fn every_documented_response_is_provoked_by_a_request() {
    // Wrong passwords below must not throttle the loopback client's IP...
    let up = TestApp::spawn_on(
        &common::shared_redis_url(),
        &[
            ("LOGIN_MAX_FAILURES", "100000"),
            ("MAIL_MAX_PER_ADDRESS", "1000000"),
            ("TOKEN_SECRET", SECRET),
        ],
    )
    .await;
    // The old session: opened now, too old for SESSION_REAUTH_SECS=1 once
    // a second has passed.
    let old_email = format!("old{}@example.com", uuid::Uuid::new_v4().simple());
    let old_user = up.create_user("Old", &old_email, PASSWORD).await;
    let old = Old {
        id: old_user["id"].as_str().expect("id").to_owned(),
        token: up.token_for(&old_email, PASSWORD).await,
        email: old_email,
    };
    let logged_in = std::time::Instant::now();
    // ...except here, where one failure is the limit.
    let strict = beside(&up, ("LOGIN_MAX_FAILURES", "1")).await;
    let closed = beside(&up, ("SIGNUP", "closed")).await;
    let reauth = beside(&up, ("SESSION_REAUTH_SECS", "1")).await;
    let verified_only = beside(&up, ("REQUIRE_VERIFIED_EMAIL", "true")).await;
    let codes_strict = beside(&up, ("MAIL_MAX_PER_ADDRESS", "1")).await;
    let notify = beside(&up, ("SIGNUP_EXISTING", "notify")).await;
    let down = TestApp::spawn_on(
        &format!("redis://127.0.0.1:{}/", free_port()),
        &[("REDIS_TIMEOUT_MS", "200")],
    )
    .await;
    let admin_key = up.admin_key().await.to_owned();
    let read_key = up.key(KeyScope::Read).await;
    let metrics_key = up.key(KeyScope::Metrics).await;
    let cases = cases();

    let doc = document();
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
        documented_responses(&doc),
        provoked,
        "documented responses and provoking requests differ"
    );

    let too_old = std::time::Duration::from_millis(1100);
    if let Some(wait) = too_old.checked_sub(logged_in.elapsed()) {
        rocket::tokio::time::sleep(wait).await;
    }
    for case in cases {
        let fixture = fixture(&up, &old).await;
        let app = match case.target {
            Target::Up => &up,
            Target::Down => &down,
            Target::Throttled => {
                strict.login(&fixture.email, "wrong password").await;
                &strict
            }
            Target::Closed => &closed,
            Target::Notify => &notify,
            Target::Reauth => &reauth,
            Target::VerifiedOnly => &verified_only,
            Target::CodesThrottled => {
                let body = json!({"email": fixture.email});
                codes_strict.post_json("/api/password-reset", &body).await;
                &codes_strict
            }
            Target::Disabled => {
                let disable = format!("/api/users/{}/disable", fixture.id);
                let reply = up
                    .with_token(Method::Post, &disable, &admin_key, None)
                    .await;
                assert_eq!(reply.status, Status::Ok, "{}", reply.body);
                &up
            }
        };
        let uri = fill(case.uri, &fixture);
        let mut request = app.client.req(case.method, uri.clone());
        let credential = match case.auth {
            Auth::None => None,
            Auth::Own => Some(fixture.token.clone()),
            Auth::Other => Some(fixture.other_token.clone()),
            Auth::Forged => Some("A".repeat(43)),
            Auth::AdminKey => Some(admin_key.clone()),
            Auth::ReadKey => Some(read_key.clone()),
            Auth::MetricsKey => Some(metrics_key.clone()),
            Auth::OldSession => Some(fixture.old.token.clone()),
        };
        if let Some(credential) = credential {
            request = request.header(Header::new("Authorization", format!("Bearer {credential}")));
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
        let answer = Answer {
            status: response.status(),
            content_type: response.content_type().map(|media| media.to_string()),
            headers: response
                .headers()
                .iter()
                .map(|header| (header.name().to_string(), header.value().to_string()))
                .collect(),
            body: response.into_string().await.unwrap_or_default(),
        };
        let at = format!("{} {uri} ({})", case.method, case.doc_path);
        assert_eq!(
            answer.status,
            Status::new(case.status),
            "{at}: {}",
            answer.body
        );
        if let Err(error) = check_answer(&doc, &case, &answer) {
            panic!("{at} {}: {error}\n{}", case.status, answer.body);
        }
    }
}
