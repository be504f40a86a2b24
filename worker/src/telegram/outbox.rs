//! The telegram-send job: send a topic's pending posts, oldest first.
//!
//! One sender per topic at a time (a lease on the topic's row, renewed while it sends) keeps the
//! order; any number of send jobs may be queued for a topic, and whichever holds the lease
//! sends everything pending. A post stays pending until Telegram has accepted it: a transient
//! failure is retried with backoff, and when the job's attempts are spent the sweep queues the
//! topic again a minute later, and only a post Telegram refused outright is marked failed.
//! "Message thread not found" is confirmed before the topic counts as deleted; a chat the bot
//! was kicked from holds every post, and a group upgraded to a supergroup has its topics opened
//! again in the new one.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{
    ConversationId, ConversationMode, ConversationStatus, TelegramChatId, TelegramThreadId,
    db::{
        conversations, messages,
        telegram::{self as store, TopicStatus},
        transcripts,
    },
    i18n::{Locale, fill},
    jobs::{Escalate, TelegramSend},
};
use teloxide::{
    payloads::EditForumTopicSetters,
    prelude::Requester,
    types::{ChatId, InlineKeyboardMarkup, MessageId, ThreadId},
};

use crate::{
    Context,
    retry::Backoff,
    telegram::{FileMethod, FileToSend, SendError, Telegram},
};

/// How long a sender holds a topic without renewing it (it renews every quarter of this).
const LEASE: Duration = Duration::from_secs(120);

#[tracing::instrument(skip_all, fields(conversation_id = %job.conversation_id))]
pub async fn handle(job: TelegramSend, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(telegram) = ctx.telegram.clone() else {
        tracing::warn!("a Telegram post is queued but Telegram is not configured; it stays queued");
        return Ok(());
    };
    let backoff = Backoff { tries: ctx.max_attempts, first: Duration::from_secs(1), max: Duration::from_secs(30) };
    let work = || async {
        // Topic deletions (of erased or expired conversations) ride on any send job.
        delete_topics(&ctx, &telegram).await?;
        deliver(&ctx, &telegram, job.conversation_id).await
    };
    if let Err(error) = backoff.run("sending to Telegram", |_| false, work).await {
        // The posts stay pending; the sweep queues this topic again in a minute.
        tracing::error!(%error, "sending to Telegram keeps failing; the sweep will try again");
    }
    Ok(())
}

/// Delete the forum topics queued for deletion, oldest first. Each one is held (a row lock)
/// while Telegram is asked, so no two jobs ask for the same one; a transient failure leaves it
/// pending, with the error, for the next try.
pub async fn delete_topics(ctx: &Context, telegram: &Telegram) -> Result<(), SendError> {
    loop {
        let mut tx = ctx.pool.begin().await?;
        let Some(deletion) = store::claim_deletion(&mut tx).await? else { return Ok(()) };
        let (chat, thread) = (ChatId(deletion.chat_id.0), ThreadId(MessageId(deletion.thread_id.0)));
        let deleted =
            telegram.paced(&ctx.pool, || async move { telegram.bot.delete_forum_topic(chat, thread).await }).await;
        let outcome = match &deleted {
            Ok(_) => ("sent", None),
            Err(SendError::Refused(error)) if super::topic_gone(error) || error.contains("TOPIC_ID_INVALID") => {
                tracing::info!(post = deletion.key, "the topic was already gone in Telegram");
                ("skipped", Some(error.as_str()))
            }
            Err(SendError::Refused(error)) => {
                tracing::error!(post = deletion.key, %error, "Telegram refused to delete a topic; it is marked failed");
                ("failed", Some(error.as_str()))
            }
            Err(SendError::Transient(error)) => {
                tracing::warn!(post = deletion.key, %error, "deleting a topic failed; it will be retried");
                ("pending", Some(error.as_str()))
            }
            Err(SendError::Held(_)) => ("pending", None),
            // Nothing can be deleted in a chat the bot left: it waits for the bot to be back. A
            // group that moved took its topics along.
            Err(SendError::Stopped(_, error)) => ("pending", Some(error.as_str())),
            Err(SendError::Migrated(..)) => ("skipped", Some("the group was upgraded to a supergroup")),
            Err(SendError::TopicGone(error)) => ("skipped", Some(error.as_str())),
        };
        store::finish_deletion(&mut *tx, deletion.id, outcome.0, outcome.1).await?;
        tx.commit().await?;
        match deleted {
            Err(error @ (SendError::Transient(_) | SendError::Held(_))) => return Err(error),
            // The rest wait too; the posts of this job are held the same way.
            Err(SendError::Stopped(..)) => return Ok(()),
            _ => {}
        }
        tracing::info!(post = deletion.key, state = outcome.0, "topic deletion handled");
    }
}

