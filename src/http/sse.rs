//! `GET /v1/events`: authenticate, check the request, subscribe, then
//! stream `text/event-stream`.
//!
//! The subscription is opened before the response is returned, so when the
//! client sees the `200` headers every later publish will reach it.

use std::convert::Infallible;
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
    let frames = stream(&state, subscription, ticket, subscriber.exp, span);
    let frames = frames.boxed();
    let (body, direct) = DirectFrames::new(frames);
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

fn stream(
    state: &AppState,
    mut sub: Subscription,
    mut ticket: Ticket,
    exp: u64,
    span: tracing::Span,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + use<> {
    // Only what the stream needs is kept for its lifetime: an open stream's
    // size is the bridge's memory per connection.
    let retry_ms = state.config.retry.as_millis() as u64;
    let jitter_ms = state.config.drain_jitter.as_millis() as u64;
    let keepalive_every = state.config.keepalive;
    let open = state.meters.open.clone();
    let delivered = state.meters.delivered.clone();

    async_stream::stream! {
        let _open = m::GaugeGuard::new(&open);
        drop(open);
        yield Ok(Bytes::from(format!("retry: {retry_ms}\n\n")));
        let single = sub.channels().len() == 1;
        let expires = instant_of(exp);
        // One timer for both the token's expiry and the next keep-alive
        // comment, whichever is first: a stream is polled at least once per
        // event, and each timer polled costs. Kept inline in the stream (an
        // `Interval` would box one more allocation per stream).
        let next_comment = |now: Instant| (now + keepalive_every).min(expires);
        let timer = tokio::time::sleep_until(next_comment(Instant::now()));
        tokio::pin!(timer);
        let mut end = StreamEnd { span, why: "client_left", sent: 0 };
        end.why = loop {
            tokio::select! {
                biased;
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= expires {
                        yield Ok(control(None, ControlEvent::Expired, r#"{"reason":"token_expired"}"#));
                        break "token_expired";
                    }
                    timer.as_mut().reset(next_comment(now));
                    yield Ok(Bytes::from_static(b": keepalive\n\n"));
                }
                ended = ticket.ended() => match ended {
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
                        let retry = rand::random_range(0..=jitter_ms);
                        yield Ok(Bytes::from(format!("retry: {retry}\n\n")));
                        break "shutdown";
                    }
                },
                item = sub.next() => match item {
                    Some(Ok(Item::Event { frame: f, live, .. })) => {
                        delivered.increment(1);
                        if live {
                            f.written_live();
                        }
                        end.sent += 1;
                        if single {
                            yield Ok(f.with_own_id());
                        } else {
                            let cursor = sub.cursor();
                            let body = f.body();
                            let mut b = Vec::with_capacity(cursor.len() + 5 + body.len());
                            wire::put_id(&mut b, &cursor);
                            b.extend_from_slice(&body);
                            yield Ok(Bytes::from(b));
                        }
                    }
                    Some(Ok(Item::Reset { channels, reason })) => {
                        metrics::counter!(m::RESETS, "reason" => reason.to_string()).increment(1);
                        let names: Vec<&str> = channels.iter().map(|&i| sub.channels()[i].as_str()).collect();
                        let data = json!({"channels": names, "reason": reason.to_string()}).to_string();
                        yield Ok(control(Some(&sub.cursor()), ControlEvent::Reset, &data));
                    }
                    Some(Err(e)) => {
                        // The client reconnects with its cursor and resumes.
                        tracing::warn!(parent: &end.span, error = %e, "stream ended by a bus error");
                        metrics::counter!(m::BUS_ERRORS).increment(1);
                        break "bus_error";
                    }
                    None => break "subscription_ended",
                },
            }
        };
    }
}

/// Logs a stream's end however it ends, including by the client leaving
/// (the body is then dropped mid-loop).
struct StreamEnd {
    span: tracing::Span,
    why: &'static str,
    sent: u64,
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
