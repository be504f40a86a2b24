//! Knowledge drafts: documents made from a user's question and an operator's answer, reviewed
//! by an administrator, then published into the knowledge base.
//!
//! A draft moves `writing` → `ready` → `publishing` → `approved`, or from `ready` to
//! `discarded`. Each move that needs work (writing the text, writing the document) commits with
//! its job, keyed by the draft and the state, so a step is queued once. One draft per answer is
//! a unique constraint: asking again finds the first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::{
    ConversationId, KnowledgeDraftId, MessageId, OperatorChannel, ReindexRunId,
    jobs::{self, KnowledgeDraft},
};

/// A draft as the console shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = KnowledgeDraftOut)]
pub struct Draft {
    pub id: KnowledgeDraftId,
    pub conversation_id: ConversationId,
    /// The operator's message it was made from.
    pub answer_id: MessageId,
    /// The user's question and the operator's answer, as they were when the draft was asked for.
    pub question: String,
    pub answer: String,
    /// `writing`, `ready` (waiting for review), `publishing`, `approved` or `discarded`.
    pub status: String,
    /// The document's title and Markdown body; empty while it is being written.
    pub title: Option<String>,
    pub body: Option<String>,
    /// `model` or `template`.
    pub written_by: Option<String>,
    /// Why the template wrote it although a model is configured (`timeout`, `invalid_reply`…).
    pub model_fallback: Option<String>,
    /// The operator who asked for it, and where (`telegram`, `console`).
    pub requested_by: String,
    pub requested_via: String,
    /// The administrator who approved or discarded it (owner key), and when.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The approved document's path in the knowledge base, and whether it is a `file` of the
    /// knowledge directory or kept in the `database`.
    pub path: Option<String>,
    pub stored_in: Option<String>,
    /// The reindex that publishing queued.
    pub reindex_run_id: Option<ReindexRunId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, conversation_id, answer_id, question, answer, status, title, body, written_by,
    model_fallback, requested_by, requested_via, decided_by, decided_at, path, stored_in, reindex_run_id,
    created_at, updated_at";

/// What a draft is made from.
pub struct NewDraft<'a> {
    pub conversation_id: ConversationId,
    pub answer_id: MessageId,
    pub question: &'a str,
    pub answer: &'a str,
    pub requested_by: &'a str,
    pub requested_via: OperatorChannel,
}

/// Ask for a draft of an answer, with the job that writes it, in the caller's transaction.
/// Returns the draft and whether it is new (an answer has one draft; asking again finds it).
pub async fn request(conn: &mut PgConnection, new: NewDraft<'_>, max_attempts: u32) -> sqlx::Result<(Draft, bool)> {
    let id = KnowledgeDraftId::new();
    let created: Option<Draft> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO knowledge_drafts (id, conversation_id, answer_id, question, answer, requested_by, requested_via)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (answer_id) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(new.conversation_id)
    .bind(new.answer_id)
    .bind(new.question)
    .bind(new.answer)
    .bind(new.requested_by)
    .bind(new.requested_via)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(draft) = created {
        jobs::enqueue(conn, &KnowledgeDraft { draft_id: id, step: "writing".into() }, max_attempts).await?;
        return Ok((draft, true));
    }
    let existing: Draft =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM knowledge_drafts WHERE answer_id = $1")))
            .bind(new.answer_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok((existing, false))
}

pub async fn get(db: impl PgExecutor<'_>, id: KnowledgeDraftId) -> sqlx::Result<Option<Draft>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM knowledge_drafts WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The draft, locked for the caller's transaction.
pub async fn lock(conn: &mut PgConnection, id: KnowledgeDraftId) -> sqlx::Result<Option<Draft>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM knowledge_drafts WHERE id = $1 FOR UPDATE")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Drafts newest first, of one status or all, at most `limit`.
pub async fn list(db: impl PgExecutor<'_>, status: Option<&str>, limit: i64) -> sqlx::Result<Vec<Draft>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM knowledge_drafts WHERE $1::text IS NULL OR status = $1
         ORDER BY created_at DESC, id LIMIT $2"
    )))
    .bind(status)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Store the written text: the draft is ready for review. False when it was not being written
/// (an earlier run wrote it already).
pub async fn store_written(
    conn: &mut PgConnection,
    id: KnowledgeDraftId,
    title: &str,
    body: &str,
    written_by: &str,
    model_fallback: Option<&str>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE knowledge_drafts SET status = 'ready', title = $2, body = $3, written_by = $4, model_fallback = $5,
             updated_at = now()
         WHERE id = $1 AND status = 'writing'",
    )
    .bind(id)
    .bind(title)
    .bind(body)
    .bind(written_by)
    .bind(model_fallback)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// An administrator's edit of a draft under review.
