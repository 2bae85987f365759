//! Mail delivery against a real SMTP server (aiosmtpd) and a mail directory:
//! every kind of mail with its headers, parts, code and link; TLS; an SMTP
//! server that is down, that defers, that refuses; dead letters and
//! `mail retry-dead`; an instance that dies holding messages; mail off; and
//! the figures the report quotes (latency and throughput).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::smtp::{test_certificates, Received, Security, SmtpServer};
use common::{free_port, shared_redis_url, TestApp};
use rocket::http::Status;
use user_accounts::accounts::TestMail;
use user_accounts::domain::{
    CodeSecret, MailContent, MailKind, OneTimeCode, QueuedMail, SealedCode, UserEmail, UserName,
};
use user_accounts::store::layout::{Bucket, Keys, MAIL_GROUP};

const PUBLIC_URL: &str = "https://accounts.example.com/app";
/// Every instance of a test shares it, as instances in production must: a
/// code mail one queued, another can open.
const SECRET: &str = "the mail tests' secret, of at least thirty-two bytes";
const FROM: &str = "Example Accounts <accounts@mail.example.com>";

/// An app over the shared Redis sending mail to `mail_url`, quickly retried.
async fn mail_app(mail_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("MAIL_URL", mail_url),
        ("MAIL_FROM", FROM),
        ("PUBLIC_URL", PUBLIC_URL),
        ("MAIL_RETRY_BASE_MS", "50"),
        ("MAIL_TIMEOUT_MS", "5000"),
        ("TOKEN_SECRET", SECRET),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn_on(&shared_redis_url(), &settings).await
}

fn email(raw: &str) -> UserEmail {
    UserEmail::parse(raw).expect("a valid address")
}

fn code_mail(kind: MailKind, to: &str, code: &str) -> QueuedMail {
    let code = CodeSecret::parse(SECRET.as_bytes())
        .expect("long enough")
        .sealer()
        .seal(&OneTimeCode::parse(code).expect("six digits"));
    let content = MailContent::of_kind(kind, Some(code)).expect("a kind with a code");
    QueuedMail::new(
        email(to),
        Some(UserName::parse("Jo Doe").expect("valid")),
        content,
    )
    .expiring_at(Utc::now() + chrono::Duration::minutes(15))
}

fn notice(kind: MailKind, to: &str) -> QueuedMail {
    let content = MailContent::of_kind(kind, None).expect("a kind without a code");
    QueuedMail::new(email(to), None, content)
}

async fn queue(app: &TestApp, mail: &QueuedMail) {
    let queued = app.accounts().queue_mail(mail).await.expect("queued");
    assert!(queued, "mail is on, so the message is queued");
}

fn keys(app: &TestApp) -> Keys {
    Keys::new(&app.prefix)
}

/// The queue `mail` goes to when queued on its own: its recipient's
/// bucket's.
fn queue_of(keys: &Keys, mail: &QueuedMail) -> String {
    keys.mail_queue(Bucket::of_email(mail.to.as_str()))
}

/// The sum over every bucket of `command` (a count: XLEN, ZCARD) of the
/// bucket's key that `key` names.
fn total(conn: &mut redis::Connection, command: &str, key: impl Fn(Bucket) -> String) -> u64 {
    Bucket::all()
        .map(|bucket| -> u64 {
            redis::cmd(command)
                .arg(key(bucket))
                .query(conn)
                .expect("a count")
        })
        .sum()
}

/// Messages in the queues: not yet read, or being sent.
fn queued_count(app: &TestApp) -> u64 {
    let keys = keys(app);
    total(&mut app.redis(), "XLEN", |bucket| keys.mail_queue(bucket))
}

fn retry_len(app: &TestApp) -> u64 {
    let keys = keys(app);
    total(&mut app.redis(), "ZCARD", |bucket| keys.mail_retry(bucket))
}

fn dead_count(app: &TestApp) -> u64 {
    let keys = keys(app);
    total(&mut app.redis(), "XLEN", |bucket| keys.mail_dead(bucket))
}

/// How many queue entries readers hold without having finished them, over
/// every bucket.
fn pending_in(conn: &mut redis::Connection, keys: &Keys) -> u64 {
    Bucket::all()
        .map(|bucket| {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(keys.mail_queue(bucket))
                .arg(MAIL_GROUP)
                .query(conn)
                .unwrap_or(redis::Value::Nil);
            match summary {
                redis::Value::Array(items) => match items.first() {
                    Some(redis::Value::Int(count)) => *count as u64,
                    _ => 0,
                },
                _ => 0,
            }
        })
        .sum()
}

fn pending(app: &TestApp) -> u64 {
    pending_in(&mut app.redis(), &keys(app))
}

