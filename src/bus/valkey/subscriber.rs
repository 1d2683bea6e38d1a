//! The node's subscription connection, read by a parser of our own.
//! (Over 500 lines: the connection's state machine and its unit tests,
//! which drive it against a scripted server, belong together.)
//!
//! Every event a node delivers arrives as a pushed message on this one
//! connection. The client library's general RESP parser built a tree of
//! values, an allocation and a copy per part, for each one (change 32 in
//! `docs/benchmarks.md` measures what this connection saved). This
//! connection only subscribes, unsubscribes and pings, and hands pushed
//! messages on as slices of the bytes it read ([`resp`]).
//!
//! A connection that goes silent (a black-holed route, a server that
//! stopped answering) is found out: after a quiet spell as long as the
//! command timeout it sends `PING`, and with no answer within as long again
//! it is taken for dead. Only when quiet: a busy connection costs nothing.
//!
//! It reconnects by itself (50 ms, doubling up to 2 s), subscribes again to
//! every channel it holds, and says so: [`Push::Disconnected`] when the
//! connection drops, [`Push::Subscribed`] for each confirmed subscription,
//! first or again, so the pump can refill what was missed in between.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::call::{RECONNECT_MAX, RECONNECT_MIN};
use super::resp::{self, Frame, Parsed};

/// What the connection reports to the pump.
#[derive(Debug)]
pub enum Push {
    /// A message published on a channel this node subscribes to.
    Message { channel: Bytes, payload: Bytes },
    /// A subscription is confirmed: the first time, or again after a
    /// reconnect.
    Subscribed { channel: Bytes },
    /// The connection dropped; its shard channels (listed) come back with
    /// it, unless their server is gone for good.
    Disconnected { channels: Vec<String> },
    /// The server stopped sending a channel's messages by itself: its slot
    /// migrated to another cluster node (`sunsubscribe`), or a
    /// resubscription was refused (`MOVED`). It is no longer held here.
    Unsubscribed { channel: String },
}

/// `SUBSCRIBE` (the control channel) or `SSUBSCRIBE` (event channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Plain,
    Shard,
}

impl Kind {
    fn subscribe(self) -> &'static [u8] {
        match self {
            Kind::Plain => b"SUBSCRIBE",
            Kind::Shard => b"SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static [u8] {
        match self {
            Kind::Plain => b"UNSUBSCRIBE",
            Kind::Shard => b"SUNSUBSCRIBE",
        }
    }
}

/// Why the connection could not be opened, or was lost.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("rediss:// URLs with #insecure (no certificate verification) are not supported")]
    Insecure,
    #[error("TLS to Valkey needs the system's root certificates; none were found")]
    NoRoots,
    #[error("{host} is not a TLS server name: {reason}")]
    ServerName { host: String, reason: String },
    #[error("unsupported Valkey address {0}")]
    Address(String),
    #[error("HELLO: {0}")]
    Hello(String),
    #[error(transparent)]
    Resp(#[from] resp::RespError),
    #[error("Valkey did not answer a ping within {0:?}; the connection is taken for dead")]
    Silent(Duration),
    #[error("Valkey did not answer within {0:?} while connecting")]
    OpenTimeout(Duration),
    #[error("the primary moved; reconnecting to the new one")]
    Moved,
    #[error("Valkey closed the connection")]
    Closed,
    #[error("a reply that no command asked for")]
    Unasked,
}

/// Why a subscribe, unsubscribe or ping did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Valkey's error reply, as it gave it.
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply to a subscribe")]
    Unexpected,
    #[error("the Valkey subscription connection is down")]
    Down,
    #[error("the Valkey subscription connection dropped")]
    Dropped,
    #[error("the subscription connection has stopped")]
    Stopped,
}

type Answer = oneshot::Sender<Result<(), RequestError>>;

enum Request {
    Subscribe(Kind, String, Answer),
    Unsubscribe(Kind, String, Answer),
    /// `None`: the connection's own liveness probe.
    Ping(Option<Answer>),
    /// Drop the connection and open one to the target's current address.
    Reconnect,
}

/// What a sent command waits for, in the order the commands were sent
/// (Valkey answers in that order; pushed messages come in between).
enum Pending {
    /// The last field numbers the command: several channels' subscribes
    /// may share one, and an error reply answers all of them.
    Subscribe(Kind, String, Option<Answer>, u64),
    Unsubscribe(String, Option<Answer>),
    /// `None`: the connection's own liveness probe.
    Ping(Option<Answer>),
}

