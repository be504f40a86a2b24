//! Everything Concierge knows about apalis-postgres' own tables: the columns of a job row, the
//! status strings, the insert trigger's channel, and the few statements that read or clean
//! `apalis.jobs` and `apalis.workers` directly.
//!
//! This is a private schema of apalis-postgres 1.0, not a public API: it may change in any
//! release. Re-check this module against the new version on every upgrade, in its sources:
//! `queries/task/sink.sql` (the row its own enqueue writes), `queries/backend/vacuum.sql` (which
//! jobs count as finished), `queries/task/lock_by_id.sql` and the `get_jobs` migrations (which
//! statuses are fetched), `migrations/*_notify_run_at.sql` (the insert trigger and its payload),
//! and `apalis-core`'s `task::status::Status` (the status names). No other module names an
//! `apalis.` table, a status string or the channel.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};

/// The channel of apalis-postgres' AFTER INSERT trigger on `apalis.jobs`; its payload is a JSON
/// object with the row's `job_type`, `id` and `run_at`, sent only for jobs due now.
pub const INSERT_CHANNEL: &str = "apalis::job::insert";

/// A job's `status` column, as apalis writes it (apalis-core's `Status`, stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting to be fetched (the state an enqueue writes).
    Pending,
    /// Fetched by a worker's poll, not yet started.
    Queued,
    Running,
    Done,
    /// Failed; retried while `attempts < max_attempts`, final after that.
    Failed,
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "Pending",
            JobStatus::Queued => "Queued",
            JobStatus::Running => "Running",
            JobStatus::Done => "Done",
            JobStatus::Failed => "Failed",
            JobStatus::Killed => "Killed",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `INSERT INTO apalis.jobs (…) SELECT …`: one job row, written the way apalis-postgres' sink
/// writes it (`queries/task/sink.sql`): status `Pending`, no attempts yet, due now, priority 0,
/// empty metadata. The arguments are SQL expressions (string literals) for the row's id (a ULID
/// as text), queue name (`job_type`), payload bytes (`job`, JSON), `max_attempts` and
/// `idempotency_key` (unique per queue). Append `FROM …` as the statement needs; a last
/// argument `skip_duplicate` adds the `ON CONFLICT` clause that makes a second job with the same
/// idempotency key a no-op. A macro, so that callers can build larger statements with `concat!`.
#[macro_export]
macro_rules! insert_apalis_job {
    ($id:literal, $queue:literal, $payload:literal, $max_attempts:literal, $idempotency_key:literal, skip_duplicate) => {
        concat!(
            $crate::insert_apalis_job!($id, $queue, $payload, $max_attempts, $idempotency_key),
            " ON CONFLICT (job_type, idempotency_key) DO NOTHING"
        )
    };
    ($id:literal, $queue:literal, $payload:literal, $max_attempts:literal, $idempotency_key:literal) => {
        concat!(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key) SELECT ",
            $id,
            ", ",
            $queue,
            ", ",
            $payload,
            ", 'Pending', 0, ",
            $max_attempts,
            ", now(), 0, ''::hstore, ",
            $idempotency_key
        )
    };
}

/// Statuses after which apalis never runs a job again (with `Failed` only once its attempts are
/// spent), as `queries/backend/vacuum.sql` has them.
const FINISHED: [JobStatus; 2] = [JobStatus::Done, JobStatus::Killed];

/// Statuses of jobs waiting for a worker.
const WAITING: [JobStatus; 2] = [JobStatus::Pending, JobStatus::Queued];

fn names(statuses: &[JobStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

/// The condition of a finished job, given `$1` = the [`FINISHED`] names and `$2` = `Failed`.
macro_rules! finished_job {
    () => {
        "(status = ANY($1) OR (status = $2 AND attempts >= max_attempts))"
    };
}

/// Delete jobs that finished longer than `kept` ago; returns how many went.
pub async fn delete_finished_jobs(db: impl PgExecutor<'_>, kept: Duration) -> sqlx::Result<u64> {
    Ok(sqlx::query(concat!(
        "DELETE FROM apalis.jobs WHERE ",
        finished_job!(),
        " AND coalesce(done_at, run_at) < now() - $3 * interval '1 second'"
    ))
    .bind(names(&FINISHED))
    .bind(JobStatus::Failed.as_str())
    .bind(kept.as_secs() as i64)
    .execute(db)
    .await?
    .rows_affected())
}

/// How many jobs have not finished yet (waiting, running, or failed with tries left).
pub async fn count_unfinished_jobs(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!("SELECT count(*) FROM apalis.jobs WHERE NOT ", finished_job!()))
        .bind(names(&FINISHED))
        .bind(JobStatus::Failed.as_str())
        .fetch_one(db)
        .await
}

/// Delete workers silent for longer than `kept` that hold no job.
pub async fn delete_idle_workers(db: impl PgExecutor<'_>, kept: Duration) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM apalis.workers w WHERE last_seen < now() - $1 * interval '1 second'
           AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
    )
    .bind(kept.as_secs() as i64)
    .execute(db)
    .await?
    .rows_affected())
}

/// Jobs per queue (`job_type`) and status, for the `concierge_queue_jobs` gauge.
pub async fn count_by_queue_and_status(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as("SELECT job_type, status, count(*) FROM apalis.jobs GROUP BY job_type, status").fetch_all(pool).await
}

/// Per queue (`job_type`): how many jobs wait for a worker, and since when the oldest is due.
pub async fn waiting_by_queue(
    pool: &PgPool,
) -> sqlx::Result<Vec<(String, i64, Option<chrono::DateTime<chrono::Utc>>)>> {
    sqlx::query_as("SELECT job_type, count(*), min(run_at) FROM apalis.jobs WHERE status = ANY($1) GROUP BY job_type")
        .bind(names(&WAITING))
        .fetch_all(pool)
        .await
}

/// Empty the queue (the benchmark, between runs).
pub async fn delete_all_jobs(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM apalis.jobs").execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_apalis_own() {
        use apalis::prelude::Status;
        let apalis = [Status::Pending, Status::Queued, Status::Running, Status::Done, Status::Failed, Status::Killed];
        for (ours, theirs) in JobStatus::ALL.iter().zip(apalis) {
            assert_eq!(ours.as_str(), theirs.to_string());
        }
    }

    #[test]
    fn the_insert_writes_a_pending_row() {
        let sql = insert_apalis_job!("$1", "$2", "$3", "$4", "$5");
        assert!(sql.contains(&format!("'{}'", JobStatus::Pending)), "{sql}");
        assert!(sql.starts_with("INSERT INTO apalis.jobs (id, job_type, job, status,"), "{sql}");
    }
}
