//! The `/api/users` API, one behaviour per test.

mod common;

use common::{emails_on, id_of, index_member, user_body, Reply, TestApp};
use rocket::http::Status;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// A fresh app where Ada has signed up; her user as the API returned it.
async fn app_with_ada() -> (TestApp, Value) {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    (app, ada)
}

/// Asserts that a sign-up of `email` is refused as taken, and that the
/// index still holds the one email taken before.
async fn assert_sign_up_is_taken(app: &TestApp, email: &str) {
    app.sign_up("Other", email, PASSWORD)
        .await
        .assert_problem(Status::Conflict, "email already in use");
    assert_eq!(app.index_members().len(), 1);
}

/// Asserts that the email index holds `email` of the user `id`, alone.
fn assert_only_indexed(app: &TestApp, email: &str, id: &str) {
    assert_eq!(app.index_members(), vec![index_member(email, id)]);
}

/// Asserts that looking up `email` finds no user.
async fn assert_no_user_at(app: &TestApp, email: &str) {
    app.get_user(email)
        .await
        .assert_problem(Status::NotFound, &format!("user {email} not found"));
}

/// Asserts the answer to a route given an `id` that no user has.
fn assert_no_user_with_id(reply: &Reply, id: impl std::fmt::Display) {
    reply.assert_problem(Status::NotFound, &format!("id {id} not found"));
}

/// Asserts a 422 that names `field` with each of `messages`.
fn assert_invalid(reply: &Reply, field: &str, messages: &[&str]) {
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors(field), messages);
}

// ---- create ----

#[rocket::async_test]
async fn create_returns_201_with_location_and_the_user() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    let user = reply.json();
    let id = user["id"].as_str().expect("id is a string");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id is a UUID: {id}");
    assert_eq!(
        reply.header("Location"),
        Some(format!("/api/users/{id}").as_str())
    );
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["email"], "ada@example.com");
    for field in ["created", "updated"] {
        let time = user[field].as_str().expect("a time string");
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{field} is RFC 3339: {time}"
        );
    }
}

#[rocket::async_test]
async fn create_never_returns_the_password_or_its_hash() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    assert!(!reply.body.contains(PASSWORD));
    assert!(!reply.body.contains("argon2"));
    assert!(!reply.body.contains("password"));
}

#[rocket::async_test]
async fn create_stores_an_argon2id_hash_and_one_index_entry() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada", "Ada@Example.com", PASSWORD).await;
    let hash = app.stored_password_hash(id_of(&user));
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert_only_indexed(&app, "ada@example.com", id_of(&user));
}

#[rocket::async_test]
async fn a_user_hash_is_stored_in_the_compact_listpack_encoding() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("Ada Lovelace", "ada@example.com", PASSWORD)
        .await;
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(app.user_key(id_of(&user)))
        .query(&mut app.redis())
        .expect("OBJECT ENCODING");
    assert_eq!(encoding, "listpack");
}

#[rocket::async_test]
async fn create_normalizes_the_email() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada", "  ADA@Example.COM ", PASSWORD).await;
    assert_eq!(user["email"], "ada@example.com");
}

#[rocket::async_test]
async fn create_with_a_taken_email_returns_409() {
    let (app, _) = app_with_ada().await;
    assert_sign_up_is_taken(&app, "ADA@example.com").await;
}

#[rocket::async_test]
async fn create_with_invalid_fields_returns_422_naming_each_field() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("", "not-an-email", "short").await;
    reply.assert_problem(
        Status::UnprocessableEntity,
        "the request has invalid fields",
    );
    assert_eq!(reply.field_errors("name"), vec!["must not be empty"]);
    assert_eq!(reply.field_errors("email").len(), 1);
    assert_eq!(
        reply.field_errors("password"),
        ["must be at least 8 characters"]
    );
    assert!(app.keys().is_empty(), "nothing was written");
}

#[rocket::async_test]
async fn create_rejects_a_name_over_100_characters() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up(&"n".repeat(101), "a@b.co", PASSWORD).await;
    assert_invalid(&reply, "name", &["must be at most 100 characters"]);
}

#[rocket::async_test]
async fn create_rejects_a_password_over_128_characters() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("Ada", "a@b.co", &"p".repeat(129)).await;
    assert_invalid(&reply, "password", &["must be at most 128 characters"]);
}

#[rocket::async_test]
async fn create_with_missing_fields_names_them() {
    let app = TestApp::spawn().await;
    let reply = app.post_user(&json!({"name": "Ada"})).await;
    assert_invalid(&reply, "email", &["is required"]);
    assert_eq!(reply.field_errors("password"), vec!["is required"]);
}

