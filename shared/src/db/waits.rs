//! How long users wait for a person: each hand-over opens a wait, the first operator reply
//! answers it, handing back or closing ends it. The SLA job claims the waits that ran past the
//! SLA and reminds the topic of them; the console shows the open ones.
//!
//! Invariant: a conversation has at most one open wait (a partial unique index), and a wait
//! gets each of its reminders once however many workers look (rows are claimed with
//! `FOR UPDATE SKIP LOCKED` and counted in the transaction that queues the reminder).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::ConversationId;

/// The conversation was handed to a person: the user waits from now, unless they already do.
pub async fn start(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO human_waits (conversation_id) VALUES ($1)
         ON CONFLICT (conversation_id) WHERE answered_at IS NULL AND ended_at IS NULL DO NOTHING",
    )
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(())
}

/// An operator replied: the open wait, if any, is answered. Returns how long the user waited.
pub async fn answer(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<Duration>> {
    let waited: Option<f64> = sqlx::query_scalar(
        "UPDATE human_waits SET answered_at = now()
         WHERE conversation_id = $1 AND answered_at IS NULL AND ended_at IS NULL
         RETURNING EXTRACT(EPOCH FROM now() - since)::float8",
    )
    .bind(conversation_id)
    .fetch_optional(db)
    .await?;
    Ok(waited.map(|seconds| Duration::from_secs_f64(seconds.max(0.0))))
}

/// The conversation left people without a reply (handed back to the bot, or closed).
pub async fn end(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE human_waits SET ended_at = now()
         WHERE conversation_id = $1 AND answered_at IS NULL AND ended_at IS NULL",
    )
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Since when the users of these conversations have waited for a person, for those who do.
pub async fn open_since(
    db: impl PgExecutor<'_>,
    conversation_ids: &[ConversationId],
) -> sqlx::Result<Vec<(ConversationId, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT conversation_id, since FROM human_waits
         WHERE conversation_id = ANY($1) AND answered_at IS NULL AND ended_at IS NULL",
    )
    .bind(conversation_ids.iter().map(|id| id.0).collect::<Vec<uuid::Uuid>>())
    .fetch_all(db)
    .await
}

/// A reminder the SLA job owes a topic.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueReminder {
    pub conversation_id: ConversationId,
    pub wait_id: i64,
    /// 1 for the first reminder, 2 for the second.
    pub reminder: i16,
    pub since: DateTime<Utc>,
    pub locale: String,
}

/// Claim the reminders due: open waits of open human conversations whose topic is in
/// Telegram, waiting longer than `sla` times the next reminder's number, with fewer than
/// `max_reminders` so far. Each is counted (and the first marks the breach) in `conn`'s
/// transaction, which must queue the reminders too: a worker that fails rolls its claim back.
pub async fn claim_due_reminders(
    conn: &mut PgConnection,
    sla: Duration,
    max_reminders: i16,
    limit: i64,
) -> sqlx::Result<Vec<DueReminder>> {
    sqlx::query_as(
        "WITH due AS (
             SELECT w.id FROM human_waits w
             JOIN conversations c ON c.id = w.conversation_id
             JOIN telegram_topics t ON t.conversation_id = w.conversation_id
             WHERE w.answered_at IS NULL AND w.ended_at IS NULL AND w.reminders < $2
               AND c.status = 'open' AND c.mode = 'human' AND t.card_queued_at IS NOT NULL
               AND w.since + (w.reminders + 1) * $1 * interval '1 millisecond' <= now()
             ORDER BY w.since LIMIT $3
             FOR UPDATE OF w SKIP LOCKED
         )
         UPDATE human_waits w SET reminders = w.reminders + 1, breached_at = COALESCE(w.breached_at, now())
         FROM due, conversations c
         WHERE w.id = due.id AND c.id = w.conversation_id
         RETURNING w.conversation_id, w.id AS wait_id, w.reminders AS reminder, w.since, c.locale",
    )
    .bind(sla.as_millis() as i64)
    .bind(max_reminders)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Waits in `[from, to)` that ran past the SLA (their first reminder fell in the span).
pub async fn breaches(db: impl PgExecutor<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM human_waits WHERE breached_at >= $1 AND breached_at < $2")
        .bind(from)
        .bind(to)
        .fetch_one(db)
        .await
}
