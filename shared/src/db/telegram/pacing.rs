//! Pacing of sends per chat, through a slot table shared by every worker process.
//!
//! Invariant: two sends to one chat are at least the configured interval apart, however many
//! processes send, and none starts while Telegram's last `retry_after` lasts.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::TelegramChatId;

/// Reserve the chat's next send slot, `interval` after the previous one; returns how long to
/// wait for it. Every process shares the slots, so the group's pace holds however many
/// workers send.
pub async fn reserve_slot(
    db: impl PgExecutor<'_>,
    chat_id: TelegramChatId,
    interval: Duration,
) -> sqlx::Result<Duration> {
    let wait_ms: f64 = sqlx::query_scalar(
        "INSERT INTO telegram_rate AS r (chat_id, next_at) VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
         ON CONFLICT (chat_id) DO UPDATE
             SET next_at = GREATEST(r.next_at, clock_timestamp()) + $2 * interval '1 millisecond'
         RETURNING GREATEST(0, extract(epoch FROM (r.next_at - $2 * interval '1 millisecond' - clock_timestamp())) * 1000)::float8",
    )
    .bind(chat_id)
    .bind(interval.as_millis() as i64)
    .fetch_one(db)
    .await?;
    Ok(Duration::from_millis(wait_ms as u64))
}

/// Telegram asked to wait (429 `retry_after`): no slot of the chat starts before then, and
/// slots already reserved inside the pause are not used (see [`held_for`]).
pub async fn hold_chat(db: impl PgExecutor<'_>, chat_id: TelegramChatId, pause: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO telegram_rate AS r (chat_id, next_at, held_until)
         VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond', clock_timestamp() + $2 * interval '1 millisecond')
         ON CONFLICT (chat_id) DO UPDATE
             SET next_at = GREATEST(r.next_at, excluded.next_at),
                 held_until = GREATEST(r.held_until, excluded.held_until)",
    )
    .bind(chat_id)
    .bind(pause.as_millis() as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// How much longer the chat is on hold after a 429; zero when it is not.
pub async fn held_for(db: impl PgExecutor<'_>, chat_id: TelegramChatId) -> sqlx::Result<Duration> {
    let wait_ms: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(0, extract(epoch FROM (held_until - clock_timestamp())) * 1000)::float8
         FROM telegram_rate WHERE chat_id = $1 AND held_until IS NOT NULL",
    )
    .bind(chat_id)
    .fetch_optional(db)
    .await?;
    Ok(Duration::from_millis(wait_ms.unwrap_or(0.0) as u64))
}
