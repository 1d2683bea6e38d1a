//! The Valkey bus: history in one stream per channel, live events over
//! sharded pub/sub, so any number of nodes share both.
//!
//! Layout, per channel `c` (the hash tag keeps all of them in one slot, so
//! the same layout holds on Valkey Cluster):
//!
//! - `sseb:{c}:h` — the history stream, trimmed by length (when a step
//!   measures it, see [`hints`]) and age, with the
//!   newest trimmed id kept as its `max-deleted-entry-id`, expiring when
//!   idle for about twice the age bound;
//! - `sseb:{c}:k:<key>` — an idempotency key's first id, expiring with its
//!   window;
//! - `sseb:{c}` — the shard channel events are published on, as records
//!   `<id>\n<event>\n<json>` joined by `\n` (one message per batch).
//!
//! Publishing is one Lua script run per batch: per channel, for each event
//! check its key, `XADD` and remember the key; then trim once and
//! `SPUBLISH` the channel's events as one message. What the step would
//! otherwise ask Valkey on every publish (is an age trim due, is the idle
//! expiry due a refresh, may the length have reached its bound) the node
//! remembers and passes in ([`hints`]).
//! Each channel's step is atomic on its own keys, which share a hash tag; a
//! run that spans channels spans hash slots, which a standalone server (the
//! only kind this bus connects to) allows — on Cluster the runs would be
//! split by slot.
//!
//! Each node holds two RESP3 connections: one for commands, through the
//! `redis` client library, and one for subscriptions, of its own
//! ([`subscriber`], read by [`resp`]; every delivered event passes through
//! it, and the library's general parser was a fifth of the bridge's work
//! per event). It subscribes a channel while it has local listeners, is
//! subscribed again after a reconnect, and then refills from the stream
//! what it missed while the subscription was down.

mod hints;
mod resp;
mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, Script, Value};
use tokio::sync::mpsc;

use super::{Bus, BusError, Entry, Gap, GapReason, Outgoing, Published, Replay, Retention, Sink};
use crate::channel::Channel;
use crate::cursor::StreamId;
use crate::revocation::Revocation;
use hints::{Hints, Report, StepHint};
use subscriber::{Kind, Push, Subscriber};

/// Trimming records the newest dropped id as the stream's
/// `max-deleted-entry-id` (`XSETID … MAXDELETEDID`), which `XADD MAXLEN`
/// and `XTRIM` leave alone; reads compare cursors against it to tell a
/// covered position from a trimmed one.
const PUBLISH: &str = r#"
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return string.sub(id, 1, d - 1), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and as < bs)
end
local max_len, age, window = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local min_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age
local min_text = string.format('%d', min_ms)
-- Whether a bound passed as text (decimal ms, no leading zeros) is older
-- than the horizon. Compared as text: Lua turns a string into a number with
-- strtod, and that was a large part of the script's cost per event.
local function older(bound)
  return #bound < #min_text or (#bound == #min_text and bound < min_text)
end
-- One channel's reply line: its bound (and `/<length>` when the step
-- knows the stream's length), then its outcomes.
local function line(bound, out, len)
  if type(bound) == 'number' then bound = string.format('%d', bound) end
  if len then bound = bound .. '/' .. string.format('%d', len) end
  return bound .. ' ' .. table.concat(out, ' ')
