//! Database access. Each aggregate has a module of functions that take an executor or a
//! connection, so callers own transaction boundaries.

pub mod attachments;
pub mod conversations;
pub mod email_replies;
pub mod escalations;
pub mod eval_runs;
pub mod knowledge_drafts;
pub mod llm_calls;
pub mod messages;
pub mod privacy;
pub mod reindex_runs;
pub mod storage_deletions;
pub mod telegram;
pub mod transcripts;
pub mod waits;
pub mod worker_instances;

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio_util::sync::CancellationToken;

/// Concierge's own migrations (`migrations/`); apalis-postgres keeps its own in
/// `apalis._sqlx_migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool of at most `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1.min(max_connections))
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))
}

/// Bring the schema up to date: apalis' job tables first (our messages do not depend on
/// them, but the transactional enqueue writes into them), then ours.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await.context("running the job queue's migrations")?;
    MIGRATOR.run(pool).await.context("running Concierge's migrations")?;
    Ok(())
}

/// Whether the database answers.
pub async fn ping(db: impl sqlx::PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}

/// The URL with its password hidden, for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// What a LISTEN connection heard.
pub enum Heard<'a> {
    /// A notification's payload.
    Notification(&'a str),
    /// The connection was lost and is back (or is being retried): notifications may have been
    /// missed, so listeners catch up from the database.
    Gap,
}

/// LISTEN on `channel` until `shutdown`, reconnecting with backoff; `on` hears every payload,
/// and a `Gap` whenever some may have been missed. Returns once listening has begun, so that
/// notifications sent after this call are never missed.
pub async fn listen(
    pool: &PgPool,
    channel: &str,
    shutdown: CancellationToken,
    mut on: impl FnMut(Heard<'_>) + Send + 'static,
) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    let channel = channel.to_owned();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    backoff = Duration::from_millis(100);
                    on(Heard::Notification(notification.payload()));
                }
                Ok(None) => {
                    tracing::warn!(channel, "listener reconnected; catching up");
                    on(Heard::Gap);
                }
                Err(error) => {
                    tracing::warn!(channel, %error, ?backoff, "listener failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    on(Heard::Gap);
                }
            }
        }
    });
    Ok(())
}
