//! Conversation metrics for the console: the stored daily figures of a span (written by the
//! metrics job) and totals over the whole span; and a request to recompute days.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use chrono::{NaiveDate, Utc};
use concierge_shared::{
    jobs::{self, ComputeMetrics},
    metrics::{self, ConversationMetrics, StoredDay},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::Admin,
    error::{
        ApiError,
        responses::{InvalidInput, Malformed, NotAdmin, NotJson, TooLarge, Unauthenticated, Unavailable},
    },
    extract::{Json, Query},
    routes::human::parse_day,
};

/// The longest span one request covers.
const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SpanQuery {
    /// First day (YYYY-MM-DD, years 2000 to 9000); default 13 days before `to`.
    #[param(value_type = Option<NaiveDate>)]
    pub from: Option<String>,
    /// Last day, inclusive; default today (UTC). A span covers at most 366 days.
    #[param(value_type = Option<NaiveDate>)]
    pub to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsOut {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// One entry per day the metrics job has computed, oldest first.
    pub days: Vec<StoredDay>,
    /// The whole span, computed now (percentiles over all its conversations).
    pub totals: ConversationMetrics,
}

fn span(from: Option<&str>, to: Option<&str>) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let today = Utc::now().date_naive();
    let to = to.map(|d| parse_day(d, "to")).transpose()?.unwrap_or(today);
    let from = from.map(|d| parse_day(d, "from")).transpose()?.unwrap_or(to - chrono::Duration::days(13));
    if from > to {
        return Err(ApiError::validation("invalid_span", "from", "from must not be after to"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::validation("invalid_span", "from", format!("a span covers at most {MAX_DAYS} days")));
    }
    Ok((from, to))
}

/// `GET /admin/metrics?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 14 days).
#[utoipa::path(get, path = "/admin/metrics", tag = "metrics", summary = "Admin: daily conversation metrics and totals", params(SpanQuery), responses((status = 200, body = MetricsOut), Malformed, Unauthenticated, NotAdmin, InvalidInput, Unavailable))]
pub async fn get_metrics(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<SpanQuery>,
) -> Result<JsonOut<MetricsOut>, ApiError> {
    let (from, to) = span(query.from.as_deref(), query.to.as_deref())?;
    let days = metrics::stored(&state.pool, from, to).await?;
    let end = metrics::day_start(to) + chrono::Duration::days(1);
    let totals = metrics::compute(&state.pool, metrics::day_start(from), end).await?;
    Ok(JsonOut(MetricsOut { from, to, days, totals }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecomputeIn {
    /// First day (YYYY-MM-DD, years 2000 to 9000).
    #[schema(value_type = NaiveDate)]
    pub from: String,
    /// Last day, inclusive; at most 366 days after `from`.
    #[schema(value_type = NaiveDate)]
    pub to: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecomputeOut {
    pub queued_days: usize,
}

/// `POST /admin/metrics/recompute`: queue the metrics job for every day of the span.
#[utoipa::path(post, path = "/admin/metrics/recompute", tag = "metrics", summary = "Admin: recompute the metrics of a span of days", request_body = RecomputeIn, responses((status = 202, body = RecomputeOut), Malformed, Unauthenticated, NotAdmin, TooLarge, NotJson, InvalidInput, Unavailable))]
pub async fn recompute(
    State(state): State<AppState>,
    _admin: Admin,
    Json(input): Json<RecomputeIn>,
) -> Result<(StatusCode, JsonOut<RecomputeOut>), ApiError> {
    let (from, to) = span(Some(&input.from), Some(&input.to))?;
    let cause = format!("request:{}", uuid::Uuid::new_v4());
    let mut tx = state.pool.begin().await?;
    let mut queued_days = 0;
    for day in from.iter_days().take_while(|day| *day <= to) {
        jobs::enqueue(&mut tx, &ComputeMetrics { day, cause: cause.clone() }, state.config.job_max_attempts).await?;
        queued_days += 1;
    }
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, JsonOut(RecomputeOut { queued_days })))
}
