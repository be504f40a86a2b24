//! `concierge-worker`: job workers alone, for deployments that scale them apart from the API.

use clap::Parser;
use concierge_shared::{
    config::{self, Settings},
    telemetry,
};
use concierge_worker::{Context, WorkerArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Concierge job workers (needs DATABASE_URL)", version, after_help = config::HELP_FOOTER)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli: Cli = config::parse_cli();
    let options = cli.worker.options()?;
    let config = cli.settings.resolve()?;
    let pool = concierge_shared::db::connect(config.require_database_url()?, config.db_max_connections).await?;
    let ctx = Context::build(&config, pool).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
    concierge_worker::run(&config, ctx, options, shutdown).await
}
