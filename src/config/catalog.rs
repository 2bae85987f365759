//! Every setting the service reads, in one table: its name, its default, what
//! it means. The table makes the README's settings table and `.env.example`
//! (tests keep them equal), names the settings `user-accounts config`
//! prints, and tells a misspelt variable from one that belongs to someone
//! else: a variable that looks like a setting but is none stops the start.

use std::fmt::Write;

/// A setting's default, as the documents show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// This value, written out in `.env.example`.
    Value(&'static str),
    /// Unset unless given; `.env.example` shows it commented out, with an
    /// example when there is one.
    Unset,
    /// Worked out at start (the README says how); commented out in
    /// `.env.example`.
    Computed(&'static str),
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub default: Fallback,
    /// The README's "Meaning" column, and the comment above it in
    /// `.env.example`.
    pub about: &'static str,
    /// A value `.env.example` shows, commented out, for a setting unset by
    /// default.
    pub example: Option<&'static str>,
    /// How `user-accounts config` shows its value.
    pub masking: Masking,
    /// Whether `.env.example` shows its default commented out: set, it
    /// would clash with settings a reader may set instead (the Redis
    /// address settings against `REDIS_URL` and the Sentinels).
    pub commented: bool,
}

/// How much of a value `user-accounts config` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masking {
    Clear,
    /// A key or a password: none of it.
    Whole,
    /// URLs (comma-separated) that may carry passwords: all but those.
    Passwords,
}

/// The settings under one heading of `.env.example`.
pub struct Group {
    pub title: &'static str,
    pub settings: &'static [Setting],
}

const fn setting(name: &'static str, default: Fallback, about: &'static str) -> Setting {
    Setting {
        name,
        default,
        about,
        example: None,
        masking: Masking::Clear,
        commented: false,
    }
}

const fn example(name: &'static str, example: &'static str, about: &'static str) -> Setting {
    Setting {
        name,
        default: Fallback::Unset,
        about,
        example: Some(example),
        masking: Masking::Clear,
        commented: false,
    }
}

const fn secret(
    name: &'static str,
    masking: Masking,
    example: Option<&'static str>,
    about: &'static str,
) -> Setting {
    Setting {
        name,
        default: Fallback::Unset,
        about,
        example,
        masking,
        commented: false,
    }
}

use Fallback::{Computed, Unset, Value};

