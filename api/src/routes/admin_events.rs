//! `GET /admin/events`: the console's live feed. An `activity` event (`{conversation_id, seq}`)
//! for every message committed in any conversation; the console reloads what it shows. A
//! console that falls far behind gets `event: lagged` and reloads everything.

use std::convert::Infallible;

use axum::{
    extract::State,
    http::request::Parts,
    response::sse::{Event, KeepAlive, Sse},
};
use concierge_shared::Role;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    AppState, auth,
    error::{ApiError, ErrorBody},
    extract::Query,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The admin token, for `EventSource`, which cannot send headers.
    pub token: Option<String>,
}

#[utoipa::path(get, path = "/admin/events", tag = "operators", summary = "Admin: Server-Sent Events, `activity` for every new message", params(EventsQuery), responses((status = 200, description = "An event stream", content_type = "text/event-stream"), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Not an administrator", body = ErrorBody)))]
pub async fn admin_events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    parts: Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let token = match (&query.token, auth::bearer_token(&parts)?) {
        (Some(token), _) => token.as_str(),
        (None, Some(bearer)) => bearer,
        (None, None) => return Err(ApiError::Unauthorized("pass `?token=` or an Authorization header".into())),
    };
    if auth::verify(&state, token)?.role != Role::Admin {
        return Err(ApiError::Forbidden("this route is for administrators".into()));
    }
    let receiver = state.hub.activity();
    let shutdown = state.shutdown.clone();
    let stream = futures::stream::unfold((receiver, shutdown), |(mut receiver, shutdown)| async move {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return None,
            received = receiver.recv() => match received {
                Ok((conversation_id, seq)) => Event::default()
                    .event("activity")
                    .json_data(serde_json::json!({ "conversation_id": conversation_id, "seq": seq }))
                    .expect("activity serialises"),
                Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), (receiver, shutdown)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.sse_heartbeat).text("heartbeat")))
}
