//! Fan-out of database events to this process's SSE streams.
//!
//! One `LISTEN concierge_events` connection per API process, whatever the number of streams.
//! A notification only wakes the streams of its conversation. Streams send what comes after
//! their own position, from the conversation's [`Tail`] (a window of its latest messages,
//! shared by its streams in the process) or from the database, which is what makes them
//! gapless: when the listener's connection drops, every stream is woken on reconnect and
//! catches up from its own position.
//!
//! The tail is filled without reads where it can be: a notification carries its message (when
//! it fits), and a message this process committed itself (a user's post, an operator's
//! console reply) is handed over by the route ([`Hub::committed`]); either joins the tail when
//! the tail ends right before it. Otherwise (a message too long for a notification, a gap, a
//! stream already reading) the first stream woken reads the new messages into the tail, and
//! the conversation's other streams take them from there: one read per conversation per
//! notification. A stream further behind than the window (a reconnect with an old
//! `Last-Event-ID`) pages through the database itself. Edited messages are read once per edit
//! the same way.
//!
//! Ephemeral events (typing, streamed answer text) are not stored: they are passed on as they
//! come, and a stream that misses one loses nothing, since the final message follows.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use concierge_shared::{
    ConversationId,
    db::{self, Heard, messages::Message},
    events,
};
use sqlx::PgPool;
use tokio::sync::{OnceCell, broadcast, watch};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Hub {
    conversations: Arc<Mutex<HashMap<ConversationId, Channels>>>,
    /// Every committed message of every conversation, for the admin console.
    activity: broadcast::Sender<(ConversationId, i64)>,
    /// Message reads the streams of this process have made.
    reads: Arc<AtomicU64>,
    next_subscriber: Arc<AtomicU64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            conversations: Default::default(),
            activity: broadcast::channel(ACTIVITY_CAPACITY).0,
            reads: Default::default(),
            next_subscriber: Default::default(),
        }
    }
}

/// Activity events a console may fall behind on before it skips some (it then reloads).
const ACTIVITY_CAPACITY: usize = 1024;

/// What the streams of one conversation listen to.
struct Channels {
    /// Bumped when messages may have been committed; the value is the wake's generation.
    wake: watch::Sender<u64>,
    /// Typing, streamed text and edits, passed on as they come.
    live: broadcast::Sender<Arc<Live>>,
    /// The latest messages, shared by the conversation's streams.
    tail: Arc<tokio::sync::Mutex<Tail>>,
}

/// Ephemeral events a stream may fall behind on before it skips some.
const LIVE_CAPACITY: usize = 64;

/// Most messages a conversation's tail keeps, however far behind one of its streams is. It
/// usually holds far fewer: what some stream of the conversation has yet to send.
const TAIL_CAPACITY: usize = 256;

/// An ephemeral event, shared by every stream of its conversation.
pub struct Live {
    pub event: events::Event,
    /// For an edit: the message as it now reads, read by the first stream that needs it.
    edited: OnceCell<Option<Arc<Message>>>,
}

impl Live {
    /// The edited message (`None`: not an edit, or the message is gone), read from the
    /// database once for all streams.
    pub async fn edited_message(&self, pool: &PgPool) -> sqlx::Result<Option<Arc<Message>>> {
        let events::Event::Edited { message_id, .. } = self.event else { return Ok(None) };
        self.edited
            .get_or_try_init(|| async { Ok(db::messages::get(pool, message_id).await?.map(Arc::new)) })
            .await
            .cloned()
    }
}

/// A window of a conversation's latest messages: every message with `start < seq <= end`.
/// It is complete as of wake generation `read_at`: every commit announced up to that
/// generation's notification is in it, either because the read that filled it began after the
/// notification, or because the announced message was already in it (carried by its
/// notification, or committed by this process, see [`Hub::committed`]).
#[derive(Default)]
struct Tail {
    read_at: Option<u64>,
    start: i64,
    end: i64,
    messages: VecDeque<Arc<Message>>,
    /// How far each stream of the conversation has read, by subscription: what all of them
    /// have read is dropped.
    positions: HashMap<u64, i64>,
}

impl Tail {
    fn covers(&self, after: i64) -> bool {
        self.read_at.is_some() && after >= self.start && after <= self.end
    }

