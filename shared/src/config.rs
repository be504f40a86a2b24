//! Configuration read from the environment. Every variable is documented in README.md; the
//! defaults are those of the single-machine embedded setup.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};

/// Settings every Concierge process understands. A process ignores the ones it does not use.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`; `None` lets the all-in-one binary start its own PostgreSQL.
    pub database_url: Option<String>,
    /// `CONCIERGE_BIND`: where the API listens.
    pub bind: SocketAddr,
    /// `CONCIERGE_JWT_SECRET`: the host platform's HS256 secret; Concierge derives the keys of
    /// its own visitor and stream tokens from it.
    pub jwt_secret: Option<String>,
    /// `CONCIERGE_DATA_DIR`: the embedded cluster and generated secrets.
    pub data_dir: PathBuf,
    /// `CONCIERGE_KNOWLEDGE_DIR`: the Markdown knowledge base.
    pub knowledge_dir: PathBuf,
    /// `CONCIERGE_DB_MAX_CONNECTIONS`: pool size of one process.
    pub db_max_connections: u32,
    /// `CONCIERGE_MAX_MESSAGE_CHARS`: the longest user message accepted.
    pub max_message_chars: usize,
    /// `CONCIERGE_SSE_HEARTBEAT_SECS`: how often idle streams get a comment line.
    pub sse_heartbeat: Duration,
    /// `CONCIERGE_STREAM_TOKEN_TTL_SECS`: lifetime of a stream token.
    pub stream_token_ttl: Duration,
    /// `CONCIERGE_VISITOR_TOKEN_TTL_DAYS`: lifetime of a visitor token.
    pub visitor_token_ttl: Duration,
    /// `CONCIERGE_JOB_MAX_ATTEMPTS`: attempts before a job is given up.
    pub job_max_attempts: u32,
    /// `CONCIERGE_WORKER_HEARTBEAT_SECS`: how often workers say they are alive; a job held by a
    /// worker silent for three heartbeats is handed to another worker.
    pub worker_heartbeat: Duration,
    /// The language model that decides, if any.
    pub ai: AiConfig,
    /// `CONCIERGE_PLATFORM_URL`: the host platform's API, which actions read. Unset: the
    /// all-in-one binary serves a demo platform built from `fixtures/demo_platform.json`.
    pub platform_url: Option<String>,
    /// `CONCIERGE_PLATFORM_TOKEN`: sent as a bearer token to the platform.
    pub platform_token: Option<String>,
    /// `CONCIERGE_PLATFORM_TIMEOUT_SECS`: one platform request.
    pub platform_timeout: Duration,
    /// `CONCIERGE_FIXTURES_DIR`: action definitions and demo data.
    pub fixtures_dir: PathBuf,
    /// The support group in Telegram, when a bot is configured.
    pub telegram: Option<TelegramConfig>,
    /// `CONCIERGE_METRICS_BIND`: where a worker process serves Prometheus `/metrics` (the API
    /// serves its own on `CONCIERGE_BIND`).
    pub metrics_bind: Option<SocketAddr>,
    /// `CONCIERGE_ADMIN_TOKEN`: a static bearer token accepted as an administrator (for the
    /// console where the platform issues no admin tokens); at least 24 characters.
    pub admin_token: Option<String>,
    /// `CONCIERGE_METRICS_TOKEN`: when set, `/metrics` (API and workers) answers only requests
    /// bearing it; at least 24 characters.
    pub metrics_token: Option<String>,
    /// `CONCIERGE_WEBHOOK_SECRET`: what Telegram sends in `X-Telegram-Bot-Api-Secret-Token`;
    /// the webhook refuses every update while it is unset.
    pub webhook_secret: Option<String>,
}

/// The support bot and its group. Escalated conversations get a forum topic in the group.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// `SUPPORT_BOT_TOKEN`.
    pub bot_token: String,
    /// `SUPPORT_NOTIFICATIONS_CHAT_ID`: the forum supergroup (`-100...`).
    pub chat_id: i64,
    /// `CONCIERGE_TELEGRAM_API_URL`: another Bot API server (self-hosted, or a test's).
    pub api_url: Option<String>,
    /// `CONCIERGE_TELEGRAM_MODE`: `webhook` (updates arrive at the API) or `polling` (a worker
    /// asks Telegram with getUpdates). Default: webhook when a webhook secret is set.
    pub mode: TelegramMode,
    /// `CONCIERGE_TELEGRAM_OPERATORS`: Telegram user ids allowed to answer, comma-separated.
    /// Empty: the group's administrators.
    pub operators: Vec<u64>,
    /// `CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE`: posts per minute to the group, all workers
    /// together (Telegram allows about 20).
    pub messages_per_minute: u32,
    /// `CONCIERGE_TELEGRAM_TIMEOUT_SECS`: one Bot API request.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelegramMode {
    Webhook,
    Polling,
}

