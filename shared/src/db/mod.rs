//! Database access. Each aggregate has a module of functions that take an executor or a
//! connection, so callers own transaction boundaries.

pub mod conversations;
pub mod llm_calls;
pub mod messages;
pub mod reindex_runs;
pub mod telegram;
pub mod worker_instances;

use std::time::Duration;

use anyhow::Context;
use sqlx::{PgPool, postgres::PgPoolOptions};

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
