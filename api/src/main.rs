//! `concierge-api`: the HTTP server alone, for deployments that scale it apart from workers.

use clap::Parser;
use concierge_shared::{
    config::{self, Settings},
    telemetry,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "The Concierge HTTP API (needs DATABASE_URL and CONCIERGE_JWT_SECRET)", version, after_help = config::HELP_FOOTER)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli: Cli = config::parse_cli();
    let config = cli.settings.resolve()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
    concierge_api::run(config, shutdown).await
}
