//! Publishing a batch: one run of `lua/publish.lua`, by digest, for all of
//! the batch's channels. Per channel it checks each event's idempotency key,
//! appends, trims once and sends the channel's events as one pub/sub
//! message. What the step would otherwise ask Valkey on every publish (is an
//! age trim due, is the idle expiry due a refresh, may the length have
//! reached its bound) the node remembers and passes in ([`Hints`]).
//!
//! Each channel's step is atomic on its own keys, which share a hash tag; a
//! run that spans channels spans hash slots, which a standalone server
//! allows and a cluster does not: there a batch runs once per slot
//! ([`by_slot`]), the runs at once, each on its slot's primary.

use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::batch::{Group, by_channel, by_slot};
use super::call::{bounded, unavailable};
use super::commands::Commands;
use super::durability::Durability;
use super::hints::{Hints, Report, StepHint};
use super::keys::Name;
use super::mode::Mode;
use super::record::Record;
use super::reply::{StepOutcome, is_noscript, parse_reply};
use crate::bus::{BusError, Outgoing, Published, Retention};

pub(super) const PUBLISH: &str = include_str!("lua/publish.lua");

/// Loads the publish script into Valkey's cache: at start, on a new
/// primary, and after Valkey lost it.
pub(super) async fn load_script(
    conn: &mut impl redis::aio::ConnectionLike,
    timeout: Duration,
) -> Result<(), BusError> {
    bounded(
        timeout,
        "script load",
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PUBLISH)
            .query_async::<String>(conn),
    )
    .await
    .map(|_| ())
}

/// The publishing side of a node.
pub(super) struct Publisher {
    conn: Commands,
    /// Run by digest (`EVALSHA`): the script text travels once per load,
    /// not with every publish.
    publish: Script,
    retention: Retention,
    hints: Hints,
    timeout: Duration,
    durability: Durability,
    /// How long a durability wait may take before the batch fails.
    wait_timeout: Duration,
}

impl Publisher {
    pub fn new(
        conn: Commands,
        retention: Retention,
        timeout: Duration,
        (durability, wait_timeout): (Durability, Duration),
    ) -> Publisher {
        Publisher {
            conn,
            publish: Script::new(PUBLISH),
            hints: Hints::new(retention.max_age, retention.max_len),
            retention,
            timeout,
            durability,
            wait_timeout,
        }
    }

    /// Publishes a batch: one script run on a standalone server, one per
    /// hash slot (all at once) on a cluster. One outcome per event, in order.
    pub async fn publish_batch(&self, events: Vec<Outgoing>) -> Vec<Result<Published, BusError>> {
        if events.is_empty() {
            return Vec::new();
        }
        let mut groups = by_channel(&events);
        let runs = match &self.conn {
            Commands::Primary(_) => vec![(0, 0..groups.len())],
            // A script run may touch one slot only; the order of channels
            // within a batch means nothing, so they are sorted into runs.
            Commands::Cluster(_) => by_slot(&events, &mut groups),
        };
        let now = Instant::now();
        let channels = || groups.iter().map(|g| &events[g[0]].channel);
        let steps = self
            .hints
            .steps(channels().zip(groups.iter().map(|g| g.len())), now);
        let outcomes =
            futures::future::join_all(runs.into_iter().map(|(slot, range)| {
                self.run(&events, slot, &groups[range.clone()], &steps[range])
            }))
            .await;
        let outcomes: Vec<Result<StepOutcome, BusError>> = outcomes.into_iter().flatten().collect();
        for ((channel, step), outcome) in channels().zip(&steps).zip(&outcomes) {
            // Most steps change nothing the node remembers: no need to
            // take the lock again.
            match outcome {
                Ok(o)
                    if o.oldest_ms != step.oldest_ms || step.refresh_expiry || o.len.is_some() =>
                {
                    let report = Report {
                        oldest_ms: o.oldest_ms,
                        refreshed: step.refresh_expiry.then_some(now),
                        len: o.len,
                    };
                    self.hints.record(channel, step, report);
                }
                _ => {}
            }
        }
        let mut out: Vec<Option<Result<Published, BusError>>> =
            events.iter().map(|_| None).collect();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome.map(|o| o.published) {
                Ok(published) => {
                    for (&i, p) in group.iter().zip(published) {
                        out[i] = Some(Ok(p));
                    }
                }
                Err(e) => {
                    for &i in group {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(unavailable("no publish outcome"))))
            .collect()
    }

    /// One script run (and its durability wait) for `groups`, whose
    /// channels share `slot` on a cluster; one outcome per group.
    async fn run(
        &self,
        events: &[Outgoing],
        slot: u16,
        groups: &[Group<usize>],
        steps: &[StepHint],
    ) -> Vec<Result<StepOutcome, BusError>> {
        let (reply, waited) = match self.run_groups(events, slot, groups, steps).await {
            Ok(v) => v,
            Err(e) => return groups.iter().map(|_| Err(e.clone())).collect(),
        };
        // Valkey lost its script cache (a restart or failover): the run
        // did not happen. It fails as retryable rather than being run again
        // here, because batches sent after it may already have run and a
        // retry now would reorder their channels. Later publishes find the
        // script loaded.
        if is_noscript(&reply) {
            let loaded = load_script(&mut self.conn.for_slot(slot), self.timeout).await;
            let e = unavailable(format_args!(
                "Valkey had lost the publish script (restarted?){}",
                match &loaded {
                    Ok(()) => String::from("; it is loaded again"),
                    Err(e) => format!(" and loading it failed: {e}"),
                }
            ));
            return groups.iter().map(|_| Err(e.clone())).collect();
        }
        let mut outcomes = parse_reply(&reply, groups);
        // The hints are recorded either way (the script ran), but
        // unconfirmed, nothing is acknowledged.
        if let Some(waited) = waited {
            if let Err(e) = self.durability.confirmed(&waited, self.wait_timeout) {
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(e.clone());
                }
            }
        }
        outcomes
    }
}

