//! `GET /v1/events`: authenticate, check the request, subscribe, then
//! stream `text/event-stream`.
//!
//! The subscription is opened before the response is returned, so when the
//! client sees the `200` headers every later publish will reach it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use super::direct::DirectFrames;
use super::error::ApiError;
use super::state::AppState;
use crate::auth::{self, AuthError, Subscriber};
use crate::channel::{Channel, ChannelSet};
use crate::hub::{Item, Subscription};
use crate::metrics as m;
use crate::streams::{End, OpenError, Ticket};
use crate::wire::{self, ControlEvent};
use futures::StreamExt;

/// The parameters of a stream request.
#[derive(Default)]
struct Params {
    channels: Vec<String>,
    access_token: Option<String>,
    last_event_id: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Params {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "channel" => p.channels.push(v.into_owned()),
                "access_token" => p.access_token = Some(v.into_owned()),
                "last_event_id" => p.last_event_id = Some(v.into_owned()),
                _ => {}
            }
        }
        p
    }
}

/// Header first whenever present, even if invalid (RFC 6750 §2.3 allows one
/// method per request, and a present header is the caller's choice). Two
/// headers are refused: which one "wins" would be a guess, and a proxy and
/// the bridge might guess differently.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Subscriber, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::DuplicateAuthorization);
    }
    let token = match first {
        Some(value) if !value.is_empty() => {
            let value = value.to_str().map_err(|_| AuthError::Scheme)?;
            auth::bearer(value)?
        }
        _ => params.access_token.as_deref().ok_or(AuthError::Missing)?,
    };
    Ok(state.auth.verify(token).await?)
}

fn shown(input: &str) -> String {
    if input.chars().count() > 200 {
        format!("{}…", input.chars().take(200).collect::<String>())
    } else {
        input.to_owned()
    }
}

pub(super) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    // The steps that wait are boxed, so an open waiting for one of them
    // holds room for that step only: thousands may wait at once when a
    // node's clients all come back (change 47).
    let subscriber = Box::pin(authenticate(&state, &headers, &params))
        .await
        .inspect_err(|e| {
            let reason = match e {
                ApiError::Unauthenticated(e) => e.reason(),
                _ => "duplicate_header",
            };
            tracing::info!(reason, "subscriber refused");
            metrics::counter!(m::AUTH_FAILURES, "side" => "subscriber", "reason" => reason)
                .increment(1);
        })?;

    if params.channels.is_empty() {
        return Err(ApiError::NoChannel);
    }
    if params.channels.len() > state.config.max_channels {
        return Err(ApiError::TooManyChannels {
            max: state.config.max_channels,
            got: params.channels.len(),
        });
    }
    let mut channels = Vec::with_capacity(params.channels.len());
    for (index, raw) in params.channels.iter().enumerate() {
        let channel = Channel::parse(raw).map_err(|error| ApiError::BadChannel {
            index,
            shown: shown(raw),
            error,
        })?;
        let declared = crate::schema::Schema::embedded().catalogue().prefixes();
        if !declared.contains(channel.prefix()) {
            return Err(unknown_prefix(index, raw, channel.prefix(), declared));
        }
        channels.push(channel);
    }
    let channels = ChannelSet::new(channels);
    let cursor = match headers.get("last-event-id") {
        Some(v) if !v.is_empty() => Some(
            v.to_str()
                .map_err(|_| ApiError::BadCursor(crate::cursor::CursorError::Malformed))?,
        ),
        _ => params.last_event_id.as_deref(),
    };
    let resume = cursor
        .map(|c| crate::cursor::decode(c, &channels))
        .transpose()?;
    if let Some(other) = channels.iter().find(|c| c.tenant() != subscriber.tenant) {
        return Err(ApiError::Forbidden(other.to_string()));
    }

    let ticket = state
        .streams
        .open(&subscriber, &channels)
        .inspect_err(|e| {
            let reason = match e {
                OpenError::Tenant { .. } => "tenant_limit",
                OpenError::Subject { .. } => "subject_limit",
                OpenError::Revoked { .. } => "revoked",
            };
            metrics::counter!(m::STREAMS_REFUSED, "reason" => reason).increment(1);
        })?;
    let subscription = Box::pin(Subscription::open(&state.hub, channels, resume)).await?;
    // Debug level: at the default `info` an idle stream costs no span.
    let span = tracing::debug_span!(
        "stream",
        tenant = %subscriber.tenant,
        sub = subscriber.subject.as_deref().unwrap_or(""),
        channels = subscription.channels().len(),
    );
    tracing::debug!(parent: &span, resumed = cursor.is_some(), "stream opened");
    let dormant = opened(&state, subscription, ticket, subscriber.exp, span);
    let (body, direct) = DirectFrames::new(dormant);
    let mut response = (StatusCode::OK, body).into_response();
    response.extensions_mut().insert(direct);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Longest a token's remaining life is taken to be: an `exp` centuries
