//! Conversation metrics (ConversationMetrics): what the AI solved alone, what went to people,
//! how fast answers came, what actions and the model did. Computed from the stored data for a
//! span of days; the metrics job stores one row per UTC day, so history can be recomputed.
//!
//! Definitions, for conversations created in the span:
//! - `ai_resolved`: never handed to a person, got at least one assistant answer, and not rated
//!   1 or 2;
//! - `escalated`: handed to a person (by the AI, the user's button, or an operator joining);
//! - `closed_unresolved`: closed, never handed to a person, and not AI-resolved;
//! - time to first reply: from the first user message to the first assistant or operator
//!   message after it; to first human reply: from the hand-over to the first operator message;
//! - `sla_breaches`: hand-overs whose wait for a first human reply ran past the SLA, by the
//!   day it did (see `db::waits`).
//!
//! Messages, action runs and model calls are counted by when they happened.
//!
//! A day retention has deleted rows of is frozen ([`freeze_day`]): computed with those rows
//! just before they went, and never overwritten by a later computation.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ConversationMetrics {
    pub conversations: i64,
    /// User messages.
    pub messages: i64,
    pub ai_resolved: i64,
    pub escalated: i64,
    pub closed_unresolved: i64,
    pub rated: i64,
    pub avg_rating: Option<f64>,
    pub first_reply_p50_ms: Option<f64>,
    pub first_reply_p90_ms: Option<f64>,
    pub first_human_reply_p50_ms: Option<f64>,
    pub first_human_reply_p90_ms: Option<f64>,
    /// Hand-overs whose user waited longer than the SLA for a first human reply (the topic
    /// was reminded), counted on the day the wait ran past it.
    #[serde(default)]
    pub sla_breaches: i64,
    /// Action runs by action name, then by status (succeeded, failed, ...).
    pub actions: BTreeMap<String, BTreeMap<String, i64>>,
    pub llm_calls: i64,
    pub llm_tokens: i64,
    /// Decisions the offline engine took because the model failed or was over budget.
    pub llm_fallbacks: i64,
}

/// The conversation figures of a span, as one query returns them.
#[derive(sqlx::FromRow)]
struct ConversationFigures {
    conversations: i64,
    ai_resolved: i64,
    escalated: i64,
    closed_unresolved: i64,
    rated: i64,
    avg_rating: Option<f64>,
    first_reply_p50_ms: Option<f64>,
    first_reply_p90_ms: Option<f64>,
    first_human_reply_p50_ms: Option<f64>,
    first_human_reply_p90_ms: Option<f64>,
}

