//! The demo "host site" of the all-in-one binary: a page at `/` that embeds the widget as Lectio
//! would, and `/demo/users`, the demo platform's users with tokens signed for them, so that the
//! page can switch who is signed in. It runs only where [`Config::demo_mode`] allows it (a
//! loopback address, or `CONCIERGE_DEMO=1`).
//!
//! [`Config::demo_mode`]: concierge_shared::config::Config::demo_mode

use axum::{
    Json, Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use serde_json::{Value, json};

const DEMO_HTML: &str = include_str!("../web/demo.html");
const DEMO_JS: &str = include_str!("../web/demo.js");
const DEMO_CSS: &str = include_str!("../web/demo.css");

/// The demo page runs its own scripts only (the widget's and its own, no inline ones) and talks
/// to its own origin, where the API is.
pub const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

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
        .route(
            "/",
            get(|| async {
                ([(header::CACHE_CONTROL, "no-cache"), (header::CONTENT_SECURITY_POLICY, DEMO_CSP)], Html(DEMO_HTML))
                    .into_response()
            }),
        )
        .route("/demo/demo.js", get(|| async { file("text/javascript; charset=utf-8", DEMO_JS) }))
        .route("/demo/demo.css", get(|| async { file("text/css; charset=utf-8", DEMO_CSS) }))
        .route("/demo/users", get(move || async move { Json(users) }))
}

fn file(content_type: &'static str, body: &'static str) -> axum::response::Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
