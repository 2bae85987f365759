//! The email index (`{prefix}{tag}users:by_email`, one sorted set per
//! bucket of emails): look-ups, ranges, the claims
//! that keep emails unique, and the list cursor, which is an index member
//! that clients hold as an opaque string.

use crate::store::plumbing::transaction::Writes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::domain::{UserEmail, UserId};
use crate::store::layout::{index_member, parse_index_member, Keys, MEMBER_SEPARATOR};

/// A byte that never occurs in UTF-8, so it sorts after any email.
const AFTER_ALL_UTF8: u8 = 0xff;

/// The ZRANGEBYLEX bounds holding exactly the members of `email`.
pub(in crate::store) fn exact_email_range(email: &UserEmail) -> (String, String) {
    (
        format!("[{email}{MEMBER_SEPARATOR}"),
        format!("({email}\u{1}"),
    )
}

/// The ZRANGEBYLEX bounds of every member whose email starts with `prefix`,
/// beginning after the member `after` when one is given.
pub(in crate::store) fn email_prefix_range(
    prefix: &str,
    after: Option<&str>,
) -> (Vec<u8>, Vec<u8>) {
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

/// The index member for `email`, if any: at most one.
pub(in crate::store) fn email_lookup(keys: &Keys, email: &UserEmail) -> redis::Cmd {
    let (min, max) = exact_email_range(email);
    redis::cmd("ZRANGEBYLEX")
        .arg(keys.email_index_of(email.as_str()))
        .arg(min)
        .arg(max)
        .arg("LIMIT")
        .arg(0)
        .arg(1)
        .take()
}

/// The user id in the reply to [`email_lookup`].
pub(in crate::store) fn first_id(members: Vec<String>) -> Option<UserId> {
    members
        .first()
        .and_then(|member| parse_index_member(member))
        .map(|(_, id)| id)
}

/// Adds to a step's writes the member of `email` held by `id`. A step
/// that read the email's members (with [`email_lookup`]) meanwhile starts
/// over.
pub(in crate::store) fn add_to_index(
    writes: &mut Writes,
    keys: &Keys,
    email: &UserEmail,
    id: UserId,
) {
    writes
        .cmd("ZADD")
        .arg(keys.email_index_of(email.as_str()))
        .arg(0)
        .arg(index_member(email.as_str(), id))
        .ignore();
}

/// Adds to a step's writes the removal of the member of `email` held by `id`.
pub(in crate::store) fn remove_from_index(
    writes: &mut Writes,
    keys: &Keys,
    email: &str,
    id: UserId,
) {
    writes
        .cmd("ZREM")
        .arg(keys.email_index_of(email))
        .arg(index_member(email, id))
        .ignore();
}

/// Where a page of the user list ends: the last index member it showed.
/// Clients see it only as the opaque string of [`ListCursor::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor(String);

impl ListCursor {
    pub(in crate::store) fn after(member: String) -> Self {
        Self(member)
    }

    pub(in crate::store) fn member(&self) -> &str {
        &self.0
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// A cursor from a previous page's `next`; anything else is refused.
    pub fn decode(raw: &str) -> Result<Self, String> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|member| parse_index_member(member).is_some())
            .map(Self)
            .ok_or_else(|| "is not a cursor from a previous page's next".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> UserEmail {
        UserEmail::parse(raw).expect("valid email")
    }

    fn member(raw: &str, id: UserId) -> String {
        index_member(email(raw).as_str(), id)
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
        assert!(in_range(&member("jo@m.co", id), &range));
        assert!(!in_range(&member("jo@m.com", id), &range));
        assert!(!in_range(&member("j@m.co", id), &range));
        let longer = exact_email_range(&email("jo@m.com"));
        assert!(!in_range(&member("jo@m.co", id), &longer));
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

    #[test]
    fn a_cursor_round_trips() {
        let cursor = ListCursor::after(member("jo@m.co", UserId::generate()));
        assert_eq!(ListCursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn a_forged_cursor_is_rejected() {
        assert!(ListCursor::decode("not base64!").is_err());
        assert!(ListCursor::decode(&URL_SAFE_NO_PAD.encode("no separator")).is_err());
    }
}
