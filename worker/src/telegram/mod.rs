//! The support group in Telegram: the bot's client, paced sends, and who counts as an operator.
//!
//! Jobs: [`escalate`] opens a conversation's topic and queues its card (both done by
//! [`topic`], which the outbox also uses to replace a deleted topic), [`outbox`] sends a
//! topic's posts in order, [`updates`] handles what operators do in the group (`knowledge`: `/kb`
//! and its button), and [`poller`] fetches updates with getUpdates where no webhook can reach
//! the API.

pub mod escalate;
mod knowledge;
pub mod outbox;
pub mod poller;
pub mod topic;
pub mod updates;

use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use concierge_shared::{
    TelegramChatId, TelegramMessageId, TelegramThreadId,
    config::{TelegramConfig, TelegramMode},
    db::telegram as store,
};
use sqlx::PgPool;
use teloxide::{
    Bot, RequestError,
    payloads::SendMessageSetters,
    prelude::Requester,
    types::{ChatId, InlineKeyboardMarkup, MessageId, ThreadId},
};

/// How long a list of the group's administrators is trusted.
const ADMINS_TTL: Duration = Duration::from_secs(300);

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
}

impl From<sqlx::Error> for SendError {
    fn from(error: sqlx::Error) -> Self {
        SendError::Transient(format!("database: {error}"))
    }
}

pub struct Telegram {
    pub bot: Bot,
    pub chat_id: TelegramChatId,
    pub mode: TelegramMode,
    interval: Duration,
    /// New topics allowed per `topics_window` (0: no cap).
    pub topics_per_window: u32,
    pub topics_window: Duration,
    operators: HashSet<u64>,
    admins: Mutex<Option<(Instant, HashSet<u64>)>>,
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
            chat_id: TelegramChatId(config.chat_id),
            mode: config.mode,
            interval: config.send_interval(),
            topics_per_window: config.topics_per_window,
            topics_window: config.topics_window,
            operators: config.operators.iter().copied().collect(),
            admins: Mutex::new(None),
        })
    }

    pub fn chat(&self) -> ChatId {
        ChatId(self.chat_id.0)
    }

    /// Run one request to the group in the group's next send slot. A 429 holds every sender
    /// of the chat for `retry_after` (a slot that falls inside the pause is given up for one
    /// after it) and the request is made again; nothing is dropped.
    pub async fn paced<T, F, Fut>(&self, pool: &PgPool, request: F) -> Result<T, SendError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        loop {
            let wait = store::reserve_slot(pool, self.chat_id, self.interval).await?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // A 429 came while this slot was waiting: sending now would only earn another.
            let held = store::held_for(pool, self.chat_id).await?;
            if !held.is_zero() {
                tokio::time::sleep(held).await;
                continue;
            }
            match request().await {
                Ok(value) => return Ok(value),
                Err(RequestError::RetryAfter(seconds)) => {
                    let pause = seconds.duration().max(Duration::from_secs(1));
                    tracing::info!(?pause, "Telegram asked to slow down");
                    store::hold_chat(pool, self.chat_id, pause).await?;
                }
                Err(error) => return Err(classify(error)),
            }
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
            .paced(pool, || {
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

    /// Reopen a topic an operator closed by hand, so that posts reach it again.
    pub async fn reopen_topic(
        &self,
        pool: &PgPool,
        (chat, thread_id): (TelegramChatId, TelegramThreadId),
    ) -> Result<(), SendError> {
        let thread = ThreadId(MessageId(thread_id.0));
        self.paced(pool, || async move { self.bot.reopen_forum_topic(ChatId(chat.0), thread).await }).await?;
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
