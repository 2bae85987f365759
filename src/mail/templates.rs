//! The templates of every kind of mail: a subject, a text part and an HTML
//! part each (`{kind}.subject.txt`, `{kind}.txt`, `{kind}.html`), plus the
//! HTML layout they extend. The defaults are compiled in; a file of the same
//! name in `MAIL_TEMPLATES_DIR` wins over its default. Every template is
//! read and tried at start, so a broken one stops the service there.

use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use super::MailError;
use crate::domain::MailKind;

/// The compiled-in templates, by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    (
        "verify_email.subject.txt",
        include_str!("templates/verify_email.subject.txt"),
    ),
    (
        "verify_email.txt",
        include_str!("templates/verify_email.txt"),
    ),
    (
        "verify_email.html",
        include_str!("templates/verify_email.html"),
    ),
    (
        "reset_password.subject.txt",
        include_str!("templates/reset_password.subject.txt"),
    ),
    (
        "reset_password.txt",
        include_str!("templates/reset_password.txt"),
    ),
    (
        "reset_password.html",
        include_str!("templates/reset_password.html"),
    ),
    (
        "password_changed.subject.txt",
        include_str!("templates/password_changed.subject.txt"),
    ),
    (
        "password_changed.txt",
        include_str!("templates/password_changed.txt"),
    ),
    (
        "password_changed.html",
        include_str!("templates/password_changed.html"),
    ),
    (
        "email_changed.subject.txt",
        include_str!("templates/email_changed.subject.txt"),
    ),
    (
        "email_changed.txt",
        include_str!("templates/email_changed.txt"),
    ),
    (
        "email_changed.html",
        include_str!("templates/email_changed.html"),
    ),
    (
        "account_disabled.subject.txt",
        include_str!("templates/account_disabled.subject.txt"),
    ),
    (
        "account_disabled.txt",
        include_str!("templates/account_disabled.txt"),
    ),
    (
        "account_disabled.html",
        include_str!("templates/account_disabled.html"),
    ),
    (
        "account_enabled.subject.txt",
        include_str!("templates/account_enabled.subject.txt"),
    ),
    (
        "account_enabled.txt",
        include_str!("templates/account_enabled.txt"),
    ),
    (
        "account_enabled.html",
        include_str!("templates/account_enabled.html"),
    ),
    (
        "signup_attempted.subject.txt",
        include_str!("templates/signup_attempted.subject.txt"),
    ),
    (
        "signup_attempted.txt",
        include_str!("templates/signup_attempted.txt"),
    ),
    (
        "signup_attempted.html",
        include_str!("templates/signup_attempted.html"),
    ),
    (
        "test.subject.txt",
        include_str!("templates/test.subject.txt"),
    ),
    ("test.txt", include_str!("templates/test.txt")),
    ("test.html", include_str!("templates/test.html")),
];

/// What the templates of one message are given. Values absent for a kind
/// (`code` and `link` in a notice, an unknown `name`) are `none`.
#[derive(Clone, Debug, Default)]
pub struct MailValues {
    pub kind: String,
    /// The sender's display name, or `user-accounts`.
    pub service: String,
    pub to: String,
    pub name: Option<String>,
    pub code: Option<String>,
    /// The page that takes the code, with the address and the code in its
    /// fragment.
    pub link: Option<String>,
    pub public_url: String,
    /// When the message was queued: `2026-12-01 09:30 UTC`.
    pub queued_at: String,
    /// How long the code works, when it expires.
    pub expires_in_minutes: Option<i64>,
}

impl MailValues {
    fn context(&self) -> Value {
        minijinja::context! {
            kind => self.kind.clone(),
            service => self.service.clone(),
            to => self.to.clone(),
            name => self.name.clone(),
            code => self.code.clone(),
            link => self.link.clone(),
            public_url => self.public_url.clone(),
            queued_at => self.queued_at.clone(),
            expires_in_minutes => self.expires_in_minutes,
        }
    }
}

