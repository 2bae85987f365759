//! Settings, read once at start from the environment (and `.env`).
//!
//! HTTP settings (address, port, limits, shutdown) stay with Rocket's own
//! configuration: `Rocket.toml` and `ROCKET_*` variables.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::domain::CodeSecret;

pub mod catalog;
mod mail;

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

/// Who may reach the service, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSettings {
    /// `SIGNUP`: whether anyone may sign up, or only an admin key.
    pub signup: Signup,
    /// `SIGNUP_EXISTING`: how a sign-up without an admin key answers for an
    /// email that has an account.
    pub signup_existing: SignupExisting,
    /// `TRUSTED_PROXIES`: the networks whose `X-Forwarded-For` and
    /// `X-Real-IP` headers name the client. Empty: trust no header.
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`: the origins (`https://app.example.com`)
    /// whose pages may call the API from a browser. Empty: no CORS at all.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signup {
    Open,
    /// Only an admin key may create users.
    Closed,
}

/// How long work left at shutdown may take: Rocket's shutdown grace, at
/// least a second.
pub fn shutdown_grace(rocket: &rocket::Config) -> Duration {
    Duration::from_secs(u64::from(rocket.shutdown.grace.max(1)))
}

/// How a sign-up answers for an email that has an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupExisting {
    /// `409`: plain, and it tells anyone which emails have accounts.
    Conflict,
    /// `202` for every sign-up, the same whether or not the email has an
    /// account; its owner gets a notice instead, and logins need a verified
    /// email.
    Notify,
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

#[derive(Clone)]
pub struct RedisSettings {
    /// Where and how to connect; holds passwords, so only its `Display`,
    /// which leaves them out, is ever printed.
    pub target: RedisTarget,
    pub pool_size: u32,
    /// The longest a request waits for a pooled connection or a Redis reply.
    pub timeout: Duration,
    /// Prepended to every key, so several services and tests share one Redis.
    pub key_prefix: String,
    /// About how many events the event stream keeps (XADD MAXLEN ~).
    pub events_max_len: u64,
}

/// The Redis the service writes to.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server: `REDIS_URL`, or `REDIS_ADDRESS` and `REDIS_PORT`.
    Server(ConnectionInfo),
    /// Whichever server the sentinels name as the primary of `master_name`
    /// (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`), followed through
    /// failovers.
    Sentinel {
        /// The sentinels, each with its own ACL user and password, if any.
        sentinels: Vec<ConnectionInfo>,
        master_name: String,
        /// Database, ACL user and password for the primary
        /// (`REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`).
        node: RedisConnectionInfo,
    },
}