pub const GROUPS: &[Group] = &[
    Group {
        title: "Redis: one server (REDIS_URL, or the address settings), or the primary Redis Sentinel names",
        settings: &[
            secret("REDIS_URL", Masking::Passwords, Some("redis://127.0.0.1:6379/0"), "`redis://`, `rediss://` (TLS) or `redis+unix://` URL, with optional ACL user, password and database"),
            Setting { commented: true, ..setting("REDIS_ADDRESS", Value("127.0.0.1"), "host, when `REDIS_URL` and `REDIS_SENTINELS` are unset") },
            Setting { commented: true, ..setting("REDIS_PORT", Value("6379"), "port, when `REDIS_URL` and `REDIS_SENTINELS` are unset") },
            secret("REDIS_SENTINELS", Masking::Passwords, Some("sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"), "comma-separated Sentinel addresses, each `host:port` or `redis://[[user]:password@]host:port` (the Sentinel's own ACL user and password); the service then writes to the primary they name (see Running with Redis Sentinel); not with `REDIS_URL`, `REDIS_ADDRESS` or `REDIS_PORT`"),
            secret("REDIS_CLUSTER_NODES", Masking::Passwords, Some("redis://10.0.0.1:7000,redis://10.0.0.2:7000,redis://10.0.0.3:7000"), "comma-separated seed nodes of a Redis Cluster, each `redis://[[user]:password@]host:port` or `rediss://…`; the service then runs on that cluster (see Running on Redis Cluster); not with `REDIS_URL`, `REDIS_SENTINELS`, `REDIS_ADDRESS`, `REDIS_PORT`, `REDIS_DB`, `REDIS_USERNAME` or `REDIS_PASSWORD`"),
            Setting { commented: true, ..setting("REDIS_SENTINEL_MASTER", Value("mymaster"), "the master name the Sentinels monitor, with `REDIS_SENTINELS`") },
            Setting { commented: true, ..setting("REDIS_DB", Value("0"), "database number, when `REDIS_URL` is unset (with `REDIS_SENTINELS`: on the primary)") },
            setting("REDIS_USERNAME", Unset, "ACL user, when `REDIS_URL` is unset (with `REDIS_SENTINELS`: on the primary)"),
            secret("REDIS_PASSWORD", Masking::Whole, None, "password, when `REDIS_URL` is unset (with `REDIS_SENTINELS`: on the primary)"),
            setting("REDIS_POOL_SIZE", Value("15"), "pooled connections, for writes; reads share one more connection"),
            setting("REDIS_TIMEOUT_MS", Value("2000"), "longest wait for a connection or a reply before `503`"),
            setting("REDIS_WAIT_REPLICAS", Value("0"), "replicas that must confirm each write (`WAIT`) before the service acknowledges it; `503` when fewer do in time (see Running with Redis Sentinel)"),
            setting("REDIS_WAIT_TIMEOUT_MS", Value("1000"), "longest wait for those replicas; below `REDIS_TIMEOUT_MS`"),
            setting(
                "REDIS_KEY_PREFIX",
                Value("ua:"),
                "prefix of every key: no whitespace, { or }",
            ),
            setting("EVENTS_MAX_LEN", Value("100000"), "about how many events the streams keep in all"),
        ],
    },
    Group {
        title: "Password hashing (argon2id; OWASP's recommendation: 19 MiB, 2 iterations, 1 lane)",
        settings: &[
            setting("ARGON2_MEMORY_KIB", Value("19456"), "argon2id memory cost"),
            setting("ARGON2_ITERATIONS", Value("2"), "argon2id time cost"),
            setting("ARGON2_PARALLELISM", Value("1"), "argon2id lanes"),
            setting("HASHING_CONCURRENCY", Computed("number of cores"), "argon2 threads, so hashes running at once; more wait"),
            setting("HASHING_QUEUE_LIMIT", Value("128"), "hashes that may wait for a thread; past that, requests that need one answer `503` with `Retry-After` at once"),
        ],
    },
    Group {
        title: "The service (HTTP settings are Rocket's: Rocket.toml, or ROCKET_ADDRESS, ROCKET_PORT, ROCKET_LOG_LEVEL, ...)",
        settings: &[
            setting("STATIC_DIR", Value("static"), "directory served under `/files`"),
            setting("LOG_FORMAT", Value("text"), "`text` or `json` request log lines"),
            setting("ALLOW_UNKNOWN_SETTINGS", Value("false"), "`true`: start even when a variable looks like a setting (`REDIS_…`, `MAIL_…`, a lower-case spelling, …) but is none"),
        ],
    },
    Group {
        title: "Sessions and the login protection",
        settings: &[
            setting("SESSION_IDLE_SECS", Value("3600"), "a session ends after this long without use"),
            setting("SESSION_MAX_AGE_SECS", Value("86400"), "and at the latest this long after the login"),
            setting("SESSIONS_MAX_PER_USER", Value("50"), "live sessions per user (any whole number from 1); a login past it ends the one with the oldest login"),
            setting("SESSION_REAUTH_SECS", Value("900"), "a session may change the email or password, or delete the account, this long after its login"),
            setting("LOGIN_MAX_FAILURES", Value("5"), "password attempts per account from one client address before `429`"),
            setting("LOGIN_MAX_ACCOUNT_FAILURES", Value("20"), "per account from all addresses"),
            setting("LOGIN_MAX_ADDRESS_FAILURES", Value("50"), "per client address across accounts"),
            setting("LOGIN_WINDOW_SECS", Value("900"), "the window those attempts are counted in"),
        ],
    },
    Group {
        title: "Who may sign up, and whom the service trusts",
        settings: &[
            setting("SIGNUP", Value("open"), "`open`, or `closed`: only an admin key creates users"),
            setting("SIGNUP_EXISTING", Value("conflict"), "a sign-up for an email with an account: `conflict` (`409`, which tells who has an account), or `notify` (`202` for every email, a notice to the owner, logins need a verified email)"),
            example("TRUSTED_PROXIES", "10.0.0.0/8", "addresses or CIDR networks whose `X-Forwarded-For` / `X-Real-IP` name the client"),
            example("CORS_ALLOWED_ORIGINS", "https://app.example.com", "comma-separated origins whose pages may call the API from a browser: their preflights answer `204`, and answers to them name them (never `*`, never with credentials); a preflight from another origin gets `403`. Unset: no CORS headers"),
        ],
    },
    Group {
        title: "One-time codes for email verification and password reset",
        settings: &[
            Setting { default: Computed("made at start"), ..secret("TOKEN_SECRET", Masking::Whole, None, "the key codes are hashed under, at least 32 bytes; set it, or codes survive no restart") },
            setting("CODE_TTL_SECS", Value("900"), "how long a code works"),
            setting("MAIL_RESEND_SECS", Value("60"), "no second code of one purpose for one account within this time"),
            setting("MAIL_MAX_PER_ADDRESS", Value("20"), "requests for codes per client address per hour"),
            setting("REQUIRE_VERIFIED_EMAIL", Value("false"), "refuse logins of users whose email is not verified"),
            setting("CODE_MAX_PER_DAY", Value("10"), "codes of one purpose issued to one account in 24 hours"),
            setting("CODE_MAX_ACCOUNT_FAILURES", Value("20"), "wrong confirmations of one purpose for one email in 24 hours, every address together; then `429`"),
            setting("EMAIL_CHANGES_MAX_PER_DAY", Value("5"), "email changes of one account in 24 hours; then `429`"),
        ],
    },
    Group {
        title: "Outgoing mail (codes, links and notices)",
        settings: &[
            Setting { example: Some("smtp://127.0.0.1:1025?tls=off"), ..secret("MAIL_URL", Masking::Passwords, None, "where mail goes: `smtp://[user:password@]host[:port]` (STARTTLS when offered; `?tls=off` never, `?tls=required` always; port 587), `smtps://…` (TLS from the start; port 465) or `file:///dir` (one `.eml` file per message). Unset: mail is off") },
            setting("MAIL_FROM", Value("user-accounts <no-reply@localhost>"), "the sender of every message; its domain ends every `Message-ID`"),
            setting("PUBLIC_URL", Value("http://127.0.0.1:8000"), "the base of the links in messages"),
            setting("MAIL_MAX_PER_RECIPIENT", Value("10"), "messages queued to one address in any hour, of every kind together"),
            setting("MAIL_MAX_ATTEMPTS", Value("8"), "attempts before a message moves to the dead letters"),
            setting("MAIL_RETRY_BASE_MS", Value("30000"), "the wait after the first failed attempt, doubled after each further one, up to an hour"),
            setting("MAIL_TIMEOUT_MS", Value("10000"), "the longest the hand-over of one message to SMTP may take"),
            setting("MAIL_CLAIM_AFTER_MS", Value("30000"), "a message an instance took and has not finished after this long is taken over by another; keep it well above `MAIL_TIMEOUT_MS`"),
            setting("MAIL_TEMPLATES_DIR", Unset, "a directory whose files replace the built-in templates of the same name"),
            setting("MAIL_TLS_CA_FILE", Unset, "PEM certificates to trust for the SMTP server, besides the system's"),
        ],
    },
];

