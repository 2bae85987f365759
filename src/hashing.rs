//! argon2id hashing and verification, off the async workers and bounded.
//!
//! Each hash takes tens of milliseconds of one core. Running them on Rocket's
//! async workers would stall every other request, and running unboundedly
//! many at once would let a burst of sign-ups starve reads of CPU. So jobs
//! queue for `max_concurrent` dedicated threads, which run at a lower
//! scheduling priority than the request threads: when the CPU is short, the
//! scheduler serves reads first and hashes with what is left. At most
//! `queue_limit` jobs wait; a request that would be one more is refused at
//! once (503), rather than wait longer than its client would.
//!
//! The strength check of a new password (zxcvbn, up to tens of milliseconds)
//! is a job of the same queue, for the same reasons.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rocket::tokio::sync::{oneshot, OnceCell};
use thread_priority::{ThreadPriority, ThreadPriorityValue};

use crate::config::HashingSettings;
use crate::domain::{Password, PasswordHash, UserEmail, UserName};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("argon2 failed: {0}")]
    Argon2(password_hash::Error),
    #[error("no hashing thread is running")]
    Closed,
    #[error("{0} hashes already wait for a hashing thread")]
    QueueFull(usize),
}

impl From<password_hash::Error> for HashingError {
    fn from(error: password_hash::Error) -> Self {
        Self::Argon2(error)
    }
}

impl From<argon2::Error> for HashingError {
    fn from(error: argon2::Error) -> Self {
        Self::Argon2(error.into())
    }
}

/// A hashing job: given the shared reusable work memory, it computes and
/// sends its answer back itself.
type Job = Box<dyn FnOnce(&WorkMemory) + Send>;

/// About nice 10 on Linux: such a thread gets about a tenth of the CPU that a
/// normal one gets when both want it, and all of it when nothing else does.
const HASHING_PRIORITY: u8 = 23;

pub struct PasswordHasher {
    params: Params,
    metrics: Arc<Metrics>,
    jobs: Sender<Job>,
    /// Jobs queued and not yet taken by a thread, at most `queue_limit`:
    /// past that, a request would wait longer than its client is likely
    /// to, and a flood of sign-ups would grow the queue without bound.
    waiting: Arc<AtomicUsize>,
    queue_limit: usize,
    /// Verified against when a login names no user, so that case costs the
    /// same argon2 work as a wrong password.
    dummy_hash: OnceCell<PasswordHash>,
}

