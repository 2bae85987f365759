//! Apps whose mail lands in a directory of their own, and the code flows
//! requests, for the tests that read what the service mails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rocket::http::Status;
use serde_json::json;

use super::smtp::Received;
use super::{Reply, TestApp};

pub const PASSWORD: &str = "correct horse battery";
pub const NEW_PASSWORD: &str = "an entirely new passphrase";
pub const SECRET: &str = "a test secret of at least thirty-two bytes";

/// An app whose mail lands in a directory of its own.
pub struct MailedApp {
    pub app: TestApp,
    pub dir: PathBuf,
}

/// A directory for an app's mail, and the `MAIL_URL` that writes there.
fn mail_dir() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("codes-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("file://{}", dir.display());
    (dir, url)
}

/// The settings of an app that mails to `url`, then `extra`.
fn mailing<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("MAIL_URL", url),
        ("TOKEN_SECRET", SECRET),
        ("PUBLIC_URL", "https://accounts.example.com"),
    ];
    settings.extend_from_slice(extra);
    settings
}

impl MailedApp {
    pub async fn spawn(extra: &[(&str, &str)]) -> Self {
        let (dir, url) = mail_dir();
        let app = TestApp::spawn_with(&mailing(&url, extra)).await;
        Self { app, dir }
    }

    /// The same on `cluster`.
    pub async fn spawn_on_cluster(
        cluster: &super::cluster::RedisCluster,
        extra: &[(&str, &str)],
    ) -> Self {
        let (dir, url) = mail_dir();
        let app = TestApp::spawn_on_cluster(cluster, &mailing(&url, extra)).await;
        Self { app, dir }
    }

    /// Every message delivered so far, once there are at least `count`.
    pub async fn mails(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files = eml_files(&self.dir);
            if files.len() >= count {
                // In the order they were written: a Date header has whole
                // seconds only.
                let mut files = files;
                files.sort_by_key(|file| file.metadata().and_then(|meta| meta.modified()).ok());
                return files
                    .iter()
                    .map(|file| Received::parse_file(file))
                    .collect();
            }
            assert!(Instant::now() < deadline, "{count} mails did not arrive");
            rocket::tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The latest mail to `to` whose subject holds `subject`, once `count`
    /// mails came.
    pub async fn latest_mail(&self, to: &str, count: usize, subject: &str) -> Received {
        self.mails(count)
            .await
            .into_iter()
            .rev()
            .find(|mail| {
                mail.header("To").is_some_and(|header| header.contains(to))
                    && mail
                        .header("Subject")
                        .is_some_and(|header| header.contains(subject))
            })
            .unwrap_or_else(|| panic!("no mail about {subject:?} to {to}"))
    }

    /// The code in the latest mail to `to` whose subject holds `subject`.
    pub async fn code_for(&self, to: &str, count: usize, subject: &str) -> String {
        code_in(&self.latest_mail(to, count, subject).await.text())
    }

    /// An account made by an admin key, its email verified with the code
    /// of its first mail: the same under every `SIGNUP` and
    /// `SIGNUP_EXISTING`.
    pub async fn verified_account(&self, name: &str, email: &str) -> String {
        let key = self.app.admin_key().await.to_owned();
        let count = eml_files(&self.dir).len() + 1;
        let body = super::user_body(name, email, PASSWORD);
        let reply = self
            .app
            .with_token(rocket::http::Method::Post, "/api/users", &key, Some(&body))
            .await;
        assert_eq!(reply.status, Status::Created, "{}", reply.body);
        let code = self.code_for(email, count, "Verify").await;
        let confirmed = confirm_email(&self.app, email, &code).await;
        assert_eq!(confirmed.status, Status::Ok, "{}", confirmed.body);
        super::id_of(&reply.json()).to_owned()
    }

    pub async fn sign_up(&self, email: &str) -> String {
        let user = self.app.create_user("Ada", email, PASSWORD).await;
        user["id"].as_str().expect("id").to_owned()
    }
}

impl Drop for MailedApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// The six digits standing on a line of their own.
pub fn code_in(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.bytes().all(|byte| byte.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code line in:\n{text}"))
        .to_owned()
}

pub const VERIFY: &str = "/api/email-verification";
pub const VERIFY_CONFIRM: &str = "/api/email-verification/confirm";
pub const RESET: &str = "/api/password-reset";
pub const RESET_CONFIRM: &str = "/api/password-reset/confirm";

pub async fn confirm_email(app: &TestApp, email: &str, code: &str) -> Reply {
    app.post_json(VERIFY_CONFIRM, &json!({"email": email, "code": code}))
        .await
}

pub async fn reset(app: &TestApp, email: &str, code: &str, new_password: &str) -> Reply {
    let body = json!({"email": email, "code": code, "new_password": new_password});
    app.post_json(RESET_CONFIRM, &body).await
}

pub fn assert_invalid_code(reply: &Reply) {
    reply.assert_problem(
        Status::UnprocessableEntity,
        "the code is invalid or has expired",
    );
    assert_eq!(reply.json()["type"], "/problems/invalid-code");
}

pub async fn reset_code(mailed: &MailedApp, email: &str, mails_before: usize) -> String {
    let reply = mailed.app.post_json(RESET, &json!({"email": email})).await;
    assert_eq!(reply.status, Status::Accepted, "{}", reply.body);
    mailed.code_for(email, mails_before + 1, "Reset").await
}