#[rocket::async_test]
async fn create_with_a_wrongly_typed_field_returns_422_naming_it() {
    let app = TestApp::spawn().await;
    let reply = app
        .post_user(&json!({"name": 42, "email": "a@b.co", "password": PASSWORD}))
        .await;
    assert_eq!(reply.status, Status::UnprocessableEntity, "{}", reply.body);
    assert_eq!(reply.field_errors("name").len(), 1, "{}", reply.body);
}

#[rocket::async_test]
async fn create_accepts_unicode_names() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("José Ñúñez 李小龍", "jose@example.com", PASSWORD)
        .await;
    assert_eq!(user["name"], "José Ñúñez 李小龍");
}

// ---- read ----

#[rocket::async_test]
async fn get_by_id_returns_the_user() {
    let (app, ada) = app_with_ada().await;
    let reply = app.get_user(id_of(&ada)).await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.json(), ada);
}

#[rocket::async_test]
async fn get_by_unknown_id_returns_404() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    assert_no_user_with_id(&app.get_user(&id.to_string()).await, id);
}

#[rocket::async_test]
async fn get_by_email_returns_the_user_case_insensitively() {
    let (app, ada) = app_with_ada().await;
    let reply = app.get_user("ADA@Example.com").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.json(), ada);
}

#[rocket::async_test]
async fn get_by_email_is_an_exact_match_never_a_prefix() {
    let app = TestApp::spawn().await;
    let short = app.create_user("Short", "jo@m.co", PASSWORD).await;
    let long = app.create_user("Long", "jo@m.com", PASSWORD).await;
    assert_eq!(app.get_user("jo@m.co").await.json()["id"], short["id"]);
    assert_eq!(app.get_user("jo@m.com").await.json()["id"], long["id"]);
    assert_no_user_at(&app, "jo@m.c").await;
}

#[rocket::async_test]
async fn get_by_unknown_email_returns_404() {
    let app = TestApp::spawn().await;
    assert_no_user_at(&app, "nobody@example.com").await;
}

#[rocket::async_test]
async fn get_by_a_segment_that_is_no_email_returns_404() {
    let app = TestApp::spawn().await;
    assert_no_user_at(&app, "12345").await;
}

// ---- update ----

#[rocket::async_test]
async fn put_updates_name_and_email() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    let reply = app
        .put_user(id, &user_body("Ada L.", "lovelace@example.com", PASSWORD))
        .await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let updated = reply.json();
    assert_eq!(updated["name"], "Ada L.");
    assert_eq!(updated["email"], "lovelace@example.com");
    assert_eq!(updated["created"], ada["created"]);
    assert_eq!(app.get_user("lovelace@example.com").await.json()["id"], id);
    assert_no_user_at(&app, "ada@example.com").await;
    assert_only_indexed(&app, "lovelace@example.com", id);
}

#[rocket::async_test]
async fn put_with_a_wrong_password_returns_401_and_changes_nothing() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    app.put_user(id, &user_body("Eve", "eve@example.com", "wrong password"))
        .await
        .assert_problem(Status::Unauthorized, "the current password is wrong");
    assert_eq!(app.get_user(id).await.json(), ada);
}

#[rocket::async_test]
async fn put_on_an_unknown_id_returns_404() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let body = user_body("Ada", "a@b.co", PASSWORD);
    assert_no_user_with_id(&app.put_user(&id.to_string(), &body).await, id);
}

#[rocket::async_test]
async fn put_to_an_email_of_another_user_returns_409() {
    let (app, _) = app_with_ada().await;
    let bob = app.create_user("Bob", "bob@example.com", PASSWORD).await;
    let id = id_of(&bob);
    app.put_user(id, &user_body("Bob", "Ada@example.com", PASSWORD))
        .await
        .assert_problem(Status::Conflict, "email already in use");
    assert_eq!(app.get_user(id).await.json(), bob);
    assert_eq!(app.index_members().len(), 2);
}

#[rocket::async_test]
async fn put_keeping_ones_own_email_in_another_case_is_fine() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    let reply = app
        .put_user(id, &user_body("Ada Lovelace", "ADA@example.com", PASSWORD))
        .await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["email"], "ada@example.com");
    assert_only_indexed(&app, "ada@example.com", id);
}

