//! HTTP behaviour shared by every route: problem responses for Rocket's own
//! errors, body limits, media types, security headers, static files.

mod common;

use common::{user_body, TestApp};
use rocket::http::{ContentType, Status};
use serde_json::json;
use user_accounts::domain::KeyScope;

#[rocket::async_test]
async fn ping_answers_pong_in_plain_text() {
    let app = TestApp::spawn().await;
    let reply = app.get("/ping").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.body, "PONG!");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
}

#[rocket::async_test]
async fn a_json_body_ends_with_a_newline() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health/live").await;
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.body, "{\"status\":\"live\"}\n");
}

#[rocket::async_test]
async fn a_problem_body_ends_with_a_newline() {
    let app = TestApp::spawn().await;
    let reply = app.get("/nowhere").await;
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/problem+json")
    );
    assert!(reply.body.ends_with("}\n"), "{:?}", reply.body);
}

#[rocket::async_test]
async fn a_body_that_ends_with_a_newline_gets_no_second_one() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/openapi.json").await;
    assert!(
        reply.body.ends_with("}\n") && !reply.body.ends_with("\n\n"),
        "{:?}",
        &reply.body[reply.body.len().saturating_sub(20)..]
    );
}

#[rocket::async_test]
async fn an_unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    app.get("/nowhere")
        .await
        .assert_problem(Status::NotFound, "no resource at /nowhere");
}

#[rocket::async_test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let reply = app
        .post_user_raw(Some(ContentType::JSON), "{\"name\": ")
        .await;
    reply.assert_problem_status(Status::BadRequest);
    assert!(reply.json()["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("malformed JSON")));
}

#[rocket::async_test]
async fn trailing_garbage_after_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let reply = app.post_user_raw(Some(ContentType::JSON), "{} {}").await;
    assert_eq!(reply.status, Status::BadRequest, "{}", reply.body);
}

#[rocket::async_test]
async fn invalid_utf8_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let body = b"{\"name\": \"\xff\xfe\"}";
    let reply = app.post_user_raw(Some(ContentType::JSON), body).await;
    assert_eq!(reply.status, Status::BadRequest, "{}", reply.body);
}

#[rocket::async_test]
async fn deeply_nested_json_is_a_client_error_not_a_crash() {
    let app = TestApp::spawn().await;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for body in [
        format!("{{\"deep\": {nested}}}"),
        format!("{{\"name\": {nested}}}"),
    ] {
        let reply = app.post_user_raw(Some(ContentType::JSON), body).await;
        assert_eq!(reply.status, Status::UnprocessableEntity, "{}", reply.body);
    }
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn a_body_that_is_not_an_object_is_a_422_problem() {
    let app = TestApp::spawn().await;
    let reply = app.post_user_raw(Some(ContentType::JSON), "[1, 2]").await;
    assert_eq!(reply.status, Status::UnprocessableEntity, "{}", reply.body);
    assert_eq!(reply.field_errors("body"), vec!["must be a JSON object"]);
}

#[rocket::async_test]
async fn a_wrong_content_type_is_a_415_problem() {
    let app = TestApp::spawn().await;
    let body = user_body("Ada", "a@b.co", "long enough").to_string();
    let reply = app
        .post_user_raw(Some(ContentType::Form), body.clone())
        .await;
    reply.assert_problem_status(Status::UnsupportedMediaType);
    let reply = app.post_user_raw(None, body).await;
    assert_eq!(
        reply.status,
        Status::UnsupportedMediaType,
        "no Content-Type at all"
    );
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn a_body_over_16_kib_is_a_413_problem() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "x".repeat(17 * 1024), "email": "a@b.co", "password": "long enough"});
    let reply = app
        .post_user_raw(Some(ContentType::JSON), body.to_string())
        .await;
    reply.assert_problem_status(Status::PayloadTooLarge);
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn a_10000_character_email_is_a_422_problem() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", "a".repeat(10_000));
    let reply = app.sign_up("Ada", &email, "long enough").await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("email").len(), 1);
}

