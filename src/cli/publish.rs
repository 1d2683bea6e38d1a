//! `sse-bridge publish`: one event from JSON, typed by the catalogue, sent
//! through the gRPC API.

use anyhow::{Result, bail};

use super::args::PublishArgs;
use crate::client;
use crate::schema::{Schema, SchemaError};

pub(super) async fn publish(args: PublishArgs) -> Result<()> {
    let channel = crate::channel::Channel::parse(&args.channel)?;
    let event = Schema::embedded()
        .event_from_json(&args.event, &args.data)
        .map_err(|e| match e {
            SchemaError::UnknownEvent(name) => anyhow::anyhow!(
                "unknown event `{name}`; `{} schema` lists the catalogue",
                super::invocation::command()
            ),
            other => other.into(),
        })?;
    let mut client = client::connect(&args.target, &args.token).await?;
    let request = client::request(
        client::channel(
            channel.prefix(),
            &channel.tenant().to_string(),
            channel.resource(),
        ),
        event,
        &args.idempotency_key,
    );
    match client.publish(request).await {
        Ok(response) => {
            let r = response.into_inner();
            if r.duplicate {
                println!(
                    "{} (duplicate: already published with this idempotency key)",
                    r.id
                );
            } else {
                println!("{}", r.id);
            }
            Ok(())
        }
        Err(status) => bail!(refusal(&status)),
    }
}

/// A gRPC refusal as a person reads it: code, message, and any field
/// violations the message left out.
pub(super) fn refusal(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut message = format!("{:?}: {}", status.code(), status.message());
    // An HTTP server that is not gRPC answers 404 with no grpc-status.
    if status.code() == tonic::Code::Unimplemented
        && status.message().contains("grpc-status header missing")
    {
        message.push_str(
            "\n  this is not the bridge's gRPC listener: is --target the HTTP (SSE) port? \
             Publishing goes to --grpc-addr (default 127.0.0.1:50051), streams to --http-addr (8080)",
        );
    }
    // The bridge's message already names each violation; the structured
    // details add only what it left out.
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            let line = format!("{}: {}", v.field, v.description);
            if !status.message().contains(&line) {
                message.push_str(&format!("\n  {line}"));
            }
        }
    }
    message
}
