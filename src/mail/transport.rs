//! Where a composed message goes: an SMTP server, or a directory of `.eml`
//! files for development and tests.

use std::path::PathBuf;

use lettre::Message;
use rocket::tokio::{fs, io::AsyncWriteExt};

use super::smtp::SmtpClient;
use super::{MailError, SendFailure};
use crate::config::{MailSettings, MailTransport};
use crate::domain::MailId;

pub enum Transport {
    Smtp(SmtpClient),
    File(PathBuf),
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
            Some(MailTransport::Smtp(smtp)) => {
                Ok(Some(Self::Smtp(SmtpClient::new(smtp, settings.timeout)?)))
            }
        }
    }

    /// Hands `message` over. Over SMTP, `Ok` means the server took
    /// responsibility for it (250 after the final `.`).
    pub async fn send(&self, id: MailId, message: Message) -> Result<(), SendFailure> {
        match self {
            Self::Smtp(smtp) => smtp.send(&message).await,
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
