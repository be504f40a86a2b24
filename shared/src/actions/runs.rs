//! The log of action runs: each one queued with its job, then marked running and finished.
//!
//! Invariant: a user message has at most one run (a unique index), and a run is logged in the
//! same transaction as the job that executes it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::{
    ActionRequester, ActionRunId, ConversationId, MessageId,
    jobs::{self, ExecuteAction},
};

/// One logged run.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActionRun {
    pub id: ActionRunId,
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    pub action: String,
    #[schema(value_type = Object)]
    pub params: sqlx::types::Json<Value>,
    pub requested_by: ActionRequester,
    pub status: String,
    pub duration_ms: Option<i32>,
    pub result_summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<sqlx::types::Json<Value>>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, conversation_id, message_id, action, params, requested_by, status, duration_ms, \
     result_summary, result, error, created_at, finished_at";

/// Log a queued run and enqueue its job, in the caller's transaction. `None` when the user
/// message already has its run.
pub async fn queue_run(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    message_id: Option<MessageId>,
    action: &str,
    params: &Value,
    requested_by: ActionRequester,
    max_attempts: u32,
) -> sqlx::Result<Option<ActionRun>> {
    let run: Option<ActionRun> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO action_runs (id, conversation_id, message_id, action, params, requested_by, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued') ON CONFLICT DO NOTHING RETURNING {RUN_COLUMNS}"
    )))
    .bind(ActionRunId::new())
    .bind(conversation_id)
    .bind(message_id)
    .bind(action)
    .bind(sqlx::types::Json(params))
    .bind(requested_by)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run) = &run {
        jobs::enqueue(conn, &ExecuteAction { run_id: run.id }, max_attempts).await?;
    }
    Ok(run)
}

pub async fn get_run(pool: &PgPool, id: ActionRunId) -> sqlx::Result<Option<ActionRun>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM action_runs WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The newest runs, for the admins' action log.
pub async fn recent_runs(pool: &PgPool, limit: i64, action: Option<&str>) -> sqlx::Result<Vec<ActionRun>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM action_runs WHERE ($2::text IS NULL OR action = $2) ORDER BY created_at DESC LIMIT $1"
    )))
    .bind(limit)
    .bind(action)
    .fetch_all(pool)
    .await
}

/// The runs of one conversation, oldest first.
pub async fn conversation_runs(pool: &PgPool, conversation_id: ConversationId) -> sqlx::Result<Vec<ActionRun>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM action_runs WHERE conversation_id = $1 ORDER BY created_at LIMIT 50"
    )))
    .bind(conversation_id)
    .fetch_all(pool)
    .await
}

pub async fn mark_running(pool: &PgPool, id: ActionRunId) -> sqlx::Result<()> {
    sqlx::query("UPDATE action_runs SET status = 'running' WHERE id = $1 AND status = 'queued'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Record how a run ended, in the caller's transaction.
pub async fn finish_run(
    conn: &mut PgConnection,
    id: ActionRunId,
    succeeded: bool,
    duration_ms: i64,
    summary: &str,
    result: Option<&Value>,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE action_runs SET status = $2, duration_ms = $3, result_summary = $4, result = $5, error = $6, finished_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(if succeeded { "succeeded" } else { "failed" })
    .bind(duration_ms as i32)
    .bind(summary)
    .bind(result.map(sqlx::types::Json))
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}
