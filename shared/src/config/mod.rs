//! Configuration: every setting is an environment variable (and the same-named command-line
//! option), declared once in [`Settings`] with `clap`; its doc comment is the `--help` text and
//! README.md's table lists the same variables (a test compares them). [`Settings::resolve`]
//! checks the values and derives the [`Config`] the processes run with. The defaults are those
//! of the single-machine embedded setup.
//!
//! Secrets are [`Secret`]s, so `Config`'s `Debug` shows every setting but them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser};

pub use crate::secret::Secret;

mod ai;
mod email;
mod embeddings;
mod limits;
mod storage;
mod telegram;
mod transcribe;

pub use ai::{AiConfig, AiSettings, DecisionFormat, Provider};
pub use email::{EmailConfig, EmailSettings};
pub use embeddings::{EmbeddingsConfig, EmbeddingsSettings};
pub use limits::{LimitsConfig, LimitsSettings, TrustedProxies};
pub use storage::{MAX_ATTACHMENT_MB, S3Config, StorageConfig, StorageSettings};
use telegram::valid_webhook_secret;
pub use telegram::{FILE_UPLOAD_LIMIT, PHOTO_UPLOAD_LIMIT, SlaHours, TelegramConfig, TelegramMode, TelegramSettings};
pub use transcribe::{TranscribeConfig, TranscribeSettings};

/// The settings as given (environment or command line), before they are checked and combined.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Configuration (environment variables)")]
pub struct Settings {
    /// PostgreSQL to use. Unset: `concierge` starts a private cluster; `concierge-api` and
    /// `concierge-worker` refuse to start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Where the API listens.
    #[arg(long, env = "CONCIERGE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The host platform's HS256 secret (at least 16 characters); Concierge derives the keys of
    /// its own visitor and stream tokens from it. Required by `concierge-api`; `concierge`
    /// generates one into the data folder when unset.
    #[arg(long, env = "CONCIERGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// The `iss` platform tokens must carry. Unset: not checked.
    #[arg(long, env = "CONCIERGE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` platform tokens must carry (one of theirs, when they list several). Unset: not
    /// checked.
    #[arg(long, env = "CONCIERGE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The private cluster (`pg/`, `postgres.log`) and generated secrets.
    #[arg(long, env = "CONCIERGE_DATA_DIR", default_value = ".concierge")]
    pub data_dir: PathBuf,
    /// The Markdown knowledge base.
    #[arg(long, env = "CONCIERGE_KNOWLEDGE_DIR", default_value = "knowledge")]
    pub knowledge_dir: PathBuf,
    /// Never write into CONCIERGE_KNOWLEDGE_DIR (1 or true): approved knowledge drafts are kept
    /// in the database instead, for a directory that is deployed read-only or that each worker
    /// host has its own copy of. Unset: written as files, or kept in the database when the
    /// directory refuses the write.
    #[arg(long, env = "CONCIERGE_KNOWLEDGE_READ_ONLY", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub knowledge_read_only: bool,
    /// Pool size of one process; two of a worker's are LISTEN connections (job inserts,
    /// knowledge updates).
    #[arg(long, env = "CONCIERGE_DB_MAX_CONNECTIONS", default_value_t = 30)]
    pub db_max_connections: u32,
    /// The longest user message accepted, in characters.
    #[arg(long, env = "CONCIERGE_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,
    /// How often idle streams get a heartbeat comment line, in seconds.
    #[arg(long, env = "CONCIERGE_SSE_HEARTBEAT_SECS", default_value_t = 15)]
    pub sse_heartbeat_secs: u64,
    /// Lifetime of a stream token, in seconds.
    #[arg(long, env = "CONCIERGE_STREAM_TOKEN_TTL_SECS", default_value_t = 600)]
    pub stream_token_ttl_secs: u64,
    /// Lifetime of a visitor token, in days.
    #[arg(long, env = "CONCIERGE_VISITOR_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub visitor_token_ttl_days: u64,
    /// Attempts before a job's failure is final.
    #[arg(long, env = "CONCIERGE_JOB_MAX_ATTEMPTS", default_value_t = 5)]
    pub job_max_attempts: u32,
    /// How often workers say they are alive, in seconds; the jobs of a worker silent for three
    /// heartbeats go back to the queue.
    #[arg(long, env = "CONCIERGE_WORKER_HEARTBEAT_SECS", default_value_t = 2)]
    pub worker_heartbeat_secs: u64,
    /// The host platform's API, which actions read. Unset: `concierge` serves a demo platform
    /// built from `fixtures/demo_platform.json`.
    #[arg(long, env = "CONCIERGE_PLATFORM_URL")]
    pub platform_url: Option<String>,
    /// Serve the demo platform, its demo page, `/demo/users` and their tokens even though
    /// CONCIERGE_BIND is not a loopback address (`1`/`true`). Without it the demo runs only on
    /// loopback; never with CONCIERGE_PLATFORM_URL.
    #[arg(long, env = "CONCIERGE_DEMO", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    /// Sent as a bearer token to the platform.
    #[arg(long, env = "CONCIERGE_PLATFORM_TOKEN", hide_env_values = true)]
    pub platform_token: Option<Secret>,
    /// One platform request, in seconds.
    #[arg(long, env = "CONCIERGE_PLATFORM_TIMEOUT_SECS", default_value_t = 5)]
    pub platform_timeout_secs: u64,
    /// Action definitions and demo data.
    #[arg(long, env = "CONCIERGE_FIXTURES_DIR", default_value = "fixtures")]
    pub fixtures_dir: PathBuf,
    /// A static administrator bearer token (at least 24 characters), for the console where the
    /// platform issues no admin tokens.
    #[arg(long, env = "CONCIERGE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Where a worker process serves Prometheus `/metrics` (host:port); the API serves its own
    /// on CONCIERGE_BIND.
    #[arg(long, env = "CONCIERGE_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// A bearer token (at least 24 characters) that `/metrics` requires, on the API and on
    /// workers. Unset: `/metrics` is open.
    #[arg(long, env = "CONCIERGE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Days a closed conversation is kept after its last activity; then a worker deletes it
    /// with its messages, action runs, model calls and Telegram topic (daily metrics stay).
    /// Unset: kept for ever.
    #[arg(long, env = "CONCIERGE_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: Option<u32>,
    /// Store page URLs with their query and fragment (1 or true); by default they are cut off
    /// before the URL is stored, shown to the model or posted to Telegram.
    #[arg(long, env = "CONCIERGE_KEEP_PAGE_QUERY", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub keep_page_query: bool,
    #[command(flatten)]
    pub ai: AiSettings,
    #[command(flatten)]
    pub embeddings: EmbeddingsSettings,
    #[command(flatten)]
    pub telegram: TelegramSettings,
    #[command(flatten)]
    pub limits: LimitsSettings,
    #[command(flatten)]
    pub email: EmailSettings,
    #[command(flatten)]
    pub transcribe: TranscribeSettings,
    #[command(flatten)]
    pub storage: StorageSettings,
}

