//! Password hashing: argon2id's cost, and how many hashes run and wait.

use super::{ConfigError, Env};

/// argon2id cost parameters, how many hashes may run at once, and how many
/// may wait for a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashingSettings {
    pub params: argon2::Params,
    pub max_concurrent: usize,
    /// Beyond this many waiting hashes, requests that need one answer 503.
    pub queue_limit: usize,
}

impl HashingSettings {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        max_concurrent: usize,
        queue_limit: usize,
    ) -> Result<Self, argon2::Error> {
        Ok(Self {
            params: argon2::Params::new(memory_kib, iterations, parallelism, None)?,
            max_concurrent,
            queue_limit,
        })
    }
}

/// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
const OWASP_MEMORY_KIB: u32 = 19 * 1024;
const OWASP_ITERATIONS: u32 = 2;
const OWASP_PARALLELISM: u32 = 1;

/// With the default cost and two cores (about 190 hashes/s), a full queue
/// is about 0.7 s of work: later requests are better told to retry.
const DEFAULT_HASHING_QUEUE_LIMIT: usize = 128;

fn default_hashing_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

pub(super) fn settings(env: &Env) -> Result<HashingSettings, ConfigError> {
    let memory_kib = env.parse_in("ARGON2_MEMORY_KIB", OWASP_MEMORY_KIB, 8..=4 * 1024 * 1024)?;
    let iterations = env.parse_in("ARGON2_ITERATIONS", OWASP_ITERATIONS, 1..=64)?;
    let parallelism = env.parse_in("ARGON2_PARALLELISM", OWASP_PARALLELISM, 1..=64)?;
    let max_concurrent = env.parse_in(
        "HASHING_CONCURRENCY",
        default_hashing_concurrency(),
        1..=1024,
    )?;
    let queue_limit = env.parse_in(
        "HASHING_QUEUE_LIMIT",
        DEFAULT_HASHING_QUEUE_LIMIT,
        1..=1_000_000,
    )?;
    HashingSettings::new(
        memory_kib,
        iterations,
        parallelism,
        max_concurrent,
        queue_limit,
    )
    .map_err(|error| ConfigError {
        setting: "ARGON2_MEMORY_KIB",
        reason: format!("argon2 rejects these parameters: {error} (it needs 8 KiB per lane)"),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::settings_from;

    #[test]
    fn the_hashing_queue_limit_defaults_to_128_and_can_be_set() {
        let default = settings_from(&[]).expect("defaults are valid");
        assert_eq!(default.password_hashing.queue_limit, 128);
        let set = settings_from(&[("HASHING_QUEUE_LIMIT", "16")]).expect("valid");
        assert_eq!(set.password_hashing.queue_limit, 16);
        let error = settings_from(&[("HASHING_QUEUE_LIMIT", "0")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "HASHING_QUEUE_LIMIT");
    }

    #[test]
    fn argon2_memory_must_cover_its_lanes() {
        let error = settings_from(&[("ARGON2_MEMORY_KIB", "8"), ("ARGON2_PARALLELISM", "4")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "ARGON2_MEMORY_KIB");
    }
}