#[rocket::async_test]
async fn put_with_invalid_fields_returns_422() {
    let (app, ada) = app_with_ada().await;
    let body = user_body("Ada", "nope", PASSWORD);
    let reply = app.put_user(id_of(&ada), &body).await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("email").len(), 1);
}

// ---- change password ----

#[rocket::async_test]
async fn patch_changes_the_password() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    let reply = app
        .patch_user(
            id,
            &json!({"password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json(), json!({"message": "Password updated"}));
    app.put_user(id, &user_body("Ada", "ada@example.com", PASSWORD))
        .await
        .assert_problem(Status::Unauthorized, "the current password is wrong");
    let reply = app
        .put_user(id, &user_body("Ada", "ada@example.com", "a new passphrase"))
        .await;
    assert_eq!(reply.status, Status::Ok, "the new password works");
}

#[rocket::async_test]
async fn patch_without_new_password_returns_422_password_not_provided() {
    let (app, ada) = app_with_ada().await;
    app.patch_user(id_of(&ada), &json!({"password": PASSWORD}))
        .await
        .assert_problem(Status::UnprocessableEntity, "Password not provided");
}

#[rocket::async_test]
async fn patch_with_a_wrong_password_returns_401() {
    let (app, ada) = app_with_ada().await;
    let body = json!({"password": "wrong password", "new_password": "a new passphrase"});
    app.patch_user(id_of(&ada), &body)
        .await
        .assert_problem(Status::Unauthorized, "the current password is wrong");
}

#[rocket::async_test]
async fn patch_on_an_unknown_id_returns_404() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let body = json!({"password": PASSWORD, "new_password": "a new passphrase"});
    assert_no_user_with_id(&app.patch_user(&id.to_string(), &body).await, id);
}

#[rocket::async_test]
async fn patch_enforces_the_policy_on_the_new_password() {
    let (app, ada) = app_with_ada().await;
    let body = json!({"password": PASSWORD, "new_password": "short"});
    let reply = app.patch_user(id_of(&ada), &body).await;
    assert_invalid(&reply, "new_password", &["must be at least 8 characters"]);
}

// ---- delete ----

#[rocket::async_test]
async fn delete_removes_the_user_and_its_index_entry() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    let reply = app.delete_user(id, &json!({"password": PASSWORD})).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json(), ada);
    assert_no_user_with_id(&app.get_user(id).await, id);
    assert_eq!(
        app.keys(),
        vec![app.events_key(id)],
        "only the event stream is left"
    );
}

#[rocket::async_test]
async fn delete_with_a_wrong_password_returns_401_and_keeps_the_user() {
    let (app, ada) = app_with_ada().await;
    let id = id_of(&ada);
    app.delete_user(id, &json!({"password": "wrong password"}))
        .await
        .assert_problem(Status::Unauthorized, "the current password is wrong");
    assert_eq!(app.get_user(id).await.status, Status::Ok);
}

#[rocket::async_test]
async fn delete_on_an_unknown_id_returns_404() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let body = json!({"password": PASSWORD});
    assert_no_user_with_id(&app.delete_user(&id.to_string(), &body).await, id);
}

#[rocket::async_test]
async fn a_deleted_users_email_can_be_taken_again() {
    let (app, ada) = app_with_ada().await;
    let deleted = app
        .delete_user(id_of(&ada), &json!({"password": PASSWORD}))
        .await;
    assert_eq!(deleted.status, Status::Ok, "{}", deleted.body);
    assert_eq!(deleted.json(), ada, "the reply is the deleted user");
    app.create_user("New Ada", "ada@example.com", PASSWORD)
        .await;
}

#[rocket::async_test]
async fn routes_with_an_id_that_is_no_uuid_return_404() {
    let app = TestApp::spawn().await;
    app.put_user("not-a-uuid", &user_body("A", "a@b.co", PASSWORD))
        .await
        .assert_problem(Status::NotFound, "id not-a-uuid not found");
    app.delete_user("not-a-uuid", &json!({"password": PASSWORD}))
        .await
        .assert_problem(Status::NotFound, "id not-a-uuid not found");
}

// ---- list ----

