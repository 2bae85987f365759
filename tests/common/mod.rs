//! The test harness: a throwaway `redis-server` per test binary, a key
//! prefix per test, and one helper per endpoint.
#![allow(dead_code)] // Each test binary uses its own subset of the helpers.

pub mod cluster;
pub mod leftovers;
pub mod mailbox;
pub mod smtp;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::tokio::sync::OnceCell;
use serde_json::{json, Value};
use user_accounts::accounts::Accounts;
use user_accounts::config::Settings;
use user_accounts::domain::{AdminKey, KeyName, KeyScope, SessionToken, UserId};
use user_accounts::store::layout::{self, user_fields, Bucket, Keys};

/// A `redis-server` on a free loopback port, stopped when its handle drops
/// or, for the shared one, when the test process exits.
pub struct RedisServer {
    port: u16,
    /// Set with `requirepass` when given.
    password: Option<String>,
    /// More options for `redis-server`, such as a cluster node's.
    options: Vec<String>,
    watchdog: Option<(Child, ChildStdin)>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that refuses clients without `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Self {
        Self::start_with_options(password, Vec::new())
    }

    fn start_with_options(password: Option<String>, mut options: Vec<String>) -> Self {
        // A file of its own: a replica writes the copy it receives, and a
        // server starting where another left one would load its keys.
        let dump = format!("dump-{}.rdb", uuid::Uuid::new_v4().simple());
        options.extend(["--dbfilename".to_owned(), dump]);
        let mut server = Self {
            port: free_port(),
            password,
            options,
            watchdog: None,
        };
        server.restart();
        server
    }

    /// A server that runs as a node of a Redis Cluster, not yet joined to
    /// one.
    pub fn start_cluster_node() -> Self {
        let config_file = format!("nodes-{}.conf", uuid::Uuid::new_v4().simple());
        let options = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &config_file,
        ]
        .into_iter()
        .chain(["--cluster-node-timeout", "2000"])
        .map(str::to_owned)
        .collect();
        Self::start_with_options(None, options)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        let password = self.password.as_deref().unwrap_or_default();
        self.url_with_password(password)
    }

    /// The server's URL with `password` in it, right or wrong.
    pub fn url_with_password(&self, password: &str) -> String {
        match password {
            "" => format!("redis://127.0.0.1:{}/", self.port),
            password => format!("redis://:{password}@127.0.0.1:{}/", self.port),
        }
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.watchdog.is_none(), "the server is running already");
        // The shell kills redis-server when our end of its stdin closes, which
        // happens when this process exits however it exits: no server outlives
        // the tests.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & server=$!; read _; kill $server; wait $server"#)
            .arg("sh")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass", password]),
            )
            .args(&self.options)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh is available");
        let stdin = child.stdin.take().expect("stdin is piped");
        self.watchdog = Some((child, stdin));
        self.wait_until(true);
    }

    /// Kills the server with SIGKILL, as a crash would: no shutdown, and no
    /// last word to its replicas.
    pub fn kill(&mut self) {
        let mut connection = redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("the server answers");
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut connection)
            .expect("INFO server");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("INFO names the process")
            .trim()
            .to_owned();
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success(), "kill -KILL {pid}");
        self.stop();
    }

    /// Stops the server and waits until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        self.wait_until(false);
    }

    fn wait_until(&self, answering: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(&self.url()) == answering {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not {} within 10 s",
            self.port,
            if answering { "start" } else { "stop" }
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn ping(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_ok()
}

/// The user id `id` spells, for the crate's own key names.
pub fn user_id(id: &str) -> UserId {
    UserId::parse(id).unwrap_or_else(|| panic!("{id} is not a user id"))
}

/// The email index's member for `email` held by the user `id`.
pub fn index_member(email: &str, id: impl std::fmt::Display) -> String {
    layout::index_member(email, user_id(&id.to_string()))
}

/// The id of a user as the API returns it.
pub fn id_of(user: &Value) -> &str {
    user["id"].as_str().expect("a user has a string id")
}

/// The body of a sign-up, or of a `PUT` that proves itself with a password.
pub fn user_body(name: &str, email: &str, password: &str) -> Value {
    json!({"name": name, "email": email, "password": password})
}

/// The email of each user on a page of `GET /api/users`, in order.
pub fn emails_on(page: &Value) -> Vec<&str> {
    page["users"]
        .as_array()
        .expect("a page has a users array")
        .iter()
        .map(|user| user["email"].as_str().expect("each user has an email"))
        .collect()
}

/// A well-formed admin key that no store knows: checking it takes a look-up.
pub fn unknown_key() -> String {
    AdminKey::generate().expose().to_owned()
}

/// The public id of the session `token` opened: what Redis keeps of it.
pub fn session_id(token: &str) -> String {
    SessionToken::parse(token)
        .expect("a well-formed token")
        .id()
        .to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// `TEST_REDIS_URL`, or a server this test binary starts on first use.
pub fn shared_redis_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var("TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                require_redis_server();
                let server = Box::leak(Box::new(RedisServer::start()));
                server.url()
            }
        })
        .clone()
}

pub fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y \
         redis-server`), or point TEST_REDIS_URL at a Redis the tests may write to."
    );
}

