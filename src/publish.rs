//! Publishing: the checks every event passes before it reaches the bus, in
//! the order the contract fixes (rate, channel, tenant, size, idempotency
//! key, schema; see [`PublishService::prepare`]), then the bus append.
//! Transports map [`PublishError`] to their own status codes.

use std::sync::Arc;

use tracing::Instrument;

use crate::auth;
use crate::bus::{Bus, BusError, Outgoing, Published};
use crate::channel::ChannelError;
use crate::proto::server::PublishRequest;
use crate::rate::{Rate, RateLimiter};
use crate::schema::{Schema, SchemaError, Violation};

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("{message}")]
    Invalid {
        message: String,
        violations: Vec<Violation>,
    },
    #[error("this token may not publish to tenant {0}")]
    Tenant(uuid::Uuid),
    #[error("event is {size} bytes encoded; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}; retry with the same idempotency_key")]
    Unavailable(BusError),
    #[error(
        "publish rate limit reached ({per_sec} events/s per publisher `sub`); retry after {} ms",
        retry_after.as_millis().max(1)
    )]
    Throttled {
        per_sec: u32,
        retry_after: std::time::Duration,
    },
}

impl PublishError {
    fn invalid(field: &str, description: String) -> PublishError {
        PublishError::Invalid {
            message: format!("{field}: {description}"),
            violations: vec![Violation {
                field: field.to_owned(),
                description,
            }],
        }
    }
}

fn channel_field(e: &ChannelError) -> &'static str {
    match e {
        ChannelError::Segments(_) => "channel",
        ChannelError::Prefix => "channel.prefix",
        ChannelError::Tenant => "channel.tenant_id",
        ChannelError::Resource => "channel.resource_id",
    }
}

impl From<SchemaError> for PublishError {
    fn from(e: SchemaError) -> PublishError {
        match e {
            SchemaError::Rules(violations) => PublishError::Invalid {
                message: SchemaError::Rules(violations.clone()).to_string(),
                violations,
            },
            SchemaError::EmptyPayload | SchemaError::Newer(_) => {
                PublishError::invalid("event.payload", e.to_string())
            }
            other => PublishError::invalid("event", other.to_string()),
        }
    }
}

/// The publish path's metric handles, looked up once: each `counter!` call
/// otherwise finds its series in the recorder's registry again, per event.
/// Made with the service, which the server builds after installing the
/// recorder.
#[derive(Clone)]
struct Recorded {
    new: metrics::Counter,
    duplicate: metrics::Counter,
    seconds: metrics::Histogram,
    bus_errors: metrics::Counter,
}

impl Recorded {
    fn new() -> Recorded {
        use crate::metrics as m;
        Recorded {
            new: metrics::counter!(m::EVENTS_PUBLISHED, "kind" => "new"),
            duplicate: metrics::counter!(m::EVENTS_PUBLISHED, "kind" => "duplicate"),
            seconds: metrics::histogram!(m::PUBLISH_SECONDS),
            bus_errors: metrics::counter!(m::BUS_ERRORS),
        }
    }

    fn outcome(&self, outcome: &Result<Published, BusError>, started: std::time::Instant) {
        match outcome {
            Ok(p) => {
                let kind = if p.duplicate {
                    &self.duplicate
                } else {
                    &self.new
                };
                kind.increment(1);
                self.seconds.record(started.elapsed().as_secs_f64());
            }
            Err(_) => self.bus_errors.increment(1),
        }
    }
}

/// Validates and publishes events.
#[derive(Clone)]
pub struct PublishService {
    schema: &'static Schema,
    bus: Arc<dyn Bus>,
    max_payload_bytes: usize,
    limiter: Option<Arc<RateLimiter>>,
    recorded: Recorded,
    /// Whether the exported `publish` span carries the tenant id.
    pub(crate) trace_tenant: bool,
}

impl PublishService {
    pub fn new(schema: &'static Schema, bus: Arc<dyn Bus>, max_payload_bytes: usize) -> Self {
        PublishService {
            schema,
            bus,
            max_payload_bytes,
            limiter: None,
            recorded: Recorded::new(),
            trace_tenant: false,
        }
    }

    /// Limits each publisher (token `sub`; tokens without one share a
    /// bucket) to `rate`.
    pub fn with_rate_limit(mut self, rate: Rate) -> Self {
        self.limiter = Some(RateLimiter::new(rate));
        self
    }

