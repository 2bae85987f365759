//! Browsers on other origins: preflights and the headers that let a page on
//! a listed origin read the answers (CORS_ALLOWED_ORIGINS).

mod common;

use common::TestApp;
use rocket::http::{Method, Status};

const PAGE: &str = "http://127.0.0.2:5173";

async fn app_allowing(origins: &str) -> TestApp {
    TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", origins)]).await
}

/// A browser's preflight from `origin` for a `GET` with `Authorization`.
async fn preflight(app: &TestApp, origin: &str, uri: &str) -> common::Reply {
    app.with_headers(
        Method::Options,
        uri,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await
}

#[rocket::async_test]
async fn a_preflight_from_a_listed_origin_names_it_and_the_paths_methods() {
    let app = app_allowing(&format!("https://app.example.com, {PAGE}")).await;
    let reply = preflight(&app, PAGE, "/api/sessions/current").await;
    assert_eq!(reply.status, Status::NoContent, "{}", reply.body);
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(PAGE));
    assert_eq!(
        reply.header("Access-Control-Allow-Methods"),
        Some("DELETE, GET, HEAD")
    );
    assert_eq!(
        reply.header("Access-Control-Allow-Headers"),
        Some("Authorization, Content-Type, X-Request-Id")
    );
    assert!(reply.header("Access-Control-Max-Age").is_some());
    assert_eq!(reply.header("Vary"), Some("Origin"));
}

#[rocket::async_test]
async fn no_answer_allows_credentials_or_any_origin() {
    let app = app_allowing(PAGE).await;
    let answers = [
        preflight(&app, PAGE, "/api/users").await,
        app.with_headers(Method::Get, "/health/live", &[("Origin", PAGE)])
            .await,
    ];
    for reply in answers {
        assert_eq!(reply.header("Access-Control-Allow-Credentials"), None);
        assert_ne!(reply.header("Access-Control-Allow-Origin"), Some("*"));
    }
}

#[rocket::async_test]
async fn a_preflight_from_an_unlisted_origin_is_refused_naming_the_setting() {
    let app = app_allowing(PAGE).await;
    let reply = preflight(&app, "http://127.0.0.3:5173", "/api/sessions/current").await;
    assert_eq!(reply.status, Status::Forbidden);
    assert_eq!(reply.json()["type"], "/problems/origin-not-allowed");
    assert!(
        reply.json()["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("CORS_ALLOWED_ORIGINS")),
        "{}",
        reply.body
    );
    assert_eq!(reply.header("Access-Control-Allow-Origin"), None);
}

#[rocket::async_test]
async fn an_answer_to_a_listed_origin_names_it_and_the_headers_its_page_may_read() {
    let app = app_allowing(PAGE).await;
    let reply = app
        .with_headers(Method::Get, "/health/live", &[("Origin", PAGE)])
        .await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(PAGE));
    let exposed = reply
        .header("Access-Control-Expose-Headers")
        .unwrap_or_default();
    for header in [
        "Location",
        "Retry-After",
        "WWW-Authenticate",
        "X-Request-Id",
    ] {
        assert!(exposed.contains(header), "{header} not in {exposed:?}");
    }
    assert_eq!(reply.header("Vary"), Some("Origin"));
}

#[rocket::async_test]
async fn an_answer_to_an_unlisted_origin_carries_no_cors_headers() {
    let app = app_allowing(PAGE).await;
    let reply = app
        .with_headers(
            Method::Get,
            "/health/live",
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.header("Access-Control-Allow-Origin"), None);
    assert_eq!(reply.header("Vary"), Some("Origin"));
}

#[rocket::async_test]
async fn a_preflight_to_an_unknown_path_is_404() {
    let app = app_allowing(PAGE).await;
    let reply = preflight(&app, PAGE, "/api/nothing-here").await;
    reply.assert_problem_status(Status::NotFound);
}

#[rocket::async_test]
async fn an_options_request_that_is_no_preflight_is_405_as_without_cors() {
    let app = app_allowing(PAGE).await;
    let reply = app
        .with_headers(Method::Options, "/api/sessions", &[])
        .await;
    reply.assert_problem_status(Status::MethodNotAllowed);
    assert_eq!(reply.header("Allow"), Some("POST"));
}

#[rocket::async_test]
async fn without_the_setting_a_preflight_gets_no_cors_headers() {
    let app = TestApp::spawn().await;
    let reply = preflight(&app, PAGE, "/api/sessions/current").await;
    reply.assert_problem_status(Status::MethodNotAllowed);
    assert_eq!(reply.header("Access-Control-Allow-Origin"), None);
    let answer = app
        .with_headers(Method::Get, "/health/live", &[("Origin", PAGE)])
        .await;
    assert_eq!(answer.header("Access-Control-Allow-Origin"), None);
}