/// Most channels one subscribe command carries.
const MAX_BATCH: usize = 1024;

/// Subscribes not yet written, merged into one command while they are of
/// one kind: a restarted node's channels (or a reconnect's) go out in a few
/// commands rather than one each. While one such command waits for Valkey,
/// the next gathers (a lone subscribe goes out at once). Only on a
/// connection to one primary; a cluster node's commands carry one channel
/// each, since the channels of one command must share a slot.
struct Batch {
    multi: bool,
    kind: Kind,
    names: Vec<String>,
    /// The number of the command being gathered.
    cmd: u64,
}

impl Batch {
    fn new(multi: bool) -> Batch {
        Batch {
            multi,
            kind: Kind::Shard,
            names: Vec::new(),
            cmd: 0,
        }
    }

    /// Adds a channel; returns the number of the command it goes out in.
    fn add(&mut self, out: &mut BytesMut, kind: Kind, name: String) -> u64 {
        if !self.names.is_empty()
            && (!self.multi || self.kind != kind || self.names.len() >= MAX_BATCH)
        {
            self.write(out);
        }
        self.kind = kind;
        self.names.push(name);
        self.cmd
    }

    /// Whether what was gathered should go out now: no subscribe command
    /// of this connection is waiting for its confirmation (or gathering
    /// more would make the command too long).
    fn due(&self, pending: &VecDeque<Pending>) -> bool {
        if self.names.is_empty() {
            return false;
        }
        // The oldest subscribe waiting is found near the front: only pings
        // and unsubscribes are ever ahead of it.
        let oldest = pending.iter().find_map(|p| match p {
            Pending::Subscribe(.., cmd) => Some(*cmd),
            _ => None,
        });
        !self.multi || self.names.len() >= MAX_BATCH || oldest.is_none_or(|c| c >= self.cmd)
    }