    /// Checks a request in the contract's order — rate, channel, tenant,
    /// size, idempotency key, schema — and turns it into what the bus
    /// carries.
    pub fn prepare(
        &self,
        publisher: &auth::Publisher,
        request: PublishRequest,
    ) -> Result<Outgoing, PublishError> {
        if let Some(limiter) = &self.limiter {
            // First: a flood is refused before it costs any validation.
            limiter
                .take(&publisher.subject)
                .map_err(|t| PublishError::Throttled {
                    per_sec: limiter.rate().per_sec.get(),
                    retry_after: t.retry_after,
                })?;
        }
        let channel = request
            .channel
            .as_ref()
            .ok_or_else(|| PublishError::invalid("channel", "is required".to_owned()))?;
        let channel = channel
            .parse()
            .map_err(|e| PublishError::invalid(channel_field(&e), e.to_string()))?;
        if !publisher.tenants.allows(channel.tenant()) {
            return Err(PublishError::Tenant(channel.tenant()));
        }
        let event = request
            .event
            .ok_or_else(|| PublishError::invalid("event", "is required".to_owned()))?;
        let size = event.len();
        if size > self.max_payload_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: self.max_payload_bytes,
            });
        }
        if request.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(PublishError::invalid(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        let prepared = self.schema.prepare_for_prefix(&event, channel.prefix())?;
        let key = Some(request.idempotency_key).filter(|k| !k.is_empty());
        Ok(Outgoing {
            channel,
            event: prepared.name,
            data: prepared.json.into(),
            idempotency_key: key,
        })
    }

    pub async fn publish(
        &self,
        publisher: &auth::Publisher,
        request: PublishRequest,
    ) -> Result<Published, PublishError> {
        let outgoing = self.prepare(publisher, request)?;
        // The caller's `publish` span, when it is exported.
        let call = tracing::Span::current();
        if !call.is_disabled() {
            call.record("channel.prefix", outgoing.channel.prefix());
            call.record("event.name", &*outgoing.event);
            if self.trace_tenant {
                call.record(
                    "sse_bridge.tenant",
                    tracing::field::display(outgoing.channel.tenant()),
                );
            }
        }
        let channel = outgoing.channel.clone();
        let span = bus_span(1);
        let started = std::time::Instant::now();
        let published = self.bus.publish(outgoing).instrument(span).await;
        self.recorded.outcome(&published, started);
        match &published {
            Ok(p) => {
                if !call.is_disabled() {
                    call.record("event.id", tracing::field::display(p.id));
                }
                tracing::debug!(%channel, id = %p.id, duplicate = p.duplicate, "published")
            }
            Err(e) => tracing::warn!(%channel, error = %e, "publish failed"),
        }
        published.map_err(PublishError::Unavailable)
    }

    /// Publishes several requests in order, the valid ones in one bus batch;
    /// one outcome per request, in request order.
    pub async fn publish_many(
        &self,
        publisher: &auth::Publisher,
        requests: Vec<PublishRequest>,
    ) -> Vec<Result<Published, PublishError>> {
        let mut outcomes: Vec<Option<Result<Published, PublishError>>> =
            Vec::with_capacity(requests.len());
        let mut batch = Vec::new();
        for request in requests {
            match self.prepare(publisher, request) {
                Ok(outgoing) => {
                    batch.push(outgoing);
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        let span = bus_span(batch.len());
        let started = std::time::Instant::now();
        let outcomes_of_batch = self.bus.publish_batch(batch).instrument(span).await;
        for p in &outcomes_of_batch {
            self.recorded.outcome(p, started);
        }
        let mut published = outcomes_of_batch.into_iter();
        outcomes
            .into_iter()
            .map(|o| match o {
                Some(rejected) => rejected,
                None => published
                    .next()
                    .unwrap_or_else(|| {
                        Err(BusError::Unavailable("missing publish outcome".to_owned()))
                    })
                    .map_err(PublishError::Unavailable),
            })
            .collect()
    }
}

/// The exported span of one bus append (a batch of `events`).
fn bus_span(events: usize) -> tracing::Span {
    tracing::info_span!(target: crate::telemetry::TARGET, "bus.publish", events)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::num::NonZeroU32;

    use bytes::Bytes;
    use prost::Message;

    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::{Entry, Orders, Retention, Sink};
    use crate::channel::Channel;
    use crate::proto::events::v1::{Event, MessageDelta, ScanProgress, event::Payload};
    use crate::proto::server;
    use crate::revocation::Revocation;

    const TENANT: &str = "0b5e5f9c-7d64-4f1e-9a43-3c2d9a4f7e10";
    const OTHER: &str = "5d7b3f41-2c1a-4c8e-b0f6-8e2d1a9c4b33";

    struct Quiet;
    impl Sink for Quiet {
        fn deliver(&self, _: &Channel, _: Entry) {}
        fn resync(&self, _: &Channel) {}
    }
    impl Orders for Quiet {
        fn apply(&self, _: &Revocation) {}
    }

    fn service(max_payload_bytes: usize) -> PublishService {
        let bus = MemoryBus::new(
            Retention::default(),
            usize::MAX,
            Arc::new(Quiet),
            Arc::new(Quiet),
        );
        PublishService::new(Schema::embedded(), Arc::new(bus), max_payload_bytes)
    }

    fn publisher(tenant: &str) -> auth::Publisher {
        let tenant = tenant.parse().expect("a uuid");
        auth::Publisher {
            subject: Some("svc".to_owned()),
            tenants: auth::Tenants::Only(HashSet::from([tenant])),
            exp: u64::MAX,
        }
    }

    fn delta(content: &str) -> Event {
        Event {
            payload: Some(Payload::MessageDelta(MessageDelta {
                content: content.to_owned(),
            })),
        }
    }

    fn request(prefix: &str, tenant: &str, event: Option<Event>, key: &str) -> PublishRequest {
        PublishRequest {
            channel: Some(server::Channel {
                prefix: Bytes::copy_from_slice(prefix.as_bytes()),
                tenant_id: Bytes::copy_from_slice(tenant.as_bytes()),
                resource_id: Bytes::from_static(b"r1"),
            }),
            event: event.map(|e| Bytes::from(e.encode_to_vec())),
            idempotency_key: key.to_owned(),
        }
    }

    /// The field the first violation names, or the error's kind.
    fn refused(e: PublishError) -> String {
        match e {
            PublishError::Invalid { violations, .. } => violations[0].field.clone(),
            PublishError::Tenant(_) => "tenant".to_owned(),
            PublishError::TooLarge { .. } => "too large".to_owned(),
            PublishError::Throttled { .. } => "throttled".to_owned(),
            PublishError::Unavailable(_) => "unavailable".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_valid_request_becomes_what_the_bus_carries() {
        let outgoing = service(1024)
            .prepare(
                &publisher(TENANT),
                request("conversations", TENANT, Some(delta("hi")), "k1"),
            )
            .map_err(refused);
        let outgoing = outgoing.expect("accepted");
        assert_eq!(
            outgoing.channel.to_string(),
            format!("conversations:{TENANT}:r1")
        );
        assert_eq!(&*outgoing.event, "message.delta");
        assert_eq!(&outgoing.data[..], br#"{"content":"hi"}"#);
        assert_eq!(outgoing.idempotency_key.as_deref(), Some("k1"));
        let no_key = service(1024).prepare(
            &publisher(TENANT),
            request("conversations", TENANT, Some(delta("hi")), ""),
        );
        assert!(
            no_key.is_ok_and(|o| o.idempotency_key.is_none()),
            "empty is none"
        );
    }

    #[tokio::test]
    async fn each_missing_part_is_named() {
        let svc = service(1024);
        let p = publisher(TENANT);
        let mut no_channel = request("conversations", TENANT, Some(delta("x")), "");
        no_channel.channel = None;
        assert_eq!(refused(svc.prepare(&p, no_channel).unwrap_err()), "channel");
        let no_event = request("conversations", TENANT, None, "");
        assert_eq!(refused(svc.prepare(&p, no_event).unwrap_err()), "event");
        let no_payload = request("conversations", TENANT, Some(Event { payload: None }), "");
        assert_eq!(
            refused(svc.prepare(&p, no_payload).unwrap_err()),
            "event.payload"
        );
    }

    /// Each pair fails two checks; the earlier check in the contract's
    /// order (rate, channel, tenant, size, idempotency key, schema) wins.
    #[tokio::test]
    async fn checks_run_in_the_contract_order() {
        let svc = service(64);
        let p = publisher(TENANT);
        let long_key = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        let huge = delta(&"x".repeat(100));
        let bad_rules = Event {
            payload: Some(Payload::ScanProgress(ScanProgress {
                scan_id: "not a uuid".to_owned(),
                checked: 0,
                total: 0,
            })),
        };
        let cases = [
            (
                request("BAD!", OTHER, Some(huge.clone()), ""),
                "channel.prefix",
            ),
            (
                request("conversations", OTHER, Some(huge.clone()), ""),
                "tenant",
            ),
            (
                request("conversations", TENANT, Some(huge), &long_key),
                "too large",
            ),
            (
                request("scans", TENANT, Some(bad_rules.clone()), &long_key),
                "idempotency_key",
            ),
            (
                request("scans", TENANT, Some(bad_rules), ""),
                "event.scan_progress.scan_id",
            ),
        ];
        for (req, want) in cases {
            assert_eq!(refused(svc.prepare(&p, req).unwrap_err()), want);
        }
        // A key of exactly the limit is accepted.
        let at_limit = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert!(
            svc.prepare(
                &p,
                request("conversations", TENANT, Some(delta("x")), &at_limit)
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn the_rate_is_checked_first_and_per_publisher() {
        let rate = crate::rate::Rate {
            per_sec: NonZeroU32::MIN,
            burst: NonZeroU32::MIN,
        };
        let svc = service(1024).with_rate_limit(rate);
        let p = publisher(TENANT);
        let bad_channel = || request("BAD!", TENANT, Some(delta("x")), "");
        assert_eq!(
            refused(svc.prepare(&p, bad_channel()).unwrap_err()),
            "channel.prefix",
            "the first takes the burst, then fails its own check"
        );
        assert_eq!(
            refused(svc.prepare(&p, bad_channel()).unwrap_err()),
            "throttled"
        );
        let other = auth::Publisher {
            subject: Some("other".to_owned()),
            ..publisher(TENANT)
        };
        assert!(
            svc.prepare(
                &other,
                request("conversations", TENANT, Some(delta("x")), "")
            )
            .is_ok()
        );
    }

    /// A producer with a newer catalogue: an event type, or a field, this
    /// bridge does not know is refused with what to do, never dropped.
    #[tokio::test]
    async fn what_a_newer_catalogue_sends_is_refused_saying_deploy_the_bridge_first() {
        use prost::encoding::{WireType, encode_key, encode_varint};
        let svc = service(1024);
        let p = publisher(TENANT);
        let length_delimited = |out: &mut Vec<u8>, number: u32, body: &[u8]| {
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(body.len() as u64, out);
            out.extend_from_slice(body);
        };
        let delta = MessageDelta {
            content: "x".to_owned(),
        }
        .encode_to_vec();
        let mut new_type = Vec::new();
        length_delimited(&mut new_type, 999, &delta);
        let mut new_field = delta.clone();
        length_delimited(&mut new_field, 7, b"added later");
        let mut extended = Vec::new();
        length_delimited(&mut extended, 4, &new_field);
        for (bytes, says) in [
            (new_type, "unknown event type (field 999 of Event.payload)"),
            (extended, "field 7 of `message.delta` is unknown"),
        ] {
            let mut req = request("conversations", TENANT, None, "");
            req.event = Some(Bytes::from(bytes));
            match svc.prepare(&p, req) {
                Err(PublishError::Invalid {
                    message,
                    violations,
                }) => {
                    assert_eq!(violations[0].field, "event.payload");
                    assert!(message.contains(says), "{message}");
                    assert!(message.contains("deploy the bridge first"), "{message}");
                }
                other => panic!("{:?}", other.map(|o| o.event)),
            }
        }
    }

    #[tokio::test]
    async fn publish_many_keeps_request_order_around_refusals() {
        let svc = service(1024);
        let p = publisher(TENANT);
        let outcomes = svc
            .publish_many(
                &p,
                vec![
                    request("conversations", TENANT, Some(delta("a")), ""),
                    request("conversations", OTHER, Some(delta("b")), ""),
                    request("conversations", TENANT, Some(delta("c")), "k"),
                    request("conversations", TENANT, Some(delta("d")), "k"),
                ],
            )
            .await;
        let shape: Vec<Result<bool, String>> = outcomes
            .into_iter()
            .map(|o| o.map(|p| p.duplicate).map_err(refused))
            .collect();
        assert_eq!(
            shape,
            [Ok(false), Err("tenant".to_owned()), Ok(false), Ok(true)]
        );
    }

    /// An event goes only to the prefixes it declares: elsewhere it is a
    /// violation on `channel.prefix` naming them, reported with the
    /// payload's own violations.
    #[test]
    fn an_event_goes_only_to_its_declared_prefixes() {
        let svc = service(1024);
        let p = publisher(TENANT);
        let Err(PublishError::Invalid { violations, .. }) =
            svc.prepare(&p, request("scans", TENANT, Some(delta("x")), ""))
        else {
            panic!("message.delta on scans must be refused");
        };
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "channel.prefix");
        assert!(
            violations[0].description.contains("`conversations`"),
            "{violations:?}"
        );
        let wrong_both = Event {
            payload: Some(Payload::ScanProgress(ScanProgress {
                scan_id: "nope".to_owned(),
                checked: 0,
                total: 0,
            })),
        };
        let Err(PublishError::Invalid { violations, .. }) =
            svc.prepare(&p, request("conversations", TENANT, Some(wrong_both), ""))
        else {
            panic!("refused");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["channel.prefix", "event.scan_progress.scan_id"]);
        assert!(
            svc.prepare(&p, request("conversations", TENANT, Some(delta("x")), ""))
                .is_ok()
        );
    }
}
