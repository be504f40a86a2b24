//! Reindex runs: requested by admins (or the command line), executed by the reindex job.
//! Requests made while a run is still queued join that run (a unique index allows one
//! queued run), so a burst of requests costs one reindex.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    OwnerKey, ReindexRunId,
    jobs::{self, Reindex},
    knowledge::store::ReindexReport,
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ReindexRun {
    pub id: ReindexRunId,
    pub status: String,
    /// The admin who asked, as their owner key (`user:<sub>`).
    #[schema(value_type = String)]
    pub requested_by: OwnerKey,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    pub failure: Option<String>,
}

const COLUMNS: &str = "id, status, requested_by, requested_at, started_at, finished_at, report, failure";

/// The queued run, joined or newly created with its job. Returns the run and whether it is new.
pub async fn request(pool: &PgPool, requested_by: &OwnerKey, max_attempts: u32) -> sqlx::Result<(ReindexRun, bool)> {
    let mut tx = pool.begin().await?;
    let requested = request_in(&mut tx, requested_by, max_attempts).await?;
    tx.commit().await?;
    Ok(requested)
}

/// [`request`] in the caller's transaction, so that the run commits with what it is for (a
/// document written into the database is indexed by a run that cannot exist without it).
pub async fn request_in(
    conn: &mut sqlx::PgConnection,
    requested_by: &OwnerKey,
    max_attempts: u32,
) -> sqlx::Result<(ReindexRun, bool)> {
    loop {
        let id = ReindexRunId::new();
        let created: Option<ReindexRun> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO reindex_runs (id, status, requested_by) VALUES ($1, 'queued', $2)
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(requested_by)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(run) = created {
            jobs::enqueue(conn, &Reindex { run_id: id }, max_attempts).await?;
            return Ok((run, true));
        }
        // Each statement sees the latest commits: the queued run, or none if it started since.
        let queued: Option<ReindexRun> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM reindex_runs WHERE status = 'queued'")))
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(run) = queued {
            return Ok((run, false));
        }
    }
}

pub async fn get(pool: &PgPool, id: ReindexRunId) -> sqlx::Result<Option<ReindexRun>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM reindex_runs WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Mark a queued run as running; `false` if it is not queued (already run by an earlier job).
pub async fn start(pool: &PgPool, id: ReindexRunId) -> sqlx::Result<bool> {
    let started = sqlx::query(
        "UPDATE reindex_runs SET status = 'running', started_at = now() WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(started == 1)
}

pub async fn succeed(pool: &PgPool, id: ReindexRunId, report: &ReindexReport) -> sqlx::Result<()> {
    sqlx::query("UPDATE reindex_runs SET status = 'succeeded', finished_at = now(), report = $2 WHERE id = $1")
        .bind(id)
        .bind(sqlx::types::Json(report))
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: ReindexRunId, failure: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE reindex_runs SET status = 'failed', finished_at = now(), failure = $2 WHERE id = $1")
        .bind(id)
        .bind(failure)
        .execute(pool)
        .await?;
    Ok(())
}