/// Said below every binary's `--help`: what is read from the environment besides the settings.
pub const HELP_FOOTER: &str = "Every setting can also be given as its environment variable. \
     Logging: RUST_LOG filters the log (default: info).";

/// Parse a binary's command line and environment. A variable set to a blank value counts as
/// unset (as in a compose file's `VAR=`), so it takes its default instead of failing to parse.
pub fn parse_cli<P: Parser>() -> P {
    let mut command = P::command();
    let blank: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()))
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in blank {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    let mut matches = command.get_matches();
    P::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.format(&mut P::command()).exit())
}

/// Settings every Concierge process understands, checked and combined. A process ignores the
/// ones it does not use. See [`Settings`] for what each one means.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` lets the all-in-one binary start its own PostgreSQL.
    pub database_url: Option<Secret>,
    pub bind: SocketAddr,
    pub jwt_secret: Option<Secret>,
    /// The issuer and audience platform tokens must name, when set.
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub data_dir: PathBuf,
    pub knowledge_dir: PathBuf,
    /// Approved knowledge drafts go to the database, never into `knowledge_dir`.
    pub knowledge_read_only: bool,
    pub db_max_connections: u32,
    pub max_message_chars: usize,
    pub sse_heartbeat: Duration,
    pub stream_token_ttl: Duration,
    pub visitor_token_ttl: Duration,
    pub job_max_attempts: u32,
    pub worker_heartbeat: Duration,
    /// The language model that decides, if any.
    pub ai: AiConfig,
    /// The embeddings server, if any; without one the knowledge search is lexical only.
    pub embeddings: Option<EmbeddingsConfig>,
    /// `None`: the all-in-one binary serves a demo platform (see [`Config::demo_mode`]).
    pub platform_url: Option<String>,
    /// The demo may be served on a non-loopback address.
    pub demo: bool,
    pub platform_token: Option<Secret>,
    pub platform_timeout: Duration,
    pub fixtures_dir: PathBuf,
    /// The support group in Telegram, when a bot is configured.
    pub telegram: Option<TelegramConfig>,
    pub metrics_bind: Option<SocketAddr>,
    pub admin_token: Option<Secret>,
    pub metrics_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// Rate limits and quotas of the API.
    pub limits: LimitsConfig,
    /// How long closed conversations are kept; `None`: for ever.
    pub retention: Option<Duration>,
    /// Keep the query and fragment of page URLs.
    pub keep_page_query: bool,
    /// The SMTP server for replies by email; `None`: nobody is offered one.
    pub email: Option<EmailConfig>,
    /// The speech-to-text server for voice messages; `None`: they are not transcribed.
    pub transcribe: Option<TranscribeConfig>,
    /// Where attachment files are kept.
    pub storage: StorageConfig,
    /// The largest attachment file accepted (`CONCIERGE_MAX_ATTACHMENT_MB`), in bytes.
    pub max_attachment_bytes: usize,
}

