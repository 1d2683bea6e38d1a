//! Gathering reads that arrive together into one script run per slot.
//!
//! When a node restarts, its clients come back within a second or two, and
//! every one of them asks for its channel's head and for what it missed.
//! Sent one by one that is a Valkey command per client. Here a read that
//! arrives while earlier ones are in flight waits for a turn and goes out
//! with every other read queued by then — one script run per hash slot (on
//! one primary every channel shares a run; on a cluster a run may only
//! touch one slot's keys). A read that finds the node idle goes out at
//! once, so gathering costs a lone reader nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::commands::channel_slot;
use crate::bus::BusError;
use crate::channel::Channel;

/// Reads in one script run, at most: bounds the size of one command and
/// of the reply a node holds at once.
const MAX_RUN: usize = 128;

/// Runs gathered at once, at most. More reads wait and gather meanwhile.
const IN_FLIGHT: usize = 4;

type Reply<A> = oneshot::Sender<Result<A, BusError>>;

/// One read: its channel (for its slot), what it asks, and its answer.
struct Queued<Q, A> {
    channel: Channel,
    ask: Q,
    reply: Reply<A>,
}

/// Runs a group of reads on the keys of one slot; answers in their order.
pub(super) type Run<Q, A> =
    Arc<dyn Fn(Vec<(Channel, Q)>) -> BoxFuture<'static, Result<Vec<A>, BusError>> + Send + Sync>;

/// A queue of reads of one kind, and the task that runs them in groups.
pub(super) struct Gather<Q, A> {
    queue: mpsc::UnboundedSender<Queued<Q, A>>,
}

/// How runs are formed.
pub(super) struct Shape<Q> {
    /// The keys live on a cluster, so a run holds one slot's.
    pub(super) sharded: bool,
    /// The most a read may bring back (a page's byte budget); a run's
    /// reads together may bring back at most [`MAX_RUN_BYTES`], so that one
    /// script run neither holds Valkey long nor makes a huge reply.
    pub(super) weigh: fn(&Q) -> usize,
}

// By hand: derived, they would ask `Q: Copy` of a struct holding only a
// `bool` and a function pointer.
impl<Q> Clone for Shape<Q> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Q> Copy for Shape<Q> {}

/// The most one run's reads may bring back together.
pub(super) const MAX_RUN_BYTES: usize = 8 << 20;

impl<Q: Send + 'static, A: Send + 'static> Gather<Q, A> {
    pub(super) fn new(run: Run<Q, A>, shape: Shape<Q>) -> Gather<Q, A> {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(work(rx, run, shape));
        Gather { queue }
    }

    /// Queues a read and waits for its answer.
    pub(super) async fn read(&self, channel: &Channel, ask: Q) -> Result<A, BusError> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            channel: channel.clone(),
            ask,
            reply,
        };
        self.queue
            .send(queued)
            .map_err(|_| BusError::Unavailable("the Valkey bus has stopped".into()))?;
        answer
            .await
            .map_err(|_| BusError::Unavailable("the Valkey bus has stopped".into()))?
    }
}

async fn work<Q: Send + 'static, A: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<Queued<Q, A>>,
    run: Run<Q, A>,
    shape: Shape<Q>,
) {
    let turns = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A turn first, then the reads: while every turn is taken the
        // queue fills, and the next turn takes all of it.
        let Ok(turn) = turns.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut taken = vec![first];
        while taken.len() < MAX_RUN * IN_FLIGHT {
            match rx.try_recv() {
                Ok(q) => taken.push(q),
                Err(_) => break,
            }
        }
        let run = run.clone();
        tokio::spawn(async move {
            let groups = futures::future::join_all(runs(taken, shape).into_iter().map(|group| {
                let run = run.clone();
                async move { answer(group, run).await }
            }));
            groups.await;
            drop(turn);
        });
    }
}

type Runs<Q, A> = Vec<Vec<Queued<Q, A>>>;

