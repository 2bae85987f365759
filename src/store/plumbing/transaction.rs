//! Optimistic transactions that need no WATCH, so that they run alike on one
//! Redis and on a cluster: read and decide, then one script checks that
//! every read still gives the same reply and, only then, runs the writes.
//! A read that changed meanwhile starts the step over, a bounded number of
//! times. Every key a step reads or writes shares one hash slot (the
//! layout's tags see to it), so the script runs on the node that owns it.

use std::io::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Arg, Cmd, ConnectionLike, FromRedisValue, Script, ToRedisArgs, Value};

use crate::store::codes::issuing::ISSUE_SOURCE;
use crate::store::email_reverts::ADD_REVERT;
use crate::store::mail::queue::QUEUE_SOURCE;
use crate::store::plumbing::link::query_all;
use crate::store::StoreError;

/// A step whose reads another client's write changed is retried this many
/// times before the request gives up with 503.
const MAX_TRANSACTION_ATTEMPTS: u32 = 32;

/// What a transaction attempt decided after reading.
pub(in crate::store) enum Plan<T> {
    /// Run these writes, provided the reads are unchanged; on success,
    /// answer `T`.
    Write(Writes, T),
    /// Nothing to write: answer `T` at once.
    Answer(T),
}

/// A script that a step's writes may run among their commands: scripts
/// cannot call scripts, so the step's own script holds these as functions.
#[derive(Clone, Copy, Debug)]
pub(in crate::store) enum Embedded {
    /// Queues a message (`mail::queue`).
    QueueMail,
    /// Issues a one-time code and queues its mail (`codes::issuing`).
    IssueCode,
    /// Stores a revert code and a reservation (`email_reverts`).
    AddRevert,
}

impl Embedded {
    const ALL: [Self; 3] = [Self::QueueMail, Self::IssueCode, Self::AddRevert];

    fn name(self) -> &'static str {
        match self {
            Self::QueueMail => "queue_mail",
            Self::IssueCode => "issue_code",
            Self::AddRevert => "add_revert",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::QueueMail => QUEUE_SOURCE,
            Self::IssueCode => ISSUE_SOURCE,
            Self::AddRevert => ADD_REVERT,
        }
    }
}

/// One write of a step: a command, or an embedded script with its keys
/// and arguments (`args` starts with the number of keys).
struct Op {
    embedded: Option<Embedded>,
    keep_reply: bool,
    args: Vec<Vec<u8>>,
}

impl Op {
    /// The keys the write names.
    fn keys(&self) -> &[Vec<u8>] {
        match self.embedded {
            // A script's arguments start with its keys' count.
            Some(_) => {
                let count = self
                    .args
                    .first()
                    .and_then(|count| std::str::from_utf8(count).ok())
                    .and_then(|count| count.parse::<usize>().ok())
                    .unwrap_or(0);
                self.args.get(1..=count).unwrap_or(&[])
            }
            None => command_keys(&self.args),
        }
    }
}

/// The keys a command's words name: every argument of the commands that
/// take only keys, none of those that take none, else the first.
fn command_keys(words: &[Vec<u8>]) -> &[Vec<u8>] {
    let Some(name) = words.first() else {
        return &[];
    };
    match name.to_ascii_uppercase().as_slice() {
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => &words[1..],
        b"TIME" | b"ECHO" | b"PING" => &[],
        _ => words.get(1..2).unwrap_or(&[]),
    }
}

/// The writes of one step, built like a pipeline.
#[derive(Default)]
pub(in crate::store) struct Writes {
    ops: Vec<Op>,
}

