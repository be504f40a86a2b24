//! The support group in Telegram: the bot's client, paced sends, and who counts as an operator.
//!
//! Jobs: [`escalate`] opens a conversation's topic and queues its card (both done by
//! [`topic`], which the outbox also uses to replace a deleted topic), [`outbox`] sends a
//! topic's posts and status changes in order, [`updates`] handles what operators do in the
//! group (`knowledge`: `/kb` and its button), [`sla`] reminds topics of users waiting too long, and [`poller`] fetches updates
//! with getUpdates where no webhook can reach the API.
//!
//! Invariant: nothing is sent to a chat the bot was kicked from; a group upgraded to a
//! supergroup is followed to its new id (kept in `telegram_chat_stops`), and every send after
//! that goes there.

pub mod assign;
pub mod escalate;
mod knowledge;
pub mod outbox;
pub mod poller;
pub mod sla;
pub mod topic;
pub mod updates;

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use concierge_shared::{
    TelegramChatId, TelegramMessageId, TelegramThreadId,
    config::{SlaHours, TelegramConfig, TelegramMode},
    db::telegram as store,
    jobs::TelegramSend,
};
use futures::StreamExt;
use sqlx::PgPool;
use teloxide::{
    Bot, RequestError,
    net::Download,
    payloads::{SendChatActionSetters, SendDocumentSetters, SendMessageSetters, SendPhotoSetters, SendVoiceSetters},
    prelude::Requester,
    types::{ChatAction, ChatId, FileId, InlineKeyboardMarkup, InputFile, MessageId, ThreadId},
};

/// How long a list of the group's administrators is trusted.
const ADMINS_TTL: Duration = Duration::from_secs(300);
/// Telegram's GroupAnonymousBot: the `from` of everything a group's anonymous admins post
/// (with `sender_chat` = the group).
pub const GROUP_ANONYMOUS_BOT: u64 = 1_087_968_824;
/// What Telegram says when a group's old id is used after its upgrade to a supergroup.
const GROUP_UPGRADED: &str = "Bad Request: group chat was upgraded to a supergroup chat";

/// A Telegram request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: the network, Telegram's own failures, our database.
    #[error("{0}")]
    Transient(String),
    /// Telegram refused the request itself; sending it again changes nothing.
    #[error("{0}")]
    Refused(String),
    /// A new topic must wait this long under the cap on new topics: not a failure, the work
    /// is queued again for then.
    #[error("the cap on new topics is reached; the topic waits {0:?}")]
    Held(Duration),
    /// The chat takes nothing for now (the bot was kicked): every post to it waits, pending,
    /// until the bot is back. Not a failure of the post.
    #[error("sending to chat {0} is stopped: {1}")]
    Stopped(TelegramChatId, String),
    /// The chat became another (a group upgraded to a supergroup): the request is to be made
    /// again there. The move is recorded and followed already.
    #[error("chat {0} moved to {1}")]
    Migrated(TelegramChatId, TelegramChatId),
    /// The topic was deleted: "message thread not found", confirmed by a second look.
    #[error("{0}")]
    TopicGone(String),
}

impl From<sqlx::Error> for SendError {
    fn from(error: sqlx::Error) -> Self {
        SendError::Transient(format!("database: {error}"))
    }
}

pub struct Telegram {
    pub bot: Bot,
    /// The support group: `SUPPORT_NOTIFICATIONS_CHAT_ID`, or the supergroup it became.
    chat_id: AtomicI64,
    pub mode: TelegramMode,
    /// The HTTP client's timeout, which a long poll's own wait adds to.
    pub timeout: Duration,
    /// The bot's username (getMe), asked once: `/close@<it>` is for this bot.
    username: tokio::sync::OnceCell<String>,
    /// Attempts of the send jobs it queues itself (when a held chat resumes).
    max_attempts: u32,
    interval: Duration,
    /// New topics allowed per `topics_window` (0: no cap).
    pub topics_per_window: u32,
    pub topics_window: Duration,
    operators: HashSet<u64>,
    admins: Mutex<Option<(Instant, HashSet<u64>)>>,
    /// How long a user may wait for a first human reply before the topic is reminded.
    pub sla: Option<Duration>,
    pub sla_hours: SlaHours,
    /// Usernames the SLA reminders mention; empty: all operators.
    pub on_duty: Vec<String>,
    /// Where links to users' files point (`CONCIERGE_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// The largest photo and other file the Bot API takes from the bot.
    upload_limits: (u64, u64),
}