impl TelegramConfig {
    /// `None` when `SUPPORT_BOT_TOKEN` is unset.
    pub fn from_env(webhook_secret: Option<&str>) -> anyhow::Result<Option<Self>> {
        let Some(bot_token) = var("SUPPORT_BOT_TOKEN") else { return Ok(None) };
        let chat_id = var("SUPPORT_NOTIFICATIONS_CHAT_ID")
            .context("SUPPORT_BOT_TOKEN is set but SUPPORT_NOTIFICATIONS_CHAT_ID is not")?;
        let chat_id = chat_id
            .trim()
            .parse()
            .with_context(|| format!("SUPPORT_NOTIFICATIONS_CHAT_ID={chat_id:?} is not a chat id"))?;
        let mode = match var("CONCIERGE_TELEGRAM_MODE").as_deref() {
            Some("webhook") => TelegramMode::Webhook,
            Some("polling") => TelegramMode::Polling,
            Some(other) => bail!("CONCIERGE_TELEGRAM_MODE={other:?}: expected webhook or polling"),
            None if webhook_secret.is_some() => TelegramMode::Webhook,
            None => TelegramMode::Polling,
        };
        let operators = var("CONCIERGE_TELEGRAM_OPERATORS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().with_context(|| format!("CONCIERGE_TELEGRAM_OPERATORS: {id:?} is not a user id")))
            .collect::<anyhow::Result<_>>()?;
        let messages_per_minute: u32 = parse_var("CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE", "20")?;
        if messages_per_minute == 0 {
            bail!("CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE must be at least 1");
        }
        Ok(Some(Self {
            bot_token,
            chat_id,
            api_url: var("CONCIERGE_TELEGRAM_API_URL").map(|u| u.trim_end_matches('/').to_owned()),
            mode,
            operators,
            messages_per_minute,
            timeout: Duration::from_secs(parse_var("CONCIERGE_TELEGRAM_TIMEOUT_SECS", "30")?),
        }))
    }

    /// The pause between two posts to the group.
    pub fn send_interval(&self) -> Duration {
        Duration::from_secs(60) / self.messages_per_minute
    }
}

/// Telegram accepts 1 to 256 characters `A-Z`, `a-z`, `0-9`, `_` and `-` as a webhook secret.
fn valid_webhook_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Which LLM answers, and its limits.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// `CONCIERGE_AI_PROVIDER`: deepseek | openai | offline; default: the provider whose key is
    /// set (`DEEPSEEK_API_KEY`, then `OPENAI_API_KEY`), else offline.
    pub provider: Provider,
    /// `CONCIERGE_LLM_BASE_URL`: any OpenAI-compatible server (vLLM, Ollama, llama.cpp...).
    pub base_url: String,
    /// `CONCIERGE_LLM_MODEL`.
    pub model: String,
    /// The provider's key; local servers may need none.
    pub api_key: Option<String>,
    /// `CONCIERGE_LLM_TIMEOUT_SECS`: one request, including a streamed answer.
    pub timeout: Duration,
    /// `CONCIERGE_LLM_MAX_RETRIES`: retries of a 429/5xx/transport failure.
    pub max_retries: u32,
    /// `CONCIERGE_LLM_STREAM`: stream answers token by token to the widget.
    pub stream: bool,
    /// `CONCIERGE_LLM_CONVERSATION_TOKENS`: tokens one conversation may spend.
    pub conversation_token_budget: i64,
    /// `CONCIERGE_LLM_DAILY_TOKENS`: tokens all conversations may spend per UTC day.
    pub daily_token_budget: i64,
    /// `CONCIERGE_PROMPTS_DIR`: the versioned prompts.
    pub prompts_dir: PathBuf,
    /// `CONCIERGE_LLM_BREAKER_COOLDOWN_SECS`: after 3 failed calls in a row, how long new
    /// messages are answered offline before the provider is tried again.
    pub breaker_cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Deepseek,
    Openai,
    Offline,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Deepseek => "deepseek",
            Provider::Openai => "openai",
            Provider::Offline => "offline",
        }
    }
}