#[rocket::async_test]
async fn list_orders_by_email_and_counts_from_the_index() {
    let app = TestApp::spawn().await;
    for email in ["carol@example.com", "alice@example.com", "bob@example.com"] {
        app.create_user("User", email, PASSWORD).await;
    }
    let reply = app.get_as_admin("/api/users").await;
    assert_eq!(reply.status, Status::Ok);
    let page = reply.json();
    assert_eq!(
        emails_on(&page),
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
    assert_eq!(page["total"], 3);
    assert!(page["next"].is_null());
}

#[rocket::async_test]
async fn list_pages_with_limit_and_the_next_cursor() {
    let app = TestApp::spawn().await;
    for n in 0..5 {
        app.create_user("User", &format!("user{n}@example.com"), PASSWORD)
            .await;
    }
    let mut seen = Vec::new();
    let mut uri = "/api/users?limit=2".to_owned();
    loop {
        let page = app.get_as_admin(&uri).await.json();
        assert_eq!(page["total"], 5);
        seen.extend(emails_on(&page).into_iter().map(str::to_owned));
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/users?limit=2&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..5).map(|n| format!("user{n}@example.com")).collect();
    assert_eq!(seen, expected);
}

/// Pages through `/api/users?{query}` `limit` at a time, calling `between`
/// after each page; every page's `total` and the emails listed, in order.
async fn page_through(
    app: &TestApp,
    query: &str,
    limit: usize,
    mut between: impl FnMut(usize) -> Option<String>,
) -> (Vec<u64>, Vec<String>) {
    let (mut totals, mut seen) = (Vec::new(), Vec::new());
    let mut uri = format!("/api/users?{query}&limit={limit}");
    for page_number in 0.. {
        let reply = app.get_as_admin(&uri).await;
        assert_eq!(reply.status, Status::Ok, "{}", reply.body);
        let page = reply.json();
        totals.push(page["total"].as_u64().expect("a total"));
        seen.extend(emails_on(&page).into_iter().map(str::to_owned));
        if let Some(email) = between(page_number) {
            app.create_user("Late", &email, PASSWORD).await;
        }
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/users?{query}&limit={limit}&after={next}"),
            None => break,
        }
    }
    (totals, seen)
}

#[rocket::async_test]
async fn list_pages_merge_every_bucket_listing_each_user_once_in_email_order() {
    let app = TestApp::spawn().await;
    let mut emails: Vec<String> = (0..150).map(|n| format!("u{n:03}@example.com")).collect();
    for email in &emails {
        app.create_user("User", email, PASSWORD).await;
    }
    let (totals, seen) = page_through(&app, "prefix=u", 7, |_| None).await;
    emails.sort();
    assert_eq!(seen, emails);
    assert!(totals.iter().all(|total| *total == 150), "{totals:?}");
}

#[rocket::async_test]
async fn list_pages_stay_whole_while_users_are_added() {
    let app = TestApp::spawn().await;
    let mut before: Vec<String> = (0..60).map(|n| format!("m{n:02}@example.com")).collect();
    for email in &before {
        app.create_user("User", email, PASSWORD).await;
    }
    // After each page: a user that sorts before every cursor, and one after.
    let added = |page: usize| {
        Some(if page.is_multiple_of(2) {
            format!("a{page:02}@example.com")
        } else {
            format!("z{page:02}@example.com")
        })
    };
    let (totals, seen) = page_through(&app, "prefix=", 9, added).await;
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "in order, each once");
    before.sort();
    assert!(before.iter().all(|email| seen.contains(email)), "{seen:?}");
    assert!(seen.iter().all(|email| !email.starts_with('a')), "{seen:?}");
    for (page, total) in totals.iter().enumerate() {
        assert_eq!(
            *total,
            60 + page as u64,
            "page {page}: the count when it was read"
        );
    }
}

#[rocket::async_test]
async fn list_filters_by_email_prefix() {
    let app = TestApp::spawn().await;
    for email in ["jo@m.co", "jo@m.com", "joe@x.org", "ann@x.org"] {
        app.create_user("User", email, PASSWORD).await;
    }
    let page = app.get_as_admin("/api/users?prefix=JO@").await.json();
    assert_eq!(emails_on(&page), ["jo@m.co", "jo@m.com"]);
    assert_eq!(page["total"], 2);
}

#[rocket::async_test]
async fn list_rejects_a_limit_outside_1_to_1000() {
    let app = TestApp::spawn().await;
    for limit in ["0", "1001", "ten"] {
        let reply = app.get_as_admin(&format!("/api/users?limit={limit}")).await;
        assert_eq!(reply.status, Status::UnprocessableEntity, "limit={limit}");
        assert_eq!(reply.field_errors("limit").len(), 1);
    }
}

