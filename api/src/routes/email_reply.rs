//! Replies by email while operators are away: whether the widget may offer one (part of the
//! conversation's JSON), and the user's choice. Sending is the `email` worker job's, queued
//! with each operator reply; this route only stores the choice.

use axum::{Json as JsonOut, extract::State};
use concierge_shared::{
    ConversationId,
    db::{
        conversations::{self, Conversation},
        email_replies::{self, EmailReplyState},
    },
    email::OfferContext,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::Caller,
    error::{
        ApiError, ErrorBody,
        responses::{
            InvalidInput, Malformed, NoSuchConversation, NotJson, TooLarge, TooManyRequests, Unauthenticated,
            Unavailable,
        },
    },
    extract::{Json, Path},
};

/// Replies by email, as the conversation's owner sees them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailReplyOut {
    /// Whether the widget may offer replies by email now: an SMTP server is configured, the
    /// caller is signed in with an email address, and the open conversation went to a person
    /// outside operators' hours.
    pub available: bool,
    /// Whether operators' replies are also sent by email.
    pub enabled: bool,
    /// Where they go (enabled) or would go (available); `null` otherwise.
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailReplyIn {
    /// `true`: send operators' replies to the address of the caller's account too; `false`:
    /// stop.
    pub enabled: bool,
}

fn offer<'a>(
    state: &AppState,
    caller: &'a Caller,
    conversation: &Conversation,
    stored: &EmailReplyState,
) -> OfferContext<'a> {
    OfferContext {
        smtp_configured: state.config.email.is_some(),
        address: caller.email.as_deref(),
        status: conversation.status,
        mode: conversation.mode,
        handed_over_at: stored.handed_over_at,
    }
}

fn out(state: &AppState, caller: &Caller, conversation: &Conversation, stored: EmailReplyState) -> EmailReplyOut {
    let available = offer(state, caller, conversation, &stored).check().is_ok();
    let enabled = stored.email_reply_to.is_some();
    let address = stored.email_reply_to.or_else(|| caller.email.clone().filter(|_| available));
    EmailReplyOut { available, enabled, address }
}

/// The owner's view of replies by email for `conversation`.
pub async fn email_reply_of(
    state: &AppState,
    caller: &Caller,
    conversation: &Conversation,
) -> Result<EmailReplyOut, ApiError> {
    let stored = email_replies::state(&state.pool, conversation.id).await?;
    Ok(out(state, caller, conversation, stored))
}

/// `POST /conversations/{id}/email-reply`: the user asks for operators' replies to reach their
/// mailbox too (or stops them). Asking is possible only while the offer stands (see
/// `EmailReplyOut.available`); stopping always is. The address is the one in the caller's
/// token.
#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/email-reply", tag = "conversations", summary = "Ask for operators' replies by email too, or stop them", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body = EmailReplyIn, responses((status = 200, body = EmailReplyOut), Malformed, Unauthenticated, NoSuchConversation, (status = 409, description = "Replies by email are not offered: no SMTP server is configured (`email_not_configured`), the caller has no email address (`no_email`), the conversation is closed (`conversation_closed`), or it did not go to a person outside operators' hours (`not_waiting_off_duty`)", body = ErrorBody), TooLarge, NotJson, InvalidInput, TooManyRequests, Unavailable))]
pub async fn set_email_reply(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
    Json(input): Json<EmailReplyIn>,
) -> Result<JsonOut<EmailReplyOut>, ApiError> {
    let mut tx = state.pool.begin().await?;
    conversations::find_owned(&mut *tx, id, &caller.owner).await?.ok_or(ApiError::NotFound)?;
    // Under the row lock an operator's reply is either before the choice or queued after it.
    let conversation = conversations::lock(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    let address = if input.enabled {
        let stored = email_replies::state(&mut *tx, id).await?;
        offer(&state, &caller, &conversation, &stored)
            .check()
            .map_err(|why| ApiError::conflict(why.code(), why.message()))?;
        caller.email.as_deref()
    } else {
        None
    };
    email_replies::choose(&mut *tx, id, address).await?;
    let stored = email_replies::state(&mut *tx, id).await?;
    tx.commit().await?;
    tracing::info!(enabled = input.enabled, "replies by email chosen");
    Ok(JsonOut(out(&state, &caller, &conversation, stored)))
}
