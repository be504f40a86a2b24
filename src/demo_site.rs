//! The demo "host site" of the all-in-one binary: a page at `/` that embeds the widget as Lectio
//! would, and `/demo/users`, the demo platform's users with tokens signed for them, so that the
//! page can switch who is signed in.

use axum::{
    Json, Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use serde_json::{Value, json};

const DEMO_HTML: &str = include_str!("../web/demo.html");

/// How long the demo tokens are valid.
const TOKEN_DAYS: u64 = 30;

/// The demo users with a token for each, signed with the platform secret.
pub fn users(data: &crate::demo_platform::DemoData, secret: &str) -> anyhow::Result<Vec<Value>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    data.users
        .iter()
        .map(|(sub, user)| {
            let claims = json!({
                "sub": sub, "name": user["name"], "email": user["email"], "role": user["role"],
                "exp": now + TOKEN_DAYS * 86_400,
            });
            let token = concierge_api::auth::sign_platform_token(secret, &claims)?;
            Ok(json!({
                "sub": sub, "name": user["name"], "role": user["role"], "about": user["about"], "token": token,
            }))
        })
        .collect()
}

pub fn router(users: Vec<Value>) -> Router {
    Router::new()
        .route("/", get(|| async { ([(header::CACHE_CONTROL, "no-cache")], Html(DEMO_HTML)).into_response() }))
        .route("/demo/users", get(move || async move { Json(users) }))
}