/// Every setting, in the order of the documents.
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    GROUPS.iter().flat_map(|group| group.settings)
}

/// The setting named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Setting> {
    settings().find(|setting| setting.name == name)
}

/// The settings whose being set leaves `name` unread: the address settings
/// give way to a URL.
pub fn unused_beside(name: &str) -> &'static [&'static str] {
    match name {
        "REDIS_ADDRESS" | "REDIS_PORT" | "REDIS_DB" | "REDIS_USERNAME" | "REDIS_PASSWORD" => {
            &["REDIS_URL"]
        }
        _ => &[],
    }
}

/// The beginnings of the names that are this service's, now or in a later
/// version: a variable that starts so but is no setting is a mistake.
const PREFIXES: &[&str] = &[
    "ARGON2_",
    "CODE_",
    "CORS_",
    "EMAIL_",
    "HASHING_",
    "LOGIN_",
    "MAIL_",
    "REDIS_",
    "SESSION_",
    "SESSIONS_",
    "SIGNUP",
    "TOKEN_",
    "TOTP_",
    "WEBAUTHN_",
    "WEBHOOK_",
];

/// Rocket's own settings (`Rocket.toml`'s keys, in upper case) and the two
/// that choose its file and profile: Rocket reads every `ROCKET_*`
/// variable, in any case, and ignores the ones it does not know.
const ROCKET_SETTINGS: &[&str] = &[
    "ROCKET_ADDRESS",
    "ROCKET_CLI_COLORS",
    "ROCKET_CONFIG",
    "ROCKET_IDENT",
    "ROCKET_IP_HEADER",
    "ROCKET_KEEP_ALIVE",
    "ROCKET_LIMITS",
    "ROCKET_LOG_LEVEL",
    "ROCKET_MAX_BLOCKING",
    "ROCKET_PORT",
    "ROCKET_PROFILE",
    "ROCKET_SECRET_KEY",
    "ROCKET_SHUTDOWN",
    "ROCKET_TEMP_DIR",
    "ROCKET_TLS",
    "ROCKET_WORKERS",
];

