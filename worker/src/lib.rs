//! Concierge's job workers. One apalis worker per queue, each reading jobs from PostgreSQL
//! (woken by the queue's insert notifications) and running up to `concurrency` at once.
//! A worker process registers under a unique name and heartbeats; jobs held by a worker that
//! stops heartbeating are handed back to the queue and picked up by another.

pub mod actions;
pub mod attachments;
pub mod email;
pub mod engine;
pub mod execute_action;
mod job_metrics;
pub mod knowledge_draft;
pub mod llm;
pub mod metrics;
pub mod platform;
pub mod process_message;
pub mod reindex;
pub mod retention;
mod retry;
pub mod telegram;
pub mod transcribe;
mod wakeup;

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use concierge_shared::{
    config::{Config, TelegramMode},
    db::worker_instances::{self, Instance},
    embeddings::Embedder,
    jobs::{
        ApplyRetention, ComputeMetrics, Escalate, ExecuteAction, Job, KnowledgeDraft, ProcessMessage, Queue, Reindex,
        SendReplyEmail, TelegramSend, TelegramUpdate, Transcribe, WatchSla,
    },
    knowledge::KnowledgeBase,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What every job handler can reach.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub knowledge: Arc<KnowledgeBase>,
    /// The embeddings server, when one is configured: the reindex job embeds new chunks.
    pub embedder: Option<Arc<Embedder>>,
    /// The Markdown directory the reindex job reads.
    pub knowledge_dir: std::path::PathBuf,
    /// Approved knowledge drafts go to the database, never into `knowledge_dir`.
    pub knowledge_read_only: bool,
    /// Attempts a job gets before its failure is final.
    pub max_attempts: u32,
    /// The language model, when one is configured; the offline engine otherwise.
    pub llm: Option<Arc<llm::Llm>>,
    /// The host platform's API, which actions read.
    pub platform: Arc<platform::PlatformClient>,
    pub status_cache: Arc<actions::StatusCache>,
    /// Users' plans for the model's context.
    pub plans: Arc<actions::PlanCache>,
    /// Action definitions, re-read every few seconds.
    pub definitions: Arc<actions::DefinitionCache>,
    /// The support group, when a bot is configured; escalations then open Telegram topics.
    pub telegram: Option<Arc<telegram::Telegram>>,
    /// How long closed conversations are kept (`CONCIERGE_RETENTION_DAYS`); `None`: for ever.
    pub retention: Option<Duration>,
    /// The SMTP server for replies by email, when one is configured.
    pub mailer: Option<Arc<email::Mailer>>,
    /// The speech-to-text server, when one is configured: voice messages are transcribed.
    pub transcriber: Option<Arc<transcribe::Transcriber>>,
    /// Attachment files (the data folder's `attachments/`, or the S3 bucket), the API's store.
    pub storage: concierge_shared::storage::Storage,
    /// The largest attachment file stored (`CONCIERGE_MAX_ATTACHMENT_MB`), in bytes.
    pub max_attachment_bytes: usize,
    /// What signed links to attachments are keyed with (the JWT secret; empty without one).
    pub link_secret: String,
}

/// Which queues to run and how many jobs of each at once.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<Queue>,
    pub concurrency: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { queues: Queue::ALL.to_vec(), concurrency: 8 }
    }
}

/// The worker options of `concierge worker` and `concierge-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Comma-separated queues to run (process-message, execute-action, reindex, escalate,
    /// telegram-send, telegram-update, metrics, retention, sla, knowledge-draft, email,
    /// transcribe); default all.
    #[arg(long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Jobs of each queue run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Run only the process-message queue, with a handler that does nothing (the queue's own
    /// ceiling in `concierge bench saturate`).
    #[arg(long, hide = true)]
    pub noop_handler: bool,
}

impl WorkerArgs {
    pub fn options(&self) -> anyhow::Result<WorkerOptions> {
        WorkerOptions::parse(&self.queues, self.concurrency)
    }
}