/// away (or at `u64::MAX`) would overflow `Instant`.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant a token with `exp = unix_secs` expires, for a stream timer.
pub(crate) fn instant_of(unix_secs: u64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(unix_secs)
        .saturating_sub(now)
        .min(FOREVER);
    let start = Instant::now();
    start.checked_add(left).unwrap_or(start + FOREVER / 100)
}

/// A subscription to a prefix no event declares would be a stream that
/// never receives anything: refused, naming the declared prefixes.
fn unknown_prefix(
    index: usize,
    raw: &str,
    prefix: &str,
    declared: &std::collections::BTreeSet<String>,
) -> ApiError {
    let known: Vec<String> = declared.iter().cloned().collect();
    let hint = declared
        .iter()
        .map(|d| (strsim::jaro_winkler(prefix, d), d))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, d)| format!(" (did you mean `{d}`?)"))
        .unwrap_or_default();
    ApiError::UnknownPrefix {
        index,
        shown: shown(raw),
        prefix: prefix.to_owned(),
        known: crate::schema::quoted_list(&known, "and"),
        hint,
    }
}

fn control(id: Option<&str>, event: ControlEvent, data: &str) -> Bytes {
    Bytes::from(wire::frame(id, event.name(), data.as_bytes()))
}

/// How long a stream on the direct path has nothing to write before it
/// sleeps in its channel's slot (see `crate::hub::Sleeper`): long enough
/// that a busy stream keeps its task between events, short enough that
/// the thousands of idle ones hold none.
const SLEEP_AFTER: Duration = Duration::from_secs(1);

/// The first whole [`SLEEP_AFTER`] after `at`, counted from one instant
/// for the whole process: streams awake look at whether they are quiet on
/// the same beats, so a thousand of them wake a worker once a second, not
/// a thousand times (scattered timers cost thread wake-ups: the many-
/// channels bench lost a third of its rate to them).
fn on_the_beat(at: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let beat = SLEEP_AFTER.as_millis() as u64;
    let since = at.saturating_duration_since(epoch).as_millis() as u64;
    epoch + Duration::from_millis(since.div_ceil(beat) * beat)
}

/// A keep-alive comment.
pub(crate) const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// What every stream of the node shares: its settings, and its metric
/// handles looked up once (each lookup makes a handle of its own, which
/// every open stream would hold).
pub(crate) struct StreamSettings {
    retry_ms: u64,
    jitter_ms: u64,
    keepalive: Duration,
    open: metrics::Gauge,
    delivered: metrics::Counter,
}

impl StreamSettings {
    pub(super) fn new(config: &super::state::HttpConfig) -> Self {
        StreamSettings {
            retry_ms: config.retry.as_millis() as u64,
            jitter_ms: config.drain_jitter.as_millis() as u64,
            keepalive: config.keepalive,
            open: metrics::gauge!(m::STREAMS_OPEN),
            delivered: metrics::counter!(m::EVENTS_DELIVERED),
        }
    }
}

/// A stream between frames: everything it holds, and all a stream asleep
/// keeps besides its socket.
pub(crate) struct Dormant {
    sub: Subscription,
    ticket: Ticket,
    expires: Instant,
    keepalive_at: Instant,
    end: StreamEnd,
    /// Also counts the stream in `sse_bridge_streams_open`, awake or asleep.
    settings: Counted,
}

/// The node's stream settings, held by one open stream: counted in
/// `sse_bridge_streams_open` while held. One pointer where a guard beside
/// the settings took three (16 bytes less per stream).
struct Counted(Arc<StreamSettings>);

impl Counted {
    fn new(settings: Arc<StreamSettings>) -> Counted {
        settings.open.increment(1.0);
        Counted(settings)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.decrement(1.0);
    }
}

impl std::ops::Deref for Counted {
    type Target = StreamSettings;

    fn deref(&self) -> &StreamSettings {
        &self.0
    }
}

impl Dormant {
    pub(crate) fn channel(&self) -> &Channel {
        &self.sub.channels()[0]
    }