impl Settings {
    /// Check the settings and combine them into the configuration the processes run with.
    pub fn resolve(self) -> anyhow::Result<Config> {
        if let Some(secret) = &self.telegram.webhook_secret
            && !valid_webhook_secret(secret.expose())
        {
            bail!(
                "CONCIERGE_WEBHOOK_SECRET must be 16-256 characters of A-Z, a-z, 0-9, _ and - (generate one: `openssl rand -hex 32`)"
            );
        }
        let long_enough = |name: &str, token: Option<Secret>| match token {
            Some(token) if token.expose().len() < 24 => bail!("{name} must be at least 24 characters long"),
            token => Ok(token),
        };
        let webhook_secret = self.telegram.webhook_secret.clone();
        let transcribe = self.transcribe.resolve(self.ai.openai_api_key.as_ref())?;
        let (storage, max_attachment_bytes) = self.storage.resolve()?;
        Ok(Config {
            database_url: self.database_url,
            bind: self.bind,
            jwt_secret: self.jwt_secret,
            jwt_issuer: self.jwt_issuer.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            jwt_audience: self.jwt_audience.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            data_dir: self.data_dir,
            knowledge_dir: self.knowledge_dir,
            knowledge_read_only: self.knowledge_read_only,
            db_max_connections: self.db_max_connections,
            max_message_chars: self.max_message_chars,
            sse_heartbeat: Duration::from_secs(self.sse_heartbeat_secs),
            stream_token_ttl: Duration::from_secs(self.stream_token_ttl_secs),
            visitor_token_ttl: Duration::from_secs(86_400 * self.visitor_token_ttl_days),
            job_max_attempts: self.job_max_attempts,
            worker_heartbeat: Duration::from_secs(self.worker_heartbeat_secs),
            embeddings: self.embeddings.resolve(self.ai.openai_api_key.as_ref())?,
            ai: self.ai.resolve(),
            platform_url: self.platform_url.map(|u| u.trim_end_matches('/').to_owned()),
            platform_token: self.platform_token,
            demo: self.demo,
            platform_timeout: Duration::from_secs(self.platform_timeout_secs),
            fixtures_dir: self.fixtures_dir,
            telegram: self.telegram.resolve()?,
            webhook_secret,
            limits: self.limits.resolve()?,
            metrics_bind: self
                .metrics_bind
                .map(|bind| bind.parse().with_context(|| format!("CONCIERGE_METRICS_BIND={bind:?} is not host:port")))
                .transpose()?,
            admin_token: long_enough("CONCIERGE_ADMIN_TOKEN", self.admin_token)?,
            metrics_token: long_enough("CONCIERGE_METRICS_TOKEN", self.metrics_token)?,
            retention: self.retention_days.map(|days| Duration::from_secs(86_400 * u64::from(days))),
            keep_page_query: self.keep_page_query,
            email: self.email.resolve()?,
            transcribe,
            storage,
            max_attachment_bytes,
        })
    }
}

impl Config {
    /// The database URL, or a clear error for the processes that cannot start their own.
    pub fn require_database_url(&self) -> anyhow::Result<&str> {
        match &self.database_url {
            Some(url) => Ok(url.expose()),
            None => bail!(
                "DATABASE_URL is not set. Point it at PostgreSQL, or run the all-in-one `concierge` \
                 binary, which starts a private cluster when DATABASE_URL is unset"
            ),
        }
    }