    fn after(&self, after: i64) -> Vec<Arc<Message>> {
        self.messages.iter().filter(|message| message.seq > after).cloned().collect()
    }

    /// An empty window from `start`, complete as of `read_at`; the streams' positions stay.
    fn reset(&mut self, read_at: Option<u64>, start: i64) {
        self.read_at = read_at;
        self.start = start;
        self.end = start;
        self.messages.clear();
    }

    fn append(&mut self, messages: &[Arc<Message>]) {
        for message in messages {
            self.end = message.seq;
            self.messages.push_back(message.clone());
        }
    }

    /// Note how far a stream has read, and forget what every stream has read and the oldest
    /// messages beyond the capacity.
    fn trim(&mut self, subscriber: u64, read_up_to: i64) {
        self.positions.insert(subscriber, read_up_to);
        let all_read = self.positions.values().copied().min().unwrap_or(read_up_to);
        while self.messages.front().is_some_and(|message| message.seq <= all_read) {
            let dropped = self.messages.pop_front().expect("a front message");
            self.start = dropped.seq;
        }
        self.keep_capacity();
    }

    /// Add a message committed right after the tail's last one (see [`Hub::committed`]); any
    /// other is left for a read.
    fn extend(&mut self, message: Arc<Message>) {
        if self.read_at.is_some() && self.end == message.seq - 1 {
            self.append(&[message]);
            // Streams that stopped reading must not make the window grow without bound; one
            // left behind its start reads for itself.
            self.keep_capacity();
        }
    }

    /// Forget the oldest messages beyond the capacity.
    fn keep_capacity(&mut self) {
        while self.messages.len() > TAIL_CAPACITY {
            let dropped = self.messages.pop_front().expect("longer than the capacity");
            self.start = dropped.seq;
        }
    }
}

/// A page of messages for one stream; `more`: the page was full, read again.
pub struct Page {
    pub messages: Vec<Arc<Message>>,
    pub more: bool,
}

/// A stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Hub,
    conversation: ConversationId,
    wake: Option<watch::Receiver<u64>>,
    live: broadcast::Receiver<Arc<Live>>,
    tail: Arc<tokio::sync::Mutex<Tail>>,
    /// The wake generation the stream has seen.
    generation: u64,
    /// Names the subscription in its conversation's tail.
    id: u64,
}

/// What woke a stream.
pub enum Signal {
    /// Read the messages after the last one sent.
    CatchUp,
    /// Pass this on.
    Live(Arc<Live>),
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
                    self.generation = *wake.borrow_and_update();
                    return Signal::CatchUp;
                }
            }
        }
    }

    /// Messages with `seq > after`, at most `limit` of them: from the conversation's tail when
    /// it reaches back that far, otherwise from the database. A tail older than the latest wake
    /// is brought up to date by one read, which the conversation's other streams then share.
    pub async fn read_after(&self, pool: &PgPool, after: i64, limit: i64) -> sqlx::Result<Page> {
        let mut tail = self.tail.lock().await;
        if tail.covers(after) {
            if tail.read_at < Some(self.generation) {
                let fresh = self.hub.read(pool, self.conversation, tail.end, limit).await?;
                if fresh.more {
                    // Too much at once for the window: start it afresh on a later read.
                    tail.reset(None, 0);
                    drop(tail);
                    return self.hub.read(pool, self.conversation, after, limit).await;
                }
                tail.append(&fresh.messages);
                tail.read_at = Some(self.generation);
            }
            let messages = tail.after(after);
            let more = messages.len() as i64 > limit;
            let messages: Vec<_> = messages.into_iter().take(limit as usize).collect();
            tail.trim(self.id, messages.last().map_or(after, |message| message.seq));
            return Ok(Page { messages, more });
        }
        let page = self.hub.read(pool, self.conversation, after, limit).await?;
        if !page.more && tail.read_at < Some(self.generation) {
            // Complete up to now: it becomes the conversation's window.
            tail.reset(Some(self.generation), after);
            tail.append(&page.messages);
        }
        if tail.read_at.is_some() {
            tail.trim(self.id, page.messages.last().map_or(after, |message| message.seq));
        }
        Ok(page)
    }
}

