//! The data layout: every key name, every field name and the encoding of the
//! email index's members, in one place. docs/data-in-redis.md
//! describes what each key holds and why; the tests and the doctor build
//! their keys from here, never by hand.

use crate::domain::{AdminKeyDigest, CodePurpose, SessionId, UserEmail, UserId};

/// The fields of a user hash (`{prefix}user:{id}`).
pub mod user_fields {
    pub const NAME: &str = "name";
    pub const EMAIL: &str = "email";
    /// Unix milliseconds, as every stored time.
    pub const CREATED: &str = "created";
    pub const UPDATED: &str = "updated";
    /// The argon2id PHC string is kept as its three parts, not one string:
    /// each part stays within Redis's compact (listpack) encoding for hash
    /// values (64 bytes by default), which a 97-character PHC string does
    /// not, and that encoding takes a user from about 840 to about 520 bytes.
    pub const PASSWORD_PARAMS: &str = "password_params";
    pub const PASSWORD_SALT: &str = "password_salt";
    pub const PASSWORD_HASH: &str = "password_hash";
    /// `1` while an admin has disabled the user; absent otherwise.
    pub const DISABLED: &str = "disabled";
    /// `1` once the user confirmed a code sent to its current email.
    pub const EMAIL_VERIFIED: &str = "email_verified";
    /// What a public read fetches: no password material.
    pub const PUBLIC: [&str; 6] = [NAME, EMAIL, CREATED, UPDATED, DISABLED, EMAIL_VERIFIED];
}

/// The fields of a session hash (`{prefix}session:{id}`).
pub mod session_fields {
    pub const USER_ID: &str = "user_id";
    pub const CREATED: &str = "created";
    pub const LAST_SEEN: &str = "last_seen";
    /// The absolute end: no renewal goes past it.
    pub const EXPIRES_AT: &str = "expires_at";
    pub const IP: &str = "ip";
    pub const USER_AGENT: &str = "user_agent";
}

/// The fields of a one-time code's hash (`{prefix}code:{purpose}:{user id}`).
pub mod code_fields {
    /// The code's keyed hash: never the code.
    pub const DIGEST: &str = "digest";
    /// Wrong codes tried against it so far.
    pub const TRIES: &str = "tries";
}

/// The fields of an admin key's hash (`{prefix}admin_key:{digest}`).
pub mod admin_key_fields {
    pub const NAME: &str = "name";
    pub const SCOPE: &str = "scope";
    pub const CREATED: &str = "created";
    pub const LAST_USED: &str = "last_used";
}

/// The fields of an entry of the event stream (`{prefix}events`).
pub mod event_fields {
    pub const TYPE: &str = "type";
    pub const USER_ID: &str = "user_id";
    pub const AT: &str = "at";
}

/// The fields of a queued message: an entry of the queue
/// (`{prefix}mail:queue`) or of the dead letters (`{prefix}mail:dead`), and
/// the JSON object of a message waiting to be retried (`{prefix}mail:retry`).
pub mod mail_fields {
    /// The message's stable id, which its `Message-ID` header is made of.
    pub const ID: &str = "id";
    /// A [`crate::domain::MailKind`] name.
    pub const KIND: &str = "kind";
    pub const TO: &str = "to";
    /// The name the message greets, when there is one.
    pub const NAME: &str = "name";
    /// The six digits of a code mail, in clear while the message waits.
    pub const CODE: &str = "code";
    /// Unix milliseconds, as every stored time.
    pub const QUEUED_AT: &str = "queued_at";
    /// Past this, the message is dropped unsent; absent: never.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Delivery attempts that failed so far.
    pub const ATTEMPTS: &str = "attempts";
    /// Dead letters only: why the last attempt failed, in fixed words.
    pub const REASON: &str = "reason";
    /// Dead letters only: when the last attempt failed.
    pub const FAILED_AT: &str = "failed_at";
}

/// The consumer group through which the senders of every instance share the
/// mail queue: each entry goes to one of them.
pub const MAIL_GROUP: &str = "senders";

/// Every key name, under the configured prefix, and the cap of the event
/// stream that lives under them.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    events_max_len: u64,
    mail_max_per_recipient: u32,
}

/// About how many entries the event stream keeps unless told otherwise.
const DEFAULT_EVENTS_MAX_LEN: u64 = 100_000;

