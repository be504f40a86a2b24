//! A fake Telegram Bot API on loopback: it records every call, creates topics, accepts
//! messages, serves queued updates to getUpdates, and can answer 429 (in alternating windows,
//! like flood control), 500, or slowly. Like Telegram, it refuses messages over 4096 UTF-16
//! units and posts to a topic that was closed, renames, closes and reopens topics, and answers
//! a change that changes nothing with TOPIC_NOT_MODIFIED.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{simulate_delay, wait_until};

pub const TOKEN: &str = "123456:test-token";
pub const CHAT_ID: i64 = -1_001_234_567_890;
pub const OPERATOR_ID: u64 = 4242;
pub const STRANGER_ID: u64 = 777;

const KNOWN: &[&str] = &[
    "createForumTopic",
    "reopenForumTopic",
    "closeForumTopic",
    "editForumTopic",
    "deleteForumTopic",
    "sendMessage",
    "getChatAdministrators",
    "getUpdates",
    "answerCallbackQuery",
    "setWebhook",
    "deleteWebhook",
];

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// The response's status.
    pub status: u16,
}

#[derive(Default)]
pub struct Behaviour {
    /// Answer 429 `retry_after: 1` during every other second.
    pub flood_windows: AtomicBool,
    /// Answer the next N sendMessage calls with 500.
    pub fail_sends: AtomicUsize,
    /// Answer the next N deleteForumTopic calls with 500.
    pub fail_deletes: AtomicUsize,
    /// Delay createForumTopic by this many milliseconds.
    pub create_delay_ms: AtomicUsize,
    /// Topics an operator closed by hand: sendMessage there is refused until reopenForumTopic.
    pub closed_threads: Mutex<HashSet<i64>>,
    /// Topics deleted (by hand or with deleteForumTopic): sendMessage there is refused.
    pub deleted_threads: Mutex<HashSet<i64>>,
    /// Each topic's current name (createForumTopic, editForumTopic).
    pub topic_names: Mutex<HashMap<i64, String>>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    pub behaviour: Arc<Behaviour>,
    calls: Arc<Mutex<Vec<Call>>>,
    updates: Arc<Mutex<VecDeque<Value>>>,
    next_id: Arc<AtomicI64>,
    started: Instant,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let fake = Self {
            url: String::new(),
            behaviour: Arc::default(),
            calls: Arc::default(),
            updates: Arc::default(),
            next_id: Arc::new(AtomicI64::new(100)),
            started: Instant::now(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/{bot}/{method}", post(handle)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, ..fake }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Successful calls of `method`.
    pub fn accepted(&self, method: &str) -> Vec<Value> {
        self.calls().into_iter().filter(|c| c.method == method && c.status == 200).map(|c| c.body).collect()
    }

    /// Texts posted to a topic, in the order Telegram accepted them.
    pub fn posts_in(&self, thread: i64) -> Vec<String> {
        self.accepted("sendMessage")
            .into_iter()
            .filter(|body| body["message_thread_id"].as_i64() == Some(thread))
            .map(|body| body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A topic's name as Telegram shows it now.
    pub fn topic_name(&self, thread: i64) -> String {
        self.behaviour.topic_names.lock().unwrap().get(&thread).cloned().unwrap_or_default()
    }

    /// Whether a topic is closed now.
    pub fn topic_closed(&self, thread: i64) -> bool {
        self.behaviour.closed_threads.lock().unwrap().contains(&thread)
    }

    /// Wait until `check` holds for the calls so far.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&FakeTelegram) -> bool) {
        self.wait_for_within(what, Duration::from_secs(30), check).await
    }

    pub async fn wait_for_within(&self, what: &str, within: Duration, check: impl Fn(&FakeTelegram) -> bool) {
        let what = format!("Telegram to see {what}");
        wait_until(&what, within, async || if check(self) { Ok(()) } else { Err(Summary(self)) }).await
    }

    /// Calls by method and status, and the last few.
    pub fn summary(&self) -> String {
        let calls = self.calls();
        let mut counts = std::collections::BTreeMap::<(String, u16), usize>::new();
        for call in &calls {
            *counts.entry((call.method.clone(), call.status)).or_default() += 1;
        }
        let last: Vec<_> = calls.iter().rev().take(8).collect();
        format!("counts: {counts:?}\nlast calls: {last:#?}")
    }

    /// Queue an update for getUpdates.
    pub fn push_update(&self, update: Value) {
        self.updates.lock().unwrap().push_back(update);
    }

    fn record(&self, method: &str, body: Value, status: u16) {
        self.calls.lock().unwrap().push(Call { method: method.to_owned(), body, status });
    }
}

/// The calls so far, summarised only when a wait times out.
struct Summary<'a>(&'a FakeTelegram);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0.summary())
    }
}