/// Send what is pending for the conversation's topic, unless another job is doing it.
pub async fn deliver(ctx: &Context, telegram: &Telegram, conversation_id: ConversationId) -> Result<(), SendError> {
    let sender = uuid::Uuid::new_v4();
    loop {
        let Some(topic) = store::claim_sender(&ctx.pool, conversation_id, sender, LEASE).await? else {
            // No topic yet (the escalate job sends once it has one), or another job is sending.
            return Ok(());
        };
        let sent = send_pending(ctx, telegram, conversation_id, topic, sender).await;
        store::release_sender(&ctx.pool, conversation_id, sender).await?;
        match sent {
            // The chat is stopped: the posts wait, pending, until it resumes (which queues
            // this topic again).
            Err(SendError::Stopped(..)) => return Ok(()),
            other => other?,
        }
        // A post queued while we released the lease found it held and left it to us.
        if store::next_post(&ctx.pool, conversation_id).await?.is_none() {
            return Ok(());
        }
    }
}

async fn send_pending(
    ctx: &Context,
    telegram: &Telegram,
    conversation_id: ConversationId,
    topic: (TelegramChatId, TelegramThreadId),
    sender: uuid::Uuid,
) -> Result<(), SendError> {
    while let Some(post) = store::next_post(&ctx.pool, conversation_id).await? {
        if store::claim_sender(&ctx.pool, conversation_id, sender, LEASE).await?.is_none() {
            return Ok(());
        }
        if post.kind == "topic_status" {
            let shown = holding_lease(ctx, conversation_id, sender, show_status(ctx, telegram, conversation_id, topic));
            match shown.await {
                Ok(()) => store::mark_done(&ctx.pool, post.id).await?,
                Err(SendError::Refused(error)) => {
                    // The topic keeps its old look until the next change; posts are unaffected.
                    tracing::warn!(post = post.key, %error, "Telegram refused a topic status change");
                    store::mark_attempt(&ctx.pool, post.id, &error, true).await?;
                }
                Err(SendError::Transient(error)) => {
                    tracing::warn!(post = post.key, %error, "a topic status change failed; it will be retried");
                    store::mark_attempt(&ctx.pool, post.id, &error, false).await?;
                    return Err(SendError::Transient(error));
                }
                // Held, stopped, moved or gone: as for any post.
                Err(other) => return Err(other),
            }
            continue;
        }
        let markup =
            post.reply_markup.as_ref().and_then(|m| serde_json::from_value::<InlineKeyboardMarkup>(m.clone()).ok());
        let outgoing = match post.attachment_id {
            None => Outgoing::Text(post.text.clone()),
            Some(attachment_id) => {
                match outgoing_file(ctx, telegram, conversation_id, attachment_id, &post.text).await? {
                    Some(outgoing) => outgoing,
                    None => {
                        tracing::info!(post = post.key, "the file was deleted before it was sent; the post is dropped");
                        store::mark_attempt(&ctx.pool, post.id, "the attachment was deleted", true).await?;
                        continue;
                    }
                }
            }
        };
        let send = || send_post(ctx, telegram, topic, &outgoing, &post.text, markup.as_ref());
        let posted = holding_lease(ctx, conversation_id, sender, async {
            let posted = send().await;
            match &posted {
                Err(SendError::Refused(error)) if super::topic_closed(error) => {
                    tracing::info!(thread_id = %topic.1, "the topic was closed in Telegram; reopening it");
                    match telegram.reopen_topic(&ctx.pool, topic).await {
                        Err(SendError::Refused(error)) => {
                            tracing::warn!(%error, "Telegram refused to reopen the topic")
                        }
                        Err(error) => return Err(error),
                        // A closed conversation's topic is closed again by the status row
                        // that follows the post.
                        Ok(()) => store::set_shown(&ctx.pool, conversation_id, topic.1, None, Some(false)).await?,
                    }
                    send().await
                }
                // The Bot API server says "thread not found" for any failed look-up of a topic:
                // only a confirmed deletion counts, and a topic that is there gets the post again.
                Err(SendError::Refused(error)) if super::topic_gone(error) => {
                    if telegram.topic_missing(&ctx.pool, topic).await? {
                        return Err(SendError::TopicGone(error.clone()));
                    }
                    tracing::warn!(thread_id = %topic.1, %error, "Telegram did not find a topic that is there; posting again");
                    match send().await {
                        Err(SendError::Refused(error)) if super::topic_gone(&error) => Err(SendError::Transient(error)),
                        other => other,
                    }
                }
                _ => posted,
            }
        })
        .await;
        match posted {
            Ok(message_id) => store::mark_sent(&ctx.pool, post.id, message_id).await?,
            Err(SendError::TopicGone(error)) => {
                if reopen_deleted(ctx, telegram, conversation_id, topic).await? {
                    // The next round of `deliver` claims the new topic: its card, then this post.
                    return Ok(());
                }
                tracing::error!(post = post.key, %error, "the topic is gone and nobody waits; the post is marked failed");
                store::mark_attempt(&ctx.pool, post.id, &error, true).await?;
            }
            Err(SendError::Refused(error)) => {
                tracing::error!(post = post.key, %error, "Telegram refused a post; it is marked failed");
                store::mark_attempt(&ctx.pool, post.id, &error, true).await?;
            }
            Err(SendError::Transient(error)) => {
                tracing::warn!(post = post.key, %error, "a Telegram post failed; it will be retried");
                store::mark_attempt(&ctx.pool, post.id, &error, false).await?;
                return Err(SendError::Transient(error));
            }
            // The whole chat is held: this post and the ones after it wait, pending, until the
            // bot is back (then every held topic is queued again).
            Err(SendError::Stopped(chat, reason)) => {
                tracing::info!(post = post.key, chat_id = %chat, %reason, "the chat is stopped; the post is held");
                return Err(SendError::Stopped(chat, reason));
            }
            // The group became a supergroup: its topics are opened there anew, with their card,
            // and the posts follow.
            Err(SendError::Migrated(from, to)) => {
                tracing::info!(post = post.key, %from, %to, "the topic's group moved; opening the topic there");
                if !reopen_deleted(ctx, telegram, conversation_id, topic).await? {
                    store::mark_attempt(&ctx.pool, post.id, &format!("chat {from} moved to {to}"), true).await?;
                }
                return Ok(());
            }
            // Only a new topic is ever held, never a post.
            Err(held @ SendError::Held(_)) => return Err(held),
        }
    }
    Ok(())
}