end
-- One channel's events. ARGV[p] is its mode: first what the step is asked
-- to do besides appending — 'r' refresh the idle expiry, 'l' measure the
-- length (and trim to the bound), 'b' both, '-' neither — then a character
-- per event, '1' when the event has an idempotency key (the next key after
-- the history key KEYS[h]) and '0' when not. ARGV[p + 1] is the node's
-- lower bound of the oldest entry's ms (0: unknown); then per event its
-- record `<event>\n<json>`. Returns the bound, then the ids.
local function channel(p, h)
  local mode, bound = ARGV[p], ARGV[p + 1]
  local ask = string.byte(mode, 1)
  local refresh, measure = ask == 114 or ask == 98, ask == 108 or ask == 98
  local key = h
  local out, msg, id, first_id, created = {}, {}, nil, nil, false
  for i = 1, #mode - 1 do
    local record, k, first = ARGV[p + 1 + i], nil, false
    if string.byte(mode, i + 1) == 49 then
      key = key + 1
      k = KEYS[key]
      first = redis.call('GET', k)
    end
    if first then
      out[#out + 1] = '=' .. first
    else
      if id then
        id = redis.call('XADD', KEYS[h], '*', 'm', record)
      else
        -- The step's first append tells whether it creates the stream
        -- (which then holds just this step's entries) at no extra call.
        id = redis.call('XADD', KEYS[h], 'NOMKSTREAM', '*', 'm', record)
        if not id then
          id = redis.call('XADD', KEYS[h], '*', 'm', record)
          created = true
        end
      end
      first_id = first_id or id
      if k then redis.call('SET', k, id, 'PX', window) end
      out[#out + 1] = id
      msg[#msg + 1] = id .. '\n' .. record
    end
  end
  if id == nil then
    -- Only duplicates: nothing to trim or send, but a refresh that was due
    -- is done, since the node now counts it as done.
    if refresh then redis.call('PEXPIRE', KEYS[h], age * 2) end
    return line(bound, out)
  end
  -- The length is measured only when the node asks (its count of what was
  -- added since the last measure may reach the bound) or is known anyway;
  -- otherwise the stream is short of the bound and needs no trim.
  local len = nil
  if created then
    len = #msg
  elseif measure then
    len = redis.call('XLEN', KEYS[h])
  end
  local through = nil
  if len and len > max_len then
    local old = redis.call('XRANGE', KEYS[h], '-', '+', 'COUNT', len - max_len)
    through = old[#old][1]
    len = max_len
  end
  -- With the bound, most publishes skip reading the stream's head; only
  -- once it falls behind the horizon is the head read, and only when the
  -- head has aged out is the newest aged entry looked up (XREVRANGE from
  -- the horizon is far dearer). A step that created the stream (it holds
  -- only this step's entries, none trimmed) knows its head without reading
  -- it: short-lived channels then never read one.
  local stale = min_ms > 0 and older(bound)
  if stale and created and through == nil then
    local first_ms = tonumber((parse(first_id)))
    if first_ms >= min_ms then bound, stale = first_ms, false end
  end
  if stale then
    local oldest = redis.call('XRANGE', KEYS[h], '-', '+', 'COUNT', 1)
    if #oldest > 0 and tonumber((parse(oldest[1][1]))) < min_ms then
      local aged = redis.call('XREVRANGE', KEYS[h], '(' .. min_text .. '-0', '-', 'COUNT', 1)
      if #aged > 0 and (through == nil or lt(through, aged[1][1])) then through = aged[1][1] end
      bound = min_ms
    elseif #oldest > 0 then
      bound = tonumber((parse(oldest[1][1])))
    end
  end
  if through then
    local ms, seq = parse(through)
    redis.call('XTRIM', KEYS[h], 'MINID', ms .. '-' .. string.format('%d', seq + 1))
    redis.call('XSETID', KEYS[h], id, 'MAXDELETEDID', through)
  end
  -- Twice the age bound: an idle channel's stream lingers long enough that
  -- a client coming back soon is told `history_trimmed` rather than
  -- `history_lost`, and then it goes. A stream this step created (it holds
  -- only what the step added) gets its expiry whatever the node remembers.
  if refresh or created then redis.call('PEXPIRE', KEYS[h], age * 2) end
  -- The shard channel is the history key without its `:h`.
  redis.call('SPUBLISH', string.sub(KEYS[h], 1, -3), table.concat(msg, '\n'))
  return line(bound, out, len)
end
-- The reply is one string, a line per channel: the channel's bound, then
-- its events' ids, a duplicate's (the first publish's id) marked `=`. One
-- string rather than nested arrays: three values per event fewer for Valkey
-- to build and for the client to parse. A channel whose step fails (say its
-- key holds another type) fails alone: its line is `!` and the error, and
-- the other channels of the batch go on. Each channel's keys follow the
-- previous channel's: its history key, then its events' idempotency keys.
local all, p, h = {}, 4, 1
while p <= #ARGV do
  local mode = ARGV[p]
  local ok, out = pcall(channel, p, h)
  if not ok then
    if type(out) == 'table' then out = out.err or '?' end
    out = '!' .. string.gsub(tostring(out), '\n', ' ')
  end
  all[#all + 1] = out
  local _, keys = string.gsub(mode, '1', '')
  h = h + 1 + keys
  p = p + 1 + #mode
end
return table.concat(all, '\n')
"#;

/// Returns `{status, from, entries, more}`: status 0 covered, 1 trimmed, 2
/// ahead of the stream, 3 from a history that is gone; `from` is where the
/// returned entries start (exclusive). The entries are one page: at most
/// ARGV[2] of them and ARGV[3] bytes of field values (at least one entry);
/// `more` is 1 when the page stopped before the stream's end. Read in small
/// chunks so a page of large events does not pull the whole stream into
/// the script first.
const READ_AFTER: &str = r#"
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local after = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  if after == '0-0' then return {0, '0-0', {}, 0} end
  return {3, '0-0', {}, 0}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, maxdel, first = '0-0', '0-0', '0-0'
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'last-generated-id' then last = info[i + 1]
  elseif k == 'max-deleted-entry-id' then maxdel = info[i + 1]
  elseif k == 'recorded-first-entry-id' then first = info[i + 1] end
end
if lt(last, after) then return {2, last, {}, 0} end
local status, from = 0, after
if lt(after, maxdel) then
  status, from = 1, maxdel
elseif after ~= '0-0' and lt(maxdel, after) and lt(after, first) then
  status, from = 3, '0-0'
end
local max_count, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, used, cursor = {}, 0, from
while true do
  local want = math.min(32, max_count - #out)
  local chunk = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', want)
  for _, e in ipairs(chunk) do
    local size = 0
    for j = 2, #e[2], 2 do size = size + #e[2][j] end
    if #out > 0 and used + size > budget then return {status, from, out, 1} end
    used = used + size
    out[#out + 1] = e
    cursor = e[1]
  end
  if #chunk < want then return {status, from, out, 0} end
  if #out >= max_count then return {status, from, out, 1} end
end
"#;

const HEAD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return '0-0' end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return '0-0'
"#;

/// How to reach Valkey and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ValkeyConfig {
    pub url: String,
    /// Bound on every command; past it the bus reports unavailable.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad Valkey URL: {0}")]
    Url(String),
    #[error("cannot connect to Valkey: {0}")]
    Connect(String),
    #[error(
        "the server is a Valkey Cluster node; the bridge connects to one standalone \
         server (a primary): point --valkey-url at one"
    )]
    Cluster,
}

/// The node-wide pub/sub channel of revocation orders (classic pub/sub:
/// on a cluster it reaches every node).
const CONTROL: &str = "sseb:control";

/// A channel's Valkey names. A publish writes them straight into the
/// command's buffer (one string allocation fewer per name and event).
#[derive(Clone, Copy)]
enum Name<'a> {
    History(&'a Channel),
    Idempotency(&'a Channel, &'a str),
    Shard(&'a Channel),
}

impl<'a> Name<'a> {
    /// The name's pieces, in order: written straight into a command's buffer
    /// (two names go into every publish, and `write!` cost more than the
    /// copying) or into a `String`.
    fn parts(&self) -> [&'a str; 4] {
        match *self {
            Name::History(c) => ["sseb:{", c.as_str(), "}:h", ""],
            Name::Idempotency(c, key) => ["sseb:{", c.as_str(), "}:k:", key],
            Name::Shard(c) => ["sseb:{", c.as_str(), "}", ""],
        }
    }
}

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.parts().iter().try_for_each(|part| f.write_str(part))
    }
}

impl redis::ToRedisArgs for Name<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's own buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// An event as the publish script takes it and the history stream keeps it
/// (field `m`): `<event>\n<json>`, written straight into the command.
/// Neither part holds a raw line break (event names are `resource.verb`;
/// the JSON is compact), so the first one splits them.
struct Record<'a>(&'a Outgoing);

impl redis::ToRedisArgs for Record<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.0.event.as_bytes());
        let _ = arg.write_all(b"\n");
        let _ = arg.write_all(&self.0.data);
    }
}

fn history_key(channel: &Channel) -> String {
    Name::History(channel).to_string()
}

#[cfg(test)]
fn idempotency_key(channel: &Channel, key: &str) -> String {
    Name::Idempotency(channel, key).to_string()
}

fn shard_channel(channel: &Channel) -> String {
    Name::Shard(channel).to_string()
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// A channel this node subscribes to.
struct Watch {
    channel: Channel,
    /// Local watchers (the hub's slots); unsubscribed at zero.
    count: usize,
    /// Newest id handed to the sink: later deliveries at or before it are
    /// duplicates, and a refill starts after it.
    last: StreamId,
    /// The subscription dropped; refill once it is back.
    stale: bool,
}

/// The node's watches, keyed by shard channel name (looked up per pushed
/// message, hence foldhash).
type Watches = HashMap<String, Watch, foldhash::fast::RandomState>;

struct Shared {
    sink: Arc<dyn Sink>,
    watches: Mutex<Watches>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `entry` to the sink unless the node already delivered it.
    fn deliver(&self, name: &str, entry: Entry) {
        let channel = {
            let mut watches = self.lock();
            let Some(w) = watches.get_mut(name) else {
                return;
            };
            if entry.id <= w.last {
                return;
            }
            w.last = entry.id;
            w.channel.clone()
        };
        self.sink.deliver(&channel, entry);
    }
}

/// The Valkey-backed bus.
pub struct ValkeyBus {
    /// Commands: publishes and history reads.
    conn: ConnectionManager,
    /// Subscriptions; their messages arrive as pushes on the pump.
    subs: Subscriber,
    retention: Retention,
    hints: Hints,
    timeout: Duration,
    shared: Arc<Shared>,
    /// Serialises subscribe/unsubscribe so Valkey's state follows the
    /// watch counts whatever order the hub's calls arrive in.
    subscriptions: tokio::sync::Mutex<()>,
    /// Run by digest (`EVALSHA`): the script text travels once per load,
    /// not with every publish.
    publish: Script,
    read_after: Script,
    head: Script,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for ValkeyBus {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

fn parse_id(v: &Value) -> Option<StreamId> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Parses one `XRANGE` entry: `[id, [field, value, ...]]`, its fields as a
/// flat array (RESP2) or a map (RESP3). An entry holds its record in `m`;
/// entries written before records were one field hold `e` (event) and `d`
/// (JSON), and are still read.
fn parse_entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = parse_id(parts.first()?)?;
    // One of the two shapes is empty; chained rather than collected, since a
    // resume reads thousands of entries.
    let (flat, map): (&[Value], &[(Value, Value)]) = match parts.get(1)? {
        Value::Array(fields) => (fields, &[]),
        Value::Map(fields) => (&[], fields),
        _ => return None,
    };
    let pairs = flat
        .chunks_exact(2)
        .map(|pair| (&pair[0], &pair[1]))
        .chain(map.iter().map(|(k, v)| (k, v)));
    let (mut event, mut data) = (None, None);
    for (k, v) in pairs {
        match (as_bytes(k)?, as_bytes(v)?) {
            (b"m", record) => {
                let split = memchr::memchr(b'\n', record)?;
                event = Some(&record[..split]);
                data = Some(&record[split + 1..]);
            }
            (b"e", v) => event = Some(v),
            (b"d", v) => data = Some(v),
            _ => {}
        }
    }
    Some(Entry {
        id,
        event: std::str::from_utf8(event?).ok()?.into(),
        data: Bytes::copy_from_slice(data?),
    })
}

/// Event names as the pump has seen them, shared: every delivered event
/// carries its name, and a new `Arc<str>` per event was an allocation and a
/// copy. Names come from the catalogue, so there are few; a bus that
/// carried ever new ones would only make the map start over.
#[derive(Default)]
struct EventNames(HashMap<Box<[u8]>, Arc<str>, foldhash::fast::RandomState>);

impl EventNames {
    const MAX: usize = 1024;

    fn get(&mut self, name: &[u8]) -> Option<Arc<str>> {
        if let Some(known) = self.0.get(name) {
            return Some(known.clone());
        }
        let text: Arc<str> = std::str::from_utf8(name).ok()?.into();
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(name.into(), text.clone());
        Some(text)
    }
}

/// Parses a pub/sub payload: one or more `<id>\n<event>\n<json>` records
/// joined by `\n` (JSON and event names hold no raw line break). Each
/// entry's data is a slice of the payload, not a copy.
fn parse_messages(payload: &Bytes, names: &mut EventNames) -> Option<Group<Entry>> {
    // Inline: most messages carry one event (one per channel per batch).
    let mut entries = Group::new();
    let mut parts = memchr::memchr_iter(b'\n', payload)
        .chain([payload.len()])
        .scan(0, |start, end| {
            let part = &payload[*start..end];
            *start = end + 1;
            Some(part)
        });
    while let Some(id) = parts.next() {
        let id = StreamId::parse_bytes(id).ok()?;
        let event = names.get(parts.next()?)?;
        let data = payload.slice_ref(parts.next()?);
        entries.push(Entry { id, event, data });
    }
    (!entries.is_empty()).then_some(entries)
}

fn parse_replay(v: Value) -> Option<Replay> {
    let Value::Array(parts) = v else { return None };
    let status = match parts.first()? {
        Value::Int(n) => *n,
        _ => return None,
    };
    let from = parse_id(parts.get(1)?)?;
    let entries = match parts.get(2)? {
        Value::Array(items) => items.iter().map(parse_entry).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let more = matches!(parts.get(3)?, Value::Int(1));
    let reason = match status {
        0 => None,
        1 => Some(GapReason::Trimmed),
        2 => Some(GapReason::Unknown),
        _ => Some(GapReason::Lost),
    };
    Some(Replay {
        gap: reason.map(|reason| Gap {
            reason,
            resume_from: from,
        }),
        entries,
        more,
    })
}

impl ValkeyBus {
    /// Connects and starts the node's subscription pump.
    pub async fn connect(
        config: &ValkeyConfig,
        retention: Retention,
        sink: Arc<dyn Sink>,
    ) -> Result<ValkeyBus, ConnectError> {
        if config.url.starts_with("rediss://") {
            // TLS through rustls with the ring provider; a provider installed
            // earlier by the embedding program wins.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| ConnectError::Url(e.to_string()))?;
        let target =
            subscriber::Target::new(&info).map_err(|e| ConnectError::Url(e.to_string()))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| ConnectError::Url(e.to_string()))?;
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(2))
        };
        let (tx, rx) = mpsc::unbounded_channel::<Push>();
        let subs = at_start(config, Subscriber::connect(target, tx)).await?;
        // Commands go on a connection of their own: Valkey holds subscribed
        // clients to the pub/sub output-buffer limit (32 MiB by default), and
        // the large history replies of many catching-up streams would get
        // the subscription connection dropped.
        let conn = at_start(
            config,
            ConnectionManager::new_with_config(client, manager_config()),
        )
        .await?;
        // A publish script run spans the hash slots of its batch's channels,
        // which a Cluster refuses (and this client follows no redirects):
        // say so at start rather than fail every publish.
        let mut probe = conn.clone();
        let cluster: String = at_start(
            config,
            redis::cmd("INFO").arg("cluster").query_async(&mut probe),
        )
        .await?;
        if cluster.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(ConnectError::Cluster);
        }
        // Publishes run the script by digest; load it before the first.
        let mut load = conn.clone();
        at_start(
            config,
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(PUBLISH)
                .query_async::<String>(&mut load),
        )
        .await?;
        at_start(config, subs.subscribe(Kind::Plain, CONTROL)).await?;
        let shared = Arc::new(Shared {
            sink,
            watches: Mutex::new(HashMap::default()),
        });
        let read_after = Script::new(READ_AFTER);
        let pump = tokio::spawn(pump(
            rx,
            conn.clone(),
            shared.clone(),
            read_after.clone(),
            retention.max_len,
        ));
        Ok(ValkeyBus {
            conn,
            subs,
            hints: Hints::new(retention.max_age, retention.max_len),
            retention,
            timeout: config.timeout,
            shared,
            subscriptions: tokio::sync::Mutex::new(()),
            read_after,
            publish: Script::new(PUBLISH),
            head: Script::new(HEAD),
            pump,
        })
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(format_args!("{what}: {e}"))),
            Err(_) => Err(unavailable(format_args!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// A start-up step, bounded by twice the command timeout.
async fn at_start<T, E: std::fmt::Display>(
    config: &ValkeyConfig,
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConnectError> {
    let bound = config.timeout * 2;
    tokio::time::timeout(bound, step)
        .await
        .map_err(|_| ConnectError::Connect(format!("no answer within {bound:?}")))?
        .map_err(|e| ConnectError::Connect(e.to_string()))
}

/// One page of history after `after` (see [`READ_AFTER`]).
async fn read_history(
    conn: &mut ConnectionManager,
    script: &Script,
    channel: &Channel,
    after: StreamId,
    max_len: usize,
    page_bytes: usize,
) -> redis::RedisResult<Option<Replay>> {
    let v: Value = script
        .key(history_key(channel))
        .arg(after.to_string())
        .arg(max_len.max(1))
        .arg(page_bytes)
        .invoke_async(conn)
        .await?;
    Ok(parse_replay(v))
}

/// Receives the node's pushes: delivers messages, and after a dropped
/// subscription comes back, refills what was missed from history.
async fn pump(
    mut rx: mpsc::UnboundedReceiver<Push>,
    mut conn: ConnectionManager,
    shared: Arc<Shared>,
    read_after: Script,
    max_len: usize,
) {
    let mut names = EventNames::default();
    while let Some(push) = rx.recv().await {
        match push {
            Push::Message { channel, payload } => {
                let Ok(name) = std::str::from_utf8(&channel) else {
                    continue;
                };
                if name == CONTROL {
                    match Revocation::decode(&payload) {
                        Ok(order) => shared.sink.revoke(&order),
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed revocation order")
                        }
                    }
                    continue;
                }
                match parse_messages(&payload, &mut names) {
                    Some(entries) => {
                        for entry in entries {
                            shared.deliver(name, entry);
                        }
                    }
                    None => tracing::warn!(channel = name, "ignoring a malformed bus message"),
                }
            }
            Push::Disconnected => {
                tracing::warn!("lost the Valkey connection; subscriptions will be refilled");
                metrics::counter!(crate::metrics::BUS_DISCONNECTS).increment(1);
                for w in shared.lock().values_mut() {
                    w.stale = true;
                }
            }
            Push::Subscribed { channel } => {
                let Ok(name) = std::str::from_utf8(&channel) else {
                    continue;
                };
                let stale = {
                    let mut watches = shared.lock();
                    match watches.get_mut(name) {
                        Some(w) if w.stale => {
                            w.stale = false;
                            Some((w.channel.clone(), w.last))
                        }
                        _ => None,
                    }
                };
                if let Some((channel, last)) = stale {
                    refill(
                        &mut conn,
                        &shared,
                        &read_after,
                        name,
                        &channel,
                        last,
                        max_len,
                    )
                    .await;
                }
            }
        }
    }
}

/// Delivers what the channel's history holds after `last`, a page at a
/// time. Runs inside the pump, so pushes that arrive meanwhile wait and are
/// deduplicated after.
async fn refill(
    conn: &mut ConnectionManager,
    shared: &Shared,
    script: &Script,
    name: &str,
    channel: &Channel,
    mut last: StreamId,
    max_len: usize,
) {
    let mut refilled = 0;
    loop {
        match read_history(conn, script, channel, last, max_len, REFILL_PAGE_BYTES).await {
            Ok(Some(replay)) => {
                if let Some(gap) = replay.gap {
                    tracing::info!(%channel, ?gap, "history does not cover what the node missed");
                    if let Some(w) = shared.lock().get_mut(name) {
                        w.last = w.last.max(gap.resume_from);
                    }
                    // Listeners compare their own positions with history and
                    // report the gap to their clients.
                    shared.sink.resync(channel);
                }
                refilled += replay.entries.len();
                for entry in replay.entries {
                    last = last.max(entry.id);
                    shared.deliver(name, entry);
                }
                if !replay.more {
                    tracing::info!(%channel, refilled, "resubscribed");
                    return;
                }
            }
            Ok(None) => {
                tracing::warn!(%channel, "unexpected history reply");
                return;
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "refill failed; listeners will resync");
                if let Some(w) = shared.lock().get_mut(name) {
                    w.stale = true;
                }
                shared.sink.resync(channel);
                return;
            }
        }
    }
}

/// The page a refill reads at a time: the node holds one page per channel
/// being refilled, whatever the history's size.
const REFILL_PAGE_BYTES: usize = 1 << 20;

/// One channel's step, as the publish script reports it.
#[derive(Debug)]
struct StepOutcome {
    /// The channel's lower bound of its oldest entry's ms, for [`Hints`].
    oldest_ms: u64,
    /// The stream's length after the step, when the step measured it (or
    /// created the stream), for [`Hints`].
    len: Option<u64>,
    /// One per event, in the channel's order (inline: a channel has few
    /// events in a batch, mostly one).
    published: Group<Published>,
}

/// The publish script's reply: one outcome per group, in group order.
fn parse_reply(v: &Value, groups: &[Group<usize>]) -> Vec<Result<StepOutcome, BusError>> {
    let every = |e: BusError| groups.iter().map(|_| Err(e.clone())).collect();
    let text = match v {
        Value::BulkString(b) => b.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        Value::ServerError(e) => return every(unavailable(format_args!("publish: {e:?}"))),
        other => {
            return every(unavailable(format_args!(
                "unexpected publish reply {other:?}"
            )));
        }
    };
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    if lines.len() != groups.len() {
        return every(unavailable(format_args!(
            "the publish script replied {} lines for {} channels",
            lines.len(),
            groups.len()
        )));
    }
    groups
        .iter()
        .zip(lines)
        .map(|(group, line)| parse_line(line, group.len()))
        .collect()
}

/// One channel's line of the reply: its oldest-entry bound (with
/// `/<length>` when the step knew the length), then its events' ids, space
/// separated, a duplicate's marked `=`; or `!` and the error its step
/// failed with.
fn parse_line(line: &[u8], events: usize) -> Result<StepOutcome, BusError> {
    let bad = || {
        unavailable(format_args!(
            "unexpected publish reply {:?} for {events} events",
            String::from_utf8_lossy(line)
        ))
    };
    if let Some(error) = line.strip_prefix(b"!") {
        return Err(unavailable(format_args!(
            "publish: {}",
            String::from_utf8_lossy(error)
        )));
    }
    // Parsed as bytes: ids and the bound are ASCII digits, checked digit by
    // digit, so the line needs no UTF-8 validation first.
    let mut tokens = line.split(|b| *b == b' ');
    let number = |t: &[u8]| std::str::from_utf8(t).ok()?.parse::<u64>().ok();
    let (oldest_ms, len) = tokens
        .next()
        .and_then(|t| match t.iter().position(|b| *b == b'/') {
            Some(slash) => Some((number(&t[..slash])?, Some(number(&t[slash + 1..])?))),
            None => Some((number(t)?, None)),
        })
        .ok_or_else(bad)?;
    let published = tokens
        .map(|t| {
            let (duplicate, id) = match t.strip_prefix(b"=") {
                Some(id) => (true, id),
                None => (false, t),
            };
            Some(Published {
                id: StreamId::parse_bytes(id).ok()?,
                duplicate,
            })
        })
        .collect::<Option<Group<_>>>()
        .ok_or_else(bad)?;
    if published.len() != events {
        return Err(bad());
    }
    Ok(StepOutcome {
        oldest_ms,
        len,
        published,
    })
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A batch's events by channel, each channel's in publish order; channels
/// in order of first appearance.
/// A channel's share of a batch: a handful of items at most, kept inline
/// (two heap allocations per channel of every batch otherwise).
type Group<T> = smallvec::SmallVec<[T; 4]>;

fn by_channel(events: &[Outgoing]) -> Vec<Group<usize>> {
    let mut groups: Vec<Group<usize>> = Vec::new();
    let mut index: HashMap<&Channel, usize, foldhash::fast::RandomState> = HashMap::default();
    for (i, e) in events.iter().enumerate() {
        match index.get(&e.channel) {
            Some(&g) => groups[g].push(i),
            None => {
                index.insert(&e.channel, groups.len());
                groups.push(smallvec::smallvec![i]);
            }
        }
    }
    groups
}

impl ValkeyBus {
    /// `EVALSHA` of the publish script for a batch, grouped by channel: one
    /// script run appends every event, and per channel trims once and sends
    /// its events in one pub/sub message. One run for the whole batch
    /// rather than one per channel: with events spread over many channels,
    /// the per-call cost (dispatch, script set-up, reply, and `TIME`) was
    /// most of Valkey's work per event.
    fn publish_command(
        &self,
        events: &[Outgoing],
        groups: &[Group<usize>],
        steps: &[StepHint],
    ) -> redis::Cmd {
        // Keys first (Valkey needs their count up front): per channel its
        // history key, then its events' idempotency keys, each event
        // remembering its key's index (0: none).
        let mut keys: Vec<Name> = Vec::with_capacity(groups.len() * 2);
        for group in groups {
            let channel = &events[group[0]].channel;
            keys.push(Name::History(channel));
            for &i in group {
                if let Some(k) = events[i].idempotency_key.as_deref() {
                    keys.push(Name::Idempotency(channel, k));
                }
            }
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.publish.get_hash())
            .arg(keys.len())
            .arg(&keys)
            .arg(self.retention.max_len.max(1))
            .arg(self.retention.max_age.as_millis().max(1) as u64)
            .arg(self.retention.idempotency_window.as_millis().max(1) as u64);
        // Per channel two arguments and then one per event (the script's
        // comments give the layout): every argument is a string Valkey
        // makes and Lua interns, so the fewer, the cheaper each event.
        let mut mode = Vec::new();
        for (group, step) in groups.iter().zip(steps) {
            mode.clear();
            mode.push(match (step.refresh_expiry, step.measure_len) {
                (true, true) => b'b',
                (true, false) => b'r',
                (false, true) => b'l',
                (false, false) => b'-',
            });
            mode.extend(group.iter().map(|&i| {
                if events[i].idempotency_key.is_some() {
                    b'1'
                } else {
                    b'0'
                }
            }));
            cmd.arg(&mode[..]).arg(step.oldest_ms);
            for &i in group {
                cmd.arg(Record(&events[i]));
            }
        }
        cmd
    }

    async fn load_publish_script(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "script load",
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(PUBLISH)
                .query_async::<String>(&mut conn),
        )
        .await
        .map(|_| ())
    }

    /// Runs the batch's script and returns its reply.
    async fn run_groups(
        &self,
        events: &[Outgoing],
        groups: &[Group<usize>],
        steps: &[StepHint],
    ) -> Result<Value, BusError> {
        // In a pipeline that keeps errors as replies, so a lost script
        // (`NOSCRIPT`) can be told from other failures.
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(self.publish_command(events, groups, steps));
        let mut conn = self.conn.clone();
        let mut replies: Vec<Value> = self.bounded("publish", pipe.query_async(&mut conn)).await?;
        replies
            .pop()
            .ok_or_else(|| unavailable("the publish script gave no reply"))
    }
}

#[async_trait]
impl Bus for ValkeyBus {
    async fn publish(&self, event: Outgoing) -> Result<Published, BusError> {
        self.publish_batch(vec![event])
            .await
            .pop()
            .unwrap_or_else(|| Err(unavailable("no publish outcome")))
    }

    async fn publish_batch(&self, events: Vec<Outgoing>) -> Vec<Result<Published, BusError>> {
        if events.is_empty() {
            return Vec::new();
        }
        let groups = by_channel(&events);
        let now = Instant::now();
        let channels = || groups.iter().map(|g| &events[g[0]].channel);
        let steps = self
            .hints
            .steps(channels().zip(groups.iter().map(|g| g.len())), now);
        let reply = match self.run_groups(&events, &groups, &steps).await {
            Ok(v) => v,
            Err(e) => return events.iter().map(|_| Err(e.clone())).collect(),
        };
        // Valkey lost its script cache (a restart or failover): the batch
        // did not run. It fails as retryable rather than being run again
        // here, because batches sent after it may already have run and a
        // retry now would reorder their channels. Later publishes find the
        // script loaded.
        let outcomes = if is_noscript(&reply) {
            let loaded = self.load_publish_script().await;
            let e = unavailable(format_args!(
                "Valkey had lost the publish script (restarted?){}",
                match &loaded {
                    Ok(()) => String::from("; it is loaded again"),
                    Err(e) => format!(" and loading it failed: {e}"),
                }
            ));
            groups.iter().map(|_| Err(e.clone())).collect()
        } else {
            parse_reply(&reply, &groups)
        };
        for ((channel, step), outcome) in channels().zip(&steps).zip(&outcomes) {
            // Most steps change nothing the node remembers: no need to
            // take the lock again.
            match outcome {
                Ok(o)
                    if o.oldest_ms != step.oldest_ms || step.refresh_expiry || o.len.is_some() =>
                {
                    let report = Report {
                        oldest_ms: o.oldest_ms,
                        refreshed: step.refresh_expiry.then_some(now),
                        len: o.len,
                    };
                    self.hints.record(channel, step, report);
                }
                _ => {}
            }
        }
        let mut out: Vec<Option<Result<Published, BusError>>> =
            events.iter().map(|_| None).collect();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome.map(|o| o.published) {
                Ok(published) => {
                    for (&i, p) in group.iter().zip(published) {
                        out[i] = Some(Ok(p));
                    }
                }
                Err(e) => {
                    for &i in group {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(unavailable("no publish outcome"))))
            .collect()
    }

    async fn head(&self, channel: &Channel) -> Result<StreamId, BusError> {
        let mut conn = self.conn.clone();
        let id: String = self
            .bounded(
                "head",
                self.head.key(history_key(channel)).invoke_async(&mut conn),
            )
            .await?;
        id.parse()
            .map_err(|_| unavailable(format_args!("head returned a bad id `{id}`")))
    }

    async fn read_after(
        &self,
        channel: &Channel,
        after: StreamId,
        page_bytes: usize,
    ) -> Result<Replay, BusError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "history",
            read_history(
                &mut conn,
                &self.read_after,
                channel,
                after,
                self.retention.max_len,
                page_bytes,
            ),
        )
        .await?
        .ok_or_else(|| unavailable("unexpected history reply"))
    }

    async fn watch(&self, channel: &Channel) -> Result<StreamId, BusError> {
        let name = shard_channel(channel);
        let _serial = self.subscriptions.lock().await;
        let first = {
            let mut watches = self.shared.lock();
            let w = watches.entry(name.clone()).or_insert_with(|| Watch {
                channel: channel.clone(),
                count: 0,
                last: StreamId::ZERO,
                stale: false,
            });
            w.count += 1;
            w.count == 1
        };
        if !first {
            return self.head(channel).await;
        }
        let subscribed = self
            .bounded("subscribe", self.subs.subscribe(Kind::Shard, &name))
            .await;
        let head = match subscribed {
            Ok(()) => self.head(channel).await,
            Err(e) => Err(e),
        };
        match head {
            Ok(head) => {
                if let Some(w) = self.shared.lock().get_mut(&name) {
                    w.last = w.last.max(head);
                }
                Ok(head)
            }
            Err(e) => {
                self.shared.lock().remove(&name);
                let _ = self.subs.unsubscribe(Kind::Shard, &name).await;
                Err(e)
            }
        }
    }

    async fn unwatch(&self, channel: &Channel) -> Result<(), BusError> {
        let name = shard_channel(channel);
        let _serial = self.subscriptions.lock().await;
        let last = {
            let mut watches = self.shared.lock();
            match watches.get_mut(&name) {
                Some(w) if w.count > 1 => {
                    w.count -= 1;
                    false
                }
                Some(_) => {
                    watches.remove(&name);
                    true
                }
                None => false,
            }
        };
        if last {
            self.bounded("unsubscribe", self.subs.unsubscribe(Kind::Shard, &name))
                .await?;
        }
        Ok(())
    }

    async fn revoke(&self, order: &Revocation) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "revoke",
            redis::cmd("PUBLISH")
                .arg(CONTROL)
                .arg(order.encode())
                .query_async(&mut conn),
        )
        .await
    }

    async fn ready(&self) -> bool {
        // Both connections: publishing needs one, live delivery the other.
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        let (commands, subscriptions) = tokio::join!(
            self.bounded("ping", ping.query_async::<Value>(&mut conn)),
            self.bounded("ping", self.subs.ping()),
        );
        commands.is_ok() && subscriptions.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_one_or_more_records() {
        let mut names = EventNames::default();
        let one = parse_messages(
            &Bytes::from_static(b"17-3\nscan.progress\n{\"a\":\"x\\ny\"}"),
            &mut names,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, StreamId::new(17, 3));
        assert_eq!(&*one[0].event, "scan.progress");
        assert_eq!(&one[0].data[..], b"{\"a\":\"x\\ny\"}");
        let two = parse_messages(
            &Bytes::from_static(b"1-0\na.b\n{}\n1-1\nc.d\n[]"),
            &mut names,
        )
        .unwrap();
        assert_eq!(two.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(&*two[1].event, "c.d");
        // A name seen before is the same shared string; the map stays bounded.
        let again = parse_messages(&Bytes::from_static(b"2-0\nscan.progress\n{}"), &mut names);
        assert!(Arc::ptr_eq(&again.unwrap()[0].event, &one[0].event));
        for i in 0..=EventNames::MAX {
            names.get(format!("n.{i}").as_bytes());
        }
        assert!(names.0.len() <= EventNames::MAX);
        assert!(names.get(b"\xff").is_none());
        for bad in [
            &b"nope"[..],
            b"1-1\nonly-two",
            b"1-0\na.b\n{}\n1-1\nc.d",
            b"",
        ] {
            assert!(
                parse_messages(&Bytes::from_static(bad), &mut names).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn history_entries_are_read_in_both_layouts() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |fields| Value::Array(vec![bulk("5-1"), fields]);
        let record = entry(Value::Array(vec![
            bulk("m"),
            bulk("scan.progress\n{\"a\":1}"),
        ]));
        let earlier = entry(Value::Map(vec![
            (bulk("e"), bulk("scan.progress")),
            (bulk("d"), bulk("{\"a\":1}")),
        ]));
        for v in [record, earlier] {
            let e = parse_entry(&v).unwrap();
            assert_eq!(e.id, StreamId::new(5, 1));
            assert_eq!(&*e.event, "scan.progress");
            assert_eq!(&e.data[..], b"{\"a\":1}");
        }
        // A record without its separator is refused, not misread.
        let broken = entry(Value::Array(vec![bulk("m"), bulk("scan.progress")]));
        assert!(parse_entry(&broken).is_none());
    }

    #[test]
    fn keys_of_a_channel_share_one_hash_tag() {
        let c = Channel::parse("scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:r").unwrap();
        let tag = format!("{{{c}}}");
        for k in [history_key(&c), idempotency_key(&c, "k"), shard_channel(&c)] {
            assert!(k.contains(&tag), "{k}");
            assert_eq!(k.matches('{').count(), 1);
        }
        assert_eq!(history_key(&c), format!("sseb:{tag}:h"));
        assert_eq!(idempotency_key(&c, "k"), format!("sseb:{tag}:k:k"));
        assert_eq!(shard_channel(&c), format!("sseb:{tag}"));
        // What goes into commands is the same bytes.
        for name in [
            Name::History(&c),
            Name::Idempotency(&c, "k"),
            Name::Shard(&c),
        ] {
            let args = redis::ToRedisArgs::to_redis_args(&name);
            assert_eq!(args, vec![name.to_string().into_bytes()]);
        }
    }

    #[test]
    fn publish_reply_has_a_line_per_channel() {
        let groups: Vec<Group<usize>> = vec![
            smallvec::smallvec![0, 2],
            smallvec::smallvec![1],
            smallvec::smallvec![3],
        ];
        let reply =
            Value::BulkString(b"17 5-0 =4-1\n0/3 5-1\n!WRONGTYPE Operation against a key".to_vec());
        let out = parse_reply(&reply, &groups);
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.oldest_ms, 17);
        assert_eq!(first.len, None, "not measured");
        assert_eq!(out[1].as_ref().unwrap().len, Some(3));
        let first = &first.published;
        assert_eq!(first[0].id, StreamId::new(5, 0));
        assert!(!first[0].duplicate);
        assert_eq!(first[1].id, StreamId::new(4, 1));
        assert!(first[1].duplicate);
        assert_eq!(
            out[1].as_ref().unwrap().published[0].id,
            StreamId::new(5, 1)
        );
        match &out[2] {
            Err(BusError::Unavailable(m)) => assert!(m.contains("WRONGTYPE"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A reply that does not match the batch fails every channel, never
        // pairs outcomes with the wrong events.
        for bad in [
            &b"1 5-0 5-1\n1 5-2"[..],
            b"1 5-0 5-1\n1 5-2\n1 5-3\n1 5-4",
            b"1 5-0\n1 5-1\n1 5-2",
            b"1 5-0 x\n1 5-1\n1 5-2",
            b"1 5-0 5-1 5-2\n1 5-3\n1 5-4",
            // No bound.
            b"5-0 5-1\n5-2\n5-3",
            // A length that is not a number, or an empty one.
            b"1/x 5-0 5-1\n1 5-2\n1 5-3",
            b"1/ 5-0 5-1\n1 5-2\n1 5-3",
            b"/4 5-0 5-1\n1 5-2\n1 5-3",
        ] {
            let out = parse_reply(&Value::BulkString(bad.to_vec()), &groups);
            assert!(out.iter().any(|o| o.is_err()), "{bad:?}");
        }
        assert!(
            parse_reply(&Value::Int(1), &groups)
                .iter()
                .all(|o| o.is_err())
        );
    }
}
