//! Route table. One module per resource, each exposing its handlers; DTOs are `XxxIn`/`XxxOut`.

pub mod actions;
pub mod admin_events;
pub mod attachments;
pub mod conversations;
pub mod email_reply;
pub mod evals;
pub mod health;
pub mod human;
pub mod knowledge;
pub mod knowledge_drafts;
pub mod messages;
pub mod metrics;
pub mod pages;
pub mod privacy;
pub mod stream;
pub mod telegram;

use axum::{Router, routing::get};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{AppState, error::ApiError};

/// The JSON API and its OpenAPI description, built from the same declarations: each handler's
/// `#[utoipa::path]` gives both its route and its documentation, so the two cannot drift. The
/// limits that are settings (`max_message_chars`, `max_attachment_bytes`) are written into the
/// document as configured.
pub fn router(max_message_chars: usize, max_attachment_bytes: usize) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(conversations::create_conversation, conversations::list_conversations))
        .routes(routes!(conversations::get_conversation))
        .routes(routes!(conversations::close_conversation))
        .routes(routes!(conversations::rate_conversation))
        .routes(routes!(conversations::create_stream_token))
        .routes(routes!(email_reply::set_email_reply))
        .routes(routes!(messages::post_message, messages::list_messages))
        .routes({
            // A file is larger than the JSON bodies' limit; the handler enforces its own cap.
            let (schemas, paths, route) = routes!(attachments::upload_attachment);
            let cap = attachments::request_cap(max_attachment_bytes);
            (schemas, paths, route.layer(axum::extract::DefaultBodyLimit::max(cap)))
        })
        .routes(routes!(attachments::get_attachment))
        .routes(routes!(stream::stream_conversation))
        .routes(routes!(actions::list_conversation_actions))
        .routes(routes!(actions::execute_action))
        .routes(routes!(human::escalate_conversation))
        .routes(routes!(human::admin_list_conversations))
        .routes(routes!(human::admin_get_conversation))
        .routes(routes!(human::admin_reply))
        .routes({
            let (schemas, paths, route) = routes!(human::admin_upload_attachment);
            let cap = attachments::request_cap(max_attachment_bytes);
            (schemas, paths, route.layer(axum::extract::DefaultBodyLimit::max(cap)))
        })
        .routes(routes!(human::admin_typing))
        .routes(routes!(human::admin_hand_back))
        .routes(routes!(human::admin_close))
        .routes(routes!(human::admin_add_note))
        .routes(routes!(admin_events::admin_events))
        .routes(routes!(admin_events::admin_events_token))
        .routes(routes!(metrics::get_metrics))
        .routes(routes!(metrics::recompute))
        .routes(routes!(actions::admin_list_actions))
        .routes(routes!(actions::admin_patch_action))
        .routes(routes!(actions::admin_list_runs))
        .routes(routes!(evals::admin_list_eval_runs))
        .routes(routes!(privacy::erase_user))
        .routes(routes!(privacy::export_user))
        .routes(routes!(knowledge::request_reindex))
        .routes(routes!(knowledge::get_reindex))
        .routes(routes!(knowledge::search_knowledge))
        .routes(routes!(knowledge::list_documents))
        .routes(routes!(knowledge_drafts::list_drafts))
        .routes(routes!(knowledge_drafts::get_draft, knowledge_drafts::edit_draft))
        .routes(routes!(knowledge_drafts::approve_draft))
        .routes(routes!(knowledge_drafts::discard_draft))
        .routes(routes!(telegram::webhook))
        .routes(routes!(telegram::admin_telegram_alerts))
        .split_for_parts();
    openapi.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .tag("meta")
            .summary(Some("This document"))
            .operation_id(Some("openapi"))
            // Anyone may read it.
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .response(
                "200",
                utoipa::openapi::ResponseBuilder::new().description("The OpenAPI document").content(
                    "application/json",
                    utoipa::openapi::content::Content::new(Some(utoipa::openapi::ObjectBuilder::new())),
                ),
            ),
    );
    limit_texts(&mut openapi, max_message_chars);
    attachments::document_limit(&mut openapi, max_attachment_bytes);
    document_empty_metadata(&mut openapi);
    let document = openapi.clone();
    let router = router.route("/openapi.json", get(move || async move { axum::Json(document) }));
    (router, openapi)
}

/// `maxLength` of the message texts: the configured `CONCIERGE_MAX_MESSAGE_CHARS`.
fn limit_texts(openapi: &mut utoipa::openapi::OpenApi, max_message_chars: usize) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let Some(components) = openapi.components.as_mut() else { return };
    for name in ["PostMessageIn", "ReplyIn", "NoteIn"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name)
            && let Some(RefOr::T(Schema::Object(content))) = object.properties.get_mut("content")
        {
            content.max_length = Some(max_message_chars);
        }
    }
}

/// User messages carry no metadata, `{}`: one more shape of `MessageMeta`, with no `kind`.
fn document_empty_metadata(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ObjectBuilder, RefOr, schema::Schema};
    let Some(components) = openapi.components.as_mut() else { return };
    if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut("MessageMeta") {
        let empty = ObjectBuilder::new().max_properties(Some(0)).description(Some("A user's message: no metadata"));
        one_of.items.push(empty.into());
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concierge",
        description = "The support desk of Lectio: conversations with the AI and operators, actions, knowledge base, metrics. Authenticate with `Authorization: Bearer <token>`: a platform JWT, a visitor token, or the admin token.",
    ),
    servers((url = "/api/concierge")),
    modifiers(&BearerAuth),
    // Referenced by `StatusMeta`'s hand-over, which the derive cannot describe itself.
    components(schemas(concierge_shared::message_meta::Handover)),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// What browsers load outside the JSON API; `openapi` is shown by the API reference.
pub fn pages(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(pages::widget_js))
        .route("/admin", get(pages::admin_console))
        .route("/admin/{*file}", get(pages::console_file))
        .merge(pages::api_reference(openapi))
        .route("/kb/{*path}", get(pages::knowledge_page))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