impl Telegram {
    pub fn new(config: &TelegramConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut bot = Bot::with_client(config.bot_token.expose(), client);
        if let Some(url) = &config.api_url {
            bot = bot.set_api_url(
                url.parse().map_err(|error| anyhow::anyhow!("CONCIERGE_TELEGRAM_API_URL={url:?}: {error}"))?,
            );
        }
        Ok(Self {
            bot,
            chat_id: AtomicI64::new(config.chat_id),
            mode: config.mode,
            timeout: config.timeout,
            username: tokio::sync::OnceCell::new(),
            max_attempts: 5,
            interval: config.send_interval(),
            topics_per_window: config.topics_per_window,
            topics_window: config.topics_window,
            operators: config.operators.iter().copied().collect(),
            admins: Mutex::new(None),
            sla: config.sla,
            sla_hours: config.sla_hours,
            on_duty: config.on_duty.clone(),
            public_url: config.public_url.clone(),
            upload_limits: config.upload_limits,
        })
    }

    /// Attempts given to the send jobs it queues (`CONCIERGE_JOB_MAX_ATTEMPTS`).
    pub fn with_max_attempts(self, max_attempts: u32) -> Self {
        Self { max_attempts, ..self }
    }

    /// The support group's id now.
    pub fn chat_id(&self) -> TelegramChatId {
        TelegramChatId(self.chat_id.load(Ordering::SeqCst))
    }

    pub fn chat(&self) -> ChatId {
        ChatId(self.chat_id().0)
    }

