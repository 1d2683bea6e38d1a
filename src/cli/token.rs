//! `sse-bridge token`: mint an HS256 subscriber or publisher token.

use anyhow::Result;

use super::args::TokenArgs;
use crate::token;

pub(super) fn mint_token(args: TokenArgs) -> Result<()> {
    let mut claims = if args.publisher {
        token::publisher_claims(&args.sub, &args.scope, &args.tenants)
    } else {
        let tenant = args.tenant.clone().unwrap_or_default();
        crate::channel::parse_tenant(&tenant)
            .map_err(|_| anyhow::anyhow!("--tenant must be a hyphenated UUID"))?;
        token::subscriber_claims(&args.tenant_claim, &tenant, &args.sub)
    };
    for (name, value) in [("typ", &args.typ), ("aud", &args.aud), ("iss", &args.iss)] {
        if let Some(v) = value {
            claims.insert(name.to_owned(), serde_json::json!(v));
        }
    }
    println!("{}", token::mint(&args.secret, claims, args.ttl)?);
    Ok(())
}
