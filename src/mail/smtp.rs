//! The SMTP client: lettre's SMTP connection (EHLO, STARTTLS, AUTH, the
//! mail transaction) on TCP connections opened here, kept in a small pool.
//!
//! Why not lettre's own transport (0.11.23): it leaves Nagle's algorithm on,
//! and lettre writes a message's body and its final `.` in two writes, so
//! the second waits for the server's delayed ACK, 40 ms on Linux, on every
//! message (fixed upstream, lettre#1159, after that release). And its
//! timeout covers connecting only; a server that stops answering mid-way
//! would hold a send forever. Here every connection has `TCP_NODELAY`, and
//! one timeout bounds the whole hand-over of a message.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use rocket::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use rocket::tokio::net::TcpStream;
use rocket::tokio::time;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{MailError, SendFailure};
use crate::config::{SmtpSecurity, SmtpSettings};

/// Idle connections kept open, and so messages handed over at once.
pub const SMTP_CONNECTIONS: usize = 8;

/// An idle connection is closed after this long: servers close them after a
/// few minutes (RFC 5321 suggests 5) and would fail the next message.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// An idle connection older than this is checked with NOOP before use.
const CHECK_AFTER: Duration = Duration::from_secs(2);

pub struct SmtpClient {
    host: String,
    port: u16,
    security: SmtpSecurity,
    /// For STARTTLS, through lettre.
    starttls: Option<TlsParameters>,
    /// For TLS from the first byte (smtps://), through tokio-rustls.
    implicit: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpClient {
    pub fn new(smtp: &SmtpSettings, timeout: Duration) -> Result<Self, MailError> {
        let invalid = |reason: String| MailError::Transport(reason);
        let extra_roots = match &smtp.extra_roots_pem {
            Some(pem) => Some(
                Certificate::from_pem(pem)
                    .map_err(|_| invalid("MAIL_TLS_CA_FILE holds no usable certificate".into()))?,
            ),
            None => None,
        };
        let starttls = match smtp.security {
            SmtpSecurity::StartTlsWhenOffered | SmtpSecurity::StartTlsRequired => {
                let mut builder = TlsParameters::builder(smtp.host.clone());
                if let Some(roots) = extra_roots {
                    builder = builder.add_root_certificate(roots);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|error| invalid(format!("TLS cannot be set up: {error}")))?,
                )
            }
            SmtpSecurity::Off | SmtpSecurity::Tls => None,
        };
        let implicit = match smtp.security {
            SmtpSecurity::Tls => Some(implicit_tls(smtp)?),
            _ => None,
        };
        Ok(Self {
            host: smtp.host.clone(),
            port: smtp.port,
            security: smtp.security,
            starttls,
            implicit,
            credentials: smtp.credentials.as_ref().map(|credentials| {
                Credentials::new(credentials.user.clone(), credentials.password().to_owned())
            }),
            hello: ClientId::default(),
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Hands `message` over within the timeout. `Ok` means the server took
    /// responsibility for it (250 after the final `.`).
    pub async fn send(&self, message: &Message) -> Result<(), SendFailure> {
        match time::timeout(self.timeout, self.send_untimed(message)).await {
            Ok(outcome) => outcome.map_err(|error| classify(&error)),
            Err(_) => Err(SendFailure::Transient(
                "the SMTP server did not answer in time".into(),
            )),
        }
    }

    async fn send_untimed(&self, message: &Message) -> Result<(), Failure> {
        let mut conn = self.checkout().await?;
        match conn.send(message.envelope(), &message.formatted()).await {
            Ok(_) => {
                self.checkin(conn);
                Ok(())
            }
            Err(error) => {
                // After a refusal the connection would do; after anything
                // else its state is unknown. Either way a new one is cheap.
                conn.abort().await;
                Err(Failure::Smtp(error))
            }
        }
    }

    /// An idle connection that still answers, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = idle else {
                return self.connect().await;
            };
            if since.elapsed() > MAX_IDLE {
                conn.abort().await;
                continue;
            }
            if since.elapsed() < CHECK_AFTER || conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < SMTP_CONNECTIONS && !conn.has_broken() {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(Failure::Connect)?;
        tcp.set_nodelay(true).map_err(Failure::Connect)?;
        let mut conn = match &self.implicit {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(Failure::Connect)?;
                AsyncSmtpConnection::connect_with_transport(
                    Box::new(TlsFromTheStart(tls)),
                    &self.hello,
                )
                .await?
            }
            None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?,
        };
        if let Some(tls) = &self.starttls {
            if conn.can_starttls() {
                conn.starttls(tls.clone(), &self.hello).await?;
            } else if self.security == SmtpSecurity::StartTlsRequired {
                conn.abort().await;
                return Err(Failure::Unsafe("it offers no STARTTLS (tls=required)"));
            }
        }
        if let Some(credentials) = &self.credentials {
            if !conn.is_encrypted() {
                conn.abort().await;
                return Err(Failure::Unsafe(
                    "it offers no TLS, and the password is not sent in clear",
                ));
            }
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(conn)
    }
}

/// A rustls client for TLS from the first byte: the system's certificate
/// authorities and `MAIL_TLS_CA_FILE`'s, with the ring provider.
fn implicit_tls(
    smtp: &SmtpSettings,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), MailError> {
    let invalid = |reason: String| MailError::Transport(reason);
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = &smtp.extra_roots_pem {
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate
                .map_err(|_| invalid("MAIL_TLS_CA_FILE holds no usable certificate".into()))?;
            roots
                .add(certificate)
                .map_err(|error| invalid(format!("MAIL_TLS_CA_FILE: {error}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| invalid(format!("TLS cannot be set up: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(smtp.host.clone())
        .map_err(|_| invalid(format!("{:?} is no name TLS can check", smtp.host)))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// Why a message was not handed over, before it is put in fixed words.
enum Failure {
    /// What lettre reported: a reply code, TLS, a broken connection.
    Smtp(lettre::transport::smtp::Error),
    /// Connecting, or the TLS handshake of smtps://.
    Connect(io::Error),
    /// A server this client will not send to.
    Unsafe(&'static str),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(error: lettre::transport::smtp::Error) -> Self {
        Self::Smtp(error)
    }
}

/// What went wrong, as a [`SendFailure`] in fixed words and the reply code:
/// never the server's own text, which may quote the message.
fn classify(failure: &Failure) -> SendFailure {
    let error = match failure {
        Failure::Smtp(error) => error,
        Failure::Connect(error) => {
            return SendFailure::Transient(match tls_failure(error) {
                Some(tls) => format!("TLS with the SMTP server failed ({tls})"),
                None => format!("no connection to the SMTP server ({})", error.kind()),
            })
        }
        Failure::Unsafe(reason) => {
            return SendFailure::Transient(format!("the SMTP server is not safe to use: {reason}"))
        }
    };
    if let Some(code) = error.status() {
        return if error.is_permanent() {
            SendFailure::Permanent(format!("the SMTP server refused it ({code})"))
        } else {
            SendFailure::Transient(format!("the SMTP server deferred it ({code})"))
        };
    }
    SendFailure::Transient(match tls_failure(error) {
        Some(tls) => format!("TLS with the SMTP server failed ({tls})"),
        None if error.is_tls() => "TLS with the SMTP server failed".into(),
        None if error.is_response() => "the SMTP server's answer was unreadable".into(),
        None => "the connection to the SMTP server failed".into(),
    })
}

/// The TLS error in or under `error`, if there is one: rustls names it in
/// fixed words (an unknown issuer, a name mismatch, an expired certificate).
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An I/O error hides what it wraps from `source`.
        if let Some(tls) = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        cause = current.source();
    }
    None
}

/// A TLS stream lettre can speak SMTP over.
#[derive(Debug)]
struct TlsFromTheStart(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsFromTheStart {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsFromTheStart {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsFromTheStart {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}
