//! The reindex job: run a queued reindex and record its report. The run row makes it safe to
//! run twice: a run that already finished is not run again, and the reindex itself is a
//! no-op when nothing changed.

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{db::reindex_runs, jobs::Reindex, knowledge::store};

use crate::Context;

#[tracing::instrument(skip_all, fields(run_id = %job.run_id))]
pub async fn handle(job: Reindex, ctx: Data<Context>) -> Result<(), BoxDynError> {
    if !reindex_runs::start(&ctx.pool, job.run_id).await.context("starting the run")? {
        return Ok(());
    }
    match store::reindex(&ctx.pool, &ctx.knowledge_dir).await {
        Ok(report) => {
            for broken in &report.errors {
                tracing::warn!(document = broken.path, error = broken.error, "skipped a broken knowledge document");
            }
            tracing::info!(
                version = report.version,
                added = report.added.len(),
                updated = report.updated.len(),
                removed = report.removed.len(),
                duration_ms = report.duration_ms,
                "knowledge base reindexed"
            );
            reindex_runs::succeed(&ctx.pool, job.run_id, &report).await.context("recording the report")?;
            // This process need not wait for its own notification.
            ctx.knowledge.refresh().await.context("reloading the index")?;
        }
        Err(error) => {
            // Reading the directory or the database failed: final for this run; a new
            // request starts a new one.
            tracing::error!(error = format!("{error:#}"), "reindex failed");
            reindex_runs::fail(&ctx.pool, job.run_id, &format!("{error:#}")).await?;
        }
    }
    Ok(())
}