    /// Whether the all-in-one binary serves the demo platform, with its demo users and the
    /// tokens it signs for them: only without CONCIERGE_PLATFORM_URL, and only on a loopback
    /// address unless CONCIERGE_DEMO is set, since anyone who reaches `/demo/users` gets an
    /// administrator's token. Anything else is a configuration to refuse.
    pub fn demo_mode(&self) -> anyhow::Result<bool> {
        match (&self.platform_url, self.demo) {
            (Some(_), true) => bail!(
                "CONCIERGE_DEMO is set together with CONCIERGE_PLATFORM_URL: the demo platform never runs beside \
                 a real one. Unset CONCIERGE_DEMO"
            ),
            (Some(_), false) => Ok(false),
            (None, true) => Ok(true),
            (None, false) if self.bind.ip().is_loopback() => Ok(true),
            (None, false) => bail!(
                "CONCIERGE_BIND={} is not a loopback address and CONCIERGE_PLATFORM_URL is not set. Without a \
                 platform Concierge serves a demo one, whose /demo/users page hands out tokens (an \
                 administrator's among them) to anyone who can reach it. Set CONCIERGE_PLATFORM_URL and \
                 CONCIERGE_PLATFORM_TOKEN to the host platform's API, bind 127.0.0.1, or set CONCIERGE_DEMO=1 to \
                 show the demo on this address anyway",
                self.bind
            ),
        }
    }

