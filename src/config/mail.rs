//! The mail settings: where mail goes (`MAIL_URL`), who sends it, where its
//! links point, and how hard the sender tries.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::client::Certificate;
use percent_encoding::percent_decode_str;
use url::Url;

use super::{ConfigError, Env};

/// Everything about outgoing mail.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// `MAIL_URL`: where mail goes. `None` when unset: mail is off, and
    /// nothing is queued.
    pub transport: Option<MailTransport>,
    /// `MAIL_FROM`: the sender of every message.
    pub from: Mailbox,
    /// `PUBLIC_URL`: the base of the links in messages, without a trailing
    /// slash.
    pub public_url: String,
    /// `MAIL_MAX_ATTEMPTS`: a message that failed this many times moves to
    /// the dead letters.
    pub max_attempts: u32,
    /// `MAIL_MAX_PER_RECIPIENT`: messages queued to one address in an hour,
    /// of every kind together; past it nothing more is queued to it.
    pub max_per_recipient: u32,
    /// `MAIL_RETRY_BASE_MS`: the wait after the first failure; each further
    /// failure doubles it, up to [`MAX_RETRY_DELAY`].
    pub retry_base: Duration,
    /// `MAIL_CLAIM_AFTER_MS`: a message another instance took and has not
    /// finished after this long is taken over (that instance is presumed
    /// dead). Keep it well above `MAIL_TIMEOUT_MS`.
    pub claim_after: Duration,
    /// `MAIL_TIMEOUT_MS`: the longest the SMTP server may take to connect or
    /// to answer one command.
    pub timeout: Duration,
    /// `MAIL_TEMPLATES_DIR`: a file here overrides the built-in template of
    /// the same name.
    pub templates_dir: Option<PathBuf>,
}

/// The longest wait between two attempts, however many failed.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// Where mail goes.
#[derive(Clone, Debug)]
pub enum MailTransport {
    Smtp(SmtpSettings),
    /// `file:///dir`: one `{message id}.eml` file per message, for
    /// development and tests.
    File {
        dir: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<SmtpCredentials>,
    /// `MAIL_TLS_CA_FILE`: PEM certificates trusted besides the system's.
    pub extra_roots_pem: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: STARTTLS when the server offers it, plain text otherwise.
    StartTlsWhenOffered,
    /// `smtp://…?tls=required`: STARTTLS or no mail.
    StartTlsRequired,
    /// `smtp://…?tls=off`: never TLS (a mail catcher on the same host).
    Off,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// The SMTP user and password; the password never prints.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub user: String,
    password: String,
}

impl SmtpCredentials {
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpCredentials({:?}, ***)", self.user)
    }
}

/// Where mail goes, for log lines: never the user name or the password.
impl fmt::Display for MailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smtp(smtp) => {
                let host_port = super::HostPort(&smtp.host, smtp.port);
                match smtp.security {
                    SmtpSecurity::StartTlsWhenOffered => {
                        write!(f, "smtp://{host_port} (STARTTLS when offered)")
                    }
                    SmtpSecurity::StartTlsRequired => {
                        write!(f, "smtp://{host_port} (STARTTLS required)")
                    }
                    SmtpSecurity::Off => write!(f, "smtp://{host_port} (no TLS)"),
                    SmtpSecurity::Tls => write!(f, "smtps://{host_port}"),
                }
            }
            Self::File { dir } => write!(f, "files in {}", dir.display()),
        }
    }
}

const DEFAULT_FROM: &str = "user-accounts <no-reply@localhost>";
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8000";

