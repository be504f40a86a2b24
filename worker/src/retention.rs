//! The retention job: delete the closed conversations whose last activity is older than
//! `CONCIERGE_RETENTION_DAYS`, with everything about them, in batches (see
//! `concierge_shared::db::privacy::retention_batch` for what goes and how the metrics stay).
//! A schedule in every worker process that runs this queue asks for a run every ten minutes;
//! runs are safe to repeat, and an advisory lock lets one process at a time delete.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{
    db::privacy::{self, RetentionReport},
    jobs::{self, ApplyRetention},
};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Conversations deleted per transaction: short transactions, short row locks.
pub const BATCH: i64 = 200;

const EVERY: Duration = Duration::from_secs(600);

#[tracing::instrument(skip_all, fields(cause = %job.cause))]
pub async fn handle(job: ApplyRetention, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(keep) = ctx.retention else {
        return Ok(());
    };
    let mut total = RetentionReport::default();
    loop {
        let Some(report) = privacy::retention_batch(&ctx.pool, keep, BATCH, ctx.max_attempts).await? else {
            tracing::debug!("another process is applying retention");
            break;
        };
        total.erased.conversations += report.erased.conversations;
        total.erased.messages += report.erased.messages;
        total.erased.topics_queued_for_deletion += report.erased.topics_queued_for_deletion;
        total.days_frozen += report.days_frozen;
        total.stale_updates += report.stale_updates;
        total.stale_deletions += report.stale_deletions;
        total.expired_revocations += report.expired_revocations;
        if report.erased.conversations < BATCH {
            break;
        }
    }
    if total.erased.conversations > 0 || total.stale_updates > 0 || total.stale_deletions > 0 {
        tracing::info!(
            conversations = total.erased.conversations,
            messages = total.erased.messages,
            topics = total.erased.topics_queued_for_deletion,
            days_frozen = total.days_frozen,
            stale_updates = total.stale_updates,
            "retention deleted expired conversations"
        );
    }
    Ok(())
}

/// Ask for a retention run every ten minutes, starting now.
pub async fn schedule(ctx: Context, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let slot = chrono::Utc::now().timestamp() / EVERY.as_secs() as i64;
        let job = ApplyRetention { cause: format!("slot:{slot}") };
        let enqueued = async {
            let mut conn = ctx.pool.acquire().await?;
            jobs::enqueue(&mut conn, &job, ctx.max_attempts).await
        };
        if let Err(error) = enqueued.await {
            tracing::warn!(%error, "scheduling the retention job failed");
        }
    }
}
