//! Writing a decision evaluation's record to the configured database (`DATABASE_URL`, else the
//! private cluster of the data folder), where the console lists it.

use concierge_shared::{
    config::Config,
    db::eval_runs::{self, EvalComparison, NewEvalRun},
};

use super::{Comparison, DecisionRun};
use crate::Database;

fn new_run(run: &DecisionRun) -> anyhow::Result<NewEvalRun> {
    Ok(NewEvalRun {
        started_at: run.started_at,
        finished_at: run.finished_at,
        set_file: run.file.display().to_string(),
        cases: i32::try_from(run.figures.cases)?,
        engine: run.engine.engine.clone(),
        model: run.engine.model.clone(),
        prompt_version: run.engine.prompt_version.clone(),
        prompts_dir: run.engine.prompts_dir.clone(),
        decision_format: run.engine.decision_format.clone(),
        accuracy: run.figures.accuracy,
        figures: serde_json::to_value(&run.figures)?,
    })
}

/// Open the configured database, bring its schema up to date, write, and close it again.
async fn with_database<T>(
    config: &Config,
    write: impl AsyncFnOnce(&sqlx::PgPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = Database::open(config).await?;
    let result = async {
        let pool = concierge_shared::db::connect(&database.url, 2).await?;
        concierge_shared::db::migrate(&pool).await?;
        let written = write(&pool).await;
        pool.close().await;
        written
    }
    .await;
    database.close().await?;
    result
}

/// Record a plain run; returns what it was recorded as.
pub async fn record_run(config: &Config, run: &DecisionRun) -> anyhow::Result<String> {
    let new = new_run(run)?;
    let id = with_database(config, async |pool| anyhow::Ok(eval_runs::insert_run(pool, &new).await?)).await?;
    Ok(format!("eval run {id}"))
}

/// Record both runs of a comparison and their paired test; returns what it was recorded as.
pub async fn record_comparison(config: &Config, comparison: &Comparison) -> anyhow::Result<String> {
    let (a, b) = (new_run(&comparison.a)?, new_run(&comparison.b)?);
    let test = EvalComparison {
        a_only_right: i32::try_from(comparison.a_only_right)?,
        b_only_right: i32::try_from(comparison.b_only_right)?,
        p_value: comparison.p_value,
        differing: serde_json::to_value(&comparison.differing)?,
    };
    let id = with_database(config, async |pool| anyhow::Ok(eval_runs::insert_comparison(pool, &a, &b, &test).await?))
        .await?;
    Ok(format!("eval comparison {id}"))
}