/// Where the service connects, for log lines: addresses, database and
/// master name, never a user name or a password.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(info) => {
                let db = info.redis_settings().db();
                match info.addr() {
                    ConnectionAddr::Tcp(host, port) => {
                        write!(f, "redis://{}/{db}", HostPort(host, *port))
                    }
                    ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure,
                        ..
                    } => {
                        write!(f, "rediss://{}/{db}", HostPort(host, *port))?;
                        if *insecure {
                            f.write_str("#insecure")?;
                        }
                        Ok(())
                    }
                    ConnectionAddr::Unix(path) => {
                        write!(f, "redis+unix://{}?db={db}", path.display())
                    }
                    other => write!(f, "{other} (db {db})"),
                }
            }
            Self::Sentinel {
                sentinels,
                master_name,
                node,
            } => {
                write!(f, "master {master_name} (db {}) via sentinels ", node.db())?;
                for (index, sentinel) in sentinels.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    match sentinel.addr() {
                        ConnectionAddr::Tcp(host, port) => write!(f, "{}", HostPort(host, *port))?,
                        other => write!(f, "{other}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// `host:port`, with an IPv6 address in brackets.
struct HostPort<'a>(&'a str, u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

/// argon2id cost parameters, how many hashes may run at once, and how many
/// may wait for a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashingSettings {
    pub params: argon2::Params,
    pub max_concurrent: usize,
    /// Beyond this many waiting hashes, requests that need one answer 503.
    pub queue_limit: usize,
}

impl HashingSettings {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        max_concurrent: usize,
        queue_limit: usize,
    ) -> Result<Self, argon2::Error> {
        Ok(Self {
            params: argon2::Params::new(memory_kib, iterations, parallelism, None)?,
            max_concurrent,
            queue_limit,
        })
    }
}

/// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
const OWASP_MEMORY_KIB: u32 = 19 * 1024;
const OWASP_ITERATIONS: u32 = 2;
const OWASP_PARALLELISM: u32 = 1;

/// With the default cost and two cores (about 190 hashes/s), a full queue
/// is about 0.7 s of work: later requests are better told to retry.
const DEFAULT_HASHING_QUEUE_LIMIT: usize = 128;

fn default_hashing_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
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
            redis: RedisSettings {
                target: redis_target(&env)?,
                pool_size: env.parse_in("REDIS_POOL_SIZE", 15, 1..=1024)?,
                timeout: Duration::from_millis(env.parse_in(
                    "REDIS_TIMEOUT_MS",
                    2000,
                    1..=60_000,
                )?),
                key_prefix: key_prefix(&env)?,
                events_max_len: env.parse_in("EVENTS_MAX_LEN", 100_000, 1..=u64::MAX)?,
            },
            password_hashing: hashing(&env)?,
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
            access: access(&env)?,
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

/// The master name the sentinels use when `REDIS_SENTINEL_MASTER` is unset.
const DEFAULT_SENTINEL_MASTER: &str = "mymaster";

fn redis_target(env: &Env) -> Result<RedisTarget, ConfigError> {
    let Some(list) = env.get("REDIS_SENTINELS") else {
        if env.get("REDIS_SENTINEL_MASTER").is_some() {
            return Err(ConfigError {
                setting: "REDIS_SENTINEL_MASTER",
                reason: "is set, but REDIS_SENTINELS is not".into(),
            });
        }
        return redis_server(env).map(RedisTarget::Server);
    };
    for other in ["REDIS_URL", "REDIS_ADDRESS", "REDIS_PORT"] {
        if env.get(other).is_some() {
            return Err(ConfigError {
                setting: "REDIS_SENTINELS",
                reason: format!(
                    "cannot be combined with {other}: set REDIS_SENTINELS to follow the \
                     primary the sentinels name, or {other} for one server"
                ),
            });
        }
    }
    let sentinels = sentinel_list(&list)?;
    let master_name = env
        .get("REDIS_SENTINEL_MASTER")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|| DEFAULT_SENTINEL_MASTER.into());
    if master_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError {
            setting: "REDIS_SENTINEL_MASTER",
            reason: "must not contain whitespace or control characters".into(),
        });
    }
    Ok(RedisTarget::Sentinel {
        sentinels,
        master_name,
        node: redis_node(env)?,
    })
}

/// `REDIS_SENTINELS`: comma-separated `host:port` entries or
/// `redis://[[user]:password@]host:port` URLs. Entries are named by their
/// position in errors, never echoed: a URL may hold a password.
fn sentinel_list(list: &str) -> Result<Vec<ConnectionInfo>, ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(ConfigError {
            setting: "REDIS_SENTINELS",
            reason: "names no sentinel".into(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            sentinel_address(entry).map_err(|problem| ConfigError {
                setting: "REDIS_SENTINELS",
                reason: format!("entry {} of {}: {problem}", index + 1, entries.len()),
            })
        })
        .collect()
}

fn sentinel_address(entry: &str) -> Result<ConnectionInfo, &'static str> {
    const EXPECTED: &str = "expected host:port or redis://[[user]:password@]host:port";
    if entry.contains("://") {
        let url = redis::parse_redis_url(entry).ok_or(EXPECTED)?;
        if url.scheme() != "redis" {
            return Err("only redis:// sentinel URLs are supported (no TLS or Unix sockets)");
        }
        if url.port().is_none() {
            return Err("the sentinel URL needs a port");
        }
        if !matches!(url.path(), "" | "/") {
            return Err("a sentinel has no databases: put REDIS_DB in its own setting");
        }
        return url.into_connection_info().map_err(|_| EXPECTED);
    }
    let (host, port) = entry.rsplit_once(':').ok_or(EXPECTED)?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    if host.is_empty() || port == 0 || host.contains(['/', '@', ' ']) {
        return Err(EXPECTED);
    }
    if host.contains(':') && !entry.starts_with('[') {
        return Err("write an IPv6 address in brackets: [::1]:26379");
    }
    ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()
        .map_err(|_| EXPECTED)
}

