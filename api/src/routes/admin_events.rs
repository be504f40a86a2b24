//! `GET /admin/events`: the console's live feed. An `activity` event (`{conversation_id, seq}`)
//! for every message committed in any conversation; the console reloads what it shows. A
//! console that falls far behind gets `event: lagged` and reloads everything.
//!
//! `EventSource` cannot send headers, so the console first asks `POST /admin/events/token` for
//! a short-lived stream token and passes that as `?token=`: the admin credential itself never
//! goes into a URL (and so into access logs). Like a conversation's stream, the feed ends with an
//! `expired` event when its token expires; the console reconnects with a new one.

use std::convert::Infallible;

use axum::{
    Json as JsonOut,
    extract::State,
    http::{StatusCode, request::Parts},
    response::sse::{Event, KeepAlive, Sse},
};
use concierge_shared::Role;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    AppState,
    auth::{self, Admin, StreamToken},
    error::{
        ApiError,
        responses::{Malformed, NotAdmin, Unauthenticated},
    },
    extract::Query,
    routes::stream,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// A stream token from `POST /admin/events/token`, for `EventSource`, which cannot send
    /// headers.
    pub token: Option<String>,
}

/// A short-lived token for `GET /admin/events?token=`.
#[utoipa::path(post, path = "/admin/events/token", tag = "operators", summary = "Admin: a short-lived token for the live feed", responses((status = 201, body = StreamToken), Unauthenticated, NotAdmin))]
pub async fn admin_events_token(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<(StatusCode, JsonOut<StreamToken>), ApiError> {
    Ok((StatusCode::CREATED, JsonOut(state.keys.issue_admin_stream(&admin.owner)?)))
}

#[utoipa::path(get, path = "/admin/events", tag = "operators", summary = "Admin: Server-Sent Events, `activity` for every new message", params(EventsQuery), responses((status = 200, description = "An event stream", content_type = "text/event-stream"), Malformed, Unauthenticated, NotAdmin), security((), ("bearer" = [])))]
pub async fn admin_events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    parts: Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let expires_at = match (&query.token, auth::bearer_token(&parts)?) {
        (Some(token), _) => Some(state.keys.verify_admin_stream(token)?),
        (None, Some(bearer)) => {
            let caller = auth::verify(&state, bearer).await?;
            if caller.role != Role::Admin {
                return Err(ApiError::Forbidden("this route is for administrators".into()));
            }
            caller.expires_at
        }
        (None, None) => {
            return Err(ApiError::Unauthorized("pass an Authorization header or `?token=` (a stream token)".into()));
        }
    };
    let receiver = state.hub.activity();
    let shutdown = state.shutdown.clone();
    // `Some(deadline)` until the token expires; then `None`, once the `expired` event is sent.
    let deadline = Some(expires_at.map(stream::instant_of));
    let stream =
        futures::stream::unfold((receiver, shutdown, deadline), |(mut receiver, shutdown, deadline)| async move {
            let expires = deadline?;
            let event = tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = stream::until(expires) => return Some((Ok(stream::expired_event()), (receiver, shutdown, None))),
                received = receiver.recv() => match received {
                    Ok((conversation_id, seq)) => Event::default()
                        .event("activity")
                        .json_data(serde_json::json!({ "conversation_id": conversation_id, "seq": seq }))
                        .expect("activity serialises"),
                    Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok(event), (receiver, shutdown, deadline)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.sse_heartbeat).text("heartbeat")))
}
