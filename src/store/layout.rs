//! The data layout: every key name, every field name and the encoding of the
//! email index's members, in one place. docs/data-in-redis.md
//! describes what each key holds and why; the tests and the doctor build
//! their keys from here, never by hand.
//!
//! Every key that one atomic step may write together with another carries
//! the same hash tag, so that on Redis Cluster they share a slot: a user's
//! keys carry its bucket's tag, a key about an email its email's bucket's
//! tag, a key about a client address its address's bucket's tag. A new
//! user's id is made in its email's bucket, and a new session's token in
//! its user's, so a sign-up writes one slot and a session is read with its
//! user in one.

use std::fmt;

use uuid::Uuid;

use crate::domain::{AdminKeyDigest, CodePurpose, SessionId, SessionToken, UserEmail, UserId};

/// How many buckets the users, the emails and the client addresses are
/// spread over. Fixed for good: a key's name depends on it.
pub const BUCKETS: u8 = 64;

/// The hash tag of each bucket. Bucket `i`'s tag hashes to within two slots
/// of the middle of the `i`-th of 64 equal ranges of Redis Cluster's 16 384
/// slots, so that the buckets spread evenly over the primaries of any
/// cluster whose primaries serve ranges of about equal size.
const BUCKET_TAGS: [&str; BUCKETS as usize] = [
    "00th", "01ada", "02bdm", "03br", "04ddu", "05edq", "06nme", "07gdy", "08itd", "09yvp",
    "10gxz", "11nqf", "12dyr", "13eyv", "14cxj", "15bxn", "16ddm", "17edi", "18fpa", "19gpe",
    "20bnl", "21cnh", "22qlt", "23igx", "24bbq", "25cbu", "26hka", "27ike", "28cwu", "29bwq",
    "30ers", "31drw", "32gu", "33qkf", "34fhj", "35ghn", "36eib", "37dif", "38otv", "39ntr",
    "40jwb", "41kwf", "42hwj", "43iwn", "44nwr", "45owv", "46lwz", "47lus", "48cva", "49bve",
    "50esg", "51dsc", "52fro", "53grk", "54asw", "55hzk", "56nwj", "57own", "58lcf", "59ejz",
    "60qvc", "61atw", "62svk", "63jb",
];

/// The layout this release writes, as its marker key holds it
/// ([`Keys::layout_marker`]). The first layout, before hash tags, had no
/// marker.
pub const LAYOUT_VERSION: &str = "2";

/// The marker's value while `user-accounts migrate` rewrites the keys.
pub const LAYOUT_MIGRATING: &str = "migrating";

/// The hash tag of the admin keys: few, and written together.
const ADMIN_TAG: &str = "admin";

/// One of the [`BUCKETS`]: where a user, an email or an address lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(u8);

impl Bucket {
    /// A user's bucket: the low bits of its id's last byte.
    pub fn of_user(id: UserId) -> Self {
        Self(id.as_bytes()[15] % BUCKETS)
    }

    /// An email's bucket, by a checksum of the email as stored.
    pub fn of_email(email: &str) -> Self {
        Self::of_text(email)
    }

    /// A client address's bucket ([`crate::domain::ClientAddress::counted_as`]).
    pub fn of_address(address: &str) -> Self {
        Self::of_text(address)
    }

    /// A session's bucket: the low bits of its id's first byte. A session
    /// made by this release is in its user's bucket.
    pub fn of_session(id: &SessionId) -> Self {
        let first = u8::from_str_radix(id.as_str().get(..2).unwrap_or("0"), 16).unwrap_or(0);
        Self(first % BUCKETS)
    }

    fn of_text(text: &str) -> Self {
        let checksum = crc16::State::<crc16::XMODEM>::calculate(text.as_bytes());
        Self((checksum % u16::from(BUCKETS)) as u8)
    }