impl Hub {
    /// How many times this process's streams have read messages from the database.
    pub fn database_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    async fn read(&self, pool: &PgPool, conversation: ConversationId, after: i64, limit: i64) -> sqlx::Result<Page> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("concierge_sse_reads_total").increment(1);
        let mut messages = db::messages::list_after(pool, conversation, after, limit + 1).await?;
        let more = messages.len() as i64 > limit;
        messages.truncate(limit as usize);
        Ok(Page { messages: messages.into_iter().map(Arc::new).collect(), more })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The tail is locked while a stream reads; forget this one's position once it is free.
        match self.tail.clone().try_lock_owned() {
            Ok(mut tail) => {
                tail.positions.remove(&self.id);
            }
            Err(_) => {
                let (tail, id) = (self.tail.clone(), self.id);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { tail.lock().await.positions.remove(&id) });
                }
            }
        }
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
        let channels = map.entry(conversation).or_insert_with(|| Channels {
            wake: watch::channel(0).0,
            live: broadcast::channel(LIVE_CAPACITY).0,
            tail: Default::default(),
        });
        let wake = channels.wake.subscribe();
        let generation = *wake.borrow();
        Subscription {
            hub: self.clone(),
            conversation,
            wake: Some(wake),
            live: channels.live.subscribe(),
            tail: channels.tail.clone(),
            generation,
            id: self.next_subscriber.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Every conversation's new messages, as `(conversation, seq)`.
    pub fn activity(&self) -> broadcast::Receiver<(ConversationId, i64)> {
        self.activity.subscribe()
    }

    /// A message this process has just committed (a user's post, an operator's reply from the
    /// console): it joins its conversation's tail when the tail ends right before it, so that
    /// the streams send it without reading it back when its notification comes.
    ///
    /// That keeps the tail whole: sequence numbers are handed out in commit order (each message
    /// bumps the conversation's `last_seq` in its own transaction, which holds the
    /// conversation's row until it commits), so when the tail holds the number right before
    /// this message's, every earlier message is in it.
    pub fn committed(&self, message: &Message) {
        let tail = {
            let map = self.conversations.lock().expect("hub lock");
            let Some(channels) = map.get(&message.conversation_id) else { return };
            channels.tail.clone()
        };
        // A stream reading the tail will see the message in the database instead.
        let Ok(mut tail) = tail.try_lock() else { return };
        tail.extend(Arc::new(message.clone()));
    }

    fn dispatch(&self, event: events::Event) {
        if let events::Event::Message { conversation_id, seq, .. } = event {
            let _ = self.activity.send((conversation_id, seq));
        }
        let map = self.conversations.lock().expect("hub lock");
        let Some(channels) = map.get(&event.conversation_id()) else { return };
        match event {
            events::Event::Message { seq, message, .. } => {
                let generation = *channels.wake.borrow() + 1;
                if let Ok(mut tail) = channels.tail.try_lock() {
                    // The announced message joins a tail that ends right before it (as
                    // `committed` explains, commit order is sequence order).
                    if let Some(message) = message {
                        tail.extend(Arc::from(message));
                    }
                    // A tail complete as of every earlier notification that holds the announced
                    // message is complete as of this one too: its streams need no read.
                    if tail.read_at == Some(generation - 1) && tail.start < seq && seq <= tail.end {
                        tail.read_at = Some(generation);
                    }
                }
                channels.wake.send_modify(|current| *current = generation);
            }
            event => {
                let _ = channels.live.send(Arc::new(Live { event, edited: OnceCell::new() }));
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
                // Not the payload itself: a message's carries what the user wrote.
                Err(error) => tracing::warn!(%error, bytes = payload.len(), "unreadable event"),
            },
            // Every stream reads what it missed.
            Heard::Gap => hub.wake_all(),
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use concierge_shared::{MessageId, MessageRole, message_meta::MessageMeta};

    use super::*;

    fn message(conversation_id: ConversationId, seq: i64) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id,
            seq,
            role: MessageRole::User,
            content: format!("сообщение {seq}"),
            metadata: MessageMeta::default(),
            client_message_id: None,
            reply_to: None,
            action_run_id: None,
            created_at: chrono::Utc::now(),
            files: 0,
        }
    }

    /// A tail complete up to `end` as of the current wake, as a stream's read leaves it.
    fn complete_tail(subscription: &Subscription, end: i64) {
        let mut tail = subscription.tail.try_lock().unwrap();
        tail.reset(Some(subscription.generation), end);
    }

    /// A hub with one stream of a new conversation, whose tail is complete up to `end`.
    fn watched(end: i64) -> (Hub, ConversationId, Subscription) {
        let hub = Hub::default();
        let conversation = ConversationId::new();
        let subscription = hub.subscribe(conversation);
        complete_tail(&subscription, end);
        (hub, conversation, subscription)
    }

    /// Never connected: a read from it fails, so a page served here came from the tail.
    fn no_database() -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(200))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap()
    }

    #[tokio::test]
    async fn a_message_this_process_committed_reaches_the_streams_without_a_read() {
        let (hub, conversation, mut subscription) = watched(4);

        let posted = message(conversation, 5);
        hub.committed(&posted);
        hub.dispatch(events::Event::Message { conversation_id: conversation, seq: 5, message: None });
        assert!(matches!(subscription.next().await, Signal::CatchUp));

        let page = subscription.read_after(&no_database(), 4, 100).await.unwrap();
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![posted.id]);
        assert_eq!(hub.database_reads(), 0);
    }

    #[tokio::test]
    async fn a_message_its_notification_carries_reaches_the_streams_without_a_read() {
        let (hub, conversation, mut subscription) = watched(4);

        let committed = message(conversation, 5);
        hub.dispatch(events::Event::Message {
            conversation_id: conversation,
            seq: 5,
            message: Some(Box::new(committed.clone())),
        });
        assert!(matches!(subscription.next().await, Signal::CatchUp));

        let page = subscription.read_after(&no_database(), 4, 100).await.unwrap();
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![committed.id]);
        assert_eq!(hub.database_reads(), 0);
    }

    #[tokio::test]
    async fn a_message_announced_after_a_gap_is_read() {
        let (hub, conversation, mut subscription) = watched(4);

        // Seq 5's notification has not come yet: seq 6 must not join the tail across the gap.
        hub.dispatch(events::Event::Message {
            conversation_id: conversation,
            seq: 6,
            message: Some(Box::new(message(conversation, 6))),
        });
        assert_eq!(subscription.tail.try_lock().unwrap().end, 4);
        assert!(matches!(subscription.next().await, Signal::CatchUp));
        assert!(subscription.read_after(&no_database(), 4, 100).await.is_err(), "went to the database");
    }

    #[tokio::test]
    async fn a_commit_the_tail_does_not_hold_is_read() {
        let (hub, conversation, mut subscription) = watched(4);

        // Seq 5 was committed elsewhere (a worker's reply) and is not announced yet: this
        // process's seq 6 must not join the tail across the gap.
        hub.committed(&message(conversation, 6));
        assert_eq!(subscription.tail.try_lock().unwrap().end, 4);
        hub.dispatch(events::Event::Message { conversation_id: conversation, seq: 5, message: None });
        assert!(matches!(subscription.next().await, Signal::CatchUp));
        assert!(subscription.read_after(&no_database(), 4, 100).await.is_err(), "went to the database");
        assert_eq!(hub.database_reads(), 1);
    }

    #[tokio::test]
    async fn a_message_before_the_window_is_read() {
        // A stream that asked for messages after 1000 of a conversation at 5 left an empty
        // window from 1000: seq 6 is not in it.
        let (hub, conversation, mut subscription) = watched(1000);
        hub.dispatch(events::Event::Message { conversation_id: conversation, seq: 6, message: None });
        assert!(matches!(subscription.next().await, Signal::CatchUp));
        assert!(subscription.tail.try_lock().unwrap().read_at < Some(subscription.generation), "not complete");
    }

    #[tokio::test]
    async fn after_a_gap_in_notifications_the_streams_read() {
        let (hub, conversation, mut subscription) = watched(4);
        hub.committed(&message(conversation, 5));

        // The listener reconnected: what it missed is unknown, even for a message the tail holds.
        hub.wake_all();
        hub.dispatch(events::Event::Message { conversation_id: conversation, seq: 5, message: None });
        assert!(matches!(subscription.next().await, Signal::CatchUp));
        assert!(subscription.read_after(&no_database(), 4, 100).await.is_err(), "went to the database");
    }
}