pub(super) fn mail(env: &Env) -> Result<MailSettings, ConfigError> {
    let transport = match env.get("MAIL_URL") {
        Some(raw) => Some(mail_url(raw.trim(), env)?),
        None => None,
    };
    let from = env.get("MAIL_FROM").unwrap_or_else(|| DEFAULT_FROM.into());
    let from = Mailbox::from_str(from.trim()).map_err(|_| ConfigError {
        setting: "MAIL_FROM",
        reason: format!(
            "expected an address, alone or as `Name <user@example.com>`, got {:?}",
            from.trim()
        ),
    })?;
    Ok(MailSettings {
        transport,
        from,
        public_url: public_url(env)?,
        max_attempts: env.parse_in("MAIL_MAX_ATTEMPTS", 8, 1..=100)?,
        max_per_recipient: env.parse_in("MAIL_MAX_PER_RECIPIENT", 10, 1..=10_000)?,
        retry_base: Duration::from_millis(env.parse_in(
            "MAIL_RETRY_BASE_MS",
            30_000,
            1..=3_600_000,
        )?),
        claim_after: Duration::from_millis(env.parse_in(
            "MAIL_CLAIM_AFTER_MS",
            30_000,
            100..=86_400_000,
        )?),
        timeout: Duration::from_millis(env.parse_in("MAIL_TIMEOUT_MS", 10_000, 100..=300_000)?),
        templates_dir: templates_dir(env)?,
    })
}

const MAIL_URL_FORMS: &str = "smtp://[user:password@]host[:port][?tls=off|required], \
    smtps://[user:password@]host[:port] or file:///absolute/dir";

/// `MAIL_URL`. Messages never echo the URL: it may hold a password.
fn mail_url(raw: &str, env: &Env) -> Result<MailTransport, ConfigError> {
    let invalid = |reason: String| ConfigError {
        setting: "MAIL_URL",
        reason,
    };
    let url = Url::parse(raw)
        .map_err(|_| invalid(format!("is not a valid URL; expected {MAIL_URL_FORMS}")))?;
    let secure = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        "file" => return mail_dir(&url).map_err(invalid),
        other => {
            return Err(invalid(format!(
                "the scheme must be smtp, smtps or file, not {other:?}; expected {MAIL_URL_FORMS}"
            )))
        }
    };
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(invalid(format!("names no host; expected {MAIL_URL_FORMS}"))),
    };
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(invalid(format!(
            "has a path or fragment, which an SMTP URL has no use for; expected {MAIL_URL_FORMS}"
        )));
    }
    let mut security = if secure {
        SmtpSecurity::Tls
    } else {
        SmtpSecurity::StartTlsWhenOffered
    };
    for (name, value) in url.query_pairs() {
        match (name.as_ref(), value.as_ref(), secure) {
            ("tls", "off", false) => security = SmtpSecurity::Off,
            ("tls", "required", false) => security = SmtpSecurity::StartTlsRequired,
            ("tls", "opportunistic", false) => security = SmtpSecurity::StartTlsWhenOffered,
            ("tls", _, true) => {
                return Err(invalid(
                    "smtps:// always speaks TLS: drop its tls= parameter".into(),
                ))
            }
            ("tls", other, false) => {
                return Err(invalid(format!(
                    "tls= must be off, required or opportunistic, not {other:?}"
                )))
            }
            (other, _, _) => {
                return Err(invalid(format!(
                    "unknown parameter {other:?}; only tls= is understood"
                )))
            }
        }
    }
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (_, None) => {
            return Err(invalid(
                "names a user but no password: write smtp://user:password@host".into(),
            ))
        }
        (user, Some(password)) => Some(SmtpCredentials {
            user: decoded(user).map_err(|_| invalid("the user name is not UTF-8".into()))?,
            password: decoded(password).map_err(|_| invalid("the password is not UTF-8".into()))?,
        }),
    };
    if credentials.is_some() && security == SmtpSecurity::Off {
        return Err(invalid(
            "sends its password without TLS (tls=off); drop the credentials or the tls=off".into(),
        ));
    }
    Ok(MailTransport::Smtp(SmtpSettings {
        host: host.to_owned(),
        port: url.port().unwrap_or(if secure { 465 } else { 587 }),
        security,
        credentials,
        extra_roots_pem: extra_roots(env)?,
    }))
}

fn decoded(part: &str) -> Result<String, std::str::Utf8Error> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|text| text.into_owned())
}

