//! The metrics job: compute and store one day's conversation metrics. A schedule in every
//! worker process that runs this queue asks for today's figures every minute and yesterday's
//! every hour (the job key makes one process's request per slot count once); admins can ask
//! for any day again.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use concierge_shared::{
    jobs::{self, ComputeMetrics},
    metrics,
};
use tokio_util::sync::CancellationToken;

use crate::Context;

#[tracing::instrument(skip_all, fields(day = %job.day))]
pub async fn handle(job: ComputeMetrics, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let figures = metrics::compute_day(&ctx.pool, job.day).await?;
    tracing::debug!(conversations = figures.conversations, "metrics computed");
    Ok(())
}

pub async fn schedule(ctx: Context, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = enqueue_due(&ctx).await {
            tracing::warn!(%error, "scheduling the metrics job failed");
        }
        // Once an hour, the queue table is kept to its last week.
        if Utc::now().timestamp() / 60 % 60 == 0 {
            match jobs::prune_finished(&ctx.pool, jobs::FINISHED_JOBS_KEPT).await {
                Ok(pruned) => tracing::debug!(pruned, "finished jobs pruned"),
                Err(error) => tracing::warn!(%error, "pruning finished jobs failed"),
            }
        }
    }
}

async fn enqueue_due(ctx: &Context) -> sqlx::Result<()> {
    let now = Utc::now();
    let today = now.date_naive();
    let minute = now.timestamp() / 60;
    let mut tx = ctx.pool.begin().await?;
    let job = ComputeMetrics { day: today, cause: format!("minute:{minute}") };
    jobs::enqueue(&mut tx, &job, ctx.max_attempts).await?;
    if let Some(yesterday) = today.pred_opt() {
        let job = ComputeMetrics { day: yesterday, cause: format!("hour:{}", minute / 60) };
        jobs::enqueue(&mut tx, &job, ctx.max_attempts).await?;
    }
    tx.commit().await
}