/// The application under test, with its own key prefix.
pub struct TestApp {
    pub client: Client,
    pub prefix: String,
    pub redis_url: String,
    /// The setting that names the Redis (`REDIS_URL` or
    /// `REDIS_CLUSTER_NODES`) and its value, for the command line.
    redis_target: (String, String),
    admin_key: OnceCell<String>,
    /// Dropped after `client`: by then the app has written out every line.
    request_log: RequestLog,
}

/// The app's request log, kept in memory and shown (on stderr, which the
/// test harness captures) only when the test fails.
#[derive(Clone, Default)]
struct RequestLog(Arc<Mutex<Vec<u8>>>);

impl Write for RequestLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!(
                "request log of the app under test:\n{}",
                String::from_utf8_lossy(&lines)
            );
        }
    }
}

/// Settings for tests: cheap argon2 parameters keep the suite fast.
pub fn test_settings(redis_url: &str, prefix: &str, extra: &[(&str, &str)]) -> Settings {
    settings_for(("REDIS_URL", redis_url), prefix, extra)
}

/// Test settings with `target` (`REDIS_URL` or `REDIS_CLUSTER_NODES` and
/// its value) naming the Redis.
fn settings_for(target: (&str, &str), prefix: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = [
        target,
        ("REDIS_KEY_PREFIX", prefix),
        ("REDIS_TIMEOUT_MS", "1000"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    for (name, value) in extra {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid test settings")
}

/// What a run of `user-accounts doctor` said, and whether it found the
/// data consistent.
pub struct DoctorRun {
    pub success: bool,
    pub stdout: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_on(&shared_redis_url(), &[]).await
    }

    /// An app on the shared Redis with a fresh prefix and extra settings.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_on(&shared_redis_url(), extra).await
    }

    /// An app on `redis_url` with a fresh prefix and extra settings.
    pub async fn spawn_on(redis_url: &str, extra: &[(&str, &str)]) -> Self {
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        Self::spawn_with_prefix(redis_url, &prefix, extra).await
    }

    /// An app on `cluster`, found through all of its nodes, with a fresh
    /// prefix and extra settings.
    pub async fn spawn_on_cluster(cluster: &cluster::RedisCluster, extra: &[(&str, &str)]) -> Self {
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let nodes = cluster.node_urls().join(",");
        let target = ("REDIS_CLUSTER_NODES", nodes.as_str());
        Self::spawn_with_settings(target, &cluster.node_urls()[0], &prefix, extra).await
    }

    /// A second instance over the same data, as after a restart.
    pub async fn spawn_with_prefix(redis_url: &str, prefix: &str, extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_settings(("REDIS_URL", redis_url), redis_url, prefix, extra).await
    }

    async fn spawn_with_settings(
        target: (&str, &str),
        redis_url: &str,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let settings = settings_for(target, prefix, extra);
        let figment = rocket::Config::figment().merge(("log_level", "critical"));
        let request_log = RequestLog::default();
        let rocket = user_accounts::build_with_access_log(settings, figment, request_log.clone())
            .expect("app builds");
        let client = Client::tracked(rocket).await.expect("valid rocket");
        Self {
            client,
            prefix: prefix.to_owned(),
            redis_url: redis_url.to_owned(),
            redis_target: (target.0.to_owned(), target.1.to_owned()),
            admin_key: OnceCell::new(),
            request_log,
        }
    }

    /// The service the app runs, for what the command line does.
    pub fn accounts(&self) -> &Accounts {
        self.client
            .rocket()
            .state::<std::sync::Arc<Accounts>>()
            .expect("managed")
    }

    /// A new key of `scope`, made through the service as
    /// `user-accounts admin-key create` makes one.
    pub async fn key(&self, scope: KeyScope) -> String {
        let accounts = self.accounts();
        let name = format!("test-{}", uuid::Uuid::new_v4().simple());
        let name = KeyName::parse(&name).expect("a valid name");
        accounts
            .create_admin_key(name, scope)
            .await
            .expect("key created")
            .expose()
            .to_owned()
    }

    /// This app's admin key, made on first use.
    pub async fn admin_key(&self) -> &str {
        self.admin_key
            .get_or_init(|| self.key(KeyScope::Admin))
            .await
    }

    /// `GET uri` with `Authorization: Bearer <credential>`.
    pub async fn get_as(&self, uri: &str, credential: &str) -> Reply {
        self.with_token(rocket::http::Method::Get, uri, credential, None)
            .await
    }

    pub async fn post_user(&self, body: &Value) -> Reply {
        self.send_json(self.client.post("/api/users"), body).await
    }

    /// `POST /api/users` with a name, an email and a password.
    pub async fn sign_up(&self, name: &str, email: &str, password: &str) -> Reply {
        self.post_user(&user_body(name, email, password)).await
    }

    /// Creates a user and returns its JSON, failing the test otherwise.
    pub async fn create_user(&self, name: &str, email: &str, password: &str) -> Value {
        let reply = self.sign_up(name, email, password).await;
        assert_eq!(
            reply.status,
            Status::Created,
            "creating {email}: {}",
            reply.body
        );
        reply.json()
    }

    pub async fn get(&self, uri: &str) -> Reply {
        Reply::read(self.client.get(uri.to_owned()).dispatch().await).await
    }

    /// `GET /api/users/{id_or_email}` with the app's admin key.
    pub async fn get_user(&self, id_or_email: &str) -> Reply {
        let uri = format!("/api/users/{id_or_email}");
        self.get_as(&uri, self.admin_key().await).await
    }

    /// `GET uri` with the app's admin key.
    pub async fn get_as_admin(&self, uri: &str) -> Reply {
        self.get_as(uri, self.admin_key().await).await
    }

    pub async fn put_user(&self, id: &str, body: &Value) -> Reply {
        self.send_json(self.client.put(format!("/api/users/{id}")), body)
            .await
    }

    pub async fn patch_user(&self, id: &str, body: &Value) -> Reply {
        self.send_json(self.client.patch(format!("/api/users/{id}")), body)
            .await
    }

    pub async fn delete_user(&self, id: &str, body: &Value) -> Reply {
        self.send_json(self.client.delete(format!("/api/users/{id}")), body)
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.send_json(
            self.client.post("/api/sessions"),
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// A login from the TCP peer `address` (no port), with extra headers.
    pub async fn login_from(
        &self,
        address: &str,
        headers: &[(&str, &str)],
        email: &str,
        password: &str,
    ) -> Reply {
        let peer = std::net::SocketAddr::new(address.parse().expect("an address"), 40_000);
        let mut request = self.client.post("/api/sessions").remote(peer);
        for (name, value) in headers {
            request = request.header(Header::new(name.to_string(), value.to_string()));
        }
        let body = json!({"email": email, "password": password});
        self.send_json(request, &body).await
    }

    /// `PUT /api/users/{id}` with `Authorization: Bearer <credential>`.
    pub async fn put_user_as(&self, id: &str, credential: &str, body: &Value) -> Reply {
        let uri = format!("/api/users/{id}");
        self.with_token(Method::Put, &uri, credential, Some(body))
            .await
    }

    /// `PATCH /api/users/{id}` with `Authorization: Bearer <credential>`.
    pub async fn patch_user_as(&self, id: &str, credential: &str, body: &Value) -> Reply {
        let uri = format!("/api/users/{id}");
        self.with_token(Method::Patch, &uri, credential, Some(body))
            .await
    }

    /// `DELETE /api/users/{id}` with `Authorization: Bearer <credential>`.
    pub async fn delete_user_as(&self, id: &str, credential: &str) -> Reply {
        let uri = format!("/api/users/{id}");
        self.with_token(Method::Delete, &uri, credential, None)
            .await
    }

    /// `GET /api/users/{id}/sessions` with `Authorization: Bearer <credential>`.
    pub async fn list_sessions(&self, id: &str, credential: &str) -> Reply {
        self.get_as(&format!("/api/users/{id}/sessions"), credential)
            .await
    }

    /// Logs in and returns the token, failing the test otherwise.
    pub async fn token_for(&self, email: &str, password: &str) -> String {
        let reply = self.login(email, password).await;
        assert_eq!(
            reply.status,
            Status::Created,
            "logging in {email}: {}",
            reply.body
        );
        reply.json()["token"].as_str().expect("a token").to_owned()
    }

    /// `GET /api/sessions/current`: a read, and a write that renews the session.
    pub async fn current_session(&self, token: &str) -> Reply {
        self.with_token(
            rocket::http::Method::Get,
            "/api/sessions/current",
            token,
            None,
        )
        .await
    }

    /// Asserts that the session of `token` has ended.
    pub async fn assert_signed_out(&self, token: &str) {
        let reply = self.current_session(token).await;
        assert_eq!(
            reply.status,
            Status::Unauthorized,
            "the session goes on: {}",
            reply.body
        );
    }

    /// Asserts that the session of `token` goes on (which renews it).
    pub async fn assert_signed_in(&self, token: &str) {
        let reply = self.current_session(token).await;
        assert_eq!(
            reply.status,
            Status::Ok,
            "the session ended: {}",
            reply.body
        );
    }

    /// A request with `Authorization: Bearer <token>` and an optional JSON body.
    pub async fn with_token(
        &self,
        method: rocket::http::Method,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .client
            .req(method, uri.to_owned())
            .header(Header::new("Authorization", format!("Bearer {token}")));
        if let Some(body) = body {
            request = request.header(ContentType::JSON).body(body.to_string());
        }
        Reply::read(request.dispatch().await).await
    }

    /// `POST uri` with a JSON body and no credential.
    pub async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.send_json(self.client.post(uri.to_owned()), body).await
    }

    /// `POST uri` with a JSON body and no credential, from the client
    /// address `address`.
    pub async fn post_json_from(&self, address: &str, uri: &str, body: &Value) -> Reply {
        let peer = std::net::SocketAddr::new(address.parse().expect("an address"), 40_000);
        self.send_json(self.client.post(uri.to_owned()).remote(peer), body)
            .await
    }

    async fn send_json(
        &self,
        request: rocket::local::asynchronous::LocalRequest<'_>,
        body: &Value,
    ) -> Reply {
        Reply::read(
            request
                .header(ContentType::JSON)
                .body(body.to_string())
                .dispatch()
                .await,
        )
        .await
    }

    /// A request with `headers` and no body.
    pub async fn with_headers(
        &self,
        method: rocket::http::Method,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.req(method, uri.to_owned());
        for (name, value) in headers {
            request = request.header(Header::new(name.to_string(), value.to_string()));
        }
        Reply::read(request.dispatch().await).await
    }

    /// A raw request, for bodies and headers the helpers would not send.
    pub async fn send_raw(
        &self,
        method: rocket::http::Method,
        uri: &str,
        content_type: Option<ContentType>,
        body: impl AsRef<[u8]>,
    ) -> Reply {
        let mut request = self.client.req(method, uri.to_owned()).body(body);
        if let Some(content_type) = content_type {
            request = request.header(content_type);
        }
        Reply::read(request.dispatch().await).await
    }

    /// `POST /api/users` with `body` sent as it is, under `content_type`.
    pub async fn post_user_raw(
        &self,
        content_type: Option<ContentType>,
        body: impl AsRef<[u8]>,
    ) -> Reply {
        self.send_raw(Method::Post, "/api/users", content_type, body)
            .await
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis_url.as_str())
            .and_then(|client| client.get_connection())
            .expect("test Redis reachable")
    }

    /// A connection to the app's data that follows a cluster's slots
    /// when the app runs on one.
    pub fn data(&self) -> Box<dyn redis::ConnectionLike> {
        let (setting, value) = &self.redis_target;
        if setting != "REDIS_CLUSTER_NODES" {
            return Box::new(self.redis());
        }
        let nodes: Vec<&str> = value.split(',').collect();
        Box::new(
            redis::cluster::ClusterClient::new(nodes)
                .and_then(|client| client.get_connection())
                .expect("test cluster reachable"),
        )
    }

    /// The crate's own store over this app's data, for tests that call it
    /// directly between two steps the HTTP API takes at once.
    pub fn store(&self) -> user_accounts::store::Store {
        let settings = test_settings(&self.redis_url, &self.prefix, &[]);
        let metrics = user_accounts::metrics::Metrics::new().expect("metrics register");
        user_accounts::store::Store::new(&settings.redis, std::sync::Arc::new(metrics))
            .expect("a store over the test Redis")
    }

    /// The app's key names, from the crate's own layout.
    pub fn keys_of_layout(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// The bucket of the email index that holds `email`.
    pub fn index_key_of(&self, email: &str) -> String {
        self.keys_of_layout().email_index_of(email)
    }

    /// Every bucket of the email index.
    pub fn index_keys(&self) -> Vec<String> {
        let keys = self.keys_of_layout();
        Bucket::all()
            .map(|bucket| keys.email_index(bucket))
            .collect()
    }

    pub fn user_key(&self, id: &str) -> String {
        self.keys_of_layout().user(user_id(id))
    }

    pub fn session_key(&self, token: &str) -> String {
        let token = SessionToken::parse(token).expect("a well-formed token");
        self.keys_of_layout().session(&token.id())
    }

    /// Dates the last use of the session of `token` back by `by`, so that
    /// its next use renews it (a write) instead of only reading it.
    pub fn date_last_use_back(&self, token: &str, by: Duration) {
        let by = i64::try_from(by.as_millis()).expect("a short duration");
        redis::cmd("HSET")
            .arg(self.session_key(token))
            .arg(layout::session_fields::LAST_SEEN)
            .arg(chrono::Utc::now().timestamp_millis() - by)
            .exec(&mut self.redis())
            .expect("HSET last_seen");
    }

    /// The user's session index: a sorted set of session ids.
    pub fn sessions_of_key(&self, id: &str) -> String {
        self.keys_of_layout().session_index(user_id(id))
    }

    /// The plain set of session ids that versions before the index kept.
    pub fn legacy_sessions_of_key(&self, id: &str) -> String {
        self.keys_of_layout().legacy_session_set(user_id(id))
    }

    /// The event stream of the user `id`'s bucket.
    pub fn events_key(&self, id: &str) -> String {
        self.keys_of_layout().events(user_id(id))
    }

    /// The user's stored argon2 hash, reassembled as a PHC string.
    pub fn stored_password_hash(&self, id: &str) -> String {
        let (params, salt, hash): (String, String, String) = redis::cmd("HMGET")
            .arg(self.user_key(id))
            .arg(&[
                user_fields::PASSWORD_PARAMS,
                user_fields::PASSWORD_SALT,
                user_fields::PASSWORD_HASH,
            ])
            .query(&mut self.redis())
            .expect("HMGET");
        format!("{params}${salt}${hash}")
    }

    /// The members of every bucket of the email index, in order.
    pub fn index_members(&self) -> Vec<String> {
        let mut conn = self.data();
        let mut members: Vec<String> = self
            .index_keys()
            .iter()
            .flat_map(|index| {
                redis::cmd("ZRANGE")
                    .arg(index)
                    .arg(0)
                    .arg(-1)
                    .query::<Vec<String>>(&mut *conn)
                    .expect("ZRANGE")
            })
            .collect();
        members.sort();
        members
    }

    /// Whether Redis holds `key`.
    pub fn exists(&self, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query(&mut *self.data())
            .expect("EXISTS")
    }

    /// Asserts that no session is left, nor any index of sessions.
    pub fn assert_no_session_keys(&self) {
        let keys = self.keys();
        assert!(!keys.iter().any(|key| key.contains(":session")), "{keys:?}");
    }

    /// Asserts that no key of the app names `secret` and no value holds it
    /// in clear (a `DUMP` of every key).
    pub fn assert_nowhere_in_redis(&self, secret: &str) {
        let mut redis = self.redis();
        for key in self.keys() {
            assert!(!key.contains(secret), "{key} names it");
            let dump: Option<Vec<u8>> = redis::cmd("DUMP")
                .arg(&key)
                .query(&mut redis)
                .expect("DUMP");
            let dump = String::from_utf8_lossy(&dump.unwrap_or_default()).into_owned();
            assert!(!dump.contains(secret), "{key} holds it in clear");
        }
    }

    /// Every key under this app's prefix that holds account data: the
    /// admin keys a test makes to read with, and the layout's marker, are
    /// left out.
    pub fn keys(&self) -> Vec<String> {
        let layout = self.keys_of_layout();
        let mut keys = self.keys_with(&mut self.redis());
        keys.retain(|key| !layout.is_admin_key(key) && *key != layout.layout_marker());
        keys.sort();
        keys
    }
}

impl TestApp {
    /// Runs the binary's command line `args` over this app's data.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        self.run_cli_with(args, &[])
    }

    /// [`TestApp::run_cli`] with `extra` settings in its environment.
    pub fn run_cli_with(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_user-accounts"))
            .args(args)
            .env(&self.redis_target.0, &self.redis_target.1)
            .env("REDIS_KEY_PREFIX", &self.prefix)
            .envs(extra.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("the binary runs")
    }

    /// Runs `user-accounts doctor`, with `--repair` when `repair`.
    pub fn doctor(&self, repair: bool) -> DoctorRun {
        let output = if repair {
            self.run_cli(&["doctor", "--repair"])
        } else {
            self.run_cli(&["doctor"])
        };
        DoctorRun {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    /// Puts this app's data back as the first layout had it, written by
    /// hand rather than by the crate's layout: no hash tags, one email
    /// index, no marker.
    pub fn rewrite_in_first_layout(&self) {
        let mut conn = self.redis();
        let keys = self.keys_of_layout();
        let first_index = format!("{}users:by_email", self.prefix);
        for key in self.keys_with(&mut conn) {
            let Some(name) = self.without_tag(&key) else {
                continue;
            };
            if name == first_index {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query(&mut conn)
                    .expect("ZRANGE");
                redis::pipe()
                    .cmd("ZADD")
                    .arg(&first_index)
                    .arg(
                        members
                            .iter()
                            .flat_map(|m| ["0", m.as_str()])
                            .collect::<Vec<_>>(),
                    )
                    .cmd("DEL")
                    .arg(&key)
                    .exec(&mut conn)
                    .expect("index moved");
            } else if name.starts_with(&format!("{}email_reverts:", self.prefix)) {
                let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(&mut conn)
                    .expect("ZRANGE");
                let mut rewrite = redis::pipe();
                rewrite.cmd("RENAME").arg(&key).arg(&name);
                for (member, score) in &members {
                    let untagged = self.without_tag(member).unwrap_or_else(|| member.clone());
                    rewrite.cmd("ZREM").arg(&name).arg(member);
                    rewrite.cmd("ZADD").arg(&name).arg(*score).arg(untagged);
                }
                rewrite.exec(&mut conn).expect("revert list rewritten");
            } else {
                redis::cmd("RENAME")
                    .arg(&key)
                    .arg(&name)
                    .exec(&mut conn)
                    .expect("RENAME");
            }
        }
        redis::cmd("DEL")
            .arg(keys.layout_marker())
            .exec(&mut conn)
            .expect("DEL marker");
    }

    /// `key` with the hash tag after the prefix taken out; `None` when it
    /// has none.
    fn without_tag(&self, key: &str) -> Option<String> {
        let (_, rest) = key
            .strip_prefix(&self.prefix)?
            .strip_prefix('{')?
            .split_once('}')?;
        Some(format!("{}{rest}", self.prefix))
    }
}

impl Drop for TestApp {
    /// Leaves nothing behind, which matters on a shared `TEST_REDIS_URL`.
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.redis_url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        else {
            return;
        };
        let keys = self.keys_with(&mut conn);
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(keys).exec(&mut conn);
        }
    }
}

impl TestApp {
    /// SCAN, never KEYS: the tests may share a Redis with others.
    fn keys_with(&self, conn: &mut redis::Connection) -> Vec<String> {
        redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}*", self.prefix))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter::<String>(conn)
            .map(|iter| iter.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }
}

/// A response, read fully so tests can inspect it after the request ends.
pub struct Reply {
    pub status: Status,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub async fn read(response: LocalResponse<'_>) -> Self {
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|header: Header<'_>| (header.name().to_string(), header.value().to_string()))
            .collect();
        let body = response.into_string().await.unwrap_or_default();
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.body))
    }

    /// The headers as `name: value` lines, sorted, but for the two that
    /// differ on every answer (`Date`, `X-Request-Id`).
    pub fn lasting_headers(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| !["date", "x-request-id"].contains(&name.to_lowercase().as_str()))
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        lines.sort();
        lines
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Asserts an RFC 9457 problem response with `status`, whatever its detail.
    pub fn assert_problem_status(&self, status: Status) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("Content-Type"),
            Some("application/problem+json"),
            "problem responses are application/problem+json"
        );
    }

    /// Asserts an RFC 9457 problem response with `status` and `detail`.
    pub fn assert_problem(&self, status: Status, detail: &str) {
        self.assert_problem_status(status);
        let body = self.json();
        assert_eq!(body["status"], status.code, "status field: {body}");
        assert_eq!(body["detail"], detail, "detail field: {body}");
        assert!(body["type"].is_string(), "type field: {body}");
        assert!(body["title"].is_string(), "title field: {body}");
    }

    /// The messages of the `errors` entries for `field`.
    pub fn field_errors(&self, field: &str) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter(|error| error["field"] == field)
                    .filter_map(|error| error["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}
