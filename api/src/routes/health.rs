//! Liveness and readiness probes.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use crate::{AppState, error::ApiError};

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The process is up.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The process can serve: its database answers.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.pool).await.map_err(|_| ApiError::Unavailable)?;
    Ok(Json(json!({ "status": "ready" })))
}
