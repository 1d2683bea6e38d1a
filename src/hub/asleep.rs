//! Streams asleep: quiet streams held by their channel's slot, with no task
//! and no receiver of their own.
//!
//! A stream that has had nothing to write for a moment hands itself to the
//! hub ([`Hub::park`]). From then on it is a [`Sleeper`] in its channel's
//! slot: the next event on the channel (or a resync) wakes it, with a
//! receiver subscribed before that event is sent, so nothing is missed.
//! Once a second the node looks over its sleepers ([`Sleeper::check`]): the
//! ones whose client left are dropped, and the ones with something of their
//! own to do (a keep-alive that could not be written at once, an expired
//! token, a revocation or a shutdown) are woken.
//!
//! Measured for issue 20: a task per idle stream costs 1.8–2.1 KB before
//! the bridge does anything (`bench idle-floor`); a stream asleep holds only
//! its socket, its subscription and its ticket.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Delivery, Fanout, Hub, Slot};
use crate::channel::Channel;

/// How often the node looks over its sleepers: the longest a client that
/// left is held, and the latest a revocation or shutdown reaches one.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a look over a sleeper found.
pub enum Check {
    /// Nothing to do: it stays asleep.
    Stay,
    /// It has work of its own: wake it.
    Wake,
    /// A keep-alive is due: it is taken out listening, to write it once the
    /// hub's lock is released (see [`Sleeper::keep_alive`]).
    KeepAlive,
    /// Its client left: drop it.
    Gone,
}

/// A stream asleep in its channel's slot.
pub trait Sleeper: Send + 'static {
    /// Called under the hub's lock when the stream parks: lets go of its
    /// live receiver and returns true when nothing is waiting in it; else
    /// keeps it and returns false (the stream stays awake).
    fn let_go(&mut self) -> bool;

    /// Back to work, listening from `rx`: subscribed before anything this
    /// stream has not seen was sent; `None` when it never let go of its
    /// own. Called outside the hub's lock.
    fn wake(self: Box<Self>, rx: Option<broadcast::Receiver<Delivery>>);

    /// The periodic look, under the hub's lock: only what needs no waiting
    /// and no system call (the socket's readiness and the ticket are looked
    /// at, never waited on).
    fn check(&mut self, now: Instant) -> Check;

    /// Writes the keep-alive [`Check::KeepAlive`] found due, outside the
    /// hub's lock, listening from `rx` meanwhile (subscribed before the
    /// stream left its slot, so nothing sent in between is missed); then
    /// sleeps again, or wakes when something came or the socket is full.
    fn keep_alive(self: Box<Self>, rx: broadcast::Receiver<Delivery>);
}

/// Sleepers taken out of their slots under the lock, to be woken or
/// dropped once it is released: waking spawns, and dropping leaves the
/// channel, which takes the lock.
#[derive(Default)]
pub(super) struct Taken {
    woken: Vec<(Box<dyn Sleeper>, broadcast::Receiver<Delivery>)>,
    /// Keep-alives to write: a system call each, which would hold every
    /// delivery of the node back if made under the hub's lock (streams
    /// opened in the same second keep their keep-alives in step).
    keeping: Vec<(Box<dyn Sleeper>, broadcast::Receiver<Delivery>)>,
    gone: Vec<Box<dyn Sleeper>>,
}

impl Slot {
    /// Wakes every sleeper of the slot, each with a receiver of its ring.
    pub(super) fn wake_all(&mut self, taken: &mut Taken) {
        if self.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        let tx = self.sender();
        taken
            .woken
            .extend(parked.into_iter().map(|sleeper| (sleeper, tx.subscribe())));
    }

    /// Takes the `i`th sleeper out, listening.
    fn take_one(&mut self, i: usize) -> (Box<dyn Sleeper>, broadcast::Receiver<Delivery>) {
        let sleeper = self.parked.swap_remove(i);
        (sleeper, self.sender().subscribe())
    }
}

