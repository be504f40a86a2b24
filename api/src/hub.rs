//! Fan-out of database events to this process's SSE streams.
//!
//! One `LISTEN concierge_events` connection per API process, whatever the number of streams.
//! A notification only wakes the streams of its conversation; each stream then reads
//! `seq > last sent` from the database itself. Reading rather than trusting payloads is what
//! makes streams gapless: notifications coalesce, and when the listener's connection drops,
//! every stream is woken on reconnect and catches up from its own position.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use concierge_shared::{ConversationId, events};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Hub {
    conversations: Arc<Mutex<HashMap<ConversationId, watch::Sender<u64>>>>,
}

/// A stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Hub,
    conversation: ConversationId,
    receiver: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// Wait until something may have happened in the conversation.
    pub async fn changed(&mut self) {
        let receiver = self.receiver.as_mut().expect("present until drop");
        if receiver.changed().await.is_err() {
            // The sender is only removed once no receiver is left, so this cannot happen
            // while we hold one; never spin if it does.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.conversations.lock().expect("hub lock");
        drop(self.receiver.take());
        if map.get(&self.conversation).is_some_and(|sender| sender.receiver_count() == 0) {
            map.remove(&self.conversation);
        }
    }
}

impl Hub {
    pub fn subscribe(&self, conversation: ConversationId) -> Subscription {
        let mut map = self.conversations.lock().expect("hub lock");
        let receiver = map.entry(conversation).or_insert_with(|| watch::channel(0).0).subscribe();
        Subscription { hub: self.clone(), conversation, receiver: Some(receiver) }
    }

    /// Streams currently registered in this process.
    pub fn stream_count(&self) -> usize {
        self.conversations.lock().expect("hub lock").values().map(|s| s.receiver_count()).sum()
    }

    fn wake(&self, conversation: ConversationId) {
        if let Some(sender) = self.conversations.lock().expect("hub lock").get(&conversation) {
            sender.send_modify(|generation| *generation += 1);
        }
    }

    fn wake_all(&self) {
        for sender in self.conversations.lock().expect("hub lock").values() {
            sender.send_modify(|generation| *generation += 1);
        }
    }

    /// Listen until `shutdown`, reconnecting with backoff. Returns once listening has begun,
    /// so that events committed after this call are never missed.
    pub async fn start(&self, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(events::CHANNEL).await?;
        let hub = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => {
                        backoff = Duration::from_millis(100);
                        match serde_json::from_str::<events::Event>(notification.payload()) {
                            Ok(event) => hub.wake(event.conversation_id()),
                            Err(error) => tracing::warn!(%error, payload = notification.payload(), "unreadable event"),
                        }
                    }
                    // The connection was lost and re-established: anything may have been missed.
                    Ok(None) => {
                        tracing::warn!("event listener reconnected; waking every stream to catch up");
                        hub.wake_all();
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "event listener failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        hub.wake_all();
                    }
                }
            }
        });
        Ok(())
    }
}