/// What a post sends: text, or a user's file.
enum Outgoing {
    Text(String),
    File(FileToSend, FileMethod),
}

/// Send one post: its text (sendMessage), or its file with the post's text as caption.
async fn send_post(
    ctx: &Context,
    telegram: &Telegram,
    topic: (TelegramChatId, TelegramThreadId),
    outgoing: &Outgoing,
    caption: &str,
    markup: Option<&InlineKeyboardMarkup>,
) -> Result<concierge_shared::TelegramMessageId, SendError> {
    match outgoing {
        Outgoing::Text(text) => telegram.post(&ctx.pool, topic, text, markup).await,
        Outgoing::File(file, method) => telegram.post_file(&ctx.pool, topic, file, *method, caption).await,
    }
}

/// How a user's file goes to the topic: the file itself, or — larger than the Bot API takes —
/// its caption with a signed link to it (or, with no public address, a word that it is in the
/// console). `None`: the attachment is gone (its conversation was erased meanwhile).
async fn outgoing_file(
    ctx: &Context,
    telegram: &Telegram,
    conversation_id: ConversationId,
    attachment_id: uuid::Uuid,
    caption: &str,
) -> Result<Option<Outgoing>, SendError> {
    let Some(file) = transcripts::get(&ctx.pool, attachment_id).await? else { return Ok(None) };
    let size = u64::try_from(file.size_bytes).unwrap_or_default();
    if let Some(method) = telegram.upload_method(&file.kind, &file.content_type, size) {
        let bytes = ctx
            .storage
            .get(&file.storage_key)
            .await
            .map_err(|error| SendError::Transient(format!("reading the file from storage: {error}")))?;
        return Ok(Some(Outgoing::File(FileToSend { file_name: file.file_name.clone(), bytes }, method)));
    }
    let locale = conversations::get(&ctx.pool, conversation_id).await?.map(|c| c.locale).unwrap_or_default();
    let texts = &Locale::from_code(&locale).texts().operators;
    let size = human_size(size);
    let line = match &telegram.public_url {
        Some(base) => {
            let url = crate::attachments::signed_link(ctx, base, attachment_id, LINK_LIFETIME);
            let days = (LINK_LIFETIME.as_secs() / 86_400).to_string();
            fill(texts.user_file_link, &[("file", &file.file_name), ("size", &size), ("url", &url), ("days", &days)])
        }
        None => fill(texts.user_file_in_console, &[("file", &file.file_name), ("size", &size)]),
    };
    Ok(Some(Outgoing::Text(format!("{}\n{line}", caption.trim()))))
}

