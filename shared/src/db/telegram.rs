//! The Telegram side of the human path: topics, the outbox of posts to them, stored updates,
//! operators' mirrored messages and internal notes.
//!
//! Posts to a topic go through the outbox so that they are never lost (a post is a row before
//! it is a request) and keep their order (one sender per topic at a time, oldest row first).
//! Sending is paced per chat with a slot table shared by every worker process.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres};

use crate::{
    ConversationId, MessageId,
    jobs::{self, TelegramSend, TelegramUpdate},
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Topic {
    pub conversation_id: ConversationId,
    pub chat_id: i64,
    pub thread_id: Option<i32>,
    pub name: String,
    pub card_queued_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

macro_rules! topic_columns {
    () => {
        "conversation_id, chat_id, thread_id, name, card_queued_at, created_at"
    };
}

pub async fn topic(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<Topic>> {
    sqlx::query_as(concat!("SELECT ", topic_columns!(), " FROM telegram_topics WHERE conversation_id = $1"))
        .bind(conversation_id)
        .fetch_optional(db)
        .await
}

pub async fn topic_by_thread(db: impl PgExecutor<'_>, chat_id: i64, thread_id: i32) -> sqlx::Result<Option<Topic>> {
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
    Ready(i32),
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
    chat_id: i64,
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
             thread_id = NULL, card_queued_at = NULL
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
    let thread: Option<Option<i32>> =
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
    chat_id: i64,
    thread_id: i32,
) -> sqlx::Result<Option<i32>> {
    let recorded: Option<i32> = sqlx::query_scalar(
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
    let existing: Option<Option<i32>> =
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
    chat_id: i64,
    thread_id: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET thread_id = NULL, card_queued_at = NULL, claimed_until = NULL
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

/// One post waiting for its topic.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Post {
    pub id: i64,
    pub conversation_id: ConversationId,
    pub key: String,
    pub kind: String,
    pub text: String,
    pub reply_markup: Option<serde_json::Value>,
    pub attempts: i32,
}

/// A post to write: what caused it (its unique key), what it says.
pub struct NewPost<'a> {
    pub key: String,
    pub kind: &'a str,
    pub message_id: Option<MessageId>,
    pub text: String,
    pub reply_markup: Option<serde_json::Value>,
}

/// Add a post to the conversation's outbox and a job to send it, in the caller's transaction.
/// A post whose key is already there is not added again; returns whether it was.
pub async fn queue_post(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    post: NewPost<'_>,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    // Longer than Telegram takes in one message: several posts, in order, the buttons on the last.
    let mut parts = split_post(&post.text, MESSAGE_LIMIT);
    if parts.is_empty() {
        parts.push(post.text.clone());
    }
    let last = parts.len() - 1;
    let mut inserted = false;
    for (index, text) in parts.into_iter().enumerate() {
        let key = if index == 0 { post.key.clone() } else { format!("{}#{}", post.key, index + 1) };
        let markup = if index == last { post.reply_markup.as_ref() } else { None };
        let added = sqlx::query(
            "INSERT INTO telegram_outbox (conversation_id, key, kind, message_id, text, reply_markup)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
        )
        .bind(conversation_id)
        .bind(&key)
        .bind(post.kind)
        .bind(post.message_id)
        .bind(text)
        .bind(markup)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        inserted |= added && index == 0;
    }
    if inserted {
        jobs::enqueue(conn, &TelegramSend { conversation_id, cause: post.key }, max_attempts).await?;
    }
    Ok(inserted)
}

/// The longest message Telegram takes, in UTF-16 code units (how it counts).
pub const MESSAGE_LIMIT: usize = 4096;

/// `text` cut into pieces of at most `limit` UTF-16 code units, at line breaks where possible.
pub fn split_post(text: &str, limit: usize) -> Vec<String> {
    // Room for any character (two units at most), so that every cut makes progress.
    let limit = limit.max(2);
    let units = |s: &str| s.chars().map(char::len_utf16).sum::<usize>();
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for line in text.split_inclusive('\n') {
        let mut line = line;
        loop {
            let line_len = units(line);
            if current_len + line_len <= limit {
                current.push_str(line);
                current_len += line_len;
                break;
            }
            if current_len > 0 {
                parts.push(std::mem::take(&mut current));
                current_len = 0;
                continue;
            }
            // A single line longer than the limit: cut it.
            let mut taken = 0;
            let cut = line
                .char_indices()
                .find(|(_, c)| {
                    taken += c.len_utf16();
                    taken > limit
                })
                .map_or(line.len(), |(index, _)| index);
            parts.push(line[..cut].to_owned());
            line = &line[cut..];
            if line.is_empty() {
                break;
            }
        }
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts.into_iter().map(|part| part.trim_end().to_owned()).filter(|part| !part.is_empty()).collect()
}

/// Whether a post with this key was ever queued.
pub async fn post_queued(db: impl PgExecutor<'_>, key: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM telegram_outbox WHERE key = $1)").bind(key).fetch_one(db).await
}

/// Post a notice to the conversation's topic if it has one; returns whether it does.
pub async fn notify_topic(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    key: String,
    text: String,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let has_topic: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM telegram_topics WHERE conversation_id = $1)")
            .bind(conversation_id)
            .fetch_one(&mut *conn)
            .await?;
    if has_topic {
        let post = NewPost { key, kind: "notice", message_id: None, text, reply_markup: None };
        queue_post(conn, conversation_id, post, max_attempts).await?;
    }
    Ok(has_topic)
}

/// The outbox key of a card's part: one card per escalation and topic (a topic made anew
/// after the support group changed gets the card again).
pub fn card_key(escalation_id: MessageId, thread_id: i32, part: usize) -> String {
    format!("card:{escalation_id}:{thread_id}:{part}")
}

/// Queue the parts of an escalation's card, and skip the forwarded user messages the card's
/// transcript already shows (`seq <= covered_seq`). From now on the topic takes posts.
pub async fn queue_card(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    escalation_id: MessageId,
    thread_id: i32,
    parts: Vec<(String, Option<serde_json::Value>)>,
    covered_seq: i64,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let mut queued = false;
    for (index, (text, reply_markup)) in parts.into_iter().enumerate() {
        let post = NewPost {
            key: card_key(escalation_id, thread_id, index),
            kind: "card",
            message_id: None,
            text,
            reply_markup,
        };
        queued |= queue_post(conn, conversation_id, post, max_attempts).await?;
    }
    sqlx::query(
        "UPDATE telegram_outbox o SET state = 'skipped'
         FROM messages m
         WHERE o.conversation_id = $1 AND o.state = 'pending' AND o.kind = 'message'
           AND m.id = o.message_id AND m.seq <= $2",
    )
    .bind(conversation_id)
    .bind(covered_seq)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE telegram_topics SET card_queued_at = COALESCE(card_queued_at, now()),
         covered_seq = GREATEST(covered_seq, $2) WHERE conversation_id = $1",
    )
    .bind(conversation_id)
    .bind(covered_seq)
    .execute(&mut *conn)
    .await?;
    Ok(queued)
}

/// Queue a user message for the conversation's topic, unless a card's transcript showed it
/// already. Call under the conversation's lock, which `queue_card` also takes.
pub async fn forward_user_message(
    conn: &mut PgConnection,
    message: &crate::db::messages::Message,
    text: String,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let covered: Option<i64> = sqlx::query_scalar("SELECT covered_seq FROM telegram_topics WHERE conversation_id = $1")
        .bind(message.conversation_id)
        .fetch_optional(&mut *conn)
        .await?;
    if covered.is_some_and(|covered| message.seq <= covered) {
        return Ok(false);
    }
    let post = NewPost {
        key: format!("message:{}", message.id),
        kind: "message",
        message_id: Some(message.id),
        text,
        reply_markup: None,
    };
    queue_post(conn, message.conversation_id, post, max_attempts).await
}

/// Become the one sender of the conversation's topic for `lease` (renewed per post). `None`
/// when the topic cannot take posts yet or another job is sending.
pub async fn claim_sender(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    sender: uuid::Uuid,
    lease: Duration,
) -> sqlx::Result<Option<(i64, i32)>> {
    sqlx::query_as(
        "UPDATE telegram_topics SET sender = $2, sending_until = now() + $3 * interval '1 millisecond'
         WHERE conversation_id = $1 AND thread_id IS NOT NULL AND card_queued_at IS NOT NULL
           AND (sending_until IS NULL OR sending_until < now() OR sender = $2)
         RETURNING chat_id, thread_id",
    )
    .bind(conversation_id)
    .bind(sender)
    .bind(lease.as_millis() as i64)
    .fetch_optional(db)
    .await
}

pub async fn release_sender(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    sender: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_topics SET sender = NULL, sending_until = NULL WHERE conversation_id = $1 AND sender = $2",
    )
    .bind(conversation_id)
    .bind(sender)
    .execute(db)
    .await?;
    Ok(())
}

/// The next pending post of the conversation: card parts first (a notice queued while the
/// topic was being created waits for the card), then the oldest.
pub async fn next_post(db: impl PgExecutor<'_>, conversation_id: ConversationId) -> sqlx::Result<Option<Post>> {
    sqlx::query_as(
        "SELECT id, conversation_id, key, kind, text, reply_markup, attempts FROM telegram_outbox
         WHERE conversation_id = $1 AND state = 'pending' ORDER BY kind = 'card' DESC, id LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(db)
    .await
}

pub async fn mark_sent(db: impl PgExecutor<'_>, post_id: i64, telegram_message_id: i32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1,
         telegram_message_id = $2, last_error = NULL WHERE id = $1",
    )
    .bind(post_id)
    .bind(telegram_message_id as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// Record a failed attempt; `give_up` marks the post failed (Telegram refused it for good).
pub async fn mark_attempt(db: impl PgExecutor<'_>, post_id: i64, error: &str, give_up: bool) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_outbox SET attempts = attempts + 1, last_error = $2,
         state = CASE WHEN $3 THEN 'failed' ELSE state END WHERE id = $1",
    )
    .bind(post_id)
    .bind(error)
    .bind(give_up)
    .execute(db)
    .await?;
    Ok(())
}

/// Conversations whose posts have waited longer than `age` with nobody sending them (their
/// jobs failed for good, or died): the sweep queues a send job for each.
pub async fn stranded(db: impl PgExecutor<'_>, age: Duration) -> sqlx::Result<Vec<ConversationId>> {
    sqlx::query_scalar(
        "SELECT DISTINCT o.conversation_id FROM telegram_outbox o
         JOIN telegram_topics t ON t.conversation_id = o.conversation_id
         WHERE o.state = 'pending' AND o.created_at < now() - $1 * interval '1 millisecond'
           AND t.thread_id IS NOT NULL AND t.card_queued_at IS NOT NULL
           AND (t.sending_until IS NULL OR t.sending_until < now())",
    )
    .bind(age.as_millis() as i64)
    .fetch_all(db)
    .await
}

/// Reserve the chat's next send slot, `interval` after the previous one; returns how long to
/// wait for it. Every process shares the slots, so the group's pace holds however many
/// workers send.
pub async fn reserve_slot(db: impl PgExecutor<'_>, chat_id: i64, interval: Duration) -> sqlx::Result<Duration> {
    let wait_ms: f64 = sqlx::query_scalar(
        "INSERT INTO telegram_rate AS r (chat_id, next_at) VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
         ON CONFLICT (chat_id) DO UPDATE
             SET next_at = GREATEST(r.next_at, clock_timestamp()) + $2 * interval '1 millisecond'
         RETURNING GREATEST(0, extract(epoch FROM (r.next_at - $2 * interval '1 millisecond' - clock_timestamp())) * 1000)::float8",
    )
    .bind(chat_id)
    .bind(interval.as_millis() as i64)
    .fetch_one(db)
    .await?;
    Ok(Duration::from_millis(wait_ms as u64))
}

/// Telegram asked to wait (429 `retry_after`): no slot of the chat starts before then, and
/// slots already reserved inside the pause are not used (see [`held_for`]).
pub async fn hold_chat(db: impl PgExecutor<'_>, chat_id: i64, pause: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO telegram_rate AS r (chat_id, next_at, held_until)
         VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond', clock_timestamp() + $2 * interval '1 millisecond')
         ON CONFLICT (chat_id) DO UPDATE
             SET next_at = GREATEST(r.next_at, excluded.next_at),
                 held_until = GREATEST(r.held_until, excluded.held_until)",
    )
    .bind(chat_id)
    .bind(pause.as_millis() as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// How much longer the chat is on hold after a 429; zero when it is not.
pub async fn held_for(db: impl PgExecutor<'_>, chat_id: i64) -> sqlx::Result<Duration> {
    let wait_ms: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(0, extract(epoch FROM (held_until - clock_timestamp())) * 1000)::float8
         FROM telegram_rate WHERE chat_id = $1 AND held_until IS NOT NULL",
    )
    .bind(chat_id)
    .fetch_optional(db)
    .await?;
    Ok(Duration::from_millis(wait_ms.unwrap_or(0.0) as u64))
}

/// Store an update once, with the job that handles it; returns whether it was new.
pub async fn store_update(
    conn: &mut PgConnection,
    update_id: i64,
    payload: &serde_json::Value,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let inserted =
        sqlx::query("INSERT INTO telegram_updates (update_id, payload) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(update_id)
            .bind(payload)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
    if inserted {
        jobs::enqueue(conn, &TelegramUpdate { update_id }, max_attempts).await?;
    }
    Ok(inserted)
}

/// The update's payload, unless it was handled already.
pub async fn pending_update(db: impl PgExecutor<'_>, update_id: i64) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar("SELECT payload FROM telegram_updates WHERE update_id = $1 AND processed_at IS NULL")
        .bind(update_id)
        .fetch_optional(db)
        .await
}

pub async fn finish_update(db: impl PgExecutor<'_>, update_id: i64, outcome: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE telegram_updates SET processed_at = now(), outcome = $2 WHERE update_id = $1")
        .bind(update_id)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(())
}

/// Lock key serialising the handling of Telegram updates.
const UPDATES_LOCK: i64 = 0x636f_6e63_7475; // "conctu"

/// Wait for the right to handle updates: a transaction holding a transaction-level advisory
/// lock, released when it ends, however that happens (dropped, the job cancelled, the
/// connection lost). Waiting holds no connection: jobs queued behind the holder must not
/// starve it of the pool.
pub async fn lock_updates(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(UPDATES_LOCK).fetch_one(&mut *tx).await?;
        if locked {
            return Ok(tx);
        }
        tx.rollback().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The updates not handled yet, up to and including `update_id`, oldest first.
pub async fn pending_updates_through(db: impl PgExecutor<'_>, update_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT update_id FROM telegram_updates WHERE processed_at IS NULL AND update_id <= $1 ORDER BY update_id",
    )
    .bind(update_id)
    .fetch_all(db)
    .await
}

/// Remember which web message an operator's Telegram message became; false if it is known.
pub async fn link_message(
    conn: &mut PgConnection,
    chat_id: i64,
    telegram_message_id: i32,
    message_id: MessageId,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(chat_id)
    .bind(telegram_message_id as i64)
    .bind(message_id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub async fn linked_message(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    telegram_message_id: i32,
) -> sqlx::Result<Option<MessageId>> {
    sqlx::query_scalar("SELECT message_id FROM telegram_messages WHERE chat_id = $1 AND telegram_message_id = $2")
        .bind(chat_id)
        .bind(telegram_message_id as i64)
        .fetch_optional(db)
        .await
}

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
    source: &str,
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
    .bind(source)
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

#[cfg(test)]
mod tests {
    use super::split_post;

    #[test]
    fn splits_at_lines_and_cuts_long_lines_in_utf16_units() {
        assert_eq!(split_post("ab\ncd\nef", 5), vec!["ab", "cd\nef"]);
        assert_eq!(split_post("абвгдеж", 3), vec!["абв", "где", "ж"]);
        // An emoji is two UTF-16 units, as Telegram counts.
        assert_eq!(split_post("😀😀😀", 4), vec!["😀😀", "😀"]);
        assert!(split_post("", 10).is_empty());
        let long = "строка 😀\n".repeat(2000);
        let parts = split_post(&long, 4096);
        assert!(parts.iter().all(|part| part.encode_utf16().count() <= 4096));
        assert_eq!(parts.concat().matches("строка").count(), 2000);
    }
}
