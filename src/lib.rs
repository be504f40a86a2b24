//! The all-in-one `concierge` binary's building blocks: start (or connect to) PostgreSQL,
//! prepare the schema, and run the API and the workers in one process. The same pieces serve
//! the tests and the benchmark.

pub mod bench;
pub mod bench_abuse;
mod bench_embeddings;
pub mod bench_knowledge;
pub mod bench_saturate;
mod bench_telegram;
pub mod demo_platform;
pub mod demo_site;
pub mod eval;
use std::{net::SocketAddr, path::Path};

use anyhow::Context;
use concierge_shared::{
    config::Config,
    pg::{Cluster, ClusterOptions},
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A database to run on: either the configured one, or a private cluster we started.
pub struct Database {
    pub url: String,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// `DATABASE_URL` if set; otherwise start the private cluster in the data directory and
    /// make sure its `concierge` database exists.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        if let Some(url) = &config.database_url {
            return Ok(Self { url: url.expose().to_owned(), cluster: None });
        }
        let options = ClusterOptions { data_dir: config.data_dir.clone(), ephemeral: false, statements: false };
        tracing::info!(data_dir = %config.data_dir.display(), "no DATABASE_URL: starting a private PostgreSQL cluster");
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options)).await??;
        create_database(&cluster.url("postgres"), "concierge").await?;
        Ok(Self { url: cluster.url("concierge"), cluster: Some(cluster) })
    }

    /// Stop the private cluster, if we started one.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}

/// `CREATE DATABASE name` unless it exists.
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = concierge_shared::db::connect(admin_url, 1).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&admin)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))))
            .execute(&admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
    }
    admin.close().await;
    Ok(())
}

/// The JWT secret: configured, or generated once and kept in the data directory, so that
/// visitor tokens survive restarts of the embedded setup.
pub fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.expose().to_owned());
    }
    let path = config.data_dir.join("jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    use rand::Rng;
    let secret: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(48).map(char::from).collect();
    std::fs::create_dir_all(&config.data_dir)?;
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a JWT secret (set CONCIERGE_JWT_SECRET to the platform's)");
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Log what a reindex did, naming every broken document.
pub fn report_reindex(report: &concierge_shared::knowledge::store::ReindexReport) {
    for broken in &report.errors {
        tracing::warn!(document = broken.path, error = broken.error, "skipped a broken knowledge document");
    }
    tracing::info!(
        version = report.version,
        documents = report.documents,
        chunks = report.chunks,
        added = report.added.len(),
        updated = report.updated.len(),
        removed = report.removed.len(),
        unchanged = report.unchanged,
        duration_ms = report.duration_ms,
        "knowledge base indexed"
    );
}

/// A running all-in-one system.
pub struct System {
    pub addr: SocketAddr,
    pub pool: PgPool,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl System {
    /// Migrate, then run the API on `listener` and the workers, until `shutdown`.
    pub async fn start(
        config: Config,
        database_url: &str,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, database_url, listener, shutdown, axum::Router::new()).await
    }

    /// [`System::start`], with more routes served beside the API's (the demo site).
    pub async fn start_with(
        config: Config,
        database_url: &str,
        listener: TcpListener,
        shutdown: CancellationToken,
        extra: axum::Router,
    ) -> anyhow::Result<Self> {
        let pool = concierge_shared::db::connect(database_url, config.db_max_connections).await?;
        concierge_shared::db::migrate(&pool).await?;
        report_reindex(&concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?);
        let actions = config.fixtures_dir.join("initial_actions.json");
        let loaded = concierge_shared::actions::load_fixtures(&pool, &actions).await?;
        tracing::info!(actions = loaded, "action definitions loaded");
        let addr = listener.local_addr()?;
        let mut tasks = tokio::task::JoinSet::new();

        let ctx = concierge_worker::Context::build(&config, pool.clone()).await?;
        let worker_config = config.clone();
        let worker_shutdown = shutdown.clone();
        tasks.spawn(async move {
            concierge_worker::run(&worker_config, ctx, concierge_worker::WorkerOptions::default(), worker_shutdown)
                .await
        });

        let state = concierge_api::AppState::build(config, pool.clone(), shutdown.clone()).await?;
        let router = extra.merge(concierge_api::router(state));
        tasks.spawn(concierge_api::serve(listener, router, shutdown));
        Ok(Self { addr, pool, tasks })
    }

    /// Wait for the API and the workers to stop; the first error wins.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(error) = joined.map_err(anyhow::Error::from).and_then(|r| r)
                && result.is_ok()
            {
                result = Err(error);
            }
        }
        self.pool.close().await;
        result
    }
}
