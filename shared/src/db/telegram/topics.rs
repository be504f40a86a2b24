//! A conversation's forum topic in the support group, and the claim that makes one job create it.
//!
//! Invariant: a conversation has at most one topic row (the primary key); only the job holding
//! an unexpired claim asks Telegram to create a topic, and the thread id recorded is the first
//! one that arrived for the row's current chat.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::{ConversationId, TelegramChatId, TelegramThreadId};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Topic {
    pub conversation_id: ConversationId,
    pub chat_id: TelegramChatId,
    pub thread_id: Option<TelegramThreadId>,
    pub name: String,
    pub card_queued_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

macro_rules! topic_columns {
    () => {
        "conversation_id, chat_id, thread_id, name, card_queued_at, created_at"
    };
}

pub async fn topic(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<Topic>> {
    sqlx::query_as(concat!("SELECT ", topic_columns!(), " FROM telegram_topics WHERE conversation_id = $1"))
        .bind(conversation_id)
        .fetch_optional(db)
        .await
}

pub async fn topic_by_thread(
    db: impl PgExecutor<'_>,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<Option<Topic>> {
    sqlx::query_as(concat!("SELECT ", topic_columns!(), " FROM telegram_topics WHERE chat_id = $1 AND thread_id = $2"))
        .bind(chat_id)
        .bind(thread_id)
        .fetch_optional(db)
        .await
}

/// Where the creation of a conversation's topic stands, for the job that wants it.
#[derive(Debug, PartialEq, Eq)]
pub enum TopicClaim {
    /// The topic exists.
    Ready(TelegramThreadId),
    /// This job holds the claim and must create the topic.
    Claimed,
    /// Another job is creating it.
    Busy,
}

/// Claim the creation of the conversation's topic, unless it exists or another job holds an
/// unexpired claim. Claims expire after `lease`, so a job that died mid-way does not block
/// the next one for ever.
pub async fn claim_topic(
    db: &sqlx::PgPool,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    name: &str,
    lease: Duration,
) -> sqlx::Result<TopicClaim> {
    let lease_ms = lease.as_millis() as i64;
    let inserted = sqlx::query(
        "INSERT INTO telegram_topics (conversation_id, chat_id, name, claimed_until)
         VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond') ON CONFLICT DO NOTHING",
    )
    .bind(conversation_id)
    .bind(chat_id)
    .bind(name)
    .bind(lease_ms)
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(TopicClaim::Claimed);
    }
    // A lapsed claim is taken over; so is a topic in another group than the configured one (the
    // support group moved): the conversation gets a topic, and a card, in the new group, and
    // its waiting posts follow.
    let taken_over = sqlx::query(
        "UPDATE telegram_topics
         SET claimed_until = now() + $2 * interval '1 millisecond', name = $3, chat_id = $4,
             thread_id = NULL, card_queued_at = NULL
         WHERE conversation_id = $1
           AND ((thread_id IS NULL AND (claimed_until IS NULL OR claimed_until < now())) OR chat_id <> $4)",
    )
    .bind(conversation_id)
    .bind(lease_ms)
    .bind(name)
    .bind(chat_id)
    .execute(db)
    .await?
    .rows_affected();
    if taken_over == 1 {
        return Ok(TopicClaim::Claimed);
    }
    let thread: Option<Option<TelegramThreadId>> =
        sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1")
            .bind(conversation_id)
            .fetch_optional(db)
            .await?;
    Ok(match thread.flatten() {
        Some(thread) => TopicClaim::Ready(thread),
        None => TopicClaim::Busy,
    })
}

/// Record the topic Telegram created in `chat_id`; done the moment its id is known. Returns
/// the conversation's topic in that chat: this one, or one another job recorded first (then
/// this one is spare); `None` when the conversation's topic row has moved to another chat
/// meanwhile (the support group changed), which makes this one spare too.
pub async fn set_thread(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<Option<TelegramThreadId>> {
    let recorded: Option<TelegramThreadId> = sqlx::query_scalar(
        "UPDATE telegram_topics SET thread_id = $2, claimed_until = NULL
         WHERE conversation_id = $1 AND chat_id = $3 AND thread_id IS NULL RETURNING thread_id",
    )
    .bind(conversation_id)
    .bind(thread_id)
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    if recorded.is_some() {
        return Ok(recorded);
    }
    let existing: Option<Option<TelegramThreadId>> =
        sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1 AND chat_id = $2")
            .bind(conversation_id)
            .bind(chat_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(existing.flatten())
}

/// The conversation's topic was deleted in Telegram: forget it, so that a new one is made
/// (its posts wait until then).
pub async fn forget_thread(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET thread_id = NULL, card_queued_at = NULL, claimed_until = NULL
         WHERE conversation_id = $1 AND chat_id = $2 AND thread_id = $3",
    )
    .bind(conversation_id)
    .bind(chat_id)
    .bind(thread_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Extend a creation claim while Telegram is being asked.
pub async fn renew_claim(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    lease: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET claimed_until = now() + $2 * interval '1 millisecond'
         WHERE conversation_id = $1 AND thread_id IS NULL",
    )
    .bind(conversation_id)
    .bind(lease.as_millis() as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// Give up a creation claim after a failed request, so that a retry may claim at once.
pub async fn release_claim(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<()> {
    sqlx::query("UPDATE telegram_topics SET claimed_until = NULL WHERE conversation_id = $1 AND thread_id IS NULL")
        .bind(conversation_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Take a place under the cap on new topics in `chat_id` (`per_window` creations in any
/// `window`, all workers together) for the conversation's topic, or say how long until one
/// frees: then nothing is taken. A place is taken before Telegram is asked and kept whatever
/// Telegram answers, so a failing group is not asked more often either.
pub async fn reserve_creation(
    pool: &sqlx::PgPool,
    chat_id: TelegramChatId,
    conversation_id: ConversationId,
    per_window: u32,
    window: Duration,
) -> sqlx::Result<Option<Duration>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('concierge topic creations ' || ($1::bigint)::text, 0))",
    )
    .bind(chat_id)
    .execute(&mut *tx)
    .await?;
    // The creation that, with the newer ones, fills the cap: when it leaves the window, a
    // place frees.
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM created_at + $3 * interval '1 millisecond' - now())::float8
         FROM telegram_topic_creations
         WHERE chat_id = $1 AND created_at > now() - $3 * interval '1 millisecond'
         ORDER BY created_at DESC OFFSET $2 - 1 LIMIT 1",
    )
    .bind(chat_id)
    .bind(i64::from(per_window))
    .bind(window.as_millis() as i64)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(wait) = wait {
        tx.rollback().await?;
        return Ok(Some(Duration::from_secs_f64(wait.max(0.0))));
    }
    sqlx::query("INSERT INTO telegram_topic_creations (chat_id, conversation_id) VALUES ($1, $2)")
        .bind(chat_id)
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(None)
}
