//! The command line: serve (the default), the doctor, admin keys, the
//! mail queue, and the settings in effect.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::accounts::{Accounts, TestMail};
use crate::config::catalog::{self, Fallback, Masking};
use crate::config::{self, Settings};
use crate::domain::{KeyName, KeyScope, UserEmail};
use crate::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "user-accounts",
    version,
    about = "A REST service for user accounts, backed by Redis. \
             Without a command, it serves HTTP (settings: environment, .env, Rocket.toml; \
             every one is in .env.example, and `user-accounts config` shows them in effect)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve HTTP: what the service does when no command is given.
    Serve,
    /// Check the data for inconsistencies; exit 0 only when it is consistent.
    Doctor {
        /// Repair what can be repaired without guessing.
        #[arg(long)]
        repair: bool,
    },
    /// Print the names of the event streams, one per line, for a consumer
    /// to read them all.
    EventStreams,
    /// Rewrite the data an earlier release left in Redis into this
    /// release's layout. Stop every instance of the earlier release first;
    /// instances of this one refuse to serve until it has finished. Running
    /// it again changes nothing.
    Migrate,
    /// Create, list and revoke the admin keys trusted callers authenticate with.
    #[command(subcommand)]
    AdminKey(AdminKeyCommand),
    /// Look after the mail queue: its dead letters, a test message.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Print every setting in effect and where it came from (default,
    /// .env, environment), secrets masked; then any mistake in them.
    Config(ConfigCommand),
}

#[derive(clap::Args)]
pub struct ConfigCommand {
    /// Print the README's settings table instead, made from the table of
    /// settings.
    #[arg(long, conflicts_with = "env_example")]
    readme_table: bool,
    /// Print .env.example instead, made from the table of settings.
    #[arg(long)]
    env_example: bool,
}

#[derive(Subcommand)]
pub enum MailCommand {
    /// Move every dead letter back to the queue, with a fresh count of
    /// attempts, and print how many moved.
    RetryDead,
    /// Queue a test message to ADDRESS and print its id; a running instance
    /// sends it. Needs MAIL_URL, as the service does.
    SendTest {
        #[arg(value_parser = parse_email)]
        address: UserEmail,
    },
    /// Print how many messages are queued, waiting for a retry, and dead.
    Status,
}

fn parse_email(raw: &str) -> Result<UserEmail, String> {
    UserEmail::parse(raw).map_err(|reason| format!("the address {reason}"))
}

#[derive(Subcommand)]
pub enum AdminKeyCommand {
    /// Create a key and print it on stdout, alone: the only time it is shown.
    Create {
        /// What operators call the key: 1 to 64 letters, digits, '-', '_', '.'.
        #[arg(value_parser = KeyName::parse)]
        name: KeyName,
        /// admin: everything; read: read users; metrics: read /metrics.
        #[arg(long, default_value = "admin", value_parser = parse_scope)]
        scope: KeyScope,
    },
    /// List the keys: name, scope, created, last used. Never the keys.
    List,
    /// Revoke the key named NAME; every instance stops accepting it within seconds.
    Revoke {
        #[arg(value_parser = KeyName::parse)]
        name: KeyName,
    },
}

fn parse_scope(raw: &str) -> Result<KeyScope, String> {
    KeyScope::parse(raw).ok_or_else(|| format!("expected admin, read or metrics, got {raw:?}"))
}

