//! Messages. Appending one takes the next sequence number of its conversation under the
//! conversation's row lock, so within a conversation sequence order is commit order.
//! The `messages` trigger announces every insert on the `concierge_events` channel when its
//! transaction commits, with the message as committed when it fits the notification.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    ConversationId, ConversationMode, MessageId, MessageRole, OwnerKey,
    jobs::{self, ProcessMessage},
    message_meta::{self, MessageMeta},
};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    #[sqlx(json)]
    pub metadata: MessageMeta,
    pub client_message_id: Option<String>,
    pub reply_to: Option<MessageId>,
    /// The action run this message reports, if any.
    pub action_run_id: Option<crate::ActionRunId>,
    pub created_at: DateTime<Utc>,
    /// How many files the message carries (kept by the database; read them with
    /// `transcripts::of_messages` only when there are some).
    #[serde(default)]
    pub files: i16,
}

impl Message {
    pub fn has_files(&self) -> bool {
        self.files > 0
    }
}

macro_rules! columns {
    () => {
        "id, conversation_id, seq, role, content, metadata, client_message_id, reply_to, action_run_id, created_at, files"
    };
}

/// A message to append on behalf of the system, the assistant or an operator.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    pub metadata: MessageMeta,
    /// The user message this answers; at most one message may answer each.
    pub reply_to: Option<MessageId>,
    /// The action run this reports; at most one message may report each.
    pub action_run_id: Option<crate::ActionRunId>,
}

impl NewMessage {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), metadata: MessageMeta::Empty, reply_to: None, action_run_id: None }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(MessageRole::System, content)
    }

    pub fn with_metadata(mut self, metadata: MessageMeta) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn replying_to(mut self, message: MessageId) -> Self {
        self.reply_to = Some(message);
        self
    }

    pub fn reporting(mut self, run: crate::ActionRunId) -> Self {
        self.action_run_id = Some(run);
        self
    }
}

/// The append statement, with a condition on the conversation's row.
macro_rules! append_statement {
    ($condition:literal) => {
        concat!(
            "WITH conv AS (
                 UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
                 WHERE id = $1",
            $condition,
            " RETURNING last_seq
             )
             INSERT INTO messages (id, conversation_id, seq, role, content, metadata, reply_to, action_run_id)
             SELECT $2, $1, conv.last_seq, $3, $4, $5, $6, $7 FROM conv
             ON CONFLICT DO NOTHING
             RETURNING ",
            columns!()
        )
    };
}

/// Append a message in the caller's transaction. `None` when `reply_to` already has its reply
/// (or `action_run_id` its report):
/// the caller's transaction should then roll back, since the sequence number was spent.
pub async fn append(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    new: NewMessage,
) -> sqlx::Result<Option<Message>> {
    append_where(conn, append_statement!(""), conversation_id, new).await
}

/// [`append`], only while the conversation is open and with the AI: the assistant's reply
/// without reading the conversation first. `None` also when it is closed or with a person.
pub async fn append_while_ai(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    new: NewMessage,
) -> sqlx::Result<Option<Message>> {
    append_where(conn, append_statement!(" AND status = 'open' AND mode = 'ai'"), conversation_id, new).await
}

async fn append_where(
    conn: &mut PgConnection,
    statement: &'static str,
    conversation_id: ConversationId,
    new: NewMessage,
) -> sqlx::Result<Option<Message>> {
    sqlx::query_as(statement)
        .bind(conversation_id)
        .bind(MessageId::new())
        .bind(new.role)
        .bind(&new.content)
        .bind(sqlx::types::Json(&new.metadata))
        .bind(new.reply_to)
        .bind(new.action_run_id)
        .fetch_optional(conn)
        .await
}

/// What posting a user message did.
#[derive(Debug)]
pub enum PostOutcome {
    /// Stored, with its process-message job.
    Created(Message),
    /// The same `client_message_id` was posted before: this is the first message.
    Duplicate(Message),
    /// No such conversation for this owner.
    NotFound,
    /// The conversation is closed.
    Closed,
}

