//! The retention job: delete the closed conversations whose last activity is older than
//! `CONCIERGE_RETENTION_DAYS`, with everything about them, in batches (see
//! `concierge_shared::db::privacy::retention_batch` for what goes and how the metrics stay).
//! A schedule in every worker process that runs this queue asks for a run every ten minutes;
//! runs are safe to repeat, and an advisory lock lets one process at a time delete.
//!
//! The same processes sweep the attachment files: uploads never sent with a message are
//! removed after a day, and the files of deleted rows (queued in `storage_deletions` when the
//! rows go) are deleted from storage, a failed delete retried at a later sweep.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{
    attachments::{self, FileDeletions},
    db::{
        self,
        privacy::{self, RetentionReport},
    },
    jobs::{self, ApplyRetention},
};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Conversations deleted per transaction: short transactions, short row locks.
pub const BATCH: i64 = 200;

const EVERY: Duration = Duration::from_secs(600);

/// How long an upload may wait for the message that sends it.
pub const UNSENT_KEPT: Duration = Duration::from_secs(86_400);

/// How often the file sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Queued file deletions one sweep pass takes.
const FILES_AT_ONCE: i64 = 500;

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
        total.erased.attachments += report.erased.attachments;
        if report.erased.attachments > 0 {
            // Committed: their files go now; what fails waits for the file sweep.
            attachments::delete_queued_files(&ctx.pool, &ctx.storage, FILES_AT_ONCE).await?;
        }
        if report.erased.conversations < BATCH {
            break;
        }
    }
    if total.erased.conversations > 0 || total.stale_updates > 0 || total.stale_deletions > 0 {
        tracing::info!(
            conversations = total.erased.conversations,
            messages = total.erased.messages,
            topics = total.erased.topics_queued_for_deletion,
            attachments = total.erased.attachments,
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

/// What one file sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSweep {
    /// Uploads older than [`UNSENT_KEPT`] never sent with a message.
    pub unsent_removed: u64,
    pub files: FileDeletions,
}

/// Remove the stale unsent uploads, then delete the queued files, a batch at a time until the
/// queue holds nothing due (a failed delete waits for a later sweep).
pub async fn sweep_files(ctx: &Context) -> anyhow::Result<FileSweep> {
    use anyhow::Context as _;
    let unsent_removed = db::attachments::delete_unsent_older_than(&ctx.pool, UNSENT_KEPT)
        .await
        .context("removing stale unsent uploads")?;
    let mut files = FileDeletions::default();
    loop {
        let pass = attachments::delete_queued_files(&ctx.pool, &ctx.storage, FILES_AT_ONCE)
            .await
            .context("deleting the files of deleted attachments")?;
        files.deleted += pass.deleted;
        files.failed += pass.failed;
        if pass.deleted + pass.failed < FILES_AT_ONCE as u64 {
            break;
        }
    }
    if unsent_removed > 0 || files.deleted > 0 || files.failed > 0 {
        tracing::info!(unsent_removed, deleted = files.deleted, failed = files.failed, "attachment files swept");
    }
    Ok(FileSweep { unsent_removed, files })
}

/// Sweep the attachment files every five minutes, starting now.
pub async fn sweep_files_regularly(ctx: Context, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = sweep_files(&ctx).await {
            tracing::warn!(error = format!("{error:#}"), "the attachment file sweep failed; it runs again later");
        }
    }
}
