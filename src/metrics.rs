//! Prometheus metrics, served at `/metrics`. One registry per application
//! (no globals), handed to the parts that count.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub pool_wait_seconds: prometheus::Histogram,
    pub pool_size: IntGauge,
    pub pool_connections: IntGauge,
    pub pool_idle: IntGauge,
    pub redis_errors: IntCounter,
    pub read_connections_opened: IntCounter,
    pub script_connections_opened: IntCounter,
    pub argon2_waiting: IntGauge,
    pub argon2_running: IntGauge,
    pub argon2_refused: IntCounter,
    pub sessions_created: IntCounter,
    pub mail_queued: IntCounter,
    pub mail_held_back: IntCounter,
    pub mail_sent: IntCounter,
    pub mail_retried: IntCounter,
    pub mail_dead: IntCounter,
    pub mail_expired: IntCounter,
    pub mail_send_seconds: prometheus::Histogram,
    pub mail_queue_length: IntGauge,
    pub mail_retry_waiting: IntGauge,
    pub mail_dead_letters: IntGauge,
}

impl Metrics {
    /// # Errors
    /// Only if two metrics were given one name, which is a programming error
    /// that every test run would catch.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        let pool_wait_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "redis_pool_wait_seconds",
                "Time spent waiting for a pooled Redis connection",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0,
            ]),
        )?;
        let pool_size = IntGauge::new("redis_pool_size", "Most connections the pool opens")?;
        let pool_connections =
            IntGauge::new("redis_pool_connections", "Connections the pool holds")?;
        let pool_idle = IntGauge::new(
            "redis_pool_idle_connections",
            "Idle connections in the pool",
        )?;
        let redis_errors = IntCounter::new(
            "redis_errors_total",
            "Redis commands or checkouts that failed",
        )?;
        let read_connections_opened = IntCounter::new(
            "redis_read_connections_opened_total",
            "Shared read connections opened: the first, then one after each failure",
        )?;
        let script_connections_opened = IntCounter::new(
            "redis_script_connections_opened_total",
            "Shared connections for atomic scripts opened: the first, then one after each failure",
        )?;
        let argon2_waiting =
            IntGauge::new("argon2_jobs_waiting", "argon2 jobs waiting for a permit")?;
        let argon2_running = IntGauge::new("argon2_jobs_running", "argon2 jobs running")?;
        let argon2_refused = IntCounter::new(
            "argon2_jobs_refused_total",
            "argon2 jobs refused because the queue was full",
        )?;
        let sessions_created = IntCounter::new("sessions_created_total", "Login sessions opened")?;
        let mail_queued = IntCounter::new("mail_queued_total", "Mail messages queued here")?;
        let mail_held_back = IntCounter::new(
            "mail_held_back_total",
            "Mail messages not queued: their recipient had MAIL_MAX_PER_RECIPIENT in the last hour",
        )?;
        let mail_sent = IntCounter::new(
            "mail_sent_total",
            "Mail messages the SMTP server (or the mail directory) accepted",
        )?;
        let mail_retried = IntCounter::new(
            "mail_retried_total",
            "Failed mail attempts that will be retried",
        )?;
        let mail_dead = IntCounter::new(
            "mail_dead_total",
            "Mail messages moved to the dead letters after their last attempt",
        )?;
        let mail_expired = IntCounter::new(
            "mail_expired_total",
            "Mail messages dropped unsent because their code had expired",
        )?;
        let mail_send_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new("mail_send_seconds", "Time to hand one message over").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let mail_queue_length = IntGauge::new(
            "mail_queue_length",
            "Mail messages in the queue, as the sender last saw it",
        )?;
        let mail_retry_waiting = IntGauge::new(
            "mail_retry_waiting",
            "Mail messages waiting for a retry, as the sender last saw it",
        )?;
        let mail_dead_letters = IntGauge::new(
            "mail_dead_letters",
            "Mail dead letters, as the sender last saw them",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(pool_wait_seconds.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(read_connections_opened.clone()))?;
        registry.register(Box::new(script_connections_opened.clone()))?;
        registry.register(Box::new(argon2_waiting.clone()))?;
        registry.register(Box::new(argon2_running.clone()))?;
        registry.register(Box::new(argon2_refused.clone()))?;
        registry.register(Box::new(sessions_created.clone()))?;
        registry.register(Box::new(mail_queued.clone()))?;
        registry.register(Box::new(mail_held_back.clone()))?;
        registry.register(Box::new(mail_sent.clone()))?;
        registry.register(Box::new(mail_retried.clone()))?;
        registry.register(Box::new(mail_dead.clone()))?;
        registry.register(Box::new(mail_expired.clone()))?;
        registry.register(Box::new(mail_send_seconds.clone()))?;
        registry.register(Box::new(mail_queue_length.clone()))?;
        registry.register(Box::new(mail_retry_waiting.clone()))?;
        registry.register(Box::new(mail_dead_letters.clone()))?;
        Ok(Self {
            registry,
            requests,
            request_seconds,
            pool_wait_seconds,
            pool_size,
            pool_connections,
            pool_idle,
            redis_errors,
            read_connections_opened,
            script_connections_opened,
            argon2_waiting,
            argon2_running,
            argon2_refused,
            sessions_created,
            mail_queued,
            mail_held_back,
            mail_sent,
            mail_retried,
            mail_dead,
            mail_expired,
            mail_send_seconds,
            mail_queue_length,
            mail_retry_waiting,
            mail_dead_letters,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
