//! Conversations: creation, the owner-scoped reads every API route goes through, and the
//! state changes (close, rate, escalate, clarify count).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection, PgExecutor, PgPool, Postgres, Transaction, pool::PoolConnection};

use crate::{
    ConversationId, ConversationMode, ConversationStatus, MessageId, OwnerKey, OwnerKind, Role,
    db::messages::{self, Message, NewMessage},
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Conversation {
    pub id: ConversationId,
    #[serde(skip)]
    pub owner: String,
    pub owner_kind: OwnerKind,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub owner_role: Role,
    pub status: ConversationStatus,
    pub mode: ConversationMode,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub locale: String,
    pub clarify_count: i32,
    pub rating: Option<i16>,
    pub rating_comment: Option<String>,
    pub rated_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub escalation_reason: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, owner, owner_kind, owner_name, owner_email, owner_role, status, mode, page_url, \
     page_title, locale, clarify_count, rating, rating_comment, rated_at, escalated_at, escalation_reason, \
     closed_at, last_seq, created_at, updated_at"
    };
}

pub struct NewConversation<'a> {
    pub owner: &'a OwnerKey,
    pub owner_name: Option<&'a str>,
    pub owner_email: Option<&'a str>,
    pub owner_role: Role,
    pub page_url: Option<&'a str>,
    pub page_title: Option<&'a str>,
}

pub async fn create(db: impl PgExecutor<'_>, new: NewConversation<'_>) -> sqlx::Result<Conversation> {
    sqlx::query_as(concat!(
        "INSERT INTO conversations (id, owner, owner_kind, owner_name, owner_email, owner_role, page_url, page_title)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        columns!(),
        ""
    ))
    .bind(ConversationId::new())
    .bind(new.owner.as_str())
    .bind(new.owner.kind())
    .bind(new.owner_name)
    .bind(new.owner_email)
    .bind(new.owner_role)
    .bind(new.page_url)
    .bind(new.page_title)
    .fetch_one(db)
    .await
}

/// The conversation if `owner` owns it. Callers answer 404 on `None`, whether the id does not
/// exist or belongs to someone else, so ids cannot be probed.
pub async fn find_owned(
    db: impl PgExecutor<'_>,
    id: ConversationId,
    owner: &OwnerKey,
) -> sqlx::Result<Option<Conversation>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM conversations WHERE id = $1 AND owner = $2"))
        .bind(id)
        .bind(owner.as_str())
        .fetch_optional(db)
        .await
}

/// For jobs, which act on behalf of the owner recorded in the row.
pub async fn get(db: impl PgExecutor<'_>, id: ConversationId) -> sqlx::Result<Option<Conversation>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM conversations WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Locks the row for the rest of the transaction, serialising state changes of one
/// conversation (the same lock that orders its messages).
pub async fn lock(conn: &mut PgConnection, id: ConversationId) -> sqlx::Result<Option<Conversation>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM conversations WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The advisory-lock class of a conversation's decisions (two-key advisory locks never meet the
/// one-key locks the job queue takes).
pub const DECISION_LOCK: i32 = 0x636f_6e63;

/// A pooled connection for the transactions that hold a conversation's decision lock
/// ([`DecisionConnection::begin`]).
///
/// `BEGIN` and the lock go in one round trip, as one simple query. sqlx counts a transaction only
/// once that query has completed, and rolls back only what it counts: if the lock's statement
/// fails (cancelled, timed out), or the future is dropped while it waits, the connection would go
/// back to the pool inside a transaction, aborted or holding the lock, that sqlx does not know
/// of, and every later borrower's statements would run in it. So such a connection is closed
/// instead, and the pool opens a fresh one.
pub struct DecisionConnection {
    conn: PoolConnection<Postgres>,
    /// False from the moment a `BEGIN` is sent until sqlx has counted its transaction.
    known_state: bool,
}

impl DecisionConnection {
    pub async fn acquire(pool: &PgPool) -> sqlx::Result<Self> {
        Ok(Self { conn: pool.acquire().await?, known_state: true })
    }

    /// Begins a transaction holding the decision lock of the conversation of message `id` until
    /// it ends: one decision at a time per conversation, in every worker process, however long
    /// the model takes. Unlike [`lock`] it leaves the row free for the API meanwhile. No lock is
    /// taken when the message does not exist. Read what the decision depends on after this
    /// returns ([`decision_state`]): a statement sees what was committed before it began.
    pub async fn begin(&mut self, id: MessageId) -> sqlx::Result<Transaction<'_, Postgres>> {
        self.known_state = false;
        // A UUID's text is hex digits and dashes: nothing in it can leave the quotes.
        let transaction = self
            .conn
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN; SELECT pg_advisory_xact_lock({DECISION_LOCK}, hashtext(conversation_id::text)) \
                 FROM messages WHERE id = '{id}'"
            )))
            .await?;
        self.known_state = true;
        Ok(transaction)
    }
}

impl Drop for DecisionConnection {
    fn drop(&mut self) {
        if !self.known_state {
            self.conn.close_on_drop();
        }
    }
}

