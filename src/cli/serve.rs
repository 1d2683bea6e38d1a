//! `sse-bridge serve`: run a node until SIGINT/SIGTERM; with `--dev`, on
//! the embedded bus with a random secret and ready-to-paste tokens.

use std::net::SocketAddr;

use anyhow::{Result, bail};

use super::args::ServeArgs;
use crate::server;
use crate::token;

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_dev_banner(
    args: &ServeArgs,
    secret: &str,
    http: SocketAddr,
    grpc: SocketAddr,
) -> Result<()> {
    let tenant = uuid::Uuid::new_v4().to_string();
    let day = 24 * 3600;
    let sub = token::mint(
        secret,
        token::subscriber_claims(&args.tenant_claim, &tenant, "dev-user"),
        day,
    )?;
    let publ = token::mint(
        secret,
        token::publisher_claims(
            "dev-publisher",
            crate::auth::PUBLISH_SCOPE,
            &["*".to_owned()],
        ),
        day,
    )?;
    let admin = token::mint(
        secret,
        token::publisher_claims(
            "dev-admin",
            crate::auth::Scope::Admin.as_str(),
            &["*".to_owned()],
        ),
        day,
    )?;
    let channel = format!("scans:{tenant}:scan-1");
    let scan = uuid::Uuid::new_v4();
    // Commands that run as printed, from a checkout or an installed binary.
    let run = super::invocation::command();
    println!(
        r#"
sse-bridge dev server (embedded bus)
  SSE   http://{http}/v1/events
  gRPC  http://{grpc}
  JWT secret (HS256): {secret}

Subscriber token (tenant {tenant}, 24 h):
  {sub}
Publisher token (all tenants, 24 h):
  {publ}
Admin token (Disconnect, all tenants, 24 h):
  {admin}

Follow a channel (another terminal):
  {run} tail --url http://{http} --token {sub} --channel {channel}
or with curl:
  curl -N -H 'Authorization: Bearer {sub}' 'http://{http}/v1/events?channel={channel}'

Publish an event:
  {run} publish --target http://{grpc} --token {publ} --channel {channel} --event scan.progress --data '{{"scan_id":"{scan}","checked":3,"total":10}}'

Console (catalogue, live tail, publish form; paste the tokens above):
  http://{http}/console

Close the tenant's streams on every node:
  {run} disconnect --target http://{grpc} --token {admin} --tenant {tenant}
"#
    );
    Ok(())
}

pub(super) async fn serve(mut args: ServeArgs) -> Result<()> {
    let mut dev_secret = None;
    if args.dev {
        if args.valkey_url.is_some() {
            bail!("--dev uses the embedded bus; omit --valkey-url");
        }
        // A key the developer gave is kept; only without one is a secret
        // made up (and its tokens printed).
        if args.jwt_secret.is_none() && args.jwt_public_key.is_none() && args.jwt_jwks.is_none() {
            args.jwt_secret = Some(random_secret());
        }
        dev_secret = args.jwt_secret.clone();
    }
    let settings = args.settings().await?;
    let running = server::start(settings).await?;
    if let Some(secret) = dev_secret {
        print_dev_banner(&args, &secret, running.http_addr, running.grpc_addr)?;
    }
    running.run_until_signal().await;
    Ok(())
}