    /// Every bucket, in order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..BUCKETS).map(Self)
    }

    /// The bucket's number, from 0.
    pub fn number(self) -> u8 {
        self.0
    }

    fn tag(self) -> &'static str {
        BUCKET_TAGS[usize::from(self.0)]
    }
}

/// Redis Cluster's slot of `key`: the CRC16 of its hash tag, or of the
/// whole key when it has none.
pub fn cluster_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|byte| *byte == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|byte| *byte == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % 16384
}

/// A new user id in `email`'s bucket: random but for the bits that place it.
pub fn new_user_id(email: &UserEmail) -> UserId {
    let mut bytes = *Uuid::new_v4().as_bytes();
    let bucket = Bucket::of_email(email.as_str()).0;
    bytes[15] = bytes[15] - bytes[15] % BUCKETS + bucket;
    UserId::from(Uuid::from_bytes(bytes))
}

/// A new session token whose session lives in `user`'s bucket: tokens are
/// drawn until one's id falls there (64 draws on average, a few µs).
pub fn new_session_token(user: UserId) -> SessionToken {
    let bucket = Bucket::of_user(user);
    loop {
        let token = SessionToken::generate();
        if Bucket::of_session(&token.id()) == bucket {
            return token;
        }
    }
}

/// The Lua function `user_key(prefix, name, user_id)`, for scripts that
/// learn a user from a session: the name of that user's key `name` (such
/// as [`SESSION_INDEX`]) under `prefix`, as [`Keys`] builds it.
pub fn user_key_lua() -> String {
    let tags: Vec<String> = BUCKET_TAGS.iter().map(|tag| format!("'{tag}'")).collect();
    format!(
        "local bucket_tags = {{{}}}\n\
         local function user_key(prefix, name, user_id)\n  \
         local bucket = tonumber(string.sub(user_id, -2), 16) % {BUCKETS}\n  \
         return prefix .. '{{' .. bucket_tags[bucket + 1] .. '}}' .. name .. user_id\n\
         end\n",
        tags.join(", ")
    )
}

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
    /// The id of the email move that put the current email's index entry
    /// in place; absent when the sign-up did.
    pub const EMAIL_MOVE: &str = "email_move";
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

/// The fields of an entry of an event stream (`{prefix}{tag}events`).
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

/// Every key name, under the configured prefix, and the caps of the event
/// streams and of the mail to one address.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    events_max_len: u64,
    mail_max_per_recipient: u32,
}

