//! Attachment rows: stored files of messages (see `crate::attachments`).

use sqlx::{PgConnection, PgExecutor};

use crate::{ConversationId, MessageId};

/// One stored file.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attachment {
    pub id: uuid::Uuid,
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    pub author: String,
    pub kind: String,
    pub content_type: String,
    pub file_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub storage_key: String,
    pub transcript: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A row to insert.
pub struct NewRow<'a> {
    pub id: uuid::Uuid,
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    pub author: &'a str,
    pub kind: &'a str,
    pub content_type: &'a str,
    pub file_name: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub storage_key: &'a str,
}

const COLUMNS: &str = "id, conversation_id, message_id, author, kind, content_type, file_name, size_bytes, \
                       sha256, storage_key, transcript, created_at";

pub async fn insert(db: impl PgExecutor<'_>, row: &NewRow<'_>) -> sqlx::Result<Attachment> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO attachments (id, conversation_id, message_id, author, kind, content_type, file_name,
                                  size_bytes, sha256, storage_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    )))
    .bind(row.id)
    .bind(row.conversation_id)
    .bind(row.message_id)
    .bind(row.author)
    .bind(row.kind)
    .bind(row.content_type)
    .bind(row.file_name)
    .bind(row.size_bytes)
    .bind(row.sha256)
    .bind(row.storage_key)
    .fetch_one(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: uuid::Uuid) -> sqlx::Result<Option<Attachment>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM attachments WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Attach uploaded files to a message of their conversation, in the caller's transaction.
/// Returns false (and attaches nothing, once the caller rolls back) when an id is of another
/// conversation, attached already, or uploaded by another `author` (`user` or `operator`):
/// neither side sends the other's files. A message's files are read with
/// `transcripts::of_messages`.
pub async fn attach_to_message(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    message_id: MessageId,
    author: &str,
    ids: &[uuid::Uuid],
) -> sqlx::Result<bool> {
    let attached = sqlx::query(
        "UPDATE attachments SET message_id = $3
         WHERE id = ANY($1) AND conversation_id = $2 AND message_id IS NULL AND author = $4",
    )
    .bind(ids)
    .bind(conversation_id)
    .bind(message_id)
    .bind(author)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(attached == ids.len() as u64)
}

/// Remove a row never attached to a message; returns its storage key to delete.
pub async fn delete_unsent(db: impl PgExecutor<'_>, id: uuid::Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("DELETE FROM attachments WHERE id = $1 AND message_id IS NULL RETURNING storage_key")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Remove the uploads never sent with a message that are older than `age`; their files are
/// queued for deletion with them (see `storage_deletions`). Returns how many went.
pub async fn delete_unsent_older_than(db: impl PgExecutor<'_>, age: std::time::Duration) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM attachments WHERE message_id IS NULL AND created_at < now() - $1 * interval '1 millisecond'",
    )
    .bind(age.as_millis() as i64)
    .execute(db)
    .await?
    .rows_affected())
}
