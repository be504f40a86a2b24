//! Personal data: erasing one person, exporting what is held about them, deleting closed
//! conversations past the retention limit, revoked visitor tokens, and the audit of the
//! administrators' requests. What each table keeps or loses is listed in the migration
//! `20261203000021_privacy.sql`.
//!
//! Invariant: everything about a conversation goes in one transaction (the caller's), and
//! its Telegram topic is queued for deletion in the same transaction, so an erasure is never
//! half done and a topic is never forgotten. Its attachments' files are queued for deletion
//! the same way (`storage_deletions`, by a trigger on the rows) and deleted after the commit.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::{ConversationId, OwnerKey, TelegramChatId, TelegramThreadId};

/// Rows removed, per table, and topics queued for deletion in Telegram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Erased {
    pub conversations: i64,
    pub messages: i64,
    pub action_runs: i64,
    pub llm_calls: i64,
    pub operator_notes: i64,
    /// Files of messages (and uploads not sent yet), their stored files queued for deletion.
    pub attachments: i64,
    pub telegram_updates: i64,
    pub telegram_outbox: i64,
    pub telegram_messages: i64,
    pub telegram_topics: i64,
    /// Forum topics whose deletion was queued in the outbox (`deleteForumTopic`).
    pub topics_queued_for_deletion: i64,
}

impl Erased {
    fn add(&mut self, other: Erased) {
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.action_runs += other.action_runs;
        self.llm_calls += other.llm_calls;
        self.operator_notes += other.operator_notes;
        self.attachments += other.attachments;
        self.telegram_updates += other.telegram_updates;
        self.telegram_outbox += other.telegram_outbox;
        self.telegram_messages += other.telegram_messages;
        self.telegram_topics += other.telegram_topics;
        self.topics_queued_for_deletion += other.topics_queued_for_deletion;
    }
}

/// The conversations of `owner`, locked until the caller's transaction ends.
pub async fn owned_conversations(conn: &mut PgConnection, owner: &OwnerKey) -> sqlx::Result<Vec<ConversationId>> {
    sqlx::query_scalar("SELECT id FROM conversations WHERE owner = $1 ORDER BY created_at, id FOR UPDATE")
        .bind(owner)
        .fetch_all(conn)
        .await
}