/// About how many entries the event streams keep in all unless told
/// otherwise.
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

    /// The event streams are trimmed to about `max_len` entries in all
    /// (XADD MAXLEN ~ on each).
    pub fn capping_events_at(self, max_len: u64) -> Self {
        Self {
            events_max_len: max_len,
            ..self
        }
    }

    /// About how many entries each bucket's event stream keeps: its share of
    /// the whole.
    pub fn events_max_len_per_stream(&self) -> u64 {
        self.events_max_len.div_ceil(u64::from(BUCKETS))
    }

    /// `{prefix}{tag}rest`: a key in `bucket`.
    fn in_bucket(&self, bucket: Bucket, rest: fmt::Arguments<'_>) -> String {
        format!("{}{{{}}}{rest}", self.prefix, bucket.tag())
    }

    fn of_user(&self, user: UserId, rest: fmt::Arguments<'_>) -> String {
        self.in_bucket(Bucket::of_user(user), rest)
    }

    fn of_email(&self, email: &UserEmail, rest: fmt::Arguments<'_>) -> String {
        self.in_bucket(Bucket::of_email(email.as_str()), rest)
    }

    fn of_address(&self, address: &str, rest: fmt::Arguments<'_>) -> String {
        self.in_bucket(Bucket::of_address(address), rest)
    }

    pub fn user(&self, id: UserId) -> String {
        self.of_user(id, format_args!("user:{id}"))
    }

    /// One bucket of the email index: the members of the emails in it.
    pub fn email_index(&self, bucket: Bucket) -> String {
        self.in_bucket(bucket, format_args!("users:by_email"))
    }

    /// The bucket of the email index that holds `email`'s member.
    pub fn email_index_of(&self, email: &str) -> String {
        self.email_index(Bucket::of_email(email))
    }

    /// `email` claimed by the account about to move to it: its id and
    /// when the claim was made (`{id} {unix ms}`).
    pub fn email_claim(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("email_claim:{email}"))
    }

    /// Which account's move put `email`'s index entry in place, and which
    /// move (`{id} {move id}`): a move that leaves the email removes the
    /// entry only while it is the one its account holds, not one a later
    /// move back to the email put there.
    pub fn email_entry(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("email_entry:{email}"))
    }

    /// The email change of `user` whose last steps have not run yet: the
    /// address it leaves, the one it moves to and the revert code's keyed
    /// hash.
    pub fn email_move(&self, user: UserId) -> String {
        self.of_user(user, format_args!("email_move:{user}"))
    }

    pub fn session(&self, id: &SessionId) -> String {
        self.in_bucket(Bucket::of_session(id), format_args!("session:{id}"))
    }

    /// The user's session index: a sorted set of session ids, each scored by
    /// the session's end (Unix milliseconds), expiring with its last session.
    pub fn session_index(&self, user: UserId) -> String {
        self.of_user(user, format_args!("{SESSION_INDEX}{user}"))
    }

    /// What every key starts with: `REDIS_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn legacy_session_set(&self, user: UserId) -> String {
        self.of_user(user, format_args!("{LEGACY_SESSION_SET}{user}"))
    }

    pub fn login_failures_of_account(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("login_failures:account:{email}"))
    }

    /// `address` is a [`crate::domain::ClientAddress::counted_as`].
    pub fn login_failures_of_address(&self, address: &str) -> String {
        self.of_address(address, format_args!("login_failures:ip:{address}"))
    }

    /// An email never holds a space, so the space separates the two.
    pub fn login_failures_of_account_at(&self, email: &UserEmail, address: &str) -> String {
        self.of_email(
            email,
            format_args!("login_failures:account_ip:{email} {address}"),
        )
    }

    /// The live one-time code of `purpose` for `user`: at most one.
    pub fn code(&self, purpose: CodePurpose, user: UserId) -> String {
        self.of_user(user, format_args!("code:{}:{user}", purpose.as_str()))
    }

    /// Set while a new code of `purpose` for `user` may not be sent yet.
    pub fn code_sent(&self, purpose: CodePurpose, user: UserId) -> String {
        self.of_user(user, format_args!("code_sent:{}:{user}", purpose.as_str()))
    }

    /// Codes of `purpose` issued to `user` in the current day.
    pub fn codes_issued(&self, purpose: CodePurpose, user: UserId) -> String {
        self.of_user(
            user,
            format_args!("codes_issued:{}:{user}", purpose.as_str()),
        )
    }

    /// Wrong confirmations of a code of `purpose` for the account `user`
    /// in the current day, from every address together.
    pub fn code_failures_of_user(&self, purpose: CodePurpose, user: UserId) -> String {
        self.of_user(
            user,
            format_args!("code_failures_of:{}:{user}", purpose.as_str()),
        )
    }

    /// Wrong confirmations of a code of `purpose` for `email`, which no
    /// account holds, in the current day, from every address together.
    pub fn code_failures(&self, purpose: CodePurpose, email: &UserEmail) -> String {
        self.of_email(
            email,
            format_args!("code_failures:{}:{email}", purpose.as_str()),
        )
    }

    /// Email changes of `user` in the current day.
    pub fn email_changes(&self, user: UserId) -> String {
        self.of_user(user, format_args!("email_changes:{user}"))
    }

    /// A revert code sent to `email`, the account's old address, by its
    /// keyed hash: the id of the account it restores, for 7 days.
    pub fn email_revert(&self, email: &UserEmail, digest: &str) -> String {
        self.of_email(email, format_args!("email_revert:{email}:{digest}"))
    }

    /// `email` kept for the account that held it (its id) while a revert
    /// code can bring it back: no other account may take it meanwhile.
    pub fn email_reserved(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("email_reserved:{email}"))
    }

    /// The revert codes and reserved emails of `user`: a sorted set of their
    /// keys, scored by when each was made, so that a revert ends its own and
    /// the later ones, and the user's deletion ends them all.
    pub fn email_reverts_of(&self, user: UserId) -> String {
        self.of_user(user, format_args!("email_reverts:{user}"))
    }

    /// The messages queued to `email` in the last hour: a sorted set of
    /// message ids scored by when each was queued (Unix milliseconds).
    pub fn mail_to_recipient(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("mail_to:{email}"))
    }

    /// Code requests from one client address in the current hour.
    pub fn code_requests_of_address(&self, address: &str) -> String {
        self.of_address(address, format_args!("code_requests:ip:{address}"))
    }

    /// The client addresses whose account-and-address login counters for
    /// `email` are live, so that a password reset can clear them all.
    pub fn login_failure_addresses(&self, email: &UserEmail) -> String {
        self.of_email(email, format_args!("login_failures:addresses:{email}"))
    }

    pub fn admin_key(&self, digest: &AdminKeyDigest) -> String {
        format!("{}{{{ADMIN_TAG}}}admin_key:{digest}", self.prefix)
    }

    /// A hash from each admin key's name to its digest.
    pub fn admin_keys_by_name(&self) -> String {
        format!("{}{{{ADMIN_TAG}}}admin_keys", self.prefix)
    }

    /// The event stream of `user`'s bucket: a user's events are in order in
    /// one stream.
    pub fn events(&self, user: UserId) -> String {
        self.of_user(user, format_args!("events"))
    }

    /// Every bucket's event stream, in bucket order.
    pub fn event_streams(&self) -> Vec<String> {
        Bucket::all()
            .map(|bucket| self.in_bucket(bucket, format_args!("events")))
            .collect()
    }

    pub fn activity(&self, user: UserId) -> String {
        self.of_user(user, format_args!("activity:{user}"))
    }

    /// `bucket`'s stream of messages waiting to be sent, read by
    /// [`MAIL_GROUP`]: a step queues its mail in its own bucket.
    pub fn mail_queue(&self, bucket: Bucket) -> String {
        self.in_bucket(bucket, format_args!("mail:queue"))
    }

    /// `bucket`'s sorted set of messages waiting to be retried, scored by
    /// the Unix millisecond at which each goes back to its queue.
    pub fn mail_retry(&self, bucket: Bucket) -> String {
        self.in_bucket(bucket, format_args!("mail:retry"))
    }

    /// `bucket`'s stream of messages that failed every attempt (dead
    /// letters).
    pub fn mail_dead(&self, bucket: Bucket) -> String {
        self.in_bucket(bucket, format_args!("mail:dead"))
    }

    /// The first layout's one mail queue, retry set and dead letters, whose
    /// messages `user-accounts migrate` moves to the buckets.
    pub fn first_layout_mail(&self) -> [String; 3] {
        ["queue", "retry", "dead"].map(|name| format!("{}mail:{name}", self.prefix))
    }

    /// Which layout the keys under the prefix are in: [`LAYOUT_VERSION`],
    /// or [`LAYOUT_MIGRATING`] during a migration.
    pub fn layout_marker(&self) -> String {
        format!("{}layout", self.prefix)
    }

    /// Keys only the first layout has, one of which exists wherever it
    /// holds a user or an admin key: its one email index, its admin key
    /// names.
    pub fn first_layout_keys(&self) -> [String; 2] {
        [
            self.first_layout_email_index(),
            format!("{}admin_keys", self.prefix),
        ]
    }

    /// Where a key of the first layout, `{prefix}{rest}`, lives in this
    /// one: `{prefix}{tag}{rest}`, under its owner's tag. `None` for a key
    /// whose name stays (the mail queue, the marker), one of this layout,
    /// the first layout's event stream, left for its readers to finish,
    /// and its email index, whose members go to their emails' buckets one
    /// by one.
    pub fn relocated(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.prefix)?;
        let (tail, owner) = FIRST_LAYOUT_FAMILIES
            .iter()
            .find_map(|(name, owner)| Some((rest.strip_prefix(name)?, owner)))?;
        let tag = match owner {
            Owner::User => Bucket::of_user(UserId::parse(tail.rsplit(':').next()?)?).tag(),
            Owner::Session => Bucket::of_session(&SessionId::parse(tail)?).tag(),
            Owner::Email(part) => Bucket::of_email(part.of(tail)?).tag(),
            Owner::Address => Bucket::of_address(tail).tag(),
            Owner::Admin => ADMIN_TAG,
        };
        Some(format!("{}{{{tag}}}{rest}", self.prefix))
    }

    /// The first layout's email index: one sorted set for every email.
    pub fn first_layout_email_index(&self) -> String {
        format!("{}users:by_email", self.prefix)
    }

    /// The bucket and the rest of a key of this layout, after its prefix
    /// and its tag.
    fn untagged<'k>(&self, key: &'k str) -> Option<(Bucket, &'k str)> {
        let (tag, rest) = key
            .strip_prefix(&self.prefix)?
            .strip_prefix('{')?
            .split_once('}')?;
        let bucket = BUCKET_TAGS.iter().position(|known| *known == tag)?;
        Some((Bucket(u8::try_from(bucket).ok()?), rest))
    }

    /// The user id in a key `{prefix}{tag}{name}{id}` of the user's own
    /// bucket; `None` for any other key.
    fn user_of(&self, key: &str, name: &str) -> Option<UserId> {
        let (bucket, rest) = self.untagged(key)?;
        let user = UserId::parse(rest.strip_prefix(name)?)?;
        (Bucket::of_user(user) == bucket).then_some(user)
    }

    /// The session id in a session hash's key.
    pub fn session_id_of(&self, key: &str) -> Option<SessionId> {
        let (bucket, rest) = self.untagged(key)?;
        let id = SessionId::parse(rest.strip_prefix("session:")?)?;
        (Bucket::of_session(&id) == bucket).then_some(id)
    }

    /// Whether `key` belongs to an admin key: its hash, or the name index.
    pub fn is_admin_key(&self, key: &str) -> bool {
        key == self.admin_keys_by_name()
            || key
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.strip_prefix(&format!("{{{ADMIN_TAG}}}admin_key:")))
                .and_then(AdminKeyDigest::parse)
                .is_some()
    }

    /// A SCAN pattern matching every key `{prefix}{tag}{name}*`.
    fn tagged_pattern(&self, name: &str) -> String {
        format!("{}{{*}}{name}*", escape_glob(&self.prefix))
    }

    /// A SCAN pattern matching every key under the prefix.
    pub fn everything_pattern(&self) -> String {
        format!("{}*", escape_glob(&self.prefix))
    }

    /// A SCAN pattern matching every user hash.
    pub fn users_pattern(&self) -> String {
        self.tagged_pattern("user:")
    }

    /// The user id in a user hash's key.
    pub fn user_id_of(&self, key: &str) -> Option<UserId> {
        self.user_of(key, "user:")
    }

    /// A SCAN pattern matching every per-user session index.
    pub fn session_indexes_pattern(&self) -> String {
        self.tagged_pattern(SESSION_INDEX)
    }

    /// The user id in a session index's key.
    pub fn owner_of_session_index(&self, key: &str) -> Option<UserId> {
        self.user_of(key, SESSION_INDEX)
    }

    /// A SCAN pattern matching every recorded email move.
    pub fn email_moves_pattern(&self) -> String {
        self.tagged_pattern("email_move:")
    }

    /// The user id in a recorded email move's key.
    pub fn mover_of(&self, key: &str) -> Option<UserId> {
        self.user_of(key, "email_move:")
    }

    /// A SCAN pattern matching every claim on an email.
    pub fn email_claims_pattern(&self) -> String {
        self.tagged_pattern("email_claim:")
    }

    /// The email in a claim's key, when it is in its email's bucket.
    pub fn claimed_email_of(&self, key: &str) -> Option<UserEmail> {
        let (bucket, rest) = self.untagged(key)?;
        let email = UserEmail::parse(rest.strip_prefix("email_claim:")?).ok()?;
        (Bucket::of_email(email.as_str()) == bucket).then_some(email)
    }

    /// A SCAN pattern matching every legacy per-user session set.
    pub fn legacy_session_sets_pattern(&self) -> String {
        self.tagged_pattern(LEGACY_SESSION_SET)
    }

    /// The user id in a legacy session set's key.
    pub fn owner_of_legacy_session_set(&self, key: &str) -> Option<UserId> {
        self.user_of(key, LEGACY_SESSION_SET)
    }
}

