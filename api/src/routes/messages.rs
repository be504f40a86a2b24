//! Posting and reading messages. A posted message and its process-message job are stored in
//! one statement; the answer arrives later, over SSE or by polling `?after=`.

use axum::{
    Json as JsonOut,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use concierge_shared::{
    ConversationId, MessageId, MessageRole,
    db::{
        messages::{self, Message, PostOutcome},
        transcripts,
    },
    links,
    message_meta::MessageMeta,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::{Caller, owned},
    error::{
        ApiError,
        responses::{
            ConversationClosed, InvalidInput, Malformed, NoSuchConversation, NotJson, TooLarge, TooManyRequests,
            Unauthenticated, Unavailable,
        },
    },
    extract::{Json, Path, Query},
    limits::ClientIp,
};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageOut {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// Per-conversation, increasing in commit order; the SSE event id.
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    /// What kind of message this is and what it was made with; the owner's view leaves out
    /// what is meant for operators.
    pub metadata: MessageMeta,
    pub client_message_id: Option<String>,
    pub reply_to: Option<MessageId>,
    /// The action run this message reports.
    pub action_run_id: Option<concierge_shared::ActionRunId>,
    pub created_at: DateTime<Utc>,
    /// The files sent with the message, in the order they were uploaded.
    pub attachments: Vec<MessageAttachmentOut>,
}

/// A file of a message, with a link to it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageAttachmentOut {
    pub id: uuid::Uuid,
    /// `image`, `pdf`, `text` or `voice`.
    pub kind: String,
    /// The type found in the content.
    pub content_type: String,
    pub file_name: String,
    pub size_bytes: i64,
    /// A signed link to the file, from the site's root (`/api/concierge/attachments/…`),
    /// valid for an hour; the messages read again carry fresh ones.
    pub url: String,
    /// What a voice message says, once it has been transcribed.
    pub transcript: Option<String>,
}

/// Who the messages are shown to: their owner sees no operator-only metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Owner,
    Operators,
}

impl MessageOut {
    /// Messages with their files, loaded with one query for all of them.
    pub async fn load(state: &AppState, messages: Vec<Message>, audience: Audience) -> Result<Vec<Self>, sqlx::Error> {
        // Most messages carry none: the query runs only for a page with files.
        let ids: Vec<MessageId> = messages.iter().filter(|m| m.has_files()).map(|m| m.id).collect();
        let files = if ids.is_empty() { Vec::new() } else { transcripts::of_messages(&state.pool, &ids).await? };
        let secret = crate::routes::attachments::link_secret(state);
        Ok(messages
            .into_iter()
            .map(|mut m| {
                let attachments = files
                    .iter()
                    .filter(|f| f.message_id == Some(m.id))
                    .map(|f| MessageAttachmentOut {
                        id: f.id,
                        kind: f.kind.clone(),
                        content_type: f.content_type.clone(),
                        file_name: f.file_name.clone(),
                        size_bytes: f.size_bytes,
                        url: links::signed_path(&secret, f.id, links::MESSAGE_LINK_LIFETIME),
                        transcript: f.transcript.clone(),
                    })
                    .collect();
                if audience == Audience::Owner {
                    m.metadata = m.metadata.user_view();
                }
                Self {
                    id: m.id,
                    conversation_id: m.conversation_id,
                    seq: m.seq,
                    role: m.role,
                    content: m.content,
                    metadata: m.metadata,
                    client_message_id: m.client_message_id,
                    reply_to: m.reply_to,
                    action_run_id: m.action_run_id,
                    created_at: m.created_at,
                    attachments,
                }
            })
            .collect())
    }

