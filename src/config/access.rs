//! Who may reach the service, and from where: sign-up, the proxies whose
//! headers name the client, and the origins whose pages may call the API.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{choice, ConfigError, Env};

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

pub(super) fn settings(env: &Env) -> Result<AccessSettings, ConfigError> {
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
            if entry.contains('*') {
                return Err(invalid("is a wildcard; list each origin instead"));
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::settings_from;

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
}
