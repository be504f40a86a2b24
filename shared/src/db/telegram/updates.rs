//! Stored Telegram updates and the lock that serialises their handling.
//!
//! Invariant: an update is stored once (its id is the key), with the job that handles it in
//! the same transaction; updates are handled one at a time, oldest first.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor, PgPool, Postgres};

use crate::{
    TelegramUpdateId,
    jobs::{self, TelegramUpdate},
};

/// Store an update once, with the job that handles it; returns whether it was new. `raw` is
/// the update's JSON exactly as Telegram sent it, kept as text beside its parsed `payload`.
pub async fn store_update(
    conn: &mut PgConnection,
    update_id: TelegramUpdateId,
    payload: &serde_json::Value,
    raw: &str,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO telegram_updates (update_id, payload, raw) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(update_id)
    .bind(payload)
    .bind(raw)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        jobs::enqueue(conn, &TelegramUpdate { update_id }, max_attempts).await?;
    }
    Ok(inserted)
}

/// The update's JSON as Telegram sent it (re-encoded from the jsonb copy for rows stored
/// before the raw text was kept), unless it was handled already.
pub async fn pending_update(db: impl PgExecutor<'_>, update_id: TelegramUpdateId) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT coalesce(raw, payload::text) FROM telegram_updates WHERE update_id = $1 AND processed_at IS NULL",
    )
    .bind(update_id)
    .fetch_optional(db)
    .await
}

pub async fn finish_update(db: impl PgExecutor<'_>, update_id: TelegramUpdateId, outcome: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE telegram_updates SET processed_at = now(), outcome = $2 WHERE update_id = $1")
        .bind(update_id)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(())
}

/// Lock key serialising the handling of Telegram updates.
const UPDATES_LOCK: i64 = 0x636f_6e63_7475; // "conctu"

/// Wait for the right to handle updates: a transaction holding a transaction-level advisory
/// lock, released when it ends, however that happens (dropped, the job cancelled, the
/// connection lost). Waiting holds no connection: jobs queued behind the holder must not
/// starve it of the pool.
pub async fn lock_updates(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(UPDATES_LOCK).fetch_one(&mut *tx).await?;
        if locked {
            return Ok(tx);
        }
        tx.rollback().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The updates not handled yet, up to and including `update_id`, oldest first.
pub async fn pending_updates_through(
    db: impl PgExecutor<'_>,
    update_id: TelegramUpdateId,
) -> sqlx::Result<Vec<TelegramUpdateId>> {
    sqlx::query_scalar(
        "SELECT update_id FROM telegram_updates WHERE processed_at IS NULL AND update_id <= $1 ORDER BY update_id",
    )
    .bind(update_id)
    .fetch_all(db)
    .await
}
