//! A client for OpenAI-compatible chat completion APIs (OpenAI, DeepSeek, vLLM, Ollama,
//! llama.cpp), over reqwest.
//!
//! - Every request has a deadline; a streamed answer counts against the same deadline.
//! - 429 and 5xx answers and transport errors are retried with exponential backoff, honouring
//!   `Retry-After` (capped), up to `max_retries` times.
//! - Replies are size-capped: a runaway body is an error, not an allocation.
//! - A circuit breaker opens after consecutive failures: calls then fail at once (the caller
//!   answers offline) until a cool-down passes and one trial call succeeds.

use std::time::Duration;

use concierge_shared::{breaker::Breaker, config::Secret};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest reply body accepted.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(20);
/// More tool calls than any decision makes: a larger index in a streamed reply is malformed.
const MAX_TOOL_CALLS: u64 = 8;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
    pub tool_call_id: Option<String>,
    /// Images that go with `content` (data URLs), for a model that reads them: the content is
    /// then sent as OpenAI's content parts, the text first, then an `image_url` part each.
    #[serde(skip)]
    pub images: Vec<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Some(content.into()),
            tool_calls: None,
            tool_call_id: None,
            images: Vec::new(),
        }
    }

    /// A message of text and images.
    pub fn with_images(self, images: &[String]) -> Self {
        Self { images: images.to_vec(), ..self }
    }
}

impl Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        if self.images.is_empty() {
            if let Some(content) = &self.content {
                map.serialize_entry("content", content)?;
            }
        } else {
            let mut parts = Vec::with_capacity(self.images.len() + 1);
            if let Some(text) = self.content.as_deref().filter(|text| !text.is_empty()) {
                parts.push(serde_json::json!({ "type": "text", "text": text }));
            }
            for url in &self.images {
                parts.push(serde_json::json!({ "type": "image_url", "image_url": { "url": url } }));
            }
            map.serialize_entry("content", &parts)?;
        }
        if let Some(calls) = &self.tool_calls {
            map.serialize_entry("tool_calls", calls)?;
        }
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// JSON text, as the API sends it.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// OpenAI `tools` definitions; the model must call one.
    pub tools: Vec<Value>,
    /// OpenAI `response_format` (`json_schema` or `json_object`) as JSON text, sent as it is
    /// (the order of a schema's properties matters to grammar-constrained servers), when the
    /// decision comes as JSON text rather than a tool call.
    pub response_format: Option<String>,
    pub max_tokens: u32,
    pub stream: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The whole assistant message, to send back when asking for a repair.
    pub message: Option<ChatMessage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("rate limited (429) after retries")]
    RateLimited,
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("the reply is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("unreadable reply: {0}")]
    Malformed(String),
    #[error("the provider is failing; calls are paused")]
    CircuitOpen,
}

impl LlmError {
    /// The stable word stored in `llm_calls.outcome`.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "timeout",
            LlmError::RateLimited => "rate_limited",
            LlmError::Http { .. } => "http_error",
            LlmError::Transport(_) => "transport",
            LlmError::TooLarge => "too_large",
            LlmError::Malformed(_) => "invalid",
            LlmError::CircuitOpen => "circuit_open",
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, LlmError::Http { status, .. } if *status >= 500)
            || matches!(self, LlmError::Transport(_) | LlmError::RateLimited)
    }
}

pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<Secret>,
    timeout: Duration,
    max_retries: u32,
    breaker: Breaker,
}

