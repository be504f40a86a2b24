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
//!
//! A stream lives no longer than the token that opened it: when the token expires, the stream
//! sends an `expired` event (no id) and ends, and the client reconnects with a fresh token and
//! `Last-Event-ID` (or `?after=`), losing nothing. A backlog is sent a page at a time, each page
//! read once the previous one has gone out, so a long conversation never sits whole in memory.

use std::{
    collections::VecDeque,
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{HeaderMap, request::Parts},
    response::sse::{Event, KeepAlive, Sse},
};
use concierge_shared::{ConversationId, db::messages::Message, events};
use futures::Stream;
use serde::Deserialize;

use tokio::time::Instant;

use crate::{
    AppState,
    auth::{self, owned},
    error::{
        ApiError,
        responses::{InvalidInput, Malformed, NoSuchConversation, TooManyRequests, Unauthenticated, Unavailable},
    },
    extract::{Path, Query},
    hub::{Live, Signal, Subscription},
    limits::StreamGuard,
    routes::messages::{Audience, MessageOut},
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
    let (owner, expires_at) = match (&query.token, auth::bearer_token(&parts)?) {
        (Some(token), _) => state.keys.verify_stream(token, id)?,
        (None, Some(bearer)) => {
            let caller = state.keys.verify_bearer(&state.pool, bearer).await?;
            (caller.owner, caller.expires_at)
        }
        (None, None) => {
            return Err(ApiError::Unauthorized("pass `?token=<stream token>` or an Authorization header".into()));
        }
    };
    owned(&state, id, &owner).await?;
    let after = resume_point(&parts.headers, query.after)?;
    let place = state.limits.open_stream(&owner)?;

    // Register before the first read, so nothing committed in between is missed.
    let subscription = state.hub.subscribe(id);
    let stream = futures::stream::unfold(
        StreamState {
            _gauge: ClientGauge::new(),
            _place: place,
            state: state.clone(),
            conversation: id,
            last_seq: after,
            pending: VecDeque::new(),
            subscription,
            first: true,
            more: false,
            expires: expires_at.map(instant_of),
            ended: false,
        },
        next_event,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.sse_heartbeat).text("heartbeat")))
}

/// The moment a token with this `exp` (Unix seconds) stops being accepted: `exp` is the last
/// second it is valid in.
pub fn instant_of(exp: u64) -> Instant {
    let end = UNIX_EPOCH + Duration::from_secs(exp.saturating_add(1));
    Instant::now() + end.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Sent before a stream ends because its token expired.
pub fn expired_event() -> Event {
    Event::default().event("expired").data(r#"{"reason":"token_expired"}"#)
}

/// Wait until `at`, or forever.
pub async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
    /// Holds this stream's place under the open-stream limits while it lives.
    _place: StreamGuard,
    state: AppState,
    conversation: ConversationId,
    last_seq: i64,
    pending: VecDeque<Event>,
    subscription: Subscription,
    first: bool,
    /// The last page read was full: read the next before waiting.
    more: bool,
    /// When the token that opened the stream expires.
    expires: Option<Instant>,
    /// The `expired` event is queued; end once it is sent.
    ended: bool,
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
        if s.ended {
            return None;
        }
        if s.expires.is_some_and(|at| Instant::now() >= at) {
            s.ended = true;
            s.pending.push_back(expired_event());
            continue;
        }
        if s.first {
            s.first = false;
            // Tell EventSource how soon to reconnect after a drop.
            s.pending.push_back(Event::default().retry(Duration::from_secs(2)).comment("connected"));
        } else if !s.more {
            let expires = s.expires;
            let signal = tokio::select! {
                _ = s.state.shutdown.cancelled() => return None,
                _ = until(expires) => continue,
                signal = s.subscription.next() => signal,
            };
            if let Signal::Live(live) = signal {
                let event = match live.event {
                    events::Event::Edited { .. } => edit_event(&s, &live).await,
                    ref other => live_event(other),
                };
                if let Some(event) = event {
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
async fn edit_event(s: &StreamState, live: &Live) -> Option<Event> {
    let message = live.edited_message(&s.state.pool).await.ok().flatten()?;
    if message.conversation_id != s.conversation || message.seq > s.last_seq {
        return None;
    }
    let message = MessageOut::load_one(&s.state, Message::clone(&message), Audience::Owner).await.ok()?;
    Event::default().event("edit").json_data(message).ok()
}

/// Queue the next page of messages after `last_seq`.
async fn catch_up(s: &mut StreamState) -> sqlx::Result<()> {
    let page = s.subscription.read_after(&s.state.pool, s.last_seq, BATCH).await?;
    s.more = page.more;
    let messages = page.messages.iter().map(|message| (**message).clone()).collect();
    for message in MessageOut::load(&s.state, messages, Audience::Owner).await? {
        s.last_seq = message.seq;
        let kind = if message.metadata.is_status() { "status" } else { "message" };
        let event =
            Event::default().id(message.seq.to_string()).event(kind).json_data(message).expect("messages serialise");
        s.pending.push_back(event);
    }
    Ok(())
}