impl AiConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let deepseek_key = var("DEEPSEEK_API_KEY");
        let openai_key = var("OPENAI_API_KEY");
        let provider = match var("CONCIERGE_AI_PROVIDER").as_deref() {
            Some("deepseek") => Provider::Deepseek,
            Some("openai") => Provider::Openai,
            Some("offline") => Provider::Offline,
            Some(other) => bail!("CONCIERGE_AI_PROVIDER={other:?}: expected deepseek, openai or offline"),
            None if deepseek_key.is_some() => Provider::Deepseek,
            None if openai_key.is_some() => Provider::Openai,
            None => Provider::Offline,
        };
        let (default_url, default_model, api_key) = match provider {
            Provider::Deepseek => ("https://api.deepseek.com/v1", "deepseek-chat", deepseek_key),
            Provider::Openai | Provider::Offline => ("https://api.openai.com/v1", "gpt-4o-mini", openai_key),
        };
        Ok(Self {
            provider,
            base_url: var("CONCIERGE_LLM_BASE_URL").unwrap_or_else(|| default_url.into()).trim_end_matches('/').into(),
            model: var("CONCIERGE_LLM_MODEL").unwrap_or_else(|| default_model.into()),
            api_key,
            timeout: Duration::from_secs(parse_var("CONCIERGE_LLM_TIMEOUT_SECS", "30")?),
            max_retries: parse_var("CONCIERGE_LLM_MAX_RETRIES", "2")?,
            stream: parse_var("CONCIERGE_LLM_STREAM", "true")?,
            conversation_token_budget: parse_var("CONCIERGE_LLM_CONVERSATION_TOKENS", "60000")?,
            daily_token_budget: parse_var("CONCIERGE_LLM_DAILY_TOKENS", "5000000")?,
            prompts_dir: var("CONCIERGE_PROMPTS_DIR").unwrap_or_else(|| "prompts".into()).into(),
            breaker_cooldown: Duration::from_secs(parse_var("CONCIERGE_LLM_BREAKER_COOLDOWN_SECS", "30")?),
        })
    }

    /// No model: the offline engine decides.
    pub fn offline() -> Self {
        Self {
            provider: Provider::Offline,
            base_url: String::new(),
            model: String::new(),
            api_key: None,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            stream: true,
            conversation_token_budget: 60_000,
            daily_token_budget: 5_000_000,
            prompts_dir: "prompts".into(),
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let webhook_secret = var("CONCIERGE_WEBHOOK_SECRET");
        if let Some(secret) = &webhook_secret
            && !valid_webhook_secret(secret)
        {
            bail!("CONCIERGE_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -");
        }
        Ok(Self {
            database_url: var("DATABASE_URL"),
            bind: parse_var("CONCIERGE_BIND", "127.0.0.1:8080")?,
            jwt_secret: var("CONCIERGE_JWT_SECRET"),
            data_dir: var("CONCIERGE_DATA_DIR").unwrap_or_else(|| ".concierge".into()).into(),
            knowledge_dir: var("CONCIERGE_KNOWLEDGE_DIR").unwrap_or_else(|| "knowledge".into()).into(),
            db_max_connections: parse_var("CONCIERGE_DB_MAX_CONNECTIONS", "30")?,
            max_message_chars: parse_var("CONCIERGE_MAX_MESSAGE_CHARS", "4000")?,
            sse_heartbeat: Duration::from_secs(parse_var("CONCIERGE_SSE_HEARTBEAT_SECS", "15")?),
            stream_token_ttl: Duration::from_secs(parse_var("CONCIERGE_STREAM_TOKEN_TTL_SECS", "600")?),
            visitor_token_ttl: Duration::from_secs(
                86_400 * parse_var::<u64>("CONCIERGE_VISITOR_TOKEN_TTL_DAYS", "30")?,
            ),
            job_max_attempts: parse_var("CONCIERGE_JOB_MAX_ATTEMPTS", "5")?,
            worker_heartbeat: Duration::from_secs(parse_var("CONCIERGE_WORKER_HEARTBEAT_SECS", "2")?),
            ai: AiConfig::from_env()?,
            platform_url: var("CONCIERGE_PLATFORM_URL").map(|u| u.trim_end_matches('/').to_owned()),
            platform_token: var("CONCIERGE_PLATFORM_TOKEN"),
            platform_timeout: Duration::from_secs(parse_var("CONCIERGE_PLATFORM_TIMEOUT_SECS", "5")?),
            fixtures_dir: var("CONCIERGE_FIXTURES_DIR").unwrap_or_else(|| "fixtures".into()).into(),
            telegram: TelegramConfig::from_env(webhook_secret.as_deref())?,
            webhook_secret,
            metrics_bind: var("CONCIERGE_METRICS_BIND")
                .map(|bind| bind.parse().with_context(|| format!("CONCIERGE_METRICS_BIND={bind:?} is not host:port")))
                .transpose()?,
            admin_token: match var("CONCIERGE_ADMIN_TOKEN") {
                Some(token) if token.len() < 24 => bail!("CONCIERGE_ADMIN_TOKEN must be at least 24 characters long"),
                token => token,
            },
            metrics_token: match var("CONCIERGE_METRICS_TOKEN") {
                Some(token) if token.len() < 24 => bail!("CONCIERGE_METRICS_TOKEN must be at least 24 characters long"),
                token => token,
            },
        })
    }

    /// The database URL, or a clear error for the processes that cannot start their own.
    pub fn require_database_url(&self) -> anyhow::Result<&str> {
        match &self.database_url {
            Some(url) => Ok(url),
            None => bail!(
                "DATABASE_URL is not set. Point it at PostgreSQL, or run the all-in-one `concierge` \
                 binary, which starts a private cluster when DATABASE_URL is unset"
            ),
        }
    }

    /// The JWT secret, or a clear error.
    pub fn require_jwt_secret(&self) -> anyhow::Result<&str> {
        match &self.jwt_secret {
            Some(secret) if secret.len() >= 16 => Ok(secret),
            Some(_) => bail!("CONCIERGE_JWT_SECRET must be at least 16 characters long"),
            None => bail!("CONCIERGE_JWT_SECRET is not set; the API cannot verify platform tokens"),
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T>(name: &str, default: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    raw.parse().with_context(|| format!("{name}={raw:?} is not valid"))
}