/// Store a user message and its process-message job in one statement, hence one transaction
/// and one round trip: bump the conversation's sequence (only if the owner matches and it is
/// open), insert the message, insert the job row. When nothing was inserted, a second query
/// tells the caller why.
pub async fn post_user_message(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    owner: &OwnerKey,
    content: &str,
    client_message_id: Option<&str>,
    max_attempts: u32,
) -> sqlx::Result<PostOutcome> {
    let message_id = MessageId::new();
    let job = jobs::encode(&ProcessMessage { message_id });
    let inserted: Option<Message> = sqlx::query_as(concat!(
        "WITH conv AS (
             UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
             WHERE id = $1 AND owner = $2 AND status = 'open'
               AND ($5::text IS NULL OR NOT EXISTS (
                   SELECT 1 FROM messages WHERE conversation_id = $1 AND client_message_id = $5))
             RETURNING last_seq
         ), msg AS (
             INSERT INTO messages (id, conversation_id, seq, role, content, client_message_id)
             SELECT $3, $1, conv.last_seq, 'user', $4, $5 FROM conv
             ON CONFLICT (conversation_id, client_message_id) DO NOTHING
             RETURNING ",
        columns!(),
        "
         ), job AS (
             ",
        crate::insert_apalis_job!("$6", "$7", "$8", "$9", "$10"),
        " FROM msg
         )
         SELECT ",
        columns!(),
        " FROM msg"
    ))
    .bind(conversation_id)
    .bind(owner.as_str())
    .bind(message_id)
    .bind(content)
    .bind(client_message_id)
    .bind(&job.id)
    .bind(job.queue)
    .bind(&job.payload)
    .bind(max_attempts as i32)
    .bind(&job.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(message) = inserted {
        return Ok(PostOutcome::Created(message));
    }

    // Nothing stored: find out why.
    let state: Option<(String, Option<Message>)> = sqlx::query_as::<_, (String, Option<sqlx::types::Json<Message>>)>(
        "SELECT c.status,
                (SELECT to_jsonb(m) FROM messages m
                 WHERE m.conversation_id = c.id AND $3::text IS NOT NULL AND m.client_message_id = $3)
         FROM conversations c WHERE c.id = $1 AND c.owner = $2",
    )
    .bind(conversation_id)
    .bind(owner.as_str())
    .bind(client_message_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|(status, message)| (status, message.map(|m| m.0)));
    Ok(match state {
        None => PostOutcome::NotFound,
        Some((_, Some(first))) => PostOutcome::Duplicate(first),
        Some(_) => PostOutcome::Closed,
    })
}

pub async fn get(db: impl PgExecutor<'_>, id: MessageId) -> sqlx::Result<Option<Message>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM messages WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// The columns of a message, for queries written elsewhere.
pub(crate) const COLUMNS: &str = columns!();

/// Whether the user message `target` (a relation in scope with its `id`) has been dealt with:
/// it has its reply, or an action run answering it.
pub(crate) const HANDLED: &str = "(EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = target.id)
     OR EXISTS (SELECT 1 FROM action_runs a WHERE a.message_id = target.id))";

/// The user messages before `target` (a relation in scope with its `conversation_id` and
/// `seq`) that wait for a reply: sent since the conversation's last message of any other role,
/// and neither answered nor running an action.
pub(crate) const UNHANDLED_BEFORE: &str = "SELECT m.id FROM target, messages m
     WHERE m.conversation_id = target.conversation_id AND m.role = 'user' AND m.seq < target.seq
       AND m.seq > COALESCE((SELECT max(o.seq) FROM messages o
                             WHERE o.conversation_id = target.conversation_id AND o.role <> 'user'
                               AND o.seq < target.seq), 0)
       AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = m.id)
       AND NOT EXISTS (SELECT 1 FROM action_runs a WHERE a.message_id = m.id)";

/// The user messages before `message` that wait for a reply (see [`UNHANDLED_BEFORE`]), in
/// order. Those whose jobs have not run yet are decided first, so that replies follow the
/// messages' order.
pub async fn unhandled_before(db: impl PgExecutor<'_>, message: &Message) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH target AS (SELECT $1::uuid AS conversation_id, $2::bigint AS seq)
         SELECT {} FROM messages WHERE id IN ({UNHANDLED_BEFORE}) ORDER BY seq",
        columns!()
    )))
    .bind(message.conversation_id)
    .bind(message.seq)
    .fetch_all(db)
    .await
}

/// The conversation's first user message, if any.
pub async fn first_user_message(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
) -> sqlx::Result<Option<Message>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE conversation_id = $1 AND role = 'user' ORDER BY seq LIMIT 1"
    ))
    .bind(conversation_id)
    .fetch_optional(db)
    .await
}

/// Messages with `seq > after`, oldest first.
pub async fn list_after(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(conversation_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The last `limit` messages, oldest first.
pub async fn latest(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    limit: i64,
) -> sqlx::Result<Vec<Message>> {
    let mut messages: Vec<Message> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
    ))
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    messages.reverse();
    Ok(messages)
}

/// The latest hand-over to a person (a status message switching to human mode), if any.
pub async fn latest_handover(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
) -> sqlx::Result<Option<MessageId>> {
    sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND role = 'system' AND metadata->>$2 = $3
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(conversation_id)
    .bind(message_meta::MODE)
    .bind(ConversationMode::Human)
    .fetch_optional(db)
    .await
}

/// Replace a message's text (an operator edited their reply); the metadata's
/// [`message_meta::EDITED_AT`] says when.
pub async fn edit(conn: &mut PgConnection, id: MessageId, content: &str) -> sqlx::Result<Option<Message>> {
    sqlx::query_as(concat!(
        "UPDATE messages SET content = $2,
             metadata = metadata || jsonb_build_object($3::text, now())
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(content)
    .bind(message_meta::EDITED_AT)
    .fetch_optional(conn)
    .await
}

/// Whether the conversation has any answer (assistant or operator) yet; rating needs one.
pub async fn has_answer(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND role IN ('assistant', 'operator'))",
    )
    .bind(conversation_id)
    .fetch_one(db)
    .await
}
