//! Every Redis key name, and the encoding of the email index's members.
//!
//! - `{prefix}user:{id}`: a hash with `name`, `email`, `created`, `updated`
//!   (the times in Unix milliseconds), and the argon2id hash in three parts:
//!   `password_params` (`$argon2id$v=19$m=…,t=…,p=…`), `password_salt` and
//!   `password_hash`, so every value fits Redis's compact hash encoding.
//! - `{prefix}users:by_email`: a sorted set, every score 0, one member per
//!   user: `{normalized email}\0{id}`. Members sort by email, and a lexical
//!   range finds one exact email and nothing else.
//! - `{prefix}email_claim:{normalized email}`: never holds data. The
//!   transaction that adds an email to the index sets and deletes it, which
//!   aborts every transaction WATCHing it: sign-ups watch the claim of their
//!   own email, not the whole index, so those of different emails never
//!   abort each other.
//! - `{prefix}session:{session id}`: a hash with `user_id`, `created`,
//!   `last_seen`, `expires_at` (the absolute cap), `ip`, `user_agent`; its
//!   TTL is the idle timeout. The id is the SHA-256 of the token.
//! - `{prefix}sessions_of:{user id}`: a set of that user's session ids.
//! - `{prefix}login_failures:account:{email}` and
//!   `{prefix}login_failures:ip:{ip}`: failed-login counters, expiring with
//!   their window.
//! - `{prefix}events`: a stream of `{type, user_id, at}` events.
//! - `{prefix}activity:{user id}`: a list of the user's last events, newest
//!   first.

use crate::domain::{SessionId, UserEmail, UserId};

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    events_max_len: u64,
}

impl Keys {
    /// `events_max_len` caps the event stream, which lives under these keys.
    pub fn new(prefix: &str, events_max_len: u64) -> Self {
        Self {
            prefix: prefix.to_owned(),
            events_max_len,
        }
    }

    pub fn events_max_len(&self) -> u64 {
        self.events_max_len
    }

    pub fn user(&self, id: UserId) -> String {
        format!("{}user:{id}", self.prefix)
    }

    pub fn email_index(&self) -> String {
        format!("{}users:by_email", self.prefix)
    }

    pub fn email_claim(&self, email: &UserEmail) -> String {
        format!("{}email_claim:{email}", self.prefix)
    }

    pub fn session(&self, id: &SessionId) -> String {
        format!("{}session:{id}", self.prefix)
    }

    pub fn sessions_of(&self, user: UserId) -> String {
        format!("{}sessions_of:{user}", self.prefix)
    }

    pub fn login_failures_of_account(&self, email: &UserEmail) -> String {
        format!("{}login_failures:account:{email}", self.prefix)
    }