/// `user-accounts config`: the settings in effect, or the documents made
/// from the table of settings.
pub fn config(shown: ConfigCommand, from_environment: &HashSet<String>) -> ExitCode {
    if shown.readme_table {
        print!("{}", catalog::readme_table());
        return ExitCode::SUCCESS;
    }
    if shown.env_example {
        print!("{}", catalog::env_example());
        return ExitCode::SUCCESS;
    }
    for setting in catalog::settings() {
        let value = std::env::var(setting.name)
            .ok()
            .filter(|value| !value.trim().is_empty());
        let source = match &value {
            None => "default",
            Some(_) if from_environment.contains(setting.name) => "environment",
            Some(_) => ".env",
        };
        let shown = match (&value, setting.default) {
            (Some(value), _) => match setting.masking {
                Masking::Clear => value.clone(),
                Masking::Whole => "***".to_owned(),
                Masking::Passwords => value
                    .split(',')
                    .map(config::masked)
                    .collect::<Vec<_>>()
                    .join(","),
            },
            (None, Fallback::Value(value)) => value.to_owned(),
            (None, Fallback::Unset) => "(unset)".to_owned(),
            (None, Fallback::Computed(how)) => format!("({how})"),
        };
        let replaced_by = catalog::unused_beside(setting.name)
            .iter()
            .find(|other| std::env::var(other).is_ok_and(|value| !value.trim().is_empty()));
        match replaced_by {
            Some(other) => println!(
                "{}={shown}  # {source}, not used: {other} is set",
                setting.name
            ),
            None => println!("{}={shown}  # {source}", setting.name),
        }
    }
    let mut mistakes: Vec<String> = match config::unknown_variables() {
        Ok(unknown) => unknown,
        Err(error) => vec![error.to_string()],
    };
    if let Err(error) = Settings::from_env() {
        mistakes.push(error.to_string());
    }
    for mistake in &mistakes {
        eprintln!("user-accounts: {mistake}");
    }
    if mistakes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs an admin-key command against the configured Redis.
pub async fn admin_key(settings: &Settings, command: AdminKeyCommand) -> ExitCode {
    let accounts = match accounts(settings) {
        Ok(accounts) => accounts,
        Err(error) => return fail("admin-key", &error),
    };
    match run_admin_key(&accounts, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("admin-key", &error),
    }
}

/// Runs a mail command against the configured Redis.
pub async fn mail(settings: &Settings, command: MailCommand) -> ExitCode {
    let accounts = match accounts(settings) {
        Ok(accounts) => accounts,
        Err(error) => return fail("mail", &error),
    };
    match run_mail(&accounts, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("mail", &error),
    }
}

fn accounts(settings: &Settings) -> anyhow::Result<Accounts> {
    let metrics = Metrics::new()?;
    crate::accounts_from(settings, Arc::new(metrics))
}

async fn run_mail(accounts: &Accounts, command: MailCommand) -> anyhow::Result<()> {
    match command {
        MailCommand::RetryDead => {
            let moved = accounts.retry_dead_mail().await?;
            println!("{moved}");
            eprintln!("moved {moved} dead letter(s) back to the mail queue");
            if !accounts.mail_enabled() {
                eprintln!("note: MAIL_URL is unset here; the instances that have it set send them");
            }
        }
        MailCommand::SendTest { address } => match accounts.queue_test_mail(address).await? {
            TestMail::Queued(id) => {
                println!("{id}");
                eprintln!(
                    "queued test message {id}; a running instance sends it, unless the address \
                     had MAIL_MAX_PER_RECIPIENT messages in the last hour"
                );
            }
            TestMail::MailOff => {
                anyhow::bail!("mail is off (MAIL_URL is unset): nothing was queued")
            }
        },
        MailCommand::Status => {
            let counts = accounts.mail_counts().await?;
            println!(
                "queued {}\nretrying {}\ndead {}",
                counts.queued, counts.retrying, counts.dead
            );
        }
    }
    Ok(())
}

async fn run_admin_key(accounts: &Accounts, command: AdminKeyCommand) -> anyhow::Result<()> {
    match command {
        AdminKeyCommand::Create { name, scope } => {
            let key = accounts.create_admin_key(name, scope).await?;
            println!("{}", key.expose());
        }
        AdminKeyCommand::List => {
            let keys = accounts.admin_keys().await?;
            let width = keys
                .iter()
                .map(|key| key.name.as_str().len())
                .max()
                .unwrap_or(4);
            println!(
                "{:width$}  {:7}  {:24}  LAST USED",
                "NAME", "SCOPE", "CREATED"
            );
            for key in keys {
                let last_used = key.last_used.map_or_else(|| "never".to_owned(), time);
                println!(
                    "{:width$}  {:7}  {:24}  {last_used}",
                    key.name.as_str(),
                    key.scope.as_str(),
                    time(key.created),
                );
            }
        }
        AdminKeyCommand::Revoke { name } => {
            accounts.revoke_admin_key(name.clone()).await?;
            eprintln!("revoked {name}");
        }
    }
    Ok(())
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn fail(command: &str, error: &anyhow::Error) -> ExitCode {
    eprintln!("user-accounts {command}: {}", one_line(error));
    ExitCode::FAILURE
}

/// An error and its causes on one line, each cause once: an error's own
/// message often repeats its source's.
pub fn one_line(error: &anyhow::Error) -> String {
    error.chain().fold(String::new(), |line, cause| {
        let cause = cause.to_string();
        match line.as_str() {
            "" => cause,
            told if told.contains(&cause) => line,
            _ => format!("{line}: {cause}"),
        }
    })
}
