//! Route table. One module per resource, each exposing its handlers; DTOs are `XxxIn`/`XxxOut`.

pub mod actions;
pub mod conversations;
pub mod health;
pub mod human;
pub mod knowledge;
pub mod messages;
pub mod stream;
pub mod telegram;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{AppState, error::ApiError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", post(conversations::create_conversation).get(conversations::list_conversations))
        .route("/conversations/{id}", get(conversations::get_conversation))
        .route("/conversations/{id}/close", post(conversations::close_conversation))
        .route("/conversations/{id}/rate", post(conversations::rate_conversation))
        .route("/conversations/{id}/stream-token", post(conversations::create_stream_token))
        .route("/conversations/{id}/messages", post(messages::post_message).get(messages::list_messages))
        .route("/conversations/{id}/stream", get(stream::stream_conversation))
        .route("/conversations/{id}/actions", get(actions::list_conversation_actions))
        .route("/conversations/{id}/actions/{name}/execute", post(actions::execute_action))
        .route("/conversations/{id}/escalate", post(human::escalate_conversation))
        .route("/admin/conversations", get(human::admin_list_conversations))
        .route("/admin/conversations/{id}", get(human::admin_get_conversation))
        .route("/admin/conversations/{id}/reply", post(human::admin_reply))
        .route("/admin/conversations/{id}/ai", post(human::admin_hand_back))
        .route("/admin/conversations/{id}/close", post(human::admin_close))
        .route("/admin/conversations/{id}/notes", post(human::admin_add_note))
        .route("/telegram/webhook", post(telegram::webhook))
        .route("/admin/actions", get(actions::admin_list_actions))
        .route("/admin/actions/{name}", axum::routing::patch(actions::admin_patch_action))
        .route("/admin/action-runs", get(actions::admin_list_runs))
        .route("/knowledge/reindex", post(knowledge::request_reindex))
        .route("/knowledge/reindex/{id}", get(knowledge::get_reindex))
        .route("/knowledge/search", get(knowledge::search_knowledge))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
