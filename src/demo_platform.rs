//! A demo of the host platform's API, built from `fixtures/demo_platform.json` and served over
//! the same HTTP contract Concierge expects from Lectio (see README), so that the embedded
//! setup exercises the real client. It answers on loopback only, to a bearer token it makes up.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
pub struct DemoData {
    pub status: Value,
    pub users: serde_json::Map<String, Value>,
}

impl DemoData {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid demo data", path.display()))
    }
}

struct Demo {
    data: DemoData,
    token: String,
}

/// Serve the demo until `shutdown`; returns the base URL and the token it expects.
pub async fn serve(data: DemoData, shutdown: CancellationToken) -> anyhow::Result<(String, String)> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let demo = Arc::new(Demo { data, token: token.clone() });
    let app = Router::new()
        .route("/status", get(status))
        .route("/users/{user}/zoom", get(zoom))
        .route("/users/{user}/subscription", get(subscription))
        .route("/users/{user}/lessons", get(lessons))
        .route("/users/{user}/lessons/{lesson}", get(lesson))
        .route("/users/{user}/homework", get(homework))
        .with_state(demo);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/api/concierge/v1", listener.local_addr()?);
    let app = Router::new().nest("/api/concierge/v1", app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok((url, token))
}

fn authorised(demo: &Demo, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", demo.token))
}

fn user_field(demo: &Demo, headers: &HeaderMap, user: &str, field: &str) -> Response {
    if !authorised(demo, headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match demo.data.users.get(user) {
        Some(record) => Json(record.get(field).cloned().unwrap_or(Value::Null)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such user" }))).into_response(),
    }
}

async fn status(State(demo): State<Arc<Demo>>, headers: HeaderMap) -> Response {
    if !authorised(&demo, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(demo.data.status.clone()).into_response()
}

async fn zoom(State(demo): State<Arc<Demo>>, headers: HeaderMap, UrlPath(user): UrlPath<String>) -> Response {
    user_field(&demo, &headers, &user, "zoom")
}

async fn subscription(State(demo): State<Arc<Demo>>, headers: HeaderMap, UrlPath(user): UrlPath<String>) -> Response {
    user_field(&demo, &headers, &user, "subscription")
}

async fn homework(State(demo): State<Arc<Demo>>, headers: HeaderMap, UrlPath(user): UrlPath<String>) -> Response {
    user_field(&demo, &headers, &user, "homework")
}

async fn lessons(State(demo): State<Arc<Demo>>, headers: HeaderMap, UrlPath(user): UrlPath<String>) -> Response {
    let response = user_field(&demo, &headers, &user, "lessons");
    if response.status() != StatusCode::OK {
        return response;
    }
    let lessons = demo.data.users[&user].get("lessons").cloned().unwrap_or(json!([]));
    Json(json!({ "lessons": lessons })).into_response()
}

async fn lesson(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    UrlPath((user, lesson)): UrlPath<(String, String)>,
) -> Response {
    if !authorised(&demo, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let found = demo
        .data
        .users
        .get(&user)
        .and_then(|u| u.get("lessons"))
        .and_then(Value::as_array)
        .and_then(|lessons| lessons.iter().find(|l| l["id"] == lesson.as_str()).cloned());
    match found {
        Some(lesson) => Json(lesson).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such lesson" }))).into_response(),
    }
}