    pub fn login_failures_of_ip(&self, ip: &str) -> String {
        format!("{}login_failures:ip:{ip}", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub fn activity(&self, user: UserId) -> String {
        format!("{}activity:{user}", self.prefix)
    }

    /// A SCAN pattern matching every user hash.
    pub fn users_pattern(&self) -> String {
        format!("{}user:*", escape_glob(&self.prefix))
    }

    /// The user id in a user hash's key.
    pub fn user_id_of(&self, key: &str) -> Option<UserId> {
        UserId::parse(key.strip_prefix(&self.prefix)?.strip_prefix("user:")?)
    }

    /// A SCAN pattern matching every per-user session set.
    pub fn session_sets_pattern(&self) -> String {
        format!("{}sessions_of:*", escape_glob(&self.prefix))
    }

    /// The user id in a session set's key.
    pub fn owner_of_session_set(&self, key: &str) -> Option<UserId> {
        UserId::parse(
            key.strip_prefix(&self.prefix)?
                .strip_prefix("sessions_of:")?,
        )
    }
}

/// Escapes the characters SCAN's MATCH treats as wildcards.
fn escape_glob(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

/// Separates the email from the id inside an index member. A valid email
/// never holds a NUL, so `email + SEPARATOR` starts no other email's members.
const SEPARATOR: char = '\0';

/// A byte that never occurs in UTF-8, so it sorts after any email.
const AFTER_ALL_UTF8: u8 = 0xff;

pub fn index_member(email: &UserEmail, id: UserId) -> String {
    format!("{email}{SEPARATOR}{id}")
}

/// Splits a member back into its email and id; `None` when it is malformed.
pub fn parse_index_member(member: &str) -> Option<(&str, UserId)> {
    let (email, id) = member.split_once(SEPARATOR)?;
    Some((email, UserId::parse(id)?))
}

/// The ZRANGEBYLEX bounds holding exactly the members of `email`.
pub fn exact_email_range(email: &UserEmail) -> (String, String) {
    (format!("[{email}{SEPARATOR}"), format!("({email}\u{1}"))
}

/// The ZRANGEBYLEX bounds of every member whose email starts with `prefix`,
/// beginning after the member `after` when one is given.
pub fn email_prefix_range(prefix: &str, after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let min = match after {
        Some(member) if member > prefix => format!("({member}").into_bytes(),
        _ if prefix.is_empty() => b"-".to_vec(),
        _ => format!("[{prefix}").into_bytes(),
    };
    let max = if prefix.is_empty() {
        b"+".to_vec()
    } else {
        let mut max = format!("({prefix}").into_bytes();
        max.push(AFTER_ALL_UTF8);
        max
    };
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> UserEmail {
        UserEmail::parse(raw).expect("valid email")
    }

    #[test]
    fn keys_carry_the_prefix() {
        let keys = Keys::new("svc:", 10);
        let id = UserId::generate();
        assert_eq!(keys.user(id), format!("svc:user:{id}"));
        assert_eq!(keys.email_index(), "svc:users:by_email");
    }

    #[test]
    fn patterns_escape_glob_characters_in_the_prefix() {
        let keys = Keys::new("a*b:", 10);
        assert_eq!(keys.users_pattern(), "a\\*b:user:*");
        let id = UserId::generate();
        assert_eq!(keys.user_id_of(&keys.user(id)), Some(id));
        assert_eq!(keys.owner_of_session_set(&keys.sessions_of(id)), Some(id));
        assert_eq!(keys.user_id_of(&keys.sessions_of(id)), None);
    }

    #[test]
    fn a_member_round_trips_to_its_email_and_id() {
        let id = UserId::generate();
        let member = index_member(&email("Jo@M.co"), id);
        assert_eq!(parse_index_member(&member), Some(("jo@m.co", id)));
    }

    #[test]
    fn malformed_members_do_not_parse() {
        assert_eq!(parse_index_member("jo@m.co"), None);
        assert_eq!(parse_index_member("jo@m.co\0not-a-uuid"), None);
    }

    fn in_range(member: &str, (min, max): &(String, String)) -> bool {
        let after_min = match min.split_at(1) {
            ("[", bound) => member >= bound,
            (_, bound) => member > bound,
        };
        let before_max = match max.split_at(1) {
            ("[", bound) => member <= bound,
            (_, bound) => member < bound,
        };
        after_min && before_max
    }

    #[test]
    fn the_exact_range_holds_its_own_email_only() {
        let id = UserId::generate();
        let range = exact_email_range(&email("jo@m.co"));
        assert!(in_range(&index_member(&email("jo@m.co"), id), &range));
        assert!(!in_range(&index_member(&email("jo@m.com"), id), &range));
        assert!(!in_range(&index_member(&email("j@m.co"), id), &range));
        let longer = exact_email_range(&email("jo@m.com"));
        assert!(!in_range(&index_member(&email("jo@m.co"), id), &longer));
    }

    #[test]
    fn a_prefix_range_without_prefix_spans_the_whole_index() {
        assert_eq!(email_prefix_range("", None), (b"-".to_vec(), b"+".to_vec()));
    }

    #[test]
    fn a_prefix_range_starts_at_the_prefix_and_ends_after_it() {
        let (min, max) = email_prefix_range("jo", None);
        assert_eq!(min, b"[jo".to_vec());
        assert_eq!(max, b"(jo\xff".to_vec());
    }

    #[test]
    fn a_cursor_starts_the_range_after_its_member() {
        let (min, _) = email_prefix_range("", Some("jo@m.co\0x"));
        assert_eq!(min, b"(jo@m.co\0x".to_vec());
    }
}