/// What a decision about one user message starts from, read under the decision lock.
#[derive(Debug, sqlx::FromRow)]
pub struct DecisionState {
    #[sqlx(flatten)]
    pub conversation: Conversation,
    /// The message decided about.
    pub message: sqlx::types::Json<Message>,
    /// The message has its reply, or an action run answering it.
    pub handled: bool,
    /// Earlier user messages of the conversation wait for theirs (see
    /// [`messages::unhandled_before`]).
    pub earlier_waiting: bool,
    /// The conversation's latest messages, oldest first.
    pub latest: sqlx::types::Json<Vec<Message>>,
}

/// The user message `id` and its conversation, whether it, or messages before it, are
/// answered, and the conversation's last `history` messages: one round trip. `None` when the
/// message is gone.
pub async fn decision_state(
    db: impl PgExecutor<'_>,
    id: MessageId,
    history: i64,
) -> sqlx::Result<Option<DecisionState>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH target AS (SELECT {} FROM messages WHERE id = $1)
         SELECT {}, (SELECT to_jsonb(target) FROM target) AS message,
                (SELECT {} FROM target) AS handled,
                EXISTS ({}) AS earlier_waiting,
                (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.seq), '[]')
                 FROM (SELECT {} FROM messages WHERE conversation_id = (SELECT conversation_id FROM target)
                       ORDER BY seq DESC LIMIT $2) AS m) AS latest
         FROM conversations WHERE id = (SELECT conversation_id FROM target)",
        messages::COLUMNS,
        columns!(),
        messages::HANDLED,
        messages::UNHANDLED_BEFORE,
        messages::COLUMNS,
    )))
    .bind(id)
    .bind(history)
    .fetch_optional(db)
    .await
}

/// A page of the owner's conversations, newest first, after the `(created_at, id)` cursor.
pub async fn list_owned(
    db: impl PgExecutor<'_>,
    owner: &OwnerKey,
    before: Option<(DateTime<Utc>, ConversationId)>,
    limit: i64,
) -> sqlx::Result<Vec<Conversation>> {
    let (before_at, before_id) = before.unzip();
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM conversations
         WHERE owner = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(owner.as_str())
    .bind(before_at)
    .bind(before_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What closing a conversation did.
pub enum CloseOutcome {
    Closed(Box<Message>),
    AlreadyClosed,
}

/// Close an open conversation and post the closing notice, in the caller's transaction.
pub async fn close(conn: &mut PgConnection, conversation: &Conversation, text: &str) -> sqlx::Result<CloseOutcome> {
    let closed = sqlx::query(
        "UPDATE conversations SET status = 'closed', closed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'open'",
    )
    .bind(conversation.id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if closed == 0 {
        return Ok(CloseOutcome::AlreadyClosed);
    }
    crate::db::waits::end(&mut *conn, conversation.id).await?;
    let notice = NewMessage::system(text)
        .with_metadata(crate::message_meta::MessageMeta::status(ConversationStatus::Closed, conversation.mode));
    let message = messages::append(conn, conversation.id, notice)
        .await?
        .expect("a status notice has no reply_to, so it cannot conflict");
    Ok(CloseOutcome::Closed(Box::new(message)))
}

/// Store a rating unless one is there already; returns whether it was stored.
pub async fn rate(
    db: impl PgExecutor<'_>,
    id: ConversationId,
    rating: i16,
    comment: Option<&str>,
) -> sqlx::Result<bool> {
    let rated = sqlx::query(
        "UPDATE conversations SET rating = $2, rating_comment = $3, rated_at = now(), updated_at = now()
         WHERE id = $1 AND rating IS NULL",
    )
    .bind(id)
    .bind(rating)
    .bind(comment)
    .execute(db)
    .await?
    .rows_affected();
    Ok(rated == 1)
}

/// Switch to human mode (kept if already there) and record why.
pub async fn set_human_mode(conn: &mut PgConnection, id: ConversationId, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE conversations SET mode = 'human', escalated_at = COALESCE(escalated_at, now()),
         escalation_reason = COALESCE(escalation_reason, $2), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// What operators filter conversations by.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub mode: Option<ConversationMode>,
    pub status: Option<ConversationStatus>,
    pub rating: Option<i16>,
    /// Created on or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Created before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// A page of all conversations for operators, newest activity first, filtered.
pub async fn list_all(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    before: Option<(DateTime<Utc>, ConversationId)>,
    limit: i64,
) -> sqlx::Result<Vec<Conversation>> {
    let (before_at, before_id) = before.unzip();
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM conversations
         WHERE ($1::text IS NULL OR mode = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::smallint IS NULL OR rating = $3)
           AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::timestamptz IS NULL OR created_at < $5)
           AND ($6::timestamptz IS NULL OR (updated_at, id) < ($6, $7))
         ORDER BY updated_at DESC, id DESC LIMIT $8"
    ))
    .bind(filter.mode)
    .bind(filter.status)
    .bind(filter.rating)
    .bind(filter.from)
    .bind(filter.to)
    .bind(before_at)
    .bind(before_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Hand a conversation back to the AI; a user still waiting for a person waits no more.
pub async fn set_ai_mode(conn: &mut PgConnection, id: ConversationId) -> sqlx::Result<()> {
    sqlx::query("UPDATE conversations SET mode = 'ai', clarify_count = 0, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    crate::db::waits::end(conn, id).await?;
    Ok(())
}

pub async fn increment_clarify(conn: &mut PgConnection, id: ConversationId) -> sqlx::Result<()> {
    sqlx::query("UPDATE conversations SET clarify_count = clarify_count + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