/// Whose tag a key of the first layout takes, by what follows its name.
enum Owner {
    /// A user id ends it.
    User,
    /// It is a session id.
    Session,
    /// It holds an email.
    Email(EmailPart),
    /// It is a client address.
    Address,
    Admin,
}

/// Where the email is in what follows a key's name.
#[derive(Clone, Copy)]
enum EmailPart {
    Whole,
    /// `{email} {address}`: an email holds no space.
    BeforeSpace,
    /// `{email}:{digest}`: a digest holds no colon.
    BeforeLastColon,
    /// `{purpose}:{email}`: a purpose holds no colon.
    AfterColon,
}

impl EmailPart {
    fn of(self, tail: &str) -> Option<&str> {
        match self {
            Self::Whole => Some(tail),
            Self::BeforeSpace => tail.rsplit_once(' ').map(|(email, _)| email),
            Self::BeforeLastColon => tail.rsplit_once(':').map(|(email, _)| email),
            Self::AfterColon => tail.split_once(':').map(|(_, email)| email),
        }
    }
}

/// Every family of keys of the first layout that moves, by its name: the
/// names of [`Keys`], with no tag. No name starts another.
const FIRST_LAYOUT_FAMILIES: [(&str, Owner); 22] = [
    ("user:", Owner::User),
    (SESSION_INDEX, Owner::User),
    (LEGACY_SESSION_SET, Owner::User),
    ("code:", Owner::User),
    ("code_sent:", Owner::User),
    ("codes_issued:", Owner::User),
    ("email_changes:", Owner::User),
    ("email_reverts:", Owner::User),
    ("activity:", Owner::User),
    ("session:", Owner::Session),
    ("email_claim:", Owner::Email(EmailPart::Whole)),
    ("email_reserved:", Owner::Email(EmailPart::Whole)),
    ("email_revert:", Owner::Email(EmailPart::BeforeLastColon)),
    ("mail_to:", Owner::Email(EmailPart::Whole)),
    ("login_failures:account:", Owner::Email(EmailPart::Whole)),
    (
        "login_failures:account_ip:",
        Owner::Email(EmailPart::BeforeSpace),
    ),
    ("login_failures:addresses:", Owner::Email(EmailPart::Whole)),
    ("code_failures:", Owner::Email(EmailPart::AfterColon)),
    ("login_failures:ip:", Owner::Address),
    ("code_requests:ip:", Owner::Address),
    ("admin_key:", Owner::Admin),
    ("admin_keys", Owner::Admin),
];