/// Waits (without blocking the app's runtime) until `done` holds.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        rocket::tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The entries of every bucket's dead letters, oldest first.
fn dead_letters(app: &TestApp) -> Vec<(String, HashMap<String, String>)> {
    let mut conn = app.redis();
    let mut letters: Vec<(String, HashMap<String, String>)> = Bucket::all()
        .flat_map(|bucket| -> Vec<(String, HashMap<String, String>)> {
            redis::cmd("XRANGE")
                .arg(keys(app).mail_dead(bucket))
                .arg("-")
                .arg("+")
                .query(&mut conn)
                .expect("XRANGE")
        })
        .collect();
    // An entry id is "milliseconds-sequence".
    letters.sort_by_key(|(id, _)| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    });
    letters
}

/// Waits until the server holds `count` messages.
async fn arrived(server: &SmtpServer, count: usize, within: Duration) -> Vec<Received> {
    let what = format!("{count} messages arrived");
    // The parsed messages, not the raw files: a message's parsed form is
    // written just after its raw file.
    eventually(&what, within, || server.messages().len() >= count).await;
    server.messages()
}

/// Waits until the queue is empty: every message sent and taken out.
async fn queue_drained(app: &TestApp) {
    eventually("the queue drains", Duration::from_secs(10), || {
        queued_count(app) == 0 && pending(app) == 0
    })
    .await;
}

/// The first line of `text` that is six digits and nothing else, failing
/// the test if six digits in a row appear anywhere before it.
fn code_line(text: &str) -> String {
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return trimmed.to_owned();
        }
        let mut run = 0;
        for byte in line.bytes() {
            run = if byte.is_ascii_digit() { run + 1 } else { 0 };
            assert!(run < 6, "six digits before the code line: {line:?}");
        }
    }
    panic!("no line of six digits in:\n{text}");
}

fn by_message_id(messages: &[Received]) -> HashMap<String, Received> {
    messages
        .iter()
        .map(|message| {
            let id = message.header("Message-ID").expect("a Message-ID");
            (id, message.clone())
        })
        .collect()
}

fn message_id(mail: &QueuedMail) -> String {
    format!("<{}@mail.example.com>", mail.id)
}

#[rocket::async_test]
async fn every_kind_of_mail_arrives_over_smtp_with_its_headers_parts_code_and_link() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    let verify = code_mail(MailKind::VerifyEmail, "jo@example.com", "042917");
    let reset = code_mail(MailKind::ResetPassword, "jo+reset@example.com", "777001");
    let password_changed = notice(MailKind::PasswordChanged, "jo@example.com");
    let email_changed = notice(MailKind::EmailChanged, "old.jo@example.com");
    let test = notice(MailKind::Test, "ops@example.com");
    for mail in [&verify, &reset, &password_changed, &email_changed, &test] {
        queue(&app, mail).await;
    }
    let messages = by_message_id(&arrived(&server, 5, Duration::from_secs(20)).await);
    assert_eq!(
        messages.len(),
        5,
        "five messages, five distinct Message-IDs"
    );

    for mail in [&verify, &reset, &password_changed, &email_changed, &test] {
        let received = &messages[&message_id(mail)];
        let kind = mail.kind();
        assert_eq!(received.header("From").as_deref(), Some(FROM), "{kind}");
        assert_eq!(received.envelope_to(), [mail.to.as_str()], "{kind}");
        let to = received.header("To").expect("a To header");
        assert!(to.contains(mail.to.as_str()), "{kind}: To {to}");
        assert!(received.header("Date").is_some(), "{kind}: a Date header");
        assert_eq!(
            received.header("Auto-Submitted").as_deref(),
            Some("auto-generated"),
            "{kind}"
        );
        assert_eq!(
            received.content_types(),
            ["multipart/alternative", "text/plain", "text/html"],
            "{kind}: a text and an HTML part"
        );
        assert!(
            !received.text().is_empty() && received.html().contains("<html"),
            "{kind}"
        );
        assert!(!received.over_tls(), "the server offers no STARTTLS");
    }

    for (mail, subject) in [
        (&verify, "Verify your email address for Example Accounts"),
        (&reset, "Reset your Example Accounts password"),
        (
            &password_changed,
            "Your Example Accounts password was changed",
        ),
        (
            &email_changed,
            "The email address of your Example Accounts account was changed",
        ),
        (&test, "Test message from Example Accounts"),
    ] {
        let received = &messages[&message_id(mail)];
        assert_eq!(received.header("Subject").as_deref(), Some(subject));
    }

    // The code stands alone on its line; the link carries it in the fragment.
    for (mail, page, code, address) in [
        (&verify, "verify", "042917", "jo%40example.com"),
        (&reset, "reset", "777001", "jo%2Breset%40example.com"),
    ] {
        let received = &messages[&message_id(mail)];
        let text = received.text();
        assert_eq!(code_line(&text), code, "{text}");
        let link = format!("{PUBLIC_URL}/{page}#email={address}&code={code}");
        assert!(text.contains(&link), "{link} in:\n{text}");
        // The HTML escapes `/` as `&#x2f;` and `&` as `&amp;`, as it may.
        let html = received.html().replace("&#x2f;", "/");
        let href = format!("href=\"{PUBLIC_URL}/{page}#email={address}&amp;code={code}\"");
        assert!(html.contains(&href), "{href} in:\n{html}");
        assert!(
            text.contains("within 15 minutes"),
            "the code's lifetime: {text}"
        );
        assert!(
            !received
                .header("Subject")
                .unwrap_or_default()
                .contains(code),
            "the code stays out of the subject"
        );
    }
    let notice_text = messages[&message_id(&password_changed)].text();
    assert!(
        notice_text.contains(&format!("{PUBLIC_URL}/reset")),
        "{notice_text}"
    );

    // Sent mail leaves Redis at once: no entry, nothing pending, no retry.
    queue_drained(&app).await;
    assert_eq!(retry_len(&app), 0);
    assert_eq!(dead_count(&app), 0);
    let metrics = app.get_as_admin("/metrics").await;
    assert!(
        metrics.body.contains("mail_queued_total 5") && metrics.body.contains("mail_sent_total 5"),
        "{}",
        metrics.body
    );
}

