//! Replies by email: the user's choice (stored on the conversation), the jobs that send
//! operators' replies, and the mark that each reply went out once.
//!
//! Invariant: a reply is queued for email in the transaction that stores it (see
//! [`crate::human::reply`]), only while the user's choice stands, and marked sent by message id,
//! so a job that runs twice sends it once.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    ConversationId, MessageId,
    jobs::{self, SendReplyEmail},
};

/// How many times the queue runs an email job whose worker died holding it. Failures of the
/// SMTP server are retried inside one run (`CONCIERGE_JOB_MAX_ATTEMPTS` tries, with backoff).
pub const JOB_RUNS: u32 = 3;

/// The user's choice and what the offer depends on, for one conversation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailReplyState {
    /// Where operators' replies are also sent; `None`: the user did not ask.
    pub email_reply_to: Option<String>,
    /// When the conversation was last handed to a person (its latest hand-over notice).
    pub handed_over_at: Option<DateTime<Utc>>,
}

/// The user's choice and the latest hand-over of conversation `id`.
pub async fn state(db: impl PgExecutor<'_>, id: ConversationId) -> sqlx::Result<EmailReplyState> {
    sqlx::query_as(
        "SELECT c.email_reply_to,
                (SELECT m.created_at FROM messages m
                  WHERE m.conversation_id = c.id AND m.role = 'system'
                    AND m.metadata->>'kind' = 'status' AND m.metadata->>'decision' = 'escalate'
                  ORDER BY m.seq DESC LIMIT 1) AS handed_over_at
         FROM conversations c WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .map(|state| state.unwrap_or(EmailReplyState { email_reply_to: None, handed_over_at: None }))
}

/// Store the user's choice: `Some(address)` to have operators' replies sent there too, `None`
/// to stop. A choice made again keeps its first time.
pub async fn choose(db: impl PgExecutor<'_>, id: ConversationId, address: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE conversations
            SET email_reply_since = CASE WHEN $2::text IS NULL THEN NULL
                                         ELSE coalesce(email_reply_since, now()) END,
                email_reply_to = $2
          WHERE id = $1",
    )
    .bind(id)
    .bind(address)
    .execute(db)
    .await?;
    Ok(())
}

/// Queue the email of operator reply `message_id` if the user of conversation `id` asked for
/// replies by email. Call in the transaction that stores the reply. Returns whether a job was
/// queued.
pub async fn queue_for_reply(conn: &mut PgConnection, id: ConversationId, message_id: MessageId) -> sqlx::Result<bool> {
    let asked: Option<String> = sqlx::query_scalar("SELECT email_reply_to FROM conversations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    if asked.is_none() {
        return Ok(false);
    }
    jobs::enqueue(conn, &SendReplyEmail { message_id }, JOB_RUNS).await
}

/// An operator's reply to send by email, with what the email says around it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplyToSend {
    pub conversation_id: ConversationId,
    pub content: String,
    /// The names of the files the reply carries, in the order they were uploaded.
    pub file_names: Vec<String>,
    /// The operator's first name, as the user sees it in the chat.
    pub operator_name: Option<String>,
    /// Where to send it; `None` once the user no longer wants replies by email.
    pub email_reply_to: Option<String>,
    /// The page the conversation was opened on: the way back to it.
    pub page_url: Option<String>,
    pub locale: String,
    /// Set once the email went out.
    pub emailed_at: Option<DateTime<Utc>>,
}

/// The operator reply `message_id`, if it exists and is an operator's.
pub async fn reply_to_send(db: impl PgExecutor<'_>, message_id: MessageId) -> sqlx::Result<Option<ReplyToSend>> {
    sqlx::query_as(
        "SELECT m.conversation_id, m.content, m.metadata->'operator'->>'name' AS operator_name, m.emailed_at,
                c.email_reply_to, c.page_url, c.locale,
                ARRAY(SELECT file_name FROM attachments WHERE message_id = m.id ORDER BY created_at, id) AS file_names
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $1 AND m.role = 'operator'",
    )
    .bind(message_id)
    .fetch_optional(db)
    .await
}

/// Record that reply `message_id` went out by email.
pub async fn mark_sent(db: impl PgExecutor<'_>, message_id: MessageId) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET emailed_at = now() WHERE id = $1 AND emailed_at IS NULL")
        .bind(message_id)
        .execute(db)
        .await?;
    Ok(())
}