/// Midnight UTC of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// The metrics of everything in `[from, to)`.
pub async fn compute(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<ConversationMetrics> {
    let mut conn = pool.acquire().await?;
    compute_on(&mut conn, from, to).await
}

/// [`compute`] on the caller's connection (inside its transaction, as retention needs).
pub async fn compute_on(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<ConversationMetrics> {
    let row: ConversationFigures = sqlx::query_as(
        "WITH span AS (
                 SELECT c.*,
                        EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.role = 'assistant')
                            AS answered
                 FROM conversations c WHERE c.created_at >= $1 AND c.created_at < $2
             ),
             first_reply AS (
                 SELECT (SELECT min(r.created_at) FROM messages r
                         WHERE r.conversation_id = u.conversation_id AND r.role IN ('assistant', 'operator')
                           AND r.seq > u.seq) - u.created_at AS wait
                 FROM (SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.seq, m.created_at
                       FROM messages m JOIN span s ON s.id = m.conversation_id
                       WHERE m.role = 'user' ORDER BY m.conversation_id, m.seq) u
             ),
             first_human AS (
                 SELECT (SELECT min(r.created_at) FROM messages r
                         WHERE r.conversation_id = s.id AND r.role = 'operator' AND r.created_at >= s.escalated_at)
                        - s.escalated_at AS wait
                 FROM span s WHERE s.escalated_at IS NOT NULL
             )
             SELECT
                 (SELECT count(*) FROM span) AS conversations,
                 (SELECT count(*) FILTER (WHERE escalated_at IS NULL AND answered AND coalesce(rating, 5) > 2)
                  FROM span) AS ai_resolved,
                 (SELECT count(*) FILTER (WHERE escalated_at IS NOT NULL) FROM span) AS escalated,
                 (SELECT count(*) FILTER (WHERE status = 'closed' AND escalated_at IS NULL
                                           AND NOT (answered AND coalesce(rating, 5) > 2)) FROM span)
                     AS closed_unresolved,
                 (SELECT count(rating) FROM span) AS rated,
                 (SELECT avg(rating)::float8 FROM span) AS avg_rating,
                 (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM wait) * 1000)
                  FROM first_reply WHERE wait IS NOT NULL) AS first_reply_p50_ms,
                 (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM wait) * 1000)
                  FROM first_reply WHERE wait IS NOT NULL) AS first_reply_p90_ms,
                 (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM wait) * 1000)
                  FROM first_human WHERE wait IS NOT NULL) AS first_human_reply_p50_ms,
                 (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM wait) * 1000)
                  FROM first_human WHERE wait IS NOT NULL) AS first_human_reply_p90_ms",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let (messages, fallbacks): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE role = 'user'),
                -- Answers, clarifications and hand-overs the offline engine made in the model's place.
                count(*) FILTER (WHERE reply_to IS NOT NULL AND metadata->>$3 IS NOT NULL)
         FROM messages WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(from)
    .bind(to)
    .bind(crate::message_meta::FALLBACK)
    .fetch_one(&mut *conn)
    .await?;
    let (llm_calls, llm_tokens): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint
         FROM llm_calls WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let sla_breaches = crate::db::waits::breaches(&mut *conn, from, to).await?;
    let runs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT action, status, count(*) FROM action_runs WHERE created_at >= $1 AND created_at < $2
         GROUP BY action, status",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut actions: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (action, status, count) in runs {
        actions.entry(action).or_default().insert(status, count);
    }
    Ok(ConversationMetrics {
        conversations: row.conversations,
        messages,
        ai_resolved: row.ai_resolved,
        escalated: row.escalated,
        closed_unresolved: row.closed_unresolved,
        rated: row.rated,
        avg_rating: row.avg_rating,
        first_reply_p50_ms: row.first_reply_p50_ms,
        first_reply_p90_ms: row.first_reply_p90_ms,
        first_human_reply_p50_ms: row.first_human_reply_p50_ms,
        first_human_reply_p90_ms: row.first_human_reply_p90_ms,
        sla_breaches,
        actions,
        llm_calls,
        llm_tokens,
        llm_fallbacks: fallbacks,
    })
}

/// Compute and store one UTC day. A frozen day (see [`freeze_day`]) keeps its stored figures.
pub async fn compute_day(pool: &PgPool, day: NaiveDate) -> sqlx::Result<ConversationMetrics> {
    let start = day_start(day);
    let metrics = compute(pool, start, start + chrono::Duration::days(1)).await?;
    sqlx::query(
        "INSERT INTO conversation_metrics (day, figures, computed_at) VALUES ($1, $2, now())
         ON CONFLICT (day) DO UPDATE SET figures = EXCLUDED.figures, computed_at = now()
         WHERE conversation_metrics.frozen_at IS NULL",
    )
    .bind(day)
    .bind(sqlx::types::Json(&metrics))
    .execute(pool)
    .await?;
    Ok(metrics)
}

/// Compute one UTC day from the rows as they are now, store it and freeze it: retention does
/// this, in its transaction, before it deletes rows the day was computed from, so that the
/// day's figures never change afterwards. A day already frozen is left as it is.
pub async fn freeze_day(conn: &mut PgConnection, day: NaiveDate) -> sqlx::Result<()> {
    let start = day_start(day);
    let metrics = compute_on(conn, start, start + chrono::Duration::days(1)).await?;
    sqlx::query(
        "INSERT INTO conversation_metrics (day, figures, computed_at, frozen_at) VALUES ($1, $2, now(), now())
         ON CONFLICT (day) DO UPDATE SET figures = EXCLUDED.figures, computed_at = now(), frozen_at = now()
         WHERE conversation_metrics.frozen_at IS NULL",
    )
    .bind(day)
    .bind(sqlx::types::Json(&metrics))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredDay {
    pub day: NaiveDate,
    #[serde(flatten)]
    pub metrics: ConversationMetrics,
    pub computed_at: DateTime<Utc>,
}

/// The stored days in `[from, to]`, oldest first.
pub async fn stored(pool: &PgPool, from: NaiveDate, to: NaiveDate) -> sqlx::Result<Vec<StoredDay>> {
    let rows: Vec<(NaiveDate, sqlx::types::Json<ConversationMetrics>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT day, figures, computed_at FROM conversation_metrics WHERE day BETWEEN $1 AND $2 ORDER BY day",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(day, figures, computed_at)| StoredDay { day, metrics: figures.0, computed_at }).collect())
}