/// Delete the conversations and everything about them, and queue the deletion of their
/// forum topics in Telegram. Call inside a transaction holding the conversations' row locks.
pub async fn delete_conversations(
    conn: &mut PgConnection,
    ids: &[ConversationId],
    max_attempts: u32,
) -> sqlx::Result<Erased> {
    if ids.is_empty() {
        return Ok(Erased::default());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let topics: Vec<(ConversationId, TelegramChatId, TelegramThreadId)> = sqlx::query_as(
        "SELECT conversation_id, chat_id, thread_id FROM telegram_topics
         WHERE conversation_id = ANY($1) AND thread_id IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let count = async |conn: &mut PgConnection, sql: &'static str| -> sqlx::Result<i64> {
        Ok(sqlx::query(sql).bind(&ids).execute(conn).await?.rows_affected() as i64)
    };
    let mut erased = Erased {
        // Updates from the topics: operators' replies, commands and button presses there.
        telegram_updates: count(
            &mut *conn,
            "DELETE FROM telegram_updates u USING telegram_topics t
             WHERE t.conversation_id = ANY($1) AND t.thread_id IS NOT NULL
               AND (coalesce(u.payload->'message', u.payload->'edited_message', u.payload->'callback_query'->'message')
                        ->'chat'->>'id') = t.chat_id::text
               AND (coalesce(u.payload->'message', u.payload->'edited_message', u.payload->'callback_query'->'message')
                        ->>'message_thread_id') = t.thread_id::text",
        )
        .await?,
        llm_calls: count(
            &mut *conn,
            "DELETE FROM llm_calls WHERE conversation_id = ANY($1)
                OR message_id IN (SELECT id FROM messages WHERE conversation_id = ANY($1))",
        )
        .await?,
        telegram_messages: count(
            &mut *conn,
            "DELETE FROM telegram_messages WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = ANY($1))",
        )
        .await?,
        telegram_outbox: count(&mut *conn, "DELETE FROM telegram_outbox WHERE conversation_id = ANY($1)").await?,
        operator_notes: count(&mut *conn, "DELETE FROM operator_notes WHERE conversation_id = ANY($1)").await?,
        // Before the messages they belong to; the trigger queues their files.
        attachments: count(&mut *conn, "DELETE FROM attachments WHERE conversation_id = ANY($1)").await?,
        action_runs: count(&mut *conn, "DELETE FROM action_runs WHERE conversation_id = ANY($1)").await?,
        messages: count(&mut *conn, "DELETE FROM messages WHERE conversation_id = ANY($1)").await?,
        telegram_topics: count(&mut *conn, "DELETE FROM telegram_topics WHERE conversation_id = ANY($1)").await?,
        conversations: count(&mut *conn, "DELETE FROM conversations WHERE id = ANY($1)").await?,
        topics_queued_for_deletion: 0,
    };
    for (conversation_id, chat_id, thread_id) in topics {
        if super::telegram::queue_topic_deletion(conn, conversation_id, chat_id, thread_id, max_attempts).await? {
            erased.topics_queued_for_deletion += 1;
        }
    }
    Ok(erased)
}

/// Everything held about one conversation, as one JSON document: the conversation, its
/// messages (each with its `attachments`: name, kind, type, size, SHA-256 and storage key),
/// the uploads not sent yet (`unsent_attachments`), action runs, model calls, internal notes
/// and Telegram topic.
pub async fn export_conversation(
    db: impl PgExecutor<'_>,
    id: ConversationId,
) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
             'conversation', to_jsonb(c),
             'messages', (SELECT coalesce(jsonb_agg(to_jsonb(m) || jsonb_build_object('attachments',
                                 (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.created_at, a.id), '[]')
                                  FROM attachments a WHERE a.message_id = m.id)) ORDER BY m.seq), '[]')
                          FROM messages m WHERE m.conversation_id = c.id),
             'unsent_attachments', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.created_at, a.id), '[]')
                                    FROM attachments a WHERE a.conversation_id = c.id AND a.message_id IS NULL),
             'action_runs', (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.created_at, r.id), '[]')
                             FROM action_runs r WHERE r.conversation_id = c.id),
             'llm_calls', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.created_at, l.id), '[]')
                           FROM llm_calls l WHERE l.conversation_id = c.id
                              OR l.message_id IN (SELECT id FROM messages WHERE conversation_id = c.id)),
             'operator_notes', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.created_at, n.id), '[]')
                                FROM operator_notes n WHERE n.conversation_id = c.id),
             'telegram_topic', (SELECT to_jsonb(t) - 'sender' - 'sending_until' - 'claimed_until'
                                FROM telegram_topics t WHERE t.conversation_id = c.id))
         FROM conversations c WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// How much an export of `owner` holds, for the audit.
#[derive(Debug, Clone, Copy, Default, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Held {
    pub conversations: i64,
    pub messages: i64,
    pub action_runs: i64,
    pub llm_calls: i64,
    pub operator_notes: i64,
    pub attachments: i64,
    pub telegram_topics: i64,
}

pub async fn held(db: impl PgExecutor<'_>, owner: &OwnerKey) -> sqlx::Result<Held> {
    sqlx::query_as(
        "WITH c AS (SELECT id FROM conversations WHERE owner = $1)
         SELECT (SELECT count(*) FROM c) AS conversations,
                (SELECT count(*) FROM messages WHERE conversation_id IN (SELECT id FROM c)) AS messages,
                (SELECT count(*) FROM action_runs WHERE conversation_id IN (SELECT id FROM c)) AS action_runs,
                (SELECT count(*) FROM llm_calls WHERE conversation_id IN (SELECT id FROM c)
                    OR message_id IN (SELECT id FROM messages WHERE conversation_id IN (SELECT id FROM c)))
                    AS llm_calls,
                (SELECT count(*) FROM operator_notes WHERE conversation_id IN (SELECT id FROM c)) AS operator_notes,
                (SELECT count(*) FROM attachments WHERE conversation_id IN (SELECT id FROM c)) AS attachments,
                (SELECT count(*) FROM telegram_topics WHERE conversation_id IN (SELECT id FROM c)) AS telegram_topics",
    )
    .bind(owner)
    .fetch_one(db)
    .await
}

/// The ids of `owner`'s conversations, oldest first (an export reads them one at a time).
pub async fn conversation_ids(db: impl PgExecutor<'_>, owner: &OwnerKey) -> sqlx::Result<Vec<ConversationId>> {
    sqlx::query_scalar("SELECT id FROM conversations WHERE owner = $1 ORDER BY created_at, id")
        .bind(owner)
        .fetch_all(db)
        .await
}

