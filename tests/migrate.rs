//! `user-accounts migrate`: data an earlier release left in its layout is
//! refused until migrated, then serves as if written by this release.

mod common;

use std::collections::HashMap;

use common::mailbox::*;
use common::{id_of, TestApp};
use rocket::http::Status;
use serde_json::json;
use user_accounts::domain::RevertCode;
use user_accounts::store::layout::{Bucket, LAYOUT_VERSION};

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(app: &TestApp, args: &[&str]) -> Run {
    let output = app.run_cli(args);
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn migrate(app: &TestApp) -> Run {
    let run = run(app, &["migrate"]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    run
}

/// Another instance over the same data, started after `app`: it checks
/// the layout afresh.
async fn restarted(app: &TestApp) -> TestApp {
    TestApp::spawn_with_prefix(&app.redis_url, &app.prefix, &[]).await
}

fn marker(app: &TestApp) -> Option<String> {
    redis::cmd("GET")
        .arg(app.keys_of_layout().layout_marker())
        .query(&mut app.redis())
        .expect("GET")
}

#[rocket::async_test]
async fn a_new_deployment_is_marked_with_this_releases_layout() {
    let app = TestApp::spawn().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    assert_eq!(marker(&app).as_deref(), Some(LAYOUT_VERSION));
}

#[rocket::async_test]
async fn an_instance_refuses_data_in_the_first_layout() {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let key = app.admin_key().await.to_owned();
    app.rewrite_in_first_layout();
    let later = restarted(&app).await;
    let reply = later
        .get_as(&format!("/api/users/{}", id_of(&ada)), &key)
        .await;
    reply.assert_problem_status(Status::ServiceUnavailable);
    assert!(reply.body.contains("layout"), "{}", reply.body);
    assert_eq!(
        later.login("ada@example.com", PASSWORD).await.status,
        Status::ServiceUnavailable
    );
}

#[rocket::async_test]
async fn the_doctor_refuses_data_in_the_first_layout_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    app.rewrite_in_first_layout();
    let before = app.keys();
    let doctor = run(&app, &["doctor", "--repair"]);
    assert!(!doctor.success);
    assert!(
        doctor.stderr.contains("user-accounts migrate"),
        "{}",
        doctor.stderr
    );
    assert_eq!(app.keys(), before);
}

#[rocket::async_test]
async fn after_migration_users_sessions_listing_and_admin_keys_work() {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    app.create_user("Bob", "bob@example.org", PASSWORD).await;
    let token = app.token_for("ada@example.com", PASSWORD).await;
    let key = app.admin_key().await.to_owned();
    app.rewrite_in_first_layout();
    let later = restarted(&app).await;
    let run = migrate(&app);
    assert!(
        run.stdout.contains("2 email index member(s)"),
        "{}",
        run.stdout
    );

    later.assert_signed_in(&token).await;
    assert_eq!(
        later.login("bob@example.org", PASSWORD).await.status,
        Status::Created
    );
    let page = later.get_as("/api/users", &key).await;
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(
        common::emails_on(&page.json()),
        ["ada@example.com", "bob@example.org"]
    );
    let taken = later
        .post_user(&common::user_body("Eve", "ada@example.com", PASSWORD))
        .await;
    assert_eq!(taken.status, Status::Conflict, "{}", taken.body);
    let read = later
        .get_as(&format!("/api/users/{}", id_of(&ada)), &key)
        .await;
    assert_eq!(read.status, Status::Ok, "{}", read.body);
}

#[rocket::async_test]
async fn migrated_data_passes_the_doctor() {
    let app = TestApp::spawn().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    app.token_for("ada@example.com", PASSWORD).await;
    app.login("ada@example.com", "a wrong password").await;
    app.rewrite_in_first_layout();
    migrate(&app);
    let doctor = run(&app, &["doctor"]);
    assert!(doctor.success, "{}", doctor.stdout);
    assert!(doctor.stdout.contains("0 finding(s)"), "{}", doctor.stdout);
}

#[rocket::async_test]
async fn a_user_whose_id_is_in_another_bucket_than_its_email_logs_in_after_migration() {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    app.rewrite_in_first_layout();
    // The first layout's ids were random, with no bucket in them.
    let random = uuid::Uuid::new_v4().to_string();
    let index = format!("{}users:by_email", app.prefix);
    redis::pipe()
        .cmd("RENAME")
        .arg(format!("{}user:{}", app.prefix, id_of(&ada)))
        .arg(format!("{}user:{random}", app.prefix))
        .cmd("ZREM")
        .arg(&index)
        .arg(common::index_member("ada@example.com", id_of(&ada)))
        .cmd("ZADD")
        .arg(&index)
        .arg(0)
        .arg(common::index_member("ada@example.com", &random))
        .exec(&mut app.redis())
        .expect("the user moved to a random id");
    migrate(&app);
    let later = restarted(&app).await;
    let login = later.login("ada@example.com", PASSWORD).await;
    assert_eq!(login.status, Status::Created, "{}", login.body);
    assert_eq!(
        login.json()["user"]["id"],
        random.as_str(),
        "{}",
        login.body
    );
}

#[rocket::async_test]
async fn a_second_migration_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    app.token_for("ada@example.com", PASSWORD).await;
    app.rewrite_in_first_layout();
    migrate(&app);
    let after_first = app.keys();
    let second = migrate(&app);
    assert!(
        second
            .stdout
            .contains("moved 0 key(s) and 0 email index member(s)"),
        "{}",
        second.stdout
    );
    assert_eq!(app.keys(), after_first);
}