    /// The JWT secret, or a clear error.
    pub fn require_jwt_secret(&self) -> anyhow::Result<&str> {
        match &self.jwt_secret {
            Some(secret) if secret.expose().len() >= 16 => Ok(secret.expose()),
            Some(_) => bail!("CONCIERGE_JWT_SECRET must be at least 16 characters long"),
            None => bail!("CONCIERGE_JWT_SECRET is not set; the API cannot verify platform tokens"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        let mut command = Cli::command();
        // Ignore the environment of whoever runs the tests.
        for arg in Cli::command().get_arguments() {
            command = command.mut_arg(arg.get_id().clone(), |arg| arg.env(None));
        }
        let matches = command.try_get_matches_from(std::iter::once("concierge").chain(args.iter().copied())).unwrap();
        Cli::from_arg_matches(&matches).unwrap().settings
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let config = settings(&[]).resolve().unwrap();
        assert_eq!(config.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from(".concierge"));
        assert_eq!(config.db_max_connections, 30);
        assert_eq!(config.visitor_token_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(config.ai.provider, Provider::Offline);
        assert_eq!(config.ai.model, "gpt-4o-mini");
        assert!(config.ai.stream);
        assert!(config.telegram.is_none() && config.database_url.is_none());
        assert!(config.retention.is_none() && !config.keep_page_query);
        assert!(config.email.is_none());
        assert_eq!((config.storage, config.max_attachment_bytes), (StorageConfig::Local, 10 * 1024 * 1024));
    }

    #[test]
    fn storage_settings_are_checked_at_start_up() {
        let s3 = [
            "--storage",
            "s3",
            "--s3-bucket",
            "files",
            "--s3-endpoint",
            "http://127.0.0.1:9000/",
            "--s3-allow-http",
            "1",
            "--s3-path-style",
            "true",
            "--s3-access-key-id",
            "key-id",
            "--s3-secret-access-key",
            "key-secret",
            "--max-attachment-mb",
            "50",
        ];
        let config = settings(&s3).resolve().unwrap();
        let StorageConfig::S3(bucket) = config.storage else { panic!("S3 storage expected") };
        assert_eq!(bucket.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(bucket.path_style && bucket.allow_http && bucket.credentials.is_some());
        assert_eq!((bucket.bucket.as_str(), bucket.region.as_str()), ("files", "us-east-1"));
        assert_eq!(config.max_attachment_bytes, 50 * 1024 * 1024);
        let refused = |args: &[&str], variable: &str| {
            let error = settings(args).resolve().unwrap_err().to_string();
            assert!(error.contains(variable), "{args:?}: {error}");
        };
        refused(&["--storage", "s3"], "CONCIERGE_S3_BUCKET");
        refused(&["--storage", "gcs"], "CONCIERGE_STORAGE");
        refused(
            &["--storage", "s3", "--s3-bucket", "b", "--s3-endpoint", "http://minio:9000"],
            "CONCIERGE_S3_ALLOW_HTTP",
        );
        refused(&["--storage", "s3", "--s3-bucket", "b", "--s3-access-key-id", "id"], "CONCIERGE_S3_SECRET_ACCESS_KEY");
        refused(&["--max-attachment-mb", "0"], "CONCIERGE_MAX_ATTACHMENT_MB");
        refused(&["--max-attachment-mb", "51"], "CONCIERGE_MAX_ATTACHMENT_MB");
    }

    #[test]
    fn smtp_needs_a_url_lettre_reads_and_a_sender() {
        let config =
            settings(&["--smtp-url", "smtps://user:pw@mail.example.com:465", "--smtp-from", "Lectio <help@lectio.ru>"])
                .resolve()
                .unwrap();
        let email = config.email.unwrap();
        assert_eq!(email.from.to_string(), "Lectio <help@lectio.ru>");
        let error = settings(&["--smtp-url", "smtp://mail.example.com"]).resolve().unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_SMTP_FROM"), "{error}");
        let error = settings(&["--smtp-from", "help@lectio.ru"]).resolve().unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_SMTP_URL"), "{error}");
        let error = settings(&["--smtp-url", "http://pw-0009@mail.example.com", "--smtp-from", "help@lectio.ru"])
            .resolve()
            .unwrap_err();
        assert!(error.to_string().contains("smtp://") && !error.to_string().contains("pw-0009"), "{error}");
        let error = settings(&["--smtp-url", "smtp://mail.example.com", "--smtp-from", "not an address"])
            .resolve()
            .unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_SMTP_FROM"), "{error}");
    }

    #[test]
    fn retention_is_days_and_the_page_query_setting_takes_1() {
        let config = settings(&["--retention-days", "30", "--keep-page-query", "1"]).resolve().unwrap();
        assert_eq!(config.retention, Some(Duration::from_secs(30 * 86_400)));
        assert!(config.keep_page_query);
        let cli = Cli::command().try_get_matches_from(["concierge", "--retention-days", "0"]);
        assert!(cli.is_err(), "zero days is refused");
    }

    #[test]
    fn the_provider_follows_the_key_and_telegram_the_secret() {
        let config = settings(&[
            "--deepseek-api-key",
            "sk-deepseek",
            "--support-bot-token",
            "123:abc",
            "--support-notifications-chat-id",
            "-1001234",
            "--webhook-secret",
            "hook_secret-0123456789",
            "--telegram-operators",
            "1, 2,",
            "--llm-stream",
            "false",
        ])
        .resolve()
        .unwrap();
        assert_eq!(config.ai.provider, Provider::Deepseek);
        assert_eq!(config.ai.base_url, "https://api.deepseek.com/v1");
        assert_eq!(config.ai.api_key.as_ref().map(Secret::expose), Some("sk-deepseek"));
        assert!(!config.ai.stream);
        let telegram = config.telegram.unwrap();
        assert_eq!((telegram.chat_id, telegram.mode), (-1_001_234, TelegramMode::Webhook));
        assert_eq!(telegram.operators, vec![1, 2]);
        assert_eq!(telegram.sla, Some(std::time::Duration::from_secs(600)), "ten minutes by default");
        assert_eq!(telegram.sla_hours, SlaHours::Duty);
        assert!(telegram.on_duty.is_empty());
    }

    #[test]
    fn the_sla_names_who_is_on_duty() {
        let telegram = |extra: &[&str]| {
            let mut args = vec!["--support-bot-token", "123:abc", "--support-notifications-chat-id", "-1001234"];
            args.extend_from_slice(extra);
            settings(&args).resolve().map(|config| config.telegram.unwrap())
        };
        let config = telegram(&["--telegram-on-duty", "@olga_support, ivan_petrov", "--sla-minutes", "5"]).unwrap();
        assert_eq!(config.on_duty, vec!["olga_support", "ivan_petrov"]);
        assert_eq!(config.sla, Some(std::time::Duration::from_secs(300)));
        let config = telegram(&["--sla-minutes", "0", "--sla-hours", "always"]).unwrap();
        assert_eq!((config.sla, config.sla_hours), (None, SlaHours::Always));
        let error = telegram(&["--telegram-on-duty", "olga support"]).unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_TELEGRAM_ON_DUTY"), "{error}");
    }

    #[test]
    fn transcription_takes_openais_key_only_on_openai_and_vision_takes_1() {
        let config = settings(&[]).resolve().unwrap();
        assert!(config.transcribe.is_none() && !config.ai.vision);
        let openai = ["--openai-api-key", "sk-openai", "--transcribe-url", "https://api.openai.com/v1/"];
        let transcribe = settings(&openai).resolve().unwrap().transcribe.unwrap();
        assert_eq!(transcribe.base_url, "https://api.openai.com/v1");
        assert_eq!(transcribe.model, "whisper-1");
        assert_eq!(transcribe.api_key.as_ref().map(Secret::expose), Some("sk-openai"));
        let local = ["--openai-api-key", "sk-openai", "--transcribe-url", "http://127.0.0.1:9000/v1"];
        let transcribe = settings(&local).resolve().unwrap().transcribe.unwrap();
        assert!(transcribe.api_key.is_none(), "OpenAI's key goes to OpenAI only");
        let keyed = [
            "--transcribe-url",
            "http://127.0.0.1:9000/v1",
            "--transcribe-api-key",
            "local-key",
            "--transcribe-model",
            "large-v3",
        ];
        let transcribe = settings(&keyed).resolve().unwrap().transcribe.unwrap();
        assert_eq!(
            (transcribe.model.as_str(), transcribe.api_key.as_ref().map(Secret::expose)),
            ("large-v3", Some("local-key"))
        );
        let error = settings(&["--transcribe-url", "ftp://example.com"]).resolve().unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_TRANSCRIBE_URL"), "{error}");
        assert!(settings(&["--llm-vision", "1"]).resolve().unwrap().ai.vision);
        let error =
            settings(&["--support-bot-token", "1:a", "--support-notifications-chat-id", "-1", "--public-url", "x"])
                .resolve()
                .unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_PUBLIC_URL"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let error = settings(&["--admin-token", "short"]).resolve().unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_ADMIN_TOKEN"), "{error}");
        let error = settings(&["--webhook-secret", "has space"]).resolve().unwrap_err();
        assert!(error.to_string().contains("CONCIERGE_WEBHOOK_SECRET"), "{error}");
        // Telegram would take a one-character secret; anyone could guess it.
        let error = settings(&["--webhook-secret", "short_secret-15"]).resolve().unwrap_err();
        assert!(error.to_string().contains("16-256"), "{error}");
        assert!(settings(&["--webhook-secret", "long_secret-0016"]).resolve().is_ok());
        let error = settings(&["--support-bot-token", "123:abc"]).resolve().unwrap_err();
        assert!(error.to_string().contains("SUPPORT_NOTIFICATIONS_CHAT_ID"), "{error}");
    }

    #[test]
    fn the_demo_runs_on_loopback_or_when_asked_and_never_beside_a_platform() {
        let demo = |args: &[&str]| settings(args).resolve().unwrap().demo_mode();
        assert!(demo(&[]).unwrap());
        assert!(demo(&["--bind", "[::1]:8080"]).unwrap());
        let error = demo(&["--bind", "0.0.0.0:8080"]).unwrap_err().to_string();
        assert!(error.contains("CONCIERGE_PLATFORM_URL") && error.contains("CONCIERGE_DEMO=1"), "{error}");
        assert!(demo(&["--bind", "0.0.0.0:8080", "--demo", "1"]).unwrap());
        assert!(!demo(&["--bind", "0.0.0.0:8080", "--platform-url", "https://lectio.example.com/api"]).unwrap());
        let error = demo(&["--platform-url", "https://lectio.example.com/api", "--demo", "true"]).unwrap_err();
        assert!(error.to_string().contains("Unset CONCIERGE_DEMO"), "{error}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = [
            "postgres://u:db-password-0001@host/db",
            "jwt-secret-value-0002-xxxxxxxx",
            "platform-token-value-0003",
            "admin-token-value-0004-xxxxxxxxx",
            "metrics-token-value-0005-xxxxxxx",
            "webhook-secret-value-0006",
            "openai-key-value-0007",
            "bot-token-value-0008",
            "smtp-password-0009",
        ];
        let config = settings(&[
            "--database-url",
            secrets[0],
            "--jwt-secret",
            secrets[1],
            "--platform-token",
            secrets[2],
            "--admin-token",
            secrets[3],
            "--metrics-token",
            secrets[4],
            "--webhook-secret",
            secrets[5],
            "--openai-api-key",
            secrets[6],
            "--support-bot-token",
            secrets[7],
            "--support-notifications-chat-id",
            "-100",
            "--smtp-url",
            "smtps://mailer:smtp-password-0009@mail.example.com",
            "--smtp-from",
            "help@lectio.ru",
        ])
        .resolve()
        .unwrap();
        let printed = format!("{config:?} {config:#?}");
        for secret in secrets {
            assert!(!printed.contains(secret), "{secret} is printed: {printed}");
        }
        assert!(printed.contains("[redacted]"), "{printed}");
    }
}