async fn handle(
    State(fake): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    body: String,
) -> Response {
    assert_eq!(bot, format!("bot{TOKEN}"), "requests carry the bot token");
    // Bot API method names are case-insensitive; record them as Telegram documents them.
    let method = KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(&method))
        .unwrap_or_else(|| panic!("the fake Bot API does not know {method}"))
        .to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let flooding = fake.behaviour.flood_windows.load(Ordering::SeqCst) && fake.started.elapsed().as_secs() % 2 == 1;
    if flooding && method != "getUpdates" && method != "answerCallbackQuery" {
        fake.record(&method, body, 429);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": { "retry_after": 1 }
            })),
        )
            .into_response();
    }
    let failing = match method.as_str() {
        "sendMessage" => Some(&fake.behaviour.fail_sends),
        "deleteForumTopic" => Some(&fake.behaviour.fail_deletes),
        _ => None,
    };
    if let Some(failing) = failing
        && failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        fake.record(&method, body, 500);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "ok": false, "error_code": 500, "description": "Internal Server Error" })),
        )
            .into_response();
    }
    let thread = body["message_thread_id"].as_i64();
    let in_set = |threads: &Mutex<HashSet<i64>>| thread.is_some_and(|thread| threads.lock().unwrap().contains(&thread));
    let refusal = match method.as_str() {
        "sendMessage" if body["text"].as_str().unwrap_or_default().encode_utf16().count() > 4096 => {
            Some("Bad Request: message is too long")
        }
        "sendMessage" if in_set(&fake.behaviour.closed_threads) => Some("Bad Request: TOPIC_CLOSED"),
        "sendMessage" if in_set(&fake.behaviour.deleted_threads) => Some("Bad Request: message thread not found"),
        "editForumTopic" | "closeForumTopic" | "reopenForumTopic" if in_set(&fake.behaviour.deleted_threads) => {
            Some("Bad Request: message thread not found")
        }
        "editForumTopic"
            if thread.is_some_and(|thread| {
                fake.behaviour.topic_names.lock().unwrap().get(&thread).map(String::as_str) == body["name"].as_str()
            }) =>
        {
            Some("Bad Request: TOPIC_NOT_MODIFIED")
        }
        "closeForumTopic" if in_set(&fake.behaviour.closed_threads) => Some("Bad Request: TOPIC_NOT_MODIFIED"),
        "reopenForumTopic" if !in_set(&fake.behaviour.closed_threads) => Some("Bad Request: TOPIC_NOT_MODIFIED"),
        _ => None,
    };
    if let Some(description) = refusal {
        fake.record(&method, body, 400);
        return (StatusCode::BAD_REQUEST, Json(json!({ "ok": false, "error_code": 400, "description": description })))
            .into_response();
    }
    let result = match method.as_str() {
        "createForumTopic" => {
            let delay = fake.behaviour.create_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                simulate_delay(Duration::from_millis(delay as u64)).await;
            }
            let thread = fake.next_id.fetch_add(1, Ordering::SeqCst);
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            fake.behaviour.topic_names.lock().unwrap().insert(thread, name);
            json!({ "message_thread_id": thread, "name": body["name"], "icon_color": 7322096 })
        }
        "sendMessage" => {
            let id = fake.next_id.fetch_add(1, Ordering::SeqCst);
            let mut message = group_message(id, body["message_thread_id"].as_i64(), bot_user());
            message["text"] = body["text"].clone();
            message
        }
        "getChatAdministrators" => json!([{ "status": "creator", "is_anonymous": false, "user": operator_user() }]),
        "getUpdates" => {
            let pending: Vec<Value> = fake.updates.lock().unwrap().drain(..).collect();
            if pending.is_empty() {
                // A long poll that ends with nothing.
                simulate_delay(Duration::from_millis(200)).await;
            }
            fake.record(&method, body, 200);
            return Json(json!({ "ok": true, "result": pending })).into_response();
        }
        "reopenForumTopic" => {
            fake.behaviour
                .closed_threads
                .lock()
                .unwrap()
                .remove(&body["message_thread_id"].as_i64().unwrap_or_default());
            json!(true)
        }
        "editForumTopic" => {
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            fake.behaviour.topic_names.lock().unwrap().insert(thread.unwrap_or_default(), name);
            json!(true)
        }
        "closeForumTopic" => {
            fake.behaviour.closed_threads.lock().unwrap().insert(thread.unwrap_or_default());
            json!(true)
        }
        "deleteForumTopic" => {
            fake.behaviour
                .deleted_threads
                .lock()
                .unwrap()
                .insert(body["message_thread_id"].as_i64().unwrap_or_default());
            json!(true)
        }
        "answerCallbackQuery" | "setWebhook" | "deleteWebhook" => json!(true),
        other => unreachable!("{other} is known but not answered"),
    };
    fake.record(&method, body, 200);
    Json(json!({ "ok": true, "result": result })).into_response()
}

pub fn bot_user() -> Value {
    json!({ "id": 999_000, "is_bot": true, "first_name": "Lectio Support", "username": "lectio_support_bot" })
}

pub fn operator_user() -> Value {
    json!({ "id": OPERATOR_ID, "is_bot": false, "first_name": "Ольга", "last_name": "Сергеевна" })
}

pub fn stranger_user() -> Value {
    json!({ "id": STRANGER_ID, "is_bot": false, "first_name": "Пётр" })
}

/// A message in the support group, in a topic when `thread` is given.
pub fn group_message(message_id: i64, thread: Option<i64>, from: Value) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": 1_764_000_000,
        "chat": { "id": CHAT_ID, "type": "supergroup", "title": "Lectio support", "is_forum": true },
        "from": from,
    });
    if let Some(thread) = thread {
        message["message_thread_id"] = json!(thread);
        message["is_topic_message"] = json!(true);
    }
    message
}

/// An update with a text message from `from` in a topic.
pub fn text_update(update_id: i64, message_id: i64, thread: i64, from: Value, text: &str) -> Value {
    let mut message = group_message(message_id, Some(thread), from);
    message["text"] = json!(text);
    json!({ "update_id": update_id, "message": message })
}
