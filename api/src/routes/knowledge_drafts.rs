//! Admin routes over knowledge drafts (articles made from operators' answers): list and read
//! them, edit a draft under review, approve it (the knowledge-draft job then writes the
//! document and queues the reindex) or discard it. Administrators only.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use concierge_shared::{
    KnowledgeDraftId,
    db::knowledge_drafts::{self as drafts, Draft},
    knowledge::draft::{self, BODY_MAX, DraftError, TITLE_MAX},
};
use serde::Deserialize;

use crate::{
    AppState,
    auth::Admin,
    error::{
        ApiError, ErrorBody,
        responses::{InvalidInput, Malformed, NotAdmin, NotJson, TooLarge, Unauthenticated, Unavailable},
    },
    extract::{Json, Path, Query},
};

/// A draft's state.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DraftStatus {
    Writing,
    Ready,
    Publishing,
    Approved,
    Discarded,
}

impl DraftStatus {
    fn as_str(self) -> &'static str {
        match self {
            DraftStatus::Writing => "writing",
            DraftStatus::Ready => "ready",
            DraftStatus::Publishing => "publishing",
            DraftStatus::Approved => "approved",
            DraftStatus::Discarded => "discarded",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DraftsQuery {
    /// Only drafts in this state; default all.
    pub status: Option<DraftStatus>,
    /// How many drafts, newest first, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Drafts newest first.
#[utoipa::path(get, path = "/knowledge/drafts", tag = "knowledge", summary = "Admin: knowledge drafts made from operators' answers", params(DraftsQuery), responses((status = 200, body = Vec<Draft>), Malformed, Unauthenticated, NotAdmin, InvalidInput, Unavailable))]
pub async fn list_drafts(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<DraftsQuery>,
) -> Result<JsonOut<Vec<Draft>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    Ok(JsonOut(drafts::list(&state.pool, query.status.map(DraftStatus::as_str), limit).await?))
}

#[utoipa::path(get, path = "/knowledge/drafts/{id}", tag = "knowledge", summary = "Admin: one knowledge draft", params(("id" = uuid::Uuid, Path, description = "The draft")), responses((status = 200, body = Draft), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such draft", body = ErrorBody), Unavailable))]
pub async fn get_draft(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<KnowledgeDraftId>,
) -> Result<JsonOut<Draft>, ApiError> {
    Ok(JsonOut(drafts::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftPatchIn {
    /// The document's title: one line, not blank, at most 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// The document's Markdown body (without the title), not blank, at most 20000 characters.
    #[schema(min_length = 1, max_length = 20000)]
    pub body: Option<String>,
}

/// Edit a draft under review (`ready`); fields left out stay as they are.
#[utoipa::path(patch, path = "/knowledge/drafts/{id}", tag = "knowledge", summary = "Admin: edit a knowledge draft", params(("id" = uuid::Uuid, Path, description = "The draft")), request_body = DraftPatchIn, responses((status = 200, body = Draft), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such draft", body = ErrorBody), (status = 409, description = "The draft is not under review (`draft_not_ready`)", body = ErrorBody), TooLarge, NotJson, InvalidInput, Unavailable))]
pub async fn edit_draft(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<KnowledgeDraftId>,
    Json(input): Json<DraftPatchIn>,
) -> Result<JsonOut<Draft>, ApiError> {
    let title = input.title.as_deref().map(checked_title).transpose()?;
    let body = input.body.as_deref().map(checked_body).transpose()?;
    let mut tx = state.pool.begin().await?;
    let draft = drafts::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    under_review(&draft)?;
    drafts::edit(&mut tx, id, title, body).await?;
    let edited = drafts::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(JsonOut(edited))
}

/// Approve a draft under review: it is published as a knowledge document (a new file of the
/// knowledge directory, or a document kept in the database when the directory is read-only)
/// and the knowledge base is reindexed, both by a worker; follow `status` to `approved`.
#[utoipa::path(post, path = "/knowledge/drafts/{id}/approve", tag = "knowledge", summary = "Admin: approve a knowledge draft", params(("id" = uuid::Uuid, Path, description = "The draft")), responses((status = 202, description = "Queued for publishing", body = Draft), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such draft", body = ErrorBody), (status = 409, description = "The draft is not under review (`draft_not_ready`)", body = ErrorBody), (status = 422, description = "The title and body do not make a document (`invalid_draft`)", body = ErrorBody), Unavailable))]
pub async fn approve_draft(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<KnowledgeDraftId>,
) -> Result<(StatusCode, JsonOut<Draft>), ApiError> {
    let mut tx = state.pool.begin().await?;
    let found = drafts::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    under_review(&found)?;
    let (title, body) = (found.title.as_deref().unwrap_or_default(), found.body.as_deref().unwrap_or_default());
    draft::render("draft.md", title, body, chrono::Utc::now().date_naive())
        .map_err(|error| ApiError::validation("invalid_draft", "body", error.to_string()))?;
    drafts::approve(&mut tx, id, admin.owner.as_str(), state.config.job_max_attempts).await?;
    let approved = drafts::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, JsonOut(approved)))
}

/// Discard a draft under review; it stays listed as `discarded`.
#[utoipa::path(post, path = "/knowledge/drafts/{id}/discard", tag = "knowledge", summary = "Admin: discard a knowledge draft", params(("id" = uuid::Uuid, Path, description = "The draft")), responses((status = 200, body = Draft), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such draft", body = ErrorBody), (status = 409, description = "The draft is not under review (`draft_not_ready`)", body = ErrorBody), Unavailable))]
pub async fn discard_draft(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<KnowledgeDraftId>,
) -> Result<JsonOut<Draft>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let found = drafts::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    under_review(&found)?;
    drafts::discard(&mut tx, id, admin.owner.as_str()).await?;
    let discarded = drafts::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(JsonOut(discarded))
}

fn under_review(draft: &Draft) -> Result<(), ApiError> {
    if draft.status != "ready" {
        return Err(ApiError::conflict(
            "draft_not_ready",
            format!("the draft is {}; only a draft waiting for review can be changed", draft.status),
        ));
    }
    Ok(())
}

fn checked_title(title: &str) -> Result<&str, ApiError> {
    draft::checked_title(title).map_err(|error| invalid("title", &error))
}

fn checked_body(body: &str) -> Result<&str, ApiError> {
    draft::checked_body(body).map_err(|error| invalid("body", &error))
}

// The OpenAPI document states these limits.
const _: () = assert!(TITLE_MAX == 200 && BODY_MAX == 20_000);

fn invalid(field: &'static str, error: &DraftError) -> ApiError {
    ApiError::validation("invalid_draft", field, error.to_string())
}