impl WorkerOptions {
    /// From the command line: queue names (empty means all) and a concurrency of at least 1.
    pub fn parse(queues: &[String], concurrency: usize) -> anyhow::Result<Self> {
        if concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        let queues = if queues.is_empty() {
            Queue::ALL.to_vec()
        } else {
            queues
                .iter()
                .map(|name| {
                    Queue::from_cli_name(name.trim()).ok_or_else(|| {
                        let known: Vec<_> = Queue::ALL.iter().map(|q| q.cli_name()).collect();
                        anyhow::anyhow!("unknown queue {name:?}; known: {}", known.join(", "))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        Ok(Self { queues, concurrency })
    }
}

impl Context {
    pub async fn build(config: &Config, pool: PgPool) -> anyhow::Result<Self> {
        concierge_shared::telemetry::prometheus();
        let embedder = config.embeddings.as_ref().map(|c| Arc::new(Embedder::new(c)));
        let knowledge = KnowledgeBase::load(pool.clone(), embedder.clone()).await?;
        if knowledge.current().is_empty() {
            tracing::warn!(
                "the knowledge base is empty: run `concierge reindex` or POST /api/concierge/knowledge/reindex/"
            );
        }
        let llm = llm::Llm::from_config(&config.ai)?;
        match &llm {
            Some(llm) => tracing::info!(
                provider = llm.provider,
                model = llm.client.model(),
                prompt = llm.prompt.version,
                "decisions by a language model"
            ),
            None => tracing::info!("decisions by the offline engine"),
        }
        let storage = concierge_shared::storage::Storage::from_config(config)?;
        storage.check().await?;
        let telegram = match &config.telegram {
            Some(settings) => {
                let telegram = telegram::Telegram::new(settings)?.with_max_attempts(config.job_max_attempts);
                telegram.load_current_chat(&pool).await?;
                Some(Arc::new(telegram))
            }
            None => None,
        };
        Ok(Self {
            pool,
            knowledge,
            embedder,
            knowledge_dir: config.knowledge_dir.clone(),
            knowledge_read_only: config.knowledge_read_only,
            max_attempts: config.job_max_attempts,
            llm,
            platform: Arc::new(platform::PlatformClient::new(
                config.platform_url.as_deref(),
                config.platform_token.clone(),
                config.platform_timeout,
            )?),
            status_cache: Default::default(),
            plans: Default::default(),
            definitions: Default::default(),
            telegram,
            retention: config.retention,
            mailer: config.email.as_ref().map(email::Mailer::new).transpose()?.map(Arc::new),
            transcriber: config.transcribe.as_ref().map(transcribe::Transcriber::new).transpose()?.map(Arc::new),
            storage,
            max_attachment_bytes: config.max_attachment_bytes,
            link_secret: config.jwt_secret.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default(),
        })
    }
}

/// Register one apalis worker for the queue of `$job`, with the shared storage settings. A
/// restarted worker registers under a new name: apalis-postgres holds each name with an
/// advisory lock on the connection that registered it, which may still be in the pool.
macro_rules! register {
    ($monitor:expr, $job:ty, $ctx:expr, $inserts:expr, $config:expr, $name:expr, $concurrency:expr, $handler:path) => {{
        let (ctx, inserts, config, name, concurrency) =
            ($ctx.clone(), $inserts.clone(), $config.clone(), $name, $concurrency);
        let starts = std::sync::atomic::AtomicU32::new(0);
        $monitor.register(move |_| {
            let start = starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = if start == 0 { name.clone() } else { format!("{name}~{start}") };
            WorkerBuilder::new(name)
                .backend(
                    PostgresStorage::<$job>::new(&ctx.pool)
                        .with_config(storage_config::<$job>(&config))
                        .poll_with_strategy(wakeup::<$job>(&inserts)),
                )
                .catch_panic()
                .layer(job_metrics::JobMetricsLayer::new(<$job as Job>::QUEUE.cli_name()))
                .concurrency(concurrency)
                .data(ctx.clone())
                .build($handler)
        })
    }};
}

/// Restarts of one queue's worker before the process gives up (and exits with an error).
const MAX_RESTARTS: usize = 1_000;

/// Run the workers until `shutdown`; in-flight jobs finish before this returns.
pub async fn run(
    config: &Config,
    ctx: Context,
    options: WorkerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let instance = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut monitor =
        Monitor::new().shutdown_timeout(std::time::Duration::from_secs(30)).should_restart(|worker, error| {
            // A database outage ends a worker (fetching or its heartbeat fails); without a restart
            // its queue would stop in this process for good. Restarts are paced by the pool's
            // connect timeout while the database is away.
            let restarts = worker.restarts();
            tracing::error!(worker = worker.name(), %error, restarts, "a worker stopped; restarting it");
            restarts < MAX_RESTARTS
        });
    if options.queues.contains(&Queue::Reindex) {
        reindex::keep_embedded(&ctx, shutdown.clone());
    }
    let names: Vec<&str> = options.queues.iter().map(|queue| queue.name()).collect();
    let inserts = wakeup::Inserts::start(&ctx.pool, &names, shutdown.clone()).await?;
    for queue in &options.queues {
        let name = format!("{}@{instance}", queue.cli_name());
        let concurrency = options.concurrency;
        monitor = match queue {
            Queue::ProcessMessage => {
                register!(monitor, ProcessMessage, ctx, inserts, config, name, concurrency, process_message::handle)
            }
            Queue::ExecuteAction => {
                register!(monitor, ExecuteAction, ctx, inserts, config, name, concurrency, execute_action::handle)
            }
            // One reindex at a time: each one rebuilds the whole index.
            Queue::Reindex => register!(monitor, Reindex, ctx, inserts, config, name, 1, reindex::handle),
            Queue::Escalate => {
                register!(monitor, Escalate, ctx, inserts, config, name, concurrency, telegram::escalate::handle)
            }
            Queue::TelegramSend => {
                register!(monitor, TelegramSend, ctx, inserts, config, name, concurrency, telegram::outbox::handle)
            }
            Queue::TelegramUpdate => {
                register!(monitor, TelegramUpdate, ctx, inserts, config, name, concurrency, telegram::updates::handle)
            }
            Queue::Metrics => register!(monitor, ComputeMetrics, ctx, inserts, config, name, 1, metrics::handle),
            Queue::Retention => {
                register!(monitor, ApplyRetention, ctx, inserts, config, name, 1, retention::handle)
            }
            Queue::Sla => register!(monitor, WatchSla, ctx, inserts, config, name, 1, telegram::sla::handle),
            Queue::KnowledgeDraft => {
                register!(monitor, KnowledgeDraft, ctx, inserts, config, name, concurrency, knowledge_draft::handle)
            }
            Queue::Email => register!(monitor, SendReplyEmail, ctx, inserts, config, name, concurrency, email::handle),
            Queue::Transcribe => {
                register!(monitor, Transcribe, ctx, inserts, config, name, concurrency, transcribe::handle)
            }
        };
    }
    if let Some(bind) = config.metrics_bind {
        let (pool, token, shutdown) = (ctx.pool.clone(), config.metrics_token.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_metrics(bind, pool, token, shutdown).await {
                tracing::error!(error = format!("{error:#}"), "the metrics endpoint stopped");
            }
        });
    }
    if options.queues.contains(&Queue::Metrics) {
        tokio::spawn(metrics::schedule(ctx.clone(), shutdown.clone()));
    }
    if options.queues.contains(&Queue::Retention) {
        if ctx.retention.is_some() {
            tokio::spawn(retention::schedule(ctx.clone(), shutdown.clone()));
        }
        tokio::spawn(retention::sweep_files_regularly(ctx.clone(), shutdown.clone()));
    }
    if let Some(telegram) = ctx.telegram.clone() {
        if options.queues.contains(&Queue::TelegramSend) {
            tokio::spawn(sweep_outbox(ctx.clone(), shutdown.clone()));
        }
        if let Some(sla) = telegram.sla
            && options.queues.contains(&Queue::Sla)
        {
            tokio::spawn(telegram::sla::schedule(ctx.clone(), sla, shutdown.clone()));
        }
        if telegram.mode == TelegramMode::Polling && options.queues.contains(&Queue::TelegramUpdate) {
            tokio::spawn(telegram::poller::run(ctx.clone(), telegram, shutdown.clone()));
        }
    }
    ctx.knowledge.watch(shutdown.clone());
    let queue_names: Vec<String> = options.queues.iter().map(|q| q.cli_name().to_owned()).collect();
    let heartbeat =
        tokio::spawn(heartbeat(ctx.clone(), instance.clone(), queue_names, config.worker_heartbeat, shutdown.clone()));
    tracing::info!(queues = ?options.queues.iter().map(|q| q.cli_name()).collect::<Vec<_>>(), concurrency = options.concurrency, "workers started");
    monitor
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    heartbeat.abort();
    let _ = worker_instances::remove(&ctx.pool, &instance).await;
    tracing::info!("workers stopped");
    Ok(())
}

/// The process-message queue's worker, set up as [`run`] sets it up (storage settings, insert
/// notifications, concurrency), with a handler that completes every job at once: what the
/// queue alone costs per message. For `concierge bench saturate`; runs until `shutdown`.
pub async fn run_noop(
    config: &Config,
    ctx: Context,
    concurrency: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let inserts = wakeup::Inserts::start(&ctx.pool, &[Queue::ProcessMessage.name()], shutdown.clone()).await?;
    let name = format!("noop@{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let monitor = Monitor::new().shutdown_timeout(Duration::from_secs(30));
    let monitor = register!(monitor, ProcessMessage, ctx, inserts, config, name, concurrency, noop);
    monitor
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    Ok(())
}

async fn noop(_: ProcessMessage, _: Data<Context>) -> Result<(), BoxDynError> {
    Ok(())
}

/// Keep this process's `worker_instances` row fresh, and update it at once when the
/// knowledge base is reloaded.
async fn heartbeat(ctx: Context, id: String, queues: Vec<String>, every: Duration, shutdown: CancellationToken) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let instance = Instance { id: &id, host: &host, pid: std::process::id() as i32, queues: &queues };
    let mut versions = ctx.knowledge.subscribe();
    let mut ticks = tokio::time::interval(every);
    loop {
        let version = *versions.borrow_and_update();
        if let Err(error) = worker_instances::heartbeat(&ctx.pool, &instance, version).await {
            tracing::warn!(%error, "worker heartbeat failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            _ = versions.changed() => {}
        }
    }
}

/// Every minute, queue the topics whose posts are waiting with nobody sending them.
async fn sweep_outbox(ctx: Context, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = telegram::outbox::sweep(&ctx).await {
            tracing::warn!(error = format!("{error:#}"), "the Telegram outbox sweep failed");
        }
    }
}

/// Fetch on each insert notification, again 2 ms after it, and every second. The re-check
/// serves the jobs whose notification came while a fetch was in flight (a claim takes about half
/// a millisecond): at 10 ms, those waited for it, and `bench` measured the p99 from POST to
/// reply at 29–52 ms lexical and 32–72 ms hybrid over four runs, against 29–32 and 32–48 at 2.
fn wakeup<J: Job>(inserts: &wakeup::Inserts) -> wakeup::Wakeup<tokio_stream::wrappers::WatchStream<u64>> {
    wakeup::Wakeup::new(inserts.subscribe(J::QUEUE.name()), Duration::from_millis(2), Duration::from_secs(1))
}

/// The queue's storage settings: a job whose worker missed three heartbeats is re-queued.
fn storage_config<J: Job>(config: &Config) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(J::QUEUE.name())
        .batch_size(10)
        .heartbeat_interval(config.worker_heartbeat)
        .missed_heartbeats(3)
}

/// Serve Prometheus `/metrics` for a worker process until `shutdown`.
pub async fn serve_metrics(
    bind: std::net::SocketAddr,
    pool: PgPool,
    token: Option<concierge_shared::config::Secret>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (pool, token) = (pool.clone(), token.clone());
            async move {
                let authorization = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                if !concierge_shared::telemetry::metrics_allowed(authorization, token.as_ref()) {
                    return axum::response::IntoResponse::into_response(StatusCode::UNAUTHORIZED);
                }
                axum::response::IntoResponse::into_response(concierge_shared::telemetry::render_prometheus(&pool).await)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!("worker metrics on http://{}/metrics", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}
