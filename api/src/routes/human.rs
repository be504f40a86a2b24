//! The human path: the user's "call an operator" button, and the operators' console API —
//! conversations waiting for a person, their transcripts, replying as an operator, handing a
//! conversation back to the AI, closing it. This is the whole human loop when Telegram is not
//! configured, and the same state changes the Telegram commands make.

use axum::{Json as JsonOut, extract::State};
use chrono::{DateTime, Utc};
use concierge_shared::{
    ConversationId, ConversationMode, ConversationStatus, EscalationReason, OperatorChannel,
    db::{
        conversations::{self, Conversation},
        escalations, knowledge_drafts, llm_calls,
        messages::{self, NewMessage},
        telegram::{self, Note},
        transcripts, waits,
    },
    events::Event,
    human::{self, HumanError, Operator},
    i18n::{Locale, OperatorTexts, fill},
    jobs::{self, Escalate},
    message_meta::{DecisionInfo, MessageMeta},
    metrics,
};
use serde::{Deserialize, Serialize};

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
    routes::{
        conversations::ConversationOut,
        messages::{Audience, MessageOut, checked_attachment_ids},
    },
};

/// `POST /conversations/{id}/escalate`: the user asks for a person. Only once they have said
/// something (operators need a question to answer), and at most
/// `CONCIERGE_LIMIT_ESCALATIONS_PER_DAY` times a day per principal, however many
/// conversations they open: each hand-over costs a Telegram topic and an operator's attention.
#[utoipa::path(post, path = "/conversations/{id}/escalate", tag = "operators", summary = "The user asks for a person", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = ConversationOut), Malformed, Unauthenticated, NoSuchConversation, (status = 409, description = "The conversation is closed (`conversation_closed`), or the user has not written yet (`nothing_written`)", body = ErrorBody), TooManyRequests, Unavailable))]
pub async fn escalate_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<ConversationOut>, ApiError> {
    let conversation = owned(&state, id, &caller.owner).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    if messages::first_user_message(&state.pool, id).await?.is_none() {
        return Err(ApiError::conflict(
            "nothing_written",
            "write your question first; an operator will see it with the conversation",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let current = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    if current.status == ConversationStatus::Closed {
        // Closed while this request waited for the lock.
        return Err(ApiError::conflict("conversation_closed", "the conversation is closed"));
    }
    if current.mode == ConversationMode::Ai {
        let per_day = state.config.limits.escalations_per_day;
        if per_day > 0
            && let Some(wait) = escalations::record_request(&mut tx, &caller.owner, id, per_day).await?
        {
            return Err(crate::limits::refusal(
                "escalations",
                "escalation_limit",
                format!("at most {per_day} requests for an operator a day; the conversation stays with the assistant"),
                wait,
            ));
        }
        conversations::set_human_mode(&mut tx, id, EscalationReason::UserRequest.as_str()).await?;
        waits::start(&mut *tx, id).await?;
        let texts = Locale::from_code(&current.locale).texts();
        let text = texts.handover(texts.escalated_to_human, chrono::Utc::now());
        let notice = NewMessage::system(text).with_metadata(MessageMeta::handover(
            EscalationReason::UserRequest,
            None,
            DecisionInfo::button(),
        ));
        let notice = messages::append(&mut tx, id, notice)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a status notice cannot conflict"))?;
        let job = Escalate { conversation_id: id, escalation_id: notice.id };
        jobs::enqueue(&mut tx, &job, state.config.job_max_attempts).await?;
    }
    tx.commit().await?;
    Ok(JsonOut(owned(&state, id, &caller.owner).await?.into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminConversationOut {
    #[serde(flatten)]
    pub conversation: ConversationOut,
    pub owner_kind: String,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub owner_role: String,
    pub escalated_at: Option<DateTime<Utc>>,
    pub escalation_reason: Option<String>,
    /// Since when the user has waited for a first human reply after the latest hand-over;
    /// `null` when nobody waits (answered, back with the bot, closed, never handed over).
    pub waiting_since: Option<DateTime<Utc>>,
    /// The operator who took the conversation in Telegram (`/take`), as the topic names them.
    pub assignee: Option<String>,
}

impl AdminConversationOut {
    /// The conversations with who waits since when and who has them, in two queries.
    pub async fn load(pool: &sqlx::PgPool, list: Vec<Conversation>) -> Result<Vec<Self>, ApiError> {
        let ids: Vec<ConversationId> = list.iter().map(|c| c.id).collect();
        let waiting: std::collections::HashMap<_, _> = waits::open_since(pool, &ids).await?.into_iter().collect();
        let mut assignees: std::collections::HashMap<_, _> =
            telegram::assignees(pool, &ids).await?.into_iter().collect();
        Ok(list
            .into_iter()
            .map(|c| {
                let (waiting_since, assignee) = (waiting.get(&c.id).copied(), assignees.remove(&c.id));
                Self { waiting_since, assignee, ..Self::from(c) }
            })
            .collect())
    }

    pub async fn load_one(pool: &sqlx::PgPool, id: ConversationId) -> Result<Self, ApiError> {
        let conversation = conversations::get(pool, id).await?.ok_or(ApiError::NotFound)?;
        Ok(Self::load(pool, vec![conversation]).await?.pop().expect("one conversation in, one out"))
    }
}

impl From<Conversation> for AdminConversationOut {
    fn from(c: Conversation) -> Self {
        Self {
            waiting_since: None,
            assignee: None,
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminListQuery {
    #[param(inline, value_type = Option<ConversationMode>)]
    pub mode: Option<String>,
    #[param(inline, value_type = Option<ConversationStatus>)]
    pub status: Option<String>,
    /// Only conversations rated so, 1 to 5.
    #[param(minimum = 1, maximum = 5)]
    pub rating: Option<i16>,
    /// First day (YYYY-MM-DD, UTC, years 2000 to 9000) of creation.
    #[param(value_type = Option<chrono::NaiveDate>)]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, UTC, years 2000 to 9000) of creation, inclusive.
    #[param(value_type = Option<chrono::NaiveDate>)]
    pub to: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A `YYYY-MM-DD` query parameter.
pub fn parse_day(value: &str, field: &'static str) -> Result<chrono::NaiveDate, ApiError> {
    use chrono::Datelike;
    // Exactly the document's `format: date` (RFC 3339 full-date): four-digit year, two-digit
    // month and day, nothing around them.
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    Some(value)
        .filter(|_| shaped)
        .and_then(|value| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .filter(|day| crate::extract::PLAUSIBLE_YEARS.contains(&day.year()))
        .ok_or_else(|| {
            ApiError::validation(
                "invalid_date",
                field,
                format!("{field} must be a date, YYYY-MM-DD, from 2000 to 9000"),
            )
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminPageOut {
    pub items: Vec<AdminConversationOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/admin/conversations", tag = "operators", summary = "Admin: conversations by latest activity, filtered", params(AdminListQuery), responses((status = 200, body = AdminPageOut), Malformed, Unauthenticated, NotAdmin, InvalidInput, Unavailable))]
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
    if query.rating.is_some_and(|r| !(1..=5).contains(&r)) {
        return Err(ApiError::validation("invalid_rating", "rating", "rating must be from 1 to 5"));
    }
    let from = query.from.as_deref().map(|d| parse_day(d, "from")).transpose()?;
    let to = query.to.as_deref().map(|d| parse_day(d, "to")).transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    let filter = conversations::Filter {
        mode,
        status,
        rating: query.rating,
        from: from.map(metrics::day_start),
        to: to.and_then(|d| d.succ_opt()).map(metrics::day_start),
    };
    let before = query.cursor.as_deref().map(crate::routes::conversations::parse_cursor).transpose()?;
    let mut page = conversations::list_all(&state.pool, &filter, before, limit + 1).await?;
    let has_more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next_cursor =
        has_more.then(|| page.last().map(|c| format!("{}_{}", c.updated_at.timestamp_micros(), c.id))).flatten();
    Ok(JsonOut(AdminPageOut { items: AdminConversationOut::load(&state.pool, page).await?, next_cursor }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminDetailOut {
    #[serde(flatten)]
    pub conversation: AdminConversationOut,
    pub messages: Vec<MessageOut>,
    /// Operators' internal notes; never shown to the user.
    pub notes: Vec<Note>,
    /// The conversation's Telegram topic, if it has one.
    pub telegram_topic: Option<telegram::Topic>,
    pub action_runs: Vec<concierge_shared::actions::ActionRun>,
    /// The language-model calls made for the conversation (tokens, latency, outcome).
    pub llm_calls: Vec<llm_calls::LlmCall>,
}

#[utoipa::path(get, path = "/admin/conversations/{id}", tag = "operators", summary = "Admin: transcript, notes, topic, action runs and model calls", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = AdminDetailOut), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, Unavailable))]
pub async fn admin_get_conversation(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminDetailOut>, ApiError> {
    let conversation = AdminConversationOut::load_one(&state.pool, id).await?;
    let messages = messages::latest(&state.pool, id, 1000).await?;
    Ok(JsonOut(AdminDetailOut {
        conversation,
        messages: MessageOut::load(&state, messages, Audience::Operators).await?,
        notes: telegram::notes(&state.pool, id).await?,
        telegram_topic: telegram::topic(&state.pool, id).await?,
        action_runs: concierge_shared::actions::conversation_runs(&state.pool, id).await?,
        llm_calls: llm_calls::for_conversation(&state.pool, id, 500).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyIn {
    /// The text, not blank, at most `CONCIERGE_MAX_MESSAGE_CHARS` characters; may be empty when
    /// `attachment_ids` is not.
    pub content: String,
    /// Files uploaded by operators to this conversation (`POST .../attachments`) and not sent
    /// yet, at most 5.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub attachment_ids: Vec<uuid::Uuid>,
}

impl From<HumanError> for ApiError {
    fn from(error: HumanError) -> Self {
        match error {
            HumanError::NotFound => ApiError::NotFound,
            HumanError::Closed => ApiError::conflict("conversation_closed", "the conversation is closed"),
            HumanError::Database(error) => error.into(),
        }
    }
}

fn operator_texts(conversation: &Conversation) -> &'static OperatorTexts {
    &Locale::from_code(&conversation.locale).texts().operators
}

fn checked_content<'a>(state: &AppState, content: &'a str) -> Result<&'a str, ApiError> {
    // Counted as sent, as the document states the limit; stored trimmed.
    let too_long = content.chars().count() > state.config.max_message_chars;
    let content = content.trim();
    if content.is_empty() || too_long {
        return Err(ApiError::validation(
            "invalid_content",
            "content",
            format!("the text must be 1 to {} characters", state.config.max_message_chars),
        ));
    }
    Ok(content)
}

/// Reply as an operator: the message reaches the user's stream; the conversation is (or
/// becomes) human-handled. Operators following the conversation in Telegram see it too.
#[utoipa::path(post, path = "/admin/conversations/{id}/reply", tag = "operators", summary = "Admin: reply as an operator", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body = ReplyIn, responses((status = 201, body = MessageOut), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, ConversationClosed, TooLarge, NotJson, InvalidInput, Unavailable))]
pub async fn admin_reply(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<ConversationId>,
    Json(input): Json<ReplyIn>,
) -> Result<(axum::http::StatusCode, JsonOut<MessageOut>), ApiError> {
    let files = checked_attachment_ids(&input.attachment_ids)?;
    let too_long = input.content.chars().count() > state.config.max_message_chars;
    let content =
        if files.is_empty() || too_long { checked_content(&state, &input.content)? } else { input.content.trim() };
    let name = Operator::first_name(admin.name.as_deref());
    let mut tx = state.pool.begin().await?;
    let mut message =
        human::reply(&mut tx, id, &Operator { name: &name, via: OperatorChannel::Console }, content).await?;
    let refusal = "an attachment is not one operators uploaded to this conversation and not sent yet";
    crate::routes::attachments::attach_or_refuse(&mut tx, &mut message, "operator", &files, refusal).await?;
    let conversation = conversations::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
    let max_attempts = state.config.job_max_attempts;
    let key = format!("console:{}", message.id);
    if !content.is_empty() {
        let text = fill(operator_texts(&conversation).console_reply, &[("name", &name), ("text", content)]);
        // The button under it makes a knowledge draft of the reply.
        let button = knowledge_drafts::draft_button(
            message.id,
            Locale::from_code(&conversation.locale).knowledge_texts().button_draft,
        );
        telegram::notify_topic_with(&mut tx, id, key.clone(), text, Some(button), max_attempts).await?;
    }
    // Each file is a post of its own (sendPhoto, sendDocument or sendVoice), in upload order,
    // captioned like a text reply with the file's name.
    let sent = if files.is_empty() { Vec::new() } else { transcripts::of_message(&mut *tx, message.id).await? };
    for (index, file) in sent.iter().enumerate() {
        let caption = fill(operator_texts(&conversation).console_reply, &[("name", &name), ("text", &file.file_name)]);
        telegram::notify_topic_file(&mut tx, id, format!("{key}:file:{index}"), caption, file.id, max_attempts).await?;
    }
    tx.commit().await?;
    state.hub.committed(&message);
    let message = MessageOut::load_one(&state, message, Audience::Operators).await?;
    Ok((axum::http::StatusCode::CREATED, JsonOut(message)))
}

/// Upload a file for an operator's reply from the console, to send with `attachment_ids` on
/// `POST .../reply`: the same form, cap and checks as the user's upload.
#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/admin/conversations/{id}/attachments", tag = "operators", summary = "Admin: upload a file (a multipart form with one `file` part) for a reply", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body(content = crate::routes::attachments::UploadForm, content_type = "multipart/form-data"), responses((status = 201, body = crate::routes::attachments::AttachmentOut), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, ConversationClosed, (status = 413, description = "The file is larger than the attachment cap", body = ErrorBody), (status = 415, description = "The body is not `multipart/form-data`", body = ErrorBody), InvalidInput, Unavailable))]
pub async fn admin_upload_attachment(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<axum::response::Response, ApiError> {
    let conversation = conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    if conversation.status == ConversationStatus::Closed {
        return Err(HumanError::Closed.into());
    }
    crate::routes::attachments::store_upload(&state, id, "operator", form).await
}

/// The operator is writing: the user's widget shows "{name} is typing" for a few seconds. The
/// console calls this every few seconds while its reply box is being typed in.
#[utoipa::path(post, path = "/admin/conversations/{id}/typing", tag = "operators", summary = "Admin: show the user that an operator is typing", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 204, description = "The user's streams were told"), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, ConversationClosed, Unavailable))]
pub async fn admin_typing(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<ConversationId>,
) -> Result<axum::http::StatusCode, ApiError> {
    let conversation = conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    if conversation.status == ConversationStatus::Closed {
        return Err(HumanError::Closed.into());
    }
    let name = Operator::first_name(admin.name.as_deref());
    Event::OperatorTyping { conversation_id: id, name }.publish(&state.pool).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Hand the conversation back to the AI.
#[utoipa::path(post, path = "/admin/conversations/{id}/ai", tag = "operators", summary = "Admin: hand the conversation back to the AI", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = AdminConversationOut), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, ConversationClosed, Unavailable))]
pub async fn admin_hand_back(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminConversationOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    if human::hand_back(&mut tx, id).await? {
        let conversation = conversations::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
        let text = operator_texts(&conversation).handed_back.to_owned();
        let key = format!("ai:{}:{}", id, conversation.last_seq);
        telegram::notify_topic(&mut tx, id, key, text, state.config.job_max_attempts).await?;
    }
    tx.commit().await?;
    Ok(JsonOut(AdminConversationOut::load_one(&state.pool, id).await?))
}

/// Close the conversation; the closing notice asks the user to rate.
#[utoipa::path(post, path = "/admin/conversations/{id}/close", tag = "operators", summary = "Admin: close and ask the user to rate", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = AdminConversationOut), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, Unavailable))]
pub async fn admin_close(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<AdminConversationOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    if human::close(&mut tx, id).await? {
        let conversation = conversations::get(&mut *tx, id).await?.ok_or(ApiError::NotFound)?;
        let text = operator_texts(&conversation).closed.to_owned();
        telegram::notify_topic(&mut tx, id, format!("closed:{id}"), text, state.config.job_max_attempts).await?;
    }
    tx.commit().await?;
    Ok(JsonOut(AdminConversationOut::load_one(&state.pool, id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteIn {
    /// The text, not blank, at most `CONCIERGE_MAX_MESSAGE_CHARS` characters.
    #[schema(min_length = 1)]
    pub content: String,
}

/// An internal note: operators see it in the console and the transcript, the user never does.
#[utoipa::path(post, path = "/admin/conversations/{id}/notes", tag = "operators", summary = "Admin: an internal note the user never sees", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body = NoteIn, responses((status = 201, body = Vec<Note>), Malformed, Unauthenticated, NotAdmin, NoSuchConversation, TooLarge, NotJson, InvalidInput, Unavailable))]
pub async fn admin_add_note(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<ConversationId>,
    Json(input): Json<NoteIn>,
) -> Result<(axum::http::StatusCode, JsonOut<Vec<Note>>), ApiError> {
    let content = checked_content(&state, &input.content)?;
    conversations::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    let author = admin.name.clone().unwrap_or_else(|| admin.owner.as_str().to_owned());
    telegram::add_note(&state.pool, id, &author, content, OperatorChannel::Console, None).await?;
    Ok((axum::http::StatusCode::CREATED, JsonOut(telegram::notes(&state.pool, id).await?)))
}
