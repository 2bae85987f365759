//! The sender: a task started when the service lifts off and stopped when
//! it shuts down. Each round it moves due retries back to the queue, takes
//! over messages a stopped instance left half done, reads new messages
//! (blocking on a connection of its own), and hands them to the transport,
//! several at once. A sent message leaves the queue at once; a failed one
//! waits for its retry, or joins the dead letters after its last attempt.
//!
//! On shutdown it starts no new send, lets the sends under way finish for
//! up to the shutdown grace period less a second, puts every message it
//! took and did not finish back in the queue for another instance, leaves
//! the consumer group and stops; Rocket waits for it that long. A read in
//! progress blocks for at most [`MAX_BLOCK`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::futures::stream::{FuturesUnordered, StreamExt};
use rocket::tokio::sync::watch;
use rocket::tokio::task::{self, JoinHandle};
use rocket::tokio::time;
use rocket::{Orbit, Rocket};

use super::smtp::SMTP_CONNECTIONS;
use super::{after, backoff, Composer, MailError, SendFailure, Transport};
use crate::config::{LogFormat, MailSettings, RedisSettings};
use crate::domain::{CodeSealer, QueuedMail};
use crate::logging::log_line;
use crate::metrics::Metrics;
use crate::store::{Delivery, MailConsumer, QueueEntry, StoreError};

/// The longest one read waits for a message: the bound on how long a stop
/// request waits for the read in progress.
pub const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Messages read, claimed or released per round.
const BATCH: usize = 32;

/// A message that senders stopped while holding (crashed, killed) is taken
/// over by another; after this many deliveries it goes to the dead letters
/// instead, in case it is what stops them.
const MAX_DELIVERIES: u64 = 5;
const STOPPED_SENDERS: &str = "its senders stopped while holding it, too many times";

/// How often the queue's lengths are read for the metrics.
const FIGURES_EVERY: Duration = Duration::from_secs(5);

/// After a Redis failure, the sender tries again this much later.
const REDIS_PAUSE: Duration = Duration::from_secs(1);

/// A reader of the group that holds nothing and has not read for this long
/// is an instance that was killed: it is removed from the group.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The fairing that starts the sender at liftoff and stops it on shutdown.
pub struct MailSender {
    ready: Mutex<Option<Sender>>,
    running: Mutex<Option<Running>>,
    log_format: LogFormat,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MailSender {
    /// The sender for `mail`, or `None` when mail is off. The templates are
    /// loaded and tried, and a mail directory created, here: a problem with
    /// either stops the service at start.
    pub fn new(
        mail: &MailSettings,
        redis: &RedisSettings,
        metrics: Arc<Metrics>,
        log_format: LogFormat,
        sealer: CodeSealer,
    ) -> Result<Option<Self>, MailError> {
        let Some(transport) = Transport::new(mail)? else {
            return Ok(None);
        };
        let composer = Composer::new(mail, sealer)?;
        let name = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let sender = Sender {
            consumer: None,
            redis: redis.clone(),
            name,
            composer: Arc::new(composer),
            transport: Arc::new(transport),
            max_attempts: mail.max_attempts,
            max_per_recipient: mail.max_per_recipient,
            retry_base: mail.retry_base,
            claim_after: mail.claim_after,
            metrics,
            log_format,
            drain: Duration::from_secs(4),
        };
        Ok(Some(Self {
            ready: Mutex::new(Some(sender)),
            running: Mutex::new(None),
            log_format,
        }))
    }
}

#[rocket::async_trait]
impl Fairing for MailSender {
    fn info(&self) -> Info {
        Info {
            name: "mail sender",
            kind: Kind::Liftoff | Kind::Shutdown,
        }
    }

    async fn on_liftoff(&self, _: &Rocket<Orbit>) {
        let Some(sender) = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let (stop, stopping) = watch::channel(false);
        let task = rocket::tokio::spawn(sender.run(stopping));
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running { stop, task });
    }

    async fn on_shutdown(&self, rocket: &Rocket<Orbit>) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(Running { stop, task }) = running else {
            return;
        };
        let _ = stop.send(true);
        let grace = crate::config::shutdown_grace(rocket.config());
        if time::timeout(grace, task).await.is_err() {
            crate::logging::log_line(
                self.log_format,
                "warn",
                "mail: the sender did not stop within the shutdown grace period; another \
                 instance takes over what it held after MAIL_CLAIM_AFTER_MS",
            );
        }
    }
}

