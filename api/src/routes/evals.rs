//! Admin route over recorded decision evaluations (`concierge eval decisions`): the console's
//! list of past runs and prompt comparisons, newest first.

use axum::{Json as JsonOut, extract::State};
use concierge_shared::db::eval_runs::{self, EvalEntry};
use serde::Deserialize;

use crate::{
    AppState,
    auth::Admin,
    error::{
        ApiError,
        responses::{InvalidInput, Malformed, NotAdmin, Unauthenticated, Unavailable},
    },
    extract::Query,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvalRunsQuery {
    /// How many entries (a comparison counts as one), 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// `GET /admin/eval-runs`: plain runs and comparisons, newest first; a comparison's runs come
/// in the order A, B.
#[utoipa::path(get, path = "/admin/eval-runs", tag = "eval", summary = "Admin: recorded decision evaluations", params(EvalRunsQuery), responses((status = 200, body = Vec<EvalEntry>), Malformed, Unauthenticated, NotAdmin, InvalidInput, Unavailable))]
pub async fn admin_list_eval_runs(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<EvalRunsQuery>,
) -> Result<JsonOut<Vec<EvalEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    Ok(JsonOut(eval_runs::recent(&state.pool, limit).await?))
}