#[rocket::async_test]
async fn mail_goes_over_starttls_and_over_tls_from_the_start_with_a_trusted_certificate() {
    let certs = std::env::temp_dir().join(format!("mail-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&certs).expect("a directory for the certificate");
    let (ca, cert, key) = test_certificates(&certs);
    let ca = ca.to_string_lossy().into_owned();
    let starttls = SmtpServer::start_with(Security::StartTls {
        cert: cert.clone(),
        key: key.clone(),
    });
    let tls = SmtpServer::start_with(Security::Tls { cert, key });
    for (server, url) in [
        // STARTTLS when offered (the default), and STARTTLS required.
        (&starttls, format!("smtp://127.0.0.1:{}", starttls.port)),
        (
            &starttls,
            format!("smtp://127.0.0.1:{}?tls=required", starttls.port),
        ),
        (&tls, format!("smtps://127.0.0.1:{}", tls.port)),
    ] {
        let before = server.messages().len();
        let app = mail_app(&url, &[("MAIL_TLS_CA_FILE", &ca)]).await;
        queue(&app, &notice(MailKind::Test, "ops@example.com")).await;
        let messages = arrived(server, before + 1, Duration::from_secs(20)).await;
        assert!(
            messages[before].over_tls(),
            "{url}: the message came over TLS"
        );
    }
    std::fs::remove_dir_all(&certs).ok();
}

#[rocket::async_test]
async fn a_server_whose_certificate_is_not_trusted_gets_no_mail() {
    let certs = std::env::temp_dir().join(format!("mail-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&certs).expect("a directory for the certificate");
    let (_, cert, key) = test_certificates(&certs);
    let server = SmtpServer::start_with(Security::StartTls { cert, key });
    let app = mail_app(&server.url(), &[("MAIL_MAX_ATTEMPTS", "2")]).await;
    queue(&app, &notice(MailKind::Test, "ops@example.com")).await;
    eventually("the message is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    assert!(server.messages().is_empty(), "nothing went out in clear");
    std::fs::remove_dir_all(&certs).ok();
}

#[rocket::async_test]
async fn a_message_lands_as_one_complete_eml_file_named_by_its_id() {
    let dir = std::env::temp_dir().join(format!("mail-dir-{}", uuid::Uuid::new_v4()));
    let url = format!("file://{}", dir.display());
    let app = mail_app(&url, &[]).await;
    assert!(dir.is_dir(), "the directory is made at start");
    let mail = code_mail(MailKind::VerifyEmail, "jo@example.com", "135790");
    queue(&app, &mail).await;
    let file = dir.join(format!("{}.eml", mail.id));
    eventually("the file appears", Duration::from_secs(10), || {
        file.exists()
    })
    .await;
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [format!("{}.eml", mail.id)],
        "no temporary file left"
    );
    let received = Received::parse_file(&file);
    assert_eq!(received.header("Message-ID"), Some(message_id(&mail)));
    assert_eq!(received.header("From").as_deref(), Some(FROM));
    assert_eq!(code_line(&received.text()), "135790");
    assert_eq!(
        received.content_types(),
        ["multipart/alternative", "text/plain", "text/html"]
    );
    let raw = std::fs::read_to_string(&file).expect("readable");
    assert!(raw.contains("\r\n"), "RFC 5322 line ends");
    queue_drained(&app).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[rocket::async_test]
async fn mail_waits_while_the_smtp_server_is_down_and_arrives_once_each_when_it_returns() {
    let mut server = SmtpServer::stopped(free_port(), Security::Plain);
    let app = mail_app(&server.url(), &[("MAIL_RETRY_BASE_MS", "100")]).await;
    let mails: Vec<QueuedMail> = (0..10)
        .map(|n| notice(MailKind::PasswordChanged, &format!("user{n}@example.com")))
        .collect();
    for mail in &mails {
        queue(&app, mail).await;
    }
    // Down for a while: the messages are retried, none is lost or given up.
    eventually("every message failed once", Duration::from_secs(10), || {
        retry_len(&app) + queued_count(&app) == 10 && retry_len(&app) > 0
    })
    .await;
    rocket::tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.messages().is_empty());
    assert_eq!(dead_count(&app), 0, "none given up");
    let ready = app.get("/health/ready").await;
    assert_eq!(
        ready.status,
        Status::Ok,
        "readiness is about Redis, not mail"
    );

    server.restart();
    let messages = arrived(&server, 10, Duration::from_secs(20)).await;
    queue_drained(&app).await;
    rocket::tokio::time::sleep(Duration::from_millis(300)).await;
    let messages_after = server.messages();
    assert_eq!(messages_after.len(), 10, "each message once, none twice");
    let ids: HashSet<String> = messages
        .iter()
        .filter_map(|message| message.header("Message-ID"))
        .collect();
    let expected: HashSet<String> = mails.iter().map(message_id).collect();
    assert_eq!(ids, expected, "every message arrived");
    assert_eq!(retry_len(&app), 0);
    let metrics = app.get_as_admin("/metrics").await.body;
    assert!(metrics.contains("mail_sent_total 10"), "{metrics}");
    assert!(!metrics.contains("mail_retried_total 0"), "{metrics}");
}

/// The binary's command line, with an app's settings.
fn cli(app_prefix: &str, extra: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_user-accounts"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("REDIS_URL", shared_redis_url())
        .env("REDIS_KEY_PREFIX", app_prefix)
        .envs(extra.iter().copied())
        .args(args)
        .output()
        .expect("the binary runs")
}

#[rocket::async_test]
async fn a_message_that_always_fails_ends_with_the_dead_letters_and_retry_dead_queues_it_again() {
    let server = SmtpServer::start();
    server.defer_all(true);
    let app = mail_app(&server.url(), &[("MAIL_MAX_ATTEMPTS", "3")]).await;
    let mail = code_mail(MailKind::ResetPassword, "jo@example.com", "864209");
    queue(&app, &mail).await;
    eventually("the message is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    assert_eq!(queued_count(&app), 0);
    assert_eq!(retry_len(&app), 0);
    let entries = dead_letters(&app);
    let fields = &entries[0].1;
    assert_eq!(fields["attempts"], "3", "{fields:?}");
    assert_eq!(fields["id"], mail.id.to_string());
    assert!(fields["reason"].contains("451"), "{fields:?}");
    assert!(server.messages().is_empty());

    // The doctor warns about it; its exit status stays about consistency.
    let doctor = cli(&app.prefix, &[], &["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{report}");
    assert!(
        report.contains("warning: 1 mail message(s) failed every attempt"),
        "{report}"
    );

    server.defer_all(false);
    let retried = cli(&app.prefix, &[], &["mail", "retry-dead"]);
    assert!(retried.status.success());
    assert_eq!(String::from_utf8_lossy(&retried.stdout).trim(), "1");
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(messages[0].header("Message-ID"), Some(message_id(&mail)));
    assert_eq!(code_line(&messages[0].text()), "864209");
    assert_eq!(dead_count(&app), 0);
    queue_drained(&app).await;
}

#[rocket::async_test]
async fn a_dead_letter_keeps_its_code_sealed_and_no_redis_value_holds_it_in_clear() {
    let server = SmtpServer::start();
    server.defer_all(true);
    let app = mail_app(&server.url(), &[("MAIL_MAX_ATTEMPTS", "1")]).await;
    app.create_user("Jo", "jo@example.com", "correct horse battery")
        .await;
    eventually("the code mail is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    let sealed = SealedCode::parse(&dead_letters(&app)[0].1["code"]).expect("a sealed code");
    let code = CodeSecret::parse(SECRET.as_bytes())
        .expect("long enough")
        .sealer()
        .open(&sealed)
        .expect("sealed under the service's secret");
    app.assert_nowhere_in_redis(&code);
    server.defer_all(false);
    let retried = cli(
        &app.prefix,
        &[("TOKEN_SECRET", SECRET)],
        &["mail", "retry-dead"],
    );
    assert!(retried.status.success());
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(code_line(&messages[0].text()), code);
}

#[rocket::async_test]
async fn a_refused_recipient_is_given_up_at_once() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    queue(&app, &notice(MailKind::Test, "reject-me@example.com")).await;
    queue(&app, &notice(MailKind::Test, "ok@example.com")).await;
    eventually("the refused one is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    let entries = dead_letters(&app);
    assert_eq!(entries[0].1["attempts"], "1", "no retry after a 5xx");
    assert!(entries[0].1["reason"].contains("550"));
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(messages[0].envelope_to(), ["ok@example.com"]);
}

#[rocket::async_test]
async fn an_expired_code_mail_is_dropped_unsent() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    let stale = code_mail(MailKind::VerifyEmail, "jo@example.com", "111222")
        .expiring_at(Utc::now() - chrono::Duration::seconds(1));
    let fresh = notice(MailKind::Test, "jo@example.com");
    queue(&app, &stale).await;
    queue(&app, &fresh).await;
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    queue_drained(&app).await;
    assert_eq!(server.messages().len(), 1);
    assert_eq!(messages[0].header("Message-ID"), Some(message_id(&fresh)));
}

/// A TCP server that takes connections and never says a word: an SMTP
/// server that hangs.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("bound").port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64).flatten() {
            held.push(stream);
        }
    });
    (port, holder)
}

/// An instance on the data under `prefix` that takes over, after 300 ms,
/// the messages other senders left unfinished.
async fn taking_over_app(server: &SmtpServer, prefix: &str) -> TestApp {
    TestApp::spawn_with_prefix(
        &shared_redis_url(),
        prefix,
        &[
            ("MAIL_URL", &server.url()),
            ("MAIL_FROM", FROM),
            ("MAIL_CLAIM_AFTER_MS", "300"),
            ("TOKEN_SECRET", SECRET),
        ],
    )
    .await
}

#[rocket::async_test]
async fn messages_held_by_an_instance_that_died_are_sent_by_another() {
    let server = SmtpServer::start();
    let (hole, _holder) = black_hole();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mails: Vec<QueuedMail> = (0..5)
        .map(|n| notice(MailKind::PasswordChanged, &format!("held{n}@example.com")))
        .collect();

    // Queued before any sender runs, so the first reads them in one batch.
    let (mut conn, raw_keys) = redis_at(&prefix);
    for mail in &mails {
        queue_raw(&mut conn, &raw_keys, mail, None);
    }
    // The first instance, in a runtime of its own, reads the messages and
    // hangs sending them; then its runtime is dropped mid-send, as a crash
    // would end it: nothing acknowledged, nothing handed back.
    let first_prefix = prefix.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let first = std::thread::spawn(move || {
        let runtime = rocket::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime.block_on(async {
            let url = format!("smtp://127.0.0.1:{hole}?tls=off");
            let settings = [
                ("MAIL_URL", url.as_str()),
                ("MAIL_FROM", FROM),
                ("MAIL_TIMEOUT_MS", "60000"),
                ("TOKEN_SECRET", SECRET),
            ];
            let app =
                TestApp::spawn_with_prefix(&shared_redis_url(), &first_prefix, &settings).await;
            eventually(
                "the first instance holds them",
                Duration::from_secs(10),
                || pending(&app) == 5,
            )
            .await;
            app
        });
        held_tx.send(()).expect("the test waits");
        let _ = die_rx.recv();
        // Its keys are the second instance's now: dropping the app would
        // delete them.
        std::mem::forget(app);
        runtime.shutdown_background();
    });
    held_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the first instance took the messages");
    die_tx.send(()).expect("the first instance is waiting");
    first.join().expect("the first instance ended");
    assert!(server.messages().is_empty());

    let second = taking_over_app(&server, &prefix).await;
    let messages = arrived(&server, 5, Duration::from_secs(20)).await;
    queue_drained(&second).await;
    let ids: HashSet<String> = messages
        .iter()
        .filter_map(|message| message.header("Message-ID"))
        .collect();
    assert_eq!(ids, mails.iter().map(message_id).collect::<HashSet<_>>());
    assert_eq!(server.messages().len(), 5, "each once");
}

#[rocket::async_test]
async fn a_message_left_unfinished_by_five_stopped_senders_goes_to_the_dead_letters() {
    let server = SmtpServer::start();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let (mut conn, raw_keys) = redis_at(&prefix);
    let fatal = notice(MailKind::PasswordChanged, "fatal@example.com");
    queue_raw(&mut conn, &raw_keys, &fatal, None);
    // Five senders took it in turn and stopped holding it: a reader of the
    // group reads it, and its delivery count says five.
    let stream = queue_of(&raw_keys, &fatal);
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(MAIL_GROUP)
        .arg("0")
        .exec(&mut conn)
        .expect("XGROUP CREATE");
    // [[queue, [[entry id, [field, value, ...]]]]]
    type Read = Vec<(String, Vec<(String, Vec<String>)>)>;
    let read: Read = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(MAIL_GROUP)
        .arg("stopped")
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query(&mut conn)
        .expect("XREADGROUP");
    let entry = read[0].1[0].0.clone();
    redis::cmd("XCLAIM")
        .arg(&stream)
        .arg(MAIL_GROUP)
        .arg("stopped")
        .arg(0)
        .arg(&entry)
        .arg("RETRYCOUNT")
        .arg(5)
        .arg("JUSTID")
        .exec(&mut conn)
        .expect("XCLAIM");

    let app = taking_over_app(&server, &prefix).await;
    eventually("the message is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    let letters = dead_letters(&app);
    assert_eq!(letters[0].1["to"], "fatal@example.com");
    assert_eq!(
        letters[0].1["reason"],
        "its senders stopped while holding it, too many times"
    );
    queue(&app, &notice(MailKind::Test, "ops@example.com")).await;
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "only the other message is sent");
    queue_drained(&app).await;
}

#[rocket::async_test]
async fn without_a_mail_url_nothing_is_queued_and_the_service_runs() {
    let app = TestApp::spawn().await;
    let accounts = app.accounts();
    assert!(!accounts.mail_enabled());
    let queued = accounts
        .queue_mail(&notice(MailKind::Test, "jo@example.com"))
        .await
        .expect("no error");
    assert!(!queued);
    let test = accounts
        .queue_test_mail(email("jo@example.com"))
        .await
        .expect("no error");
    assert_eq!(test, TestMail::MailOff);
    assert_eq!(queued_count(&app), 0);
    assert!(app.keys().is_empty(), "no key at all: {:?}", app.keys());
    assert_eq!(app.get("/health/ready").await.status, Status::Ok);
    let sent = cli(&app.prefix, &[], &["mail", "send-test", "jo@example.com"]);
    assert!(!sent.status.success());
    let said = String::from_utf8_lossy(&sent.stderr);
    assert!(said.contains("mail is off (MAIL_URL is unset)"), "{said}");
}

#[test]
fn a_bad_mail_setting_stops_the_service_at_start_with_one_line_naming_it() {
    for (name, value, hidden) in [
        ("MAIL_URL", "smtp://app:hunter2@relay:port", "hunter2"),
        (
            "MAIL_URL",
            "smtp://app:hunter2@relay?tls=sometimes",
            "hunter2",
        ),
        ("MAIL_FROM", "not an address", ""),
        ("PUBLIC_URL", "accounts.example.com", ""),
        ("MAIL_MAX_ATTEMPTS", "0", ""),
    ] {
        let output = cli("test:bad-settings:", &[(name, value)], &[]);
        assert!(!output.status.success(), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}={value}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("user-accounts: invalid setting {name}: ")),
            "{stderr}"
        );
        if !hidden.is_empty() {
            assert!(!stderr.contains(hidden), "{stderr}");
        }
    }
}