impl PasswordHasher {
    /// Starts `max_concurrent` hashing threads; they stop when the hasher is
    /// dropped.
    pub fn new(settings: &HashingSettings, metrics: Arc<Metrics>) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let memory = Arc::new(WorkMemory {
            blocks: settings.params.block_count(),
            kept: settings.max_concurrent,
            free: Mutex::new(Vec::new()),
        });
        for n in 0..settings.max_concurrent {
            let queue = Arc::clone(&queue);
            let memory = Arc::clone(&memory);
            // A thread that fails to start leaves the others to do the work;
            // with none at all, every job fails with `Closed` (a 500).
            let _ = thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hashing_thread(&queue, &memory));
        }
        Self {
            params: settings.params.clone(),
            metrics,
            jobs,
            waiting: Arc::new(AtomicUsize::new(0)),
            queue_limit: settings.queue_limit,
            dummy_hash: OnceCell::new(),
        }
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashingError> {
        let params = self.params.clone();
        self.run(move |memory| {
            let salt = SaltString::generate(&mut OsRng);
            let mut salt_buffer = [0u8; 64];
            let salt_bytes = salt.as_salt().decode_b64(&mut salt_buffer)?;
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let output =
                memory.derive(&argon2, &password, salt_bytes, Params::DEFAULT_OUTPUT_LEN)?;
            let phc = password_hash::PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(PasswordHash::from_phc(phc.to_string()))
        })
        .await
    }

    /// Whether `password` matches `hash`, with the parameters stored in the
    /// hash; the comparison takes constant time.
    pub async fn verify(
        &self,
        password: Password,
        hash: PasswordHash,
    ) -> Result<bool, HashingError> {
        self.run(move |memory| {
            let parsed = password_hash::PasswordHash::new(hash.as_phc())?;
            let expected = parsed.hash.ok_or(password_hash::Error::Password)?;
            let salt = parsed.salt.ok_or(password_hash::Error::SaltInvalid(
                password_hash::errors::InvalidValue::Malformed,
            ))?;
            let mut salt_buffer = [0u8; 64];
            let salt_bytes = salt.decode_b64(&mut salt_buffer)?;
            let params = Params::try_from(&parsed)?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default();
            let argon2 = Argon2::new(
                Algorithm::try_from(parsed.algorithm)?,
                version,
                params.clone(),
            );
            let output = memory.derive(&argon2, &password, salt_bytes, expected.len())?;
            Ok(output == expected)
        })
        .await
    }

    /// Whether `password` is hard enough to guess for the user with this
    /// email and name (`Password::check_strength`: the reason if not), judged
    /// on a hashing thread as a job of the queue.
    pub async fn check_strength(
        &self,
        password: &Password,
        email: Option<&UserEmail>,
        name: Option<&UserName>,
    ) -> Result<Result<(), String>, HashingError> {
        let (password, email, name) = (password.clone(), email.cloned(), name.cloned());
        self.run(move |_| Ok(password.check_strength(email.as_ref(), name.as_ref())))
            .await
    }

    /// A hash of a random password, made with the configured parameters.
    pub async fn dummy_hash(&self) -> Result<PasswordHash, HashingError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash(Password::candidate(&uuid::Uuid::new_v4().to_string())))
            .await
            .cloned()
    }

    /// Whether `hash` was made with other parameters than the configured
    /// ones, and should be replaced at the next successful login.
    pub fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        let Ok(parsed) = password_hash::PasswordHash::new(hash.as_phc()) else {
            return true;
        };
        let current = Params::try_from(&parsed);
        parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || current.map_or(true, |params| {
                (params.m_cost(), params.t_cost(), params.p_cost())
                    != (
                        self.params.m_cost(),
                        self.params.t_cost(),
                        self.params.p_cost(),
                    )
            })
    }

    /// Queues `job` for a hashing thread and waits for its answer; refuses
    /// it at once when `queue_limit` jobs wait already.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&WorkMemory) -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, HashingError> {
        let queue_limit = self.queue_limit;
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < queue_limit).then_some(waiting + 1)
            });
        if admitted.is_err() {
            self.metrics.argon2_refused.inc();
            return Err(HashingError::QueueFull(queue_limit));
        }
        let (answer, answered) = oneshot::channel();
        let metrics = Arc::clone(&self.metrics);
        let waiting = Arc::clone(&self.waiting);
        let queued: Job = Box::new(move |memory| {
            waiting.fetch_sub(1, Ordering::AcqRel);
            metrics.argon2_waiting.dec();
            metrics.argon2_running.inc();
            let result = job(memory);
            metrics.argon2_running.dec();
            // The request may have gone away meanwhile; nobody needs the answer.
            let _ = answer.send(result);
        });
        self.metrics.argon2_waiting.inc();
        if self.jobs.send(queued).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics.argon2_waiting.dec();
            return Err(HashingError::Closed);
        }
        answered.await.map_err(|_| HashingError::Closed)?
    }
}

/// Runs queued jobs one after another, at a lower priority than requests,
/// until the hasher is dropped.
fn hashing_thread(queue: &Mutex<Receiver<Job>>, memory: &WorkMemory) {
    if let Ok(priority) = ThreadPriorityValue::try_from(HASHING_PRIORITY) {
        // Without the permission to change it, hashes run at normal priority.
        let _ =
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(priority));
    }
    loop {
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(memory),
            Err(_) => return,
        }
    }
}

/// argon2's work memory (19 MiB with the default parameters), shared by the
/// hashing threads and kept between jobs: a buffer is allocated only when
/// every kept one is in use, so as many exist as hashes ever ran at once.
/// Allocating it afresh for each hash left that much behind in many threads'
/// allocator arenas; the service's resident memory grew past 800 MiB.
struct WorkMemory {
    blocks: usize,
    kept: usize,
    free: Mutex<Vec<Vec<Block>>>,
}

