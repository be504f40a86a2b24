//! A conversation's forum topic in the support group, and the claim that makes one job create it.
//!
//! Invariant: a conversation has at most one topic row (the primary key); only the job holding
//! an unexpired claim asks Telegram to create a topic, and the thread id recorded is the first
//! one that arrived for the row's current chat.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::{ConversationId, TelegramChatId, TelegramThreadId};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Topic {
    pub conversation_id: ConversationId,
    pub chat_id: TelegramChatId,
    pub thread_id: Option<TelegramThreadId>,
    pub name: String,
    pub card_queued_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The topic's name as Telegram shows it: a status prefix (see [`TopicStatus`]) and `name`.
    pub shown_name: Option<String>,
    /// The operator who took the conversation (`/take`), as the topic names them.
    pub assignee_name: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
}

macro_rules! topic_columns {
    () => {
        "conversation_id, chat_id, thread_id, name, card_queued_at, created_at, shown_name, assignee_name, assigned_at"
    };
}

/// Where a conversation stands, as its topic's name shows it in the group's topic list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// With a person, and the user's message is the latest: an operator should answer.
    Waiting,
    /// With a person, and an operator answered last: the user has the word.
    Answered,
    /// Handed back to the bot.
    WithBot,
    /// Closed; the topic is closed in Telegram too.
    Closed,
}

/// Telegram's limit for a topic name, in characters.
pub const TOPIC_NAME_CHARS: usize = 128;

impl TopicStatus {
    pub fn prefix(self) -> &'static str {
        match self {
            TopicStatus::Waiting => "🔴",
            TopicStatus::Answered => "💬",
            TopicStatus::WithBot => "🤖",
            TopicStatus::Closed => "✅",
        }
    }

    /// The topic's full name: the prefix, then `name`, cut to Telegram's limit.
    pub fn topic_name(self, name: &str) -> String {
        let prefix = self.prefix();
        let room = TOPIC_NAME_CHARS - prefix.chars().count() - 1;
        let name = if name.chars().count() > room {
            let mut cut: String = name.chars().take(room - 1).collect();
            cut.push('…');
            cut
        } else {
            name.to_owned()
        };
        format!("{prefix} {name}")
    }
}

/// What the topic should show and what Telegram shows now.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub name: String,
    pub shown_name: Option<String>,
    pub shown_closed: bool,
    pub status: TopicStatus,
}

/// A topic with what decides its status, as [`topic_view`] reads it.
#[derive(sqlx::FromRow)]
struct TopicViewRow {
    name: String,
    shown_name: Option<String>,
    shown_closed: bool,
    status: String,
    mode: String,
    /// Who wrote last of the user and the operators.
    last_role: Option<String>,
}

/// The conversation's topic status as the conversation is now, and what its topic shows.
pub async fn topic_view(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<TopicView>> {
    let row: Option<TopicViewRow> = sqlx::query_as(
        "SELECT t.name, t.shown_name, t.shown_closed, c.status, c.mode,
                (SELECT m.role FROM messages m WHERE m.conversation_id = c.id AND m.role IN ('user', 'operator')
                 ORDER BY m.seq DESC LIMIT 1) AS last_role
         FROM telegram_topics t JOIN conversations c ON c.id = t.conversation_id
         WHERE t.conversation_id = $1",
    )
    .bind(conversation_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| {
        let status = match (row.status.as_str(), row.mode.as_str(), row.last_role.as_deref()) {
            ("closed", _, _) => TopicStatus::Closed,
            (_, "ai", _) => TopicStatus::WithBot,
            (_, _, Some("operator")) => TopicStatus::Answered,
            _ => TopicStatus::Waiting,
        };
        TopicView { name: row.name, shown_name: row.shown_name, shown_closed: row.shown_closed, status }
    }))
}

/// Record what Telegram shows of the topic now: its full name, whether it is closed.
pub async fn set_shown(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    thread_id: TelegramThreadId,
    shown_name: Option<&str>,
    shown_closed: Option<bool>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET shown_name = COALESCE($3, shown_name), shown_closed = COALESCE($4, shown_closed)
         WHERE conversation_id = $1 AND thread_id = $2",
    )
    .bind(conversation_id)
    .bind(thread_id)
    .bind(shown_name)
    .bind(shown_closed)
    .execute(db)
    .await?;
    Ok(())
}

