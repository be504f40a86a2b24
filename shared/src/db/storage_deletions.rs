//! Files to delete from storage because their attachment rows are gone. The trigger of
//! migration `20261205000031_storage_deletions.sql` queues a key in the transaction that deletes
//! the row, so a key is queued exactly when its row goes, whatever deleted it; these functions
//! take the queue down (see `crate::attachments::delete_queued_files`).

use sqlx::PgExecutor;

/// How long a claimed key is left to the process that claimed it.
const CLAIM_SECS: i64 = 300;

/// Claim up to `limit` keys due for deletion: each is not due again for a while, so another
/// process skips it.
pub async fn claim(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE storage_deletions SET next_attempt_at = now() + $2 * interval '1 second', attempts = attempts + 1
         WHERE storage_key IN (SELECT storage_key FROM storage_deletions WHERE next_attempt_at <= now()
                               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING storage_key",
    )
    .bind(limit)
    .bind(CLAIM_SECS)
    .fetch_all(db)
    .await
}

/// The file is gone: forget the key.
pub async fn done(db: impl PgExecutor<'_>, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM storage_deletions WHERE storage_key = $1").bind(key).execute(db).await?;
    Ok(())
}

/// The delete failed: try again later, a minute after the first failure, doubling up to an
/// hour.
pub async fn failed(db: impl PgExecutor<'_>, key: &str, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE storage_deletions SET last_error = left($2, 1000),
             next_attempt_at = now() + least(interval '1 hour', interval '1 minute' * power(2, least(attempts - 1, 10)))
         WHERE storage_key = $1",
    )
    .bind(key)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}