impl LlmClient {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<Secret>,
        timeout: Duration,
        max_retries: u32,
        cooldown: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.into(),
            api_key,
            timeout,
            max_retries,
            breaker: Breaker::new(cooldown),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether calls are currently refused by the breaker.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// One chat completion. `on_delta` receives streamed answer text as it arrives.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatResponse, LlmError> {
        if self.circuit_open() {
            return Err(LlmError::CircuitOpen);
        }
        let mut attempt = 0;
        let result = loop {
            let outcome = tokio::time::timeout(self.timeout, self.send(request, on_delta))
                .await
                .unwrap_or(Err(Attempt::Failed(LlmError::Timeout(self.timeout))));
            match outcome {
                Ok(response) => break Ok(response),
                Err(Attempt::RetryAfter(wait)) if attempt < self.max_retries => {
                    attempt += 1;
                    tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                }
                Err(Attempt::RetryAfter(_)) => break Err(LlmError::RateLimited),
                Err(Attempt::Failed(error)) if error.retryable() && attempt < self.max_retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(300 * 2u64.pow(attempt - 1))).await;
                }
                Err(Attempt::Failed(error)) => break Err(error),
            }
        };
        match &result {
            Ok(_) => self.breaker.succeeded(),
            // A refusal of this one request (too long, bad arguments) says nothing of the
            // provider's health; its failures, a bad key or an unknown model do.
            Err(LlmError::Http { status: 400 | 413 | 422, .. }) => {}
            Err(_) => {
                if self.breaker.failed() {
                    tracing::warn!(cooldown = ?self.breaker.cooldown(), "LLM provider keeps failing; answering offline for a while");
                }
            }
        }
        result
    }

    async fn send(
        &self,
        request: &ChatRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatResponse, Attempt> {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": 0.2,
        });
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(request.tools.clone());
            body["tool_choice"] = Value::String("required".into());
        }

        if request.stream {
            body["stream"] = Value::Bool(true);
            body["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        let mut text = body.to_string();
        if let Some(format) = &request.response_format {
            // `body` is an object: its text ends with `}`.
            text.pop();
            text.push_str(",\"response_format\":");
            text.push_str(format);
            text.push('}');
        }
        let mut http = self.http.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(text);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key.expose());
        }
        let response = http.send().await.map_err(|e| Attempt::Failed(LlmError::Transport(e.to_string())))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite())
                .map_or(Duration::from_secs(1), |s| {
                    Duration::from_secs_f64(s.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64()))
                });
            return Err(Attempt::RetryAfter(wait));
        }
        if !status.is_success() {
            let text = read_capped(response).await.unwrap_or_default();
            let body = String::from_utf8_lossy(&text).chars().take(500).collect();
            return Err(Attempt::Failed(LlmError::Http { status: status.as_u16(), body }));
        }
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if streamed {
            read_stream(response, on_delta).await.map_err(Attempt::Failed)
        } else {
            let bytes = read_capped(response).await.map_err(Attempt::Failed)?;
            parse_completion(&bytes).map_err(Attempt::Failed)
        }
    }
}

enum Attempt {
    RetryAfter(Duration),
    Failed(LlmError),
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, LlmError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| LlmError::Transport(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(LlmError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
}

fn parse_completion(bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let completion: Completion = serde_json::from_slice(bytes).map_err(|e| LlmError::Malformed(e.to_string()))?;
    let message =
        completion.choices.into_iter().next().ok_or_else(|| LlmError::Malformed("no choices".into()))?.message;
    Ok(ChatResponse {
        content: message.content.clone().filter(|c| !c.trim().is_empty()),
        tool_calls: message.tool_calls.clone().unwrap_or_default(),
        usage: completion.usage.unwrap_or_default(),
        message: Some(message),
    })
}

/// Assemble a streamed completion (`data: {...}` chunks, then `data: [DONE]`), passing the text
/// of the answer to `on_delta` as it comes: plain content, the `text` argument of an `answer`
/// tool call, or the `text` field of a decision written as JSON in the content (the JSON
/// itself never shows).
async fn read_stream(
    response: reqwest::Response,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<ChatResponse, LlmError> {
    let mut content = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut usage = Usage::default();
    let mut answer_text = super::stream_text::FieldStream::new("text");
    let mut content_text = super::stream_text::FieldStream::new("text");
    // Whether the content is JSON (a decision), known from its first visible character.
    let mut content_is_json: Option<bool> = None;
    let mut buffer = Vec::new();
    let mut total = 0usize;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| LlmError::Transport(e.to_string()))?;
        total += chunk.len();
        if total > MAX_BODY {
            return Err(LlmError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let event: Value = serde_json::from_str(data).map_err(|e| LlmError::Malformed(e.to_string()))?;
            if let Some(u) = event.get("usage").filter(|u| !u.is_null()) {
                usage = serde_json::from_value(u.clone()).unwrap_or_default();
            }
            let Some(delta) = event.pointer("/choices/0/delta") else { continue };
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                content.push_str(text);
                if content_is_json.is_none() {
                    content_is_json = content.trim_start().chars().next().map(|c| matches!(c, '{' | '`' | '<'));
                }
                match content_is_json {
                    Some(false) => on_delta(text),
                    Some(true) => {
                        let text = content_text.push(text);
                        if !text.is_empty() {
                            on_delta(&text);
                        }
                    }
                    None => {}
                }
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if index >= MAX_TOOL_CALLS {
                    return Err(LlmError::Malformed(format!("tool call index {index}")));
                }
                let index = index as usize;
                while calls.len() <= index {
                    calls.push(ToolCall {
                        id: String::new(),
                        kind: function_type(),
                        function: FunctionCall::default(),
                    });
                }
                let target = &mut calls[index];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    target.id = id.into();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    target.function.name.push_str(name);
                }
                if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    target.function.arguments.push_str(arguments);
                    if target.function.name == "answer" {
                        let text = answer_text.push(arguments);
                        if !text.is_empty() {
                            on_delta(&text);
                        }
                    }
                }
            }
        }
    }
    let content = Some(content).filter(|c| !c.trim().is_empty());
    let message = ChatMessage {
        role: "assistant".into(),
        content: content.clone(),
        tool_calls: (!calls.is_empty()).then(|| calls.clone()),
        tool_call_id: None,
        images: Vec::new(),
    };
    Ok(ChatResponse { content, tool_calls: calls, usage, message: Some(message) })
}
