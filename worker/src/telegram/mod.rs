//! The support group in Telegram: the bot's client, paced sends, and who counts as an operator.
//!
//! Jobs: [`escalate`] opens a conversation's topic and queues its card, [`outbox`] sends a
//! topic's posts in order, [`updates`] handles what operators do in the group, and [`poller`]
//! fetches updates with getUpdates where no webhook can reach the API.

pub mod escalate;
pub mod outbox;
pub mod poller;
pub mod updates;

use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use concierge_shared::{
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
}

impl From<sqlx::Error> for SendError {
    fn from(error: sqlx::Error) -> Self {
        SendError::Transient(format!("database: {error}"))
    }
}

pub struct Telegram {
    pub bot: Bot,
    pub chat_id: i64,
    pub mode: TelegramMode,
    interval: Duration,
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
        let mut bot = Bot::with_client(&config.bot_token, client);
        if let Some(url) = &config.api_url {
            bot = bot.set_api_url(
                url.parse().map_err(|error| anyhow::anyhow!("CONCIERGE_TELEGRAM_API_URL={url:?}: {error}"))?,
            );
        }
        Ok(Self {
            bot,
            chat_id: config.chat_id,
            mode: config.mode,
            interval: config.send_interval(),
            operators: config.operators.iter().copied().collect(),
            admins: Mutex::new(None),
        })
    }

    pub fn chat(&self) -> ChatId {
        ChatId(self.chat_id)
    }

    /// Run one request to the group in the group's next send slot. A 429 holds every sender
    /// of the chat for `retry_after` and the request is made again; nothing is dropped.
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

    /// Post `text` to a topic; returns the Telegram message id.
    pub async fn post(
        &self,
        pool: &PgPool,
        thread_id: i32,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<i32, SendError> {
        let thread = ThreadId(MessageId(thread_id));
        let message = self
            .paced(pool, || {
                let request = self.bot.send_message(self.chat(), text).message_thread_id(thread);
                let request = match markup {
                    Some(markup) => request.reply_markup(markup.clone()),
                    None => request,
                };
                async move { request.await }
            })
            .await?;
        Ok(message.id.0)
    }

    /// Create a forum topic; returns its thread id.
    pub async fn create_topic(&self, pool: &PgPool, name: &str) -> Result<i32, SendError> {
        let topic = self.paced(pool, || async move { self.bot.create_forum_topic(self.chat(), name).await }).await?;
        Ok(topic.thread_id.0.0)
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
    match error {
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            SendError::Transient(error.to_string())
        }
        // Telegram's own failures (5xx) come back as errors it does not name.
        RequestError::Api(teloxide::ApiError::Unknown(_)) => SendError::Transient(error.to_string()),
        RequestError::RetryAfter(_) | RequestError::Api(_) | RequestError::MigrateToChatId(_) => {
            SendError::Refused(error.to_string())
        }
    }
}

/// `text` cut into pieces of at most `limit` characters, at line breaks where possible.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for line in text.split_inclusive('\n') {
        let mut line = line;
        loop {
            let line_len = line.chars().count();
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
            let cut = line.char_indices().nth(limit).map_or(line.len(), |(index, _)| index);
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

#[cfg(test)]
mod tests {
    use super::split_text;

    #[test]
    fn splits_at_lines_and_cuts_long_lines() {
        assert_eq!(split_text("ab\ncd\nef", 5), vec!["ab", "cd\nef"]);
        assert_eq!(split_text("абвгдеж", 3), vec!["абв", "где", "ж"]);
        assert!(split_text("", 10).is_empty());
        let long = "строка\n".repeat(2000);
        assert!(split_text(&long, 4096).iter().all(|part| part.chars().count() <= 4096));
    }
}
