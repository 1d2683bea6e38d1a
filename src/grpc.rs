//! The gRPC transport: `ssebridge.v1.Publisher`, plus the standard health
//! and reflection services so stock gRPC tools work.

use std::pin::Pin;

use futures::{FutureExt, Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{self, AuthError, PublisherAuth};
use crate::metrics as m;
use crate::proto::ssebridge::v1 as pb;
use crate::proto::ssebridge::v1::publisher_server::{Publisher, PublisherServer};
use crate::publish::{PublishError, PublishService};

/// Most stream items published in one bus batch.
const MAX_BATCH: usize = 64;

/// Serves `Publisher` over a [`PublishService`].
#[derive(Clone)]
pub struct PublisherApi {
    service: PublishService,
    auth: PublisherAuth,
}

impl PublisherApi {
    pub fn new(service: PublishService, auth: PublisherAuth) -> Self {
        PublisherApi { service, auth }
    }

    pub fn into_server(self, max_message_bytes: usize) -> PublisherServer<PublisherApi> {
        PublisherServer::new(self).max_decoding_message_size(max_message_bytes)
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<auth::Publisher, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or(AuthError::Missing)
            .and_then(|v| v.to_str().map_err(|_| AuthError::Scheme))
            .map_err(auth_status)?;
        let token = auth::bearer(header).map_err(auth_status)?;
        self.auth
            .verify(token, auth::PUBLISH_SCOPE)
            .map_err(auth_status)
    }
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
    }
}

fn rejected(e: &PublishError) {
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

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Publisher for PublisherApi {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let publisher = self.authenticate(&request)?;
        let published = self
            .service
            .publish(&publisher, request.into_inner())
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::PublishResponse {
            id: published.id.to_string(),
            duplicate: published.duplicate,
            error: None,
        }))
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let publisher = self.authenticate(&request)?;
        let service = self.service.clone();
        let mut requests = request.into_inner();
        // Items already waiting are published as one ordered batch (one
        // Valkey round trip); responses keep request order. Waiting for the
        // batch before reading more lets a slow bus push back on the
        // producer through HTTP/2 flow control.
        let out = async_stream::stream! {
            while let Some(first) = requests.next().await {
                if crate::token::now_secs() >= publisher.exp {
                    yield Err(Status::unauthenticated(
                        "token has expired; reopen the stream with a fresh token",
                    ));
                    break;
                }
                let mut batch = Vec::new();
                let mut failed = None;
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
                for outcome in service.publish_many(&publisher, batch).await {
                    yield Ok(match outcome {
                        Ok(p) => pb::PublishResponse {
                            id: p.id.to_string(),
                            duplicate: p.duplicate,
                            error: None,
                        },
                        Err(e) => error_item(&e),
                    });
                }
                if let Some(status) = failed {
                    yield Err(status);
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}