pub async fn edit(
    conn: &mut PgConnection,
    id: KnowledgeDraftId,
    title: Option<&str>,
    body: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE knowledge_drafts SET title = COALESCE($2, title), body = COALESCE($3, body), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Approve: the draft is to be published, by the job queued with it.
pub async fn approve(
    conn: &mut PgConnection,
    id: KnowledgeDraftId,
    decided_by: &str,
    max_attempts: u32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE knowledge_drafts SET status = 'publishing', decided_by = $2, decided_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(decided_by)
    .execute(&mut *conn)
    .await?;
    jobs::enqueue(conn, &KnowledgeDraft { draft_id: id, step: "publishing".into() }, max_attempts).await?;
    Ok(())
}

pub async fn discard(conn: &mut PgConnection, id: KnowledgeDraftId, decided_by: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE knowledge_drafts SET status = 'discarded', decided_by = $2, decided_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(decided_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// The document is written: the draft is approved, at `path`, in a `file` or the `database`.
pub async fn published(conn: &mut PgConnection, id: KnowledgeDraftId, path: &str, stored_in: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE knowledge_drafts SET status = 'approved', path = $2, stored_in = $3, updated_at = now()
         WHERE id = $1 AND status = 'publishing'",
    )
    .bind(id)
    .bind(path)
    .bind(stored_in)
    .execute(conn)
    .await?;
    Ok(())
}

/// Remember the reindex that makes the published document searchable.
pub async fn set_reindex_run(db: impl PgExecutor<'_>, id: KnowledgeDraftId, run: ReindexRunId) -> sqlx::Result<()> {
    sqlx::query("UPDATE knowledge_drafts SET reindex_run_id = $2 WHERE id = $1").bind(id).bind(run).execute(db).await?;
    Ok(())
}

/// Whether a knowledge document is known at `path`: indexed, or kept in the database.
pub async fn path_taken(db: impl PgExecutor<'_>, path: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM knowledge_documents WHERE path = $1)
             OR EXISTS (SELECT 1 FROM knowledge_stored_documents WHERE path = $1)",
    )
    .bind(path)
    .fetch_one(db)
    .await
}

/// Keep a document in the database at `path`; false if one is there already.
pub async fn store_document(
    conn: &mut PgConnection,
    path: &str,
    source: &str,
    draft_id: KnowledgeDraftId,
    created_by: &str,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO knowledge_stored_documents (path, source, draft_id, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (path) DO NOTHING",
    )
    .bind(path)
    .bind(source)
    .bind(draft_id)
    .bind(created_by)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The path of the document already kept in the database for this draft, if an earlier run of
/// its publishing stored one.
pub async fn stored_path_of(db: impl PgExecutor<'_>, draft_id: KnowledgeDraftId) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT path FROM knowledge_stored_documents WHERE draft_id = $1")
        .bind(draft_id)
        .fetch_optional(db)
        .await
}

/// The user's question an operator's answer (at `answer_seq`) replied to: the user's messages
/// just before it, since anyone else last wrote (the last three), oldest first; else the user's
/// last message before the answer. Empty when the user wrote nothing before it.
pub async fn question_before(
    pool: &sqlx::PgPool,
    conversation_id: ConversationId,
    answer_seq: i64,
) -> sqlx::Result<String> {
    let mut recent: Vec<String> = sqlx::query_scalar(
        "SELECT content FROM messages
         WHERE conversation_id = $1 AND role = 'user' AND seq < $2
           AND seq > (SELECT COALESCE(max(seq), 0) FROM messages
                      WHERE conversation_id = $1 AND role <> 'user' AND seq < $2)
         ORDER BY seq DESC LIMIT 3",
    )
    .bind(conversation_id)
    .bind(answer_seq)
    .fetch_all(pool)
    .await?;
    if recent.is_empty() {
        recent = sqlx::query_scalar(
            "SELECT content FROM messages WHERE conversation_id = $1 AND role = 'user' AND seq < $2
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(conversation_id)
        .bind(answer_seq)
        .fetch_all(pool)
        .await?;
    }
    recent.reverse();
    Ok(recent.join("\n\n"))
}

/// The console reply a bot post in the conversation's topic mirrors (its outbox key is
/// `console:<message id>`), by the post's Telegram message id.
pub async fn console_reply_at(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    telegram_message_id: i64,
) -> sqlx::Result<Option<MessageId>> {
    let key: Option<String> = sqlx::query_scalar(
        "SELECT key FROM telegram_outbox
         WHERE conversation_id = $1 AND telegram_message_id = $2 AND key LIKE 'console:%'",
    )
    .bind(conversation_id)
    .bind(telegram_message_id)
    .fetch_optional(db)
    .await?;
    Ok(key.and_then(|key| {
        let id = key.strip_prefix("console:")?;
        id.split('#').next()?.parse().ok()
    }))
}

/// The inline keyboard under a mirrored answer: one button that asks for its draft
/// (`kb:<message id>`, 39 bytes of Telegram's 64).
pub fn draft_button(answer_id: MessageId, label: &str) -> serde_json::Value {
    serde_json::json!({ "inline_keyboard": [[{ "text": label, "callback_data": format!("kb:{answer_id}") }]] })
}