impl WorkMemory {
    /// argon2's output for `password` and `salt`, `len` bytes long.
    fn derive(
        &self,
        argon2: &Argon2<'_>,
        password: &Password,
        salt: &[u8],
        len: usize,
    ) -> Result<Output, HashingError> {
        let blocks = argon2.params().block_count();
        Ok(self.with(blocks, |memory| {
            Output::init_with(len, |out| {
                Ok(argon2.hash_password_into_with_memory(
                    password.expose().as_bytes(),
                    salt,
                    out,
                    memory,
                )?)
            })
        })?)
    }

    fn with<T>(&self, blocks: usize, job: impl FnOnce(&mut [Block]) -> T) -> T {
        if blocks != self.blocks {
            // A hash made with other parameters: a buffer for this job only.
            return job(&mut vec![Block::new(); blocks]);
        }
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut buffer = reused.unwrap_or_else(|| vec![Block::new(); blocks]);
        let result = job(&mut buffer);
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.kept {
                free.push(buffer);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::future::{poll_fn, Future};
    use std::pin::{pin, Pin};
    use std::sync::mpsc::channel;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    /// Polls once: far enough for `run` to queue its job.
    async fn queued<F: Future>(job: Pin<&mut F>) -> bool {
        let mut job = job;
        poll_fn(|cx| Poll::Ready(job.as_mut().poll(cx).is_pending())).await
    }

    /// A job that holds its thread until released, and says when it started.
    #[allow(clippy::type_complexity)]
    fn holding_job() -> (
        impl FnOnce(&WorkMemory) -> Result<&'static str, HashingError> + Send + 'static,
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (started, has_started) = channel();
        let (release, released) = channel::<()>();
        let job = move |_: &WorkMemory| {
            let _ = started.send(());
            let _ = released.recv();
            Ok("held")
        };
        (job, release, has_started)
    }

    /// Whether `password` matches `hash`.
    async fn verifies(hasher: &PasswordHasher, password: &str, hash: PasswordHash) -> bool {
        hasher
            .verify(Password::candidate(password), hash)
            .await
            .expect("verified")
    }

    /// A hasher with one thread and room for one waiting job.
    fn one_thread_one_slot() -> PasswordHasher {
        PasswordHasher::new(
            &HashingSettings::new(1024, 1, 1, 1, 1).expect("valid parameters"),
            Arc::new(Metrics::new().expect("metrics")),
        )
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(
            &HashingSettings::new(1024, 1, 1, 2, 128).expect("valid parameters"),
            Arc::new(Metrics::new().expect("metrics")),
        )
    }

    #[rocket::async_test]
    async fn a_full_queue_refuses_a_job_at_once_and_admits_one_once_a_thread_takes_one() {
        let hasher = one_thread_one_slot();
        let (job, release, has_started) = holding_job();
        let mut holding = pin!(hasher.run(job));
        assert!(queued(holding.as_mut()).await);
        has_started
            .recv_timeout(Duration::from_secs(5))
            .expect("the thread took the first job");
        let mut waiting = pin!(hasher.run(|_| Ok("waited")));
        assert!(queued(waiting.as_mut()).await);

        let refused =
            rocket::tokio::time::timeout(Duration::from_secs(5), hasher.run(|_| Ok("refused")))
                .await
                .expect("answered at once, not queued");
        assert!(matches!(refused, Err(HashingError::QueueFull(1))));

        release.send(()).expect("the job waits for it");
        assert_eq!(holding.await.expect("answered"), "held");
        assert_eq!(waiting.await.expect("answered"), "waited");
        assert_eq!(
            hasher.run(|_| Ok("admitted")).await.expect("answered"),
            "admitted"
        );
    }

    fn ada() -> (UserEmail, UserName) {
        (
            UserEmail::parse("ada.lovelace@example.com").expect("valid"),
            UserName::parse("Ada Lovelace").expect("valid"),
        )
    }

    #[rocket::async_test]
    async fn a_full_queue_refuses_a_strength_check_at_once_and_admits_one_once_a_thread_takes_one()
    {
        let hasher = one_thread_one_slot();
        let (email, name) = ada();
        let strong = Password::parse("correct horse battery").expect("valid");
        let (job, release, has_started) = holding_job();
        let mut holding = pin!(hasher.run(job));
        assert!(queued(holding.as_mut()).await);
        has_started
            .recv_timeout(Duration::from_secs(5))
            .expect("the thread took the first job");
        let mut waiting = pin!(hasher.check_strength(&strong, Some(&email), Some(&name)));
        assert!(queued(waiting.as_mut()).await);

        let refused = rocket::tokio::time::timeout(
            Duration::from_secs(5),
            hasher.check_strength(&strong, Some(&email), Some(&name)),
        )
        .await
        .expect("answered at once, not queued");
        assert!(matches!(refused, Err(HashingError::QueueFull(1))));

        release.send(()).expect("the job waits for it");
        assert_eq!(holding.await.expect("answered"), "held");
        assert_eq!(waiting.await.expect("answered"), Ok(()));
        assert_eq!(
            hasher
                .check_strength(&strong, Some(&email), Some(&name))
                .await
                .expect("answered"),
            Ok(())
        );
    }

    #[rocket::async_test]
    async fn a_strength_check_on_a_hashing_thread_says_why_a_password_is_weak() {
        let (email, name) = ada();
        let weak = Password::parse("password123").expect("valid");
        let verdict = hasher()
            .check_strength(&weak, Some(&email), Some(&name))
            .await
            .expect("answered");
        let reason = verdict.expect_err("weak");
        assert!(reason.starts_with("is too easy to guess"), "{reason}");
    }

    #[rocket::async_test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_cost() {
        let hash = hasher()
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(
            hash.as_phc().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{}",
            hash.as_phc()
        );
    }

    #[rocket::async_test]
    async fn hashes_interoperate_with_the_argon2_crates_own_phc_functions() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hasher()
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        let parsed = password_hash::PasswordHash::new(ours.as_phc()).expect("a PHC string");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());

