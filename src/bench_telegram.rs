//! A loopback Telegram Bot API for `concierge bench abuse`: it creates forum topics, accepts
//! messages and answers the few other methods the workers call, at once, and counts the topics
//! it was asked to create, so that the benchmark can check the hourly cap on new topics.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use axum::{Json, Router, extract::Path, extract::State, routing::post};
use serde_json::{Value, json};

/// The bot token the fake expects in its URLs.
pub const TOKEN: &str = "123456:bench-token";
/// The support group.
pub const CHAT_ID: i64 = -1_009_000_000_001;

/// What the fake has seen.
#[derive(Clone, Default)]
pub struct Counts {
    pub topics: Arc<AtomicU64>,
    pub messages: Arc<AtomicU64>,
    next_id: Arc<AtomicI64>,
}

/// Serve on an ephemeral loopback port; returns the API's base URL and the counts.
pub async fn serve() -> anyhow::Result<(String, Counts)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let counts = Counts { next_id: Arc::new(AtomicI64::new(1_000)), ..Counts::default() };
    let app = Router::new().route("/{bot}/{method}", post(handle)).with_state(counts.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{address}"), counts))
}

async fn handle(State(counts): State<Counts>, Path((_bot, method)): Path<(String, String)>) -> Json<Value> {
    // Method names are case-insensitive in the Bot API.
    let result = match method.to_ascii_lowercase().as_str() {
        "createforumtopic" => {
            counts.topics.fetch_add(1, Ordering::Relaxed);
            let thread = counts.next_id.fetch_add(1, Ordering::Relaxed);
            json!({ "message_thread_id": thread, "name": "topic", "icon_color": 7322096 })
        }
        "sendmessage" => {
            counts.messages.fetch_add(1, Ordering::Relaxed);
            let id = counts.next_id.fetch_add(1, Ordering::Relaxed);
            json!({
                "message_id": id,
                "date": 1_764_000_000,
                "chat": { "id": CHAT_ID, "type": "supergroup", "title": "support", "is_forum": true },
                "from": { "id": 999_000, "is_bot": true, "first_name": "Support" },
                "text": "",
            })
        }
        "getchatadministrators" => json!([]),
        "getupdates" => json!([]),
        _ => json!(true),
    };
    Json(json!({ "ok": true, "result": result }))
}
