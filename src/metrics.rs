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