impl Writes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a command; `arg` adds to it.
    pub fn cmd(&mut self, name: &str) -> &mut Self {
        self.ops.push(Op {
            embedded: None,
            keep_reply: true,
            args: vec![name.as_bytes().to_vec()],
        });
        self
    }

    /// Adds a command built elsewhere.
    pub fn add_command(&mut self, command: Cmd) -> &mut Self {
        self.ops.push(Op {
            embedded: None,
            keep_reply: true,
            args: words(&command),
        });
        self
    }

    /// Runs `script` with `keys` (all in the step's slot); `arg` adds to
    /// its arguments.
    pub fn embedded(&mut self, script: Embedded, keys: &[String]) -> &mut Self {
        let mut args = vec![keys.len().to_string().into_bytes()];
        args.extend(keys.iter().map(|key| key.as_bytes().to_vec()));
        self.ops.push(Op {
            embedded: Some(script),
            keep_reply: true,
            args,
        });
        self
    }

    /// Adds an argument to the last command or script.
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        if let Some(op) = self.ops.last_mut() {
            arg.write_redis_args(&mut op.args);
        }
        self
    }

    /// Leaves the last write's reply out of the replies.
    pub fn ignore(&mut self) -> &mut Self {
        if let Some(op) = self.ops.last_mut() {
            op.keep_reply = false;
        }
        self
    }

    /// The key the step's script is sent with: the first key written. On a
    /// cluster it names the slot, and so the node, the script runs on.
    fn route(&self) -> Option<&[u8]> {
        // A command's first key follows its name; a script's, its count.
        self.ops.first()?.args.get(1).map(Vec::as_slice)
    }

    /// Every key of the step, `route` first, each once: declared, so that
    /// while its slot moves between nodes Redis answers ASK or TRYAGAIN
    /// (which the cluster client follows) rather than run the script where
    /// some of its keys are not.
    fn keys<'a>(&'a self, route: &'a [u8], guards: &'a [Guard]) -> Vec<&'a [u8]> {
        let mut keys: Vec<&[u8]> = vec![route];
        let named = guards
            .iter()
            .flat_map(|guard| command_keys(&guard.command))
            .chain(self.ops.iter().flat_map(Op::keys));
        for key in named {
            if !keys.contains(&key.as_slice()) {
                keys.push(key);
            }
        }
        keys
    }

    /// Runs the writes in one script, without any check; the replies of
    /// the writes not ignored.
    pub fn apply(&self, conn: &mut dyn ConnectionLike) -> Result<Vec<Value>, StoreError> {
        let replies = self.invoke(&[], conn)?;
        Ok(replies.unwrap_or_default())
    }

    /// Runs the writes in one script if every guard still holds: `None`
    /// when one does not (nothing was written).
    fn invoke(
        &self,
        guards: &[Guard],
        conn: &mut dyn ConnectionLike,
    ) -> Result<Option<Vec<Value>>, StoreError> {
        let Some(route) = self.route() else {
            return Ok(Some(Vec::new()));
        };
        let mut invocation = GUARDED_WRITE_SCRIPT.prepare_invoke();
        for key in self.keys(route, guards) {
            invocation.key(key);
        }
        invocation.arg(guards.len());
        for guard in guards {
            invocation
                .arg(guard.width)
                .arg(guard.command.len())
                .arg(&guard.command)
                .arg(guard.expected.len())
                .arg(&guard.expected);
        }
        for op in &self.ops {
            invocation
                .arg(op.embedded.map_or("", Embedded::name))
                .arg(u8::from(op.keep_reply))
                .arg(op.args.len())
                .arg(&op.args);
        }
        Ok(invocation.invoke(conn)?)
    }
}

/// A read a step's decision rests on, and its reply as the step saw it.
struct Guard {
    /// 0: the reply as a whole; 1 or 2: an unordered reply (a set's
    /// members, a hash's field-value pairs), compared element by element;
    /// [`DEADLINE`]: the node's clock (TIME), which must be before the one
    /// expected value (Unix ms).
    width: u8,
    command: Vec<Vec<u8>>,
    /// The reply's fingerprint, or those of its elements.
    expected: Vec<Vec<u8>>,
}

/// The width of a guard that holds while the clock is before a deadline.
const DEADLINE: u8 = 3;

impl Guard {
    fn new(command: &Cmd, reply: &Value) -> Self {
        let command = words(command);
        let name = command
            .first()
            .map(|name| name.to_ascii_uppercase())
            .unwrap_or_default();
        let width: u8 = match name.as_slice() {
            b"HGETALL" => 2,
            b"SMEMBERS" | b"HKEYS" | b"HVALS" => 1,
            _ => 0,
        };
        let expected = match (width, reply) {
            (1 | 2, Value::Array(items)) => items
                .chunks(usize::from(width))
                .map(|element| {
                    let mut print = Vec::new();
                    for item in element {
                        fingerprint(item, &mut print);
                    }
                    print
                })
                .collect(),
            _ => {
                let mut print = Vec::new();
                fingerprint(reply, &mut print);
                vec![print]
            }
        };
        Self {
            width,
            command,
            expected,
        }
    }
}

