//! Recorded decision evaluations: each `concierge eval decisions` run, and each `--compare` of
//! two prompt versions as its two runs linked by one comparison. The console lists them newest
//! first, a comparison as one entry holding both sides.
//!
//! Invariant: a comparison and its two runs are written in one transaction, so no listing ever
//! shows one side of a comparison without the other.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::{EvalComparisonId, EvalRunId};

/// One engine's run over a labelled set, as it is stored.
#[derive(Debug, Clone)]
pub struct NewEvalRun {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub set_file: String,
    pub cases: i32,
    pub engine: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    pub prompts_dir: Option<String>,
    pub decision_format: Option<String>,
    pub accuracy: f64,
    pub figures: serde_json::Value,
}

/// The paired test of a comparison.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EvalComparison {
    /// Conversations A decided right and B wrong (McNemar's b).
    pub a_only_right: i32,
    /// Conversations B decided right and A wrong (McNemar's c).
    pub b_only_right: i32,
    /// McNemar's exact two-sided p-value; 1 when no pair is discordant.
    pub p_value: f64,
    /// The conversations where the two decided differently.
    #[schema(value_type = Object)]
    pub differing: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EvalRun {
    pub id: EvalRunId,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The labelled set, as given on the command line.
    pub set_file: String,
    pub cases: i32,
    /// `offline`, or the model's provider.
    pub engine: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    pub prompts_dir: Option<String>,
    pub decision_format: Option<String>,
    /// Share of conversations decided right.
    pub accuracy: f64,
    /// The report's figures: per-label counts, citation and action accuracy, misses.
    #[schema(value_type = Object)]
    pub figures: serde_json::Value,
    /// `a` or `b` in a comparison.
    pub side: Option<String>,
    #[serde(skip)]
    pub comparison_id: Option<EvalComparisonId>,
}

/// One line of the list: a plain run, or a comparison with its two sides.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EvalEntry {
    /// The run's id, or the comparison's.
    #[schema(value_type = uuid::Uuid)]
    pub id: uuid::Uuid,
    /// `run` or `compare`.
    pub kind: &'static str,
    pub started_at: DateTime<Utc>,
    /// One run, or sides A and B in this order.
    pub runs: Vec<EvalRun>,
    pub comparison: Option<EvalComparison>,
}

const COLUMNS: &str = "id, started_at, finished_at, set_file, cases, engine, model, prompt_version, prompts_dir, \
                       decision_format, accuracy, figures, side, comparison_id";

async fn insert(
    db: impl sqlx::PgExecutor<'_>,
    run: &NewEvalRun,
    comparison: Option<(EvalComparisonId, &str)>,
) -> sqlx::Result<EvalRunId> {
    let id = EvalRunId::new();
    sqlx::query(
        "INSERT INTO eval_runs (id, started_at, finished_at, set_file, cases, engine, model, prompt_version,
             prompts_dir, decision_format, accuracy, figures, comparison_id, side)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(run.started_at)
    .bind(run.finished_at)
    .bind(&run.set_file)
    .bind(run.cases)
    .bind(&run.engine)
    .bind(&run.model)
    .bind(&run.prompt_version)
    .bind(&run.prompts_dir)
    .bind(&run.decision_format)
    .bind(run.accuracy)
    .bind(&run.figures)
    .bind(comparison.map(|(id, _)| id))
    .bind(comparison.map(|(_, side)| side))
    .execute(db)
    .await?;
    Ok(id)
}

/// Record a plain run.
pub async fn insert_run(pool: &PgPool, run: &NewEvalRun) -> sqlx::Result<EvalRunId> {
    insert(pool, run, None).await
}

/// Record a comparison and its two runs, together.
pub async fn insert_comparison(
    pool: &PgPool,
    a: &NewEvalRun,
    b: &NewEvalRun,
    comparison: &EvalComparison,
) -> sqlx::Result<EvalComparisonId> {
    let id = EvalComparisonId::new();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO eval_comparisons (id, a_only_right, b_only_right, p_value, differing) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(comparison.a_only_right)
    .bind(comparison.b_only_right)
    .bind(comparison.p_value)
    .bind(&comparison.differing)
    .execute(&mut *tx)
    .await?;
    insert(&mut *tx, a, Some((id, "a"))).await?;
    insert(&mut *tx, b, Some((id, "b"))).await?;
    tx.commit().await?;
    Ok(id)
}

/// The latest `limit` entries, newest first (by when the run started).
pub async fn recent(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<EvalEntry>> {
    let runs: Vec<EvalRun> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH entries AS (
             SELECT COALESCE(comparison_id, id) AS entry, max(started_at) AS started
             FROM eval_runs GROUP BY 1 ORDER BY started DESC, entry LIMIT $1
         )
         SELECT {COLUMNS} FROM eval_runs JOIN entries ON entry = COALESCE(comparison_id, id)
         ORDER BY started DESC, entry, side"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let ids: Vec<uuid::Uuid> = runs.iter().filter_map(|run| run.comparison_id).map(|id| id.0).collect();
    let comparisons: Vec<(EvalComparisonId, i32, i32, f64, serde_json::Value)> = sqlx::query_as(
        "SELECT id, a_only_right, b_only_right, p_value, differing FROM eval_comparisons WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut entries: Vec<EvalEntry> = Vec::new();
    for run in runs {
        let Some(comparison_id) = run.comparison_id else {
            entries.push(EvalEntry {
                id: run.id.0,
                kind: "run",
                started_at: run.started_at,
                runs: vec![run],
                comparison: None,
            });
            continue;
        };
        // Sides come together, A first: B joins the entry A opened.
        if let Some(entry) = entries.last_mut().filter(|entry| entry.id == comparison_id.0) {
            entry.runs.push(run);
            continue;
        }
        let comparison = comparisons.iter().find(|c| c.0 == comparison_id).map(|c| EvalComparison {
            a_only_right: c.1,
            b_only_right: c.2,
            p_value: c.3,
            differing: c.4.clone(),
        });
        entries.push(EvalEntry {
            id: comparison_id.0,
            kind: "compare",
            started_at: run.started_at,
            runs: vec![run],
            comparison,
        });
    }
    Ok(entries)
}