fn mail_dir(url: &Url) -> Result<MailTransport, String> {
    let expected = "expected file:///absolute/dir (three slashes, then an absolute path)";
    if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
        return Err(format!("a file URL names no host; {expected}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("a file URL takes no parameters; {expected}"));
    }
    let dir = url.to_file_path().map_err(|()| expected.to_owned())?;
    if dir.as_os_str().is_empty() || dir == std::path::Path::new("/") {
        return Err(format!("names no directory; {expected}"));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(MailTransport::File { dir })
}

fn extra_roots(env: &Env) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = env.get("MAIL_TLS_CA_FILE") else {
        return Ok(None);
    };
    let invalid = |reason: String| ConfigError {
        setting: "MAIL_TLS_CA_FILE",
        reason,
    };
    let pem = std::fs::read(path.trim())
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.trim())))?;
    let holds_one = String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----");
    if !holds_one || Certificate::from_pem(&pem).is_err() {
        return Err(invalid(format!("{} holds no PEM certificate", path.trim())));
    }
    Ok(Some(pem))
}

fn public_url(env: &Env) -> Result<String, ConfigError> {
    let raw = env
        .get("PUBLIC_URL")
        .unwrap_or_else(|| DEFAULT_PUBLIC_URL.into());
    let raw = raw.trim();
    let invalid = |reason: &str| ConfigError {
        setting: "PUBLIC_URL",
        reason: format!("{reason}, as in https://accounts.example.com (got {raw:?})"),
    };
    let url = Url::parse(raw).map_err(|_| invalid("expected an http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("expected an http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "must have no ? or #: the links put their own fragment after it",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must hold no user name or password"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn templates_dir(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let Some(dir) = env.get("MAIL_TEMPLATES_DIR") else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir.trim());
    if dir.is_dir() {
        Ok(Some(dir))
    } else {
        Err(ConfigError {
            setting: "MAIL_TEMPLATES_DIR",
            reason: format!("{} is not a directory", dir.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn mail_from(pairs: &[(&str, &str)]) -> Result<MailSettings, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| vars.get(name).cloned();
        mail(&Env(&lookup))
    }

    fn smtp(url: &str) -> SmtpSettings {
        match mail_from(&[("MAIL_URL", url)]).expect("valid").transport {
            Some(MailTransport::Smtp(smtp)) => smtp,
            other => panic!("{url}: expected SMTP, got {other:?}"),
        }
    }

    fn rejected(pairs: &[(&str, &str)]) -> ConfigError {
        mail_from(pairs)
            .err()
            .unwrap_or_else(|| panic!("{pairs:?} is rejected"))
    }

    #[test]
    fn without_a_mail_url_mail_is_off_and_the_defaults_hold() {
        let settings = mail_from(&[]).expect("defaults are valid");
        assert!(settings.transport.is_none());
        assert_eq!(
            settings.from.to_string(),
            "user-accounts <no-reply@localhost>"
        );
        assert_eq!(settings.public_url, "http://127.0.0.1:8000");
        assert_eq!(settings.max_attempts, 8);
        assert_eq!(settings.claim_after, Duration::from_secs(30));
        assert!(settings.templates_dir.is_none());
    }

    #[test]
    fn smtp_uses_starttls_when_offered_and_tls_off_disables_it() {
        let plain = smtp("smtp://mail.example.com:2525");
        assert_eq!(
            (plain.host.as_str(), plain.port),
            ("mail.example.com", 2525)
        );
        assert_eq!(plain.security, SmtpSecurity::StartTlsWhenOffered);
        assert!(plain.credentials.is_none());
        assert_eq!(
            smtp("smtp://mailpit:1025?tls=off").security,
            SmtpSecurity::Off
        );
        assert_eq!(
            smtp("smtp://mx:25?tls=required").security,
            SmtpSecurity::StartTlsRequired
        );
        assert_eq!(smtp("smtp://mx").port, 587);
    }

    #[test]
    fn smtps_speaks_tls_from_the_start() {
        let tls = smtp("smtps://relay.example.com");
        assert_eq!((tls.port, tls.security), (465, SmtpSecurity::Tls));
        assert_eq!(smtp("smtps://[::1]:4650").host, "::1");
    }

    #[test]
    fn credentials_are_percent_decoded_and_the_password_never_prints() {
        let with = smtp("smtp://app%40example.com:p%2Fss%3Aw0rd@relay:587");
        let credentials = with.credentials.expect("credentials");
        assert_eq!(credentials.user, "app@example.com");
        assert_eq!(credentials.password(), "p/ss:w0rd");
        assert!(!format!("{credentials:?}").contains("w0rd"));
    }

    #[test]
    fn a_file_url_names_a_directory() {
        let settings = mail_from(&[("MAIL_URL", "file:///var/tmp/mail%20box")]).expect("valid");
        match settings.transport {
            Some(MailTransport::File { dir }) => {
                assert_eq!(dir, PathBuf::from("/var/tmp/mail box"));
            }
            other => panic!("expected files, got {other:?}"),
        }
    }

    #[test]
    fn bad_mail_urls_are_rejected_by_name_without_echoing_the_password() {
        for bad in [
            "mail.example.com:25",
            "http://user:hunter2@mail.example.com",
            "smtp://user:hunter2@mail.example.com:port",
            "smtp://user:hunter2@mail.example.com/inbox",
            "smtp://user:hunter2@mail.example.com?tls=maybe",
            "smtp://user:hunter2@mail.example.com?starttls=1",
            "smtps://user:hunter2@mail.example.com?tls=off",
            "smtp://user:hunter2@mail.example.com?tls=off",
            "smtp://user@mail.example.com",
            "file://mailhost/var/mail",
            "file:///",
        ] {
            let error = rejected(&[("MAIL_URL", bad)]);
            assert_eq!(error.setting, "MAIL_URL", "{bad}");
            let message = error.to_string();
            assert!(!message.contains("hunter2"), "{bad}: {message}");
            assert_eq!(message.lines().count(), 1, "{bad}: {message}");
        }
    }

    #[test]
    fn the_transport_shows_where_mail_goes_but_no_credentials() {
        let settings =
            mail_from(&[("MAIL_URL", "smtp://app:hunter2@relay.example.com:587")]).expect("valid");
        let shown = settings.transport.expect("on").to_string();
        assert_eq!(
            shown,
            "smtp://relay.example.com:587 (STARTTLS when offered)"
        );
    }

    #[test]
    fn the_sender_and_the_public_url_are_checked() {
        let settings = mail_from(&[
            ("MAIL_FROM", "Accounts <accounts@example.com>"),
            ("PUBLIC_URL", "https://example.com/accounts/"),
        ])
        .expect("valid");
        assert_eq!(settings.from.email.to_string(), "accounts@example.com");
        assert_eq!(settings.public_url, "https://example.com/accounts");
        assert_eq!(rejected(&[("MAIL_FROM", "nobody")]).setting, "MAIL_FROM");
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/#x",
            "https://example.com/?a=1",
        ] {
            assert_eq!(
                rejected(&[("PUBLIC_URL", bad)]).setting,
                "PUBLIC_URL",
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_and_directories_are_checked() {
        assert_eq!(
            rejected(&[("MAIL_MAX_ATTEMPTS", "0")]).setting,
            "MAIL_MAX_ATTEMPTS"
        );
        assert_eq!(
            rejected(&[("MAIL_CLAIM_AFTER_MS", "soon")]).setting,
            "MAIL_CLAIM_AFTER_MS"
        );
        assert_eq!(
            rejected(&[("MAIL_TEMPLATES_DIR", "/no/such/dir")]).setting,
            "MAIL_TEMPLATES_DIR"
        );
        let error = rejected(&[
            ("MAIL_URL", "smtp://relay:25"),
            ("MAIL_TLS_CA_FILE", "/no/such/ca.pem"),
        ]);
        assert_eq!(error.setting, "MAIL_TLS_CA_FILE");
    }
}
