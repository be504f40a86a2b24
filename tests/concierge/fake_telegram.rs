//! A fake Telegram Bot API on loopback: it records every call, creates topics, accepts
//! messages, serves queued updates to getUpdates (byte for byte as queued), and can answer 429
//! (in alternating windows, like flood control), 500, or slowly. Like Telegram, it refuses
//! messages over 4096 UTF-16 units and posts to a topic that was closed, fails to find a topic
//! now and then, refuses everything once the bot is kicked, and answers a group's old id with
//! its upgrade. Results and errors have the shapes the real Bot API gives (see
//! `shared/telegram-samples/telegram_methods/` beside the project): the error envelope
//! `{ok, error_code, description[, parameters]}`, createForumTopic's topic, sendMessage's
//! message in a topic with the topic's creation as `reply_to_message`. It renames, closes and
//! reopens topics, and answers a change that changes nothing with TOPIC_NOT_MODIFIED.

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

/// A basic group's id before its upgrade to the supergroup [`CHAT_ID`].
pub const OLD_GROUP_ID: i64 = -4_012_345_678;

const KNOWN: &[&str] = &[
    "getMe",
    "sendChatAction",
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
    "sendPhoto",
    "sendDocument",
    "sendVoice",
    "sendAudio",
    "getFile",
];

/// The methods that upload a file, and the field that carries it.
const UPLOADS: &[(&str, &str)] =
    &[("sendPhoto", "photo"), ("sendDocument", "document"), ("sendVoice", "voice"), ("sendAudio", "audio")];

/// A file uploaded with a request (multipart/form-data).
#[derive(Debug, Clone)]
pub struct Upload {
    pub field: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The request's fields (JSON, or the text fields of a multipart upload, each read as JSON
    /// where it is JSON); an uploaded file's field holds `{file_name, size}`.
    pub body: Value,
    /// Files uploaded with the request.
    pub uploads: Vec<Upload>,
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
    /// Answer the next N sendMessage calls to a topic that exists with "message thread not
    /// found" (the Bot API server says so for any failed look-up of a topic).
    pub lost_lookups: AtomicUsize,
    /// The bot was kicked from the group: every request about it is refused with 403.
    pub kicked: AtomicBool,
    /// The group [`OLD_GROUP_ID`] was upgraded to [`CHAT_ID`]: requests to the old id get
    /// "group chat was upgraded" with `migrate_to_chat_id`.
    pub upgraded: AtomicBool,
    /// Each topic's current name (createForumTopic, editForumTopic).
    pub topic_names: Mutex<HashMap<i64, String>>,
    /// Answer the next N file downloads (`/file/bot…/…`) with 500.
    pub fail_downloads: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    pub behaviour: Arc<Behaviour>,
    calls: Arc<Mutex<Vec<Call>>>,
    updates: Arc<Mutex<VecDeque<String>>>,
    /// The topics created: thread id → name, for the creation message Telegram quotes.
    topics: Arc<Mutex<std::collections::HashMap<i64, String>>>,
    next_id: Arc<AtomicI64>,
    started: Instant,
    /// Files operators "posted", by file id: getFile names them, `/file/bot…/…` serves them.
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let fake = Self {
            url: String::new(),
            behaviour: Arc::default(),
            calls: Arc::default(),
            updates: Arc::default(),
            topics: Arc::default(),
            next_id: Arc::new(AtomicI64::new(100)),
            started: Instant::now(),
            files: Arc::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{bot}/{method}", post(handle))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(fake.clone());
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

    /// A file Telegram holds, as if an operator had posted it: getFile answers for `file_id`.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(file_id.to_owned(), bytes);
    }

