//! The command line: serve (no subcommand), the doctor, and admin keys.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::accounts::Accounts;
use crate::config::Settings;
use crate::domain::{KeyName, KeyScope};
use crate::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "user-accounts",
    version,
    about = "A REST service for user accounts, backed by Redis. \
             Without a command, it serves HTTP (settings: environment, .env, Rocket.toml)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the data for inconsistencies; exit 0 only when it is consistent.
    Doctor {
        /// Repair what can be repaired without guessing.
        #[arg(long)]
        repair: bool,
    },
    /// Create, list and revoke the admin keys trusted callers authenticate with.
    #[command(subcommand)]
    AdminKey(AdminKeyCommand),
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

/// Runs an admin-key command against the configured Redis.
pub async fn admin_key(settings: &Settings, command: AdminKeyCommand) -> ExitCode {
    let accounts = match Metrics::new()
        .map_err(anyhow::Error::from)
        .and_then(|metrics| crate::accounts_from(settings, Arc::new(metrics)))
    {
        Ok(accounts) => accounts,
        Err(error) => return fail(&error),
    };
    match run_admin_key(&accounts, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
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

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("user-accounts admin-key: {error:#}");
    ExitCode::FAILURE
}