        let params = Params::new(2048, 1, 1, None).expect("valid");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .expect("hashed")
            .to_string();
        let hasher = hasher();
        let theirs = PasswordHash::from_phc(theirs);
        assert!(verifies(&hasher, "correct horse", theirs.clone()).await);
        assert!(!verifies(&hasher, "correct horsE", theirs).await);
    }

    #[rocket::async_test]
    async fn a_hash_with_other_parameters_needs_rehashing() {
        let cheap = hasher();
        let hash = cheap
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(!cheap.needs_rehash(&hash));
        let costlier = PasswordHasher::new(
            &HashingSettings::new(2048, 1, 1, 2, 128).expect("valid"),
            Arc::new(Metrics::new().expect("metrics")),
        );
        assert!(costlier.needs_rehash(&hash));
    }

    #[rocket::async_test]
    async fn the_dummy_hash_has_the_configured_parameters() {
        let hasher = hasher();
        let dummy = hasher.dummy_hash().await.expect("hashed");
        assert!(!hasher.needs_rehash(&dummy));
        assert_eq!(
            dummy,
            hasher.dummy_hash().await.expect("hashed"),
            "made once"
        );
    }

    #[rocket::async_test]
    async fn the_same_password_gets_a_different_salt_each_time() {
        let hasher = hasher();
        let password = Password::parse("correct horse").expect("valid");
        let first = hasher.hash(password.clone()).await.expect("hashed");
        let second = hasher.hash(password).await.expect("hashed");
        assert_ne!(first, second);
    }

    /// The nice value of the calling thread.
    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> Option<i64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the name: state is the 1st, nice the 17th.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(16)?
            .parse()
            .ok()
    }

    #[cfg(target_os = "linux")]
    #[rocket::async_test]
    async fn hashing_jobs_run_on_their_own_threads_at_a_lower_priority() {
        let hasher = hasher();
        let (name, nice) = hasher
            .run(|_| {
                let name = std::thread::current().name().map(str::to_owned);
                Ok((name, nice_of_this_thread()))
            })
            .await
            .expect("the job ran");
        assert!(
            name.as_deref()
                .is_some_and(|name| name.starts_with("argon2-")),
            "{name:?}"
        );
        assert!(nice.is_some_and(|nice| nice > 0), "nice {nice:?}");
    }

    #[rocket::async_test]
    async fn verify_accepts_the_right_password_and_rejects_others() {
        let hasher = hasher();
        let hash = hasher
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(verifies(&hasher, "correct horse", hash.clone()).await);
        assert!(!verifies(&hasher, "wrong horse", hash).await);
    }
}
