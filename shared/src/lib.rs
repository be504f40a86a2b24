//! Concierge's shared core: the domain types, database access, configuration, the job
//! types both the API and the workers agree on, and the knowledge-base search.
//!
//! Nothing here knows about HTTP or about the worker runtime: the `api` crate parses and
//! authorises requests, the `worker` crate runs jobs, and both call into this crate.

pub mod actions;
pub mod attachments;
pub mod breaker;
pub mod config;
pub mod db;
pub mod domain;
pub mod duty;
pub mod email;
pub mod embeddings;
pub mod events;
pub mod human;
pub mod i18n;
pub mod jobs;
pub mod knowledge;
pub mod links;
pub mod message_meta;
pub mod metrics;
pub mod pg;
pub mod privacy;
pub mod queue_schema;
pub mod secret;
pub mod storage;
pub mod telemetry;

pub use domain::*;

/// Cancel `token` on SIGINT or SIGTERM, so every part of a process drains and stops.
pub async fn shutdown_on_signal(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}
