//! The service on a real Redis Cluster on loopback: three primaries with a
//! replica each, started once for the tests of this binary.

mod common;

use common::cluster::{nodes_flagged, RedisCluster};
use common::mailbox::{confirm_email, reset, reset_code, MailedApp, NEW_PASSWORD};
use std::time::{Duration, Instant};

use common::leftovers::{leave_claim, move_left_after_the_users_step};
use common::{emails_on, id_of, index_member, user_id, TestApp};
use rocket::futures::future::join_all;
use rocket::http::Status;
use serde_json::json;
use user_accounts::domain::RevertCode;
use user_accounts::domain::UserId;

const PASSWORD: &str = "correct horse battery staple";

async fn app() -> TestApp {
    TestApp::spawn_on_cluster(RedisCluster::shared(), &[]).await
}

#[test]
fn the_test_cluster_serves_every_slot_from_three_primaries_each_with_a_replica() {
    let cluster = RedisCluster::shared();
    let seed = &cluster.node_urls()[0];
    let info = RedisCluster::ask(seed, "INFO");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_slots_ok:16384"), "{info}");
    let nodes = RedisCluster::ask(seed, "NODES");
    assert_eq!(
        (
            nodes_flagged(&nodes, "master"),
            nodes_flagged(&nodes, "slave")
        ),
        (3, 3),
        "{nodes}"
    );
}

