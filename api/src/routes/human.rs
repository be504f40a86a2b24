//! The human path: the user's "call an operator" button, and the operators' console API —
//! conversations waiting for a person, their transcripts, replying as an operator, handing a
//! conversation back to the AI, closing it. This is the whole human loop when Telegram is not
//! configured, and the same state changes the Telegram commands make.

use axum::{Json as JsonOut, extract::State};
use chrono::{DateTime, Utc};
use concierge_shared::{
    ConversationId, ConversationMode, ConversationStatus, MessageRole,
    db::{
        conversations::{self, CloseOutcome, Conversation},
        messages::{self, NewMessage},
    },
    i18n::Locale,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    AppState,
    auth::{Admin, Caller},
    error::ApiError,
    extract::{Json, Path, Query},
    routes::{
        conversations::{ConversationOut, owned},
        messages::MessageOut,
    },
};

/// `POST /conversations/{id}/escalate`: the user asks for a person.
pub async fn escalate_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<ConversationOut>, ApiError> {
    let conversation = owned(&state, id, &caller.owner).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    let mut tx = state.pool.begin().await?;
    let current = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    if current.mode == ConversationMode::Ai {
        conversations::set_human_mode(&mut tx, id, "user_request").await?;
        let text = Locale::from_code(&current.locale).texts().escalated_to_human;
        let notice = NewMessage::system(text).with_metadata(json!({
            "kind": "status", "decision": "escalate", "reason": "user_request", "engine": "button",
            "status": ConversationStatus::Open, "mode": ConversationMode::Human,
        }));
        messages::append(&mut tx, id, notice).await?;
    }
    tx.commit().await?;
    Ok(JsonOut(owned(&state, id, &caller.owner).await?.into()))
}

#[derive(Debug, Serialize)]
pub struct AdminConversationOut {
    #[serde(flatten)]
    pub conversation: ConversationOut,
    pub owner_kind: String,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub owner_role: String,
    pub escalated_at: Option<DateTime<Utc>>,
    pub escalation_reason: Option<String>,
}

impl From<Conversation> for AdminConversationOut {
    fn from(c: Conversation) -> Self {
        Self {
            owner_kind: c.owner_kind.to_string(),
            owner_name: c.owner_name.clone(),
            owner_email: c.owner_email.clone(),
            owner_role: c.owner_role.to_string(),
            escalated_at: c.escalated_at,
            escalation_reason: c.escalation_reason.clone(),
            conversation: c.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminListQuery {
    pub mode: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AdminPageOut {
    pub items: Vec<AdminConversationOut>,
    pub next_cursor: Option<String>,
}

pub async fn admin_list_conversations(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AdminListQuery>,
) -> Result<JsonOut<AdminPageOut>, ApiError> {
    let mode = query
        .mode
        .as_deref()
        .map(str::parse::<ConversationMode>)
        .transpose()
        .map_err(|_| ApiError::validation("invalid_mode", "mode", "mode must be ai or human"))?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<ConversationStatus>)
        .transpose()
        .map_err(|_| ApiError::validation("invalid_status", "status", "status must be open or closed"))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    let before = query.cursor.as_deref().map(crate::routes::conversations::parse_cursor).transpose()?;
    let mut page = conversations::list_all(&state.pool, mode, status, before, limit + 1).await?;
    let has_more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next_cursor =
        has_more.then(|| page.last().map(|c| format!("{}_{}", c.updated_at.timestamp_micros(), c.id))).flatten();
    Ok(JsonOut(AdminPageOut { items: page.into_iter().map(Into::into).collect(), next_cursor }))
}

#[derive(Debug, Serialize)]
pub struct AdminDetailOut {
    #[serde(flatten)]
    pub conversation: AdminConversationOut,
    pub messages: Vec<MessageOut>,
}

pub async fn admin_get_conversation(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminDetailOut>, ApiError> {
    let conversation = conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    let messages = messages::list_after(&state.pool, id, 0, 1000).await?;
    Ok(JsonOut(AdminDetailOut {
        conversation: conversation.into(),
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyIn {
    pub content: String,
}

/// Reply as an operator: the message reaches the user's stream; the conversation is (or
/// becomes) human-handled.
pub async fn admin_reply(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<ConversationId>,
    Json(input): Json<ReplyIn>,
) -> Result<(axum::http::StatusCode, JsonOut<MessageOut>), ApiError> {
    let content = input.content.trim();
    if content.is_empty() || content.chars().count() > state.config.max_message_chars {
        return Err(ApiError::validation(
            "invalid_content",
            "content",
            format!("the reply must be 1 to {} characters", state.config.max_message_chars),
        ));
    }
    let mut tx = state.pool.begin().await?;
    let conversation = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    if conversation.mode == ConversationMode::Ai {
        conversations::set_human_mode(&mut tx, id, "operator_joined").await?;
    }
    let first_name = admin.name.as_deref().and_then(|n| n.split_whitespace().next()).unwrap_or("Оператор").to_owned();
    let reply = NewMessage::new(MessageRole::Operator, content)
        .with_metadata(json!({ "operator": { "name": first_name, "via": "console" } }));
    let message = messages::append(&mut tx, id, reply)
        .await?
        .ok_or_else(|| anyhow::anyhow!("an operator reply cannot conflict"))?;
    tx.commit().await?;
    Ok((axum::http::StatusCode::CREATED, JsonOut(message.into())))
}

/// Hand the conversation back to the AI.
pub async fn admin_hand_back(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminConversationOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let conversation = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    if conversation.mode == ConversationMode::Human {
        conversations::set_ai_mode(&mut tx, id).await?;
        let text = Locale::from_code(&conversation.locale).texts().back_to_ai;
        let notice = NewMessage::system(text).with_metadata(json!({
            "kind": "status", "status": ConversationStatus::Open, "mode": ConversationMode::Ai,
        }));
        messages::append(&mut tx, id, notice).await?;
    }
    tx.commit().await?;
    Ok(JsonOut(conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?.into()))
}

/// Close the conversation; the closing notice asks the user to rate.
pub async fn admin_close(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminConversationOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let conversation = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let text = Locale::from_code(&conversation.locale).texts().conversation_closed;
    match conversations::close(&mut tx, &conversation, text).await? {
        CloseOutcome::Closed(_) => tx.commit().await?,
        CloseOutcome::AlreadyClosed => tx.rollback().await?,
    }
    Ok(JsonOut(conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?.into()))
}