    /// Follow a migration another process (or an earlier run) recorded for the support group.
    pub async fn load_current_chat(&self, pool: &PgPool) -> sqlx::Result<()> {
        let current = store::current_chat(pool, self.chat_id()).await?;
        if current != self.chat_id() {
            tracing::info!(chat_id = %current, "the support group was upgraded to a supergroup; sending there");
            self.chat_id.store(current.0, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The bot's username, from getMe the first time it is asked.
    pub async fn username(&self) -> Result<&str, SendError> {
        let name = self
            .username
            .get_or_try_init(|| async {
                let me = self.bot.get_me().await.map_err(classify)?;
                Ok::<_, SendError>(me.user.username.clone().unwrap_or_default())
            })
            .await?;
        Ok(name)
    }

    /// Run one request to the group in the group's next send slot (see [`Self::paced_in`]).
    pub async fn paced<T, F, Fut>(&self, pool: &PgPool, request: F) -> Result<T, SendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        self.paced_in(pool, self.chat_id(), request).await
    }

    /// Run one request to `chat` in the group's next send slot. A 429 holds every sender of
    /// the chat for `retry_after` (a slot that falls inside the pause is given up for one
    /// after it) and the request is made again; nothing is dropped. Nothing goes to a chat
    /// that is stopped; a refusal saying the bot was kicked stops the chat, and one saying
    /// the group was upgraded moves the support group to its new id.
    pub async fn paced_in<T, F, Fut>(&self, pool: &PgPool, chat: TelegramChatId, request: F) -> Result<T, SendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        if let Some(stop) = store::chat_stop(pool, chat).await? {
            match stop.migrate_to_chat_id {
                Some(to) => {
                    self.follow(pool, chat, to, &stop.description).await?;
                    return Err(SendError::Migrated(chat, to));
                }
                None if stop.resumed_at.is_none() => return Err(SendError::Stopped(chat, stop.description)),
                None => {}
            }
        }
        loop {
            let wait = store::reserve_slot(pool, self.chat_id(), self.interval).await?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // A 429 came while this slot was waiting: sending now would only earn another.
            let held = store::held_for(pool, self.chat_id()).await?;
            if !held.is_zero() {
                tokio::time::sleep(held).await;
                continue;
            }
            match request().await {
                Ok(value) => return Ok(value),
                Err(RequestError::RetryAfter(seconds)) => {
                    let pause = seconds.duration().max(Duration::from_secs(1));
                    tracing::info!(?pause, "Telegram asked to slow down");
                    store::hold_chat(pool, self.chat_id(), pause).await?;
                }
                Err(RequestError::MigrateToChatId(to)) => {
                    let to = TelegramChatId(to.0);
                    self.follow(pool, chat, to, GROUP_UPGRADED).await?;
                    return Err(SendError::Migrated(chat, to));
                }
                Err(RequestError::Api(api)) if bot_kicked(&api.to_string()) => {
                    // Telegram's own words, as the console shows them.
                    let description = api.to_string();
                    if store::stop_kicked(pool, chat, &description).await? {
                        tracing::error!(chat_id = %chat, %description, "the bot was kicked from the chat; its posts are held");
                    }
                    return Err(SendError::Stopped(chat, description));
                }
                Err(error) => return Err(classify(error)),
            }
        }
    }

    /// `from` became `to`: record it, send to `to` from now on if it was the support group, and
    /// queue every waiting post again (they go to the new group).
    pub async fn follow(
        &self,
        pool: &PgPool,
        from: TelegramChatId,
        to: TelegramChatId,
        description: &str,
    ) -> Result<(), SendError> {
        let news = store::record_migration(pool, from, to, description).await?;
        let moved = self.chat_id.compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if news || moved {
            tracing::warn!(from = %from, to = %to, "the group was upgraded to a supergroup; following it");
            requeue_pending(pool, &format!("migrated:{from}:{to}"), self.max_attempts).await?;
        }
        Ok(())
    }

    /// The bot is a member of `chat` again: resume what its stop held.
    pub async fn resume(&self, pool: &PgPool, chat: TelegramChatId) -> Result<bool, SendError> {
        if !store::resume_chat(pool, chat).await? {
            return Ok(false);
        }
        tracing::info!(chat_id = %chat, "the bot is back in the chat; sending its held posts");
        let cause = format!("resumed:{chat}:{}", chrono::Utc::now().timestamp_millis());
        requeue_pending(pool, &cause, self.max_attempts).await?;
        Ok(true)
    }

    /// Whether a topic Telegram could not find ("message thread not found", which the Bot API
    /// server answers for any failed look-up of a topic) is really gone: a harmless
    /// `sendChatAction` in it says. `Ok(false)` means the topic is there.
    pub async fn topic_missing(
        &self,
        pool: &PgPool,
        (chat, thread_id): (TelegramChatId, TelegramThreadId),
    ) -> Result<bool, SendError> {
        let thread = ThreadId(MessageId(thread_id.0));
        let probe = self
            .paced_in(pool, chat, || {
                let request = self.bot.send_chat_action(ChatId(chat.0), ChatAction::Typing).message_thread_id(thread);
                async move { request.await }
            })
            .await;
        match probe {
            Ok(_) => Ok(false),
            Err(SendError::Refused(error)) if topic_gone(&error) => Ok(true),
            // Refused for another reason: it says nothing of the topic, so it is not replaced.
            Err(SendError::Refused(error)) => {
                tracing::warn!(%error, %thread_id, "could not confirm that a topic is gone");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Post `text` to a topic of `chat` (the group the topic was made in); returns the Telegram
    /// message id.
    pub async fn post(
        &self,
        pool: &PgPool,
        (chat, thread_id): (TelegramChatId, TelegramThreadId),
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<TelegramMessageId, SendError> {
        let thread = ThreadId(MessageId(thread_id.0));
        let message = self
            .paced_in(pool, chat, || {
                let request = self.bot.send_message(ChatId(chat.0), text).message_thread_id(thread);
                let request = match markup {
                    Some(markup) => request.reply_markup(markup.clone()),
                    None => request,
                };
                async move { request.await }
            })
            .await?;
        Ok(TelegramMessageId(message.id.0))
    }

    /// How a file of `kind` goes to a topic: by which method, or `None` when it is larger than
    /// the Bot API takes (it goes as a link). An image too large for a photo goes as a document.
    pub fn upload_method(&self, kind: &str, content_type: &str, size: u64) -> Option<FileMethod> {
        let (photo_limit, file_limit) = self.upload_limits;
        match file_method(kind, content_type) {
            FileMethod::Photo if size <= photo_limit => Some(FileMethod::Photo),
            _ if size > file_limit => None,
            FileMethod::Photo => Some(FileMethod::Document),
            method => Some(method),
        }
    }

    /// Send a user's file to a topic of `chat` by `method` (see [`Self::upload_method`]), with
    /// `caption` under it. Returns the Telegram message id.
    pub async fn post_file(
        &self,
        pool: &PgPool,
        (chat, thread_id): (TelegramChatId, TelegramThreadId),
        file: &FileToSend,
        method: FileMethod,
        caption: &str,
    ) -> Result<TelegramMessageId, SendError> {
        let thread = ThreadId(MessageId(thread_id.0));
        let input = || InputFile::memory(file.bytes.clone()).file_name(file.file_name.clone());
        let caption = caption.trim();
        let message = self
            .paced_in(pool, chat, || {
                let chat = ChatId(chat.0);
                let caption = caption.to_owned();
                async move {
                    match method {
                        FileMethod::Photo => {
                            let request = self.bot.send_photo(chat, input()).message_thread_id(thread);
                            if caption.is_empty() { request.await } else { request.caption(caption).await }
                        }
                        FileMethod::Voice => {
                            let request = self.bot.send_voice(chat, input()).message_thread_id(thread);
                            if caption.is_empty() { request.await } else { request.caption(caption).await }
                        }
                        FileMethod::Document => {
                            let request = self.bot.send_document(chat, input()).message_thread_id(thread);
                            if caption.is_empty() { request.await } else { request.caption(caption).await }
                        }
                    }
                }
            })
            .await?;
        Ok(TelegramMessageId(message.id.0))
    }

    /// Download a file an operator posted: getFile for its path, then the file itself, at most
    /// `limit` bytes. Network failures are transient (the update is handled again).
    pub async fn download(&self, file_id: &FileId, limit: u64) -> Result<bytes::Bytes, SendError> {
        let file = self.bot.get_file(file_id.clone()).await.map_err(classify)?;
        let mut chunks = self.bot.download_file_stream(&file.path);
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| SendError::Transient(format!("downloading a file: {error}")))?;
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(SendError::Refused(format!("the file is larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reopen a topic an operator closed by hand, so that posts reach it again.
    pub async fn reopen_topic(
        &self,
        pool: &PgPool,
        (chat, thread_id): (TelegramChatId, TelegramThreadId),
    ) -> Result<(), SendError> {
        let thread = ThreadId(MessageId(thread_id.0));
        self.paced_in(pool, chat, || async move { self.bot.reopen_forum_topic(ChatId(chat.0), thread).await }).await?;
        Ok(())
    }

    /// Delete a topic nobody uses, best effort.
    pub async fn delete_topic(&self, pool: &PgPool, thread_id: TelegramThreadId) {
        let thread = ThreadId(MessageId(thread_id.0));
        if let Err(error) =
            self.paced(pool, || async move { self.bot.delete_forum_topic(self.chat(), thread).await }).await
        {
            tracing::warn!(%error, %thread_id, "deleting a spare topic failed");
        }
    }

    /// Create a forum topic; returns its thread id.
    pub async fn create_topic(&self, pool: &PgPool, name: &str) -> Result<TelegramThreadId, SendError> {
        let topic = self.paced(pool, || async move { self.bot.create_forum_topic(self.chat(), name).await }).await?;
        Ok(TelegramThreadId(topic.thread_id.0.0))
    }

    /// Whether the Telegram user may act as an operator: on the allow-list, or (without one)
    /// an administrator of the group.
    pub async fn is_operator(&self, user_id: u64) -> Result<bool, SendError> {
        if !self.operators.is_empty() {
            return Ok(self.operators.contains(&user_id));
        }
        if let Some((at, admins)) = self.admins.lock().expect("admins lock").as_ref()
            && at.elapsed() < ADMINS_TTL
        {
            return Ok(admins.contains(&user_id));
        }
        let members = self.bot.get_chat_administrators(self.chat()).await.map_err(classify)?;
        let admins: HashSet<u64> = members.iter().map(|member| member.user.id.0).collect();
        let allowed = admins.contains(&user_id);
        *self.admins.lock().expect("admins lock") = Some((Instant::now(), admins));
        Ok(allowed)
    }
}

/// A user's file on its way to a topic.
pub struct FileToSend {
    pub file_name: String,
    pub bytes: bytes::Bytes,
}

/// The Bot API method a file goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMethod {
    Photo,
    Voice,
    Document,
}

/// The largest file a bot may download with getFile.
pub const DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;

/// sendPhoto for images, sendVoice for the formats Telegram plays as a voice message (an OGG
/// file with Opus, MP3, M4A), sendDocument for the rest (PDF, text, WebM or WAV recordings).
pub fn file_method(kind: &str, content_type: &str) -> FileMethod {
    match kind {
        "image" => FileMethod::Photo,
        "voice" if matches!(content_type, "audio/ogg" | "audio/mpeg" | "audio/mp4" | "audio/x-m4a" | "audio/m4a") => {
            FileMethod::Voice
        }
        _ => FileMethod::Document,
    }
}

/// Queue a send job for every conversation with posts waiting (after its chat resumed or
/// moved).
async fn requeue_pending(pool: &PgPool, cause: &str, max_attempts: u32) -> Result<(), SendError> {
    let waiting = store::conversations_with_pending_posts(pool).await?;
    let mut tx = pool.begin().await?;
    for conversation_id in waiting {
        let job = TelegramSend { conversation_id, cause: format!("{cause}:{conversation_id}") };
        concierge_shared::jobs::enqueue(&mut tx, &job, max_attempts).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether a refusal says the bot is no longer in the chat.
fn bot_kicked(description: &str) -> bool {
    description.contains("bot was kicked") || description.contains("bot is not a member")
}

fn classify(error: RequestError) -> SendError {
    match &error {
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            SendError::Transient(error.to_string())
        }
        // teloxide names only some of Telegram's refusals; the others ("Bad Request: message
        // thread not found", "Bad Request: TOPIC_CLOSED", "Forbidden: …") come back as unknown,
        // like Telegram's own failures (5xx), which are worth another try.
        RequestError::Api(teloxide::ApiError::Unknown(description)) if !refusal(description) => {
            SendError::Transient(error.to_string())
        }
        RequestError::RetryAfter(_) | RequestError::Api(_) | RequestError::MigrateToChatId(_) => {
            SendError::Refused(error.to_string())
        }
    }
}

/// Whether Telegram's description of an error says the request itself was refused.
fn refusal(description: &str) -> bool {
    ["Bad Request", "Forbidden", "Unauthorized", "Not Found"].iter().any(|prefix| description.starts_with(prefix))
}

/// Await `work`, calling `renew` every `every` meanwhile (a lease held for as long as a
/// request to Telegram takes); a failed renewal ends the wait with its error.
pub(crate) async fn while_renewing<T, E, R>(
    work: impl Future<Output = T>,
    every: Duration,
    mut renew: impl FnMut() -> R,
) -> Result<T, E>
where
    R: Future<Output = Result<(), E>>,
{
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return Ok(result),
            _ = ticks.tick() => renew().await?,
        }
    }
}

/// Whether a refusal says the topic was closed (an operator can close a topic by hand).
pub fn topic_closed(error: &str) -> bool {
    error.contains("TOPIC_CLOSED")
}

/// Whether a refusal says the topic is gone (an operator deleted it).
pub fn topic_gone(error: &str) -> bool {
    error.contains("message thread not found") || error.contains("TOPIC_DELETED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_by_the_method_telegram_plays_them_with() {
        assert_eq!(file_method("image", "image/png"), FileMethod::Photo);
        assert_eq!(file_method("voice", "audio/ogg"), FileMethod::Voice);
        assert_eq!(file_method("voice", "audio/mpeg"), FileMethod::Voice);
        // Chromium records WebM: Telegram would not play it as a voice message.
        assert_eq!(file_method("voice", "audio/webm"), FileMethod::Document);
        assert_eq!(file_method("pdf", "application/pdf"), FileMethod::Document);
        assert_eq!(file_method("text", "text/plain"), FileMethod::Document);
    }
}