/// The reads in runs of at most `MAX_RUN` reads and `MAX_RUN_BYTES`, in
/// the order they were queued; on a cluster, each run of one slot.
fn runs<Q, A>(taken: Vec<Queued<Q, A>>, shape: Shape<Q>) -> Runs<Q, A> {
    // Per slot: its runs, and the weight of the last.
    let mut slots: BTreeMap<u16, (Runs<Q, A>, usize)> = BTreeMap::new();
    for q in taken {
        let slot = if shape.sharded {
            channel_slot(&q.channel)
        } else {
            0
        };
        let weight = (shape.weigh)(&q.ask);
        let (runs, last) = slots.entry(slot).or_default();
        match runs.last_mut() {
            Some(run) if run.len() < MAX_RUN && *last + weight <= MAX_RUN_BYTES => {
                run.push(q);
                *last += weight;
            }
            _ => {
                runs.push(vec![q]);
                *last = weight;
            }
        }
    }
    slots.into_values().flat_map(|(runs, _)| runs).collect()
}

async fn answer<Q, A>(group: Vec<Queued<Q, A>>, run: Run<Q, A>) {
    let (asks, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|q| ((q.channel, q.ask), q.reply))
        .unzip();
    let n = asks.len();
    match run(asks).await {
        Ok(answers) if answers.len() == n => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(a));
            }
        }
        Ok(answers) => {
            let e = BusError::Unavailable(format!(
                "a gathered read answered {} of {n} reads",
                answers.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(r: &str) -> Channel {
        Channel::parse(&format!("scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
    }

    #[tokio::test]
    async fn reads_queued_together_share_a_run_per_slot_and_get_their_own_answers() {
        let runs = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let seen = runs.clone();
        // Slow enough that the later reads queue behind the first turns.
        let run: Run<u32, u32> = Arc::new(move |asks: Vec<(Channel, u32)>| {
            let seen = seen.clone();
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                seen.lock().unwrap().push(asks.len());
                Ok(asks.into_iter().map(|(_, q)| q * 10).collect())
            })
        });
        let shape = Shape {
            sharded: false,
            weigh: |_| 0,
        };
        let gather = Arc::new(Gather::new(run, shape));
        let reads = (0..200u32).map(|i| {
            let gather = gather.clone();
            async move { gather.read(&channel(&format!("c{i}")), i).await }
        });
        let answers = futures::future::join_all(reads).await;
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap(), i as u32 * 10);
        }
        let runs = runs.lock().unwrap();
        assert_eq!(runs.iter().sum::<usize>(), 200);
        // The first turns go out at once with what had queued; the rest
        // wait for a turn and go out together.
        assert!(runs.len() < 20, "{runs:?}");
    }

    #[test]
    fn runs_split_by_size_and_on_a_cluster_by_slot() {
        let (a, b) = (channel("a"), channel("b"));
        assert_ne!(channel_slot(&a), channel_slot(&b));
        // MAX_RUN + 1 reads of a, then one of b.
        let queued = || {
            let mut all: Vec<Queued<(), ()>> = Vec::new();
            for c in std::iter::repeat_n(&a, MAX_RUN + 1).chain([&b]) {
                let (reply, _) = oneshot::channel();
                all.push(Queued {
                    channel: c.clone(),
                    ask: (),
                    reply,
                });
            }
            all
        };
        let sizes = |runs: Vec<Vec<Queued<(), ()>>>| runs.iter().map(Vec::len).collect::<Vec<_>>();
        let shape = |sharded| Shape {
            sharded,
            weigh: |_: &()| 0,
        };
        assert_eq!(sizes(runs(queued(), shape(false))), [MAX_RUN, 2]);
        let mut sharded = sizes(runs(queued(), shape(true)));
        sharded.sort_unstable();
        assert_eq!(sharded, [1, 1, MAX_RUN]);
        // Reads that may each bring back a quarter of a run's bytes: four a
        // run, whatever their number.
        let heavy = Shape {
            sharded: false,
            weigh: |_: &()| MAX_RUN_BYTES / 4,
        };
        let heavy = sizes(runs(queued(), heavy));
        assert!(heavy.iter().all(|&n| n <= 4), "{heavy:?}");
        assert_eq!(heavy.iter().sum::<usize>(), MAX_RUN + 2);
    }
}
