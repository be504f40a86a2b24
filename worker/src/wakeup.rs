//! When a worker fetches jobs: at once when a job is inserted (LISTEN), again shortly after
//! each notification, and on a slow interval.
//!
//! The re-check closes a race in plain notify-driven fetching: a notification that arrives
//! while a fetch is already in flight wakes a fetch that began before the job committed, finds
//! nothing, and the job would wait for the next poll. A second fetch a few milliseconds after
//! every notification always starts after the commit. The interval picks up what no insert
//! announces: jobs re-queued from a dead worker and retries.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Interval, Sleep, interval_at, sleep};

pub struct Wakeup<S> {
    notifications: S,
    recheck: Option<Pin<Box<Sleep>>>,
    recheck_after: Duration,
    interval: Interval,
}

impl<S> Wakeup<S> {
    pub fn new(notifications: S, recheck_after: Duration, poll_every: Duration) -> Self {
        Self {
            notifications,
            recheck: None,
            recheck_after,
            interval: interval_at(Instant::now() + poll_every, poll_every),
        }
    }
}

impl<S: Stream + Unpin> PollStrategy for Wakeup<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut wake = false;
        while let Poll::Ready(Some(_)) = self.notifications.poll_next_unpin(cx) {
            wake = true;
            self.recheck = Some(Box::pin(sleep(self.recheck_after)));
        }
        if let Some(recheck) = &mut self.recheck
            && recheck.as_mut().poll(cx).is_ready()
        {
            self.recheck = None;
            wake = true;
        }
        while self.interval.poll_tick(cx).is_ready() {
            wake = true;
        }
        if wake {
            // Poll the backend again: it starts a fetch unless one is in flight.
            cx.waker().wake_by_ref();
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