/// The operator who has the conversation: their Telegram id and name. The row stays locked
/// until `conn`'s transaction ends, so a take and a release of one conversation are ordered.
pub async fn lock_assignee(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
) -> sqlx::Result<Option<(i64, String)>> {
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT assignee_id, assignee_name FROM telegram_topics WHERE conversation_id = $1 FOR UPDATE")
            .bind(conversation_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(id, name)| Some((id?, name.unwrap_or_default()))))
}

/// Give the conversation to an operator (their Telegram id and name), or to nobody.
pub async fn set_assignee(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    assignee: Option<(i64, &str)>,
) -> sqlx::Result<()> {
    let (id, name) = assignee.unzip();
    sqlx::query(
        "UPDATE telegram_topics SET assignee_id = $2, assignee_name = $3,
         assigned_at = CASE WHEN $2::bigint IS NULL THEN NULL ELSE now() END
         WHERE conversation_id = $1",
    )
    .bind(conversation_id)
    .bind(id)
    .bind(name)
    .execute(db)
    .await?;
    Ok(())
}

/// Who has each of these conversations, for those someone has.
pub async fn assignees(
    db: impl PgExecutor<'_>,
    conversation_ids: &[ConversationId],
) -> sqlx::Result<Vec<(ConversationId, String)>> {
    sqlx::query_as(
        "SELECT conversation_id, assignee_name FROM telegram_topics
         WHERE conversation_id = ANY($1) AND assignee_id IS NOT NULL AND assignee_name IS NOT NULL",
    )
    .bind(conversation_ids.iter().map(|id| id.0).collect::<Vec<uuid::Uuid>>())
    .fetch_all(db)
    .await
}

pub async fn topic(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<Topic>> {
    sqlx::query_as(concat!("SELECT ", topic_columns!(), " FROM telegram_topics WHERE conversation_id = $1"))
        .bind(conversation_id)
        .fetch_optional(db)
        .await
}

pub async fn topic_by_thread(
    db: impl PgExecutor<'_>,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<Option<Topic>> {
    sqlx::query_as(concat!("SELECT ", topic_columns!(), " FROM telegram_topics WHERE chat_id = $1 AND thread_id = $2"))
        .bind(chat_id)
        .bind(thread_id)
        .fetch_optional(db)
        .await
}

/// Where the creation of a conversation's topic stands, for the job that wants it.
#[derive(Debug, PartialEq, Eq)]
pub enum TopicClaim {
    /// The topic exists.
    Ready(TelegramThreadId),
    /// This job holds the claim and must create the topic.
    Claimed,
    /// Another job is creating it.
    Busy,
}

/// Claim the creation of the conversation's topic, unless it exists or another job holds an
/// unexpired claim. Claims expire after `lease`, so a job that died mid-way does not block
/// the next one for ever.
pub async fn claim_topic(
    db: &sqlx::PgPool,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    name: &str,
    lease: Duration,
) -> sqlx::Result<TopicClaim> {
    let lease_ms = lease.as_millis() as i64;
    let inserted = sqlx::query(
        "INSERT INTO telegram_topics (conversation_id, chat_id, name, claimed_until)
         VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond') ON CONFLICT DO NOTHING",
    )
    .bind(conversation_id)
    .bind(chat_id)
    .bind(name)
    .bind(lease_ms)
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(TopicClaim::Claimed);
    }
    // A lapsed claim is taken over; so is a topic in another group than the configured one (the
    // support group moved): the conversation gets a topic, and a card, in the new group, and
    // its waiting posts follow.
    let taken_over = sqlx::query(
        "UPDATE telegram_topics
         SET claimed_until = now() + $2 * interval '1 millisecond', name = $3, chat_id = $4,
             thread_id = NULL, card_queued_at = NULL, shown_name = NULL, shown_closed = false
         WHERE conversation_id = $1
           AND ((thread_id IS NULL AND (claimed_until IS NULL OR claimed_until < now())) OR chat_id <> $4)",
    )
    .bind(conversation_id)
    .bind(lease_ms)
    .bind(name)
    .bind(chat_id)
    .execute(db)
    .await?
    .rows_affected();
    if taken_over == 1 {
        return Ok(TopicClaim::Claimed);
    }
    let thread: Option<Option<TelegramThreadId>> =
        sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1")
            .bind(conversation_id)
            .fetch_optional(db)
            .await?;
    Ok(match thread.flatten() {
        Some(thread) => TopicClaim::Ready(thread),
        None => TopicClaim::Busy,
    })
}

