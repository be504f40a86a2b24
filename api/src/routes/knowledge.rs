//! Admin routes over the knowledge base: request a reindex and follow it, and search the
//! index the way the engine does, with scores, to debug answers.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use concierge_shared::{
    ReindexRunId,
    db::reindex_runs,
    embeddings::Embedder,
    knowledge::{KnowledgeBase, SearchOptions, normalize_query, store},
    message_meta::RetrievalInfo,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::{
    AppState,
    auth::Admin,
    error::{
        ApiError, ErrorBody,
        responses::{InvalidInput, Malformed, NotAdmin, TooManyRequests, Unauthenticated, Unavailable},
    },
    extract::{Path, Query},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReindexRunOut {
    #[serde(flatten)]
    pub run: reindex_runs::ReindexRun,
    /// Whether this request joined a run that was already queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<bool>,
}

/// Queue a reindex of the knowledge directory; requests made while one is queued join it.
#[utoipa::path(post, path = "/knowledge/reindex", tag = "knowledge", summary = "Admin: reindex the knowledge directory", responses((status = 202, body = ReindexRunOut), Unauthenticated, NotAdmin, Unavailable))]
pub async fn request_reindex(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<(StatusCode, JsonOut<ReindexRunOut>), ApiError> {
    let (run, created) = reindex_runs::request(&state.pool, &admin.owner, state.config.job_max_attempts).await?;
    Ok((StatusCode::ACCEPTED, JsonOut(ReindexRunOut { run, joined: Some(!created) })))
}

#[utoipa::path(get, path = "/knowledge/reindex/{id}", tag = "knowledge", summary = "Admin: a reindex run and its report", params(("id" = uuid::Uuid, Path, description = "The run")), responses((status = 200, body = ReindexRunOut), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such run", body = ErrorBody), Unavailable))]
pub async fn get_reindex(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ReindexRunId>,
) -> Result<JsonOut<ReindexRunOut>, ApiError> {
    let run = reindex_runs::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    Ok(JsonOut(ReindexRunOut { run, joined: None }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The question, 1 to 1000 characters, not blank.
    #[param(min_length = 1, max_length = 1000)]
    pub q: String,
    /// How many passages, 1 to 50; default 10.
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchOut {
    /// The knowledge version searched.
    pub version: i64,
    /// Distinct terms of the query after analysis.
    pub query_terms: usize,
    /// `hybrid` (lexical and vector rankings fused) or `lexical`.
    pub mode: String,
    /// Why the search was lexical although the knowledge base has vectors (`timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub hits: Vec<HitOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HitOut {
    pub chunk_id: String,
    pub path: String,
    pub title: String,
    pub heading: String,
    /// The ranking score: BM25 for a lexical search, the fused score for a hybrid one.
    pub score: f32,
    pub coverage: f32,
    /// BM25, when the lexical ranking found the passage.
    pub lexical: Option<f32>,
    /// Cosine similarity to the query, when the vector ranking found the passage.
    pub vector: Option<f32>,
    /// 1-based ranks in the lexical and the vector candidate lists.
    pub lexical_rank: Option<usize>,
    pub vector_rank: Option<usize>,
    pub text: String,
}

#[utoipa::path(get, path = "/knowledge/search", tag = "knowledge", summary = "Admin: ranked passages for a query", params(SearchQuery), responses((status = 200, body = SearchOut), Malformed, Unauthenticated, NotAdmin, InvalidInput, TooManyRequests, Unavailable))]
pub async fn search_knowledge(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(query): Query<SearchQuery>,
) -> Result<JsonOut<SearchOut>, ApiError> {
    // Each search may embed the query with a paid embeddings server.
    state.limits.admin_search.check(&admin.owner)?;
    // Counted as sent, as the document states the limit.
    let too_long = query.q.chars().count() > 1000;
    let q = query.q.trim();
    if q.is_empty() || too_long {
        return Err(ApiError::validation("invalid_query", "q", "q must be 1 to 1000 characters"));
    }
    let limit = query.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 50"));
    }
    let kb = knowledge(&state).await?;
    let index = kb.current();
    let q = normalize_query(q);
    let (vector, fallback) = kb.query_vector(&index, &q).await;
    let result =
        tokio::task::spawn_blocking(move || index.search_with(&q, vector.as_deref(), &SearchOptions::top(limit)))
            .await
            .map_err(anyhow::Error::from)?;
    let mode = RetrievalInfo::of(&result, fallback).mode;
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
            lexical: hit.lexical,
            vector: hit.vector,
            lexical_rank: hit.lexical_rank,
            vector_rank: hit.vector_rank,
            text: hit.chunk.text,
        })
        .collect();
    Ok(JsonOut(SearchOut {
        version: kb.version(),
        query_terms: result.query_terms,
        mode,
        fallback: fallback.map(str::to_owned),
        hits,
    }))
}

/// The API's copy of the search index, built on first use and kept current from then on.
async fn knowledge(state: &AppState) -> Result<Arc<KnowledgeBase>, ApiError> {
    let kb = state
        .knowledge
        .get_or_try_init(|| async {
            let embedder = state.config.embeddings.as_ref().map(|c| Arc::new(Embedder::new(c)));
            let kb = KnowledgeBase::load(state.pool.clone(), embedder).await?;
            kb.watch(state.shutdown.clone());
            anyhow::Ok(kb)
        })
        .await?;
    // A reindex may have finished an instant ago: do not answer from an older version.
    kb.refresh().await?;
    Ok(kb.clone())
}

/// The indexed documents, by path.
#[utoipa::path(get, path = "/knowledge/documents", tag = "knowledge", summary = "Admin: the indexed documents", responses((status = 200, body = Vec<store::DocumentSummary>), Unauthenticated, NotAdmin, Unavailable))]
pub async fn list_documents(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<JsonOut<Vec<store::DocumentSummary>>, ApiError> {
    Ok(JsonOut(store::documents(&state.pool).await?))
}