#[rocket::async_test]
async fn a_user_signs_up_logs_in_is_read_renamed_and_deleted_on_a_cluster() {
    let app = app().await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = user["id"].as_str().expect("an id");
    let token = app.token_for("ada@example.com", PASSWORD).await;
    let own = app.get_as(&format!("/api/users/{id}"), &token).await;
    assert_eq!(own.status, Status::Ok);
    assert_eq!(own.json()["email"], "ada@example.com");
    let by_admin = app.get_as_admin(&format!("/api/users/{id}")).await;
    assert_eq!(by_admin.json()["name"], "Ada");
    let sessions = app.list_sessions(id, &token).await;
    assert_eq!(sessions.status, Status::Ok, "{}", sessions.body);
    assert_eq!(sessions.json().as_array().map(Vec::len), Some(1));
    let renamed = app
        .put_user_as(
            id,
            &token,
            &json!({"name": "Ada Lovelace", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(renamed.status, Status::Ok, "{:?}", renamed.json());
    assert_eq!(app.get_user(id).await.json()["name"], "Ada Lovelace");
    let deleted = app.delete_user_as(id, &token).await;
    assert_eq!(deleted.status, Status::Ok);
    assert_eq!(app.get_user(id).await.status, Status::NotFound);
    app.assert_signed_out(&token).await;
}

#[rocket::async_test]
async fn sign_ups_spread_the_keys_over_every_primary() {
    let app = app().await;
    let mut statuses = Vec::new();
    // In rounds of 50: more at once would wait for a hashing thread.
    for round in 0..6 {
        let sign_ups = (round * 50..(round + 1) * 50).map(|n| {
            let app = &app;
            async move {
                app.sign_up(
                    &format!("User {n}"),
                    &format!("user{n}@example.com"),
                    PASSWORD,
                )
                .await
                .status
            }
        });
        statuses.extend(join_all(sign_ups).await);
    }
    assert!(
        statuses.iter().all(|status| *status == Status::Created),
        "{statuses:?}"
    );
    let cluster = RedisCluster::shared();
    let per_primary: Vec<usize> = cluster
        .primary_urls()
        .iter()
        .map(|url| RedisCluster::keys_on(url, &app.prefix))
        .collect();
    let total: usize = per_primary.iter().sum();
    assert_eq!(per_primary.len(), 3);
    for keys in &per_primary {
        assert!(
            *keys * 5 >= total,
            "each primary holds at least 20 % of the keys: {per_primary:?}"
        );
    }
}

#[rocket::async_test]
async fn concurrent_sign_ups_with_one_email_admit_exactly_one_on_a_cluster() {
    let app = app().await;
    let attempts = (0..64).map(|n| {
        let app = &app;
        async move {
            app.sign_up(&format!("User {n}"), "same@example.com", PASSWORD)
                .await
                .status
        }
    });
    let statuses = join_all(attempts).await;
    let created = statuses.iter().filter(|s| **s == Status::Created).count();
    let conflicts = statuses.iter().filter(|s| **s == Status::Conflict).count();
    assert_eq!((created, conflicts), (1, 63), "{statuses:?}");
}

#[rocket::async_test]
async fn listing_pages_through_every_user_once_in_email_order_on_a_cluster() {
    let app = app().await;
    let sign_ups = (0..120).map(|n| {
        let app = &app;
        async move {
            app.create_user(
                &format!("User {n}"),
                &format!("u{n:03}@example.com"),
                PASSWORD,
            )
            .await
        }
    });
    join_all(sign_ups).await;
    let mut emails = Vec::new();
    let mut uri = "/api/users?limit=25".to_owned();
    loop {
        let page = app.get_as_admin(&uri).await.json();
        assert_eq!(page["total"], 120);
        for user in page["users"].as_array().expect("users") {
            emails.push(user["email"].as_str().expect("an email").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/users?limit=25&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..120).map(|n| format!("u{n:03}@example.com")).collect();
    assert_eq!(emails, expected);
}

/// Confirms `email` with the verification code among the first `count`
/// mails to it, then resets the password to `NEW_PASSWORD` with a reset
/// code requested after them.
async fn confirm_and_reset(mailed: &MailedApp, email: &str, count: usize) {
    let code = mailed.code_for(email, count, "Verify").await;
    let confirmed = confirm_email(&mailed.app, email, &code).await;
    assert_eq!(confirmed.status, Status::Ok, "{}", confirmed.body);
    let code = reset_code(mailed, email, count).await;
    let changed = reset(&mailed.app, email, &code, NEW_PASSWORD).await;
    assert_eq!(changed.status, Status::Ok, "{}", changed.body);
}

#[rocket::async_test]
async fn sign_up_mails_a_verification_code_and_a_reset_code_changes_the_password_on_a_cluster() {
    let mailed = MailedApp::spawn_on_cluster(RedisCluster::shared(), &[]).await;
    let app = &mailed.app;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    confirm_and_reset(&mailed, "ada@example.com", 1).await;
    let notice = mailed.latest_mail("ada@example.com", 3, "password").await;
    assert!(notice.text().contains("password"), "{}", notice.text());
    assert_eq!(
        app.login("ada@example.com", NEW_PASSWORD).await.status,
        Status::Created
    );
}

/// Changes the email of the account `id` with `token`, keeping its name.
async fn change_email(app: &TestApp, id: &str, token: &str, email: &str) -> Status {
    app.put_user_as(id, token, &json!({"name": "Ada", "email": email}))
        .await
        .status
}

/// How many claims on emails under the app's prefix the cluster holds.
fn claims_left(app: &TestApp) -> usize {
    let claims = format!("{}*email_claim:", app.prefix);
    RedisCluster::shared()
        .primary_urls()
        .iter()
        .map(|url| RedisCluster::keys_on(url, &claims))
        .sum()
}

#[rocket::async_test]
async fn an_email_change_moves_the_account_to_its_new_address_on_a_cluster() {
    let app = app().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let token = app.token_for("ada@example.com", PASSWORD).await;
    assert_eq!(
        change_email(&app, &id, &token, "lovelace@example.org").await,
        Status::Ok
    );
    assert_eq!(
        app.login("lovelace@example.org", PASSWORD).await.status,
        Status::Created
    );
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status,
        Status::Unauthorized
    );
    let page = app.get_as_admin("/api/users").await.json();
    assert_eq!(emails_on(&page), ["lovelace@example.org"]);
    assert_eq!(claims_left(&app), 0);
}

#[rocket::async_test]
async fn users_racing_to_one_new_email_leave_one_holder_and_no_claim_on_a_cluster() {
    let app = app().await;
    let mut accounts = Vec::new();
    for n in 0..8 {
        let email = format!("racer{n}@example.com");
        let id = id_of(&app.create_user("Ada", &email, PASSWORD).await).to_owned();
        accounts.push((id, app.token_for(&email, PASSWORD).await));
    }
    let races = accounts
        .iter()
        .map(|(id, token)| change_email(&app, id, token, "prize@example.org"));
    let statuses = join_all(races).await;
    let won = statuses.iter().filter(|s| **s == Status::Ok).count();
    let lost = statuses.iter().filter(|s| **s == Status::Conflict).count();
    assert_eq!((won, lost), (1, 7), "{statuses:?}");
    let page = app.get_as_admin("/api/users?prefix=prize").await.json();
    assert_eq!(page["total"], 1);
    assert_eq!(claims_left(&app), 0);
}

#[rocket::async_test]
async fn a_moved_account_confirms_its_new_address_and_resets_its_password_on_a_cluster() {
    let mailed = MailedApp::spawn_on_cluster(RedisCluster::shared(), &[]).await;
    let app = &mailed.app;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let token = app.token_for("ada@example.com", PASSWORD).await;
    assert_eq!(
        change_email(app, &id, &token, "lovelace@example.org").await,
        Status::Ok
    );
    confirm_and_reset(&mailed, "lovelace@example.org", 3).await;
    assert_eq!(
        app.login("lovelace@example.org", NEW_PASSWORD).await.status,
        Status::Created
    );
}

#[rocket::async_test]
async fn a_revert_code_puts_the_old_email_back_on_a_cluster() {
    let mailed = MailedApp::spawn_on_cluster(RedisCluster::shared(), &[]).await;
    let app = &mailed.app;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    confirm_email(app, "ada@example.com", &code).await;
    let token = app.token_for("ada@example.com", PASSWORD).await;
    assert_eq!(
        change_email(app, &id, &token, "thief@example.net").await,
        Status::Ok
    );
    let notice = mailed
        .latest_mail("ada@example.com", 3, "email address")
        .await;
    let revert_code = notice
        .text()
        .lines()
        .map(str::trim)
        .find(|line| RevertCode::parse(line).is_ok())
        .expect("a revert code in the notice")
        .to_owned();
    let reverted = app
        .post_json(
            "/api/email-change/revert",
            &json!({"email": "ada@example.com", "code": revert_code}),
        )
        .await;
    assert_eq!(reverted.status, Status::Ok, "{}", reverted.body);
    assert_eq!(app.get_user(&id).await.json()["email"], "ada@example.com");
    assert_eq!(
        app.get_user("thief@example.net").await.status,
        Status::NotFound
    );
    assert_eq!(claims_left(app), 0);
}

/// An account that signed up as `ada@example.com` and moved to
/// `lovelace@example.org`, so that its hash and its entry live in two
/// slots: its id and a session token.
async fn moved_account(app: &TestApp) -> (String, String) {
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let token = app.token_for("ada@example.com", PASSWORD).await;
    assert_eq!(
        change_email(app, &id, &token, "lovelace@example.org").await,
        Status::Ok
    );
    (id, token)
}

#[rocket::async_test]
async fn deleting_a_moved_account_frees_its_address_on_a_cluster() {
    let app = app().await;
    let (id, token) = moved_account(&app).await;
    assert_eq!(app.delete_user_as(&id, &token).await.status, Status::Ok);
    assert_eq!(
        app.sign_up("Ada", "lovelace@example.org", PASSWORD)
            .await
            .status,
        Status::Created
    );
}

#[rocket::async_test]
async fn the_doctor_finds_a_clusters_data_consistent() {
    let app = app().await;
    moved_account(&app).await;
    app.create_user("Bob", "bob@example.com", PASSWORD).await;
    app.token_for("bob@example.com", PASSWORD).await;
    let run = app.doctor(false);
    assert!(run.success, "{}", run.stdout);
    assert!(run.stdout.contains("0 finding(s)"), "{}", run.stdout);
}

#[rocket::async_test]
async fn the_doctor_finishes_an_email_change_a_crash_left_on_a_cluster() {
    let app = app().await;
    let id = move_left_after_the_users_step(&app).await;
    let run = app.doctor(false);
    assert!(
        run.stdout.contains("has steps left to run"),
        "{}",
        run.stdout
    );
    let run = app.doctor(true);
    assert!(run.success, "{}", run.stdout);
    assert_eq!(app.index_members(), [index_member("new@example.org", &id)]);
    assert_eq!(claims_left(&app), 0);
    assert!(!app.exists(&app.keys_of_layout().email_move(user_id(&id))));
}

#[rocket::async_test]
async fn the_doctor_removes_a_claim_past_its_lifetime_on_a_cluster() {
    let app = app().await;
    leave_claim(&app, "free@example.com", &UserId::generate(), 31_000);
    let run = app.doctor(false);
    assert!(run.stdout.contains("past its lifetime"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(claims_left(&app), 0);
}

#[rocket::async_test]
async fn the_doctor_removes_the_entry_of_a_deleted_account_on_a_cluster() {
    let app = app().await;
    let (id, _) = moved_account(&app).await;
    redis::cmd("DEL")
        .arg(app.user_key(&id))
        .exec(&mut *app.data())
        .expect("DEL user");
    let run = app.doctor(false);
    assert!(run.stdout.contains("has no user"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(app.index_members(), Vec::<String>::new());
}

#[rocket::async_test]
async fn the_doctor_puts_back_the_missing_entry_of_a_moved_account_on_a_cluster() {
    let app = app().await;
    let (id, _) = moved_account(&app).await;
    let member = index_member("lovelace@example.org", &id);
    redis::cmd("ZREM")
        .arg(app.index_key_of("lovelace@example.org"))
        .arg(&member)
        .exec(&mut *app.data())
        .expect("ZREM entry");
    let run = app.doctor(false);
    assert!(run.stdout.contains("has no index entry"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(app.index_members(), [member]);
}

#[rocket::async_test]
async fn migrate_on_a_cluster_has_nothing_to_move() {
    let app = app().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let output = app.run_cli(&["migrate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("moved 0 key(s)"), "{stdout}");
}

#[rocket::async_test]
async fn the_mail_commands_queue_and_count_on_a_cluster() {
    let app = app().await;
    let mail_dir = std::env::temp_dir().join(format!("cli-mail-{}", uuid::Uuid::new_v4().simple()));
    let mail_url = format!("file://{}", mail_dir.display());
    let mail = [
        ("MAIL_URL", mail_url.as_str()),
        ("MAIL_FROM", "accounts@example.com"),
    ];
    let sent = app.run_cli_with(&["mail", "send-test", "ops@example.com"], &mail);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let status = app.run_cli_with(&["mail", "status"], &mail);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "queued 1\nretrying 0\ndead 0\n"
    );
}

/// Signs up users `{client}-{n}@example.com` one after another until
/// `until`; each answer's status with its email.
async fn sign_ups_until(app: &TestApp, client: usize, until: Instant) -> Vec<(Status, String)> {
    let mut answers = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let email = format!("c{client}-{n}@example.com");
        let reply = app
            .post_user(&json!({"name": "Load", "email": email, "password": PASSWORD}))
            .await;
        answers.push((reply.status, email));
        n += 1;
    }
    answers
}

#[rocket::async_test]
async fn a_primary_killed_under_sign_ups_loses_no_acknowledged_one_with_wait_replicas() {
    let mut cluster = RedisCluster::start();
    let app = TestApp::spawn_on_cluster(
        &cluster,
        &[
            ("REDIS_WAIT_REPLICAS", "1"),
            ("REDIS_WAIT_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let until = Instant::now() + Duration::from_secs(12);
    let load = join_all((0..16).map(|client| sign_ups_until(&app, client, until)));
    let kill = async {
        rocket::tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = cluster.kill_a_primary();
        // Readiness tells the orchestrator, until the replica takes over.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut told = false;
        while !told && Instant::now() < deadline {
            told = app.get("/health/ready").await.status == Status::ServiceUnavailable;
            rocket::tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (killed, told)
    };
    let (answers, (killed, told)) = rocket::tokio::join!(load, kill);
    assert!(
        told,
        "/health/ready answered 503 while the primary was gone"
    );
    let answers: Vec<(Status, String)> = answers.into_iter().flatten().collect();
    let unexpected: Vec<&(Status, String)> = answers
        .iter()
        .filter(|(status, _)| !matches!(*status, Status::Created | Status::ServiceUnavailable))
        .collect();
    assert!(unexpected.is_empty(), "only 201 and 503: {unexpected:?}");
    let refused = answers
        .iter()
        .filter(|(status, _)| *status == Status::ServiceUnavailable)
        .count();
    assert!(refused > 0, "the failover was felt: no 503 at all");
    cluster.wait_until_served_without(&killed, Duration::from_secs(20));
    // Its shard has no replica left to confirm a write: the node comes
    // back, as the promoted one's replica.
    cluster.restart(&killed);
    let acknowledged: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == Status::Created)
        .map(|(_, email)| email)
        .collect();
    let last_second: Vec<&(Status, String)> = answers.iter().rev().take(64).collect();
    assert!(
        last_second
            .iter()
            .any(|(status, _)| *status == Status::Created),
        "sign-ups to the other primaries' slots go through after the failover"
    );
    for email in acknowledged {
        let login = app.login(email, PASSWORD).await;
        assert_eq!(login.status, Status::Created, "{email}: {}", login.body);
    }
}

#[rocket::async_test]
async fn slots_moved_between_primaries_under_sign_ups_lose_none_and_fail_none_but_with_503() {
    let cluster = RedisCluster::start();
    let app = TestApp::spawn_on_cluster(&cluster, &[]).await;
    let primaries = cluster.primary_urls();
    let (from, to) = (primaries[0].clone(), primaries[1].clone());
    let slots_before = RedisCluster::slots_of(&from);
    let until = Instant::now() + Duration::from_secs(8);
    let load = join_all((0..8).map(|client| sign_ups_until(&app, client, until)));
    let reshard = async {
        rocket::tokio::time::sleep(Duration::from_secs(1)).await;
        let (source, target) = (from.clone(), to.clone());
        let moving = std::thread::spawn(move || RedisCluster::move_slots(&source, &target, 2000));
        while !moving.is_finished() {
            rocket::tokio::time::sleep(Duration::from_millis(50)).await;
        }
        moving.join().is_ok()
    };
    let (answers, resharded) = rocket::tokio::join!(load, reshard);
    assert!(resharded, "redis-cli moved the slots");
    assert_eq!(RedisCluster::slots_of(&from), slots_before - 2000);
    let answers: Vec<(Status, String)> = answers.into_iter().flatten().collect();
    let unexpected: Vec<&(Status, String)> = answers
        .iter()
        .filter(|(status, _)| !matches!(*status, Status::Created | Status::ServiceUnavailable))
        .collect();
    assert!(unexpected.is_empty(), "only 201 and 503: {unexpected:?}");
    let acknowledged: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == Status::Created)
        .map(|(_, email)| email)
        .collect();
    assert!(
        acknowledged.len() > answers.len() / 2,
        "{} of {}",
        acknowledged.len(),
        answers.len()
    );
    for email in acknowledged {
        let login = app.login(email, PASSWORD).await;
        assert_eq!(login.status, Status::Created, "{email}: {}", login.body);
    }
    let run = app.doctor(false);
    assert!(run.success, "{}", run.stdout);
}

#[rocket::async_test]
async fn readiness_reports_the_clusters_state_and_its_slots_without_a_primary() {
    let app = app().await;
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, Status::Ok, "{}", ready.body);
    assert_eq!(ready.json()["cluster_state"], "ok");
    assert_eq!(ready.json()["slots_without_primary"], 0);
}
