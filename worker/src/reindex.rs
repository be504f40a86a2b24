//! The reindex job: run a queued reindex and record its report. The run row makes it safe to
//! run twice: a run that already finished is not run again, and the reindex itself is a
//! no-op when nothing changed.
//!
//! With an embeddings server the job then embeds the new and changed chunks
//! ([`embed::sync`]); a failure there leaves the new chunks to the lexical search and is
//! retried by [`keep_embedded`], which also re-embeds everything in the background after a
//! model change.

use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{
    db::reindex_runs,
    jobs::Reindex,
    knowledge::{embed, store},
};
use tokio_util::sync::CancellationToken;

use crate::Context;

#[tracing::instrument(skip_all, fields(run_id = %job.run_id))]
pub async fn handle(job: Reindex, ctx: Data<Context>) -> Result<(), BoxDynError> {
    if !reindex_runs::start(&ctx.pool, job.run_id).await.context("starting the run")? {
        return Ok(());
    }
    match store::reindex(&ctx.pool, &ctx.knowledge_dir).await {
        Ok(mut report) => {
            for broken in &report.errors {
                tracing::warn!(document = broken.path, error = broken.error, "skipped a broken knowledge document");
            }
            if let Some(embedder) = &ctx.embedder {
                match embed::sync(&ctx.pool, embedder).await {
                    Ok(embedded) => {
                        report.version = report.version.max(embedded.version);
                        report.embedded = Some(embedded);
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "embedding failed; new chunks are found lexically until it succeeds"
                        );
                        report.embedding_error = Some(format!("{error:#}"));
                    }
                }
            }
            tracing::info!(
                version = report.version,
                added = report.added.len(),
                updated = report.updated.len(),
                removed = report.removed.len(),
                embedded = report.embedded.as_ref().map_or(0, |e| e.embedded),
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

/// Bring the vectors in line with the configured model now, then whenever a pass failed,
/// with growing pauses, until `shutdown`.
pub fn keep_embedded(ctx: &Context, shutdown: CancellationToken) {
    let Some(embedder) = ctx.embedder.clone() else { return };
    let (pool, knowledge) = (ctx.pool.clone(), ctx.knowledge.clone());
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(5);
        loop {
            match embed::sync(&pool, &embedder).await {
                Ok(_) => {
                    if let Err(error) = knowledge.refresh().await {
                        tracing::warn!(error = format!("{error:#}"), "knowledge reload failed");
                    }
                    return;
                }
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    ?pause,
                    "embedding the knowledge base failed; trying again"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(300));
        }
    });
}
