//! Internal notes operators leave on a conversation (from the console or Telegram).
//!
//! Invariant: a note written with a key is stored once, so a re-run handler adds nothing new.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::{ConversationId, OperatorChannel};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Note {
    pub id: uuid::Uuid,
    pub author: String,
    pub content: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// Store an internal note; `key` makes a re-run write nothing new. Returns whether it was new.
pub async fn add_note(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    author: &str,
    content: &str,
    source: OperatorChannel,
    key: Option<&str>,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO operator_notes (id, conversation_id, author, content, source, key) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(conversation_id)
    .bind(author)
    .bind(content)
    .bind(source.as_str())
    .bind(key)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn notes(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Vec<Note>> {
    sqlx::query_as(
        "SELECT id, author, content, source, created_at FROM operator_notes WHERE conversation_id = $1 ORDER BY created_at",
    )
    .bind(conversation_id)
    .fetch_all(db)
    .await
}
