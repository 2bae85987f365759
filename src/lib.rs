//! user-accounts: a REST service for user accounts, backed by Redis.
//!
//! The layers, from the outside in; each calls only the ones below it:
//! - [`api`]: HTTP only. Parses requests into domain types, calls
//!   [`accounts`], and maps every error to an RFC 9457 problem response in
//!   one place (`api::problem`). Names no store type.
//! - [`accounts`]: the service layer. Every operation a route or a guard
//!   needs, in as many steps as it takes; calls [`store`] and [`hashing`].
//! - [`cli`]: the command line (`admin-key`, `mail`, `doctor`); its
//!   commands call [`accounts`], and `main` runs the [`doctor`].
//! - [`doctor`]: the `doctor` command; calls [`store`] directly.
//! - [`mail`]: the mail sender, a task beside the routes: templates,
//!   transports (SMTP, a directory of files), retries and dead letters over
//!   the queue the store keeps; calls [`store`] directly.
//! - [`store`]: every Redis key and command, and the connections.
//! - [`hashing`]: argon2id hashing, bounded so sign-ups cannot starve reads.
//! - [`domain`]: validated types (`UserEmail`, `UserName`, `Password`, ...),
//!   used by every layer; calls nothing.
//!
//! Beside them: [`config`] (settings, read once at start), [`metrics`] and
//! [`logging`], which any layer may use, and [`announce`], the line at
//! start, which calls [`store`].
#![forbid(unsafe_code)]

pub mod accounts;
pub mod announce;
pub mod api;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod hashing;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod store;

use std::io::Write;
use std::sync::Arc;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use crate::accounts::{Accounts, AuthPolicy};
use crate::api::{SecurityHeaders, Telemetry, TrustedProxies};
use crate::config::{LogFormat, Settings};
use crate::domain::CodeSecret;
use crate::hashing::PasswordHasher;
use crate::logging::{log_line, BatchedStdout};
use crate::mail::MailSender;
use crate::metrics::Metrics;
use crate::store::Store;

/// Builds the application from its settings; `main` and the tests share it.
///
/// Building never talks to Redis: the service starts even when Redis is down
/// and answers 503 until it comes back.
pub fn build(settings: Settings) -> anyhow::Result<Rocket<Build>> {
    build_with_figment(settings, rocket::Config::figment())
}

/// Rocket would take the client's address from `X-Real-IP`, which any
/// client can set; the service reads forwarding headers itself, and only
/// from `TRUSTED_PROXIES`.
fn without_ip_header(figment: rocket::figment::Figment) -> rocket::figment::Figment {
    figment.merge(("ip_header", false))
}

/// With `LOG_FORMAT=json` every line is the service's own JSON: Rocket's
/// own lines (its launch and shutdown notes) are silenced.
fn quiet_when_json(
    figment: rocket::figment::Figment,
    format: LogFormat,
) -> rocket::figment::Figment {
    match format {
        LogFormat::Json => figment.merge(("log_level", "off")),
        LogFormat::Text => figment,
    }
}

/// Like [`build`], with the HTTP settings taken from `figment` instead of
/// `Rocket.toml` and `ROCKET_*`.
pub fn build_with_figment(
    settings: Settings,
    figment: rocket::figment::Figment,
) -> anyhow::Result<Rocket<Build>> {
    build_with_access_log(settings, figment, BatchedStdout::default())
}

/// Like [`build_with_figment`], with the request log lines written to
/// `access_log` (by a thread of its own) instead of stdout.
pub fn build_with_access_log<W: Write + Send + 'static>(
    settings: Settings,
    figment: rocket::figment::Figment,
    access_log: W,
) -> anyhow::Result<Rocket<Build>> {
    let metrics = Arc::new(Metrics::new()?);
    // One secret for the codes' hashes and the seal of the codes in mail:
    // the sender opens what the routes sealed.
    let code_secret = settings
        .codes
        .secret
        .clone()
        .unwrap_or_else(CodeSecret::generate);
    let accounts = Arc::new(accounts_with_secret(
        &settings,
        Arc::clone(&metrics),
        code_secret.clone(),
    )?);
    // Blocks requests rather than drop lines when the writer falls behind.
    let (access_log, access_log_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("access-log")
        .finish(access_log);
    let mail_sender = MailSender::new(
        &settings.mail,
        &settings.redis,
        Arc::clone(&metrics),
        settings.log_format,
        code_secret.sealer(),
    )?;
    if mail_sender.is_none() {
        log_line(
            settings.log_format,
            "warn",
            "mail is off (MAIL_URL is unset): no mail is queued or sent",
        );
    }
    if settings.codes.secret.is_none() {
        log_line(
            settings.log_format,
            "warn",
            "TOKEN_SECRET is unset: codes are hashed under a key made at start, so they \
             survive neither a restart nor a hand-over to another instance",
        );
    }
    let redis = settings.redis.clone();
    let log_format = settings.log_format;
    let rocket = api::mount(
        rocket::custom(quiet_when_json(
            without_ip_header(figment),
            settings.log_format,
        )),
        &settings.static_dir,
    );
    let rocket = api::allow_origins(rocket, settings.access.cors_allowed_origins.clone())
        .manage(Arc::clone(&accounts))
        .manage(TrustedProxies(settings.access.trusted_proxies))
        .manage(settings.log_format)
        .attach(SecurityHeaders {
            https: settings.mail.public_url.starts_with("https://"),
        })
        .manage(AccessLogGuard {
            _flushes_on_drop: access_log_guard,
        })
        .attach(Telemetry {
            metrics: Arc::clone(&metrics),
            log_format: settings.log_format,
            access_log,
        })
        .attach(AdHoc::on_liftoff("announce", move |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                let listening = std::net::SocketAddr::new(config.address, config.port);
                // Its own task: a Redis that does not answer must not hold
                // up serving until the PING times out.
                rocket::tokio::spawn(announce::announce(listening, redis, log_format));
            })
        }));
    // A code requested or a sign-up accepted just before shutdown is still
    // stored, its mail queued (in Redis, for whichever instance sends next).
    let rocket = rocket.attach(AdHoc::on_shutdown("work after answers", |rocket| {
        let grace = config::shutdown_grace(rocket.config());
        Box::pin(async move { accounts.finish_after_answers(grace).await })
    }));
    Ok(match mail_sender {
        Some(sender) => rocket.attach(sender),
        None => rocket,
    })
}

/// The service layer from its settings, for the server and the command line.
/// It connects nowhere yet.
pub fn accounts_from(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Accounts> {
    let code_secret = settings
        .codes
        .secret
        .clone()
        .unwrap_or_else(CodeSecret::generate);
    accounts_with_secret(settings, metrics, code_secret)
}

/// Like [`accounts_from`], hashing and sealing codes under `code_secret`.
fn accounts_with_secret(
    settings: &Settings,
    metrics: Arc<Metrics>,
    code_secret: CodeSecret,
) -> anyhow::Result<Accounts> {
    let store = Store::new(&settings.redis, Arc::clone(&metrics))?;
    let hasher = PasswordHasher::new(&settings.password_hashing, Arc::clone(&metrics));
    let policy = AuthPolicy {
        sessions: settings.sessions,
        login: settings.login,
        access: settings.access.clone(),
        codes: settings.codes.clone(),
        code_secret,
    };
    Ok(Accounts::new(store, hasher, policy, metrics)
        .sending_mail(settings.mail.transport.is_some())
        .logging_as(settings.log_format))
}

/// Held in Rocket's state: dropped with the server, it writes out the request
/// lines still queued.
struct AccessLogGuard {
    _flushes_on_drop: WorkerGuard,
}
