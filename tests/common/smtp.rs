//! A real SMTP server for the mail tests: `smtp_sink.py` on aiosmtpd, in a
//! virtualenv under `target/` that `scripts/test` prepares (and that the
//! first test to need it makes, when it is missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

/// The aiosmtpd version `scripts/test` installs.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

fn sink_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/smtp_sink.py")
}

/// A Python that can import aiosmtpd: `TEST_SMTP_PYTHON`, or the one in
/// `target/smtp-venv`, made here when missing.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Ok(python) = std::env::var("TEST_SMTP_PYTHON") {
                if !python.is_empty() {
                    return PathBuf::from(python);
                }
            }
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/smtp-venv");
            let python = venv.join("bin/python");
            if !imports_aiosmtpd(&python) {
                let made = Command::new("python3")
                    .arg("-m")
                    .arg("venv")
                    .arg(&venv)
                    .status()
                    .is_ok_and(|status| status.success())
                    && Command::new(venv.join("bin/pip"))
                        .args(["install", "--quiet", AIOSMTPD])
                        .status()
                        .is_ok_and(|status| status.success());
                assert!(
                    made && imports_aiosmtpd(&python),
                    "the mail tests need aiosmtpd from PyPI, and installing it into {} \
                     failed: run scripts/test (which installs it), or set TEST_SMTP_PYTHON \
                     to a python3 that can import aiosmtpd",
                    venv.display()
                );
            }
            python
        })
        .clone()
}

fn imports_aiosmtpd(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// How the server speaks.
#[derive(Clone, Debug)]
pub enum Security {
    Plain,
    /// Plain, keeping only each message's `.eml`: no parsing, for speed.
    PlainRaw,
    /// Offers and requires STARTTLS with this certificate and key.
    StartTls {
        cert: PathBuf,
        key: PathBuf,
    },
    /// TLS from the first byte.
    Tls {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// An SMTP server on a loopback port, writing what it accepts to a
/// directory of its own; stopped when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    security: Security,
    process: Option<(Child, ChildStdin)>,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(Security::Plain)
    }

    pub fn start_with(security: Security) -> Self {
        let mut server = Self::stopped(free_port(), security);
        server.restart();
        server
    }

    /// A server that is not running yet: mail to its port is refused until
    /// [`SmtpServer::restart`].
    pub fn stopped(port: u16, security: Security) -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-sink-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a directory for the mail");
        Self {
            port,
            dir,
            security,
            process: None,
        }
    }

    /// Starts the server (again) on its port and waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the SMTP server is running already");
        let mut command = Command::new(python());
        command
            .arg(sink_script())
            .arg("serve")
            .arg(self.port.to_string())
            .arg(&self.dir);
        match &self.security {
            Security::Plain => {}
            Security::PlainRaw => {
                command.arg("--raw");
            }
            Security::StartTls { cert, key } => {
                command.arg("--starttls").arg(cert).arg(key);
            }
            Security::Tls { cert, key } => {
                command.arg("--smtps").arg(cert).arg(key);
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the SMTP server starts");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP server on port {} did not start",
            self.port
        );
        self.process = Some((child, stdin));
    }

    /// Stops the server; its port refuses connections afterwards.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// While `on`, every recipient is answered 451 (try again later).
    pub fn defer_all(&self, on: bool) {
        let flag = self.dir.join("defer");
        if on {
            std::fs::write(flag, b"").expect("flag written");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).expect("a complete record");
                Received(serde_json::from_str(&text).expect("JSON"))
            })
            .collect()
    }

    /// How many `.eml` files the server has written.
    pub fn eml_count(&self) -> usize {
        eml_count(&self.dir)
    }

    /// The messages once there are at least `count`, failing the test after
    /// `within`.
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} messages arrived within {within:?}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A message as the server (or the parser) read it.
#[derive(Clone, Debug)]
pub struct Received(pub Value);

impl Received {
    /// The `.eml` file at `path`, parsed as the server parses what it gets.
    pub fn parse_file(path: &Path) -> Self {
        let output = Command::new(python())
            .arg(sink_script())
            .arg("parse")
            .arg(path)
            .output()
            .expect("the parser runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(serde_json::from_slice(&output.stdout).expect("JSON"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.0["headers"]
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str().map(str::to_owned))
    }

    /// The text part, with `\n` line ends.
    pub fn text(&self) -> String {
        self.0["text"]
            .as_str()
            .unwrap_or_default()
            .replace("\r\n", "\n")
    }

    pub fn html(&self) -> String {
        self.0["html"]
            .as_str()
            .unwrap_or_default()
            .replace("\r\n", "\n")
    }

    pub fn content_types(&self) -> Vec<String> {
        self.0["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|part| part.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn envelope_to(&self) -> Vec<String> {
        self.0["envelope_to"]
            .as_array()
            .map(|to| {
                to.iter()
                    .filter_map(|address| address.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether it came over TLS.
    pub fn over_tls(&self) -> bool {
        self.0["tls"].as_bool().unwrap_or(false)
    }
}

/// A certificate authority, and a certificate for 127.0.0.1 it signed with
/// its key, made with openssl: (CA certificate, certificate, key).
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let request = dir.join("cert.csr");
    let extensions = dir.join("cert.ext");
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("extensions written");
    let openssl = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl failed: {args:?}");
    };
    let os = |text: &'static str| std::ffi::OsStr::new(text);
    openssl(&[
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-days"),
        os("2"),
        os("-subj"),
        os("/CN=user-accounts test CA"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        os("req"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-subj"),
        os("/CN=127.0.0.1"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        request.as_os_str(),
    ]);
    openssl(&[
        os("x509"),
        os("-req"),
        os("-days"),
        os("2"),
        os("-set_serial"),
        os("2"),
        os("-in"),
        request.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-extfile"),
        extensions.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    (ca, cert, key)
}

/// How many `.eml` files `dir` holds.
pub fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
                .count()
        })
        .unwrap_or(0)
}
