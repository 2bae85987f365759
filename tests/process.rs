//! The real binary, over real HTTP: start-up errors, log lines, request ids
//! in logs, no secrets anywhere, graceful shutdown.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, shared_redis_url};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

/// How the start-up line begins.
const STARTED: &str = "user-accounts listening on ";

struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
    /// The settings it runs with, which its command line shares.
    settings: Vec<(String, String)>,
}

impl Service {
    fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_with_args(&[], extra)
    }

    /// As [`Self::start`], with `args` on the command line.
    fn start_with_args(args: &[&str], extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("user-accounts-{}.log", uuid::Uuid::new_v4()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let mut settings: Vec<(String, String)> = Vec::new();
        // The extra settings come last, so they win over the defaults.
        for (name, value) in [
            ("REDIS_URL", shared_redis_url().as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
        ]
        .iter()
        .chain(extra)
        {
            settings.retain(|(set, _)| set != name);
            settings.push((name.to_string(), value.to_string()));
        }
        let child = Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(settings.iter().map(|(name, value)| (name, value)))
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("the binary starts");
        let service = Self {
            child,
            port,
            log,
            settings,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Up once it serves and has printed its start-up line (which waits
        // for a PING of Redis): later lines are then the tests' own.
        while ureq::get(&service.url("/health/live")).call().is_err()
            || !service.logs().contains(STARTED)
        {
            assert!(
                Instant::now() < deadline,
                "the service did not start: {}",
                service.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    /// Runs the binary's command line with the service's settings.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(self.settings.iter().map(|(name, value)| (name, value)))
            .args(args)
            .output()
            .expect("the binary runs")
    }

    /// A new key of `scope`, made with `admin-key create`, which prints it
    /// and nothing else.
    fn admin_key(&self, scope: &str) -> String {
        let name = format!("test-{}", uuid::Uuid::new_v4().simple());
        let output = self.cli(&["admin-key", "create", &name, "--scope", scope]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
        stdout.trim().to_owned()
    }

    /// The line the service prints once it is up.
    fn start_up_line(&self) -> String {
        self.logs()
            .lines()
            .find(|line| line.starts_with(STARTED))
            .unwrap_or_else(|| panic!("no start-up line in:\n{}", self.logs()))
            .to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds `needle`, or after 5 s: request lines are
    /// written by a thread of their own, a moment after the response.
    fn logs_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Option<String>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("Content-Type", "application/json")
        .body(body.map(Value::to_string).unwrap_or_default())
        .expect("a request");
    let mut response = agent.run(request).expect("a response");
    let id = response
        .headers()
        .get("X-Request-Id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text, id)
}

/// Starts the binary with `name=value` set, expects it to stop at once
/// refusing to start, and answers what it said on stderr.
fn refused_start(name: &str, value: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_user-accounts"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(name, value)
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let stderr = refused_start("REDIS_POOL_SIZE", "lots");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("REDIS_POOL_SIZE"), "{stderr}");
}

#[test]
fn with_json_logs_the_errors_that_stop_a_start_are_json_too() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let taken_port = taken.local_addr().expect("an address").port().to_string();
    for (name, value) in [
        ("REDIS_ULR", "redis://127.0.0.1:6390/0"),
        ("REDIS_POOL_SIZE", "lots"),
        ("ROCKET_PORT", "eighty"),
        ("ROCKET_PORT", taken_port.as_str()),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LOG_FORMAT", "json")
            .env(name, value)
            .output()
            .expect("the binary runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<Value> = stderr
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect();
        assert!(
            lines.iter().any(|line| line["level"] == "error"
                && line["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(name))),
            "{stderr}"
        );
    }
}

/// `user-accounts config` in a fresh directory holding `dot_env` as its
/// `.env`, with `vars` in the environment.
fn config_output(dot_env: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(dir.join(".env"), dot_env).expect(".env written");
    let output = Command::new(env!("CARGO_BIN_EXE_user-accounts"))
        .arg("config")
        .current_dir(&dir)
        .env("STATIC_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn a_broken_dot_env_line_is_named_by_its_setting_without_its_value() {
    let output = config_output("REDIS_URL=redis://:hunter2@127.0.0.1:1/0 \"open\n", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the line of REDIS_URL is not NAME=value"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn serve_is_a_command_of_its_own() {
    let service = Service::start_with_args(&["serve"], &[]);
    let reply = ureq::get(&service.url("/ping")).call().expect("an answer");
    assert_eq!(reply.status(), 200);
}

#[test]
fn a_misspelt_setting_stops_the_start_naming_the_nearest_one() {
    let stderr = refused_start("REDIS_ULR", "redis://127.0.0.1:6390/0");
    assert!(
        stderr.contains("REDIS_ULR: not a setting; did you mean REDIS_URL?"),
        "{stderr}"
    );
    assert!(stderr.contains("ALLOW_UNKNOWN_SETTINGS=true"), "{stderr}");
}

#[test]
fn a_lower_case_setting_in_dot_env_is_a_mistake_config_names() {
    let output = config_output("redis_url=redis://127.0.0.1:6390/0\n", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("redis_url: settings are upper case; did you mean REDIS_URL?"),
        "{stderr}"
    );
}

#[test]
fn allow_unknown_settings_lets_a_misspelt_one_pass() {
    let output = config_output(
        "",
        &[
            ("SESION_IDLE_SECS", "5"),
            ("ALLOW_UNKNOWN_SETTINGS", "true"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn config_shows_each_setting_in_effect_and_where_it_came_from() {
    let output = config_output("LOG_FORMAT=json\n", &[("SESSION_IDLE_SECS", "120")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "LOG_FORMAT=json  # .env",
        "SESSION_IDLE_SECS=120  # environment",
        "SIGNUP=open  # default",
    ] {
        assert!(
            stdout.lines().any(|shown| shown == line),
            "{line} in:\n{stdout}"
        );
    }
}

#[test]
fn config_says_which_settings_a_redis_url_leaves_unused() {
    let output = config_output("REDIS_URL=redis://127.0.0.1:6390/2\n", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "REDIS_ADDRESS=127.0.0.1  # default, not used: REDIS_URL is set",
        "REDIS_DB=0  # default, not used: REDIS_URL is set",
        "REDIS_URL=redis://127.0.0.1:6390/2  # .env",
    ] {
        assert!(
            stdout.lines().any(|shown| shown == line),
            "{line} in:\n{stdout}"
        );
    }
}

#[test]
fn config_masks_secrets() {
    let secret = "a token secret of at least thirty-two bytes";
    let url = "redis://ops:hunter2-redis@127.0.0.1:6379/0";
    let output = config_output("", &[("TOKEN_SECRET", secret), ("REDIS_URL", url)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("TOKEN_SECRET=***  # environment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("REDIS_URL=redis://ops:***@127.0.0.1:6379/0  # environment"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(secret) && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

/// Runs the binary to its exit, failing the test if it is still running
/// after 20 s.
fn run_to_exit(command: &mut Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("the child's status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("the child's output");
            panic!(
                "the binary did not exit within 20 s:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the child's output")
}

#[test]
fn a_port_in_use_stops_the_start_naming_the_address_and_rocket_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = taken.local_addr().expect("its address").port();
    let output = run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", shared_redis_url())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exits non-zero: {stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}: ")),
        "names the address: {stderr}"
    );
    assert!(
        stderr.contains("ROCKET_PORT"),
        "names ROCKET_PORT: {stderr}"
    );
}

#[test]
fn the_start_up_line_names_the_redis_and_that_it_answered() {
    let service = Service::start(&[]);
    let redis = common::test_settings(&shared_redis_url(), "ua:", &[])
        .redis
        .target
        .to_string();
    assert_eq!(
        service.start_up_line(),
        format!(
            "user-accounts listening on http://127.0.0.1:{}; Redis {redis} answered",
            service.port
        )
    );
}

#[test]
fn the_start_up_line_says_when_redis_refused_the_connection_and_starts_anyway() {
    let closed = free_port();
    let service = Service::start(&[(
        "REDIS_URL",
        &format!("redis://:hunter2@127.0.0.1:{closed}/3"),
    )]);
    assert_eq!(
        service.start_up_line(),
        format!(
            "user-accounts listening on http://127.0.0.1:{}; Redis redis://127.0.0.1:{closed}/3 \
             turned the service down (Redis refused the connection); check the address in REDIS_URL \
             (or REDIS_ADDRESS and REDIS_PORT, or REDIS_SENTINELS); requests answer 503 until it \
             lets the service in",
            service.port
        )
    );
    assert!(!service.logs().contains("hunter2"), "{}", service.logs());
}

#[test]
fn the_start_up_line_says_to_migrate_data_in_an_earlier_layout() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let first_index = format!("{prefix}users:by_email");
    let mut redis = redis::Client::open(shared_redis_url())
        .and_then(|client| client.get_connection())
        .expect("test Redis reachable");
    redis::cmd("ZADD")
        .arg(&first_index)
        .arg(0)
        .arg(common::index_member(
            "ada@example.com",
            uuid::Uuid::new_v4(),
        ))
        .exec(&mut redis)
        .expect("ZADD");
    let service = Service::start(&[("REDIS_KEY_PREFIX", &prefix)]);
    let line = service.start_up_line();
    redis::cmd("DEL")
        .arg(&first_index)
        .exec(&mut redis)
        .expect("DEL");
    assert!(
        line.ends_with(
            "turned the service down (Redis holds data in an earlier release's layout: stop \
             every instance of that release and run `user-accounts migrate`); requests answer \
             503 meanwhile"
        ),
        "{line}"
    );
}

#[test]
fn the_start_up_line_says_when_redis_refused_the_credentials() {
    let server = common::RedisServer::start_with_password("right-password");
    let service = Service::start(&[("REDIS_URL", &server.url_with_password("wrong-password"))]);
    let line = service.start_up_line();
    assert!(
        line.contains("turned the service down (Redis refused the credentials: "),
        "{line}"
    );
    assert!(
        line.contains("check the user and password in REDIS_URL"),
        "{line}"
    );
    assert!(
        !service.logs().contains("wrong-password"),
        "{}",
        service.logs()
    );
}

#[test]
fn the_command_line_names_the_cause_of_a_redis_refusal_once() {
    let server = common::RedisServer::start_with_password("right-password");
    let output = run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .args(["admin-key", "create", "ops"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", server.url_with_password("wrong-password")),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Redis refused the credentials"), "{stderr}");
    assert_eq!(
        stderr.matches("Password authentication failed").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn the_content_length_of_a_json_reply_counts_its_final_newline() {
    let service = Service::start(&[]);
    let mut response = ureq::get(&service.url("/health/live"))
        .call()
        .expect("an answer");
    let length = response
        .headers()
        .get("Content-Length")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.body_mut().read_to_string().expect("a body");
    assert_eq!(body, "{\"status\":\"live\"}\n");
    assert_eq!(length, Some(body.len().to_string()));
}

#[test]
fn no_password_hash_or_token_reaches_a_response_or_a_log_line() {
    let service = Service::start(&[]);
    let (status, created, _) = send(
        "POST",
        &service.url("/api/users"),
        None,
        Some(&json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD})),
    );
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<Value>(&created).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, login, _) = send(
        "POST",
        &service.url("/api/sessions"),
        None,
        Some(&json!({"email": "ada@example.com", "password": PASSWORD})),
    );
    assert_eq!(status, 201, "{login}");
    let token = serde_json::from_str::<Value>(&login).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let admin_key = service.admin_key("admin");
    let mut bodies = vec![created];
    // Every request succeeds, so each has gone all the way through.
    for (method, path, credential, body) in [
        ("GET", "/api/sessions/current".to_owned(), &token, None),
        ("GET", format!("/api/users/{id}/sessions"), &token, None),
        (
            "PUT",
            format!("/api/users/{id}"),
            &token,
            Some(json!({"name": "Ada L.", "email": "ada@example.com"})),
        ),
        // A fresh login's session proves a password change on its own.
        (
            "PATCH",
            format!("/api/users/{id}"),
            &token,
            Some(json!({"new_password": "another passphrase here"})),
        ),
        ("GET", "/api/users?limit=10".to_owned(), &admin_key, None),
        (
            "GET",
            "/api/users/ada@example.com".to_owned(),
            &admin_key,
            None,
        ),
    ] {
        let (status, text, _) = send(method, &service.url(&path), Some(credential), body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {text}");
        bodies.push(text);
    }
    let (status, text, last_request) = send(
        "DELETE",
        &service.url(&format!("/api/users/{id}")),
        None,
        Some(&json!({"password": "another passphrase here"})),
    );
    assert_eq!(status, 200, "DELETE with the new password: {text}");
    bodies.push(text);
    let logs = service.logs_with(&last_request.expect("a request id"));
    for secret in [
        PASSWORD,
        "another passphrase here",
        &token,
        &admin_key,
        "$argon2id$",
    ] {
        assert!(
            !logs.contains(secret),
            "a log line holds {secret:?}:\n{logs}"
        );
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a response holds {secret:?}: {body}"
            );
        }
    }
}

#[test]
fn every_request_logs_one_line_with_its_id() {
    let service = Service::start(&[]);
    let agent = ureq::agent();
    let response = agent
        .get(&service.url("/ping"))
        .header("X-Request-Id", "req-abc-123")
        .call()
        .expect("pong");
    assert_eq!(
        response
            .headers()
            .get("X-Request-Id")
            .and_then(|v| v.to_str().ok()),
        Some("req-abc-123")
    );
    let logs = service.logs_with("req-abc-123");
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("req-abc-123"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    for part in ["method=GET", "route=/ping", "status=200", "latency_ms="] {
        assert!(lines[0].contains(part), "{part} missing in {}", lines[0]);
    }
}

#[test]
fn a_lookup_by_email_logs_its_request_line_and_nothing_else() {
    let service = Service::start(&[]);
    let other_lines = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter(|line| !line.contains("request_id="))
            .map(str::to_owned)
            .collect()
    };
    let key = service.admin_key("read");
    let before = other_lines(&service.logs());
    let (status, _, id) = send(
        "GET",
        &service.url("/api/users/nobody@example.com"),
        Some(&key),
        None,
    );
    assert_eq!(status, 404);
    let logs = service.logs_with(&id.expect("a request id"));
    assert_eq!(other_lines(&logs), before, "{logs}");
}

#[test]
fn json_log_lines_carry_the_request_fields() {
    let service = Service::start(&[("LOG_FORMAT", "json")]);
    let key = service.admin_key("read");
    let (status, _, id) = send(
        "GET",
        &service.url(&format!("/api/users/{}", uuid::Uuid::new_v4())),
        Some(&key),
        None,
    );
    assert_eq!(status, 404);
    let id = id.expect("a request id");
    let logs = service.logs_with(&id);
    let line = logs
        .lines()
        .find(|line| line.contains(&id))
        .expect("a line for the request");
    let entry: Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["route"], "/api/users/<user>");
    assert_eq!(entry["status"], 404);
    assert!(entry["latency_ms"].as_f64().is_some());
    assert!(entry["ts"].as_str().is_some());
}

#[test]
fn with_json_logs_every_line_from_start_to_shutdown_is_one_json_object() {
    let mut service = Service::start(&[("LOG_FORMAT", "json")]);
    let (status, _, _) = send("GET", &service.url("/ping"), None, None);
    assert_eq!(status, 200);
    service.signal("TERM");
    assert_eq!(service.wait(Duration::from_secs(10)), Some(0));
    let logs = service.logs();
    for line in logs.lines().filter(|line| !line.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{logs}"));
        if let Some(latency) = entry["latency_ms"].as_f64() {
            let micros = latency * 1000.0;
            assert!((micros - micros.round()).abs() < 1e-6, "{line}");
        }
    }
}

#[test]
fn a_bad_rocket_setting_is_named_with_its_value() {
    let stderr = refused_start("ROCKET_PORT", "eighty");
    assert!(
        stderr.contains("ROCKET_PORT") && stderr.contains("eighty"),
        "{stderr}"
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    // A costly hash keeps the sign-up in flight while the signal arrives.
    let mut service =
        Service::start(&[("ARGON2_MEMORY_KIB", "65536"), ("ARGON2_ITERATIONS", "16")]);
    let url = service.url("/api/users");
    let in_flight = std::thread::spawn(move || {
        send(
            "POST",
            &url,
            None,
            Some(&json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD})),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    service.signal("TERM");
    let (status, body, _) = in_flight.join().expect("the request thread");
    assert_eq!(status, 201, "the in-flight request completes: {body}");
    assert_eq!(
        service.wait(Duration::from_secs(15)),
        Some(0),
        "{}",
        service.logs()
    );
    assert!(
        ureq::get(&service.url("/health/live")).call().is_err(),
        "no longer accepting"
    );
    let logs = service.logs();
    assert!(
        logs.lines()
            .any(|line| line.contains("method=POST route=/api/users status=201")),
        "the in-flight request's line is written before the exit:\n{logs}"
    );
}

/// A redis-server that speaks only TLS, with a certificate from a private CA.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TlsRedis {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("tls-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extension file");
        // A private CA, and a server certificate it signs.
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -days 1 -keyout ca.key -out ca.pem -subj /CN=test-ca",
            "req -newkey rsa:2048 -nodes -keyout key.pem -out server.csr -subj /CN=localhost",
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out cert.pem -extfile server.ext",
        ] {
            let made = Command::new("openssl")
                .args(args.split(' '))
                .current_dir(&dir)
                .output()
                .expect("openssl is installed (scripts/test installs it)");
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the TLS redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn rediss_urls_connect_over_verified_tls() {
    let redis = TlsRedis::start();
    let url = format!("rediss://localhost:{}/0", redis.port);
    let ca = redis.dir.join("ca.pem");
    // Trusted the way operators trust a private CA.
    let service = Service::start(&[
        ("REDIS_URL", &url),
        ("SSL_CERT_FILE", ca.to_str().expect("utf-8")),
    ]);
    let (status, body, _) = send(
        "POST",
        &service.url("/api/users"),
        None,
        Some(&json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD})),
    );
    assert_eq!(status, 201, "{body}\n{}", service.logs());
    let key = service.admin_key("read");
    let (status, _, _) = send(
        "GET",
        &service.url("/api/users/ada@example.com"),
        Some(&key),
        None,
    );
    assert_eq!(status, 200);
}

#[test]
fn an_untrusted_redis_certificate_is_refused() {
    let redis = TlsRedis::start();
    let url = format!("rediss://localhost:{}/0", redis.port);
    let service = Service::start(&[("REDIS_URL", &url), ("REDIS_TIMEOUT_MS", "500")]);
    let (status, _, _) = send("GET", &service.url("/health/ready"), None, None);
    assert_eq!(status, 503, "{}", service.logs());
}