/// Database, ACL user and password: of the one server, or of the primary
/// the sentinels name.
fn redis_node(env: &Env) -> Result<RedisConnectionInfo, ConfigError> {
    let db = env.parse_in("REDIS_DB", 0i64, 0..=i64::from(u16::MAX))?;
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(username) = env.get("REDIS_USERNAME") {
        redis = redis.set_username(username);
    }
    if let Some(password) = env.get("REDIS_PASSWORD") {
        redis = redis.set_password(password);
    }
    Ok(redis)
}

fn redis_server(env: &Env) -> Result<ConnectionInfo, ConfigError> {
    if let Some(url) = env.get("REDIS_URL") {
        return redis_url(url.trim()).map_err(|reason| ConfigError {
            setting: "REDIS_URL",
            reason,
        });
    }
    let host = env
        .get("REDIS_ADDRESS")
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = env.parse_in("REDIS_PORT", 6379u16, 1..=u16::MAX)?;
    let redis = redis_node(env)?;
    let info = ConnectionAddr::Tcp(host.trim().to_owned(), port)
        .into_connection_info()
        .map_err(|error| ConfigError {
            setting: "REDIS_ADDRESS",
            reason: error.to_string(),
        })?;
    Ok(info.set_redis_settings(redis))
}

/// The schemes `REDIS_URL` accepts.
const REDIS_URL_SCHEMES: &str = "redis://, rediss:// or redis+unix://";

/// The forms of `REDIS_URL`, for messages.
const REDIS_URL_FORMS: &str = "redis://[[user]:password@]host[:port][/db], \
    rediss://... (TLS) or redis+unix:///path/to/socket[?db=N]";

/// `REDIS_URL`, checked before the redis crate reads it: its own errors do
/// not say which part is wrong. Messages show the URL only with its
/// password masked.
fn redis_url(url: &str) -> Result<ConnectionInfo, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        let shown = masked(url);
        return Err(format!(
            "must start with {REDIS_URL_SCHEMES} (got {shown}); did you mean redis://{shown}?"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    let suggested = match scheme.as_str() {
        "redis" | "rediss" | "redis+unix" => None,
        "https" | "tls" | "ssl" | "valkeys" => Some("rediss"),
        "unix" | "valkey+unix" | "file" => Some("redis+unix"),
        _ => Some("redis"),
    };
    if let Some(suggested) = suggested {
        return Err(format!(
            "must start with {REDIS_URL_SCHEMES} (got {}); did you mean {suggested}://{}?",
            masked(url),
            masked(rest)
        ));
    }
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Err(format!(
            "is not a valid URL; expected {REDIS_URL_FORMS} \
             (with / # ? @ in a password percent-encoded)"
        ));
    };
    if scheme == "redis+unix" {
        if let Some((_, db)) = parsed.query_pairs().find(|(name, _)| name == "db") {
            if db.parse::<u16>().is_err() {
                return Err(format!(
                    "the database (the db= parameter) must be a whole number from 0 to \
                     65535, as in redis+unix:///run/redis.sock?db=0 (got db={})",
                    masked(&db)
                ));
            }
        }
    } else {
        let db = parsed.path().trim_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!(
                "the database (the part after host:port) must be a whole number from 0 \
                 to 65535, as in redis://127.0.0.1:6379/0 (got {})",
                masked(parsed.path())
            ));
        }
    }
    parsed.into_connection_info().map_err(|error| {
        // The redis crate's messages name the problem, never the value:
        // "<problem> - <kind>[: detail]".
        let error = error.to_string();
        let problem = error.split(" - ").next().unwrap_or("not a URL");
        format!("is not usable ({problem}); expected {REDIS_URL_FORMS}")
    })
}

