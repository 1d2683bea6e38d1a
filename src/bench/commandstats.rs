//! Valkey's `INFO commandstats`: calls and time per command, summed over a
//! cluster's primaries. What a scenario costs Valkey is the difference of
//! two readings.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

/// One command's counters.
#[derive(Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Calls {
    pub(super) calls: u64,
    pub(super) usec: u64,
}

/// Counters by lower-case command name (`evalsha`, `xrange`, `ssubscribe`).
#[derive(Default, Debug)]
pub(super) struct CommandStats(BTreeMap<String, Calls>);

impl CommandStats {
    pub(super) async fn read(url: &str) -> Result<Self> {
        // A cluster's seeds (all its primaries, as `scripts/bench` gives
        // them): the counters summed over them.
        let servers: Vec<String> = match url.strip_prefix("redis+cluster://") {
            Some(hosts) => hosts.split(',').map(|h| format!("redis://{h}")).collect(),
            None => vec![url.to_owned()],
        };
        let mut all = CommandStats::default();
        for server in servers {
            let client = redis::Client::open(server)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn)
                .await?;
            all.add(&CommandStats::parse(&info));
        }
        Ok(all)
    }

    /// Parses lines such as `cmdstat_xrange:calls=3,usec=40,...`.
    fn parse(info: &str) -> Self {
        let mut stats = CommandStats::default();
        for line in info.lines() {
            let Some((name, fields)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            stats.0.insert(
                name.to_ascii_lowercase(),
                Calls {
                    calls: field("calls"),
                    usec: field("usec"),
                },
            );
        }
        stats
    }

    fn add(&mut self, other: &CommandStats) {
        for (name, c) in &other.0 {
            let mine = self.0.entry(name.clone()).or_default();
            mine.calls += c.calls;
            mine.usec += c.usec;
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<Calls> {
        self.0.get(name).copied()
    }

    /// What happened between `before` and this reading, commands with no
    /// calls left out. `INFO` itself is not counted: the readings are the
    /// bench's, not the bridge's.
    pub(super) fn since(&self, before: &CommandStats) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .filter_map(|(name, c)| {
                let was = before.get(name).map_or(0, |b| b.calls);
                let n = c.calls.saturating_sub(was);
                (n > 0).then(|| (name.clone(), n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_calls_and_time_and_takes_differences() {
        let before = CommandStats::parse(
            "# Commandstats\r\ncmdstat_xrange:calls=3,usec=40,usec_per_call=13.33\r\n\
             cmdstat_info:calls=1,usec=5\r\n",
        );
        let after = CommandStats::parse(
            "cmdstat_xrange:calls=5,usec=70\r\ncmdstat_ssubscribe:calls=2,usec=9\r\n\
             cmdstat_info:calls=2,usec=9\r\n",
        );
        assert_eq!(after.get("xrange"), Some(Calls { calls: 5, usec: 70 }));
        let diff = after.since(&before);
        assert_eq!(diff.get("xrange"), Some(&2));
        assert_eq!(diff.get("ssubscribe"), Some(&2));
        assert_eq!(diff.get("info"), None, "the bench's own reading");
    }
}