    /// Writes what was gathered as one command.
    fn write(&mut self, out: &mut BytesMut) {
        if self.names.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(self.names.len() + 1);
        args.push(self.kind.subscribe());
        args.extend(self.names.iter().map(|n| n.as_bytes()));
        resp::command(out, &args);
        self.names.clear();
        self.cmd += 1;
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    /// Shared with [`Mover`]: a failover points it at the new primary.
    addr: Arc<std::sync::RwLock<ConnectionAddr>>,
    username: Option<String>,
    password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// From the parsed `--valkey-url`. TLS verifies the server against the
    /// system's roots, as the command connection does; `#insecure` (no
    /// verification) is refused rather than silently honoured.
    pub fn new(info: &ConnectionInfo) -> Result<Target, ConnError> {
        let tls = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => return Err(ConnError::Insecure),
            ConnectionAddr::TcpTls { .. } => {
                let mut roots = rustls::RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system certificate rustls cannot use is skipped,
                    // as the command connection's loader skips it.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(ConnError::NoRoots);
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
            _ => None,
        };
        let settings = info.redis_settings();
        Ok(Target {
            addr: Arc::new(std::sync::RwLock::new(info.addr().clone())),
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            tls,
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Conn {
    io: Box<dyn Stream>,
    read: BytesMut,
    write: BytesMut,
}

impl Conn {
    async fn open(target: &Target) -> Result<Conn, ConnError> {
        let addr = target
            .addr
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let io: Box<dyn Stream> = match (&addr, &target.tls) {
            (ConnectionAddr::Tcp(host, port), _) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            // `Target::new` makes a TLS configuration for every TLS address.
            (ConnectionAddr::TcpTls { host, port, .. }, Some(config)) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                    ConnError::ServerName {
                        host: host.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Box::new(tls)
            }
            (ConnectionAddr::Unix(path), _) => {
                Box::new(tokio::net::UnixStream::connect(path).await?)
            }
            // The enum is non-exhaustive; a kind of address added later is
            // not one this connection knows how to reach.
            (other, _) => return Err(ConnError::Address(format!("{other:?}"))),
        };
        let mut conn = Conn {
            io,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::new(),
        };
        // RESP3 (pushes and replies on one connection), authenticated.
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &target.password {
            let user = target.username.as_deref().unwrap_or("default");
            hello.extend([&b"AUTH"[..], user.as_bytes(), password.as_bytes()]);
        }
        hello.extend([&b"SETNAME"[..], b"sse-bridge-subscriptions"]);
        resp::command(&mut conn.write, &hello);
        conn.flush().await?;
        let reply = conn.next().await?;
        if let Frame::Error(e) = &reply.frame {
            return Err(ConnError::Hello(
                String::from_utf8_lossy(&reply.slice(e)).into_owned(),
            ));
        }
        Ok(conn)
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.write.is_empty() {
            self.io.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// The next frame: from what was read already, else from the socket.
    async fn next(&mut self) -> Result<Parsed, ConnError> {
        loop {
            if let Some(parsed) = self.parsed()? {
                return Ok(parsed);
            }
            self.fill().await?;
        }
    }

    fn parsed(&mut self) -> Result<Option<Parsed>, ConnError> {
        Ok(resp::parse(&mut self.read)?)
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        self.read.reserve(16 * 1024);
        match self.io.read_buf(&mut self.read).await? {
            0 => Err(ConnError::Closed),
            _ => Ok(()),
        }
    }
}

/// The node's handle on its subscription connection.
pub struct Subscriber {
    requests: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects (failing if the first attempt fails, so a bad URL or a
    /// Valkey that is down stops start-up) and starts the connection's task.
    /// `silence`: how long a quiet connection waits before it pings, and
    /// then for the answer (the command timeout).
    /// `multi`: the server is one primary, so one command may subscribe
    /// channels of any slots.
    pub async fn connect(
        target: Target,
        pushes: mpsc::UnboundedSender<Push>,
        silence: Duration,
        multi: bool,
    ) -> Result<Subscriber, ConnError> {
        let conn = Conn::open(&target).await?;
        let (requests, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(conn, target, rx, pushes, silence, multi));
        Ok(Subscriber { requests, task })
    }

    async fn ask(&self, request: impl FnOnce(Answer) -> Request) -> Result<(), RequestError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(request(tx))
            .map_err(|_| RequestError::Stopped)?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Subscribes and waits for Valkey's confirmation.
    pub async fn subscribe(&self, kind: Kind, channel: &str) -> Result<(), RequestError> {
        self.send_subscribe(kind, channel).await
    }

    /// Queues a subscribe before it returns (so commands reach Valkey in
    /// the order of these calls) and gives the wait for its confirmation.
    /// Many queued at once go out in one write and are confirmed in one
    /// round trip.
    pub fn send_subscribe(
        &self,
        kind: Kind,
        channel: &str,
    ) -> impl Future<Output = Result<(), RequestError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .requests
            .send(Request::Subscribe(kind, channel.to_owned(), tx));
        async move {
            sent.map_err(|_| RequestError::Stopped)?;
            rx.await.map_err(|_| RequestError::Stopped)?
        }
    }

    pub async fn unsubscribe(&self, kind: Kind, channel: &str) -> Result<(), RequestError> {
        self.ask(|a| Request::Unsubscribe(kind, channel.to_owned(), a))
            .await
    }

    /// What moves this connection to another server (a failover).
    pub fn mover(&self, target: &Target) -> Mover {
        Mover {
            requests: self.requests.clone(),
            addr: target.addr.clone(),
        }
    }

    pub async fn ping(&self) -> Result<(), RequestError> {
        self.ask(|a| Request::Ping(Some(a))).await
    }
}

/// Moves a node's subscription connection to another server.
pub struct Mover {
    requests: mpsc::UnboundedSender<Request>,
    addr: Arc<std::sync::RwLock<ConnectionAddr>>,
}

impl Mover {
    /// Points the connection at `target`'s address and reconnects: the
    /// subscriptions follow, and the pump refills what was missed.
    pub fn move_to(&self, target: &Target) {
        let addr = target
            .addr
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.addr.write().unwrap_or_else(|p| p.into_inner()) = addr;
        let _ = self.requests.send(Request::Reconnect);
    }
}

/// The connection's task: serves requests and reads pushes; after a drop,
/// reconnects and subscribes again to what it holds.
async fn run(
    first: Conn,
    target: Target,
    mut requests: mpsc::UnboundedReceiver<Request>,
    pushes: mpsc::UnboundedSender<Push>,
    silence: Duration,
    multi: bool,
) {
    // The subscriptions Valkey should hold for this node.
    let mut held: HashSet<(Kind, String)> = HashSet::new();
    let mut conn = Some(first);
    let mut delay = RECONNECT_MIN;
    loop {
        let Some(mut current) = conn.take() else {
            let opened = tokio::time::timeout(silence, Conn::open(&target))
                .await
                .unwrap_or(Err(ConnError::OpenTimeout(silence)));
            match opened {
                Ok(c) => {
                    delay = RECONNECT_MIN;
                    conn = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach Valkey for subscriptions; retrying");
                    let wait = tokio::time::sleep(delay);
                    tokio::pin!(wait);
                    delay = (delay * 2).min(RECONNECT_MAX);
                    // Meanwhile requests are answered: nothing can be
                    // subscribed, and what is dropped is simply not
                    // subscribed again.
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            r = requests.recv() => match r {
                                None => return,
                                Some(r) => refuse(r, &mut held),
                            },
                        }
                    }
                }
            }
            continue;
        };
        match serve(
            &mut current,
            &mut requests,
            &mut held,
            &pushes,
            silence,
            multi,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "lost the Valkey subscription connection");
                let channels = held
                    .iter()
                    .filter(|(kind, _)| *kind == Kind::Shard)
                    .map(|(_, c)| c.clone())
                    .collect();
                if pushes.send(Push::Disconnected { channels }).is_err() {
                    return;
                }
            }
        }
    }
}

fn refuse(request: Request, held: &mut HashSet<(Kind, String)>) {
    match request {
        Request::Subscribe(_, _, answer) => {
            let _ = answer.send(Err(RequestError::Down));
        }
        Request::Ping(answer) => {
            if let Some(answer) = answer {
                let _ = answer.send(Err(RequestError::Down));
            }
        }
        // Down already: the next attempt goes to the current address.
        Request::Reconnect => {}
        Request::Unsubscribe(kind, channel, answer) => {
            held.remove(&(kind, channel));
            let _ = answer.send(Ok(()));
        }
    }
}

/// One connection's life: `Ok` when the node let go of it, `Err` when it
/// dropped. Every command still waiting is answered either way.
async fn serve(
    conn: &mut Conn,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    held: &mut HashSet<(Kind, String)>,
    pushes: &mpsc::UnboundedSender<Push>,
    silence: Duration,
    multi: bool,
) -> Result<(), ConnError> {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut batch = Batch::new(multi);
    // Liveness: when anything was last read, and when the probe went out.
    // One timer, moved only when it fires, not per read.
    let mut heard = Instant::now();
    let mut probe: Option<Instant> = None;
    let check = tokio::time::sleep(silence);
    tokio::pin!(check);
    for (kind, channel) in held.iter() {
        let cmd = batch.add(&mut conn.write, *kind, channel.clone());
        pending.push_back(Pending::Subscribe(*kind, channel.clone(), None, cmd));
    }
    let outcome = loop {
        if batch.due(&pending) {
            batch.write(&mut conn.write);
        }
        if let Err(e) = conn.flush().await {
            break Err(e);
        }
        // Everything already read first, so the read below only waits when
        // there is nothing to do.
        let parsed = match conn.parsed() {
            Ok(Some(p)) => p,
            Ok(None) => {
                tokio::select! {
                    r = requests.recv() => match r {
                        None => break Ok(()),
                        Some(Request::Reconnect) => break Err(ConnError::Moved),
                        Some(r) => {
                            send(conn, r, held, &mut pending, &mut batch);
                            continue;
                        }
                    },
                    filled = conn.fill() => match filled {
                        Ok(()) => {
                            heard = Instant::now();
                            continue;
                        }
                        Err(e) => break Err(e),
                    },
                    () = &mut check => {
                        let now = Instant::now();
                        if probe.is_some_and(|sent| heard <= sent) {
                            break Err(ConnError::Silent(silence));
                        }
                        probe = None;
                        let quiet_until = heard + silence;
                        if now >= quiet_until {
                            send(conn, Request::Ping(None), held, &mut pending, &mut batch);
                            probe = Some(now);
                            check.as_mut().reset(now + silence);
                        } else {
                            check.as_mut().reset(quiet_until);
                        }
                        continue;
                    }
                }
            }
            Err(e) => break Err(e),
        };
        if let Err(e) = handle(parsed, held, &mut pending, pushes) {
            break Err(e);
        }
    };
    for waiting in pending {
        let answer = match waiting {
            Pending::Subscribe(_, _, a, _) | Pending::Unsubscribe(_, a) => a,
            Pending::Ping(a) => a,
        };
        if let Some(a) = answer {
            let _ = a.send(Err(RequestError::Dropped));
        }
    }
    outcome
}

fn send(
    conn: &mut Conn,
    request: Request,
    held: &mut HashSet<(Kind, String)>,
    pending: &mut VecDeque<Pending>,
    batch: &mut Batch,
) {
    if !matches!(request, Request::Subscribe(..)) {
        // Commands go out in the order asked (the replies are matched in
        // that order): what was gathered goes first.
        batch.write(&mut conn.write);
    }
    match request {
        Request::Subscribe(kind, channel, answer) => {
            let cmd = batch.add(&mut conn.write, kind, channel.clone());
            held.insert((kind, channel.clone()));
            pending.push_back(Pending::Subscribe(kind, channel, Some(answer), cmd));
        }
        Request::Unsubscribe(kind, channel, answer) => {
            resp::command(&mut conn.write, &[kind.unsubscribe(), channel.as_bytes()]);
            held.remove(&(kind, channel.clone()));
            pending.push_back(Pending::Unsubscribe(channel, Some(answer)));
        }
        Request::Ping(answer) => {
            resp::command(&mut conn.write, &[b"PING"]);
            pending.push_back(Pending::Ping(answer));
        }
        Request::Reconnect => {}
    }
}

/// A subscribe Valkey refused: its caller is told, or for a resubscription
/// after a reconnect (the slot has another owner now), whoever placed it.
fn refused(
    kind: Kind,
    channel: String,
    answer: Option<Answer>,
    e: &RequestError,
    held: &mut HashSet<(Kind, String)>,
    pushes: &mpsc::UnboundedSender<Push>,
) {
    held.remove(&(kind, channel.clone()));
    match answer {
        Some(a) => {
            let _ = a.send(Err(e.clone()));
        }
        None => {
            tracing::warn!(%channel, error = %e, "a resubscription was refused");
            let _ = pushes.send(Push::Unsubscribed { channel });
        }
    }
}

/// Acts on one frame from Valkey.
fn handle(
    parsed: Parsed,
    held: &mut HashSet<(Kind, String)>,
    pending: &mut VecDeque<Pending>,
    pushes: &mpsc::UnboundedSender<Push>,
) -> Result<(), ConnError> {
    let Frame::Push(items) = &parsed.frame else {
        // A reply: to a ping, or an error for the command at the front.
        let error = match &parsed.frame {
            Frame::Error(e) => Some(RequestError::Refused(
                String::from_utf8_lossy(&parsed.slice(e)).into_owned(),
            )),
            _ => None,
        };
        match pending.pop_front() {
            Some(Pending::Ping(a)) => {
                if let Some(a) = a {
                    let _ = a.send(error.map_or(Ok(()), Err));
                }
            }
            Some(Pending::Subscribe(kind, channel, a, cmd)) => {
                let e = error.unwrap_or(RequestError::Unexpected);
                refused(kind, channel, a, &e, held, pushes);
                // One error answers the whole command: every channel it
                // carried is refused.
                while let Some(Pending::Subscribe(.., next)) = pending.front() {
                    if *next != cmd {
                        break;
                    }
                    if let Some(Pending::Subscribe(kind, channel, a, _)) = pending.pop_front() {
                        refused(kind, channel, a, &e, held, pushes);
                    }
                }
            }
            Some(Pending::Unsubscribe(_, a)) => {
                if let Some(a) = a {
                    let _ = a.send(error.map_or(Ok(()), Err));
                }
            }
            None => return Err(ConnError::Unasked),
        }
        return Ok(());
    };
    let text = |i: usize| match items.get(i) {
        Some(Frame::Text(r)) => Some(parsed.slice(r)),
        _ => None,
    };
    let Some(kind) = text(0) else {
        return Ok(());
    };
    match &kind[..] {
        b"smessage" | b"message" => {
            if let (Some(channel), Some(payload)) = (text(1), text(2)) {
                // The pump gone means the bus is going: nothing to do.
                let _ = pushes.send(Push::Message { channel, payload });
            }
        }
        b"ssubscribe" | b"subscribe" => {
            if let Some(Pending::Subscribe(..)) = pending.front() {
                if let Some(Pending::Subscribe(_, _, Some(a), _)) = pending.pop_front() {
                    let _ = a.send(Ok(()));
                }
            }
            if let Some(channel) = text(1) {
                let _ = pushes.send(Push::Subscribed { channel });
            }
        }
        b"sunsubscribe" | b"unsubscribe" => {
            let channel = text(1);
            let answers = matches!(
                (pending.front(), &channel),
                (Some(Pending::Unsubscribe(asked, _)), Some(c)) if asked.as_bytes() == &c[..]
            );
            if answers {
                if let Some(Pending::Unsubscribe(_, Some(a))) = pending.pop_front() {
                    let _ = a.send(Ok(()));
                }
            } else if let Some(c) = channel.and_then(|c| String::from_utf8(c.to_vec()).ok()) {
                // Nobody asked: the server dropped the subscription (its
                // slot migrated away).
                let kind = if &kind[..] == b"sunsubscribe" {
                    Kind::Shard
                } else {
                    Kind::Plain
                };
                if held.remove(&(kind, c.clone())) {
                    let _ = pushes.send(Push::Unsubscribed { channel: c });
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &[u8]) -> Parsed {
        let mut buf = BytesMut::from(input);
        resp::parse(&mut buf).unwrap().unwrap()
    }

    fn held(channels: &[&str]) -> HashSet<(Kind, String)> {
        channels
            .iter()
            .map(|c| (Kind::Shard, (*c).to_owned()))
            .collect()
    }

    #[test]
    fn confirmations_answer_commands_in_order_and_messages_pass_through() {
        let (tx, mut pushes) = mpsc::unbounded_channel();
        let mut held = held(&["a", "b"]);
        let (a_tx, mut a_rx) = oneshot::channel();
        let (ping_tx, mut ping_rx) = oneshot::channel();
        let mut pending = VecDeque::from([
            Pending::Subscribe(Kind::Shard, "a".into(), Some(a_tx), 0),
            Pending::Ping(Some(ping_tx)),
        ]);
        let message = b">3\r\n$8\r\nsmessage\r\n$1\r\nb\r\n$3\r\nxyz\r\n";
        handle(parsed(message), &mut held, &mut pending, &tx).unwrap();
        assert_eq!(pending.len(), 2, "a message answers nothing");
        let confirm = b">3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:2\r\n";
        handle(parsed(confirm), &mut held, &mut pending, &tx).unwrap();
        assert_eq!(a_rx.try_recv().unwrap(), Ok(()));
        handle(parsed(b"+PONG\r\n"), &mut held, &mut pending, &tx).unwrap();
        assert_eq!(ping_rx.try_recv().unwrap(), Ok(()));
        assert!(pending.is_empty());
        match pushes.try_recv().unwrap() {
            Push::Message { channel, payload } => {
                assert_eq!((&channel[..], &payload[..]), (&b"b"[..], &b"xyz"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            pushes.try_recv().unwrap(),
            Push::Subscribed { channel } if &channel[..] == b"a"
        ));
    }

    #[test]
    fn a_refused_subscribe_fails_and_is_not_held() {
        let (tx, _pushes) = mpsc::unbounded_channel();
        let mut held = held(&["a"]);
        let (a_tx, mut a_rx) = oneshot::channel();
        let mut pending =
            VecDeque::from([Pending::Subscribe(Kind::Shard, "a".into(), Some(a_tx), 0)]);
        let error = b"-NOPERM no permissions to access the 'a' channel\r\n";
        handle(parsed(error), &mut held, &mut pending, &tx).unwrap();
        let answer = a_rx.try_recv().unwrap();
        assert!(answer.unwrap_err().to_string().starts_with("NOPERM"));
        assert!(held.is_empty(), "not subscribed again after a reconnect");
        // A reply nobody asked for means the two sides disagree: reconnect.
        assert!(handle(parsed(b"+OK\r\n"), &mut held, &mut pending, &tx).is_err());
    }

    #[test]
    fn resubscriptions_report_each_channel_again() {
        let (tx, mut pushes) = mpsc::unbounded_channel();
        let mut held = held(&["a"]);
        let mut pending = VecDeque::from([Pending::Subscribe(Kind::Shard, "a".into(), None, 0)]);
        let confirm = b">3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:1\r\n";
        handle(parsed(confirm), &mut held, &mut pending, &tx).unwrap();
        assert!(pending.is_empty());
        assert!(matches!(
            pushes.try_recv().unwrap(),
            Push::Subscribed { .. }
        ));
        // While disconnected: subscribing fails, letting go succeeds.
        let (s_tx, mut s_rx) = oneshot::channel();
        refuse(Request::Subscribe(Kind::Shard, "b".into(), s_tx), &mut held);
        assert!(s_rx.try_recv().unwrap().is_err());
        let (u_tx, mut u_rx) = oneshot::channel();
        refuse(
            Request::Unsubscribe(Kind::Shard, "a".into(), u_tx),
            &mut held,
        );
        assert_eq!(u_rx.try_recv().unwrap(), Ok(()));
        assert!(held.is_empty());
    }

    #[test]
    fn subscribes_of_one_kind_share_a_command_on_one_primary() {
        let mut out = BytesMut::new();
        let mut batch = Batch::new(true);
        let a = batch.add(&mut out, Kind::Shard, "a".into());
        let b = batch.add(&mut out, Kind::Shard, "b".into());
        let c = batch.add(&mut out, Kind::Plain, "c".into());
        batch.write(&mut out);
        assert_eq!((a, b, c), (0, 0, 1));
        assert_eq!(
            &out[..],
            b"*3\r\n$10\r\nSSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"
        );
        // On a cluster node: one channel per command.
        let (mut out, mut batch) = (BytesMut::new(), Batch::new(false));
        let a = batch.add(&mut out, Kind::Shard, "a".into());
        let b = batch.add(&mut out, Kind::Shard, "b".into());
        batch.write(&mut out);
        assert_eq!((a, b), (0, 1));
        assert_eq!(out.iter().filter(|&&c| c == b'*').count(), 2);
    }

    #[test]
    fn an_error_refuses_every_channel_of_its_command_and_no_other() {
        let (a_tx, mut a_rx) = oneshot::channel();
        let (b_tx, mut b_rx) = oneshot::channel();
        let (c_tx, mut c_rx) = oneshot::channel();
        let mut pending = VecDeque::from([
            Pending::Subscribe(Kind::Shard, "a".into(), Some(a_tx), 0),
            Pending::Subscribe(Kind::Shard, "b".into(), Some(b_tx), 0),
            Pending::Subscribe(Kind::Shard, "c".into(), Some(c_tx), 1),
        ]);
        let mut held = held(&["a", "b", "c"]);
        let (pushes, _rx) = mpsc::unbounded_channel();
        handle(parsed(b"-NOPERM no\r\n"), &mut held, &mut pending, &pushes).unwrap();
        assert!(matches!(a_rx.try_recv(), Ok(Err(RequestError::Refused(_)))));
        assert!(matches!(b_rx.try_recv(), Ok(Err(RequestError::Refused(_)))));
        assert!(c_rx.try_recv().is_err(), "c's command has not answered");
        assert_eq!(pending.len(), 1);
        assert_eq!(held, self::held(&["c"]));
    }

    #[test]
    fn a_gathered_subscribe_waits_while_another_is_unconfirmed() {
        let mut out = BytesMut::new();
        let mut batch = Batch::new(true);
        let mut pending = VecDeque::new();
        let a = batch.add(&mut out, Kind::Shard, "a".into());
        pending.push_back(Pending::Subscribe(Kind::Shard, "a".into(), None, a));
        assert!(
            batch.due(&pending),
            "nothing in flight: a lone subscribe goes"
        );
        batch.write(&mut out);
        let b = batch.add(&mut out, Kind::Shard, "b".into());
        pending.push_back(Pending::Subscribe(Kind::Shard, "b".into(), None, b));
        assert!(!batch.due(&pending), "a is unconfirmed: b gathers");
        pending.pop_front();
        assert!(batch.due(&pending), "a confirmed: b goes");
        // On a cluster node nothing waits.
        let mut batch = Batch::new(false);
        let c = batch.add(&mut out, Kind::Shard, "c".into());
        let pending = VecDeque::from([Pending::Subscribe(Kind::Shard, "x".into(), None, c)]);
        assert!(batch.due(&pending));
    }
}
