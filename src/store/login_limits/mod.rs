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
//! The address's counter and the account's two live in different slots (on
//! a cluster, perhaps on different nodes), so an attempt is admitted in two
//! atomic steps, each of which checks and raises its counters at once: no
//! counter ever counts past its limit.

pub(super) mod counters;

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::config::LoginSettings;
use crate::domain::{ClientAddress, UserEmail};
use crate::store::layout::Keys;
use crate::store::login_limits::counters::{counters, Admission};
use crate::store::plumbing::conn::RedisConn;
use crate::store::StoreError;

/// KEYS: counters of one slot, then, for the account's counters, the set
/// of the account's addresses. ARGV: the window (ms), how many counters,
/// each one's limit, then the address for the set. Returns 0 when admitted
/// (the counters raised, the address noted), else the ms until the fullest
/// counter's window ends (nothing raised).
const ADMIT: &str = r"
local count = tonumber(ARGV[2])
local wait = 0
for i = 1, count do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i + 2]) then
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
for i = 1, count do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1], 'NX')
end
if KEYS[count + 1] then
  redis.call('SADD', KEYS[count + 1], ARGV[count + 3])
  redis.call('PEXPIRE', KEYS[count + 1], ARGV[1])
end
return 0
";

/// Lua: `give_back(key)` takes one attempt back from a counter.
const GIVE_BACK_LUA: &str = r"
local function give_back(key)
  if tonumber(redis.call('GET', key) or '0') > 0 and redis.call('DECR', key) == 0 then
    redis.call('DEL', key)
  end
end
";

/// KEYS: counters of one slot. Takes one attempt back from each: one that
/// was no failure, or one the other slot's counters refused.
const GIVE_BACK: &str = r"
for _, key in ipairs(KEYS) do
  give_back(key)
end
return 0
";

/// KEYS: the account-and-address counter, the set of the account's
/// addresses, then the account's counter when it took part. ARGV: the
/// address. A right answer clears the first (and the address from the set)
/// and takes its own attempt back from the account's.
const ACCOUNT_SUCCEEDED: &str = r"
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if KEYS[3] then
  give_back(KEYS[3])
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
static GIVE_BACK_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{GIVE_BACK_LUA}{GIVE_BACK}")));
static ACCOUNT_SUCCEEDED_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{GIVE_BACK_LUA}{ACCOUNT_SUCCEEDED}")));

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The limits of one attempt, split by slot: the address's counter, and
/// the account's (with the account-and-address one), which share the
/// email's slot.
struct Counters {
    address: String,
    account_at: String,
    /// `None` when the attempt is not counted per account ([`Proof::Code`]).
    account: Option<String>,
    addresses: String,
    /// The client address as counted.
    counted_as: String,
}

impl Counters {
    fn new(keys: &Keys, email: &UserEmail, address: &ClientAddress, proof: Proof) -> Self {
        let counted_as = address.counted_as();
        let [account_at, account, address] = counters(keys, email, &counted_as);
        Self {
            address,
            account_at,
            account: (proof == Proof::Password).then_some(account),
            addresses: keys.login_failure_addresses(email),
            counted_as,
        }
    }

    /// The account's counters, with their limits.
    fn of_account(&self, limits: &LoginSettings) -> Vec<(&str, u32)> {
        let mut counted = vec![(self.account_at.as_str(), limits.max_failures)];
        if let Some(account) = &self.account {
            counted.push((account, limits.max_account_failures));
        }
        counted
    }
}

fn refusal(wait_ms: u64) -> Option<Admission> {
    (wait_ms > 0).then(|| Admission::Refused {
        retry_after: Duration::from_millis(wait_ms),
    })
}

impl RedisConn {
    /// Counts an attempt to check a password of `email` from `address`,
    /// unless a limit is reached: first against the address's counter, then
    /// against the account's, each in one script in its own slot. When the
    /// account's refuse, the address's count is taken back.
    pub async fn admit_password_attempt(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        limits: &LoginSettings,
        proof: Proof,
    ) -> Result<Admission, StoreError> {
        let counters = Counters::new(&self.keys, email, address, proof);
        let window = millis(limits.window);
        let by_address = [(counters.address.as_str(), limits.max_address_failures)];
        if let Some(refused) = refusal(self.admit(&by_address, None, window).await?) {
            return Ok(refused);
        }
        let by_account = counters.of_account(limits);
        let noted = Some((counters.addresses.as_str(), counters.counted_as.as_str()));
        match refusal(self.admit(&by_account, noted, window).await?) {
            Some(refused) => {
                self.give_back(&[&counters.address]).await?;
                Ok(refused)
            }
            None => Ok(Admission::Admitted),
        }
    }

    /// Raises `counted` (all of one slot) unless one is full; notes the
    /// address in the account's set when `noted` names both.
    async fn admit(
        &self,
        counted: &[(&str, u32)],
        noted: Option<(&str, &str)>,
        window: u64,
    ) -> Result<u64, StoreError> {
        self.script(|mut conn| async move {
            let mut invocation = ADMIT_SCRIPT.prepare_invoke();
            for (key, _) in counted {
                invocation.key(*key);
            }
            invocation.arg(window).arg(counted.len());
            for (_, limit) in counted {
                invocation.arg(*limit);
            }
            if let Some((set, address)) = noted {
                invocation.key(set).arg(address);
            }
            Ok(invocation.invoke_async(&mut conn).await?)
        })
        .await
    }

    async fn give_back(&self, counted: &[&str]) -> Result<(), StoreError> {
        self.script(|mut conn| async move {
            Ok(GIVE_BACK_SCRIPT
                .key(counted)
                .invoke_async::<()>(&mut conn)
                .await?)
        })
        .await
    }

    /// The attempt admitted for `email` from `address` had the right
    /// password: it was no failure.
    pub async fn password_attempt_succeeded(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        proof: Proof,
    ) -> Result<(), StoreError> {
        let counters = Counters::new(&self.keys, email, address, proof);
        let counters = &counters;
        self.script(|mut conn| async move {
            let mut invocation = ACCOUNT_SUCCEEDED_SCRIPT.prepare_invoke();
            invocation
                .key(&counters.account_at)
                .key(&counters.addresses)
                .arg(&counters.counted_as);
            if let Some(account) = &counters.account {
                invocation.key(account);
            }
            Ok(invocation.invoke_async::<()>(&mut conn).await?)
        })
        .await?;
        self.give_back(&[&counters.address]).await
    }
}
