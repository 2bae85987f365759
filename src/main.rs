use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use rocket::error::ErrorKind;

use user_accounts::cli::{self, Cli, Command};
use user_accounts::config::{self, LogFormat, Settings};
use user_accounts::logging::json_line;
use user_accounts::store::layout::Keys;
use user_accounts::store::StoreError;

/// Requests hop between Tokio's worker threads, so memory is often freed by
/// another thread than the one that allocated it; glibc's malloc then waits
/// on its internal locks, mimalloc hands the block back to its owning heap
/// without one. GET by id at c=64, alternating runs against the glibc build:
/// +20 to +50 % requests per second (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[rocket::main]
async fn main() -> ExitCode {
    // First, so that --help and usage errors need no settings.
    let cli = Cli::parse();
    // Before .env is read: what the environment itself sets.
    let from_environment = config::variable_names();
    // A missing .env is fine: the environment alone may configure the service.
    let dot_env = dotenvy::dotenv();
    let stop = Stop(config::requested_log_format());
    if let Err(error) = dot_env {
        if !error.not_found() {
            return stop.with(&format!("cannot read .env: {}", dot_env_mistake(&error)));
        }
    }
    // `config` shows the settings whatever they are, mistakes included.
    let command = match cli.command {
        Some(Command::Config(shown)) => return cli::config(shown, &from_environment),
        command => command,
    };
    match config::unknown_variables() {
        Ok(unknown) if unknown.is_empty() => {}
        Ok(unknown) => {
            for line in unknown {
                stop.say(&line);
            }
            return stop.with(
                "fix or remove those variables (in .env or the environment), or set \
                 ALLOW_UNKNOWN_SETTINGS=true to start anyway; every setting is in \
                 .env.example, and `user-accounts config` shows what is in effect",
            );
        }
        Err(error) => return stop.with(&error.to_string()),
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => return stop.with(&error.to_string()),
    };
    match command {
        None | Some(Command::Serve) => serve(settings, stop).await,
        Some(Command::Doctor { repair }) => doctor(&settings, repair),
        Some(Command::Migrate) => migrate(&settings),
        Some(Command::EventStreams) => event_streams(&settings),
        Some(Command::AdminKey(command)) => cli::admin_key(&settings, command).await,
        Some(Command::Mail(command)) => cli::mail(&settings, command).await,
        Some(Command::Config(shown)) => cli::config(shown, &from_environment),
    }
}

/// What is wrong with `.env`, without the line itself: it may hold a
/// password or a key.
fn dot_env_mistake(error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, _) => {
            let name = line
                .split_once('=')
                .map(|(name, _)| name.trim())
                .filter(|name| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            let which = name.map_or("a line".to_owned(), |name| format!("the line of {name}"));
            format!(
                "{which} is not NAME=value (a quote left open?); the line is not shown, as it \
                 may hold a secret"
            )
        }
        dotenvy::Error::Io(error) => error.to_string(),
        _ => "it does not parse".to_owned(),
    }
}

/// Says why the service does not start, on stderr, as text or as JSON
/// like every other line.
#[derive(Clone, Copy)]
struct Stop(LogFormat);

impl Stop {
    fn say(self, message: &str) {
        match self.0 {
            LogFormat::Text => eprintln!("user-accounts: {message}"),
            LogFormat::Json => eprintln!("{}", json_line("error", message)),
        }
    }

    fn with(self, message: &str) -> ExitCode {
        self.say(message);
        ExitCode::FAILURE
    }
}

async fn serve(settings: Settings, stop: Stop) -> ExitCode {
    let rocket = match user_accounts::build(settings) {
        Ok(rocket) => rocket,
        Err(error) => return stop.with(&cli::one_line(&error)),
    };
    let rocket = match rocket.ignite().await {
        Ok(rocket) => rocket,
        Err(error) => {
            match error.kind() {
                ErrorKind::Config(errors) => {
                    for error in errors.clone() {
                        stop.say(&rocket_setting_error(&error));
                    }
                }
                _ => stop.say(&error.to_string()),
            }
            return ExitCode::FAILURE;
        }
    };
    let address = SocketAddr::new(rocket.config().address, rocket.config().port);
    match rocket.launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            match error.kind() {
                ErrorKind::Bind(cause) => stop.say(&format!(
                    "cannot listen on {address}: {cause}; {}",
                    bind_advice(cause.kind())
                )),
                _ => stop.say(&error.to_string()),
            }
            ExitCode::FAILURE
        }
    }
}

/// A bad Rocket setting, named as the person set it: `ROCKET_PORT` for one
/// from the environment, else the key and where it came from.
fn rocket_setting_error(error: &rocket::figment::Error) -> String {
    let key = error.path.join(".");
    let from_environment = error
        .metadata
        .as_ref()
        .is_some_and(|metadata| metadata.name.contains("ROCKET_"));
    if let (true, Some(first)) = (from_environment, error.path.first()) {
        let name = format!("ROCKET_{}", first.to_uppercase());
        let within = if error.path.len() > 1 {
            format!(" (its key {key})")
        } else {
            String::new()
        };
        format!("invalid setting {name}{within}: {}", error.kind)
    } else {
        format!("invalid Rocket setting: {error}")
    }
}

/// What to change when the listening socket cannot be bound.
fn bind_advice(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::AddrNotAvailable => {
            "set ROCKET_ADDRESS (or `address` in Rocket.toml) to an address of this host"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: set ROCKET_PORT (or `port` in Rocket.toml) \
             to a port above 1023"
        }
        _ => "set ROCKET_PORT (or `port` in Rocket.toml) to a free port",
    }
}

/// Prints the event streams' names; a closed stdout (`| head`) ends it
/// quietly.
fn event_streams(settings: &Settings) -> ExitCode {
    let mut out = io::stdout().lock();
    let listed = Keys::new(&settings.redis.key_prefix)
        .event_streams()
        .iter()
        .try_for_each(|stream| writeln!(out, "{stream}"));
    match listed {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Says why `command` could not run on Redis; exit status 2.
fn store_failure(command: &str, error: StoreError) -> ExitCode {
    let cause = format!("{}: {}", error.summary(), cli::one_line(&error.into()));
    eprintln!("user-accounts {command}: {cause}");
    ExitCode::from(2)
}

fn migrate(settings: &Settings) -> ExitCode {
    match user_accounts::store::migrate::migrate(&settings.redis) {
        Ok(migration) => {
            println!(
                "moved {} key(s) and {} email index member(s) into this release's layout",
                migration.moved_keys, migration.moved_entries
            );
            if migration.moved_mail > 0 {
                println!(
                    "moved {} mail message(s) into their recipients' buckets",
                    migration.moved_mail
                );
            }
            if migration.dropped_entries > 0 {
                println!(
                    "dropped {} email index member(s) that named no user",
                    migration.dropped_entries
                );
            }
            for key in &migration.conflicts {
                println!("not moved: {key} (a key already holds its new name)");
            }
            if migration.finished() {
                println!("the data is in this release's layout; the service may start");
                ExitCode::SUCCESS
            } else {
                println!(
                    "the data is not all moved: the service refuses to start until those keys \
                     are moved or deleted by hand and migrate has run again"
                );
                ExitCode::FAILURE
            }
        }
        Err(error) => store_failure("migrate", error),
    }
}

/// Exit status 0 only when the data is consistent (after repairs).
fn doctor(settings: &Settings, repair: bool) -> ExitCode {
    match user_accounts::doctor::run(&settings.redis, repair) {
        Ok(outcome) if outcome.consistent => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => store_failure("doctor", error),
    }
}
