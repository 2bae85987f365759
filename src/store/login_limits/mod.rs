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

pub(super) mod counters;

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::config::LoginSettings;
use crate::domain::{ClientAddress, UserEmail};
use crate::store::login_limits::counters::{counters, Admission};
use crate::store::plumbing::conn::RedisConn;
use crate::store::StoreError;

/// KEYS: the three counters, then the set of the account's addresses. ARGV:
/// the window (ms), then each counter's limit in KEYS' order, then the
/// address, then whether the account-wide counter takes part (1/0). Returns
/// 0 when admitted (the counters raised, the address noted), else the ms
/// until the fullest counter's window ends (nothing raised).
const ADMIT: &str = r"
local counted = {true, ARGV[6] == '1', true}
local wait = 0
for i = 1, 3 do
  if counted[i] and tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i + 1]) then
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
for i = 1, 3 do
  if counted[i] then
    redis.call('INCR', KEYS[i])
    redis.call('PEXPIRE', KEYS[i], ARGV[1], 'NX')
  end
end
redis.call('SADD', KEYS[4], ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[1])
return 0
";

/// KEYS: the account-and-address counter, then the account's and the
/// address's, then the set of the account's addresses. ARGV: the address,
/// and whether the account-wide counter took part (1/0). A right answer
/// clears the first (and the address from the set) and takes its own
/// attempt back from the others: it was no failure.
const SUCCEEDED: &str = r"
local counted = {true, ARGV[2] == '1', true}
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[1])
for i = 2, 3 do
  if counted[i] and tonumber(redis.call('GET', KEYS[i]) or '0') > 0
      and redis.call('DECR', KEYS[i]) == 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 0
";

/// What an attempt offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A password: counted by all three limits.
    Password,
    /// A mailed code: not by the account-wide limit, which a password reset
    /// exists to lift; five wrong tries kill a code anyway.
    Code,
}

static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));
static SUCCEEDED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SUCCEEDED));

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
        proof: Proof,
    ) -> Result<Admission, StoreError> {
        let address = address.counted_as();
        let keys = counters(&self.keys, email, &address);
        let addresses = self.keys.login_failure_addresses(email);
        let (keys, addresses, address) = (&keys, &addresses, &address);
        self.script(|mut conn| async move {
            let wait_ms: u64 = ADMIT_SCRIPT
                .key(&keys[..])
                .key(addresses)
                .arg(millis(limits.window))
                .arg(limits.max_failures)
                .arg(limits.max_account_failures)
                .arg(limits.max_address_failures)
                .arg(address)
                .arg(u8::from(proof == Proof::Password))
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
        proof: Proof,
    ) -> Result<(), StoreError> {
        let address = address.counted_as();
        let keys = counters(&self.keys, email, &address);
        let addresses = self.keys.login_failure_addresses(email);
        let (keys, addresses, address) = (&keys, &addresses, &address);
        self.script(|mut conn| async move {
            Ok(SUCCEEDED_SCRIPT
                .key(&keys[..])
                .key(addresses)
                .arg(address)
                .arg(u8::from(proof == Proof::Password))
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }
}
