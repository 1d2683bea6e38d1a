//! The gRPC transport: `ssebridge.v1.Publisher`, plus the standard health
//! and reflection services so stock gRPC tools work.

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::{FutureExt, Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::auth::{self, AuthError, PublisherAuth, Scope, Tenants};
use crate::bus::Bus;
use crate::channel::{Channel, parse_tenant};
use crate::metrics as m;
use crate::proto::server::publisher_server::{Publisher, PublisherServer};
use crate::proto::ssebridge::v1 as pb;
use crate::publish::{PublishError, PublishService};
use crate::revocation::{Reason, Revocation, Target, check_subject};
use crate::telemetry;

/// Most stream items published in one bus batch.
const MAX_BATCH: usize = 64;
/// Most batches of one `PublishStream` on their way to the bus at once.
const MAX_IN_FLIGHT: usize = 4;

/// Serves `Publisher` over a [`PublishService`].
#[derive(Clone)]
pub struct PublisherApi {
    service: PublishService,
    auth: PublisherAuth,
    /// Carries `Disconnect` orders to every node.
    bus: Arc<dyn Bus>,
}

impl PublisherApi {
    pub fn new(service: PublishService, auth: PublisherAuth, bus: Arc<dyn Bus>) -> Self {
        PublisherApi { service, auth, bus }
    }

    pub fn into_server(self, max_message_bytes: usize) -> PublisherServer<PublisherApi> {
        PublisherServer::new(self).max_decoding_message_size(max_message_bytes)
    }

    /// Verifies a request's bearer token (taken out with [`bearer_token`],
    /// so no borrow of the request lives across the await) and requires
    /// `scope`.
    async fn authenticate(
        &self,
        token: Result<String, AuthError>,
        scope: Scope,
    ) -> Result<auth::Publisher, Status> {
        let token = token.map_err(auth_status)?;
        self.auth.verify(&token, scope).await.map_err(auth_status)
    }
}

/// The one `authorization` entry's bearer token. Several entries are
/// refused rather than the first taken: a proxy in front may read another.
fn bearer_token<T>(request: &Request<T>) -> Result<String, AuthError> {
    let mut entries = request.metadata().get_all("authorization").iter();
    let header = entries.next().ok_or(AuthError::Missing)?;
    if entries.next().is_some() {
        return Err(AuthError::DuplicateHeader);
    }
    let header = header.to_str().map_err(|_| AuthError::Scheme)?;
    auth::bearer(header).map(str::to_owned)
}

/// The status of a request the transport refused before our code saw it,
/// with the code the contract gives: a message over the size limit is
/// `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`), and bytes that are not
/// the request message are `INVALID_ARGUMENT` (tonic says `INTERNAL`).
/// Other statuses pass unchanged.
pub fn contract_status(status: Status) -> Status {
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.contains("decoded message length too large") => {
            Status::resource_exhausted(format!(
                "{message}: send smaller requests (events over --max-payload-bytes are refused anyway)"
            ))
        }
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            Status::invalid_argument(format!(
                "the request is not a valid protobuf message of this method's type: {message}"
            ))
        }
        _ => status,
    }
}

/// [`contract_status`] for a whole response: unary calls refused while
/// their request was decoded answer with the status in the headers.
pub fn transport_status(
    mut response: ::http::Response<tonic::body::Body>,
) -> ::http::Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let code = status.code();
    let mapped = contract_status(status);
    if mapped.code() != code {
        let _ = mapped.add_header(response.headers_mut());
    }
    response
}