#[rocket::async_test]
async fn a_migration_left_unfinished_keeps_every_instance_out() {
    let app = TestApp::spawn().await;
    let key = app.admin_key().await.to_owned();
    redis::cmd("SET")
        .arg(app.keys_of_layout().layout_marker())
        .arg("migrating")
        .exec(&mut app.redis())
        .expect("SET");
    let later = restarted(&app).await;
    let reply = later.get_as("/api/users", &key).await;
    reply.assert_problem_status(Status::ServiceUnavailable);
    migrate(&app);
    assert_eq!(later.get_as("/api/users", &key).await.status, Status::Ok);
}

#[rocket::async_test]
async fn a_verification_code_sent_before_migration_confirms_after_it() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    mailed.app.rewrite_in_first_layout();
    migrate(&mailed.app);
    let confirmed = confirm_email(&mailed.app, "ada@example.com", &code).await;
    assert_eq!(confirmed.status, Status::Ok, "{}", confirmed.body);
}

/// An account whose email moved from `owner@example.com` to
/// `thief@example.net`, and the revert code mailed to the old address.
async fn changed_account(mailed: &MailedApp) -> (String, String) {
    let id = mailed.verified_account("Ada", "owner@example.com").await;
    let token = mailed.app.token_for("owner@example.com", PASSWORD).await;
    let change = json!({"name": "Ada", "email": "thief@example.net"});
    let changed = mailed.app.put_user_as(&id, &token, &change).await;
    assert_eq!(changed.status, Status::Ok, "{}", changed.body);
    let notice = mailed
        .latest_mail("owner@example.com", 3, "email address of your")
        .await
        .text();
    let code = notice
        .lines()
        .map(str::trim)
        .find(|line| RevertCode::parse(line).is_ok())
        .unwrap_or_else(|| panic!("no revert code in:\n{notice}"))
        .to_owned();
    (id, code)
}

#[rocket::async_test]
async fn a_revert_code_sent_before_migration_restores_the_email_after_it() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, code) = changed_account(&mailed).await;
    mailed.app.rewrite_in_first_layout();
    migrate(&mailed.app);
    let reverted = mailed
        .app
        .post_json(
            "/api/email-change/revert",
            &json!({"email": "owner@example.com", "code": code}),
        )
        .await;
    assert_eq!(reverted.status, Status::Ok, "{}", reverted.body);
    let user = mailed.app.get_as_admin(&format!("/api/users/{id}")).await;
    assert_eq!(user.json()["email"], "owner@example.com", "{}", user.body);
}

#[rocket::async_test]
async fn a_users_list_of_revert_keys_names_them_by_their_new_names() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, _) = changed_account(&mailed).await;
    mailed.app.rewrite_in_first_layout();
    migrate(&mailed.app);
    let list = mailed
        .app
        .keys_of_layout()
        .email_reverts_of(common::user_id(&id));
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query(&mut mailed.app.redis())
        .expect("ZRANGE");
    assert_eq!(members.len(), 2, "a revert code and a reserved email");
    for member in members {
        assert!(mailed.app.exists(&member), "{member} is no key");
    }
}

#[rocket::async_test]
async fn mail_queued_retrying_and_dead_before_migration_moves_to_its_recipients_bucket() {
    let app = TestApp::spawn().await;
    let mut conn = app.redis();
    let [queue, retry, dead] = app.keys_of_layout().first_layout_mail();
    let fields = |id: &str, to: &str| {
        vec![
            ("id", id.to_owned()),
            ("kind", "test".to_owned()),
            ("to", to.to_owned()),
            ("queued_at", "1700000000000".to_owned()),
            ("attempts", "0".to_owned()),
        ]
    };
    let queued = fields("0b4c7f54-8d1e-4f6a-9c3b-2a1d5e6f7a8b", "ada@example.com");
    let waiting = fields("1c5d8a65-9e2f-4a7b-8d4c-3b2e6f7a8b9c", "bob@example.com");
    let buried = fields("2d6e9b76-af30-4b8c-9e5d-4c3f7a8b9cad", "cy@example.com");
    let retry_member = serde_json::Value::Object(
        waiting
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value)))
            .collect(),
    )
    .to_string();
    redis::pipe()
        .cmd("XADD")
        .arg(&queue)
        .arg("*")
        .arg(&queued)
        .cmd("ZADD")
        .arg(&retry)
        .arg(1_700_000_060_000_i64)
        .arg(&retry_member)
        .cmd("XADD")
        .arg(&dead)
        .arg("*")
        .arg(&buried)
        .exec(&mut conn)
        .expect("the first layout's mail");

    let run = migrate(&app);
    assert!(
        run.stdout.contains("moved 3 mail message(s)"),
        "{}",
        run.stdout
    );
    let keys = app.keys_of_layout();
    let bucket = |email: &str| Bucket::of_email(email);
    let entries = |key: String| -> Vec<(String, HashMap<String, String>)> {
        redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut app.redis())
            .expect("XRANGE")
    };
    let as_map = |fields: &[(&str, String)]| -> HashMap<String, String> {
        fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    };
    let moved = entries(keys.mail_queue(bucket("ada@example.com")));
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].1, as_map(&queued));
    let moved = entries(keys.mail_dead(bucket("cy@example.com")));
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].1, as_map(&buried));
    let retrying: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(keys.mail_retry(bucket("bob@example.com")))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .expect("ZRANGE");
    assert_eq!(retrying, vec![(retry_member, 1_700_000_060_000)]);
    for old in [queue, retry, dead] {
        assert!(!app.exists(&old), "{old} is gone");
    }
}