    /// See [`Subscription::let_go`].
    pub(crate) fn let_go(&mut self) -> bool {
        self.sub.let_go()
    }

    /// Whether the stream has something of its own to say: its token
    /// expired, or the node ended it.
    pub(crate) fn has_word(&self, now: Instant) -> bool {
        now >= self.expires || self.ticket.has_ended()
    }

    /// Whether a keep-alive is due; when it is, the next is counted from
    /// now (the caller writes this one).
    pub(crate) fn keepalive_due(&mut self, now: Instant) -> bool {
        let due = now >= self.keepalive_at;
        if due {
            self.keepalive_at = now + self.settings.keepalive;
        }
        due
    }

    pub(crate) fn hub(&self) -> &crate::hub::Hub {
        self.sub.hub()
    }

    /// Whether it can sleep at once: one channel, listened to live, with
    /// nothing to replay.
    pub(crate) fn is_quiet(&self) -> bool {
        self.sub.is_quiet()
    }

    /// The frame a stream opens with: the client's reconnect delay.
    pub(crate) fn opening(&self) -> Bytes {
        Bytes::from(format!("retry: {}\n\n", self.settings.retry_ms))
    }

    /// The stream's frames from its opening on; with `park`, they may end
    /// to sleep.
    pub(crate) fn start(self, park: Option<Arc<ParkSlot>>) -> super::direct::Frames {
        frames(self, true, park).boxed()
    }

    /// Listens again, from `rx`, after sleeping.
    pub(crate) fn listen_again(
        &mut self,
        rx: tokio::sync::broadcast::Receiver<crate::hub::Delivery>,
    ) {
        self.sub.listen_again(rx);
    }

    /// The stream's frames again, from where it slept, listening from `rx`
    /// (or still from its own receiver).
    pub(crate) fn wake(
        mut self,
        rx: Option<tokio::sync::broadcast::Receiver<crate::hub::Delivery>>,
        park: Arc<ParkSlot>,
    ) -> super::direct::Frames {
        if let Some(rx) = rx {
            self.listen_again(rx);
        }
        frames(self, false, Some(park)).boxed()
    }
}

/// A stream not yet written, or between its frames: where its frames
/// leave it when they end to sleep rather than for good. Only a stream on
/// the direct path sleeps; hyper's connection task holds its frames.
pub(crate) struct ParkSlot {
    dormant: Mutex<Option<Box<Dormant>>>,
}

impl ParkSlot {
    pub(crate) fn holding(dormant: Dormant) -> ParkSlot {
        ParkSlot {
            dormant: Mutex::new(Some(Box::new(dormant))),
        }
    }

    /// The stream, before its first frame or when its frames ended to
    /// sleep.
    pub(crate) fn take(&self) -> Option<Box<Dormant>> {
        self.dormant
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn put(&self, dormant: Dormant) {
        *self.dormant.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(dormant));
    }
}

/// A stream just opened, before its first frame.
fn opened(
    state: &AppState,
    sub: Subscription,
    ticket: Ticket,
    exp: u64,
    span: tracing::Span,
) -> Dormant {
    let settings = state.stream_settings.clone();
    Dormant {
        sub,
        ticket,
        expires: instant_of(exp),
        keepalive_at: Instant::now() + settings.keepalive,
        end: StreamEnd {
            span,
            why: "client_left",
            sent: 0,
        },
        settings: Counted::new(settings),
    }
}

