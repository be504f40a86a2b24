//! The outbox of posts to a conversation's topic: cards, forwarded user messages, notices.
//!
//! Invariant: a post is a row before it is a request, so it is never lost; a key is queued at
//! most once; posts of a topic are sent by one sender at a time, card parts first, then oldest
//! first. Each post is followed by a status row (`topic_status`), which makes the topic's name
//! and open/closed state show the conversation's status when it is sent; a newer status row
//! replaces older pending ones, so a burst of posts costs at most one topic edit.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor};

use crate::{
    ConversationId, MessageId, TelegramChatId, TelegramMessageId, TelegramThreadId,
    jobs::{self, TelegramSend},
};

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
    /// A user's file to send (sendPhoto, sendDocument, sendVoice), `text` its caption.
    pub attachment_id: Option<uuid::Uuid>,
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
        // Whatever the post says, the conversation may stand elsewhere now: the topic's name
        // follows, after the post.
        queue_status(conn, conversation_id).await?;
        jobs::enqueue(conn, &TelegramSend { conversation_id, cause: post.key }, max_attempts).await?;
    }
    Ok(inserted)
}

/// Queue a status row after everything queued so far, dropping older status rows still
/// pending: the row shows the status of when it is sent, so only the latest one matters.
async fn queue_status(conn: &mut PgConnection, conversation_id: ConversationId) -> sqlx::Result<String> {
    sqlx::query(
        "DELETE FROM telegram_outbox WHERE conversation_id = $1 AND kind = 'topic_status' AND state = 'pending'",
    )
    .bind(conversation_id)
    .execute(&mut *conn)
    .await?;
    let key = format!("topic-status:{conversation_id}:{}", uuid::Uuid::now_v7());
    sqlx::query("INSERT INTO telegram_outbox (conversation_id, key, kind, text) VALUES ($1, $2, 'topic_status', '')")
        .bind(conversation_id)
        .bind(&key)
        .execute(&mut *conn)
        .await?;
    Ok(key)
}

/// Whether the conversation has a Telegram topic.
async fn has_topic(conn: &mut PgConnection, conversation_id: ConversationId) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM telegram_topics WHERE conversation_id = $1)")
        .bind(conversation_id)
        .fetch_one(conn)
        .await
}

/// Have the conversation's topic show where it stands (its name, closed or open) after what
/// is queued for it so far, in the caller's transaction: for a change that posts nothing to
/// the topic (an operator's reply written there). Returns whether the conversation has a topic.
pub async fn refresh_topic_status(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let has_topic = has_topic(conn, conversation_id).await?;
    if has_topic {
        let key = queue_status(conn, conversation_id).await?;
        jobs::enqueue(conn, &TelegramSend { conversation_id, cause: key }, max_attempts).await?;
    }
    Ok(has_topic)
}

/// A status row is done: the topic shows the status (or needed no change).
pub async fn mark_done(db: impl PgExecutor<'_>, post_id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = $1",
    )
    .bind(post_id)
    .execute(db)
    .await?;
    Ok(())
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
    notify_topic_with(conn, conversation_id, key, text, None, max_attempts).await
}

/// [`notify_topic`] with an inline keyboard under the notice.
pub async fn notify_topic_with(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    key: String,
    text: String,
    reply_markup: Option<serde_json::Value>,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let has_topic = has_topic(conn, conversation_id).await?;
    if has_topic {
        let post = NewPost { key, kind: "notice", message_id: None, text, reply_markup };
        queue_post(conn, conversation_id, post, max_attempts).await?;
    }
    Ok(has_topic)
}