/// The session index's name, before the user id. A new name rather than the
/// legacy set's: a deployment's existing sets stay readable as they are.
pub const SESSION_INDEX: &str = "sessions:";

/// The legacy session set's name, before the user id.
pub const LEGACY_SESSION_SET: &str = "sessions_of:";

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

    fn slot(key: &str) -> u16 {
        cluster_slot(key.as_bytes())
    }

    fn email(raw: &str) -> UserEmail {
        UserEmail::parse(raw).expect("a valid email")
    }

    #[test]
    fn keys_carry_the_prefix_and_their_bucket_tag() {
        let keys = Keys::new("svc:");
        let id = UserId::generate();
        let tag = Bucket::of_user(id).tag();
        assert_eq!(keys.user(id), format!("svc:{{{tag}}}user:{id}"));
        assert_eq!(keys.email_index(Bucket(0)), "svc:{00th}users:by_email");
    }

    #[test]
    fn each_bucket_sits_in_the_middle_of_its_share_of_the_slots() {
        let share = 16384 / u16::from(BUCKETS);
        for bucket in Bucket::all() {
            let middle = u16::from(bucket.0) * share + share / 2;
            let slot = slot(&format!("{{{}}}", bucket.tag()));
            assert!(
                slot.abs_diff(middle) <= 2,
                "bucket {bucket:?}: slot {slot}, middle {middle}"
            );
        }
    }

    /// Every key of the user `id` that the first layout had too.
    fn user_keys(keys: &Keys, id: UserId) -> Vec<String> {
        vec![
            keys.user(id),
            keys.session_index(id),
            keys.legacy_session_set(id),
            keys.code(CodePurpose::VerifyEmail, id),
            keys.code_sent(CodePurpose::ResetPassword, id),
            keys.codes_issued(CodePurpose::VerifyEmail, id),
            keys.email_changes(id),
            keys.email_reverts_of(id),
            keys.activity(id),
        ]
    }

    /// Every key about `email` that the first layout had too.
    fn email_keys(keys: &Keys, email: &UserEmail) -> Vec<String> {
        vec![
            keys.email_claim(email),
            keys.email_reserved(email),
            keys.email_revert(email, "0f1e"),
            keys.mail_to_recipient(email),
            keys.login_failures_of_account(email),
            keys.login_failures_of_account_at(email, "2001:db8::1"),
            keys.login_failure_addresses(email),
            keys.code_failures(CodePurpose::ResetPassword, email),
        ]
    }

    #[test]
    fn a_users_keys_share_one_slot() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let mut slots: Vec<u16> = user_keys(&keys, id).iter().map(|key| slot(key)).collect();
        slots.push(slot(&keys.events(id)));
        slots.push(slot(&keys.email_move(id)));
        slots.push(slot(
            &keys.code_failures_of_user(CodePurpose::VerifyEmail, id),
        ));
        assert!(slots.iter().all(|s| *s == slots[0]), "{slots:?}");
    }

    #[test]
    fn an_emails_keys_share_one_slot_with_its_index_bucket() {
        let keys = Keys::new("ua:");
        let ada = email("ada@example.com");
        let mut slots: Vec<u16> = email_keys(&keys, &ada)
            .iter()
            .map(|key| slot(key))
            .collect();
        slots.push(slot(&keys.email_index_of(ada.as_str())));
        slots.push(slot(&keys.email_entry(&ada)));
        assert!(slots.iter().all(|s| *s == slots[0]), "{slots:?}");
    }

    #[test]
    fn a_new_user_lives_in_its_emails_bucket() {
        let keys = Keys::new("ua:");
        for raw in ["ada@example.com", "bob@example.org", "c@d.io"] {
            let email = email(raw);
            let id = new_user_id(&email);
            assert_eq!(Bucket::of_user(id), Bucket::of_email(email.as_str()));
            assert_eq!(slot(&keys.user(id)), slot(&keys.email_claim(&email)));
            assert_eq!(id.as_bytes()[6] >> 4, 4, "a version 4 UUID");
        }
    }

    #[test]
    fn a_new_session_lives_in_its_users_bucket() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let token = new_session_token(id);
        assert_eq!(slot(&keys.session(&token.id())), slot(&keys.user(id)));
    }

    #[test]
    fn the_lua_user_key_knows_every_bucket() {
        let source = user_key_lua();
        for bucket in Bucket::all() {
            assert!(source.contains(&format!("'{}'", bucket.tag())));
        }
        assert!(source.contains(&format!("% {BUCKETS}")));
    }

    #[test]
    fn patterns_escape_glob_characters_in_the_prefix() {
        let keys = Keys::new("a*b:");
        assert_eq!(keys.users_pattern(), "a\\*b:{*}user:*");
        let id = UserId::generate();
        assert_eq!(keys.user_id_of(&keys.user(id)), Some(id));
        assert_eq!(
            keys.owner_of_session_index(&keys.session_index(id)),
            Some(id)
        );
        assert_eq!(keys.user_id_of(&keys.session_index(id)), None);
    }

    #[test]
    fn the_doctor_reads_the_owner_of_a_move_and_the_email_of_a_claim_from_their_keys() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let ada = email("ada@example.com");
        assert_eq!(keys.mover_of(&keys.email_move(id)), Some(id));
        assert_eq!(
            keys.claimed_email_of(&keys.email_claim(&ada)),
            Some(ada.clone())
        );
        assert_eq!(keys.mover_of(&keys.user(id)), None);
        assert_eq!(keys.claimed_email_of(&keys.email_reserved(&ada)), None);
    }

    #[test]
    fn a_key_in_another_bucket_than_its_ids_is_none_of_its() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let other = Bucket((Bucket::of_user(id).0 + 1) % BUCKETS);
        let misplaced = format!("ua:{{{}}}user:{id}", other.tag());
        assert_eq!(keys.user_id_of(&misplaced), None);
        assert_eq!(keys.user_id_of(&format!("ua:user:{id}")), None);
    }

    #[test]
    fn the_session_index_and_the_legacy_set_have_distinct_names() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let tag = Bucket::of_user(id).tag();
        assert_eq!(keys.session_index(id), format!("ua:{{{tag}}}sessions:{id}"));
        assert_eq!(
            keys.legacy_session_set(id),
            format!("ua:{{{tag}}}sessions_of:{id}")
        );
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
    }

    /// The name `key` had in the first layout: the same, with no tag.
    fn first_layout_name(keys: &Keys, key: &str) -> String {
        let (_, untagged) = key
            .strip_prefix(keys.prefix())
            .and_then(|rest| rest.strip_prefix('{'))
            .and_then(|rest| rest.split_once('}'))
            .expect("a tagged key");
        format!("{}{untagged}", keys.prefix())
    }

    #[test]
    fn every_key_of_the_first_layout_moves_to_its_name_in_this_one() {
        let keys = Keys::new("ua:");
        let id = UserId::generate();
        let ada = email("ada@example.com");
        let session = SessionToken::generate().id();
        let digest = AdminKeyDigest::parse(&"ab".repeat(32)).expect("a digest");
        let mut tagged = user_keys(&keys, id);
        tagged.extend(email_keys(&keys, &ada));
        tagged.extend([
            keys.session(&session),
            keys.login_failures_of_address("2001:db8::/64"),
            keys.code_requests_of_address("10.0.0.1"),
            keys.admin_key(&digest),
            keys.admin_keys_by_name(),
        ]);
        for key in tagged {
            let first = first_layout_name(&keys, &key);
            assert_ne!(first, key);
            assert_eq!(keys.relocated(&first), Some(key));
        }
    }

    #[test]
    fn keys_that_keep_their_name_are_not_relocated() {
        let keys = Keys::new("ua:");
        for key in [
            format!("{}events", keys.prefix()),
            keys.mail_queue(Bucket::of_email("jo@example.com")),
            keys.first_layout_mail()[0].clone(),
            keys.layout_marker(),
            keys.first_layout_email_index(),
            keys.user(UserId::generate()),
            "other:user:1".to_owned(),
        ] {
            assert_eq!(keys.relocated(&key), None, "{key}");
        }
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
