//! Fan-out of database events to this process's SSE streams.
//!
//! One `LISTEN concierge_events` connection per API process, whatever the number of streams.
//! A notification only wakes the streams of its conversation; each stream then reads
//! `seq > last sent` from the database itself. Reading rather than trusting payloads is what
//! makes streams gapless: notifications coalesce, and when the listener's connection drops,
//! every stream is woken on reconnect and catches up from its own position.
//! Ephemeral events (typing, streamed answer text) are not stored: they are passed on as they
//! come, and a stream that misses one loses nothing, since the final message follows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use concierge_shared::{
    ConversationId,
    db::{self, Heard},
    events,
};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Hub {
    conversations: Arc<Mutex<HashMap<ConversationId, Channels>>>,
    /// Every committed message of every conversation, for the admin console.
    activity: broadcast::Sender<(ConversationId, i64)>,
}

impl Default for Hub {
    fn default() -> Self {
        Self { conversations: Default::default(), activity: broadcast::channel(ACTIVITY_CAPACITY).0 }
    }
}

/// Activity events a console may fall behind on before it skips some (it then reloads).
const ACTIVITY_CAPACITY: usize = 1024;

/// What the streams of one conversation listen to.
struct Channels {
    /// Bumped when messages may have been committed.
    wake: watch::Sender<u64>,
    /// Typing and streamed text, passed on as they come.
    live: broadcast::Sender<Arc<events::Event>>,
}

/// Ephemeral events a stream may fall behind on before it skips some.
const LIVE_CAPACITY: usize = 64;

/// A stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Hub,
    conversation: ConversationId,
    wake: Option<watch::Receiver<u64>>,
    live: broadcast::Receiver<Arc<events::Event>>,
}

/// What woke a stream.
pub enum Signal {
    /// Read the messages after the last one sent.
    CatchUp,
    /// Pass this on.
    Live(Arc<events::Event>),
}

impl Subscription {
    /// Wait until something may have happened in the conversation.
    pub async fn next(&mut self) -> Signal {
        let wake = self.wake.as_mut().expect("present until drop");
        loop {
            tokio::select! {
                // Live events first: one announced before a message (the typing that message
                // ends) must not reach the stream after it.
                biased;
                event = self.live.recv() => match event {
                    Ok(event) => return Signal::Live(event),
                    // Skipped ephemeral events are harmless; a closed channel cannot be while
                    // we are registered.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                },
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The sender is only removed once no receiver is left, so this cannot
                        // happen while we hold one; never spin if it does.
                        std::future::pending::<()>().await;
                    }
                    return Signal::CatchUp;
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.conversations.lock().expect("hub lock");
        drop(self.wake.take());
        if map.get(&self.conversation).is_some_and(|channels| channels.wake.receiver_count() == 0) {
            map.remove(&self.conversation);
        }
    }
}

impl Hub {
    pub fn subscribe(&self, conversation: ConversationId) -> Subscription {
        let mut map = self.conversations.lock().expect("hub lock");
        let channels = map
            .entry(conversation)
            .or_insert_with(|| Channels { wake: watch::channel(0).0, live: broadcast::channel(LIVE_CAPACITY).0 });
        Subscription {
            hub: self.clone(),
            conversation,
            wake: Some(channels.wake.subscribe()),
            live: channels.live.subscribe(),
        }
    }

    /// Every conversation's new messages, as `(conversation, seq)`.
    pub fn activity(&self) -> broadcast::Receiver<(ConversationId, i64)> {
        self.activity.subscribe()
    }

    fn dispatch(&self, event: events::Event) {
        if let events::Event::Message { conversation_id, seq } = event {
            let _ = self.activity.send((conversation_id, seq));
        }
        let map = self.conversations.lock().expect("hub lock");
        let Some(channels) = map.get(&event.conversation_id()) else { return };
        match event {
            events::Event::Message { .. } => channels.wake.send_modify(|generation| *generation += 1),
            live => {
                let _ = channels.live.send(Arc::new(live));
            }
        }
    }

    fn wake_all(&self) {
        for channels in self.conversations.lock().expect("hub lock").values() {
            channels.wake.send_modify(|generation| *generation += 1);
        }
    }

    /// Listen until `shutdown`, reconnecting with backoff. Returns once listening has begun,
    /// so that events committed after this call are never missed.
    pub async fn start(&self, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
        let hub = self.clone();
        db::listen(&pool, events::CHANNEL, shutdown, move |heard| match heard {
            Heard::Notification(payload) => match serde_json::from_str::<events::Event>(payload) {
                Ok(event) => hub.dispatch(event),
                Err(error) => tracing::warn!(%error, payload, "unreadable event"),
            },
            // Every stream reads what it missed.
            Heard::Gap => hub.wake_all(),
        })
        .await?;
        Ok(())
    }
}
