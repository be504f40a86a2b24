//! Actions: which ones the caller may run in a conversation, running one (the result arrives
//! as a message over SSE), and the admins' view: definitions, switching one off, the run log.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use concierge_shared::{
    ActionRequester, ConversationId, ConversationStatus, OwnerKind,
    actions::{self, ActionDefinition, ActionRun, validate_params},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    AppState,
    auth::{Admin, Caller, owned},
    error::{
        ApiError, ErrorBody,
        responses::{
            ConversationClosed, InvalidInput, Malformed, NoSuchConversation, NotAdmin, NotJson, TooLarge,
            TooManyRequests, Unauthenticated, Unavailable,
        },
    },
    extract::{Json, Path, Query},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionOut {
    pub name: String,
    pub display_name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub parameters: Value,
}

impl From<ActionDefinition> for ActionOut {
    fn from(a: ActionDefinition) -> Self {
        Self { name: a.name, display_name: a.display_name, description: a.description, parameters: a.parameters.0 }
    }
}

#[utoipa::path(get, path = "/conversations/{id}/actions", tag = "actions", summary = "The actions the caller may run here", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = Vec<ActionOut>), Malformed, Unauthenticated, NoSuchConversation, TooManyRequests, Unavailable))]
pub async fn list_conversation_actions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<Vec<ActionOut>>, ApiError> {
    let conversation = owned(&state, id, &caller.owner).await?;
    let available = actions::available(&state.pool, conversation.owner_kind == OwnerKind::User).await?;
    Ok(JsonOut(available.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteIn {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

#[tracing::instrument(skip_all, fields(conversation_id = %id, action = %name), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/actions/{name}/execute", tag = "actions", summary = "Run an action; its result arrives as a message", params(("id" = uuid::Uuid, Path, description = "The conversation"), ("name" = String, Path, description = "The action: 2 to 63 of a-z, 0-9 and _, starting with a letter", pattern = "^[a-z][a-z0-9_]{1,62}$")), request_body = ExecuteIn, responses((status = 202, body = ActionRun), Malformed, Unauthenticated, (status = 404, description = "No such conversation for this caller, or no such action available in it", body = ErrorBody), ConversationClosed, TooLarge, NotJson, InvalidInput, TooManyRequests, Unavailable))]
pub async fn execute_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(ConversationId, String)>,
    Json(input): Json<ExecuteIn>,
) -> Result<(StatusCode, JsonOut<ActionRun>), ApiError> {
    state.limits.action_runs.check(&caller.owner)?;
    let conversation = owned(&state, id, &caller.owner).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    let available = actions::available(&state.pool, conversation.owner_kind == OwnerKind::User).await?;
    let action = available.into_iter().find(|a| a.name == name).ok_or(ApiError::NotFound)?;
    let params = input.params.unwrap_or_else(|| serde_json::json!({}));
    validate_params(action.schema(), &params)
        .map_err(|problem| ApiError::validation("invalid_params", "params", problem))?;
    let mut tx = state.pool.begin().await?;
    let run = actions::queue_run(
        &mut tx,
        id,
        None,
        &action.name,
        &params,
        ActionRequester::User,
        state.config.job_max_attempts,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("a run without a message cannot conflict"))?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, JsonOut(run)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminActionOut {
    #[serde(flatten)]
    pub definition: ActionDefinition,
}

#[utoipa::path(get, path = "/admin/actions", tag = "actions", summary = "Admin: every action definition", responses((status = 200, body = Vec<AdminActionOut>), Unauthenticated, NotAdmin, Unavailable))]
pub async fn admin_list_actions(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<JsonOut<Vec<AdminActionOut>>, ApiError> {
    Ok(JsonOut(actions::list(&state.pool).await?.into_iter().map(|definition| AdminActionOut { definition }).collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchActionIn {
    pub active: bool,
}

#[utoipa::path(patch, path = "/admin/actions/{name}", tag = "actions", summary = "Admin: switch an action on or off", params(("name" = String, Path, description = "The action: 2 to 63 of a-z, 0-9 and _, starting with a letter", pattern = "^[a-z][a-z0-9_]{1,62}$")), request_body = PatchActionIn, responses((status = 200, body = AdminActionOut), Malformed, Unauthenticated, NotAdmin, (status = 404, description = "No such action", body = ErrorBody), TooLarge, NotJson, InvalidInput, Unavailable))]
pub async fn admin_patch_action(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    Json(input): Json<PatchActionIn>,
) -> Result<JsonOut<AdminActionOut>, ApiError> {
    if !actions::set_active(&state.pool, &name, input.active).await? {
        return Err(ApiError::NotFound);
    }
    let definition = actions::get(&state.pool, &name).await?.ok_or(ApiError::NotFound)?;
    Ok(JsonOut(AdminActionOut { definition }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many runs, newest first: 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Only the runs of this action.
    pub action: Option<String>,
}

#[utoipa::path(get, path = "/admin/action-runs", tag = "actions", summary = "Admin: the action log", params(RunsQuery), responses((status = 200, body = Vec<ActionRun>), Malformed, Unauthenticated, NotAdmin, InvalidInput, Unavailable))]
pub async fn admin_list_runs(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<RunsQuery>,
) -> Result<JsonOut<Vec<ActionRun>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 500"));
    }
    Ok(JsonOut(actions::recent_runs(&state.pool, limit, query.action.as_deref()).await?))
}