    /// Successful uploads by `method` (sendPhoto, sendDocument, sendVoice, sendAudio) with
    /// their fields.
    pub fn uploads(&self, method: &str) -> Vec<(Value, Upload)> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.status == 200)
            .filter_map(|c| c.uploads.first().cloned().map(|upload| (c.body, upload)))
            .collect()
    }

    /// Queue an update for getUpdates.
    pub fn push_update(&self, update: Value) {
        self.push_raw_update(&update.to_string());
    }

    /// Queue an update for getUpdates exactly as written (spacing, key order, escapes).
    pub fn push_raw_update(&self, update: &str) {
        self.updates.lock().unwrap().push_back(update.to_owned());
    }

    fn record(&self, method: &str, body: Value, status: u16) {
        self.record_with(method, body, Vec::new(), status);
    }

    fn record_with(&self, method: &str, body: Value, uploads: Vec<Upload>, status: u16) {
        self.calls.lock().unwrap().push(Call { method: method.to_owned(), body, uploads, status });
    }
}

/// The calls so far, summarised only when a wait times out.
struct Summary<'a>(&'a FakeTelegram);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0.summary())
    }
}

/// A file's bytes, as Telegram serves them at `/file/bot<token>/<file_path>`.
async fn download(State(fake): State<FakeTelegram>, Path((bot, path)): Path<(String, String)>) -> Response {
    assert_eq!(bot, format!("bot{TOKEN}"), "file downloads carry the bot token");
    if fake.behaviour.fail_downloads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        fake.record("download", json!({ "path": path }), 500);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let file_id = path.strip_prefix("files/").unwrap_or(&path);
    let Some(bytes) = fake.files.lock().unwrap().get(file_id).cloned() else {
        fake.record("download", json!({ "path": path }), 404);
        return StatusCode::NOT_FOUND.into_response();
    };
    fake.record("download", json!({ "path": path }), 200);
    bytes.into_response()
}

/// The fields of a multipart/form-data body: text fields read as JSON where they are JSON
/// (teloxide sends numbers and objects so), files apart.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> (Value, Vec<Upload>) {
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))
        .expect("a multipart body names its boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut fields = serde_json::Map::new();
    let mut uploads = Vec::new();
    let find = |haystack: &[u8], needle: &[u8], from: usize| {
        haystack[from..].windows(needle.len()).position(|w| w == needle).map(|at| at + from)
    };
    let mut at = find(body, &delimiter, 0).expect("the first boundary") + delimiter.len();
    while let Some(next) = find(body, &delimiter, at) {
        let part = &body[at..next];
        at = next + delimiter.len();
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = find(part, b"\r\n\r\n", 0) else { continue };
        let headers = String::from_utf8_lossy(&part[..split]).to_string();
        let content = &part[split + 4..];
        let disposition = headers
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default()
            .to_owned();
        let param = |name: &str| {
            disposition
                .split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{name}=")).map(|v| v.trim_matches('"').to_owned()))
        };
        let Some(name) = param("name") else { continue };
        match param("filename") {
            Some(file_name) => {
                let content_type = headers
                    .lines()
                    .find(|line| line.to_ascii_lowercase().starts_with("content-type"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, value)| value.trim().to_owned());
                fields.insert(name.clone(), json!({ "file_name": file_name, "size": content.len() }));
                uploads.push(Upload { field: name, file_name, content_type, bytes: content.to_vec() });
            }
            None => {
                let text = String::from_utf8_lossy(content).to_string();
                let value = match serde_json::from_str::<Value>(&text) {
                    Ok(value @ (Value::Number(_) | Value::Object(_) | Value::Array(_) | Value::Bool(_))) => value,
                    _ => Value::String(text),
                };
                fields.insert(name, value);
            }
        }
    }
    (Value::Object(fields), uploads)
}