/// How long a link to a file posted in a topic opens it: operators read topics for days, and
/// the link opens this one file only (retention and erasure delete it sooner, if due).
pub const LINK_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// A size as people read it: `12.3 MB`.
fn human_size(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 { format!("{:.1} MB", bytes as f64 / MB) } else { format!("{} KB", bytes.div_ceil(1024)) }
}

/// Make the topic show the conversation's status as it is now: its name (the status prefix)
/// with editForumTopic, closed or open with closeForumTopic / reopenForumTopic. Nothing is
/// asked when the topic shows it already.
async fn show_status(
    ctx: &Context,
    telegram: &Telegram,
    conversation_id: ConversationId,
    (chat, thread_id): (TelegramChatId, TelegramThreadId),
) -> Result<(), SendError> {
    let Some(view) = store::topic_view(&ctx.pool, conversation_id).await? else { return Ok(()) };
    let (chat_id, thread) = (ChatId(chat.0), ThreadId(MessageId(thread_id.0)));
    let name = view.status.topic_name(&view.name);
    if view.shown_name.as_deref() != Some(name.as_str()) {
        let edited = telegram
            .paced(&ctx.pool, || {
                let request = telegram.bot.edit_forum_topic(chat_id, thread).name(name.clone());
                async move { request.await }
            })
            .await;
        unmodified_is_done(edited)?;
        store::set_shown(&ctx.pool, conversation_id, thread_id, Some(&name), None).await?;
        tracing::debug!(%thread_id, name, "topic renamed");
    }
    let closed = view.status == TopicStatus::Closed;
    if closed != view.shown_closed {
        let changed = if closed {
            telegram.paced(&ctx.pool, || async move { telegram.bot.close_forum_topic(chat_id, thread).await }).await
        } else {
            telegram.paced(&ctx.pool, || async move { telegram.bot.reopen_forum_topic(chat_id, thread).await }).await
        };
        unmodified_is_done(changed)?;
        store::set_shown(&ctx.pool, conversation_id, thread_id, None, Some(closed)).await?;
        tracing::debug!(%thread_id, closed, "topic closed or reopened");
    }
    Ok(())
}