/// `value` with the password of a URL (or URL-like text) replaced by `***`:
/// the part of the user info after its first `:`, or all of it when it has
/// none (a password written where the user name goes), and the `pass=` of a
/// Unix socket URL. Control characters are escaped, so a message stays on
/// one line.
pub fn masked(value: &str) -> String {
    let (scheme, rest) = match value.find("://") {
        Some(index) => value.split_at(index + 3),
        None => ("", value),
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{user}{}", &rest[at..])
        }
        None => rest.to_owned(),
    };
    let masked = match rest.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("pass") => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}{masked}")
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn key_prefix(env: &Env) -> Result<String, ConfigError> {
    let prefix = env.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "ua:".into());
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError {
            setting: "REDIS_KEY_PREFIX",
            reason: "must not contain whitespace or control characters".into(),
        });
    }
    Ok(prefix)
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

fn access(env: &Env) -> Result<AccessSettings, ConfigError> {
    let signup = choice(
        env,
        "SIGNUP",
        &[("open", Signup::Open), ("closed", Signup::Closed)],
    )?;
    let signup_existing = choice(
        env,
        "SIGNUP_EXISTING",
        &[
            ("conflict", SignupExisting::Conflict),
            ("notify", SignupExisting::Notify),
        ],
    )?;
    let trusted_proxies = env
        .get("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError {
                    setting: "TRUSTED_PROXIES",
                    reason: format!(
                        "expected a comma-separated list of addresses or CIDR networks \
                         (10.0.0.0/8, ::1), got {entry:?}"
                    ),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(AccessSettings {
        signup,
        signup_existing,
        trusted_proxies,
        cors_allowed_origins: cors_allowed_origins(env)?,
    })
}

/// Each listed origin, as browsers send it in `Origin`: scheme, host and
/// port (unless it is the scheme's own), nothing else.
fn cors_allowed_origins(env: &Env) -> Result<Vec<String>, ConfigError> {
    env.get("CORS_ALLOWED_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let invalid = |why: &str| ConfigError {
                setting: "CORS_ALLOWED_ORIGINS",
                reason: format!(
                    "expected a comma-separated list of origins such as \
                     https://app.example.com or http://localhost:5173; {entry:?} {why}"
                ),
            };
            let url = url::Url::parse(entry).map_err(|_| invalid("is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid("is not an http or https origin"));
            }
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !bare || !url.username().is_empty() || url.password().is_some() {
                return Err(invalid("has more than a scheme, a host and a port"));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
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

fn hashing(env: &Env) -> Result<HashingSettings, ConfigError> {
    let memory_kib = env.parse_in("ARGON2_MEMORY_KIB", OWASP_MEMORY_KIB, 8..=4 * 1024 * 1024)?;
    let iterations = env.parse_in("ARGON2_ITERATIONS", OWASP_ITERATIONS, 1..=64)?;
    let parallelism = env.parse_in("ARGON2_PARALLELISM", OWASP_PARALLELISM, 1..=64)?;
    let max_concurrent = env.parse_in(
        "HASHING_CONCURRENCY",
        default_hashing_concurrency(),
        1..=1024,
    )?;
    let queue_limit = env.parse_in(
        "HASHING_QUEUE_LIMIT",
        DEFAULT_HASHING_QUEUE_LIMIT,
        1..=1_000_000,
    )?;
    HashingSettings::new(
        memory_kib,
        iterations,
        parallelism,
        max_concurrent,
        queue_limit,
    )
    .map_err(|error| ConfigError {
        setting: "ARGON2_MEMORY_KIB",
        reason: format!("argon2 rejects these parameters: {error} (it needs 8 KiB per lane)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings_from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    fn server(settings: &Settings) -> &ConnectionInfo {
        match &settings.redis.target {
            RedisTarget::Server(info) => info,
            RedisTarget::Sentinel { .. } => panic!("expected one server, got sentinels"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = settings_from(&[]).expect("defaults are valid");
        assert_eq!(settings.redis.pool_size, 15);
        assert_eq!(settings.redis.timeout, Duration::from_secs(2));
        assert_eq!(settings.redis.key_prefix, "ua:");
        assert_eq!(server(&settings).addr().to_string(), "127.0.0.1:6379");
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
    fn redis_url_carries_acl_user_password_and_database() {
        let settings = settings_from(&[("REDIS_URL", "redis://app:s3cret@10.0.0.5:6390/3")])
            .expect("a valid URL");
        let info = server(&settings);
        assert_eq!(info.addr().to_string(), "10.0.0.5:6390");
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 3);
    }

    #[test]
    fn rediss_url_selects_tls() {
        let settings =
            settings_from(&[("REDIS_URL", "rediss://cache.example:6380")]).expect("valid");
        assert!(matches!(
            server(&settings).addr(),
            ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn unix_socket_url_is_accepted() {
        let settings =
            settings_from(&[("REDIS_URL", "redis+unix:///run/redis.sock")]).expect("valid");
        assert!(matches!(server(&settings).addr(), ConnectionAddr::Unix(_)));
    }

    #[test]
    fn separate_address_settings_build_the_connection() {
        let settings = settings_from(&[
            ("REDIS_ADDRESS", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_USERNAME", "svc"),
            ("REDIS_PASSWORD", "pw"),
        ])
        .expect("valid");
        let info = server(&settings);
        assert_eq!(info.addr().to_string(), "redis.internal:6380");
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().username(), Some("svc"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
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
    fn the_hashing_queue_limit_defaults_to_128_and_can_be_set() {
        let default = settings_from(&[]).expect("defaults are valid");
        assert_eq!(default.password_hashing.queue_limit, 128);
        let set = settings_from(&[("HASHING_QUEUE_LIMIT", "16")]).expect("valid");
        assert_eq!(set.password_hashing.queue_limit, 16);
        let error = settings_from(&[("HASHING_QUEUE_LIMIT", "0")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "HASHING_QUEUE_LIMIT");
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
    fn a_bad_url_is_rejected_without_echoing_it() {
        let error = settings_from(&[("REDIS_URL", "http://user:hunter2@host")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_URL");
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn argon2_memory_must_cover_its_lanes() {
        let error = settings_from(&[("ARGON2_MEMORY_KIB", "8"), ("ARGON2_PARALLELISM", "4")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "ARGON2_MEMORY_KIB");
    }

    fn sentinel_target(settings: &Settings) -> (&[ConnectionInfo], &str, &RedisConnectionInfo) {
        match &settings.redis.target {
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                node,
            } => (sentinels, master_name, node),
            RedisTarget::Server(_) => panic!("expected sentinels, got one server"),
        }
    }

    #[test]
    fn a_sentinel_list_names_the_primary_through_them() {
        let settings = settings_from(&[
            (
                "REDIS_SENTINELS",
                " 10.0.0.1:26379, sentinel-b.internal:26380 ,redis://:s3ntinel@10.0.0.3:26381,[::1]:26382,",
            ),
            ("REDIS_DB", "2"),
            ("REDIS_USERNAME", "svc"),
            ("REDIS_PASSWORD", "pw"),
        ])
        .expect("a valid sentinel list");
        let (sentinels, master_name, node) = sentinel_target(&settings);
        let addresses: Vec<String> = sentinels.iter().map(|s| s.addr().to_string()).collect();
        assert_eq!(
            addresses,
            [
                "10.0.0.1:26379",
                "sentinel-b.internal:26380",
                "10.0.0.3:26381",
                "::1:26382"
            ]
        );
        assert_eq!(sentinels[0].redis_settings().password(), None);
        assert_eq!(sentinels[2].redis_settings().password(), Some("s3ntinel"));
        assert_eq!(sentinels[2].redis_settings().db(), 0);
        assert_eq!(master_name, "mymaster");
        assert_eq!(node.db(), 2);
        assert_eq!(node.username(), Some("svc"));
        assert_eq!(node.password(), Some("pw"));
    }

    #[test]
    fn the_sentinel_master_name_can_be_set() {
        let settings = settings_from(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379"),
            ("REDIS_SENTINEL_MASTER", "accounts"),
        ])
        .expect("valid");
        assert_eq!(sentinel_target(&settings).1, "accounts");
    }

    #[test]
    fn a_bad_sentinel_entry_is_named_by_position_without_echoing_it() {
        for bad in [
            "10.0.0.1:26379,10.0.0.2",
            "10.0.0.1:26379,10.0.0.2:port",
            "10.0.0.1:26379,10.0.0.2:0",
            "10.0.0.1:26379,:26379",
            "10.0.0.1:26379,redis://:hunter2@10.0.0.2",
            "10.0.0.1:26379,rediss://:hunter2@10.0.0.2:26379",
            "10.0.0.1:26379,redis://:hunter2@10.0.0.2:26379/1",
            "10.0.0.1:26379,http://:hunter2@10.0.0.2:26379",
            "10.0.0.1:26379,::1:26379",
        ] {
            let error = settings_from(&[("REDIS_SENTINELS", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} is rejected"));
            assert_eq!(error.setting, "REDIS_SENTINELS", "{bad}");
            let message = error.to_string();
            assert!(message.contains("entry 2 of 2"), "{bad}: {message}");
            assert!(!message.contains("hunter2"), "{bad}: {message}");
            assert!(!message.contains("10.0.0.2"), "{bad}: {message}");
        }
    }

    #[test]
    fn an_empty_sentinel_list_is_rejected() {
        let error = settings_from(&[("REDIS_SENTINELS", " , ,")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINELS");
    }

    #[test]
    fn sentinels_conflict_with_a_redis_url_or_address() {
        for (other, value) in [
            ("REDIS_URL", "redis://:hunter2@10.0.0.5:6379/0"),
            ("REDIS_ADDRESS", "10.0.0.5"),
            ("REDIS_PORT", "6380"),
        ] {
            let error = settings_from(&[("REDIS_SENTINELS", "10.0.0.1:26379"), (other, value)])
                .err()
                .unwrap_or_else(|| panic!("{other} with REDIS_SENTINELS is rejected"));
            assert_eq!(error.setting, "REDIS_SENTINELS");
            let message = error.to_string();
            assert!(message.contains(other), "{message}");
            assert!(!message.contains("hunter2") && !message.contains("10.0.0.5"));
        }
    }

    #[test]
    fn a_master_name_without_sentinels_is_rejected() {
        let error = settings_from(&[("REDIS_SENTINEL_MASTER", "accounts")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINEL_MASTER");
    }

    #[test]
    fn a_master_name_with_spaces_is_rejected() {
        let error = settings_from(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379"),
            ("REDIS_SENTINEL_MASTER", "my master"),
        ])
        .err()
        .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINEL_MASTER");
    }

    #[test]
    fn the_trust_model_defaults_are_open_signup_no_trusted_proxy_and_three_limits() {
        let settings = settings_from(&[]).expect("defaults are valid");
        assert_eq!(settings.access.signup, Signup::Open);
        assert!(settings.access.trusted_proxies.is_empty());
        let login = settings.login;
        assert_eq!(
            (
                login.max_failures,
                login.max_account_failures,
                login.max_address_failures
            ),
            (5, 20, 50)
        );
        assert_eq!(settings.sessions.reauth, Duration::from_secs(900));
    }

    #[test]
    fn trusted_proxies_take_networks_and_single_addresses() {
        let settings = settings_from(&[("TRUSTED_PROXIES", "10.0.0.0/8, ::1")]).expect("valid");
        let proxies: Vec<String> = settings
            .access
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
    }

    #[test]
    fn a_trusted_proxy_that_is_no_network_is_rejected() {
        let error = settings_from(&[("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "TRUSTED_PROXIES");
        assert!(error.reason.contains("proxy.local"), "{}", error.reason);
    }

    #[test]
    fn cors_origins_are_kept_as_browsers_send_them() {
        let settings = settings_from(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://App.Example.com/, http://127.0.0.2:5173, https://example.org:443",
        )])
        .expect("valid");
        assert_eq!(
            settings.access.cors_allowed_origins,
            [
                "https://app.example.com",
                "http://127.0.0.2:5173",
                "https://example.org"
            ]
        );
    }

    #[test]
    fn a_cors_origin_with_more_than_an_origin_is_rejected_naming_it() {
        for entry in [
            "*",
            "app.example.com",
            "ftp://files.example.com",
            "https://app.example.com/login",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
        ] {
            let error = settings_from(&[("CORS_ALLOWED_ORIGINS", entry)])
                .err()
                .unwrap_or_else(|| panic!("{entry} accepted"));
            assert_eq!(error.setting, "CORS_ALLOWED_ORIGINS");
            assert!(error.reason.contains(entry), "{}", error.reason);
        }
    }

    #[test]
    fn signup_is_open_or_closed() {
        let closed = settings_from(&[("SIGNUP", "Closed")]).expect("valid");
        assert_eq!(closed.access.signup, Signup::Closed);
        let error = settings_from(&[("SIGNUP", "invite")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "SIGNUP");
    }

    #[test]
    fn signup_existing_is_conflict_unless_set_to_notify() {
        let default = settings_from(&[]).expect("valid");
        assert_eq!(default.access.signup_existing, SignupExisting::Conflict);
        let notify = settings_from(&[("SIGNUP_EXISTING", "notify")]).expect("valid");
        assert_eq!(notify.access.signup_existing, SignupExisting::Notify);
        let error = settings_from(&[("SIGNUP_EXISTING", "silent")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "SIGNUP_EXISTING");
        assert_eq!(error.reason, r#"expected conflict or notify, got "silent""#);
    }

    fn redis_url_error(url: &str) -> ConfigError {
        settings_from(&[("REDIS_URL", url)])
            .err()
            .unwrap_or_else(|| panic!("{url} is rejected"))
    }

    #[test]
    fn a_redis_url_without_a_scheme_is_rejected_with_the_url_it_probably_meant() {
        let error = redis_url_error("127.0.0.1:6379");
        assert_eq!(error.setting, "REDIS_URL");
        assert_eq!(
            error.reason,
            "must start with redis://, rediss:// or redis+unix:// (got 127.0.0.1:6379); \
             did you mean redis://127.0.0.1:6379?"
        );
    }

    #[test]
    fn a_redis_url_with_an_http_scheme_is_rejected_with_the_url_it_probably_meant() {
        let error = redis_url_error("http://127.0.0.1:6379/0");
        assert_eq!(error.setting, "REDIS_URL");
        assert_eq!(
            error.reason,
            "must start with redis://, rediss:// or redis+unix:// (got http://127.0.0.1:6379/0); \
             did you mean redis://127.0.0.1:6379/0?"
        );
    }

    #[test]
    fn a_redis_url_with_an_https_scheme_is_pointed_at_rediss() {
        let error = redis_url_error("https://cache.example:6380");
        assert!(
            error
                .reason
                .ends_with("did you mean rediss://cache.example:6380?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_with_a_unix_scheme_is_pointed_at_redis_unix() {
        let error = redis_url_error("unix:///run/redis.sock");
        assert!(
            error
                .reason
                .ends_with("did you mean redis+unix:///run/redis.sock?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_whose_database_is_not_a_whole_number_says_what_it_must_be() {
        for (url, got) in [
            ("redis://127.0.0.1:6379/abc", "/abc"),
            ("redis://127.0.0.1:6379/-1", "/-1"),
            ("redis://127.0.0.1:6379/1.5", "/1.5"),
            ("rediss://127.0.0.1:6379/0/1", "/0/1"),
            ("redis://127.0.0.1:6379/65536", "/65536"),
        ] {
            let error = redis_url_error(url);
            assert_eq!(error.setting, "REDIS_URL", "{url}");
            let message = error.to_string();
            assert!(
                message.contains("the database (the part after host:port) must be a whole number"),
                "{url}: {message}"
            );
            assert!(
                message.contains("redis://127.0.0.1:6379/0"),
                "{url}: {message}"
            );
            assert!(
                message.ends_with(&format!("(got {got})")),
                "{url}: {message}"
            );
        }
    }

    #[test]
    fn a_unix_socket_url_whose_db_is_not_a_whole_number_says_what_it_must_be() {
        let error = redis_url_error("redis+unix:///run/redis.sock?db=first");
        assert_eq!(error.setting, "REDIS_URL");
        assert!(
            error.reason.contains("must be a whole number")
                && error.reason.ends_with("(got db=first)"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_without_a_scheme_is_shown_with_its_password_masked() {
        let error = redis_url_error(":hunter2@10.0.0.5:6379");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .reason
                .contains("did you mean redis://:***@10.0.0.5:6379?"),
            "{error}"
        );
    }

    #[test]
    fn a_password_in_the_user_name_place_is_masked_too() {
        let error = redis_url_error("http://hunter2@10.0.0.5:6379");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.reason.contains("(got http://***@10.0.0.5:6379)"),
            "{error}"
        );
    }

    #[test]
    fn a_unix_socket_password_is_masked() {
        let error = redis_url_error("unix:///run/redis.sock?db=1&pass=hunter2");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .reason
                .contains("did you mean redis+unix:///run/redis.sock?db=1&pass=***?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_that_does_not_parse_names_the_expected_form_without_echoing_it() {
        let error = redis_url_error("redis://:hunter2@10.0.0.5:port/0");
        assert_eq!(error.setting, "REDIS_URL");
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("expected redis://[[user]:password@]host[:port][/db]"),
            "{message}"
        );
    }

    #[test]
    fn a_rejected_redis_url_stays_on_one_line() {
        let error = redis_url_error("127.0.0.1:6379\nX-Injected: 1");
        assert_eq!(error.to_string().lines().count(), 1, "{error}");
    }

    #[test]
    fn a_redis_url_scheme_in_capitals_is_accepted() {
        let settings = settings_from(&[("REDIS_URL", "REDIS://10.0.0.5:6390/3")]).expect("valid");
        assert_eq!(server(&settings).addr().to_string(), "10.0.0.5:6390");
    }

    fn target_shown(pairs: &[(&str, &str)]) -> String {
        settings_from(pairs)
            .expect("valid")
            .redis
            .target
            .to_string()
    }

    #[test]
    fn a_redis_server_is_shown_with_address_and_database_but_no_credentials() {
        let shown = target_shown(&[("REDIS_URL", "redis://app:s3cret@10.0.0.5:6390/3")]);
        assert_eq!(shown, "redis://10.0.0.5:6390/3");
    }

    #[test]
    fn a_redis_server_over_tls_is_shown_as_rediss() {
        let shown = target_shown(&[("REDIS_URL", "rediss://:s3cret@cache.example:6380")]);
        assert_eq!(shown, "rediss://cache.example:6380/0");
    }

    #[test]
    fn a_redis_server_on_ipv6_is_shown_in_brackets() {
        let shown = target_shown(&[("REDIS_URL", "redis://[::1]:6379/2")]);
        assert_eq!(shown, "redis://[::1]:6379/2");
    }

    #[test]
    fn a_redis_unix_socket_is_shown_with_its_database_but_no_password() {
        let shown = target_shown(&[("REDIS_URL", "redis+unix:///run/redis.sock?db=4&pass=s3cret")]);
        assert_eq!(shown, "redis+unix:///run/redis.sock?db=4");
    }

    #[test]
    fn a_redis_server_from_separate_settings_is_shown_without_its_password() {
        let shown = target_shown(&[
            ("REDIS_ADDRESS", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "s3cret"),
        ]);
        assert_eq!(shown, "redis://redis.internal:6380/2");
    }

    #[test]
    fn sentinels_are_shown_with_master_and_database_but_no_passwords() {
        let shown = target_shown(&[
            (
                "REDIS_SENTINELS",
                "10.0.0.1:26379,redis://:s3ntinel@10.0.0.3:26381,[::1]:26382",
            ),
            ("REDIS_SENTINEL_MASTER", "accounts"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "s3cret"),
        ]);
        assert_eq!(
            shown,
            "master accounts (db 2) via sentinels 10.0.0.1:26379, 10.0.0.3:26381, [::1]:26382"
        );
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