#[rocket::async_test]
async fn list_refuses_a_query_parameter_it_does_not_take_naming_it() {
    let app = TestApp::spawn().await;
    let reply = app.get_as_admin("/api/users?limt=5&prefix=a").await;
    assert_eq!(reply.status, Status::UnprocessableEntity, "{}", reply.body);
    assert_eq!(
        reply.field_errors("limt"),
        ["is not a query parameter of this request (it takes limit, after, prefix)"]
    );
}

#[rocket::async_test]
async fn list_rejects_a_forged_cursor() {
    let app = TestApp::spawn().await;
    let reply = app.get_as_admin("/api/users?after=garbage!").await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("after").len(), 1);
}

#[rocket::async_test]
async fn list_of_an_empty_store_is_empty() {
    let app = TestApp::spawn().await;
    let page = app.get_as_admin("/api/users").await.json();
    assert_eq!(page, json!({"users": [], "total": 0, "next": null}));
}

// ---- persistence ----

#[rocket::async_test]
async fn a_new_instance_sees_the_data() {
    let (app, ada) = app_with_ada().await;
    let restarted = TestApp::spawn_with_prefix(&app.redis_url, &app.prefix, &[]).await;
    let reply = restarted.get_user(id_of(&ada)).await;
    assert_eq!(reply.json(), ada);
}

// ---- password strength ----

#[rocket::async_test]
async fn create_rejects_a_common_password_and_says_why() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("Ada", "ada@example.com", "password123").await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    let reasons = reply.field_errors("password");
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with("is too easy to guess"),
        "{}",
        reasons[0]
    );
    assert!(app.keys().is_empty());
}

#[rocket::async_test]
async fn create_rejects_a_password_built_from_the_users_own_name() {
    let app = TestApp::spawn().await;
    let reply = app
        .sign_up("Ada Lovelace", "ada@example.com", "adalovelace1")
        .await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("password").len(), 1);
}

#[rocket::async_test]
async fn patch_rejects_a_new_password_built_from_the_users_email() {
    let app = TestApp::spawn().await;
    let created = app
        .create_user("Ada", "ada.lovelace@example.com", PASSWORD)
        .await;
    let body = json!({"password": PASSWORD, "new_password": "ada.lovelace@example.com"});
    let reply = app.patch_user(id_of(&created), &body).await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("new_password").len(), 1);
}

// ---- one address, however it is spelled ----

#[rocket::async_test]
async fn create_with_a_fullwidth_spelling_of_a_taken_email_returns_409() {
    let (app, _) = app_with_ada().await;
    assert_sign_up_is_taken(&app, "ＡＤＡ＠ｅｘａｍｐｌｅ．ｃｏｍ").await;
}

#[rocket::async_test]
async fn a_quoted_local_part_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("Q", "\"q,1\"@example.com", PASSWORD).await;
    reply.assert_problem(
        Status::UnprocessableEntity,
        "the request has invalid fields",
    );
    assert_invalid(&reply, "email", &["must not have a quoted local part"]);
    assert!(app.keys().is_empty(), "nothing was written");
}

#[rocket::async_test]
async fn the_unicode_and_punycode_spellings_of_one_domain_are_one_account() {
    let app = TestApp::spawn().await;
    let user = app.create_user("V", "v@ex\u{E4}mple.com", PASSWORD).await;
    assert_eq!(user["email"], "v@xn--exmple-cua.com");
    assert_sign_up_is_taken(&app, "v@xn--exmple-cua.com").await;
}

#[rocket::async_test]
async fn a_mixed_script_look_alike_local_part_is_refused() {
    let app = TestApp::spawn().await;
    app.create_user("Victim", "victim@example.com", PASSWORD)
        .await;
    // Cyrillic і and с among the Latin letters.
    let reply = app
        .sign_up(
            "Look-alike",
            "v\u{456}\u{441}t\u{456}m@example.com",
            PASSWORD,
        )
        .await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    let reasons = reply.field_errors("email");
    assert_eq!(reasons.len(), 1, "{}", reply.body);
    assert!(reasons[0].contains("mixes scripts"), "{}", reasons[0]);
    assert_eq!(app.index_members().len(), 1, "only the victim signed up");
}

#[rocket::async_test]
async fn a_sign_up_with_a_blank_name_and_a_weak_password_names_both() {
    let app = TestApp::spawn().await;
    let reply = app.sign_up("", "ada@example.com", "password").await;
    reply.assert_problem_status(Status::UnprocessableEntity);
    let body = reply.json();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|error| error["field"].as_str())
        .collect();
    assert_eq!(fields, ["name", "password"], "{}", reply.body);
    assert!(app.keys().is_empty());
}
