//! A scripted OpenAI-compatible server on loopback: each request takes the next scripted reply
//! (when the script is empty, the responder's reply to the request, else a 500) and is recorded.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use concierge_shared::config::DecisionFormat;

use crate::helpers::simulate_delay;

#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete JSON body.
    Json(Value),
    /// Server-sent chunks, then `[DONE]`.
    Stream(Vec<Value>),
    /// This status, with this `Retry-After` header when given.
    Status(u16, Option<&'static str>),
    /// Answer after this long.
    Hang(Duration),
    /// This JSON body, after this long (a slow but working server).
    Slow(Duration, Value),
    /// A body of this many bytes.
    Huge(usize),
}

/// Replies to a request from what it says, for tests where the order of requests is not fixed.
type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<Value>,
    responder: Option<Responder>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().route("/v1/chat/completions", post(complete)).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, script }
    }

    pub fn push(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().replies.push_back(reply);
        self
    }

    /// Answer every request the script has no reply for with `responder(request)`.
    pub fn respond_with(&self, responder: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> &Self {
        self.script.lock().unwrap().responder = Some(Arc::new(responder));
        self
    }

    pub fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap().requests.clone()
    }
}

async fn complete(State(script): State<Arc<Mutex<Script>>>, body: axum::Json<Value>) -> Response {
    let reply = {
        let mut script = script.lock().unwrap();
        let reply = script.replies.pop_front().or_else(|| script.responder.as_ref().map(|respond| respond(&body.0)));
        script.requests.push(body.0);
        reply
    };
    match reply {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
        Some(Reply::Json(value)) => axum::Json(value).into_response(),
        Some(Reply::Status(code, retry_after)) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), "{\"error\":\"scripted\"}").into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, seconds.parse().unwrap());
            }
            response
        }
        Some(Reply::Slow(wait, value)) => {
            simulate_delay(wait).await;
            axum::Json(value).into_response()
        }
        Some(Reply::Hang(wait)) => {
            simulate_delay(wait).await;
            axum::Json(tool_reply("answer", json!({ "text": "поздно", "citations": [] }))).into_response()
        }
        Some(Reply::Huge(bytes)) => {
            let body = format!(
                "{{\"choices\":[{{\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}}}}]}}",
                "я".repeat(bytes / 2)
            );
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Reply::Stream(chunks)) => {
            let stream = async_stream(chunks);
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
        }
    }
}

fn async_stream(chunks: Vec<Value>) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::unfold(
        chunks.into_iter().map(Some).chain([None]).collect::<VecDeque<_>>(),
        |mut rest| async move {
            let next = rest.pop_front()?;
            simulate_delay(Duration::from_millis(40)).await;
            Some((
                Ok(match next {
                    Some(chunk) => format!("data: {chunk}\n\n"),
                    None => "data: [DONE]\n\n".to_owned(),
                }),
                rest,
            ))
        },
    )
}

/// A completion whose message calls one tool.
pub fn tool_reply(name: &str, arguments: Value) -> Value {
    json!({
        "choices": [{ "message": { "role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": { "name": name, "arguments": arguments.to_string() }
        }]}}],
        "usage": { "prompt_tokens": 900, "completion_tokens": 60 }
    })
}

/// A completion carrying the decision `name` with `arguments` as the server answers in
/// `format`: a tool call, or the `{"decision": ...}` object as content.
pub fn decision_reply(format: DecisionFormat, name: &str, arguments: Value) -> Value {
    match format {
        DecisionFormat::Tools => tool_reply(name, arguments),
        DecisionFormat::JsonSchema | DecisionFormat::JsonObject => {
            let mut decision = json!({ "decision": name });
            for (key, value) in arguments.as_object().into_iter().flatten() {
                decision[key] = value.clone();
            }
            content_reply(&decision.to_string())
        }
    }
}

/// A reply whose decision cannot be read, as it would come in `format`.
pub fn malformed_reply(format: DecisionFormat) -> Value {
    match format {
        DecisionFormat::Tools => tool_reply("answer", json!("not an object")),
        DecisionFormat::JsonSchema | DecisionFormat::JsonObject => {
            content_reply("{\"decision\": \"answer\", \"text\": ")
        }
    }
}

/// A completion with plain content (JSON mode).
pub fn content_reply(content: &str) -> Value {
    json!({
        "choices": [{ "message": { "role": "assistant", "content": content } }],
        "usage": { "prompt_tokens": 800, "completion_tokens": 40 }
    })
}

/// Stream chunks of an `answer` tool call whose arguments arrive in pieces.
pub fn streamed_answer(text: &str, citations: &[&str]) -> Vec<Value> {
    let arguments = json!({ "citations": citations, "text": text }).to_string();
    let mut chunks = vec![
        json!({ "choices": [{ "delta": { "tool_calls": [{ "index": 0, "id": "call_s", "type": "function", "function": { "name": "answer", "arguments": "" } }] } }] }),
    ];
    let chars: Vec<char> = arguments.chars().collect();
    for piece in chars.chunks(12) {
        let piece: String = piece.iter().collect();
        chunks.push(
            json!({ "choices": [{ "delta": { "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] } }] }),
        );
    }
    chunks.push(json!({ "choices": [], "usage": { "prompt_tokens": 700, "completion_tokens": 50 } }));
    chunks
}