    /// One message with its files.
    pub async fn load_one(state: &AppState, message: Message, audience: Audience) -> Result<Self, sqlx::Error> {
        Ok(Self::load(state, vec![message], audience).await?.pop().expect("one message in, one out"))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageIn {
    /// The text, not blank, at most `CONCIERGE_MAX_MESSAGE_CHARS` characters (the document
    /// states the configured limit).
    /// May be empty when `attachment_ids` is not.
    pub content: String,
    /// Chosen by the client, 1 to 100 characters, not blank; resending the same one returns the
    /// first message.
    #[schema(min_length = 1, max_length = 100)]
    pub client_message_id: Option<String>,
    /// Files uploaded to this conversation and not sent yet, at most
    /// `MAX_ATTACHMENTS_PER_MESSAGE` (5); with them the text may be empty.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub attachment_ids: Vec<uuid::Uuid>,
}

/// How many files one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 5;

/// The files a message names, each once; more than [`MAX_ATTACHMENTS_PER_MESSAGE`] ids are
/// refused as sent, repeats included, as the document states the limit.
pub fn checked_attachment_ids(sent: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, ApiError> {
    if sent.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(ApiError::validation(
            "too_many_attachments",
            "attachment_ids",
            format!("a message carries at most {MAX_ATTACHMENTS_PER_MESSAGE} files"),
        ));
    }
    let mut ids = sent.to_vec();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

const CLIENT_MESSAGE_ID_MAX: usize = 100;

#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "messages", summary = "Send a user message; the reply arrives on the stream", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body = PostMessageIn, responses((status = 202, body = MessageOut, headers(("Idempotent-Replayed" = String, description = "`true` when this `client_message_id` was sent before and the first message is returned"))), Malformed, Unauthenticated, NoSuchConversation, ConversationClosed, TooLarge, NotJson, InvalidInput, TooManyRequests, Unavailable))]
pub async fn post_message(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    Path(id): Path<ConversationId>,
    Json(input): Json<PostMessageIn>,
) -> Result<Response, ApiError> {
    // The address first: one client with many visitor identities still has one address.
    state.limits.ip_messages.check(&ip)?;
    state.limits.messages.check(&caller.owner)?;
    // Lengths are counted as sent, as the document states them; the text is stored trimmed.
    let max = state.config.max_message_chars;
    if input.content.chars().count() > max {
        return Err(ApiError::validation(
            "message_too_long",
            "content",
            format!("the message is longer than {max} characters"),
        ));
    }
    let attachment_ids = checked_attachment_ids(&input.attachment_ids)?;
    let content = input.content.trim();
    if content.is_empty() && attachment_ids.is_empty() {
        return Err(ApiError::validation("empty_message", "content", "the message is empty"));
    }
    let client_message_id = match input.client_message_id.as_deref() {
        // (A NUL character never gets here: the JSON extractor refuses it in any field.)
        Some(id) if id.chars().count() > CLIENT_MESSAGE_ID_MAX => {
            return Err(ApiError::validation(
                "invalid_client_message_id",
                "client_message_id",
                format!("must be at most {CLIENT_MESSAGE_ID_MAX} characters"),
            ));
        }
        Some(id) if id.trim().is_empty() => {
            return Err(ApiError::validation("invalid_client_message_id", "client_message_id", "must not be empty"));
        }
        other => other.map(str::trim),
    };

    let max_attempts = state.config.job_max_attempts;
    let outcome = if attachment_ids.is_empty() {
        // One statement, atomic on its own: no transaction around it.
        messages::post_user_message(
            &mut *state.pool.acquire().await?,
            id,
            &caller.owner,
            content,
            client_message_id,
            max_attempts,
        )
        .await?
    } else {
        // The message and its files commit together, or neither does.
        let mut tx = state.pool.begin().await?;
        let mut outcome =
            messages::post_user_message(&mut tx, id, &caller.owner, content, client_message_id, max_attempts).await?;
        if let PostOutcome::Created(message) = &mut outcome {
            let refusal = "an attachment is not one uploaded to this conversation and not sent yet";
            crate::routes::attachments::attach_or_refuse(&mut tx, message, "user", &attachment_ids, refusal).await?;
        }
        tx.commit().await?;
        outcome
    };
    match outcome {
        PostOutcome::Created(message) => {
            state.hub.committed(&message);
            let message = MessageOut::load_one(&state, message, Audience::Owner).await?;
            Ok((StatusCode::ACCEPTED, JsonOut(message)).into_response())
        }
        PostOutcome::Duplicate(message) => {
            let replayed = (HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
            let message = MessageOut::load_one(&state, message, Audience::Owner).await?;
            Ok((StatusCode::ACCEPTED, [replayed], JsonOut(message)).into_response())
        }
        PostOutcome::NotFound => Err(ApiError::NotFound),
        PostOutcome::Closed => {
            Err(ApiError::conflict("conversation_closed", "the conversation is closed; open a new one to continue"))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    /// Only messages with a greater sequence number (0 or more; default 0).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePageOut {
    pub items: Vec<MessageOut>,
    /// Pass as `after` to get what follows.
    pub last_seq: i64,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "messages", summary = "Messages after a sequence number (polling)", params(("id" = uuid::Uuid, Path, description = "The conversation"), ListMessagesQuery), responses((status = 200, body = MessagePageOut), Malformed, Unauthenticated, NoSuchConversation, InvalidInput, TooManyRequests, Unavailable))]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
    Query(query): Query<ListMessagesQuery>,
) -> Result<JsonOut<MessagePageOut>, ApiError> {
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::validation("invalid_after", "after", "after must not be negative"));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", "limit", "limit must be between 1 and 500"));
    }
    owned(&state, id, &caller.owner).await?;
    let mut items = messages::list_after(&state.pool, id, after, limit + 1).await?;
    let has_more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let last_seq = items.last().map_or(after, |m| m.seq);
    let items = MessageOut::load(&state, items, Audience::Owner).await?;
    Ok(JsonOut(MessagePageOut { items, last_seq, has_more }))
}
