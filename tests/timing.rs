//! Answers that must not tell whether an email has an account by the time
//! they take: the requests for codes, and sign-ups with
//! `SIGNUP_EXISTING=notify`. Each test compares medians of alternated
//! requests; the tests hold one lock, so that no other test of this file
//! runs beside a measurement.

mod common;

use std::future::Future;
use std::time::Duration;

use common::mailbox::*;
use common::{user_body, Reply};
use rocket::http::Status;
use rocket::tokio::sync::Mutex;
use serde_json::json;

const VICTIM: &str = "victim@example.com";

/// Held by each test while it measures.
static MEASURING: Mutex<()> = Mutex::const_new(());

/// Medians of the time `ask` takes to answer `202` about an email with an
/// account (`true`) and about one without (`false`), over `rounds` requests
/// each, taken in turn (which one comes first alternates too). Each request
/// gets a moment afterwards, so that no work left after one answer overlaps
/// the next request.
async fn answer_medians<F, Fut>(rounds: usize, ask: &F) -> (Duration, Duration)
where
    F: Fn(bool, usize) -> Fut,
    Fut: Future<Output = Reply>,
{
    let mut times = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
    for round in 0..rounds {
        let mut order = [(0, true), (1, false)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (n, has_account) in order {
            let started = std::time::Instant::now();
            let reply = ask(has_account, round).await;
            times[n].push(started.elapsed());
            assert_eq!(reply.status, Status::Accepted, "{}", reply.body);
            rocket::tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let [known, unknown] = times.map(|mut times| {
        times.sort();
        times[rounds / 2]
    });
    (known, unknown)
}

/// How far apart two medians are, relative to the smaller.
fn gap((known, unknown): (Duration, Duration)) -> f64 {
    known.abs_diff(unknown).as_secs_f64() / known.min(unknown).as_secs_f64()
}

/// Checks that the medians of 60 answers of `ask` about an email with an
/// account and about one without differ by under 10 %. A busy machine can
/// push one measurement past that: it is taken up to three times, and a
/// real difference fails all three.
async fn assert_same_time_to_answer<F, Fut>(ask: F)
where
    F: Fn(bool, usize) -> Fut,
    Fut: Future<Output = Reply>,
{
    // The first requests warm connections and caches up for both.
    answer_medians(10, &ask).await;
    let mut measured = Vec::new();
    for _ in 0..3 {
        let medians = answer_medians(60, &ask).await;
        if gap(medians) < 0.10 {
            return;
        }
        measured.push(medians);
    }
    panic!("medians (account, none) differ by 10 % or more each time: {measured:?}");
}

/// Asks for codes of `uri` for `VICTIM`'s account and for an email with
/// none, in the same time.
async fn assert_code_requests_take_the_same_time(mailed: &MailedApp, uri: &str) {
    assert_same_time_to_answer(|has_account, _| {
        let email = if has_account {
            VICTIM
        } else {
            "nobody@example.com"
        };
        async move { mailed.app.post_json(uri, &json!({"email": email})).await }
    })
    .await;
}

/// Settings that let one client ask for codes as often as the test does.
const MANY_REQUESTS: &[(&str, &str)] = &[("MAIL_MAX_PER_ADDRESS", "1000")];

#[rocket::async_test]
async fn reset_requests_answer_in_the_same_time_whether_or_not_the_email_has_an_account() {
    let _alone = MEASURING.lock().await;
    let mailed = MailedApp::spawn(MANY_REQUESTS).await;
    mailed.sign_up(VICTIM).await;
    assert_code_requests_take_the_same_time(&mailed, RESET).await;
}

#[rocket::async_test]
async fn verification_requests_answer_in_the_same_time_whether_or_not_the_email_has_an_account() {
    let _alone = MEASURING.lock().await;
    let mailed = MailedApp::spawn(MANY_REQUESTS).await;
    mailed.sign_up(VICTIM).await;
    assert_code_requests_take_the_same_time(&mailed, VERIFY).await;
}

/// Settings of a service whose sign-ups do not tell who has an account.
const NOTIFY: &[(&str, &str)] = &[("SIGNUP_EXISTING", "notify")];

#[rocket::async_test]
async fn sign_ups_in_notify_mode_take_the_same_time_for_existing_and_new_emails() {
    let _alone = MEASURING.lock().await;
    let mailed = MailedApp::spawn(NOTIFY).await;
    mailed.verified_account("Victoria", VICTIM).await;
    let mailed = &mailed;
    assert_same_time_to_answer(|has_account, round| {
        let email = if has_account {
            VICTIM.to_owned()
        } else {
            format!(
                "newcomer{round}-{}@example.com",
                uuid::Uuid::new_v4().simple()
            )
        };
        let body = user_body("Stranger", &email, NEW_PASSWORD);
        async move { mailed.app.post_user(&body).await }
    })
    .await;
}