/// What is wrong with `name`, a `ROCKET_*` variable in some case: not upper
/// case, or none of Rocket's settings.
fn rocket_mistake(name: &str, upper: &str) -> Option<String> {
    if ROCKET_SETTINGS.contains(&upper) {
        return (upper != name)
            .then(|| format!("{name}: settings are upper case; did you mean {upper}?"));
    }
    let nearest = ROCKET_SETTINGS
        .iter()
        .min_by_key(|setting| strsim::levenshtein(upper, setting))?;
    Some(format!(
        "{name}: not one of Rocket's settings; did you mean {nearest}?"
    ))
}

/// Variables other programs set that start like the service's settings:
/// a desktop session's, the official Redis image's, and the ones Kubernetes
/// sets for a service (named `redis`, say: `REDIS_SERVICE_HOST`,
/// `REDIS_PORT_6379_TCP_ADDR`, …).
fn foreign(name: &str) -> bool {
    let kubernetes_port = name.split_once("_PORT_").is_some_and(|(_, rest)| {
        rest.split('_')
            .next()
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()))
    });
    [
        "SESSION_MANAGER",
        "REDIS_VERSION",
        "REDIS_DOWNLOAD_URL",
        "REDIS_DOWNLOAD_SHA",
    ]
    .contains(&name)
        || name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || kubernetes_port
}

/// For each of `names` (the variables of the environment, `.env`
/// included) that looks like a setting but is none, a line that says so and
/// names the nearest setting.
pub fn unknown<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = names
        .into_iter()
        .filter(|name| !foreign(name))
        .filter_map(|name| {
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("ROCKET_") {
                return rocket_mistake(name, &upper);
            }
            let nearest = nearest(&upper);
            let ours = find(&upper).is_some()
                || PREFIXES.iter().any(|prefix| upper.starts_with(prefix))
                || strsim::levenshtein(&upper, nearest) <= 2;
            if !ours || (upper == name && find(name).is_some()) {
                return None;
            }
            Some(if upper != name && find(&upper).is_some() {
                format!("{name}: settings are upper case; did you mean {upper}?")
            } else {
                format!("{name}: not a setting; did you mean {nearest}?")
            })
        })
        .collect();
    found.sort();
    found
}

/// The setting whose name is the fewest edits away from `name`, among
/// those that start with the same word when there are any.
fn nearest(name: &str) -> &'static str {
    let word = |name: &str| name.split('_').next().unwrap_or_default().to_owned();
    let same_word: Vec<&Setting> = settings()
        .filter(|setting| word(setting.name) == word(name))
        .collect();
    let candidates: Vec<&Setting> = if same_word.is_empty() {
        settings().collect()
    } else {
        same_word
    };
    candidates
        .into_iter()
        .min_by_key(|setting| strsim::levenshtein(name, setting.name))
        .map_or("", |setting| setting.name)
}

/// The README's settings table.
pub fn readme_table() -> String {
    let mut table = String::from("| Setting | Default | Meaning |\n|---|---|---|\n");
    for setting in settings() {
        let default = match setting.default {
            Value(value) => format!(" `{value}` "),
            Unset => " ".to_owned(),
            Computed(how) => format!(" {how} "),
        };
        let _ = writeln!(
            table,
            "| `{}` |{default}| {} |",
            setting.name, setting.about
        );
    }
    table
}

/// `.env.example`.
pub fn env_example() -> String {
    let mut file = String::from(
        "# Copy to .env and adjust. Every setting can also come from the environment;\n\
         # the environment wins over .env. Empty values count as unset. Made from the\n\
         # service's table of settings: `user-accounts config --env-example`.\n",
    );
    for group in GROUPS {
        let _ = write!(file, "\n{}", comment(group.title));
        for setting in group.settings {
            file.push_str(&comment(&plain(setting.about)));
            let line = match (setting.default, setting.example) {
                (Value(value), _) if setting.commented => format!("# {}={value}", setting.name),
                (Value(value), _) if value.contains(' ') => format!("{}=\"{value}\"", setting.name),
                (Value(value), _) => format!("{}={value}", setting.name),
                (_, Some(example)) => format!("# {}={example}", setting.name),
                (_, None) => format!("# {}=", setting.name),
            };
            file.push_str(&line);
            file.push('\n');
        }
    }
    file
}

