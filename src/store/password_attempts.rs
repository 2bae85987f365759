//! The limiter every password check goes through: an attempt is counted,
//! atomically and before argon2 runs, against three counters, and refused
//! once any of them is full. So a burst of concurrent guesses gets no more
//! answers than the limits allow.
//!
//! - per account and client address (`LOGIN_MAX_FAILURES`),
//! - per account from all addresses (`LOGIN_MAX_ACCOUNT_FAILURES`),
//! - per client address across accounts (`LOGIN_MAX_ADDRESS_FAILURES`).
//!
//! A window starts with a counter's first attempt and ends `window` later.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::conn::RedisConn;
use super::layout::Keys;
use super::StoreError;
use crate::config::LoginSettings;
use crate::domain::{ClientAddress, UserEmail};

/// Whether a password may be checked now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// A counter is full until `retry_after` from now.
    Refused {
        retry_after: Duration,
    },
}

/// KEYS: the three counters. ARGV: the window (ms), then each counter's
/// limit in KEYS' order. Returns 0 when admitted (every counter raised),
/// else the ms until the fullest counter's window ends (nothing raised).
const ADMIT: &str = r"
local wait = 0
for i = 1, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    wait = math.max(wait, ttl)
  end
end
if wait > 0 then
  return wait
end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1], 'NX')
end
return 0
";

/// KEYS: the account-and-address counter, then the account's and the
/// address's. A right password clears the first and takes its own attempt
/// back from the other two: it was no failure.
const SUCCEEDED: &str = r"
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 and redis.call('DECR', KEYS[i]) == 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 0
";

static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));
static SUCCEEDED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SUCCEEDED));

/// The three counters of one attempt, most specific first.
fn counters(keys: &Keys, email: &UserEmail, address: &ClientAddress) -> [String; 3] {
    let address = address.counted_as();
    [
        keys.login_failures_of_account_at(email, &address),
        keys.login_failures_of_account(email),
        keys.login_failures_of_address(&address),
    ]
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisConn {
    /// Counts an attempt to check a password of `email` from `address`,
    /// unless a limit is reached.
    pub async fn admit_password_attempt(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        limits: &LoginSettings,
    ) -> Result<Admission, StoreError> {
        let keys = counters(&self.keys, email, address);
        let keys = &keys;
        self.script(|mut conn| async move {
            let wait_ms: u64 = ADMIT_SCRIPT
                .key(&keys[..])
                .arg(millis(limits.window))
                .arg(limits.max_failures)
                .arg(limits.max_account_failures)
                .arg(limits.max_address_failures)
                .invoke_async(&mut conn)
                .await?;
            Ok(match wait_ms {
                0 => Admission::Admitted,
                ms => Admission::Refused {
                    retry_after: Duration::from_millis(ms),
                },
            })
        })
        .await
    }

    /// The attempt admitted for `email` from `address` had the right password.
    pub async fn password_attempt_succeeded(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
    ) -> Result<(), StoreError> {
        let keys = counters(&self.keys, email, address);
        let keys = &keys;
        self.script(|mut conn| async move {
            Ok(SUCCEEDED_SCRIPT
                .key(&keys[..])
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }
}
