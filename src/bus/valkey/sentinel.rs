//! Valkey behind Sentinel: `redis+sentinel://[user:pass@]h1:p1,h2:p2/<master>`
//! (`rediss+sentinel://` for TLS to the data nodes). The sentinels name the
//! primary; the node connects to it as to a standalone server (whose start
//! checks refuse a replica), then keeps asking. When the answer changes (a
//! failover), it connects to the new primary, swaps the command
//! connection, and moves the subscription connection, which then
//! resubscribes and refills from history like after any reconnect.
//!
//! The credentials in the URL are the data nodes'; the sentinels are asked
//! without them.

use std::time::Duration;

use redis::Value;

use super::ConnectError;
use super::seeds::{Seeds, redacted};

/// How often the sentinels are asked who the primary is.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// The sentinels of one primary, from a `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sentinels {
    seeds: Seeds,
}

impl Sentinels {
    /// `None` for a URL that is not a Sentinel URL.
    pub(super) fn parse(url: &str) -> Result<Option<Sentinels>, ConnectError> {
        let Some(seeds) = Seeds::parse(url, "sentinel", 26379)? else {
            return Ok(None);
        };
        let bad = |why: &str| ConnectError::Url(format!("{}: {why}", redacted(url)));
        if seeds.path.is_empty() {
            return Err(bad(
                "name the primary: redis+sentinel://host:port,…/<master-name>",
            ));
        }
        if seeds.path.contains('/') {
            return Err(bad("the path must be the primary's name, /<master-name>"));
        }
        Ok(Some(Sentinels { seeds }))
    }

    /// The primary's URL, from the first sentinel that names it.
    pub(super) async fn discover(&self, timeout: Duration) -> Result<String, ConnectError> {
        let mut why = Vec::new();
        for (host, port) in &self.seeds.hosts {
            match tokio::time::timeout(timeout, self.ask(host, *port)).await {
                Ok(Ok((h, p))) => {
                    return Ok(self.seeds.node_url(&h, p));
                }
                Ok(Err(e)) => why.push(format!("{host}:{port}: {e}")),
                Err(_) => why.push(format!("{host}:{port}: no answer within {timeout:?}")),
            }
        }
        Err(ConnectError::Connect(format!(
            "no sentinel named the primary `{}` ({})",
            self.seeds.path,
            why.join("; ")
        )))
    }

    async fn ask(&self, host: &str, port: u16) -> Result<(String, u16), String> {
        let scheme = if self.seeds.tls { "rediss" } else { "redis" };
        let client =
            redis::Client::open(format!("{scheme}://{host}:{port}")).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let reply: Value = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.seeds.path)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        match &reply {
            Value::Array(parts) if parts.len() == 2 => {
                let host = text(&parts[0]).ok_or("a bad host in the reply")?;
                let port = text(&parts[1])
                    .and_then(|p| p.parse().ok())
                    .ok_or("a bad port in the reply")?;
                Ok((host, port))
            }
            _ => Err(format!("it does not know `{}`", self.seeds.path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_and_the_primary() {
        let parsed = Sentinels::parse("redis+sentinel://u:p@a:1,b:2,c/mymaster");
        assert_eq!(
            parsed.ok().flatten(),
            Some(Sentinels {
                seeds: Seeds {
                    hosts: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 26379)],
                    auth: "u:p@".into(),
                    tls: false,
                    path: "mymaster".into(),
                }
            })
        );
        assert!(matches!(
            Sentinels::parse("rediss+sentinel://a:1/m"),
            Ok(Some(Sentinels {
                seeds: Seeds { tls: true, .. }
            }))
        ));
        assert!(matches!(Sentinels::parse("redis://a:1"), Ok(None)));
        for bad in [
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis+sentinel://a:x/m",
            "redis+sentinel://:1/m",
            "redis+sentinel://a:1/m/n",
        ] {
            assert!(
                matches!(Sentinels::parse(bad), Err(ConnectError::Url(_))),
                "{bad}"
            );
        }
    }
}
