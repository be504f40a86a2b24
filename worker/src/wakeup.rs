//! When a worker fetches jobs: at once when a job is inserted (LISTEN), again shortly after
//! each notification, and on a slow interval.
//!
//! The re-check closes a race in plain notify-driven fetching: a notification that arrives
//! while a fetch is already in flight wakes a fetch that began before the job committed, finds
//! nothing, and the job would wait for the next poll. A second fetch a few milliseconds after
//! every notification always starts after the commit. The interval picks up what no insert
//! announces: jobs re-queued from a dead worker and retries.
//!
//! A worker process listens for inserts on one connection, whatever the number of its queues
//! ([`Inserts`]), and wakes only the queue a job was inserted into.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{PollSnapshot, PollStrategy};
use concierge_shared::db::{self, Heard};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::{
    sync::watch,
    time::{Instant, Interval, Sleep, interval_at, sleep},
};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

/// Insert notifications for the queues of one worker process, from one LISTEN connection.
#[derive(Clone)]
pub struct Inserts {
    queues: Arc<HashMap<String, watch::Sender<u64>>>,
}

#[derive(Deserialize)]
struct InsertEvent {
    job_type: String,
}

impl Inserts {
    /// Listen for `queues` until `shutdown`, reconnecting with backoff. Returns once listening
    /// has begun.
    pub async fn start(pool: &PgPool, queues: &[&str], shutdown: CancellationToken) -> sqlx::Result<Self> {
        let inserts =
            Self { queues: Arc::new(queues.iter().map(|&queue| (queue.to_owned(), watch::channel(0).0)).collect()) };
        let this = inserts.clone();
        db::listen(pool, concierge_shared::queue_schema::INSERT_CHANNEL, shutdown, move |heard| match heard {
            Heard::Notification(payload) => {
                if let Ok(event) = serde_json::from_str::<InsertEvent>(payload) {
                    this.wake(&event.job_type);
                }
            }
            // Inserts may have been missed.
            Heard::Gap => this.wake_all(),
        })
        .await?;
        Ok(inserts)
    }

    /// A stream that yields after each insert into `queue` (several close together may yield once).
    pub fn subscribe(&self, queue: &str) -> WatchStream<u64> {
        let sender = self.queues.get(queue).unwrap_or_else(|| panic!("queue {queue} is not listened for"));
        WatchStream::from_changes(sender.subscribe())
    }

    fn wake(&self, queue: &str) {
        if let Some(sender) = self.queues.get(queue) {
            sender.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for sender in self.queues.values() {
            sender.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }
}

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