/// A command's name and arguments, as a script takes them.
fn words(command: &Cmd) -> Vec<Vec<u8>> {
    command
        .args_iter()
        .filter_map(|arg| match arg {
            Arg::Simple(bytes) => Some(bytes.to_vec()),
            _ => None,
        })
        .collect()
}

/// Writes `value` as the step's script writes the same reply: each kind
/// of reply with its length, so that different replies never look alike.
fn fingerprint(value: &Value, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = match value {
        Value::Nil => write!(out, "n"),
        Value::Int(number) => write!(out, "i{number};"),
        Value::BulkString(bytes) => {
            let _ = write!(out, "b{}:", bytes.len());
            out.write_all(bytes)
        }
        Value::SimpleString(text) => write!(out, "s{}:{text}", text.len()),
        Value::Okay => write!(out, "s2:OK"),
        Value::Array(items) => {
            let _ = write!(out, "a{};", items.len());
            for item in items {
                fingerprint(item, out);
            }
            Ok(())
        }
        // Replies of RESP3 only: the connections speak RESP2, and a guard
        // that never matches only costs a retry.
        _ => write!(out, "?"),
    };
}

/// The reads of one attempt of a step, each kept as a guard unless it is
/// a [`Tx::peek`].
pub(in crate::store) struct Tx<'c> {
    conn: &'c mut dyn ConnectionLike,
    guards: Vec<Guard>,
}

impl Tx<'_> {
    /// Sends `command` and keeps its reply as a guard.
    pub fn read<T: FromRedisValue>(&mut self, command: &Cmd) -> Result<T, StoreError> {
        let reply: Value = command.query(self.conn)?;
        self.guards.push(Guard::new(command, &reply));
        decode(reply)
    }

    /// Sends `commands` in one round trip (one each on a cluster, whose
    /// blocking connection runs no pipeline) and keeps each reply as a
    /// guard; decodes the replies together, as a pipeline's.
    pub fn read_all<T: FromRedisValue>(&mut self, commands: &[Cmd]) -> Result<T, StoreError> {
        let replies = query_all(self.conn, commands)?;
        for (command, reply) in commands.iter().zip(&replies) {
            self.guards.push(Guard::new(command, reply));
        }
        decode(Value::Array(replies))
    }

    /// Writes only if the step's script runs before `deadline` (Unix ms)
    /// by the clock of the node that runs it.
    pub fn before(&mut self, deadline_ms: i64) {
        self.guards.push(Guard {
            width: DEADLINE,
            command: vec![b"TIME".to_vec()],
            expected: vec![deadline_ms.to_string().into_bytes()],
        });
    }

    /// Sends `command` without keeping a guard: for a reply that changes
    /// by itself (a TTL) or that the decision does not rest on.
    pub fn peek<T: FromRedisValue>(&mut self, command: &Cmd) -> Result<T, StoreError> {
        Ok(command.query(self.conn)?)
    }
}

fn decode<T: FromRedisValue>(reply: Value) -> Result<T, StoreError> {
    T::from_redis_value(reply)
        .map_err(redis::RedisError::from)
        .map_err(StoreError::from)
}

/// Runs an optimistic transaction: `plan` reads and decides, then its
/// writes run provided its reads are unchanged. A step whose reads changed
/// starts over, at most [`MAX_TRANSACTION_ATTEMPTS`] times.
pub(in crate::store) fn transact<T>(
    conn: &mut dyn ConnectionLike,
    plan: impl FnMut(&mut Tx) -> Result<Plan<T>, StoreError>,
) -> Result<T, StoreError> {
    transact_with_replies(conn, plan).map(|(answer, _)| answer)
}

/// Like [`transact`], with the replies of the writes that were not
/// ignored (none when nothing was written).
pub(in crate::store) fn transact_with_replies<T>(
    conn: &mut dyn ConnectionLike,
    mut plan: impl FnMut(&mut Tx) -> Result<Plan<T>, StoreError>,
) -> Result<(T, Vec<Value>), StoreError> {
    for attempt in 0..MAX_TRANSACTION_ATTEMPTS {
        let mut tx = Tx {
            conn: &mut *conn,
            guards: Vec::new(),
        };
        match plan(&mut tx)? {
            Plan::Write(writes, answer) => {
                let guards = std::mem::take(&mut tx.guards);
                if let Some(replies) = writes.invoke(&guards, conn)? {
                    return Ok((answer, replies));
                }
            }
            Plan::Answer(answer) => return Ok((answer, Vec::new())),
        }
        // Contention: let the winner finish before reading again.
        std::thread::sleep(Duration::from_micros(50 << attempt.min(6)));
    }
    Err(StoreError::Contention(MAX_TRANSACTION_ATTEMPTS))
}

