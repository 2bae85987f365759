//! The counters of the password-attempt limiter, as the limiter and a
//! password reset (which clears them) both name them.

use std::time::Duration;

use crate::domain::UserEmail;
use crate::store::layout::Keys;
use crate::store::plumbing::transaction::Writes;

/// Whether an attempt (a password check, a code request) may go ahead.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// A counter is full until `retry_after` from now.
    Refused {
        retry_after: Duration,
    },
}

/// The three counters of one attempt, most specific first.
pub(in crate::store) fn counters(keys: &Keys, email: &UserEmail, address: &str) -> [String; 3] {
    [
        keys.login_failures_of_account_at(email, address),
        keys.login_failures_of_account(email),
        keys.login_failures_of_address(address),
    ]
}

/// Adds to a step's writes the commands that clear every counter keyed by
/// the account `email` (the per-address ones among them); `addresses` are
/// the members of its set of addresses, as the step read them.
pub(in crate::store) fn clear_account(
    writes: &mut Writes,
    keys: &Keys,
    email: &UserEmail,
    addresses: &[String],
) {
    for address in addresses {
        writes
            .cmd("DEL")
            .arg(keys.login_failures_of_account_at(email, address))
            .ignore();
    }
    writes
        .cmd("DEL")
        .arg(keys.login_failures_of_account(email))
        .arg(keys.login_failure_addresses(email))
        .ignore();
}