/// A stream's frames: from its opening `retry:` when `fresh`, else from
/// where it slept.
fn frames(
    mut d: Dormant,
    fresh: bool,
    park: Option<Arc<ParkSlot>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + use<> {
    // Only what the stream needs is kept for its lifetime: an open stream's
    // size is the bridge's memory per connection. `d` is used in place, not
    // taken apart: a generator keeps its captures for good, and locals
    // moved out of them would take their room a second time.
    async_stream::stream! {
        if fresh {
            yield Ok(d.opening());
        }
        let single = d.sub.channels().len() == 1;
        let may_sleep = single && park.is_some();
        // Events sent when the timer last fired: none since means quiet.
        let mut seen = d.end.sent;
        // One timer for the token's expiry, the next keep-alive comment and
        // the next look at whether the stream is quiet, whichever is first:
        // a stream is polled at least once per event, and each timer polled
        // costs. Kept inline in the stream (an `Interval` would box one
        // more allocation per stream).
        let expires = d.expires;
        let next = |keepalive_at: Instant, look: Instant| {
            let at = keepalive_at.min(expires);
            if may_sleep { at.min(look) } else { at }
        };
        // A stream just opened looks at once: most streams are quiet from
        // their first frames on, and the room their task held is then free
        // for the opens after them. A stream woken by an event stays awake
        // a while, since more usually follow.
        let now = Instant::now();
        let first_look = if fresh { now } else { on_the_beat(now + SLEEP_AFTER) };
        let timer = tokio::time::sleep_until(next(d.keepalive_at, first_look));
        tokio::pin!(timer);
        let why = loop {
            tokio::select! {
                biased;
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= expires {
                        yield Ok(control(None, ControlEvent::Expired, r#"{"reason":"token_expired"}"#));
                        break "token_expired";
                    }
                    if d.keepalive_due(now) {
                        yield Ok(Bytes::from_static(KEEPALIVE));
                    }
                    if may_sleep && seen == d.end.sent && d.sub.is_quiet() {
                        if let Some(slot) = &park {
                            slot.put(d);
                            return;
                        }
                    }
                    seen = d.end.sent;
                    timer.as_mut().reset(next(d.keepalive_at, on_the_beat(now + SLEEP_AFTER)));
                }
                ended = d.ticket.ended() => match ended {
                    End::Revoked(reason) => {
                        // No `id:`: the stream is over for this token; the
                        // client's last cursor still resumes with a new one.
                        let data = json!({"reason": reason}).to_string();
                        yield Ok(control(None, ControlEvent::Revoked, &data));
                        break "revoked";
                    }
                    End::Shutdown => {
                        // Reconnect to another node with the cursor, each
                        // client after its own delay: thousands of them must
                        // not land on the other nodes in the same second.
                        let retry = rand::random_range(0..=d.settings.jitter_ms);
                        yield Ok(Bytes::from(format!("retry: {retry}\n\n")));
                        break "shutdown";
                    }
                },
                item = d.sub.next() => match item {
                    Some(Ok(Item::Event { frame: f, live, .. })) => {
                        d.settings.delivered.increment(1);
                        if live {
                            f.written_live();
                        }
                        d.end.sent += 1;
                        if single {
                            yield Ok(f.with_own_id());
                        } else {
                            let cursor = d.sub.cursor();
                            let body = f.body();
                            let mut b = Vec::with_capacity(cursor.len() + 5 + body.len());
                            wire::put_id(&mut b, &cursor);
                            b.extend_from_slice(&body);
                            yield Ok(Bytes::from(b));
                        }
                    }
                    Some(Ok(Item::Reset { channels, reason })) => {
                        metrics::counter!(m::RESETS, "reason" => reason.to_string()).increment(1);
                        let names: Vec<&str> = channels.iter().map(|&i| d.sub.channels()[i].as_str()).collect();
                        let data = json!({"channels": names, "reason": reason.to_string()}).to_string();
                        yield Ok(control(Some(&d.sub.cursor()), ControlEvent::Reset, &data));
                    }
                    Some(Err(e)) => {
                        // The client reconnects with its cursor and resumes.
                        tracing::warn!(parent: &d.end.span, error = %e, "stream ended by a bus error");
                        metrics::counter!(m::BUS_ERRORS).increment(1);
                        break "bus_error";
                    }
                    None => break "subscription_ended",
                },
            }
        };
        d.end.ended(why);
    }
}

/// Logs a stream's end however it ends, including by the client leaving
/// (the body is then dropped mid-loop).
struct StreamEnd {
    span: tracing::Span,
    why: &'static str,
    sent: u64,
}

impl StreamEnd {
    // A method rather than an assignment: the lint for unused assignments
    // does not see the read in `Drop`.
    fn ended(&mut self, why: &'static str) {
        self.why = why;
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        tracing::debug!(parent: &self.span, why = self.why, events = self.sent, "stream closed");
    }
}

#[cfg(test)]
mod tests {
    use super::instant_of;
    use proptest::prelude::*;

    proptest! {
        /// Any `exp` a signed token may carry gives an instant, never a panic.
        #[test]
        fn any_exp_gives_an_instant(exp in any::<u64>()) {
            let at = instant_of(exp);
            prop_assert!(at >= tokio::time::Instant::now() - std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn the_largest_exps_give_an_instant() {
        for exp in [u64::MAX, u64::MAX - 1, i64::MAX as u64, 0] {
            let _ = instant_of(exp);
        }
    }
}
