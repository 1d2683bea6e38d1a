//! The multi-host `--valkey-url` forms: `redis+sentinel://` and
//! `redis+cluster://` (with `rediss+…` for TLS to the data nodes) list
//! `host:port` pairs after optional credentials; Sentinel adds the primary's
//! name as the path. The credentials are the data nodes'.

use super::ConnectError;

/// The hosts of a multi-host URL, and what the data nodes' URLs need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seeds {
    pub hosts: Vec<(String, u16)>,
    /// `user:pass@` or `:pass@` (or empty), for the data nodes' URLs.
    pub auth: String,
    pub tls: bool,
    /// What follows the hosts after a `/` (empty when nothing does).
    pub path: String,
}

impl Seeds {
    /// `None` when `url` is not of the `redis+<kind>://` form.
    pub fn parse(url: &str, kind: &str, default_port: u16) -> Result<Option<Seeds>, ConnectError> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix(&format!("redis+{kind}://")) {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix(&format!("rediss+{kind}://")) {
            (rest, true)
        } else {
            return Ok(None);
        };
        let bad = |why: &str| ConnectError::Url(format!("{}: {why}", redacted(url)));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), authority),
        };
        let hosts = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h.rsplit_once(':').unwrap_or((h, ""));
                let port = match port {
                    "" => default_port,
                    p => p
                        .parse()
                        .map_err(|_| bad(&format!("`{h}` is not host:port")))?,
                };
                if host.is_empty() {
                    return Err(bad("an address has no host"));
                }
                Ok((host.to_owned(), port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Seeds {
            hosts,
            auth,
            tls,
            path: path.to_owned(),
        }))
    }

    /// The URL of one data node, with the credentials.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if host.contains(':') {
            format!("{scheme}://{}[{host}]:{port}", self.auth)
        } else {
            format!("{scheme}://{}{host}:{port}", self.auth)
        }
    }
}

/// A URL for logs and errors: its password left out.
pub(super) fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_list_hosts_credentials_and_path() {
        let s = Seeds::parse("rediss+cluster://u:p@a:1,b,c:3", "cluster", 6379)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.hosts,
            vec![("a".into(), 1), ("b".into(), 6379), ("c".into(), 3)]
        );
        assert_eq!(
            (s.auth.as_str(), s.tls, s.path.as_str()),
            ("u:p@", true, "")
        );
        assert_eq!(s.node_url("h", 7), "rediss://u:p@h:7");
        assert!(matches!(
            Seeds::parse("redis://a:1", "cluster", 1),
            Ok(None)
        ));
        for bad in [
            "redis+cluster://a:x",
            "redis+cluster://:1",
            "redis+cluster://a:1,",
        ] {
            let err = Seeds::parse(bad, "cluster", 1).unwrap_err().to_string();
            assert!(err.starts_with("bad Valkey URL"), "{bad}: {err}");
        }
        let err = Seeds::parse("redis+cluster://u:secret@a:x", "cluster", 1)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