fn auth_status(e: AuthError) -> Status {
    metrics::counter!(m::AUTH_FAILURES, "side" => "publisher", "reason" => e.reason()).increment(1);
    match e {
        AuthError::Scope(_) | AuthError::Tenants => Status::permission_denied(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

fn code_of(e: &PublishError) -> Code {
    match e {
        PublishError::Invalid { .. } => Code::InvalidArgument,
        PublishError::Tenant(_) => Code::PermissionDenied,
        PublishError::TooLarge { .. } => Code::ResourceExhausted,
        PublishError::Unavailable(_) => Code::Unavailable,
        PublishError::Throttled { .. } => Code::ResourceExhausted,
    }
}

fn rejected(e: &PublishError) {
    if let PublishError::Throttled { .. } = e {
        metrics::counter!(m::PUBLISH_THROTTLED).increment(1);
    }
    metrics::counter!(m::PUBLISH_REJECTED, "code" => format!("{:?}", code_of(e))).increment(1);
}

fn status_of(e: &PublishError) -> Status {
    rejected(e);
    match e {
        PublishError::Invalid { violations, .. } => {
            let mut details = ErrorDetails::new();
            for v in violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            Status::with_error_details(Code::InvalidArgument, e.to_string(), details)
        }
        PublishError::Throttled { retry_after, .. } => {
            let mut details = ErrorDetails::new();
            details.set_retry_info(Some(*retry_after));
            Status::with_error_details(Code::ResourceExhausted, e.to_string(), details)
        }
        other => Status::new(code_of(other), other.to_string()),
    }
}

fn error_item(e: &PublishError) -> pb::PublishResponse {
    rejected(e);
    let violations = match e {
        PublishError::Invalid { violations, .. } => violations
            .iter()
            .map(|v| pb::FieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    pb::PublishResponse {
        id: String::new(),
        duplicate: false,
        error: Some(pb::PublishError {
            code: code_of(e) as i32,
            message: e.to_string(),
            violations,
        }),
    }
}

fn invalid(field: &str, description: impl ToString) -> Status {
    let description = description.to_string();
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

fn tenant_field(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    parse_tenant(value).map_err(|e| invalid(field, e))
}

/// Reads a `Disconnect` request into an order stamped now.
fn revocation(request: pb::DisconnectRequest) -> Result<Revocation, Status> {
    use pb::disconnect_request::Target as T;
    let target = match request.target {
        None => {
            return Err(invalid(
                "target",
                "set one of tenant_id, subject or channel",
            ));
        }
        Some(T::TenantId(t)) => Target::Tenant(tenant_field("tenant_id", &t)?),
        Some(T::Subject(s)) => {
            check_subject(&s.subject).map_err(|e| invalid("subject.subject", e))?;
            let tenant = if s.tenant_id.is_empty() {
                None
            } else {
                Some(tenant_field("subject.tenant_id", &s.tenant_id)?)
            };
            Target::Subject {
                subject: s.subject,
                tenant,
            }
        }
        Some(T::Channel(c)) => Target::Channel(
            Channel::from_parts(&c.prefix, &c.tenant_id, &c.resource_id)
                .map_err(|e| invalid("channel", e))?,
        ),
    };
    let reason = if request.reason.is_empty() {
        "revoked"
    } else {
        &request.reason
    };
    let reason = Reason::parse(reason).map_err(|e| invalid("reason", e))?;
    Ok(Revocation {
        target,
        reason,
        at: crate::clock::now_secs(),
    })
}

fn responses(
    outcomes: Vec<Result<crate::bus::Published, PublishError>>,
) -> impl Iterator<Item = pb::PublishResponse> {
    outcomes.into_iter().map(|outcome| match outcome {
        Ok(p) => accepted(p),
        Err(e) => error_item(&e),
    })
}

fn accepted(p: crate::bus::Published) -> pb::PublishResponse {
    pb::PublishResponse {
        id: p.id.to_text(),
        duplicate: p.duplicate,
        error: None,
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Publisher for PublisherApi {
    async fn publish(
        &self,
        request: Request<crate::proto::server::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let span = telemetry::server_span(telemetry::Call::Publish, request.metadata());
        let call = async {
            let publisher = self
                .authenticate(bearer_token(&request), Scope::Publish)
                .await?;
            let published = self
                .service
                .publish(&publisher, request.into_inner())
                .await
                .map_err(|e| status_of(&e))?;
            Ok(Response::new(accepted(published)))
        };
        let outcome = call.instrument(span.clone()).await;
        if let Err(status) = &outcome {
            telemetry::record_status(&span, status);
        }
        outcome
    }

    async fn disconnect(
        &self,
        request: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        let admin = self
            .authenticate(bearer_token(&request), Scope::Admin)
            .await?;
        let request = request.into_inner();
        let order = revocation(request)?;
        let allowed = match &order.target {
            Target::Tenant(t) => admin.tenants.allows(*t),
            Target::Subject {
                tenant: Some(t), ..
            } => admin.tenants.allows(*t),
            Target::Subject { tenant: None, .. } => admin.tenants == Tenants::All,
            Target::Channel(c) => admin.tenants.allows(c.tenant()),
        };
        if !allowed {
            return Err(Status::permission_denied(
                "this token's `tenants` claim does not cover the target (a subject in every tenant needs [\"*\"])",
            ));
        }
        let nodes = self.bus.revoke(&order).await.map_err(|e| {
            metrics::counter!(m::BUS_ERRORS).increment(1);
            Status::unavailable(format!("{e}; retry the call"))
        })?;
        tracing::info!(target = ?order.target, nodes, "disconnect ordered");
        Ok(Response::new(pb::DisconnectResponse { nodes }))
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        request: Request<Streaming<crate::proto::server::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let span = telemetry::server_span(telemetry::Call::PublishStream, request.metadata());
        let publisher = match self
            .authenticate(bearer_token(&request), Scope::Publish)
            .instrument(span.clone())
            .await
        {
            Ok(p) => p,
            Err(status) => {
                telemetry::record_status(&span, &status);
                return Err(status);
            }
        };
        let service = self.service.clone();
        let mut requests = request.into_inner();
        // Items already waiting are published as one ordered batch (one
        // Valkey round trip); up to MAX_IN_FLIGHT batches are on their way
        // at once, so the bridge prepares the next while the bus runs the
        // last. Each batch reaches the bus before the next one is made (it is
        // polled once when queued), so per-channel order holds; responses
        // keep request order. Past MAX_IN_FLIGHT nothing more is read, which
        // pushes back on the producer through HTTP/2 flow control.
        let out = async_stream::stream! {
            let mut in_flight = FuturesOrdered::new();
            let mut input_open = true;
            let mut failed: Option<Status> = None;
            loop {
                let reading = input_open && failed.is_none() && in_flight.len() < MAX_IN_FLIGHT;
                let first = if reading {
                    tokio::select! {
                        biased;
                        Some(outcomes) = in_flight.next(), if !in_flight.is_empty() => {
                            for r in responses(outcomes) {
                                yield Ok(r);
                            }
                            continue;
                        }
                        item = requests.next() => item,
                    }
                } else {
                    match in_flight.next().await {
                        Some(outcomes) => {
                            for r in responses(outcomes) {
                                yield Ok(r);
                            }
                            continue;
                        }
                        None => break,
                    }
                };
                let Some(first) = first else {
                    input_open = false;
                    continue;
                };
                if crate::clock::now_secs() >= publisher.exp {
                    failed = Some(Status::unauthenticated(
                        "token has expired; reopen the stream with a fresh token",
                    ));
                    continue;
                }
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(item) = next.take() {
                    match item {
                        Ok(req) => batch.push(req),
                        Err(status) => {
                            failed = Some(status);
                            break;
                        }
                    }
                    if batch.len() < MAX_BATCH {
                        next = requests.next().now_or_never().flatten();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                in_flight.push_back(service.publish_many(&publisher, batch).instrument(span.clone()));
                // Send it now, before the next batch is made.
                if let std::task::Poll::Ready(Some(outcomes)) = futures::poll!(in_flight.next()) {
                    for r in responses(outcomes) {
                        yield Ok(r);
                    }
                }
            }
            if let Some(status) = failed {
                telemetry::record_status(&span, &status);
                yield Err(contract_status(status));
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}