/// Refuse the visitor's tokens from now until `expires_at` (when the last one expires anyway).
pub async fn revoke_visitor(
    db: impl PgExecutor<'_>,
    visitor_id: uuid::Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO revoked_visitors (visitor_id, expires_at) VALUES ($1, $2)
         ON CONFLICT (visitor_id) DO UPDATE SET revoked_at = now(),
             expires_at = GREATEST(revoked_visitors.expires_at, EXCLUDED.expires_at)",
    )
    .bind(visitor_id)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the visitor's tokens were revoked: one primary-key lookup.
pub async fn visitor_revoked(db: impl PgExecutor<'_>, visitor_id: uuid::Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_visitors WHERE visitor_id = $1 AND expires_at > now())")
        .bind(visitor_id)
        .fetch_one(db)
        .await
}

/// What an administrator asked for, for `admin_audit`.
pub struct AuditEntry<'a> {
    pub admin_owner: &'a OwnerKey,
    pub admin_name: Option<&'a str>,
    /// `erase` or `export`.
    pub action: &'a str,
    pub subject_hash: &'a str,
    pub counts: serde_json::Value,
}

pub async fn record_audit(db: impl PgExecutor<'_>, entry: AuditEntry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin_audit (admin_owner, admin_name, action, subject_hash, counts) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(entry.admin_owner)
    .bind(entry.admin_name)
    .bind(entry.action)
    .bind(entry.subject_hash)
    .bind(entry.counts)
    .execute(db)
    .await?;
    Ok(())
}

/// What one retention run removed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RetentionReport {
    pub erased: Erased,
    /// Metrics days computed and frozen before their rows went.
    pub days_frozen: i64,
    /// Handled Telegram updates older than the limit that belonged to no topic still held.
    pub stale_updates: i64,
    /// Handled topic deletions older than the limit.
    pub stale_deletions: i64,
    /// Revocations whose tokens have all expired.
    pub expired_revocations: i64,
}

/// An advisory lock key: one retention run at a time across every worker process.
const RETENTION_LOCK: i64 = 0x636f_6e63_7265_7400;

/// Delete one batch of closed conversations whose last activity is older than `keep`. Every
/// metrics day their rows touch is computed first, with them, and frozen, so the stored
/// figures stay what they were. Returns `None` when another process is running retention;
/// otherwise what went (no conversations: nothing is left to do).
pub async fn retention_batch(
    pool: &sqlx::PgPool,
    keep: Duration,
    batch: i64,
    max_attempts: u32,
) -> sqlx::Result<Option<RetentionReport>> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(RETENTION_LOCK).fetch_one(&mut *tx).await?;
    if !locked {
        return Ok(None);
    }
    let keep_ms = keep.as_millis() as i64;
    let ids: Vec<ConversationId> = sqlx::query_scalar(
        "SELECT id FROM conversations
         WHERE status = 'closed' AND updated_at < now() - $1 * interval '1 millisecond'
         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(keep_ms)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let mut report = RetentionReport::default();
    if !ids.is_empty() {
        let raw: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let days: Vec<NaiveDate> = sqlx::query_scalar(
            "SELECT DISTINCT day FROM (
                 SELECT (created_at AT TIME ZONE 'UTC')::date AS day FROM conversations WHERE id = ANY($1)
                 UNION SELECT (created_at AT TIME ZONE 'UTC')::date FROM messages WHERE conversation_id = ANY($1)
                 UNION SELECT (created_at AT TIME ZONE 'UTC')::date FROM action_runs WHERE conversation_id = ANY($1)
                 UNION SELECT (created_at AT TIME ZONE 'UTC')::date FROM llm_calls WHERE conversation_id = ANY($1)
             ) touched
             WHERE day NOT IN (SELECT day FROM conversation_metrics WHERE frozen_at IS NOT NULL)
             ORDER BY day",
        )
        .bind(&raw)
        .fetch_all(&mut *tx)
        .await?;
        for day in days {
            crate::metrics::freeze_day(&mut tx, day).await?;
            report.days_frozen += 1;
        }
        report.erased.add(delete_conversations(&mut tx, &ids, max_attempts).await?);
    }
    report.stale_updates = sqlx::query(
        "DELETE FROM telegram_updates
         WHERE processed_at IS NOT NULL AND received_at < now() - $1 * interval '1 millisecond'",
    )
    .bind(keep_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    report.stale_deletions = sqlx::query(
        "DELETE FROM telegram_outbox WHERE kind = 'delete_topic' AND state <> 'pending'
           AND created_at < now() - $1 * interval '1 millisecond'",
    )
    .bind(keep_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    report.expired_revocations =
        sqlx::query("DELETE FROM revoked_visitors WHERE expires_at < now()").execute(&mut *tx).await?.rows_affected()
            as i64;
    tx.commit().await?;
    Ok(Some(report))
}