async fn handle(
    State(fake): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    assert_eq!(bot, format!("bot{TOKEN}"), "requests carry the bot token");
    // Bot API method names are case-insensitive; record them as Telegram documents them.
    let method = KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(&method))
        .unwrap_or_else(|| panic!("the fake Bot API does not know {method}"))
        .to_string();
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (body, uploads) = if content_type.starts_with("multipart/form-data") {
        parse_multipart(content_type, &body)
    } else {
        (serde_json::from_slice(&body).unwrap_or(Value::Null), Vec::new())
    };
    if let Some((_, field)) = UPLOADS.iter().find(|(name, _)| *name == method) {
        assert!(
            uploads.iter().any(|upload| upload.field == *field),
            "{method} carries its file as the multipart field {field:?}: {body}"
        );
    }
    let flooding = fake.behaviour.flood_windows.load(Ordering::SeqCst) && fake.started.elapsed().as_secs() % 2 == 1;
    if flooding && method != "getUpdates" && method != "answerCallbackQuery" {
        return fake.refuse(&method, body, error_body("too_many_requests"));
    }
    let failing = match method.as_str() {
        "sendMessage" => Some(&fake.behaviour.fail_sends),
        "deleteForumTopic" => Some(&fake.behaviour.fail_deletes),
        _ => None,
    };
    if let Some(failing) = failing
        && failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        return fake.refuse(&method, body, error_body("internal"));
    }
    let about_group = body.get("chat_id").is_some();
    if about_group && fake.behaviour.kicked.load(Ordering::SeqCst) {
        return fake.refuse(&method, body, error_body("bot_kicked_supergroup"));
    }
    if fake.behaviour.upgraded.load(Ordering::SeqCst) && body["chat_id"].as_i64() == Some(OLD_GROUP_ID) {
        return fake.refuse(&method, body, error_body("group_upgraded"));
    }
    let thread = body["message_thread_id"].as_i64();
    let in_set = |threads: &Mutex<HashSet<i64>>| thread.is_some_and(|thread| threads.lock().unwrap().contains(&thread));
    let refusal = match method.as_str() {
        "sendMessage" if body["text"].as_str().unwrap_or_default().encode_utf16().count() > 4096 => {
            Some("message_is_too_long")
        }
        "sendMessage" if in_set(&fake.behaviour.closed_threads) => Some("topic_closed"),
        "sendMessage" | "sendChatAction" if in_set(&fake.behaviour.deleted_threads) => Some("message_thread_not_found"),
        "sendMessage"
            if fake
                .behaviour
                .lost_lookups
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok() =>
        {
            Some("message_thread_not_found")
        }
        "editForumTopic" | "closeForumTopic" | "reopenForumTopic" if in_set(&fake.behaviour.deleted_threads) => {
            Some("message_thread_not_found")
        }
        "editForumTopic"
            if thread.is_some_and(|thread| {
                fake.behaviour.topic_names.lock().unwrap().get(&thread).map(String::as_str) == body["name"].as_str()
            }) =>
        {
            Some("topic_not_modified")
        }
        "closeForumTopic" if in_set(&fake.behaviour.closed_threads) => Some("topic_not_modified"),
        "reopenForumTopic" if !in_set(&fake.behaviour.closed_threads) => Some("topic_not_modified"),
        _ => None,
    };
    if let Some(refusal) = refusal {
        return fake.refuse(&method, body, error_body(refusal));
    }
    let result = match method.as_str() {
        "createForumTopic" => {
            let delay = fake.behaviour.create_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                simulate_delay(Duration::from_millis(delay as u64)).await;
            }
            let thread = fake.next_id.fetch_add(1, Ordering::SeqCst);
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            fake.topics.lock().unwrap().insert(thread, name.clone());
            fake.behaviour.topic_names.lock().unwrap().insert(thread, name.clone());
            // As in telegram_methods/openintegrations_createForumTopic_result.json (no custom
            // emoji was asked for, so none is named).
            json!({ "message_thread_id": thread, "name": name, "icon_color": 7322096 })
        }
        "sendMessage" => {
            // As in telegram_methods/bodao_sendMessage_in_topic_result.json: in a topic, the
            // message quotes the topic's creation.
            let id = fake.next_id.fetch_add(1, Ordering::SeqCst);
            let chat = body["chat_id"].as_i64().unwrap_or(CHAT_ID);
            let mut message = message_in(chat, id, thread, bot_user());
            if let Some(thread) = thread {
                let name = fake.topics.lock().unwrap().get(&thread).cloned().unwrap_or_default();
                let mut created = message_in(chat, thread, Some(thread), bot_user());
                created["forum_topic_created"] = json!({ "name": name, "icon_color": 7322096 });
                message["reply_to_message"] = created;
            }
            message["text"] = body["text"].clone();
            if !body["reply_markup"].is_null() {
                message["reply_markup"] = body["reply_markup"].clone();
            }
            message
        }
        "getMe" => {
            let mut me = bot_user();
            for (key, value) in [
                ("can_join_groups", true),
                ("can_read_all_group_messages", true),
                ("supports_inline_queries", false),
                ("can_connect_to_business", false),
                ("has_main_web_app", false),
            ] {
                me[key] = json!(value);
            }
            me
        }
        "getChatAdministrators" => json!([{ "status": "creator", "is_anonymous": false, "user": operator_user() }]),
        "getUpdates" => {
            let pending: Vec<String> = fake.updates.lock().unwrap().drain(..).collect();
            if pending.is_empty() {
                // A long poll that ends with nothing.
                simulate_delay(Duration::from_millis(200)).await;
            }
            fake.record(&method, body, 200);
            // Written by hand so that each update goes out exactly as it was queued.
            let text = format!("{{\"ok\":true,\"result\":[{}]}}", pending.join(","));
            return ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response();
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
        "sendPhoto" | "sendDocument" | "sendVoice" | "sendAudio" => {
            let id = fake.next_id.fetch_add(1, Ordering::SeqCst);
            let chat = body["chat_id"].as_i64().unwrap_or(CHAT_ID);
            let mut message = message_in(chat, id, thread, bot_user());
            let upload = &uploads[0];
            let file = |extra: Value| {
                let mut file = json!({
                    "file_id": format!("sent-{id}"),
                    "file_unique_id": format!("u-sent-{id}"),
                    "file_size": upload.bytes.len(),
                });
                file.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                file
            };
            match method.as_str() {
                "sendPhoto" => message["photo"] = json!([file(json!({ "width": 90, "height": 60 }))]),
                "sendVoice" => message["voice"] = file(json!({ "duration": 1, "mime_type": "audio/ogg" })),
                "sendAudio" => message["audio"] = file(json!({ "duration": 1 })),
                _ => message["document"] = file(json!({ "file_name": upload.file_name })),
            }
            if let Some(caption) = body["caption"].as_str() {
                message["caption"] = json!(caption);
            }
            message
        }
        "getFile" => {
            let file_id = body["file_id"].as_str().unwrap_or_default().to_owned();
            let Some(size) = fake.files.lock().unwrap().get(&file_id).map(Vec::len) else {
                return fake.refuse(&method, body, error_body("invalid_file_id"));
            };
            json!({
                "file_id": file_id,
                "file_unique_id": format!("u-{file_id}"),
                "file_size": size,
                "file_path": format!("files/{file_id}"),
            })
        }
        "answerCallbackQuery" | "setWebhook" | "deleteWebhook" | "sendChatAction" => json!(true),
        other => unreachable!("{other} is known but not answered"),
    };
    fake.record_with(&method, body, uploads, 200);
    Json(json!({ "ok": true, "result": result })).into_response()
}

impl FakeTelegram {
    /// Answer with a Bot API error body (`{ok: false, error_code, description[, parameters]}`).
    fn refuse(&self, method: &str, body: Value, error: Value) -> Response {
        let code = error["error_code"].as_u64().unwrap_or(400) as u16;
        self.record(method, body, code);
        (StatusCode::from_u16(code).unwrap(), Json(error)).into_response()
    }
}

/// A Bot API error body by name, from `fixtures/telegram/errors.json` (the descriptions as the
/// Bot API server builds them).
fn error_body(name: &str) -> Value {
    static ERRORS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(include_str!("../../fixtures/telegram/errors.json")).expect("errors.json is JSON")
    });
    let error = ERRORS[name].clone();
    assert!(error.is_object(), "no error named {name} in fixtures/telegram/errors.json");
    error
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
    message_in(CHAT_ID, message_id, thread, from)
}

/// A message in the forum supergroup `chat`, in a topic when `thread` is given.
fn message_in(chat: i64, message_id: i64, thread: Option<i64>, from: Value) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "from": from,
        "chat": { "id": chat, "title": "Lectio support", "is_forum": true, "type": "supergroup" },
        "date": 1_764_000_000,
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
