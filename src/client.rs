//! A Rust client of the publishing API: the generated tonic client with the
//! bearer token attached to every call.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sse_bridge::client;
//! use sse_bridge::schema::Schema;
//!
//! let mut publisher = client::connect("http://127.0.0.1:50051", "<publisher jwt>").await?;
//! let event = Schema::embedded().event_from_json(
//!     "scan.progress",
//!     r#"{"scan_id":"0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80","checked":3,"total":10}"#,
//! )?;
//! let channel = client::channel("scans", "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80", "scan-1");
//! let response = publisher
//!     .publish(client::request(channel, event, ""))
//!     .await?;
//! println!("published as {}", response.into_inner().id);
//! # Ok(()) }
//! ```

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel as Transport, Endpoint};

use crate::proto::events::v1::Event;
use crate::proto::ssebridge::v1 as pb;
use crate::proto::ssebridge::v1::publisher_client::PublisherClient;

/// Adds `authorization: Bearer <token>` to each request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = PublisherClient<InterceptedService<Transport, Bearer>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the token cannot be sent as a header")]
    Token,
    #[error(
        "bad target `{0}`: expected the gRPC listener's URL, e.g. http://127.0.0.1:50051 (https:// with TLS)"
    )]
    Target(String),
    /// The transport's own error follows in the source chain.
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        source: tonic::transport::Error,
    },
}

/// Connects to a bridge's gRPC address.
pub async fn connect(target: &str, token: &str) -> Result<Client, ClientError> {
    // tonic takes `host:port` and fails only when connecting, with its
    // message twice; say what is wanted before trying.
    if !(target.starts_with("http://") || target.starts_with("https://")) {
        return Err(ClientError::Target(target.to_owned()));
    }
    let endpoint = Endpoint::from_shared(target.to_owned())
        .map_err(|_| ClientError::Target(target.to_owned()))?;
    connect_endpoint(endpoint, token).await
}

/// Connects through a configured endpoint, e.g. one with
/// `tls_config(ClientTlsConfig::new().ca_certificate(..).identity(..))` for
/// a bridge that serves TLS and asks publishers for client certificates.
pub async fn connect_endpoint(endpoint: Endpoint, token: &str) -> Result<Client, ClientError> {
    let target = endpoint.uri().to_string();
    let header: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Token)?;
    let transport = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            target: target.clone(),
            source,
        })?;
    Ok(PublisherClient::with_interceptor(transport, Bearer(header)))
}

/// A structured channel.
pub fn channel(prefix: &str, tenant_id: &str, resource_id: &str) -> pb::Channel {
    pb::Channel {
        prefix: prefix.to_owned(),
        tenant_id: tenant_id.to_owned(),
        resource_id: resource_id.to_owned(),
    }
}

/// A publish request; an empty `idempotency_key` means none.
pub fn request(channel: pb::Channel, event: Event, idempotency_key: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        channel: Some(channel),
        event: Some(event),
        idempotency_key: idempotency_key.to_owned(),
    }
}