/// One message, rendered.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The template environment: built-ins, overridden per file.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Reads every template (from `dir` where it holds one) and renders each
    /// kind once with sample values: a template that does not parse, or
    /// names a value that does not exist, fails here, at start.
    pub fn load(dir: Option<&Path>) -> Result<Self, MailError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let dir: Option<PathBuf> = dir.map(Path::to_path_buf);
        env.set_loader(move |name| load(dir.as_deref(), name));
        let templates = Self { env };
        for kind in MailKind::ALL {
            templates.render(&sample(kind))?;
        }
        Ok(templates)
    }

    pub fn render(&self, values: &MailValues) -> Result<Rendered, MailError> {
        let context = values.context();
        let render = |suffix: &str| -> Result<String, MailError> {
            let name = format!("{}{suffix}", values.kind);
            self.env
                .get_template(&name)
                .and_then(|template| template.render(&context))
                .map_err(|error| MailError::Template {
                    name,
                    reason: one_line(&error),
                })
        };
        let subject = render(".subject.txt")?;
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: render(".txt")?,
            html: render(".html")?,
        })
    }
}

/// The template `name`: the file in `dir` when there is one, else the
/// built-in. Only plain file names are looked up, never a path.
fn load(dir: Option<&Path>, name: &str) -> Result<Option<String>, minijinja::Error> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        return Ok(None);
    }
    if let Some(dir) = dir {
        let path = dir.join(name);
        if path.is_file() {
            return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot read {}: {error}", path.display()),
                )
            });
        }
    }
    Ok(BUILT_IN
        .iter()
        .find(|(built_in, _)| *built_in == name)
        .map(|(_, source)| (*source).to_owned()))
}

/// An error with its cause, on one line.
fn one_line(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Values for trying the templates of `kind` at start.
fn sample(kind: MailKind) -> MailValues {
    MailValues {
        kind: kind.as_str().to_owned(),
        service: "user-accounts".into(),
        to: "jo@example.com".into(),
        name: Some("Jo".into()),
        code: kind.carries_code().then(|| "123456".into()),
        link: kind
            .carries_code()
            .then(|| "http://127.0.0.1:8000/verify#email=jo%40example.com&code=123456".into()),
        public_url: "http://127.0.0.1:8000".into(),
        queued_at: "2026-01-01 00:00 UTC".into(),
        expires_in_minutes: Some(15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_subject_a_text_and_an_html_template() {
        for kind in MailKind::ALL {
            for suffix in [".subject.txt", ".txt", ".html"] {
                let name = format!("{kind}{suffix}");
                assert!(
                    BUILT_IN.iter().any(|(built_in, _)| *built_in == name),
                    "{name} is missing"
                );
            }
        }
        Templates::load(None).expect("the built-in templates render");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let templates = Templates::load(None).expect("valid");
        let values = MailValues {
            name: Some("<b>Jo & Al</b>".into()),
            ..sample(MailKind::PasswordChanged)
        };
        let rendered = templates.render(&values).expect("renders");
        assert!(rendered.text.contains("Hello <b>Jo & Al</b>,"));
        assert!(rendered
            .html
            .contains("&lt;b&gt;Jo &amp; Al&lt;&#x2f;b&gt;"));
        assert!(!rendered.html.contains("<b>Jo"));
    }

    #[test]
    fn a_file_in_the_templates_dir_wins_over_the_built_in() {
        let dir = std::env::temp_dir().join(format!("mail-templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("test.subject.txt"), "Custom test for {{ to }}\n")
            .expect("written");
        let templates = Templates::load(Some(&dir)).expect("valid");
        let rendered = templates.render(&sample(MailKind::Test)).expect("renders");
        assert_eq!(rendered.subject, "Custom test for jo@example.com");
        assert!(
            rendered.text.contains("test message"),
            "the rest is built in"
        );
        std::fs::write(dir.join("test.txt"), "Hello {{ nobody }}").expect("written");
        let error = Templates::load(Some(&dir))
            .err()
            .expect("an unknown value fails at start");
        assert!(error.to_string().contains("test.txt"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn names_that_are_paths_are_never_looked_up() {
        let dir = std::env::temp_dir();
        for name in ["../etc/passwd", "/etc/passwd", ".hidden", "a/b.txt", ""] {
            assert_eq!(load(Some(&dir), name).expect("no error"), None, "{name}");
        }
    }
}