struct Sender {
    /// `None` between a lost blocking task and the next round.
    consumer: Option<MailConsumer>,
    redis: RedisSettings,
    /// This instance's name in the consumer group.
    name: String,
    composer: Arc<Composer>,
    transport: Arc<Transport>,
    max_attempts: u32,
    /// MAIL_MAX_PER_RECIPIENT: the most messages an address gets in an hour.
    max_per_recipient: u32,
    retry_base: Duration,
    claim_after: Duration,
    metrics: Arc<Metrics>,
    log_format: LogFormat,
    /// On shutdown, how long the sends under way may take to finish.
    drain: Duration,
}

/// What one round left for the next.
struct Schedule {
    joined: bool,
    next_claim: Instant,
    next_figures: Instant,
}

impl Sender {
    async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        let mut schedule = Schedule {
            joined: false,
            next_claim: Instant::now(),
            next_figures: Instant::now(),
        };
        let mut failing = false;
        while !*stopping.borrow() {
            match self.round(&mut schedule, &stopping).await {
                Ok(()) if failing => {
                    failing = false;
                    self.log("INFO", "mail: Redis answers again; sending resumes");
                }
                Ok(()) => {}
                Err(error) => {
                    if !failing {
                        failing = true;
                        self.log(
                            "WARN",
                            &format!(
                                "mail: {} ({}); messages stay queued until it answers",
                                error.summary(),
                                one_line(&error.to_string())
                            ),
                        );
                    }
                    schedule.joined = false;
                    rocket::tokio::select! {
                        _ = time::sleep(REDIS_PAUSE) => {}
                        _ = stopping.changed() => {}
                    }
                }
            }
        }
        // A reader that holds nothing leaves the group; one that does stays
        // so that another instance can claim what it holds.
        let _ = self.redis(MailConsumer::leave).await;
    }

    async fn round(
        &mut self,
        schedule: &mut Schedule,
        stopping: &watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        if !schedule.joined {
            self.redis(MailConsumer::join).await?;
            schedule.joined = true;
        }
        let now = Utc::now();
        let (_, next_due) = self
            .redis(move |consumer| consumer.release_due(now, BATCH))
            .await?;
        if Instant::now() >= schedule.next_claim {
            let idle = self.claim_after;
            let claimed = self
                .redis(move |consumer| {
                    consumer.forget_stopped(FORGET_AFTER)?;
                    consumer.claim_stale(idle, BATCH)
                })
                .await?;
            schedule.next_claim = if claimed.len() == BATCH {
                Instant::now()
            } else {
                Instant::now() + self.claim_after / 2
            };
            if !claimed.is_empty() {
                self.log(
                    "INFO",
                    &format!(
                        "mail: took over {} message(s) that a stopped sender had left unfinished",
                        claimed.len()
                    ),
                );
                return self.deliver(claimed, stopping.clone()).await;
            }
        }
        if Instant::now() >= schedule.next_figures {
            let counts = self.redis(MailConsumer::counts).await?;
            self.metrics.mail_queue_length.set(gauge(counts.queued));
            self.metrics.mail_retry_waiting.set(gauge(counts.retrying));
            self.metrics.mail_dead_letters.set(gauge(counts.dead));
            schedule.next_figures = Instant::now() + FIGURES_EVERY;
        }
        // Wait for new mail, but no longer than the next retry or claim.
        let mut block = MAX_BLOCK.min(
            schedule
                .next_claim
                .saturating_duration_since(Instant::now()),
        );
        if let Some(due) = next_due {
            let until_due = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            block = block.min(until_due);
        }
        let block = block.max(Duration::from_millis(1));
        let batch = self
            .redis(move |consumer| consumer.read_new(BATCH, block))
            .await?;
        self.deliver(batch, stopping.clone()).await
    }

    /// Sends a batch, several messages at once, then settles each: sent and
    /// expired ones leave the queue together, failed ones are rescheduled or
    /// buried one by one. Once the service is stopping, no further send
    /// starts; those under way get [`Sender::drain`] to finish, and every
    /// message not finished goes back to the queue.
    async fn deliver(
        &mut self,
        batch: Vec<Delivery>,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut finished = Vec::new();
        let mut sendable = Vec::new();
        for delivery in batch {
            match &delivery.mail {
                _ if delivery.times_delivered > MAX_DELIVERIES => {
                    self.log(
                        "ERROR",
                        &format!(
                            "mail: queue entry {} was left unfinished by {} senders that \
                             stopped; moved to the dead letters",
                            delivery.entry,
                            delivery.times_delivered - 1
                        ),
                    );
                    self.metrics.mail_dead.inc();
                    let mail = delivery.mail.as_ref().ok().cloned();
                    self.redis(move |consumer| {
                        consumer.bury(&delivery, mail.as_ref(), STOPPED_SENDERS, now)
                    })
                    .await?;
                }
                Err(reason) => {
                    self.log(
                        "ERROR",
                        &format!(
                            "mail: queue entry {} is malformed ({reason}); moved to the dead letters",
                            delivery.entry
                        ),
                    );
                    self.metrics.mail_dead.inc();
                    self.redis(move |consumer| {
                        consumer.bury(&delivery, None, "malformed queue entry", now)
                    })
                    .await?;
                }
                Ok(mail) if mail.has_expired(now) => {
                    self.log("INFO", &format!("mail: {} expired unsent", describe(mail)));
                    self.metrics.mail_expired.inc();
                    finished.push(delivery.entry);
                }
                Ok(mail) => {
                    let mail = mail.clone();
                    sendable.push((delivery, mail));
                }
            }
        }

        let sendable = self.within_bounds(sendable, &mut finished).await?;

        // Each send owns a copy of its message; the deliveries stay here, so
        // that the unfinished ones can be put back however the sends end.
        let mut deliveries: Vec<Option<Delivery>> = Vec::with_capacity(sendable.len());
        let mut waiting = Vec::with_capacity(sendable.len());
        for (index, (delivery, mail)) in sendable.into_iter().enumerate() {
            deliveries.push(Some(delivery));
            waiting.push((index, mail));
        }
        let mut waiting = waiting.into_iter();
        let mut under_way = FuturesUnordered::new();
        let mut outcomes = Vec::new();
        let mut deadline = (*stopping.borrow()).then(|| time::Instant::now() + self.drain);
        loop {
            while deadline.is_none() && under_way.len() < SMTP_CONNECTIONS {
                let Some((index, mail)) = waiting.next() else {
                    break;
                };
                let (composer, transport, metrics) = (
                    Arc::clone(&self.composer),
                    Arc::clone(&self.transport),
                    Arc::clone(&self.metrics),
                );
                under_way.push(async move {
                    let outcome = send(&composer, &transport, &metrics, &mail).await;
                    (index, mail, outcome)
                });
            }
            if under_way.is_empty() {
                break;
            }
            let drained = async {
                match deadline {
                    Some(deadline) => time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            rocket::tokio::select! {
                Some(done) = under_way.next() => outcomes.push(done),
                changed = stopping.changed(), if deadline.is_none() => {
                    // A closed channel (the fairing is gone) means stop too.
                    let _ = changed;
                    deadline = Some(time::Instant::now() + self.drain);
                }
                () = drained => break,
            }
        }
        drop(under_way);

        let mut failed = Vec::new();
        for (index, mail, outcome) in outcomes {
            let Some(delivery) = deliveries.get_mut(index).and_then(Option::take) else {
                continue;
            };
            match outcome {
                Ok(()) => {
                    self.metrics.mail_sent.inc();
                    finished.push(delivery.entry);
                }
                Err(failure) => failed.push((delivery, mail, failure)),
            }
        }
        self.redis(move |consumer| consumer.finish(&finished))
            .await?;
        for (delivery, mail, failure) in failed {
            self.settle_failure(delivery, mail, failure).await?;
        }
        let unfinished: Vec<Delivery> = deliveries.into_iter().flatten().collect();
        if !unfinished.is_empty() {
            self.log(
                "INFO",
                &format!(
                    "mail: stopping; {} message(s) not sent go back to the queue",
                    unfinished.len()
                ),
            );
            self.redis(move |consumer| consumer.hand_back(&unfinished))
                .await?;
        }
        Ok(())
    }

    /// The messages their recipients' hourly bounds let out; each held
    /// back is finished (it leaves the queue unsent), counted and logged.
    /// No request is told, so that no answer shows how much mail an
    /// address got.
    async fn within_bounds(
        &mut self,
        sendable: Vec<(Delivery, QueuedMail)>,
        finished: &mut Vec<QueueEntry>,
    ) -> Result<Vec<(Delivery, QueuedMail)>, StoreError> {
        if sendable.is_empty() {
            return Ok(sendable);
        }
        let mails: Vec<QueuedMail> = sendable.iter().map(|(_, mail)| mail.clone()).collect();
        let admitted = self.redis(move |consumer| consumer.admit(&mails)).await?;
        let mut let_out = Vec::with_capacity(sendable.len());
        for ((delivery, mail), admitted) in sendable.into_iter().zip(admitted) {
            if admitted {
                let_out.push((delivery, mail));
                continue;
            }
            self.log(
                "WARN",
                &format!(
                    "mail: {} held back: its recipient had MAIL_MAX_PER_RECIPIENT ({}) \
                     messages in the last hour",
                    describe(&mail),
                    self.max_per_recipient
                ),
            );
            self.metrics.mail_held_back.inc();
            finished.push(delivery.entry);
        }
        Ok(let_out)
    }

    /// A failed attempt: wait and retry, or give up.
    async fn settle_failure(
        &mut self,
        delivery: Delivery,
        mut mail: QueuedMail,
        failure: SendFailure,
    ) -> Result<(), StoreError> {
        mail.attempts = mail.attempts.saturating_add(1);
        let now = Utc::now();
        let permanent = matches!(failure, SendFailure::Permanent(_));
        if permanent || mail.attempts >= self.max_attempts {
            self.log(
                "ERROR",
                &format!(
                    "mail: gave up on {} after {} attempt(s): {}; it is with the dead letters \
                     (`user-accounts mail retry-dead` queues them again)",
                    describe(&mail),
                    mail.attempts,
                    failure.reason()
                ),
            );
            self.metrics.mail_dead.inc();
            let reason = failure.reason().to_owned();
            return self
                .redis(move |consumer| consumer.bury(&delivery, Some(&mail), &reason, now))
                .await;
        }
        let delay = backoff(self.retry_base, mail.attempts);
        self.log(
            "WARN",
            &format!(
                "mail: attempt {} of {} for {} failed: {}; next attempt in {} ms",
                mail.attempts,
                self.max_attempts,
                describe(&mail),
                failure.reason(),
                delay.as_millis()
            ),
        );
        self.metrics.mail_retried.inc();
        let due = after(now, delay);
        self.redis(move |consumer| consumer.reschedule(&delivery.entry, &mail, due))
            .await
    }

    /// Runs blocking Redis work with the consumer, off the async workers.
    async fn redis<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut MailConsumer) -> Result<T, StoreError> + Send + 'static,
    {
        let mut consumer = match self.consumer.take() {
            Some(consumer) => consumer,
            None => MailConsumer::new(&self.redis, self.name.clone(), self.max_per_recipient),
        };
        let (consumer, result) = task::spawn_blocking(move || {
            let result = work(&mut consumer);
            (consumer, result)
        })
        .await?;
        self.consumer = Some(consumer);
        result
    }

    fn log(&self, level: &str, message: &str) {
        log_line(self.log_format, level, message);
    }
}

/// Renders and hands over one message.
async fn send(
    composer: &Composer,
    transport: &Transport,
    metrics: &Metrics,
    mail: &QueuedMail,
) -> Result<(), SendFailure> {
    let message = composer.compose(mail).map_err(|error| {
        SendFailure::Permanent(match error {
            MailError::Template { name, .. } => format!("the template {name} failed"),
            MailError::Compose(reason) => reason.to_owned(),
            MailError::Transport(_) => "the transport is misconfigured".into(),
        })
    })?;
    let started = Instant::now();
    let outcome = transport.send(mail.id, message).await;
    metrics
        .mail_send_seconds
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// A message as log lines name it: kind, id and recipient domain, never
/// the address or the code.
fn describe(mail: &QueuedMail) -> String {
    format!(
        "kind={} id={} domain={}",
        mail.kind(),
        mail.id,
        mail.recipient_domain()
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
