//! What the workers read and write about a message's attachments beyond storing them: voice
//! transcripts (written by the transcribe job), and the short list of a message's files that
//! the decision (its prompt), the Telegram outbox and the model's image parts use.
//!
//! Invariant: a voice attachment is transcribed at most once — its transcript, or the time
//! transcription was given up, is set once and never overwritten.

use sqlx::PgExecutor;

use crate::{ConversationId, MessageId};

/// One attachment of a message, as the workers and the messages the API sends need it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentBrief {
    pub id: uuid::Uuid,
    pub message_id: Option<MessageId>,
    pub kind: String,
    pub content_type: String,
    pub file_name: String,
    pub size_bytes: i64,
    pub storage_key: String,
    pub transcript: Option<String>,
    /// Transcription was given up (refused, or every attempt failed).
    pub transcript_failed: bool,
}

impl AttachmentBrief {
    pub fn is_voice(&self) -> bool {
        self.kind == "voice"
    }

    pub fn is_image(&self) -> bool {
        self.kind == "image"
    }

    /// A voice message whose transcript has yet to come.
    pub fn awaits_transcript(&self) -> bool {
        self.is_voice() && self.transcript.is_none() && !self.transcript_failed
    }
}

const COLUMNS: &str = "id, message_id, kind, content_type, file_name, size_bytes, storage_key, transcript, \
                       transcript_failed_at IS NOT NULL AS transcript_failed";

/// The attachments of these messages, in the order they were uploaded.
pub async fn of_messages(db: impl PgExecutor<'_>, ids: &[MessageId]) -> sqlx::Result<Vec<AttachmentBrief>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM attachments WHERE message_id = ANY($1) ORDER BY created_at, id"
    )))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// The attachments of one message.
pub async fn of_message(db: impl PgExecutor<'_>, id: MessageId) -> sqlx::Result<Vec<AttachmentBrief>> {
    of_messages(db, &[id]).await
}

/// One attachment by id.
pub async fn get(db: impl PgExecutor<'_>, id: uuid::Uuid) -> sqlx::Result<Option<AttachmentBrief>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM attachments WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Store a voice attachment's transcript, unless it has one or was given up; returns whether
/// it was stored now.
pub async fn set_transcript(db: impl PgExecutor<'_>, id: uuid::Uuid, transcript: &str) -> sqlx::Result<bool> {
    let stored = sqlx::query(
        "UPDATE attachments SET transcript = $2
         WHERE id = $1 AND kind = 'voice' AND transcript IS NULL AND transcript_failed_at IS NULL",
    )
    .bind(id)
    .bind(transcript)
    .execute(db)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// Give up transcribing a voice attachment: its message is decided as a voice message without
/// a transcript.
pub async fn give_up(db: impl PgExecutor<'_>, id: uuid::Uuid) -> sqlx::Result<bool> {
    let marked = sqlx::query(
        "UPDATE attachments SET transcript_failed_at = now()
         WHERE id = $1 AND transcript IS NULL AND transcript_failed_at IS NULL",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected();
    Ok(marked == 1)
}

/// The conversation's latest user message that has no reply yet, the one whose decision takes
/// the earlier ones along (see the process-message job).
pub async fn latest_unanswered(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
) -> sqlx::Result<Option<MessageId>> {
    sqlx::query_scalar(
        "SELECT m.id FROM messages m
         WHERE m.conversation_id = $1 AND m.role = 'user'
           AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = m.id)
           AND NOT EXISTS (SELECT 1 FROM action_runs a WHERE a.message_id = m.id)
         ORDER BY m.seq DESC LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(db)
    .await
}
