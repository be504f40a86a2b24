//! Chats the bot cannot post to any more: it was kicked, or the group was upgraded to a
//! supergroup under a new id.
//!
//! Invariant: while a chat has an active stop, nothing is sent there and its posts stay
//! pending (held for the whole chat, not failed one by one); a migration names the chat that
//! takes over, and every later send goes there.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::{ConversationId, TelegramChatId};

/// Why a chat stopped, as the admin console and the system check show it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ChatStop {
    pub chat_id: TelegramChatId,
    /// `kicked` or `migrated`.
    #[schema(example = "kicked")]
    pub reason: String,
    /// Telegram's description of the refusal (or of the service message) that said so.
    pub description: String,
    pub migrate_to_chat_id: Option<TelegramChatId>,
    pub stopped_at: DateTime<Utc>,
    /// Set once sending resumed (the bot is back, or the posts moved to the new chat).
    pub resumed_at: Option<DateTime<Utc>>,
}

/// Stop sending to `chat_id`: the bot was kicked. Returns whether this is news (the stop was
/// not active already).
pub async fn stop_kicked(db: impl PgExecutor<'_>, chat_id: TelegramChatId, description: &str) -> sqlx::Result<bool> {
    let changed = sqlx::query(
        "INSERT INTO telegram_chat_stops AS s (chat_id, reason, description) VALUES ($1, 'kicked', $2)
         ON CONFLICT (chat_id) DO UPDATE
             SET reason = 'kicked', description = $2, migrate_to_chat_id = NULL, stopped_at = now(), resumed_at = NULL
         WHERE s.resumed_at IS NOT NULL OR s.reason <> 'kicked'",
    )
    .bind(chat_id)
    .bind(description)
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Record that `chat_id` became `to` (a group upgraded to a supergroup). Recorded as resumed
/// at once: the sender follows it by itself. Returns whether this is news.
pub async fn record_migration(
    db: impl PgExecutor<'_>,
    chat_id: TelegramChatId,
    to: TelegramChatId,
    description: &str,
) -> sqlx::Result<bool> {
    let changed = sqlx::query(
        "INSERT INTO telegram_chat_stops AS s (chat_id, reason, description, migrate_to_chat_id, resumed_at)
         VALUES ($1, 'migrated', $2, $3, now())
         ON CONFLICT (chat_id) DO UPDATE
             SET reason = 'migrated', description = $2, migrate_to_chat_id = $3, stopped_at = now(), resumed_at = now()
         WHERE s.reason <> 'migrated' OR s.migrate_to_chat_id <> $3",
    )
    .bind(chat_id)
    .bind(description)
    .bind(to)
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// The bot is a member of `chat_id` again: end its kicked stop. Returns whether one ended.
pub async fn resume_chat(db: impl PgExecutor<'_>, chat_id: TelegramChatId) -> sqlx::Result<bool> {
    let resumed = sqlx::query(
        "UPDATE telegram_chat_stops SET resumed_at = now()
         WHERE chat_id = $1 AND reason = 'kicked' AND resumed_at IS NULL",
    )
    .bind(chat_id)
    .execute(db)
    .await?
    .rows_affected();
    Ok(resumed == 1)
}

/// The chat's stop, if any (active or not).
pub async fn chat_stop(db: impl PgExecutor<'_>, chat_id: TelegramChatId) -> sqlx::Result<Option<ChatStop>> {
    sqlx::query_as("SELECT * FROM telegram_chat_stops WHERE chat_id = $1").bind(chat_id).fetch_optional(db).await
}

/// Every stop, newest first: the alerts the console and the system check show.
pub async fn chat_stops(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<ChatStop>> {
    sqlx::query_as("SELECT * FROM telegram_chat_stops ORDER BY stopped_at DESC").fetch_all(db).await
}

/// Where posts for `chat_id` go now: the chat it migrated to (followed over several upgrades,
/// at most a few hops), or itself.
pub async fn current_chat(db: impl PgExecutor<'_>, chat_id: TelegramChatId) -> sqlx::Result<TelegramChatId> {
    let current: Option<TelegramChatId> = sqlx::query_scalar(
        "WITH RECURSIVE hops (chat_id, depth) AS (
             SELECT $1::bigint, 0
             UNION ALL
             SELECT s.migrate_to_chat_id, h.depth + 1 FROM hops h
             JOIN telegram_chat_stops s ON s.chat_id = h.chat_id AND s.reason = 'migrated'
             WHERE h.depth < 8
         )
         SELECT chat_id FROM hops ORDER BY depth DESC LIMIT 1",
    )
    .bind(chat_id)
    .fetch_optional(db)
    .await?;
    Ok(current.unwrap_or(chat_id))
}

/// Conversations with posts waiting: after a chat resumes or moves, each gets a send job.
pub async fn conversations_with_pending_posts(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<ConversationId>> {
    sqlx::query_scalar("SELECT DISTINCT conversation_id FROM telegram_outbox WHERE state = 'pending'")
        .fetch_all(db)
        .await
}