impl Publisher {
    /// `EVALSHA` of the publish script for a batch, grouped by channel: one
    /// script run appends every event, and per channel trims once and sends
    /// its events in one pub/sub message. One run for the whole batch
    /// rather than one per channel: with events spread over many channels,
    /// the per-call cost (dispatch, script set-up, reply, and `TIME`) was
    /// most of Valkey's work per event.
    fn publish_command(
        &self,
        events: &[Outgoing],
        groups: &[Group<usize>],
        steps: &[StepHint],
    ) -> redis::Cmd {
        // Keys first (Valkey needs their count up front): per channel its
        // history key, then its events' idempotency keys, each event
        // remembering its key's index (0: none).
        let mut keys: Vec<Name> = Vec::with_capacity(groups.len() * 2);
        for group in groups {
            let channel = &events[group[0]].channel;
            keys.push(Name::History(channel));
            for &i in group {
                if let Some(k) = events[i].idempotency_key.as_deref() {
                    keys.push(Name::Idempotency(channel, k));
                }
            }
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.publish.get_hash())
            .arg(keys.len())
            .arg(&keys)
            .arg(self.retention.max_len.max(1))
            .arg(self.retention.max_age.as_millis().max(1) as u64)
            .arg(self.retention.idempotency_window.as_millis().max(1) as u64);
        // Per channel two arguments and then one per event (the script's
        // comments give the layout): every argument is a string Valkey
        // makes and Lua interns, so the fewer, the cheaper each event.
        let mut mode = Vec::new();
        for (group, step) in groups.iter().zip(steps) {
            Mode {
                refresh_expiry: step.refresh_expiry,
                measure_len: step.measure_len,
                keyed: group.iter().map(|&i| events[i].idempotency_key.is_some()),
            }
            .write(&mut mode);
            cmd.arg(&mode[..]).arg(step.oldest_ms);
            for &i in group {
                cmd.arg(Record(&events[i]));
            }
        }
        cmd
    }

    /// Runs the batch's script, and the durability wait if there is one;
    /// returns their replies.
    async fn run_groups(
        &self,
        events: &[Outgoing],
        slot: u16,
        groups: &[Group<usize>],
        steps: &[StepHint],
    ) -> Result<(Value, Option<Value>), BusError> {
        // In a pipeline that keeps errors as replies, so a lost script
        // (`NOSCRIPT`) can be told from other failures.
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(self.publish_command(events, groups, steps));
        let wait = self.durability.wait(self.wait_timeout);
        let mut bound = self.timeout;
        if let Some(wait) = wait {
            pipe.add_command(wait);
            bound += self.wait_timeout;
        }
        let mut conn = self.conn.for_slot(slot);
        let mut replies = bounded(bound, "publish", pipe.query_async::<Vec<Value>>(&mut conn))
            .await?
            .into_iter();
        let script = replies
            .next()
            .ok_or_else(|| unavailable("the publish script gave no reply"))?;
        let waited = match self.durability {
            Durability::None => None,
            _ => Some(
                replies
                    .next()
                    .ok_or_else(|| unavailable("the durability wait gave no reply"))?,
            ),
        };
        Ok((script, waited))
    }
}