#[rocket::async_test]
async fn emails_with_the_index_separator_or_control_characters_are_rejected() {
    let app = TestApp::spawn().await;
    for email in [
        "\"a\u{0}b\"@example.com",
        "a\u{7}b@example.com",
        "a\nb@example.com",
    ] {
        let reply = app.sign_up("Ada", email, "long enough").await;
        assert_eq!(reply.status, Status::UnprocessableEntity, "{email:?}");
    }
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn responses_carry_the_shield_security_headers() {
    let app = TestApp::spawn().await;
    let reply = app.get("/ping").await;
    assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(reply.header("X-Frame-Options"), Some("SAMEORIGIN"));
    assert!(reply.header("Permissions-Policy").is_some());
}

#[rocket::async_test]
async fn the_mail_link_pages_are_html_that_runs_only_its_own_script() {
    let app = TestApp::spawn().await;
    for (uri, button) in [
        ("/verify", "Verify my email"),
        ("/reset", "Set my new password"),
    ] {
        let reply = app.get(uri).await;
        assert_eq!(reply.status, Status::Ok, "{uri}");
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{uri}"
        );
        assert!(reply.body.contains(button), "{uri}");
        assert!(reply.body.contains("location.hash"), "{uri}");
        let policy = reply.header("Content-Security-Policy").expect(uri);
        for directive in [
            "default-src 'none'",
            "script-src 'sha256-",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{uri}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{uri}: {policy}");
        assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    }
}

#[rocket::async_test]
async fn files_are_served_from_static() {
    let app = TestApp::spawn().await;
    let reply = app.get("/files/index.html").await;
    assert_eq!(reply.status, Status::Ok);
    let on_disk = std::fs::read_to_string("static/index.html").expect("static/index.html");
    assert_eq!(reply.body, on_disk);
}

#[rocket::async_test]
async fn path_traversal_under_files_finds_nothing() {
    let app = TestApp::spawn().await;
    for uri in [
        "/files/../Cargo.toml",
        "/files/..%2FCargo.toml",
        "/files/%2e%2e/Cargo.toml",
    ] {
        let reply = app.get(uri).await;
        assert_eq!(reply.status, Status::NotFound, "{uri}");
        assert!(!reply.body.contains("[package]"), "{uri} leaked Cargo.toml");
    }
}

#[rocket::async_test]
async fn liveness_answers_200() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health/live").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.json()["status"], "live");
}

#[rocket::async_test]
async fn readiness_reports_the_redis_round_trip_and_the_pool() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health/ready").await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    assert!(
        body["redis_rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{body}"
    );
    assert_eq!(body["pool"]["size"], 15);
    assert!(
        body["pool"]["connections"].as_u64().is_some_and(|n| n >= 1),
        "{body}"
    );
}

#[rocket::async_test]
async fn a_valid_request_id_is_echoed() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get("/ping")
        .header(rocket::http::Header::new("X-Request-Id", "trace-42.a:b_c"))
        .dispatch()
        .await;
    assert_eq!(
        response.headers().get_one("X-Request-Id"),
        Some("trace-42.a:b_c")
    );
}

#[rocket::async_test]
async fn a_request_id_is_generated_when_missing_or_unsafe() {
    let app = TestApp::spawn().await;
    let generated = app.get("/ping").await;
    let id = generated.header("X-Request-Id").expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let response = app
        .client
        .get("/ping")
        .header(rocket::http::Header::new(
            "X-Request-Id",
            "evil\" value; with spaces",
        ))
        .dispatch()
        .await;
    let echoed = response.headers().get_one("X-Request-Id").expect("an id");
    assert!(
        uuid::Uuid::parse_str(echoed).is_ok(),
        "replaced, not echoed: {echoed}"
    );
}

#[rocket::async_test]
async fn metrics_are_served_in_prometheus_text_format() {
    let app = TestApp::spawn().await;
    app.get("/ping").await;
    app.create_user("Ada", "ada@example.com", "correct horse battery")
        .await;
    app.token_for("ada@example.com", "correct horse battery")
        .await;
    let reply = app
        .get_as("/metrics", &app.key(KeyScope::Metrics).await)
        .await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4")
    );
    for expected in [
        r#"http_requests_total{method="GET",route="/ping",status="200"} 1"#,
        r#"http_requests_total{method="POST",route="/api/users",status="201"} 1"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/ping""#,
        "redis_pool_size 15",
        "redis_pool_connections ",
        "redis_pool_idle_connections ",
        "redis_pool_wait_seconds_count ",
        "redis_errors_total 0",
        "redis_read_connections_opened_total 1",
        "argon2_jobs_waiting 0",
        "argon2_jobs_running 0",
        "argon2_jobs_refused_total 0",
        "sessions_created_total 1",
    ] {
        assert!(
            reply.body.contains(expected),
            "missing {expected:?} in\n{}",
            reply.body
        );
    }
}

#[rocket::async_test]
async fn an_answer_carrying_a_user_is_not_to_be_cached() {
    let app = TestApp::spawn().await;
    let reply = app
        .sign_up("Ada", "ada@example.com", "correct horse battery")
        .await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    let login = app.login("ada@example.com", "correct horse battery").await;
    assert_eq!(login.header("Cache-Control"), Some("no-store"));
}

#[rocket::async_test]
async fn the_pages_send_no_referrer() {
    let app = TestApp::spawn().await;
    for page in ["/verify", "/reset"] {
        let reply = app.get(page).await;
        assert_eq!(
            reply.header("Referrer-Policy"),
            Some("no-referrer"),
            "{page}"
        );
    }
}