/// Telegram's answer to a change that is there already (the same name, a topic closed by
/// hand) is a refusal, TOPIC_NOT_MODIFIED: the topic shows what was wanted.
fn unmodified_is_done<T>(result: Result<T, SendError>) -> Result<(), SendError> {
    match result {
        Ok(_) => Ok(()),
        Err(SendError::Refused(error)) if error.contains("TOPIC_NOT_MODIFIED") => Ok(()),
        Err(error) => Err(error),
    }
}

/// The topic was deleted in Telegram while the conversation waits for a person: open a new
/// one with the card of the latest hand-over; the posts still pending follow it there. False
/// when there is nothing to reopen for (the conversation is closed or back with the bot).
async fn reopen_deleted(
    ctx: &Context,
    telegram: &Telegram,
    conversation_id: ConversationId,
    (chat, thread): (TelegramChatId, TelegramThreadId),
) -> Result<bool, SendError> {
    let Some(conversation) = conversations::get(&ctx.pool, conversation_id).await? else { return Ok(false) };
    if conversation.status != ConversationStatus::Open || conversation.mode != ConversationMode::Human {
        return Ok(false);
    }
    let Some(escalation_id) = messages::latest_handover(&ctx.pool, conversation_id).await? else { return Ok(false) };
    tracing::warn!(thread_id = %thread, "the topic was deleted in Telegram; opening a new one");
    store::forget_thread(&ctx.pool, conversation_id, chat, thread).await?;
    let job = Escalate { conversation_id, escalation_id };
    match super::topic::open_topic(ctx, telegram, &job).await {
        // The new topic waits under the cap; the escalation, queued again, sends the posts.
        Err(SendError::Held(wait)) => super::topic::postpone(ctx, &job, wait).await?,
        other => other?,
    }
    Ok(true)
}

/// Run one post while renewing the sender's lease: waiting for a send slot or sitting out a
/// 429 can take longer than the lease, and another sender must not take the topic meanwhile.
async fn holding_lease<T>(
    ctx: &Context,
    conversation_id: ConversationId,
    sender: uuid::Uuid,
    work: impl Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    let renewed = super::while_renewing(work, LEASE / 4, || async {
        match store::claim_sender(&ctx.pool, conversation_id, sender, LEASE).await {
            Ok(Some(_)) => {}
            // Keep waiting for the request in flight: dropping it could send the post twice.
            Ok(None) => tracing::warn!("lost the topic's sender lease while posting"),
            Err(error) => tracing::warn!(%error, "renewing the topic's sender lease failed"),
        }
        Ok::<_, std::convert::Infallible>(())
    });
    let Ok(result) = renewed.await;
    result
}

/// Queue a send job for topics whose posts have waited with nobody sending them, and one for
/// topic deletions left waiting.
pub async fn sweep(ctx: &Context) -> anyhow::Result<()> {
    let stranded = store::stranded(&ctx.pool, Duration::from_secs(60)).await?;
    let deletions = store::stranded_deletions(&ctx.pool, Duration::from_secs(60)).await?;
    if stranded.is_empty() && !deletions {
        return Ok(());
    }
    let minute = chrono::Utc::now().timestamp() / 60;
    let mut tx = ctx.pool.begin().await?;
    if deletions {
        // Any send job deletes the topics waiting; this one has no topic of its own to send to.
        let job = TelegramSend {
            conversation_id: ConversationId(uuid::Uuid::nil()),
            cause: format!("sweep:deletions:{minute}"),
        };
        concierge_shared::jobs::enqueue(&mut tx, &job, ctx.max_attempts).await?;
    }
    for conversation_id in &stranded {
        let job =
            TelegramSend { conversation_id: *conversation_id, cause: format!("sweep:{conversation_id}:{minute}") };
        concierge_shared::jobs::enqueue(&mut tx, &job, ctx.max_attempts).await?;
    }
    tx.commit().await?;
    tracing::info!(topics = stranded.len(), "re-queued Telegram posts that were waiting");
    Ok(())
}