/// How many messages one address gets in an hour unless told otherwise.
const DEFAULT_MAIL_MAX_PER_RECIPIENT: u32 = 10;

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            events_max_len: DEFAULT_EVENTS_MAX_LEN,
            mail_max_per_recipient: DEFAULT_MAIL_MAX_PER_RECIPIENT,
        }
    }

    /// At most `max` messages are queued to one address in an hour.
    pub fn bounding_mail_at(self, max: u32) -> Self {
        Self {
            mail_max_per_recipient: max,
            ..self
        }
    }

    pub fn mail_max_per_recipient(&self) -> u32 {
        self.mail_max_per_recipient
    }

    /// The stream is trimmed to about `max_len` entries (XADD MAXLEN ~).
    pub fn capping_events_at(self, max_len: u64) -> Self {
        Self {
            events_max_len: max_len,
            ..self
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

    /// The user's session index: a sorted set of session ids, each scored by
    /// the session's end (Unix milliseconds), expiring with its last session.
    pub fn session_index(&self, user: UserId) -> String {
        format!("{}{SESSION_INDEX}{user}", self.prefix)
    }

    /// What [`Keys::session_index`] puts before the user id: scripts that
    /// learn the user from a session build the index's name with it.
    pub fn session_index_prefix(&self) -> String {
        format!("{}{SESSION_INDEX}", self.prefix)
    }

    /// The plain set of session ids that versions before the session index
    /// kept per user. Still read wherever all of a user's sessions end, and
    /// folded into the index by the doctor.
    pub fn legacy_session_set(&self, user: UserId) -> String {
        format!("{}{LEGACY_SESSION_SET}{user}", self.prefix)
    }

    /// What [`Keys::legacy_session_set`] puts before the user id.
    pub fn legacy_session_set_prefix(&self) -> String {
        format!("{}{LEGACY_SESSION_SET}", self.prefix)
    }

    pub fn login_failures_of_account(&self, email: &UserEmail) -> String {
        format!("{}login_failures:account:{email}", self.prefix)
    }

    /// `address` is a [`crate::domain::ClientAddress::counted_as`].
    pub fn login_failures_of_address(&self, address: &str) -> String {
        format!("{}login_failures:ip:{address}", self.prefix)
    }

    /// An email never holds a space, so the space separates the two.
    pub fn login_failures_of_account_at(&self, email: &UserEmail, address: &str) -> String {
        format!("{}login_failures:account_ip:{email} {address}", self.prefix)
    }

    /// The live one-time code of `purpose` for `user`: at most one.
    pub fn code(&self, purpose: CodePurpose, user: UserId) -> String {
        format!("{}code:{}:{user}", self.prefix, purpose.as_str())
    }

    /// Set while a new code of `purpose` for `user` may not be sent yet.
    pub fn code_sent(&self, purpose: CodePurpose, user: UserId) -> String {
        format!("{}code_sent:{}:{user}", self.prefix, purpose.as_str())
    }

    /// Codes of `purpose` issued to `user` in the current day.
    pub fn codes_issued(&self, purpose: CodePurpose, user: UserId) -> String {
        format!("{}codes_issued:{}:{user}", self.prefix, purpose.as_str())
    }

    /// Wrong confirmations of a code of `purpose` for `email` in the current
    /// day, from every address together.
    pub fn code_failures(&self, purpose: CodePurpose, email: &UserEmail) -> String {
        format!("{}code_failures:{}:{email}", self.prefix, purpose.as_str())
    }

    /// Email changes of `user` in the current day.
    pub fn email_changes(&self, user: UserId) -> String {
        format!("{}email_changes:{user}", self.prefix)
    }

    /// A revert code sent to `email`, the account's old address, by its
    /// keyed hash: the id of the account it restores, for 7 days.
    pub fn email_revert(&self, email: &UserEmail, digest: &str) -> String {
        format!("{}email_revert:{email}:{digest}", self.prefix)
    }

    /// `email` kept for the account that held it (its id) while a revert
    /// code can bring it back: no other account may take it meanwhile.
    pub fn email_reserved(&self, email: &UserEmail) -> String {
        format!("{}email_reserved:{email}", self.prefix)
    }

    /// The revert codes and reserved emails of `user`: a sorted set of their
    /// keys, scored by when each was made, so that a revert ends its own and
    /// the later ones, and the user's deletion ends them all.
    pub fn email_reverts_of(&self, user: UserId) -> String {
        format!("{}email_reverts:{user}", self.prefix)
    }

    /// The messages queued to `email` in the last hour: a sorted set of
    /// message ids scored by when each was queued (Unix milliseconds).
    pub fn mail_to_recipient(&self, email: &UserEmail) -> String {
        format!("{}mail_to:{email}", self.prefix)
    }

    /// Code requests from one client address in the current hour.
    pub fn code_requests_of_address(&self, address: &str) -> String {
        format!("{}code_requests:ip:{address}", self.prefix)
    }

    /// The client addresses whose account-and-address login counters for
    /// `email` are live, so that a password reset can clear them all.
    pub fn login_failure_addresses(&self, email: &UserEmail) -> String {
        format!("{}login_failures:addresses:{email}", self.prefix)
    }

    pub fn admin_key(&self, digest: &AdminKeyDigest) -> String {
        format!("{}admin_key:{digest}", self.prefix)
    }

    /// A hash from each admin key's name to its digest.
    pub fn admin_keys_by_name(&self) -> String {
        format!("{}admin_keys", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub fn activity(&self, user: UserId) -> String {
        format!("{}activity:{user}", self.prefix)
    }

    /// The stream of messages waiting to be sent, read by [`MAIL_GROUP`].
    pub fn mail_queue(&self) -> String {
        format!("{}mail:queue", self.prefix)
    }

    /// A sorted set of messages waiting to be retried, scored by the Unix
    /// millisecond at which each goes back to the queue.
    pub fn mail_retry(&self) -> String {
        format!("{}mail:retry", self.prefix)
    }

    /// The stream of messages that failed every attempt (dead letters).
    pub fn mail_dead(&self) -> String {
        format!("{}mail:dead", self.prefix)
    }

    /// The session id in a session hash's key.
    pub fn session_id_of(&self, key: &str) -> Option<SessionId> {
        SessionId::parse(key.strip_prefix(&self.prefix)?.strip_prefix("session:")?)
    }

    /// Whether `key` belongs to an admin key: its hash, or the name index.
    pub fn is_admin_key(&self, key: &str) -> bool {
        key == self.admin_keys_by_name()
            || key
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.strip_prefix("admin_key:"))
                .and_then(AdminKeyDigest::parse)
                .is_some()
    }

    /// A SCAN pattern matching every user hash.
    pub fn users_pattern(&self) -> String {
        format!("{}user:*", escape_glob(&self.prefix))
    }

    /// The user id in a user hash's key.
    pub fn user_id_of(&self, key: &str) -> Option<UserId> {
        UserId::parse(key.strip_prefix(&self.prefix)?.strip_prefix("user:")?)
    }

    /// A SCAN pattern matching every per-user session index.
    pub fn session_indexes_pattern(&self) -> String {
        format!("{}{SESSION_INDEX}*", escape_glob(&self.prefix))
    }

    /// The user id in a session index's key.
    pub fn owner_of_session_index(&self, key: &str) -> Option<UserId> {
        UserId::parse(
            key.strip_prefix(&self.prefix)?
                .strip_prefix(SESSION_INDEX)?,
        )
    }

    /// A SCAN pattern matching every legacy per-user session set.
    pub fn legacy_session_sets_pattern(&self) -> String {
        format!("{}{LEGACY_SESSION_SET}*", escape_glob(&self.prefix))
    }

    /// The user id in a legacy session set's key.
    pub fn owner_of_legacy_session_set(&self, key: &str) -> Option<UserId> {
        UserId::parse(
            key.strip_prefix(&self.prefix)?
                .strip_prefix(LEGACY_SESSION_SET)?,
        )
    }
}

/// The session index's name, before the user id. A new name rather than the
/// legacy set's: a deployment's existing sets stay readable as they are.
const SESSION_INDEX: &str = "sessions:";

/// The legacy session set's name, before the user id.
const LEGACY_SESSION_SET: &str = "sessions_of:";

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
pub(super) const MEMBER_SEPARATOR: char = '\0';

/// The email index's member for `email` held by `id`: `{email}\0{id}`, so
/// members sort by email and a lexical range finds one exact email.
pub fn index_member(email: &str, id: UserId) -> String {
    format!("{email}{MEMBER_SEPARATOR}{id}")
}

/// Splits a member back into its email and id; `None` when it is malformed.
pub fn parse_index_member(member: &str) -> Option<(&str, UserId)> {
    let (email, id) = member.split_once(MEMBER_SEPARATOR)?;
    Some((email, UserId::parse(id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix() {
        let keys = Keys::new("svc:");
        let id = UserId::generate();
        assert_eq!(keys.user(id), format!("svc:user:{id}"));
        assert_eq!(keys.email_index(), "svc:users:by_email");
    }

    #[test]
    fn patterns_escape_glob_characters_in_the_prefix() {
        let keys = Keys::new("a*b:");
        assert_eq!(keys.users_pattern(), "a\\*b:user:*");
        let id = UserId::generate();
        assert_eq!(keys.user_id_of(&keys.user(id)), Some(id));
        assert_eq!(
            keys.owner_of_session_index(&keys.session_index(id)),
            Some(id)
        );
        assert_eq!(keys.user_id_of(&keys.session_index(id)), None);
    }

    #[test]
    fn the_session_index_and_the_legacy_set_have_distinct_names() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        assert_eq!(keys.session_index(id), format!("ua:sessions:{id}"));
        assert_eq!(keys.legacy_session_set(id), format!("ua:sessions_of:{id}"));
        assert_eq!(
            keys.owner_of_legacy_session_set(&keys.legacy_session_set(id)),
            Some(id)
        );
        assert_eq!(
            keys.owner_of_session_index(&keys.legacy_session_set(id)),
            None
        );
        assert_eq!(
            keys.owner_of_legacy_session_set(&keys.session_index(id)),
            None
        );
        assert_eq!(
            keys.session_index(id),
            format!("{}{id}", keys.session_index_prefix())
        );
    }

    #[test]
    fn a_member_round_trips_to_its_email_and_id() {
        let id = UserId::generate();
        let member = index_member("jo@m.co", id);
        assert_eq!(parse_index_member(&member), Some(("jo@m.co", id)));
    }

    #[test]
    fn malformed_members_do_not_parse() {
        assert_eq!(parse_index_member("jo@m.co"), None);
        assert_eq!(parse_index_member("jo@m.co\0not-a-uuid"), None);
    }
}
