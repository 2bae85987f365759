//! Where a composed message goes: an SMTP server, or a directory of `.eml`
//! files for development and tests.

use std::path::PathBuf;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rocket::tokio::{fs, io::AsyncWriteExt};

use super::MailError;
use crate::config::{MailSettings, MailTransport, SmtpSecurity, SmtpSettings};
use crate::domain::MailId;

/// How many SMTP connections the sender keeps open, and so how many
/// messages it hands over at once.
pub const SMTP_CONNECTIONS: u32 = 8;

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

/// Why a message was not handed over, in fixed words: never the server's
/// own text, which may quote the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// It will never be taken (an SMTP 5xx answer): retrying is no use.
    Permanent(String),
    /// Another attempt may succeed (4xx, no connection, a timeout).
    Transient(String),
}

impl SendFailure {
    pub fn reason(&self) -> &str {
        match self {
            Self::Permanent(reason) | Self::Transient(reason) => reason,
        }
    }
}

impl Transport {
    /// The transport `MAIL_URL` names; `None` when mail is off. A mail
    /// directory is created here, so one that cannot be fails at start.
    pub fn new(settings: &MailSettings) -> Result<Option<Self>, MailError> {
        match &settings.transport {
            None => Ok(None),
            Some(MailTransport::File { dir }) => {
                std::fs::create_dir_all(dir).map_err(|error| {
                    MailError::Transport(format!(
                        "cannot create the mail directory {}: {error}",
                        dir.display()
                    ))
                })?;
                Ok(Some(Self::File(dir.clone())))
            }
            Some(MailTransport::Smtp(smtp)) => smtp_transport(smtp, settings).map(Some),
        }
    }

    /// Hands `message` over. Over SMTP, `Ok` means the server took
    /// responsibility for it (250 after DATA).
    pub async fn send(&self, id: MailId, message: Message) -> Result<(), SendFailure> {
        match self {
            Self::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|error| {
                let reason = smtp_reason(&error);
                if error.is_permanent() {
                    SendFailure::Permanent(reason)
                } else {
                    SendFailure::Transient(reason)
                }
            }),
            Self::File(dir) => write_file(dir, id, &message.formatted())
                .await
                .map_err(|error| {
                    SendFailure::Transient(format!(
                        "cannot write the mail directory: {}",
                        error.kind()
                    ))
                }),
        }
    }
}

fn smtp_transport(smtp: &SmtpSettings, settings: &MailSettings) -> Result<Transport, MailError> {
    let tls_parameters = || -> Result<TlsParameters, MailError> {
        let mut builder = TlsParameters::builder(smtp.host.clone());
        if let Some(pem) = &smtp.extra_roots_pem {
            let roots = Certificate::from_pem(pem).map_err(|_| {
                MailError::Transport("MAIL_TLS_CA_FILE holds no usable certificate".into())
            })?;
            builder = builder.add_root_certificate(roots);
        }
        builder
            .build_rustls()
            .map_err(|error| MailError::Transport(format!("TLS cannot be set up: {error}")))
    };
    let tls = match smtp.security {
        SmtpSecurity::Off => Tls::None,
        SmtpSecurity::StartTlsWhenOffered => Tls::Opportunistic(tls_parameters()?),
        SmtpSecurity::StartTlsRequired => Tls::Required(tls_parameters()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(settings.timeout))
        .pool_config(PoolConfig::new().max_size(SMTP_CONNECTIONS));
    if let Some(credentials) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(
            credentials.user.clone(),
            credentials.password().to_owned(),
        ));
    }
    Ok(Transport::Smtp(builder.build()))
}

/// What went wrong with SMTP, in fixed words and the reply code.
fn smtp_reason(error: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = error.status() {
        let kind = if error.is_permanent() {
            "refused"
        } else {
            "deferred"
        };
        return format!("the SMTP server {kind} it ({code})");
    }
    if let Some(tls) = tls_failure(error) {
        format!("TLS with the SMTP server failed ({tls})")
    } else if error.is_timeout() {
        "the SMTP server did not answer in time".into()
    } else if error.is_tls() {
        "TLS with the SMTP server failed".into()
    } else if error.is_response() {
        "the SMTP server's answer was unreadable".into()
    } else if error.is_client() {
        "the SMTP client failed".into()
    } else {
        "no connection to the SMTP server".into()
    }
}

/// The TLS error under `error`, if there is one: rustls names it in fixed
/// words (an unknown issuer, a name mismatch, an expired certificate).
fn tls_failure(error: &lettre::transport::smtp::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An I/O error hides what it wraps from `source`.
        if let Some(tls) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        cause = current.source();
    }
    None
}

/// Writes `{dir}/{id}.eml` so that no reader ever sees part of it: first
/// to a hidden temporary name, flushed to disk, then renamed. A message
/// written twice (a retry) replaces itself.
async fn write_file(dir: &std::path::Path, id: MailId, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{id}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = async {
        let mut file = fs::File::create(&temporary).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        fs::rename(&temporary, dir.join(format!("{id}.eml"))).await
    }
    .await;
    if written.is_err() {
        let _ = fs::remove_file(&temporary).await;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rocket::async_test]
    async fn a_file_appears_whole_under_its_id() {
        let dir = std::env::temp_dir().join(format!("mail-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let id = MailId::generate();
        write_file(&dir, id, b"Subject: hi\r\n\r\nbody\r\n")
            .await
            .expect("written");
        write_file(&dir, id, b"Subject: hi\r\n\r\nbody\r\n")
            .await
            .expect("written again");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("readable")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("{id}.eml")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
