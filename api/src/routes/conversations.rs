//! Conversations: open, list, read, close, rate; and stream tokens for the SSE route.

use axum::{Json as JsonOut, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use concierge_shared::{
    ConversationId, ConversationMode, ConversationStatus, Role,
    db::{
        conversations::{self, CloseOutcome, Conversation, NewConversation},
        messages, telegram,
    },
    i18n::{Locale, fill},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::{Caller, MaybeCaller, StreamToken, owned},
    error::{
        ApiError, ErrorBody,
        responses::{
            InvalidInput, Malformed, NoSuchConversation, NotJson, TooLarge, TooManyRequests, Unauthenticated,
            Unavailable,
        },
    },
    extract::{Json, Path, Query},
    limits::ClientIp,
    routes::{
        email_reply::{EmailReplyOut, email_reply_of},
        messages::{Audience, MessageOut},
    },
};

/// How many messages the detail view includes.
const DETAIL_MESSAGES: i64 = 50;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationOut {
    pub id: ConversationId,
    pub status: ConversationStatus,
    pub mode: ConversationMode,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub rating: Option<i16>,
    pub rating_comment: Option<String>,
    /// The sequence number of the latest message: resume point for `messages/?after=`.
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<Conversation> for ConversationOut {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id,
            status: c.status,
            mode: c.mode,
            page_url: c.page_url,
            page_title: c.page_title,
            rating: c.rating,
            rating_comment: c.rating_comment,
            last_seq: c.last_seq,
            created_at: c.created_at,
            updated_at: c.updated_at,
            closed_at: c.closed_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationIn {
    /// The page the widget is on: an absolute http(s) URL, at most 2048 characters.
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub page_url: Option<String>,
    /// The page's title, at most 300 characters; blank counts as none.
    #[schema(max_length = 300)]
    pub page_title: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedConversationOut {
    #[serde(flatten)]
    pub conversation: ConversationOut,
    /// Only for anonymous callers: the token that identifies them from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_token: Option<String>,
    pub stream_token: StreamToken,
}

#[tracing::instrument(skip_all, err(level = "debug"))]
#[utoipa::path(post, path = "/conversations", tag = "conversations", summary = "Open a conversation (anonymous callers get a visitor token)", request_body = CreateConversationIn, responses((status = 201, body = CreatedConversationOut), Malformed, Unauthenticated, TooLarge, NotJson, InvalidInput, TooManyRequests, Unavailable), security((), ("bearer" = [])))]
pub async fn create_conversation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    MaybeCaller(caller): MaybeCaller,
    Json(input): Json<CreateConversationIn>,
) -> Result<(StatusCode, JsonOut<CreatedConversationOut>), ApiError> {
    // Per IP: a visitor gets a new identity with every conversation, the address stays.
    state.limits.conversations.check(&ip)?;
    // The query and fragment go before anything is stored, so neither the model nor Telegram
    // ever sees them (unless CONCIERGE_KEEP_PAGE_QUERY).
    let page_url = input.page_url.map(checked_page_url).transpose()?.map(|url| match url::Url::parse(&url) {
        Ok(parsed) if !state.config.keep_page_query => concierge_shared::privacy::page_url(&parsed, false),
        _ => url,
    });
    let page_title = optional_text(input.page_title, "page_title", 300)?;

    let (caller, visitor_token) = match caller {
        Some(caller) => (caller, None),
        None => {
            let (token, owner) = state.keys.issue_visitor()?;
            (Caller { owner, role: Role::Visitor, name: None, email: None, expires_at: None }, Some(token))
        }
    };
    let conversation = conversations::create(
        &state.pool,
        NewConversation {
            owner: &caller.owner,
            owner_name: caller.name.as_deref(),
            owner_email: caller.email.as_deref(),
            owner_role: caller.role,
            page_url: page_url.as_deref(),
            page_title: page_title.as_deref(),
        },
    )
    .await?;
    tracing::info!(conversation_id = %conversation.id, owner_kind = %caller.owner.kind(), "conversation opened");
    let stream_token = state.keys.issue_stream(&caller.owner, conversation.id)?;
    Ok((
        StatusCode::CREATED,
        JsonOut(CreatedConversationOut { conversation: conversation.into(), visitor_token, stream_token }),
    ))
}

/// An absolute http(s) URL, as the document states it: at most 2048 characters, starting with
/// the scheme (no blank before it).
fn checked_page_url(url: String) -> Result<String, ApiError> {
    if url.chars().count() > 2048 {
        return Err(ApiError::validation("too_long", "page_url", "page_url is longer than 2048 characters"));
    }
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    let valid = matches!(scheme.as_deref(), Some("http" | "https"))
        && url::Url::parse(&url).is_ok_and(|u| u.has_host() && matches!(u.scheme(), "http" | "https"));
    if !valid {
        return Err(ApiError::validation("invalid_page_url", "page_url", "page_url must be an http(s) URL"));
    }
    Ok(url)
}

/// A free text of at most `max_chars` characters as sent (the limit the document states);
/// stored trimmed, and blank counts as none.
fn optional_text(value: Option<String>, field: &'static str, max_chars: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if value.chars().count() > max_chars {
        return Err(ApiError::validation("too_long", field, format!("{field} is longer than {max_chars} characters")));
    }
    Ok(Some(value.trim().to_owned()).filter(|v| !v.is_empty()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationPageOut {
    pub items: Vec<ConversationOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/conversations", tag = "conversations", summary = "The caller's conversations, newest first", params(ListQuery), responses((status = 200, body = ConversationPageOut), Malformed, Unauthenticated, InvalidInput, TooManyRequests, Unavailable))]
pub async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<JsonOut<ConversationPageOut>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 100"));
    }
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let page = conversations::list_owned(&state.pool, &caller.owner, before, limit + 1).await?;
    let has_more = page.len() as i64 > limit;
    let items: Vec<Conversation> = page.into_iter().take(limit as usize).collect();
    let next_cursor =
        has_more.then(|| items.last().map(|c| format!("{}_{}", c.created_at.timestamp_micros(), c.id))).flatten();
    Ok(JsonOut(ConversationPageOut { items: items.into_iter().map(Into::into).collect(), next_cursor }))
}

pub fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, ConversationId), ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    let (micros, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| invalid())?)
        // A cursor this API returned names a moment of a conversation's life.
        .filter(|at| crate::extract::PLAUSIBLE_YEARS.contains(&chrono::Datelike::year(at)))
        .ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationDetailOut {
    #[serde(flatten)]
    pub conversation: ConversationOut,
    /// The latest messages, oldest first.
    pub messages: Vec<MessageOut>,
    /// Whether older messages exist (page them with `messages/?after=`).
    pub has_earlier: bool,
    /// Replies by email while operators are away: whether the widget may offer them.
    pub email_reply: EmailReplyOut,
}

#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations", summary = "A conversation with its latest messages", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = ConversationDetailOut), Malformed, Unauthenticated, NoSuchConversation, TooManyRequests, Unavailable))]
pub async fn get_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<ConversationDetailOut>, ApiError> {
    let conversation = owned(&state, id, &caller.owner).await?;
    let latest = messages::latest(&state.pool, id, DETAIL_MESSAGES).await?;
    let has_earlier = latest.first().is_some_and(|m| m.seq > 1);
    let email_reply = email_reply_of(&state, &caller, &conversation).await?;
    Ok(JsonOut(ConversationDetailOut {
        conversation: conversation.into(),
        messages: MessageOut::load(&state, latest, Audience::Owner).await?,
        has_earlier,
        email_reply,
    }))
}

#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/close", tag = "conversations", summary = "Close the conversation (idempotent)", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = ConversationOut), Malformed, Unauthenticated, NoSuchConversation, TooManyRequests, Unavailable))]
pub async fn close_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<ConversationOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let conversation = conversations::find_owned(&mut *tx, id, &caller.owner).await?.ok_or(ApiError::NotFound)?;
    let locale = Locale::from_code(&conversation.locale);
    match conversations::close(&mut tx, &conversation, locale.texts().conversation_closed).await? {
        CloseOutcome::Closed(_) => {
            let text = locale.texts().operators.closed_by_user.to_owned();
            telegram::notify_topic(&mut tx, id, format!("closed:{id}"), text, state.config.job_max_attempts).await?;
            tx.commit().await?
        }
        // Closing twice is not an error: the conversation is closed either way.
        CloseOutcome::AlreadyClosed => tx.rollback().await?,
    }
    Ok(JsonOut(owned(&state, id, &caller.owner).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateIn {
    /// 1 (bad) to 5 (great).
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i16,
    /// At most 2000 characters; blank counts as none.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/rate", tag = "conversations", summary = "Rate the help, once", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body = RateIn, responses((status = 200, body = ConversationOut), Malformed, Unauthenticated, NoSuchConversation, (status = 409, description = "Already rated, or nothing to rate yet", body = ErrorBody), TooLarge, NotJson, InvalidInput, TooManyRequests, Unavailable))]
pub async fn rate_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
    Json(input): Json<RateIn>,
) -> Result<JsonOut<ConversationOut>, ApiError> {
    if !(1..=5).contains(&input.rating) {
        return Err(ApiError::validation("invalid_rating", "rating", "rating must be an integer from 1 to 5"));
    }
    let comment = optional_text(input.comment, "comment", 2000)?;
    let conversation = owned(&state, id, &caller.owner).await?;
    if conversation.rating.is_some() {
        return Err(ApiError::conflict("already_rated", "this conversation has already been rated"));
    }
    if !messages::has_answer(&state.pool, id).await? {
        return Err(ApiError::conflict("nothing_to_rate", "a conversation can be rated once it has an answer"));
    }
    let mut tx = state.pool.begin().await?;
    if !conversations::rate(&mut *tx, id, input.rating, comment.as_deref()).await? {
        return Err(ApiError::conflict("already_rated", "this conversation has already been rated"));
    }
    let texts = &Locale::from_code(&conversation.locale).texts().operators;
    let rating = input.rating.to_string();
    let text = fill(texts.rated, &[("rating", &rating), ("comment", comment.as_deref().unwrap_or(""))]);
    telegram::notify_topic(
        &mut tx,
        id,
        format!("rated:{id}"),
        text.trim_end().to_owned(),
        state.config.job_max_attempts,
    )
    .await?;
    tx.commit().await?;
    Ok(JsonOut(owned(&state, id, &caller.owner).await?.into()))
}

/// A fresh stream token, for an EventSource whose token expired.
#[utoipa::path(post, path = "/conversations/{id}/stream-token", tag = "conversations", summary = "A fresh short-lived token for the SSE stream", params(("id" = uuid::Uuid, Path, description = "The conversation")), responses((status = 200, body = StreamToken), Malformed, Unauthenticated, NoSuchConversation, TooManyRequests, Unavailable))]
pub async fn create_stream_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<JsonOut<StreamToken>, ApiError> {
    state.limits.stream_tokens.check(&caller.owner)?;
    owned(&state, id, &caller.owner).await?;
    Ok(JsonOut(state.keys.issue_stream(&caller.owner, id)?))
}
