//! Live worker processes, so that operators (and tests) can see which queues run where and
//! which knowledge version each one answers from.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};

pub struct Instance<'a> {
    pub id: &'a str,
    pub host: &'a str,
    pub pid: i32,
    pub queues: &'a [String],
}

/// Record that the instance is alive with this knowledge version.
pub async fn heartbeat(pool: &PgPool, instance: &Instance<'_>, kb_version: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO worker_instances (id, host, pid, queues, kb_version) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET kb_version = $5, last_seen = now()",
    )
    .bind(instance.id)
    .bind(instance.host)
    .bind(instance.pid)
    .bind(instance.queues)
    .bind(kb_version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Remove the instance on a clean shutdown.
pub async fn remove(pool: &PgPool, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM worker_instances WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

/// How many instances were heard from within `within`.
pub async fn live(db: impl PgExecutor<'_>, within: Duration) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM worker_instances WHERE last_seen > now() - $1 * interval '1 millisecond'")
        .bind(within.as_millis() as i64)
        .fetch_one(db)
        .await
}