#[test]
fn a_template_that_does_not_render_stops_the_service_at_start() {
    let dir = std::env::temp_dir().join(format!("mail-templates-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(dir.join("verify_email.txt"), "{{ code }\n").expect("written");
    let mail_dir = std::env::temp_dir().join(format!("mail-dir-{}", uuid::Uuid::new_v4()));
    let output = cli(
        "test:bad-template:",
        &[
            ("MAIL_URL", &format!("file://{}", mail_dir.display())),
            ("MAIL_TEMPLATES_DIR", &dir.to_string_lossy()),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("user-accounts: mail template verify_email.txt: "),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&mail_dir).ok();
}

#[rocket::async_test]
async fn a_templates_dir_overrides_one_file_and_keeps_the_other_defaults() {
    let dir = std::env::temp_dir().join(format!("mail-templates-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(
        dir.join("test.subject.txt"),
        "Hello from {{ service }} to {{ to }}\n",
    )
    .expect("written");
    let server = SmtpServer::start();
    let app = mail_app(
        &server.url(),
        &[("MAIL_TEMPLATES_DIR", &dir.to_string_lossy())],
    )
    .await;
    queue(&app, &notice(MailKind::Test, "ops@example.com")).await;
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("Hello from Example Accounts to ops@example.com")
    );
    assert!(messages[0].text().contains("This is a test message"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The real binary, serving, with its output in a file.
struct Service {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Service {
    fn start(prefix: &str, extra: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("user-accounts-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", shared_redis_url())
            .env("REDIS_KEY_PREFIX", prefix)
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .envs(extra.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let service = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !service.logs().contains("user-accounts listening on ") {
            assert!(Instant::now() < deadline, "not started: {}", service.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn redis_at(prefix: &str) -> (redis::Connection, Keys) {
    let conn = redis::Client::open(shared_redis_url())
        .and_then(|client| client.get_connection())
        .expect("test Redis");
    (conn, Keys::new(prefix))
}

/// Queues `mail` as the store does, from outside the service.
fn queue_raw(conn: &mut redis::Connection, keys: &Keys, mail: &QueuedMail, code: Option<&str>) {
    queue_raw_in(conn, &queue_of(keys, mail), mail, code);
}

/// Queues `mail` in `queue`, as a step in that queue's bucket does.
fn queue_raw_in(conn: &mut redis::Connection, queue: &str, mail: &QueuedMail, code: Option<&str>) {
    let mut command = redis::cmd("XADD");
    command
        .arg(queue)
        .arg("*")
        .arg("id")
        .arg(mail.id.to_string())
        .arg("kind")
        .arg(mail.kind().as_str())
        .arg("to")
        .arg(mail.to.as_str())
        .arg("queued_at")
        .arg(mail.queued_at.timestamp_millis())
        .arg("attempts")
        .arg(0);
    if let Some(code) = code {
        command.arg("code").arg(code);
    }
    command.exec(conn).expect("XADD");
}

#[test]
fn the_service_logs_no_code_and_no_address_and_stops_on_sigterm_leaving_unsent_mail_queued() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let server = SmtpServer::start();
    server.defer_all(true);
    let service = Service::start(
        &prefix,
        &[
            ("MAIL_URL", &server.url()),
            ("MAIL_RETRY_BASE_MS", "50"),
            ("MAIL_MAX_ATTEMPTS", "2"),
            ("TOKEN_SECRET", SECRET),
        ],
    );
    let (mut conn, keys) = redis_at(&prefix);
    // A code mail that fails every attempt: every log line about it.
    let doomed = code_mail(MailKind::VerifyEmail, "secret.person@example.com", "918273");
    let sealed = doomed.content.code().map(SealedCode::as_str);
    queue_raw(&mut conn, &keys, &doomed, sealed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service.logs().contains("gave up on") {
        assert!(Instant::now() < deadline, "{}", service.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = service.logs();
    assert!(logs.contains(&format!("id={}", doomed.id)), "{logs}");
    assert!(logs.contains("domain=example.com"), "{logs}");
    assert!(!logs.contains("918273"), "no code in the logs: {logs}");
    assert!(
        !logs.contains("secret.person"),
        "no address in the logs: {logs}"
    );

    // Now an SMTP server that hangs: SIGTERM while sends wait on it.
    drop(service);
    let (hole, _holder) = black_hole();
    let service = Service::start(
        &prefix,
        &[
            ("MAIL_URL", &format!("smtp://127.0.0.1:{hole}?tls=off")),
            ("MAIL_TIMEOUT_MS", "60000"),
        ],
    );
    for n in 0..40 {
        let mail = notice(MailKind::Test, &format!("waiting{n}@example.com"));
        queue_raw(&mut conn, &keys, &mail, None);
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut service = service;
    let exit = loop {
        if let Some(exit) = service.child.try_wait().expect("waitable") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "still running 12 s after SIGTERM: {}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_in = started.elapsed();
    assert!(exit.success(), "{exit:?}: {}", service.logs());
    // Rocket's grace is 5 s (Rocket.toml): the sends under way get 4 s of
    // it, then the sender puts back what it holds and stops.
    assert!(
        stopped_in < Duration::from_secs(7),
        "stopped in {stopped_in:?}"
    );
    let queued = total(&mut conn, "XLEN", |bucket| keys.mail_queue(bucket));
    assert_eq!(queued, 40, "every unsent message is still queued");
    assert_eq!(
        pending_in(&mut conn, &keys),
        0,
        "what it had taken went back to the queue, held by no one"
    );
    let logs = service.logs();
    assert!(
        logs.contains("message(s) not sent go back to the queue"),
        "{logs}"
    );
    eprintln!("stopped {stopped_in:?} after SIGTERM with 40 messages queued");
    cleanup(&mut conn, &prefix);
}

fn cleanup(conn: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(conn)
        .map(|iter| iter.filter_map(Result::ok).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        let _ = redis::cmd("DEL").arg(keys).exec(conn);
    }
}

/// Queues `count` code mails at once and waits until `delivered()` has
/// grown by `count`: the messages per second, end to end.
async fn bulk(app: &TestApp, count: usize, delivered: impl Fn() -> usize) -> f64 {
    let before = delivered();
    let mails: Vec<QueuedMail> = (0..count)
        .map(|n| {
            let to = format!("bulk{n}@example.com");
            code_mail(MailKind::VerifyEmail, &to, "123456")
        })
        .collect();
    let started = Instant::now();
    for mail in &mails {
        queue(app, mail).await;
    }
    eventually("every message arrives", Duration::from_secs(60), || {
        delivered() >= before + count
    })
    .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    queue_drained(app).await;
    rate
}

#[rocket::async_test]
async fn the_figures_latency_from_queue_to_server_and_messages_per_second() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    // Latency: one message at a time, from the queue to the server's disk.
    let mut latencies = Vec::new();
    for n in 0..7 {
        let mail = notice(MailKind::Test, &format!("latency{n}@example.com"));
        let started = Instant::now();
        queue(&app, &mail).await;
        arrived(&server, n + 1, Duration::from_secs(10)).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    // Throughput, 200 messages queued at once: to the server that parses
    // each message (as the other tests read them), to one that only
    // stores them, and to the mail directory.
    let count = 200;
    let parsed_rate = bulk(&app, count, || server.eml_count()).await;
    let ids: HashSet<String> = server
        .messages()
        .iter()
        .filter_map(|message| message.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 7 + count, "each message once");
    let metrics = app.get_as_admin("/metrics").await.body;
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let mean_send = figure("mail_send_seconds_sum ") / figure("mail_send_seconds_count ");

    let raw = SmtpServer::start_with(Security::PlainRaw);
    let raw_app = mail_app(&raw.url(), &[]).await;
    let raw_rate = bulk(&raw_app, count, || raw.eml_count()).await;

    let dir = std::env::temp_dir().join(format!("mail-dir-{}", uuid::Uuid::new_v4()));
    let file_app = mail_app(&format!("file://{}", dir.display()), &[]).await;
    let file_rate = bulk(&file_app, count, || common::smtp::eml_count(&dir)).await;
    std::fs::remove_dir_all(&dir).ok();

    eprintln!(
        "mail figures: enqueue-to-delivered median {:.1} ms (of {}: {:?}); {count} messages \
         at once: {parsed_rate:.0}/s to the parsing test server (one send {:.1} ms on \
         average), {raw_rate:.0}/s to a storing one, {file_rate:.0}/s to the mail directory",
        median.as_secs_f64() * 1000.0,
        latencies.len(),
        latencies,
        mean_send * 1000.0,
    );
    assert!(median < Duration::from_secs(2), "median {median:?}");
}

#[rocket::async_test]
async fn a_malformed_retry_entry_goes_to_the_dead_letters_and_the_rest_still_flows() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    redis::cmd("ZADD")
        .arg(keys(&app).mail_retry(Bucket::of_email("ops@example.com")))
        .arg(0)
        .arg("{not json")
        .exec(&mut app.redis())
        .expect("ZADD");
    eventually("the entry is dead", Duration::from_secs(10), || {
        dead_count(&app) == 1
    })
    .await;
    let entries = dead_letters(&app);
    assert_eq!(entries[0].1["raw"], "{not json");
    assert_eq!(entries[0].1["reason"], "malformed retry entry");
    queue(&app, &notice(MailKind::Test, "ops@example.com")).await;
    arrived(&server, 1, Duration::from_secs(10)).await;
}

#[test]
fn readers_of_stopped_instances_leave_the_group_unless_they_hold_a_message() {
    use user_accounts::store::MailConsumer;

    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let settings = common::test_settings(&shared_redis_url(), &prefix, &[]);
    let (mut conn, keys) = redis_at(&prefix);
    let mut sender = MailConsumer::new(&settings.redis, "alive".into(), 10);
    sender.join().expect("the groups exist");
    // Two killed instances: one took a message, one took nothing.
    let mail = notice(MailKind::Test, "ops@example.com");
    queue_raw(&mut conn, &keys, &mail, None);
    let queue = queue_of(&keys, &mail);
    redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(MAIL_GROUP)
        .arg("killed-holding")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&queue)
        .arg(">")
        .exec(&mut conn)
        .expect("XREADGROUP");
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&queue)
        .arg(MAIL_GROUP)
        .arg("killed-empty")
        .exec(&mut conn)
        .expect("XGROUP CREATECONSUMER");
    let forgotten = sender
        .forget_stopped(Duration::ZERO)
        .expect("readers looked at");
    assert_eq!(forgotten, 1);
    let readers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&queue)
        .arg(MAIL_GROUP)
        .query(&mut conn)
        .expect("XINFO");
    let names: HashSet<String> = readers
        .iter()
        .filter_map(|reader| redis::from_redis_value_ref(&reader["name"]).ok())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["killed-holding".to_owned()]),
        "the one holding a message stays, for its message to be claimed"
    );
    cleanup(&mut conn, &prefix);
}

#[rocket::async_test]
async fn mail_send_test_queues_a_message_a_running_instance_sends_and_mail_status_counts() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[]).await;
    let settings = [("MAIL_URL", server.url()), ("MAIL_FROM", FROM.to_owned())];
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let sent = cli(
        &app.prefix,
        &settings,
        &["mail", "send-test", "Ops@Example.com"],
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let id = String::from_utf8_lossy(&sent.stdout).trim().to_owned();
    let messages = arrived(&server, 1, Duration::from_secs(10)).await;
    assert_eq!(
        messages[0].header("Message-ID"),
        Some(format!("<{id}@mail.example.com>"))
    );
    assert_eq!(messages[0].envelope_to(), ["ops@example.com"]);
    queue_drained(&app).await;
    let status = cli(&app.prefix, &settings, &["mail", "status"]);
    assert!(status.status.success());
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "queued 0\nretrying 0\ndead 0\n"
    );
    let refused = cli(
        &app.prefix,
        &settings,
        &["mail", "send-test", "not-an-address"],
    );
    assert!(!refused.status.success(), "clap rejects a bad address");
}

#[rocket::async_test]
async fn an_address_gets_its_hourly_bound_of_mail_however_many_buckets_queued_it() {
    let server = SmtpServer::start();
    let app = mail_app(&server.url(), &[("MAIL_MAX_PER_RECIPIENT", "3")]).await;
    let keys = keys(&app);
    let mut conn = app.redis();
    // Steps queue in their own bucket: six users' notices to one address,
    // each from another bucket.
    for bucket in Bucket::all().take(6) {
        let mail = notice(MailKind::PasswordChanged, "victim@example.com");
        queue_raw_in(&mut conn, &keys.mail_queue(bucket), &mail, None);
    }
    queue_drained(&app).await;
    rocket::tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.messages().len(), 3);
    let metrics = app.get_as("/metrics", app.admin_key().await).await.body;
    assert!(metrics.contains("mail_held_back_total 3"), "{metrics}");
}
