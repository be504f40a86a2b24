//! The support bot's settings: as given ([`TelegramSettings`]) and as the processes use them
//! ([`TelegramConfig`]). No bot token means no Telegram: operators use the console.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::secret::Secret;

/// The support bot's settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Operators in Telegram (environment variables)")]
pub struct TelegramSettings {
    /// The support bot's token from @BotFather. Unset: no Telegram; operators use the console.
    #[arg(long, env = "SUPPORT_BOT_TOKEN", hide_env_values = true)]
    pub support_bot_token: Option<Secret>,
    /// The support supergroup (`-100…`), with topics enabled and the bot an admin allowed to
    /// manage topics. Required with the bot token.
    #[arg(long, env = "SUPPORT_NOTIFICATIONS_CHAT_ID", allow_negative_numbers = true)]
    pub support_notifications_chat_id: Option<String>,
    /// What Telegram sends in X-Telegram-Bot-Api-Secret-Token (16–256 of A-Z, a-z, 0-9, _ and
    /// -). Unset: the webhook refuses every update.
    #[arg(long, env = "CONCIERGE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// How updates arrive: webhook (at the API) or polling (one worker process, elected by an
    /// advisory lock, asks with getUpdates). Default: webhook when a webhook secret is set,
    /// else polling.
    #[arg(long, env = "CONCIERGE_TELEGRAM_MODE", value_enum)]
    pub telegram_mode: Option<TelegramMode>,
    /// Telegram user ids allowed to answer, comma-separated. Unset: the group's administrators.
    #[arg(long, env = "CONCIERGE_TELEGRAM_OPERATORS")]
    pub telegram_operators: Option<String>,
    /// Posts per minute to the group, all workers together (Telegram allows about 20).
    #[arg(long, env = "CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE", default_value_t = 20)]
    pub telegram_messages_per_minute: u32,
    /// New forum topics per hour, all workers together; past it the creation of a topic (and
    /// its card) waits, queued, until the hour allows it. Topics that exist keep working.
    #[arg(long, env = "CONCIERGE_TELEGRAM_TOPICS_PER_HOUR", default_value_t = 30)]
    pub telegram_topics_per_hour: u32,
    /// Another Bot API server (a self-hosted telegram-bot-api, or a test's). Default:
    /// https://api.telegram.org.
    #[arg(long, env = "CONCIERGE_TELEGRAM_API_URL")]
    pub telegram_api_url: Option<String>,
    /// One Bot API request, in seconds.
    #[arg(long, env = "CONCIERGE_TELEGRAM_TIMEOUT_SECS", default_value_t = 30)]
    pub telegram_timeout_secs: u64,
    /// Minutes a user may wait for a first human reply before the topic is reminded (once,
    /// then once more after as long again). 0: no reminders.
    #[arg(long, env = "CONCIERGE_SLA_MINUTES", default_value_t = 10)]
    pub sla_minutes: u32,
    /// When the SLA is watched: `duty` (operators' hours, 9:00 to 21:00 Moscow time) or
    /// `always`.
    #[arg(long, env = "CONCIERGE_SLA_HOURS", value_enum, default_value_t = SlaHours::Duty)]
    pub sla_hours: SlaHours,
    /// Telegram usernames of the operators on duty, comma-separated (with or without @); SLA
    /// reminders mention them. Unset: reminders are addressed to all operators.
    #[arg(long, env = "CONCIERGE_TELEGRAM_ON_DUTY")]
    pub telegram_on_duty: Option<String>,
    /// The address people reach Concierge at (`https://support.example.com`): a user's file too
    /// large for the Bot API is posted to the topic as a signed link there. Unset: such a file
    /// is named in the topic and read in the console.
    #[arg(long, env = "CONCIERGE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// The support bot and its group. Escalated conversations get a forum topic in the group.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: Secret,
    /// The forum supergroup (`-100...`).
    pub chat_id: i64,
    /// Another Bot API server (self-hosted, or a test's).
    pub api_url: Option<String>,
    pub mode: TelegramMode,
    /// Telegram user ids allowed to answer; empty: the group's administrators.
    pub operators: Vec<u64>,
    /// Posts per minute to the group, all workers together.
    pub messages_per_minute: u32,
    /// New topics per `topics_window`, all workers together; 0: no cap.
    pub topics_per_window: u32,
    /// The window the topic cap counts over: an hour (tests shorten it).
    pub topics_window: Duration,
    /// One Bot API request.
    pub timeout: Duration,
    /// How long a user may wait for a first human reply before the topic is reminded;
    /// `None`: never reminded.
    pub sla: Option<Duration>,
    pub sla_hours: SlaHours,
    /// Usernames (without @) the SLA reminders mention; empty: all operators.
    pub on_duty: Vec<String>,
    /// Where links to files point (`CONCIERGE_PUBLIC_URL`), without a trailing slash.
    pub public_url: Option<String>,
    /// The largest photo and the largest other file the Bot API takes from the bot
    /// ([`PHOTO_UPLOAD_LIMIT`], [`FILE_UPLOAD_LIMIT`]); larger files go as links.
    pub upload_limits: (u64, u64),
}

