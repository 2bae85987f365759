//! What a crash between two steps of an email change leaves in Redis,
//! written by hand: each step is atomic in its own slot, so a crash leaves
//! a claim or a recorded move.

use user_accounts::domain::{UserEmail, UserId};

use super::{id_of, user_id, TestApp};

pub const PASSWORD: &str = "correct horse battery staple";

pub fn email(raw: &str) -> UserEmail {
    UserEmail::parse(raw).expect("a valid email")
}

/// The clock of the app's Redis, in Unix ms.
fn redis_now_ms(app: &TestApp) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(&mut *app.data()).expect("TIME");
    secs * 1000 + micros / 1000
}

/// The id of the move a crash left.
pub const CRASHED_MOVE: &str = "0123456789abcdef0123456789abcdef";

/// Writes the claim the move [`CRASHED_MOVE`] of `user` to `address`
/// makes, `age_ms` old.
pub fn leave_claim(app: &TestApp, address: &str, user: &UserId, age_ms: i64) {
    redis::cmd("SET")
        .arg(app.keys_of_layout().email_claim(&email(address)))
        .arg(format!(
            "{user} {} {CRASHED_MOVE}",
            redis_now_ms(app) - age_ms
        ))
        .exec(&mut *app.data())
        .expect("SET claim");
}

/// What a crash right after the user's own step of a move from
/// `ada@example.com` to `new@example.org` leaves: the hash has the new
/// email, the new email only a claim, the old one still its entry. The
/// account's id.
pub async fn move_left_after_the_users_step(app: &TestApp) -> String {
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let keys = app.keys_of_layout();
    let mut data = app.data();
    redis::cmd("HSET")
        .arg(app.user_key(&id))
        .arg("email")
        .arg("new@example.org")
        .arg("email_move")
        .arg(CRASHED_MOVE)
        .exec(&mut *data)
        .expect("HSET email");
    redis::cmd("HSET")
        .arg(keys.email_move(user_id(&id)))
        .arg("id")
        .arg(CRASHED_MOVE)
        .arg("old")
        .arg("ada@example.com")
        .arg("new")
        .arg("new@example.org")
        .exec(&mut *data)
        .expect("HSET move");
    leave_claim(app, "new@example.org", &user_id(&id), 0);
    id
}
