//! `concierge-api`: the HTTP server alone, for deployments that scale it apart from workers.

use concierge_shared::{config::Config, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let config = Config::from_env()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
    concierge_api::run(config, shutdown).await
}
