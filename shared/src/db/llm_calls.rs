//! The record of every language-model call: what it cost, how long it took, how it ended.
//! Budgets are read from it and the admin console shows it per conversation.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{ConversationId, MessageId};

/// One recorded call.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LlmCall {
    pub id: uuid::Uuid,
    pub message_id: Option<uuid::Uuid>,
    pub provider: String,
    pub model: String,
    /// `decide`, `repair`, `follow_up` (after an action).
    pub purpose: String,
    pub prompt_version: String,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub latency_ms: i32,
    /// `ok`, `invalid` (an unusable reply), or the failure: `http_error`, `rate_limited`, `timeout`…
    pub outcome: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A call to record.
#[derive(Debug)]
pub struct NewLlmCall<'a> {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub provider: &'a str,
    pub model: &'a str,
    pub purpose: &'a str,
    pub prompt_version: &'a str,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub latency_ms: i32,
    pub outcome: &'a str,
    pub error: Option<&'a str>,
}

pub async fn insert(db: impl sqlx::PgExecutor<'_>, call: &NewLlmCall<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO llm_calls (id, message_id, conversation_id, provider, model, purpose, prompt_version,
             prompt_tokens, completion_tokens, latency_ms, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(call.message_id)
    .bind(call.conversation_id)
    .bind(call.provider)
    .bind(call.model)
    .bind(call.purpose)
    .bind(call.prompt_version)
    .bind(call.prompt_tokens)
    .bind(call.completion_tokens)
    .bind(call.latency_ms)
    .bind(call.outcome)
    .bind(call.error)
    .execute(db)
    .await?;
    Ok(())
}

/// What the token budgets are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct TokensSpent {
    /// By the conversation, ever.
    pub conversation: i64,
    /// By every conversation of its owner since midnight UTC: opening a new conversation does
    /// not reset it.
    pub principal_today: i64,
    /// By all conversations since midnight UTC.
    pub today: i64,
}

/// Tokens spent so far by one conversation, by its owner's conversations today, and by all of
/// them today (UTC).
pub async fn tokens_spent(db: impl sqlx::PgExecutor<'_>, conversation: ConversationId) -> sqlx::Result<TokensSpent> {
    sqlx::query_as(
        "WITH today AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start)
         SELECT
             COALESCE((SELECT sum(prompt_tokens + completion_tokens) FROM llm_calls WHERE conversation_id = $1), 0)::bigint
                 AS conversation,
             COALESCE((SELECT sum(l.prompt_tokens + l.completion_tokens)
                       FROM conversations mine
                       JOIN conversations theirs ON theirs.owner = mine.owner
                       JOIN llm_calls l ON l.conversation_id = theirs.id
                       WHERE mine.id = $1 AND l.created_at >= (SELECT start FROM today)), 0)::bigint
                 AS principal_today,
             COALESCE((SELECT sum(prompt_tokens + completion_tokens) FROM llm_calls
                       WHERE created_at >= (SELECT start FROM today)), 0)::bigint
                 AS today",
    )
    .bind(conversation)
    .fetch_one(db)
    .await
}

/// A conversation's calls, oldest first (at most `limit`).
pub async fn for_conversation(
    db: impl sqlx::PgExecutor<'_>,
    conversation: ConversationId,
    limit: i64,
) -> sqlx::Result<Vec<LlmCall>> {
    sqlx::query_as(
        "SELECT id, message_id, provider, model, purpose, prompt_version, prompt_tokens, completion_tokens,
                latency_ms, outcome, error, created_at
         FROM llm_calls WHERE conversation_id = $1 ORDER BY created_at LIMIT $2",
    )
    .bind(conversation)
    .bind(limit)
    .fetch_all(db)
    .await
}
