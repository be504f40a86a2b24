//! `GET /conversations/{id}/stream`: Server-Sent Events.
//!
//! Each event is one message, `id:` its sequence number. A client that reconnects with
//! `Last-Event-ID` (or `?after=`) first gets what it missed, then live events, with no gap
//! and no duplicate: the stream registers with the hub before its first read, and every read
//! asks the database for `seq > last sent`. Status changes (closed, handed to a human) are
//! system messages sent as `status` events. While a reply is being written, `typing` and
//! `delta` events (no id; `delta` carries the next piece of the answer text) come before the
//! final message, which replaces them. `typing` with `{"operator": name}` instead of
//! `reply_to` says an operator is writing in the console; it lapses after a few seconds unless
//! renewed, and the operator's message ends it. An `edit` event (no id) carries a message sent earlier
//! in its new form, when an operator edits a reply. Idle streams get a comment line every
//! `CONCIERGE_SSE_HEARTBEAT_SECS` so that proxies keep them open.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, request::Parts},
    response::sse::{Event, KeepAlive, Sse},
};
use concierge_shared::{ConversationId, MessageId, db::messages, events};
use futures::Stream;
use serde::Deserialize;

use crate::{
    AppState,
    auth::{self, owned},
    error::{
        ApiError,
        responses::{InvalidInput, Malformed, NoSuchConversation, TooManyRequests, Unauthenticated, Unavailable},
    },
    extract::{Path, Query},
    hub::{Signal, Subscription},
    routes::messages::MessageOut,
};

/// Rows read per database round trip while catching up.
const BATCH: i64 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A stream token from `POST .../stream-token` or the create response.
    pub token: Option<String>,
    /// Resume after this sequence number (0 or more) when no `Last-Event-ID` header is sent.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/conversations/{id}/stream", tag = "messages", summary = "Server-Sent Events: message, status, typing, delta and edit events; Last-Event-ID resumes", params(("id" = uuid::Uuid, Path, description = "The conversation"), StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "The `id` of the last event received: resume after it (EventSource sends it when it reconnects)")), responses((status = 200, description = "An event stream", content_type = "text/event-stream"), Malformed, Unauthenticated, NoSuchConversation, InvalidInput, TooManyRequests, Unavailable), security((), ("bearer" = [])))]
pub async fn stream_conversation(
    State(state): State<AppState>,
    Path(id): Path<ConversationId>,
    Query(query): Query<StreamQuery>,
    parts: Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let owner = match (&query.token, auth::bearer_token(&parts)?) {
        (Some(token), _) => state.keys.verify_stream(token, id)?,
        (None, Some(bearer)) => state.keys.verify_bearer(bearer)?.owner,
        (None, None) => {
            return Err(ApiError::Unauthorized("pass `?token=<stream token>` or an Authorization header".into()));
        }
    };
    owned(&state, id, &owner).await?;
    let after = resume_point(&parts.headers, query.after)?;

    // Register before the first read, so nothing committed in between is missed.
    let subscription = state.hub.subscribe(id);
    let stream = futures::stream::unfold(
        StreamState {
            _gauge: ClientGauge::new(),
            state: state.clone(),
            conversation: id,
            last_seq: after,
            pending: VecDeque::new(),
            subscription,
            first: true,
        },
        next_event,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.sse_heartbeat).text("heartbeat")))
}

fn resume_point(headers: &HeaderMap, after: Option<i64>) -> Result<i64, ApiError> {
    // Checked even when the header wins: the document says what `after` may be.
    if after.is_some_and(|seq| seq < 0) {
        return Err(ApiError::validation("invalid_after", "after", "after must not be negative"));
    }
    let header = match headers.get("last-event-id") {
        Some(value) => {
            Some(value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|v| *v >= 0).ok_or_else(
                || ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a sequence number"),
            )?)
        }
        None => None,
    };
    match header.or(after) {
        Some(seq) if seq < 0 => Err(ApiError::validation("invalid_after", "after", "after must not be negative")),
        Some(seq) => Ok(seq),
        None => Ok(0),
    }
}

struct StreamState {
    /// Counts this stream in `concierge_sse_clients` while it lives.
    _gauge: ClientGauge,
    state: AppState,
    conversation: ConversationId,
    last_seq: i64,
    pending: VecDeque<Event>,
    subscription: Subscription,
    first: bool,
}

struct ClientGauge;

impl ClientGauge {
    fn new() -> Self {
        metrics::gauge!("concierge_sse_clients").increment(1.0);
        Self
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!("concierge_sse_clients").decrement(1.0);
    }
}

async fn next_event(mut s: StreamState) -> Option<(Result<Event, Infallible>, StreamState)> {
    loop {
        if let Some(event) = s.pending.pop_front() {
            return Some((Ok(event), s));
        }
        if s.first {
            s.first = false;
            // Tell EventSource how soon to reconnect after a drop.
            s.pending.push_back(Event::default().retry(Duration::from_secs(2)).comment("connected"));
        } else {
            let signal = tokio::select! {
                _ = s.state.shutdown.cancelled() => return None,
                signal = s.subscription.next() => signal,
            };
            if let Signal::Live(event) = signal {
                if let events::Event::Edited { message_id, .. } = *event {
                    if let Some(event) = edit_event(&s, message_id).await {
                        return Some((Ok(event), s));
                    }
                } else if let Some(event) = live_event(&event) {
                    return Some((Ok(event), s));
                }
                continue;
            }
        }
        if let Err(error) = catch_up(&mut s).await {
            tracing::warn!(%error, conversation_id = %s.conversation, "stream read failed; retrying");
            tokio::select! {
                _ = s.state.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// The SSE form of an ephemeral event.
fn live_event(event: &events::Event) -> Option<Event> {
    match event {
        events::Event::Typing { reply_to, .. } => {
            Some(Event::default().event("typing").json_data(serde_json::json!({ "reply_to": reply_to })).ok()?)
        }
        events::Event::Delta { reply_to, text, .. } => Some(
            Event::default()
                .event("delta")
                .json_data(serde_json::json!({ "reply_to": reply_to, "text": text }))
                .ok()?,
        ),
        events::Event::OperatorTyping { name, .. } => {
            Some(Event::default().event("typing").json_data(serde_json::json!({ "operator": name })).ok()?)
        }
        events::Event::Message { .. } | events::Event::Edited { .. } => None,
    }
}

/// An `edit` event: the edited message as it now reads. Only messages the stream has already
/// sent are edited; a later one will be sent in its current form anyway.
async fn edit_event(s: &StreamState, message_id: MessageId) -> Option<Event> {
    let message = messages::get(&s.state.pool, message_id).await.ok().flatten()?;
    if message.conversation_id != s.conversation || message.seq > s.last_seq {
        return None;
    }
    Event::default().event("edit").json_data(MessageOut::from(message)).ok()
}

/// Queue every message after `last_seq`.
async fn catch_up(s: &mut StreamState) -> sqlx::Result<()> {
    loop {
        let batch = messages::list_after(&s.state.pool, s.conversation, s.last_seq, BATCH).await?;
        let full = batch.len() as i64 == BATCH;
        for message in batch {
            s.last_seq = message.seq;
            let kind = if message.metadata.is_status() { "status" } else { "message" };
            let event = Event::default()
                .id(message.seq.to_string())
                .event(kind)
                .json_data(MessageOut::from(message))
                .expect("messages serialise");
            s.pending.push_back(event);
        }
        if !full {
            return Ok(());
        }
    }
}
