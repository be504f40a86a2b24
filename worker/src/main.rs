//! `concierge-worker`: job workers alone, for deployments that scale them apart from the API.

use clap::Parser;
use concierge_shared::{config::Config, telemetry};
use concierge_worker::{Context, WorkerOptions};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Concierge job workers")]
struct Args {
    /// Comma-separated queues to run (process-message, execute-action, reindex, escalate,
    /// telegram-send, telegram-update, metrics); default all.
    #[arg(long, value_delimiter = ',')]
    queues: Vec<String>,
    /// Jobs of each queue run at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let args = Args::parse();
    let options = WorkerOptions::parse(&args.queues, args.concurrency)?;
    let config = Config::from_env()?;
    let pool = concierge_shared::db::connect(config.require_database_url()?, config.db_max_connections).await?;
    let ctx = Context::build(&config, pool).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
    concierge_worker::run(&config, ctx, options, shutdown).await
}
