//! Hand-overs to a person that principals asked for with the button, counted for the daily
//! quota. Counting rows in the database, under a per-owner lock, makes the quota hold across
//! API processes and restarts, and two concurrent requests cannot both take the last place.

use std::time::Duration;

use sqlx::PgConnection;

use crate::{ConversationId, OwnerKey};

/// How long the quota counts back.
const WINDOW_SECS: f64 = 86_400.0;

/// Record one more escalation request of `owner`, unless `per_day` were made in the last 24
/// hours: then nothing is recorded and the wait until the oldest of them ages out is returned.
/// The per-owner lock lasts until the caller's transaction ends, so the request must commit
/// (or roll back) with the escalation it allows.
pub async fn record_request(
    tx: &mut PgConnection,
    owner: &OwnerKey,
    conversation_id: ConversationId,
    per_day: u32,
) -> sqlx::Result<Option<Duration>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('concierge escalations ' || $1, 0))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    // The request that, with the newer ones, fills the quota: when it ages out, a place frees.
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM created_at + $3 * interval '1 second' - now())::float8
         FROM escalation_requests
         WHERE owner = $1 AND created_at > now() - $3 * interval '1 second'
         ORDER BY created_at DESC OFFSET $2 - 1 LIMIT 1",
    )
    .bind(owner)
    .bind(i64::from(per_day))
    .bind(WINDOW_SECS)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(wait) = wait {
        return Ok(Some(Duration::from_secs_f64(wait.max(0.0))));
    }
    sqlx::query("INSERT INTO escalation_requests (owner, conversation_id) VALUES ($1, $2)")
        .bind(owner)
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    Ok(None)
}
