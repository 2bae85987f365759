//! Settings, read once at start from the environment (and `.env`).
//!
//! HTTP settings (address, port, limits, shutdown) stay with Rocket's own
//! configuration: `Rocket.toml` and `ROCKET_*` variables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::CodeSecret;

mod access;
pub mod catalog;
mod hashing;
mod mail;
mod redis;

pub use self::redis::{masked, RedisSettings, RedisTarget, ReplicaWait};
pub use access::{AccessSettings, Signup, SignupExisting};
pub use hashing::HashingSettings;

pub use mail::{
    MailSettings, MailTransport, SmtpCredentials, SmtpSecurity, SmtpSettings, MAX_RETRY_DELAY,
};

/// Everything the service needs besides Rocket's HTTP settings.
pub struct Settings {
    pub redis: RedisSettings,
    pub password_hashing: HashingSettings,
    /// The directory served under `/files`.
    pub static_dir: PathBuf,
    pub sessions: SessionSettings,
    pub login: LoginSettings,
    pub access: AccessSettings,
    pub codes: CodeSettings,
    pub log_format: LogFormat,
    pub mail: MailSettings,
}

/// One-time codes for email verification and password reset.
#[derive(Clone, Debug)]
pub struct CodeSettings {
    /// `TOKEN_SECRET`: the key codes are hashed under; `None` when unset,
    /// and the service then makes one at start.
    pub secret: Option<CodeSecret>,
    /// `CODE_TTL_SECS`: how long a code works.
    pub ttl: Duration,
    /// `MAIL_RESEND_SECS`: no second code of one purpose for one account
    /// within this time.
    pub resend: Duration,
    /// `MAIL_MAX_PER_ADDRESS`: code requests per client address per hour.
    pub max_per_address: u32,
    /// `CODE_MAX_PER_DAY`: codes of one purpose issued to one account in a
    /// day; past it no more are issued, without a word to the requester.
    pub max_per_day: u32,
    /// `CODE_MAX_ACCOUNT_FAILURES`: wrong confirmations of one purpose for
    /// one account in a day, from every address together; past it that
    /// purpose's confirmations get 429 until the day ends or an admin
    /// clears them.
    pub max_account_failures: u32,
    /// `EMAIL_CHANGES_MAX_PER_DAY`: email changes of one account in a day;
    /// past it a change gets 429.
    pub email_changes_per_day: u32,
    /// `REQUIRE_VERIFIED_EMAIL`: logins of unverified users are refused.
    pub require_verified_email: bool,
}

/// How long work left at shutdown may take: Rocket's shutdown grace, at
/// least a second.
pub fn shutdown_grace(rocket: &rocket::Config) -> Duration {
    Duration::from_secs(u64::from(rocket.shutdown.grace.max(1)))
}

/// How request log lines are written: `LOG_FORMAT=text` or `json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How long a login session lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// Without use for this long, a session expires; use renews it (at
    /// most once per [`Self::renewal_step`]).
    pub idle: Duration,
    /// No renewal extends a session past this age.
    pub max_age: Duration,
    /// A session may change the email or password, or delete the account,
    /// only this long after the login that created it.
    pub reauth: Duration,
    /// A login past this many live sessions of one user ends the session
    /// with the oldest login.
    pub max_per_user: u32,
}

/// The longest a renewal may wait: see [`SessionSettings::renewal_step`].
const MAX_RENEWAL_STEP: Duration = Duration::from_secs(1);

impl SessionSettings {
    /// A session renewed less than this long ago is not renewed again: the
    /// idle timeout counts from its last renewal, so a session ends between
    /// `idle - renewal_step` and `idle` after its last use. A tenth of the
    /// idle timeout, and never more than a second.
    pub fn renewal_step(&self) -> Duration {
        (self.idle / 10).min(MAX_RENEWAL_STEP)
    }
}

/// Brute-force protection for every password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginSettings {
    /// Failed attempts allowed per account from one client address in one
    /// window.
    pub max_failures: u32,
    /// Per account from all addresses: against guessing spread over many.
    pub max_account_failures: u32,
    /// Per client address across accounts: against password spraying.
    pub max_address_failures: u32,
    pub window: Duration,
}

/// `host:port`, with an IPv6 address in brackets.
pub(super) struct HostPort<'a>(pub(super) &'a str, pub(super) u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