/// The script of every step. ARGV: the number of guards; each guard as
/// its width, its command's length and words, its expected fingerprints'
/// count and the fingerprints; then each write as its embedded script's
/// name ('' for a command), whether its reply is kept (1/0), its length
/// and words. Returns false, writing nothing, when a guard's reply
/// changed; else the kept replies.
const GUARDED_WRITE: &str = r"
local function fingerprint(v)
  local t = type(v)
  if t == 'string' then return 'b' .. #v .. ':' .. v end
  if t == 'number' then return 'i' .. string.format('%d', v) .. ';' end
  if t == 'boolean' then return v and '?' or 'n' end
  if v.ok then return 's' .. #v.ok .. ':' .. v.ok end
  local parts = {}
  for i = 1, #v do parts[i] = fingerprint(v[i]) end
  return 'a' .. #v .. ';' .. table.concat(parts)
end
local n = 1
local function take(count)
  local taken = {unpack(ARGV, n, n + count - 1)}
  n = n + count
  return taken
end
local function holds(width, reply, expected)
  if width == 3 then
    local now = tonumber(reply[1]) * 1000 + math.floor(tonumber(reply[2]) / 1000)
    return now < tonumber(expected[1])
  end
  if width == 0 then
    return fingerprint(reply) == expected[1]
  end
  if type(reply) ~= 'table' or #reply ~= #expected * width then
    return false
  end
  local counts = {}
  for i = 1, #reply, width do
    local element = fingerprint(reply[i])
    if width == 2 then element = element .. fingerprint(reply[i + 1]) end
    counts[element] = (counts[element] or 0) + 1
  end
  for _, element in ipairs(expected) do
    local count = counts[element]
    if not count or count == 0 then return false end
    counts[element] = count - 1
  end
  return true
end
for _ = 1, tonumber(take(1)[1]) do
  local head = take(2)
  local reply = redis.call(unpack(take(tonumber(head[2]))))
  local expected = take(tonumber(take(1)[1]))
  if not holds(tonumber(head[1]), reply, expected) then
    return false
  end
end
local replies = {}
while n <= #ARGV do
  local head = take(3)
  local args = take(tonumber(head[3]))
  local reply
  if head[1] == '' then
    reply = redis.call(unpack(args))
  else
    local count = tonumber(args[1])
    reply = EMBEDDED[head[1]]({unpack(args, 2, count + 1)}, {unpack(args, count + 2)})
  end
  if head[2] == '1' then replies[#replies + 1] = reply end
end
return replies
";

static GUARDED_WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    let embedded: String = Embedded::ALL
        .iter()
        .map(|script| {
            format!(
                "EMBEDDED['{}'] = function(KEYS, ARGV)\n{}\nend\n",
                script.name(),
                script.source()
            )
        })
        .collect();
    Script::new(&format!("local EMBEDDED = {{}}\n{embedded}{GUARDED_WRITE}"))
});

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(keys: &[&str]) -> Writes {
        let mut writes = Writes::new();
        for key in keys {
            writes.cmd("SET").arg(*key).arg(1).ignore();
        }
        writes
    }

    fn declared(writes: &Writes, guards: &[Guard]) -> Vec<Vec<u8>> {
        let route = writes.route().expect("a step that writes");
        let keys = writes.keys(route, guards);
        keys.into_iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn a_step_declares_each_key_it_reads_or_writes_once_its_first_write_first() {
        let mut writes = setting(&["ua:{a}x", "ua:{a}y", "ua:{a}x"]);
        writes.cmd("DEL").arg("ua:{a}v").arg("ua:{a}w").ignore();
        let guard = Guard::new(redis::cmd("GET").arg("ua:{a}z"), &Value::Nil);
        let keys = declared(&writes, &[guard]);
        let expected: Vec<&[u8]> = vec![b"ua:{a}x", b"ua:{a}z", b"ua:{a}y", b"ua:{a}v", b"ua:{a}w"];
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_deadline_names_no_key() {
        let writes = setting(&["ua:{a}x"]);
        let deadline = Guard {
            width: DEADLINE,
            command: vec![b"TIME".to_vec()],
            expected: vec![b"0".to_vec()],
        };
        assert_eq!(declared(&writes, &[deadline]).len(), 1);
    }
}
