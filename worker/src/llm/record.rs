//! Recording every model call in `llm_calls` and in the metrics.
//!
//! Invariant: each request to the provider, whatever its outcome (ok, invalid, an error, the
//! circuit open), writes exactly one row, with its purpose, tokens and latency.

use concierge_shared::{
    ConversationId, MessageId,
    db::llm_calls::{self, NewLlmCall},
};
use sqlx::PgPool;

use super::{
    Llm,
    client::{self, ChatResponse, LlmError},
};

pub(super) async fn record(
    pool: &PgPool,
    llm: &Llm,
    turn: Ids,
    purpose: &str,
    result: &Result<ChatResponse, LlmError>,
    latency_ms: i64,
) -> sqlx::Result<()> {
    let (usage, outcome, error) = match result {
        Ok(response) => (response.usage, "ok", None),
        Err(error) => (Default::default(), error.outcome(), Some(error.to_string())),
    };
    insert_call(pool, llm, turn, purpose, usage, outcome, error.as_deref(), latency_ms).await
}

pub(super) async fn record_invalid(
    pool: &PgPool,
    llm: &Llm,
    turn: Ids,
    purpose: &str,
    response: &ChatResponse,
    problem: &str,
    latency_ms: i64,
) -> sqlx::Result<()> {
    insert_call(pool, llm, turn, purpose, response.usage, "invalid", Some(problem), latency_ms).await
}

/// The conversation and the user message a call was made for.
type Ids = (ConversationId, MessageId);

#[allow(clippy::too_many_arguments)]
async fn insert_call(
    pool: &PgPool,
    llm: &Llm,
    turn: Ids,
    purpose: &str,
    usage: client::Usage,
    outcome: &str,
    error: Option<&str>,
    latency_ms: i64,
) -> sqlx::Result<()> {
    metrics::counter!("concierge_llm_calls_total", "purpose" => purpose.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
    metrics::counter!("concierge_llm_tokens_total")
        .increment(usage.prompt_tokens as u64 + usage.completion_tokens as u64);
    metrics::histogram!("concierge_llm_call_duration_seconds").record(latency_ms as f64 / 1000.0);
    let call = NewLlmCall {
        conversation_id: turn.0,
        message_id: turn.1,
        provider: llm.provider,
        model: llm.client.model(),
        purpose,
        prompt_version: &llm.prompt.version,
        prompt_tokens: usage.prompt_tokens as i32,
        completion_tokens: usage.completion_tokens as i32,
        latency_ms: latency_ms as i32,
        outcome,
        error,
    };
    llm_calls::insert(pool, &call).await
}