/// A setting that cannot be used, named so the operator knows what to fix.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The lines that say which variables of the process environment (`.env`
/// included) look like settings but are none; none when there are none or
/// `ALLOW_UNKNOWN_SETTINGS=true`.
pub fn unknown_variables() -> Result<Vec<String>, ConfigError> {
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    let env = Env(&lookup);
    if flag(&env, "ALLOW_UNKNOWN_SETTINGS")? {
        return Ok(Vec::new());
    }
    let names = variable_names();
    Ok(catalog::unknown(names.iter().map(String::as_str)))
}

/// The names of the process environment's variables (`.env` included once
/// it is read) that are valid Unicode.
pub fn variable_names() -> std::collections::HashSet<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect()
}

/// The log format `LOG_FORMAT` asks for, read alone, before the other
/// settings: the errors that stop a start are written in it too. Text when
/// it is unset or not a format (which the settings then report).
pub fn requested_log_format() -> LogFormat {
    let lookup = |name: &str| std::env::var(name).ok();
    log_format(&Env(&lookup)).unwrap_or(LogFormat::Text)
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which maps a variable name to its
    /// value; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&|name| lookup(name).filter(|value| !value.trim().is_empty()));
        Ok(Self {
            redis: redis::settings(&env)?,
            password_hashing: hashing::settings(&env)?,
            static_dir: static_dir(&env)?,
            sessions: SessionSettings {
                idle: Duration::from_secs(env.parse_in(
                    "SESSION_IDLE_SECS",
                    3600,
                    1..=31_536_000,
                )?),
                max_age: Duration::from_secs(env.parse_in(
                    "SESSION_MAX_AGE_SECS",
                    86_400,
                    1..=31_536_000,
                )?),
                reauth: Duration::from_secs(env.parse_in(
                    "SESSION_REAUTH_SECS",
                    900,
                    1..=31_536_000,
                )?),
                max_per_user: env.parse_in("SESSIONS_MAX_PER_USER", 50, 1..=u32::MAX)?,
            },
            access: access::settings(&env)?,
            codes: CodeSettings {
                secret: env
                    .get("TOKEN_SECRET")
                    .map(|raw| {
                        CodeSecret::parse(raw.as_bytes()).map_err(|reason| ConfigError {
                            setting: "TOKEN_SECRET",
                            reason,
                        })
                    })
                    .transpose()?,
                ttl: Duration::from_secs(env.parse_in("CODE_TTL_SECS", 900, 1..=86_400)?),
                resend: Duration::from_secs(env.parse_in("MAIL_RESEND_SECS", 60, 1..=86_400)?),
                max_per_address: env.parse_in("MAIL_MAX_PER_ADDRESS", 20, 1..=1_000_000)?,
                max_per_day: env.parse_in("CODE_MAX_PER_DAY", 10, 1..=1_000)?,
                max_account_failures: env.parse_in("CODE_MAX_ACCOUNT_FAILURES", 20, 1..=1_000)?,
                email_changes_per_day: env.parse_in("EMAIL_CHANGES_MAX_PER_DAY", 5, 1..=1_000)?,
                require_verified_email: flag(&env, "REQUIRE_VERIFIED_EMAIL")?,
            },
            log_format: log_format(&env)?,
            mail: mail::mail(&env)?,
            login: LoginSettings {
                max_failures: env.parse_in("LOGIN_MAX_FAILURES", 5, 1..=1_000_000)?,
                max_account_failures: env.parse_in(
                    "LOGIN_MAX_ACCOUNT_FAILURES",
                    20,
                    1..=1_000_000,
                )?,
                max_address_failures: env.parse_in(
                    "LOGIN_MAX_ADDRESS_FAILURES",
                    50,
                    1..=1_000_000,
                )?,
                window: Duration::from_secs(env.parse_in(
                    "LOGIN_WINDOW_SECS",
                    900,
                    1..=31_536_000,
                )?),
            },
        })
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display,
    {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let invalid = || ConfigError {
            setting: name,
            reason: format!(
                "expected a whole number from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        };
        let value: T = raw.trim().parse().map_err(|_| invalid())?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(invalid())
        }
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`); unset is false.
fn flag(env: &Env, setting: &'static str) -> Result<bool, ConfigError> {
    match env
        .get(setting)
        .map(|value| value.trim().to_lowercase())
        .as_deref()
    {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError {
            setting,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

/// One of `choices` (named as written, case aside) for `setting`; the
/// first when it is unset.
fn choice<T: Copy>(
    env: &Env,
    setting: &'static str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(raw) = env.get(setting) else {
        return Ok(choices[0].1);
    };
    let raw = raw.trim().to_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == raw)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            ConfigError {
                setting,
                reason: format!("expected {}, got {raw:?}", names.join(" or ")),
            }
        })
}

fn log_format(env: &Env) -> Result<LogFormat, ConfigError> {
    choice(
        env,
        "LOG_FORMAT",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    )
}

fn static_dir(env: &Env) -> Result<PathBuf, ConfigError> {
    let dir = PathBuf::from(env.get("STATIC_DIR").unwrap_or_else(|| "static".into()));
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(ConfigError {
            setting: "STATIC_DIR",
            reason: format!("{} is not a directory", dir.display()),
        })
    }
}

/// The settings `pairs` make, for the tests of every section.
#[cfg(test)]
fn settings_from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let vars: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    Settings::from_lookup(|name| vars.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = settings_from(&[]).expect("defaults are valid");
        assert_eq!(settings.redis.pool_size, 15);
        assert_eq!(settings.redis.timeout, Duration::from_secs(2));
        assert_eq!(settings.redis.key_prefix, "ua:");
        assert_eq!(
            settings.redis.target.to_string(),
            "redis://127.0.0.1:6379/0"
        );
        let params = &settings.password_hashing.params;
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (19 * 1024, 2, 1)
        );
    }

    #[test]
    fn a_session_renews_at_most_every_tenth_of_its_idle_timeout_and_every_second() {
        let step = |idle: &str| {
            settings_from(&[("SESSION_IDLE_SECS", idle)])
                .expect("a valid idle timeout")
                .sessions
                .renewal_step()
        };
        assert_eq!(step("2"), Duration::from_millis(200));
        assert_eq!(step("10"), Duration::from_secs(1));
        assert_eq!(step("3600"), Duration::from_secs(1));
    }

    #[test]
    fn a_bad_number_names_its_setting() {
        let error = settings_from(&[("REDIS_POOL_SIZE", "many")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_POOL_SIZE");
        assert!(error
            .to_string()
            .starts_with("invalid setting REDIS_POOL_SIZE:"));
    }

    #[test]
    fn an_out_of_range_number_is_rejected() {
        let error = settings_from(&[("REDIS_POOL_SIZE", "0")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_POOL_SIZE");
    }

    #[test]
    fn sessions_per_user_default_to_50_and_take_any_whole_number_from_1() {
        let default = settings_from(&[]).expect("defaults are valid");
        assert_eq!(default.sessions.max_per_user, 50);
        let set = settings_from(&[("SESSIONS_MAX_PER_USER", "1")]).expect("valid");
        assert_eq!(set.sessions.max_per_user, 1);
        for bad in ["0", "-3", "many", "2.5"] {
            let error = settings_from(&[("SESSIONS_MAX_PER_USER", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} is rejected"));
            assert_eq!(error.setting, "SESSIONS_MAX_PER_USER", "{bad}");
        }
    }

    #[test]
    fn codes_default_to_15_minutes_a_minute_between_sends_and_20_requests_an_hour() {
        let codes = settings_from(&[]).expect("defaults are valid").codes;
        assert!(codes.secret.is_none());
        assert_eq!(codes.ttl, Duration::from_secs(900));
        assert_eq!(codes.resend, Duration::from_secs(60));
        assert_eq!(codes.max_per_address, 20);
        assert!(!codes.require_verified_email);
    }

    #[test]
    fn a_token_secret_under_32_bytes_is_rejected_without_being_printed() {
        let error = settings_from(&[("TOKEN_SECRET", "short-secret-value")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "TOKEN_SECRET");
        assert!(!error.to_string().contains("short-secret-value"), "{error}");
    }

    #[test]
    fn require_verified_email_takes_true_or_false() {
        let on = settings_from(&[("REQUIRE_VERIFIED_EMAIL", "true")]).expect("valid");
        assert!(on.codes.require_verified_email);
        let error = settings_from(&[("REQUIRE_VERIFIED_EMAIL", "sometimes")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REQUIRE_VERIFIED_EMAIL");
    }
}