#[rocket::async_test]
async fn https_is_required_of_browsers_only_when_the_service_is_published_on_it() {
    let plain = TestApp::spawn_with(&[("PUBLIC_URL", "http://127.0.0.1:8000")]).await;
    assert_eq!(
        plain.get("/ping").await.header("Strict-Transport-Security"),
        None
    );
    let published = TestApp::spawn_with(&[("PUBLIC_URL", "https://accounts.example.com")]).await;
    assert_eq!(
        published
            .get("/ping")
            .await
            .header("Strict-Transport-Security"),
        Some("max-age=31536000")
    );
}

#[rocket::async_test]
async fn a_browser_at_the_root_is_sent_to_the_docs() {
    let app = TestApp::spawn().await;
    let reply = app.get("/").await;
    assert_eq!(reply.status, Status::SeeOther);
    assert_eq!(reply.header("Location"), Some("/docs"));
}

#[rocket::async_test]
async fn health_answers_as_readiness_does() {
    let app = TestApp::spawn().await;
    let health = app.get("/health").await;
    let ready = app.get("/health/ready").await;
    assert_eq!(health.status, Status::Ok, "{}", health.body);
    assert_eq!(health.json()["status"], ready.json()["status"]);
}

#[rocket::async_test]
async fn a_known_path_with_another_method_gets_405_naming_the_methods_it_takes() {
    let app = TestApp::spawn().await;
    let reply = app
        .send_raw(rocket::http::Method::Delete, "/api/users", None, "")
        .await;
    reply.assert_problem_status(Status::MethodNotAllowed);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD, POST"));
    assert_eq!(reply.json()["detail"], "/api/users takes GET, HEAD, POST");
}

#[rocket::async_test]
async fn options_on_a_known_path_gets_405_with_allow() {
    let app = TestApp::spawn().await;
    let reply = app
        .send_raw(rocket::http::Method::Options, "/api/sessions", None, "")
        .await;
    reply.assert_problem_status(Status::MethodNotAllowed);
    assert_eq!(reply.header("Allow"), Some("POST"));
}

#[rocket::async_test]
async fn a_path_with_a_parameter_gets_405_for_a_method_it_does_not_take() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let reply = app
        .send_raw(
            rocket::http::Method::Post,
            &format!("/api/users/{id}"),
            None,
            "",
        )
        .await;
    reply.assert_problem_status(Status::MethodNotAllowed);
    assert_eq!(reply.header("Allow"), Some("DELETE, GET, HEAD, PATCH, PUT"));
}

#[rocket::async_test]
async fn an_unknown_path_is_still_404() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/nothing-here").await;
    reply.assert_problem_status(Status::NotFound);
    assert!(reply.header("Allow").is_none());
}

#[rocket::async_test]
async fn an_unknown_field_is_refused_naming_it_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut body = user_body("Bob", "bob@example.com", "correct horse battery");
    body["username"] = json!("bob");
    let reply = app.post_user(&body).await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    assert_eq!(
        reply.json()["errors"],
        json!([{
            "field": "username",
            "message": "is not a field of this request (it takes name, email, password)"
        }])
    );
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn a_field_sent_twice_is_refused_naming_it_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let body = r#"{"name": "Bob", "email": "bob@example.com", "email": "eve@example.com",
                   "password": "correct horse battery"}"#;
    let reply = app.post_user_raw(Some(ContentType::JSON), body).await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    assert_eq!(
        reply.json()["errors"],
        json!([{
            "field": "email",
            "message": "appears more than once; send each field once"
        }])
    );
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn a_put_may_send_back_the_read_only_fields_it_read() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("Ada", "ada@example.com", "correct horse battery")
        .await;
    let mut body = user.clone();
    body["name"] = json!("Ada Lovelace");
    body["password"] = json!("correct horse battery");
    let id = user["id"].as_str().expect("an id");
    let reply = app.put_user(id, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["name"], "Ada Lovelace");
}

#[rocket::async_test]
async fn a_sign_up_may_not_carry_the_read_only_fields() {
    let app = TestApp::spawn().await;
    let mut body = user_body("Bob", "bob@example.com", "correct horse battery");
    body["id"] = json!(uuid::Uuid::new_v4().to_string());
    let reply = app.post_user(&body).await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    assert_eq!(reply.json()["errors"][0]["field"], "id");
}

#[rocket::async_test]
async fn a_verification_takes_no_new_password() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "ada@example.com", "code": "123456", "new_password": "x"});
    let reply = app
        .post_json("/api/email-verification/confirm", &body)
        .await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    assert_eq!(reply.json()["errors"][0]["field"], "new_password");
}