/// The largest photo the Bot API takes from a bot (sendPhoto).
pub const PHOTO_UPLOAD_LIMIT: u64 = 10 * 1024 * 1024;
/// The largest other file the Bot API takes from a bot (sendDocument, sendVoice).
pub const FILE_UPLOAD_LIMIT: u64 = 50 * 1024 * 1024;

/// When the SLA is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlaHours {
    /// During operators' hours only (`concierge_shared::duty::on_duty`).
    Duty,
    /// Around the clock.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TelegramMode {
    /// Updates arrive at the API.
    Webhook,
    /// A worker asks Telegram with getUpdates.
    Polling,
}

impl TelegramSettings {
    /// `None` when no bot token is set.
    pub(super) fn resolve(self) -> anyhow::Result<Option<TelegramConfig>> {
        let Some(bot_token) = self.support_bot_token else { return Ok(None) };
        let chat_id = self
            .support_notifications_chat_id
            .context("SUPPORT_BOT_TOKEN is set but SUPPORT_NOTIFICATIONS_CHAT_ID is not")?;
        let chat_id = chat_id
            .trim()
            .parse()
            .with_context(|| format!("SUPPORT_NOTIFICATIONS_CHAT_ID={chat_id:?} is not a chat id"))?;
        let mode = match self.telegram_mode {
            Some(mode) => mode,
            None if self.webhook_secret.is_some() => TelegramMode::Webhook,
            None => TelegramMode::Polling,
        };
        let operators = self
            .telegram_operators
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().with_context(|| format!("CONCIERGE_TELEGRAM_OPERATORS: {id:?} is not a user id")))
            .collect::<anyhow::Result<_>>()?;
        let on_duty = self
            .telegram_on_duty
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().trim_start_matches('@'))
            .filter(|name| !name.is_empty())
            .map(|name| {
                // Telegram usernames: 5 to 32 of a-z, 0-9 and _.
                let valid =
                    (5..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if valid {
                    Ok(name.to_owned())
                } else {
                    bail!("CONCIERGE_TELEGRAM_ON_DUTY: {name:?} is not a username")
                }
            })
            .collect::<anyhow::Result<_>>()?;
        let public_url = match self.public_url.map(|url| url.trim().trim_end_matches('/').to_owned()) {
            Some(url) if url.is_empty() => None,
            Some(url) => {
                let parsed =
                    url::Url::parse(&url).with_context(|| format!("CONCIERGE_PUBLIC_URL={url:?} is not a URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("CONCIERGE_PUBLIC_URL={url:?} must be an http(s) URL");
                }
                Some(url)
            }
            None => None,
        };
        if self.telegram_messages_per_minute == 0 {
            bail!("CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE must be at least 1");
        }
        Ok(Some(TelegramConfig {
            bot_token,
            chat_id,
            api_url: self.telegram_api_url.map(|u| u.trim_end_matches('/').to_owned()),
            mode,
            operators,
            messages_per_minute: self.telegram_messages_per_minute,
            topics_per_window: self.telegram_topics_per_hour,
            topics_window: Duration::from_secs(3600),
            timeout: Duration::from_secs(self.telegram_timeout_secs),
            sla: (self.sla_minutes > 0).then(|| Duration::from_secs(u64::from(self.sla_minutes) * 60)),
            sla_hours: self.sla_hours,
            on_duty,
            public_url,
            upload_limits: (PHOTO_UPLOAD_LIMIT, FILE_UPLOAD_LIMIT),
        }))
    }
}

impl TelegramConfig {
    /// The pause between two posts to the group.
    pub fn send_interval(&self) -> Duration {
        Duration::from_secs(60) / self.messages_per_minute
    }
}

/// The shortest webhook secret accepted: anyone who guesses it can post updates as Telegram.
pub(super) const MIN_WEBHOOK_SECRET: usize = 16;

/// Telegram accepts 1 to 256 characters `A-Z`, `a-z`, `0-9`, `_` and `-` as a webhook secret;
/// we want at least [`MIN_WEBHOOK_SECRET`] of them, so that it cannot be guessed.
pub(super) fn valid_webhook_secret(secret: &str) -> bool {
    (MIN_WEBHOOK_SECRET..=256).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