/// Post a file to the conversation's topic if it has one (sendPhoto, sendDocument or
/// sendVoice, `caption` under it); returns whether it does.
pub async fn notify_topic_file(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    key: String,
    caption: String,
    attachment_id: uuid::Uuid,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    if !has_topic(conn, conversation_id).await? {
        return Ok(false);
    }
    let post = NewPost { key: key.clone(), kind: "notice", message_id: None, text: caption, reply_markup: None };
    if queue_post(conn, conversation_id, post, max_attempts).await? {
        sqlx::query("UPDATE telegram_outbox SET attachment_id = $2 WHERE key = $1")
            .bind(&key)
            .bind(attachment_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// The outbox key of a card's part: one card per escalation and topic (a topic made anew
/// after the support group changed gets the card again).
pub fn card_key(escalation_id: MessageId, thread_id: TelegramThreadId, part: usize) -> String {
    format!("card:{escalation_id}:{thread_id}:{part}")
}

/// Queue the parts of an escalation's card, and skip the forwarded user messages the card's
/// transcript already shows (`seq <= covered_seq`). From now on the topic takes posts.
pub async fn queue_card(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    escalation_id: MessageId,
    thread_id: TelegramThreadId,
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

/// The longest caption Telegram takes under a file, in UTF-16 code units.
pub const CAPTION_LIMIT: usize = 1024;

/// Queue a user message that has files for the conversation's topic: each file is its own post
/// (sendPhoto, sendDocument or sendVoice), the message's text the first one's caption when it
/// fits, else a post of its own before them; the later files are captioned with `signature`
/// (who sent them). Skipped when a card's transcript showed the message already, like
/// [`forward_user_message`]. Call under the conversation's lock.
pub async fn forward_user_files(
    conn: &mut PgConnection,
    message: &crate::db::messages::Message,
    text: String,
    signature: String,
    files: &[uuid::Uuid],
    max_attempts: u32,
) -> sqlx::Result<bool> {
    if files.is_empty() {
        return forward_user_message(conn, message, text, max_attempts).await;
    }
    let covered: Option<i64> = sqlx::query_scalar("SELECT covered_seq FROM telegram_topics WHERE conversation_id = $1")
        .bind(message.conversation_id)
        .fetch_optional(&mut *conn)
        .await?;
    // A card's transcript shows the message's text, not its files: those still go.
    let shown = covered.is_some_and(|covered| message.seq <= covered);
    let has_text = !shown && !message.content.trim().is_empty();
    let fits = text.encode_utf16().count() <= CAPTION_LIMIT;
    let mut queued = false;
    if has_text && !fits {
        let post = NewPost {
            key: format!("message:{}", message.id),
            kind: "message",
            message_id: Some(message.id),
            text: text.clone(),
            reply_markup: None,
        };
        queued |= queue_post(conn, message.conversation_id, post, max_attempts).await?;
    }
    for (index, attachment_id) in files.iter().enumerate() {
        let first = index == 0 && (fits || !has_text);
        let key =
            if first { format!("message:{}", message.id) } else { format!("message:{}:file:{index}", message.id) };
        let caption = if first && has_text { text.clone() } else { signature.clone() };
        let post = NewPost {
            key: key.clone(),
            kind: "message",
            message_id: Some(message.id),
            text: caption,
            reply_markup: None,
        };
        if queue_post(conn, message.conversation_id, post, max_attempts).await? {
            sqlx::query("UPDATE telegram_outbox SET attachment_id = $2 WHERE key = $1")
                .bind(&key)
                .bind(attachment_id)
                .execute(&mut *conn)
                .await?;
            queued = true;
        }
    }
    Ok(queued)
}

/// Become the one sender of the conversation's topic for `lease` (renewed per post). `None`
/// when the topic cannot take posts yet or another job is sending.
pub async fn claim_sender(
    db: impl PgExecutor<'_>,
    conversation_id: ConversationId,
    sender: uuid::Uuid,
    lease: Duration,
) -> sqlx::Result<Option<(TelegramChatId, TelegramThreadId)>> {
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
        "SELECT id, conversation_id, key, kind, text, reply_markup, attempts, attachment_id FROM telegram_outbox
         WHERE conversation_id = $1 AND state = 'pending' ORDER BY kind = 'card' DESC, id LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(db)
    .await
}

pub async fn mark_sent(
    db: impl PgExecutor<'_>,
    post_id: i64,
    telegram_message_id: TelegramMessageId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1,
         telegram_message_id = $2, last_error = NULL WHERE id = $1",
    )
    .bind(post_id)
    .bind(i64::from(telegram_message_id.0))
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

/// Posts that are late: pending for more than five minutes, or failed within the last hour (a
/// refused status change is no lost post: the topic only keeps its old name).
pub async fn delayed_posts(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM telegram_outbox
         WHERE (state = 'pending' AND created_at < now() - interval '5 minutes')
            OR (state = 'failed' AND kind <> 'topic_status' AND created_at > now() - interval '1 hour')",
    )
    .fetch_one(db)
    .await
}

/// The outbox key of a topic's deletion: a topic is deleted once.
pub fn deletion_key(chat_id: TelegramChatId, thread_id: TelegramThreadId) -> String {
    format!("delete-topic:{chat_id}:{thread_id}")
}

/// Queue the deletion of a forum topic (its conversation is being erased or has expired) and
/// a send job that carries it out, in the caller's transaction. The row names the topic, not
/// the conversation, which is gone by the time it is sent. Returns whether it was queued now.
pub async fn queue_topic_deletion(
    conn: &mut PgConnection,
    conversation_id: ConversationId,
    chat_id: TelegramChatId,
    thread_id: TelegramThreadId,
    max_attempts: u32,
) -> sqlx::Result<bool> {
    let key = deletion_key(chat_id, thread_id);
    let added = sqlx::query(
        "INSERT INTO telegram_outbox (key, kind, text, chat_id, thread_id) VALUES ($1, 'delete_topic', '', $2, $3)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&key)
    .bind(chat_id)
    .bind(thread_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if added {
        jobs::enqueue(conn, &TelegramSend { conversation_id, cause: key }, max_attempts).await?;
    }
    Ok(added)
}

/// A topic deletion waiting to be sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TopicDeletion {
    pub id: i64,
    pub key: String,
    pub chat_id: TelegramChatId,
    pub thread_id: TelegramThreadId,
    pub attempts: i32,
}

/// The oldest pending topic deletion no other sender holds, locked until `conn`'s transaction
/// ends: one sender per deletion, however many jobs run.
pub async fn claim_deletion(conn: &mut PgConnection) -> sqlx::Result<Option<TopicDeletion>> {
    sqlx::query_as(
        "SELECT id, key, chat_id, thread_id, attempts FROM telegram_outbox
         WHERE kind = 'delete_topic' AND state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await
}

/// Record how a deletion ended: `state` is `sent` (deleted), `skipped` (Telegram no longer
/// had the topic) or `failed` (refused for good); `pending` with an error is a failed attempt.
pub async fn finish_deletion(db: impl PgExecutor<'_>, id: i64, state: &str, error: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE telegram_outbox SET state = $2, attempts = attempts + 1, last_error = $3,
         sent_at = CASE WHEN $2 = 'pending' THEN sent_at ELSE now() END WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether topic deletions have waited longer than `age` (their jobs failed for good, or died).
pub async fn stranded_deletions(db: impl PgExecutor<'_>, age: Duration) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM telegram_outbox WHERE kind = 'delete_topic' AND state = 'pending'
                        AND created_at < now() - $1 * interval '1 millisecond')",
    )
    .bind(age.as_millis() as i64)
    .fetch_one(db)
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