/// `text` without the backticks around code.
fn plain(text: &str) -> String {
    text.replace('`', "")
}

/// `text` as `#` comment lines of at most 78 columns.
fn comment(text: &str) -> String {
    let mut lines = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 78 && line.len() > 1 {
            lines.push_str(&line);
            lines.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push_str(&line);
    lines.push('\n');
    lines
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::config::Settings;

    /// The names `Settings::from_lookup` asks for, given `vars`.
    fn names_read(vars: &[(&str, &str)]) -> BTreeSet<String> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        let asked = RefCell::new(BTreeSet::new());
        let _ = Settings::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            vars.get(name).map(|value| (*value).to_owned())
        });
        asked.into_inner()
    }

    #[test]
    fn the_catalog_holds_every_setting_the_service_reads_and_no_other() {
        let mut read = BTreeSet::from(["ALLOW_UNKNOWN_SETTINGS".to_owned()]);
        for vars in [
            &[][..],
            &[("REDIS_URL", "redis://127.0.0.1:6379/0")],
            &[("REDIS_SENTINELS", "127.0.0.1:26379")],
            &[("MAIL_URL", "smtp://127.0.0.1:25")],
        ] {
            read.extend(names_read(vars));
        }
        let catalog: BTreeSet<String> = settings().map(|setting| setting.name.to_owned()).collect();
        assert_eq!(read, catalog);
    }

    #[test]
    fn the_readme_shows_the_catalogs_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&readme_table()),
            "README.md's settings table differs from the catalog; \
             replace it with `user-accounts config --readme-table`"
        );
    }

    #[test]
    fn env_example_is_the_catalogs() {
        assert!(
            include_str!("../../.env.example") == env_example(),
            "regenerate it: `user-accounts config --env-example > .env.example`"
        );
    }

    #[test]
    fn env_example_copied_to_dot_env_is_valid_as_it_stands() {
        let vars: HashMap<String, String> = env_example()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.trim_matches('"').to_owned()))
            .collect();
        assert!(unknown(vars.keys().map(String::as_str)).is_empty());
        let settings = Settings::from_lookup(|name| vars.get(name).cloned());
        assert!(settings.is_ok(), "{:?}", settings.err());
    }

    #[test]
    fn a_misspelt_setting_is_named_with_the_nearest_one() {
        assert_eq!(
            unknown(["REDIS_ULR", "SESION_IDLE_SECS", "MAIL_PORT"]),
            [
                "MAIL_PORT: not a setting; did you mean MAIL_URL?",
                "REDIS_ULR: not a setting; did you mean REDIS_URL?",
                "SESION_IDLE_SECS: not a setting; did you mean SESSION_IDLE_SECS?",
            ]
        );
    }

    #[test]
    fn a_lower_case_setting_is_named_in_upper_case() {
        assert_eq!(
            unknown(["redis_url"]),
            ["redis_url: settings are upper case; did you mean REDIS_URL?"]
        );
    }

    #[test]
    fn a_misspelt_or_lower_case_rocket_setting_is_named_with_rockets_own() {
        assert_eq!(
            unknown(["ROCKET_PROT", "rocket_port", "ROCKET_PORT", "ROCKET_LIMITS"]),
            [
                "ROCKET_PROT: not one of Rocket's settings; did you mean ROCKET_PORT?",
                "rocket_port: settings are upper case; did you mean ROCKET_PORT?",
            ]
        );
    }

    #[test]
    fn settings_and_other_programs_variables_pass() {
        let others = [
            "PATH",
            "HOME",
            "CI",
            "MAIL",
            "EMAIL",
            "LOGNAME",
            "SESSION_MANAGER",
            "REDIS_SERVICE_HOST",
            "REDIS_SERVICE_PORT",
            "REDIS_SERVICE_PORT_REDIS",
            "REDIS_PORT_6379_TCP",
            "REDIS_PORT_6379_TCP_ADDR",
            "MAILPIT_PORT_1025_TCP_PORT",
            "REDIS_VERSION",
            "LOG_LEVEL",
            "SESSIONNAME",
            "PUBLIC_KEY",
            "STATIC_URL",
            "ALLOW_EMPTY_PASSWORD",
            "ROCKET_PORT",
            "TEST_REDIS_URL",
            "http_proxy",
        ];
        assert!(unknown(others).is_empty(), "{:?}", unknown(others));
        assert!(unknown(settings().map(|setting| setting.name)).is_empty());
    }
}
