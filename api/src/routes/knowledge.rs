//! Admin routes over the knowledge base: request a reindex and follow it, and search the
//! index the way the engine does, with scores, to debug answers.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use concierge_shared::{db::reindex_runs, knowledge::KnowledgeBase};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

use crate::{
    AppState,
    auth::Admin,
    error::ApiError,
    extract::{Path, Query},
};

#[derive(Debug, Serialize)]
pub struct ReindexRunOut {
    #[serde(flatten)]
    pub run: reindex_runs::ReindexRun,
    /// Whether this request joined a run that was already queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<bool>,
}

/// Queue a reindex of the knowledge directory; requests made while one is queued join it.
pub async fn request_reindex(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<(StatusCode, JsonOut<ReindexRunOut>), ApiError> {
    let (run, created) =
        reindex_runs::request(&state.pool, admin.owner.as_str(), state.config.job_max_attempts).await?;
    Ok((StatusCode::ACCEPTED, JsonOut(ReindexRunOut { run, joined: Some(!created) })))
}

pub async fn get_reindex(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<Uuid>,
) -> Result<JsonOut<ReindexRunOut>, ApiError> {
    let run = reindex_runs::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    Ok(JsonOut(ReindexRunOut { run, joined: None }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: String,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct SearchOut {
    /// The knowledge version searched.
    pub version: i64,
    /// Distinct terms of the query after analysis.
    pub query_terms: usize,
    pub hits: Vec<HitOut>,
}

#[derive(Debug, Serialize)]
pub struct HitOut {
    pub chunk_id: String,
    pub path: String,
    pub title: String,
    pub heading: String,
    pub score: f32,
    pub coverage: f32,
    pub text: String,
}

pub async fn search_knowledge(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<SearchQuery>,
) -> Result<JsonOut<SearchOut>, ApiError> {
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 1000 {
        return Err(ApiError::validation("invalid_query", "q", "q must be 1 to 1000 characters"));
    }
    let limit = query.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 50"));
    }
    let kb = knowledge(&state).await?;
    let index = kb.current();
    let q = q.to_owned();
    let result = tokio::task::spawn_blocking(move || index.search(&q, limit)).await.map_err(anyhow::Error::from)?;
    let hits = result
        .hits
        .into_iter()
        .map(|hit| HitOut {
            chunk_id: hit.chunk.id,
            path: hit.chunk.doc_path,
            title: hit.chunk.doc_title,
            heading: hit.chunk.heading,
            score: hit.score,
            coverage: hit.coverage,
            text: hit.chunk.text,
        })
        .collect();
    Ok(JsonOut(SearchOut { version: kb.version(), query_terms: result.query_terms, hits }))
}

/// The API's copy of the search index, built on first use and kept current from then on.
async fn knowledge(state: &AppState) -> Result<Arc<KnowledgeBase>, ApiError> {
    let kb = state
        .knowledge
        .get_or_try_init(|| async {
            let kb = KnowledgeBase::load(state.pool.clone()).await?;
            kb.watch(state.shutdown.clone());
            anyhow::Ok(kb)
        })
        .await?;
    // A reindex may have finished an instant ago: do not answer from an older version.
    kb.refresh().await?;
    Ok(kb.clone())
}