impl Taken {
    pub(super) fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.keeping.is_empty() && self.gone.is_empty()
    }

    /// Hands sleepers a delivery woke to the task that looks over them,
    /// which starts them. A delivery on the embedded bus runs inside the
    /// publish, under the bus's lock: starting a stream there (its frames,
    /// its task, a worker woken for it) held every other publish back,
    /// and cost the many-channels bench 40 % of its rate.
    pub(super) fn hand_over(self, fanout: &Fanout) {
        if self.is_empty() {
            return;
        }
        let mut waking = fanout.waking.lock().unwrap_or_else(|p| p.into_inner());
        waking.woken.extend(self.woken);
        waking.keeping.extend(self.keeping);
        waking.gone.extend(self.gone);
        drop(waking);
        fanout.wake_now.notify_one();
    }

    /// Outside the hub's lock. A sleeper that writes its keep-alive is
    /// counted again when it parks again.
    pub(super) fn finish(self, gauges: &super::Gauges) {
        let out = self.woken.len() + self.keeping.len() + self.gone.len();
        gauges.asleep.decrement(out as f64);
        for (sleeper, rx) in self.woken {
            sleeper.wake(Some(rx));
        }
        for (sleeper, rx) in self.keeping {
            sleeper.keep_alive(rx);
        }
        drop(self.gone);
    }
}

impl Hub {
    /// Puts a quiet stream of `channel` to sleep, unless something reached
    /// its receiver meanwhile: then it is woken at once, still listening.
    pub fn park(&self, channel: &Channel, mut sleeper: Box<dyn Sleeper>) {
        let mut slots = self.fanout.lock();
        // Deliveries are sent under this lock: an empty receiver now means
        // the slot will wake the sleeper for the next one.
        let slot = match slots.map.get_mut(channel) {
            Some(slot) if sleeper.let_go() => slot,
            _ => {
                drop(slots);
                sleeper.wake(None);
                return;
            }
        };
        if slot.parked.is_empty() {
            // Most channels have one sleeper: room for exactly one.
            slot.parked.reserve_exact(1);
        }
        slot.parked.push(sleeper);
        slot.let_ring_go(self.fanout.capacity);
        drop(slots);
        self.fanout.gauges.asleep.increment(1);
        if !self.fanout.checking.swap(true, Ordering::AcqRel) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let wake_now = self.fanout.wake_now.clone();
                rt.spawn(look_over(Arc::downgrade(&self.fanout), wake_now));
            }
        }
    }
}

/// Looks over the node's sleepers every [`CHECK_EVERY`], and starts the
/// ones deliveries woke, while the node's fan-out lives.
async fn look_over(fanout: Weak<Fanout>, wake_now: Arc<tokio::sync::Notify>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        let check = tokio::select! {
            _ = every.tick() => true,
            _ = wake_now.notified() => false,
        };
        let Some(fanout) = fanout.upgrade() else {
            return;
        };
        let woken = std::mem::take(&mut *fanout.waking.lock().unwrap_or_else(|p| p.into_inner()));
        woken.finish(&fanout.gauges);
        if check {
            fanout.check_sleepers(Instant::now());
        }
    }
}

impl Fanout {
    /// One look over every sleeper of the node.
    pub(super) fn check_sleepers(&self, now: Instant) {
        let mut taken = Taken::default();
        {
            let mut slots = self.lock();
            for (_, slot) in slots.map.iter_mut() {
                if slot.parked.is_empty() {
                    continue;
                }
                let mut i = 0;
                while i < slot.parked.len() {
                    match slot.parked[i].check(now) {
                        Check::Stay => i += 1,
                        Check::Wake => taken.woken.push(slot.take_one(i)),
                        Check::KeepAlive => taken.keeping.push(slot.take_one(i)),
                        Check::Gone => taken.gone.push(slot.parked.swap_remove(i)),
                    }
                }
            }
        }
        taken.finish(&self.gauges);
    }
}
