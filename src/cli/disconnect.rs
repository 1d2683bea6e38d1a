//! `sse-bridge disconnect`: close a tenant's, a subject's or a channel's
//! streams on every node (gRPC `Disconnect`).

use anyhow::{Result, bail};

use super::args::DisconnectArgs;
use super::publish::refusal;
use crate::client;

pub(super) async fn disconnect(args: DisconnectArgs) -> Result<()> {
    use crate::proto::ssebridge::v1 as pb;
    use pb::disconnect_request::Target;
    let target = match (args.tenant, args.subject, args.channel) {
        (Some(tenant), None, None) => Target::TenantId(tenant),
        (None, Some(subject), None) => Target::Subject(pb::SubjectTarget {
            subject,
            tenant_id: args.subject_tenant.unwrap_or_default(),
        }),
        (None, None, Some(raw)) => {
            let channel = crate::channel::Channel::parse(&raw)?;
            Target::Channel(client::channel(
                channel.prefix(),
                &channel.tenant().to_string(),
                channel.resource(),
            ))
        }
        _ => bail!("give one of --tenant, --subject or --channel"),
    };
    let mut client = client::connect(&args.target, &args.token).await?;
    let request = pb::DisconnectRequest {
        target: Some(target),
        reason: args.reason,
    };
    match client.disconnect(request).await {
        Ok(response) => {
            let nodes = response.into_inner().nodes;
            println!(
                "order sent to {nodes} node{}",
                if nodes == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Err(status) => bail!(refusal(&status)),
    }
}