/// Record the topic Telegram created in `chat_id`; done the moment its id is known. Returns
/// the conversation's topic in that chat: this one, or one another job recorded first (then
/// this one is spare); `None` when the conversation's topic row has moved to another chat
/// meanwhile (the support group changed), which makes this one spare too.
pub async fn set_thread(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<Option<TelegramThreadId>> {
    let recorded: Option<TelegramThreadId> = sqlx::query_scalar(
        "UPDATE telegram_topics SET thread_id = $2, claimed_until = NULL
         WHERE conversation_id = $1 AND chat_id = $3 AND thread_id IS NULL RETURNING thread_id",
    )
    .bind(conversation_id)
    .bind(thread_id)
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    if recorded.is_some() {
        return Ok(recorded);
    }
    let existing: Option<Option<TelegramThreadId>> =
        sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1 AND chat_id = $2")
            .bind(conversation_id)
            .bind(chat_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(existing.flatten())
}

/// The conversation's topic was deleted in Telegram: forget it, so that a new one is made
/// (its posts wait until then).
pub async fn forget_thread(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET thread_id = NULL, card_queued_at = NULL, claimed_until = NULL,
         shown_name = NULL, shown_closed = false
         WHERE conversation_id = $1 AND chat_id = $2 AND thread_id = $3",
    )
    .bind(conversation_id)
    .bind(chat_id)
    .bind(thread_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Extend a creation claim while Telegram is being asked.
pub async fn renew_claim(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    lease: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET claimed_until = now() + $2 * interval '1 millisecond'
         WHERE conversation_id = $1 AND thread_id IS NULL",
    )
    .bind(conversation_id)
    .bind(lease.as_millis() as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// Give up a creation claim after a failed request, so that a retry may claim at once.
pub async fn release_claim(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<()> {
    sqlx::query("UPDATE telegram_topics SET claimed_until = NULL WHERE conversation_id = $1 AND thread_id IS NULL")
        .bind(conversation_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Take a place under the cap on new topics in `chat_id` (`per_window` creations in any
/// `window`, all workers together) for the conversation's topic, or say how long until one
/// frees: then nothing is taken. A place is taken before Telegram is asked and kept whatever
/// Telegram answers, so a failing group is not asked more often either.
pub async fn reserve_creation(
    pool: &sqlx::PgPool,
    chat_id: TelegramChatId,
    conversation_id: ConversationId,
    per_window: u32,
    window: Duration,
) -> sqlx::Result<Option<Duration>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('concierge topic creations ' || ($1::bigint)::text, 0))",
    )
    .bind(chat_id)
    .execute(&mut *tx)
    .await?;
    // The creation that, with the newer ones, fills the cap: when it leaves the window, a
    // place frees.
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM created_at + $3 * interval '1 millisecond' - now())::float8
         FROM telegram_topic_creations
         WHERE chat_id = $1 AND created_at > now() - $3 * interval '1 millisecond'
         ORDER BY created_at DESC OFFSET $2 - 1 LIMIT 1",
    )
    .bind(chat_id)
    .bind(i64::from(per_window))
    .bind(window.as_millis() as i64)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(wait) = wait {
        tx.rollback().await?;
        return Ok(Some(Duration::from_secs_f64(wait.max(0.0))));
    }
    sqlx::query("INSERT INTO telegram_topic_creations (chat_id, conversation_id) VALUES ($1, $2)")
        .bind(chat_id)
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{TOPIC_NAME_CHARS, TopicStatus};

    #[test]
    fn a_topic_name_starts_with_its_status_and_stays_within_telegram_s_limit() {
        assert_eq!(TopicStatus::Waiting.topic_name("Анна · Оплата"), "🔴 Анна · Оплата");
        assert_eq!(TopicStatus::Closed.topic_name("Анна · Оплата"), "✅ Анна · Оплата");
        let long = TopicStatus::Answered.topic_name(&"я".repeat(200));
        assert_eq!(long.chars().count(), TOPIC_NAME_CHARS);
        assert!(long.starts_with("💬 я") && long.ends_with('…'));
    }
}
