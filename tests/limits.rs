//! The limiter every password check goes through, and the client address
//! it counts by: per account and address, per account, per address.

mod common;

use std::time::Duration;

use common::TestApp;
use rocket::futures::future::join_all;
use rocket::http::Status;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn app_with_ada(settings: &[(&str, &str)]) -> (TestApp, String) {
    let app = TestApp::spawn_with(settings).await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    (app, ada["id"].as_str().expect("id").to_owned())
}

async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> Status {
    app.login_from(address, &[], email, password).await.status
}

/// A login of Ada from `client`, as the proxy at 10.0.0.2 forwards it.
async fn login_behind_proxy(app: &TestApp, client: &str, password: &str) -> Status {
    let headers = [("X-Forwarded-For", client)];
    app.login_from("10.0.0.2", &headers, "ada@example.com", password)
        .await
        .status
}

#[rocket::async_test]
async fn too_many_failures_for_an_account_from_one_address_get_429_even_with_the_right_password() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_WINDOW_SECS", "60")]).await;
    for _ in 0..3 {
        assert_eq!(
            app.login("ada@example.com", "wrong password").await.status,
            Status::Unauthorized
        );
    }
    let reply = app.login("ada@example.com", PASSWORD).await;
    reply.assert_problem(
        Status::TooManyRequests,
        "too many failed logins; retry later",
    );
    let retry_after: u64 = reply
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

#[rocket::async_test]
async fn the_failure_window_ends_and_logins_work_again() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_FAILURES", "2"), ("LOGIN_WINDOW_SECS", "1")]).await;
    for _ in 0..2 {
        app.login("ada@example.com", "wrong password").await;
    }
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status,
        Status::TooManyRequests
    );
    rocket::tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status,
        Status::Created
    );
}

#[rocket::async_test]
async fn a_successful_login_resets_the_counter_of_its_account_and_address() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_WINDOW_SECS", "60")]).await;
    for _ in 0..3 {
        for _ in 0..2 {
            let status = login_from(&app, "203.0.113.1", "ada@example.com", "wrong").await;
            assert_eq!(status, Status::Unauthorized);
        }
        let status = login_from(&app, "203.0.113.1", "ada@example.com", PASSWORD).await;
        assert_eq!(
            status,
            Status::Created,
            "6 failures in all, never 3 in a row"
        );
    }
}

#[rocket::async_test]
async fn failures_from_other_addresses_do_not_lock_the_owner_out() {
    let (app, _) = app_with_ada(&[]).await;
    for n in 1..=6 {
        let status = login_from(&app, &format!("198.51.100.{n}"), "ada@example.com", "wrong").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let status = login_from(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert_eq!(
        status,
        Status::Created,
        "the owner's own address is not locked"
    );
}

#[rocket::async_test]
async fn guesses_spread_over_many_addresses_meet_the_account_wide_limit() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_ACCOUNT_FAILURES", "4")]).await;
    for n in 1..=4 {
        let status = login_from(&app, &format!("198.51.100.{n}"), "ada@example.com", "wrong").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let status = login_from(&app, "198.51.100.99", "ada@example.com", PASSWORD).await;
    assert_eq!(status, Status::TooManyRequests);
}

#[rocket::async_test]
async fn too_many_failures_from_one_address_get_429_across_accounts() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_ADDRESS_FAILURES", "3")]).await;
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        let status = login_from(&app, "198.51.100.9", email, "wrong password").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let status = login_from(&app, "198.51.100.9", "ada@example.com", PASSWORD).await;
    assert_eq!(status, Status::TooManyRequests);
    let status = login_from(&app, "198.51.100.10", "ada@example.com", PASSWORD).await;
    assert_eq!(status, Status::Created, "another address");
}

#[rocket::async_test]
async fn a_burst_of_concurrent_wrong_passwords_gets_no_more_401s_than_the_limit() {
    let (app, _) = app_with_ada(&[]).await;
    let replies = join_all((0..60).map(|_| app.login("ada@example.com", "wrong password"))).await;
    let refused = replies
        .iter()
        .filter(|reply| reply.status == Status::Unauthorized)
        .count();
    assert_eq!(refused, 5, "LOGIN_MAX_FAILURES answers of 401, no more");
    for reply in replies
        .iter()
        .filter(|reply| reply.status != Status::Unauthorized)
    {
        assert_eq!(reply.status, Status::TooManyRequests, "{}", reply.body);
        assert!(reply.header("Retry-After").is_some());
    }
}

#[rocket::async_test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_ADDRESS_FAILURES", "5")]).await;
    let mut statuses = Vec::new();
    for n in 1..=12 {
        let forged = format!("203.0.113.{n}");
        let headers = [
            ("X-Real-IP", forged.as_str()),
            ("X-Forwarded-For", forged.as_str()),
        ];
        let email = format!("user{n}@example.com");
        let reply = app
            .login_from("192.0.2.50", &headers, &email, "wrong")
            .await;
        statuses.push(reply.status.code);
    }
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());
}

#[rocket::async_test]
async fn a_trusted_proxy_names_the_client_that_is_counted() {
    let (app, _) = app_with_ada(&[
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ("LOGIN_MAX_FAILURES", "2"),
    ])
    .await;
    for _ in 0..2 {
        let status = login_behind_proxy(&app, "203.0.113.7", "wrong").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let locked = login_behind_proxy(&app, "203.0.113.7", PASSWORD).await;
    assert_eq!(locked, Status::TooManyRequests);
    let other = login_behind_proxy(&app, "203.0.113.8", PASSWORD).await;
    assert_eq!(
        other,
        Status::Created,
        "another client behind the same proxy"
    );
}

#[rocket::async_test]
async fn ipv6_clients_of_one_64_network_count_as_one() {
    let (app, _) = app_with_ada(&[("LOGIN_MAX_FAILURES", "2")]).await;
    for address in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        let status = login_from(&app, address, "ada@example.com", "wrong").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let status = login_from(&app, "2001:db8:1:2::3", "ada@example.com", PASSWORD).await;
    assert_eq!(status, Status::TooManyRequests);
    let status = login_from(&app, "2001:db8:1:3::1", "ada@example.com", PASSWORD).await;
    assert_eq!(status, Status::Created, "another /64");
}

#[rocket::async_test]
async fn wrong_passwords_on_changes_meet_the_same_limit_as_logins() {
    let (app, id) = app_with_ada(&[]).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let body = json!({"password": "wrong password", "new_password": "a new passphrase"});
        statuses.push(app.patch_user(&id, &body).await.status.code);
    }
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());
    let reply = app
        .put_user(
            &id,
            &json!({"name": "A", "email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        reply.status,
        Status::TooManyRequests,
        "the login limit holds for PUT too"
    );
}

#[rocket::async_test]
async fn a_weak_new_password_gets_the_same_answer_whether_the_old_one_is_right_or_not() {
    let (app, id) = app_with_ada(&[]).await;
    let right = app
        .patch_user(
            &id,
            &json!({"password": PASSWORD, "new_password": "password123"}),
        )
        .await;
    let wrong = app
        .patch_user(
            &id,
            &json!({"password": "wrong", "new_password": "password123"}),
        )
        .await;
    assert_eq!(right.status, Status::UnprocessableEntity);
    assert_eq!((wrong.status, wrong.json()), (right.status, right.json()));
}
