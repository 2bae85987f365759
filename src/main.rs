use std::process::ExitCode;

use user_accounts::config::Settings;

#[rocket::main]
async fn main() -> ExitCode {
    // A missing .env is fine: the environment alone may configure the service.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            eprintln!("user-accounts: cannot read .env: {error}");
            return ExitCode::FAILURE;
        }
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("user-accounts: {error}");
            return ExitCode::FAILURE;
        }
    };
    let rocket = match user_accounts::build(settings) {
        Ok(rocket) => rocket,
        Err(error) => {
            eprintln!("user-accounts: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match rocket.launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("user-accounts: {error}");
            ExitCode::FAILURE
        }
    }
}
