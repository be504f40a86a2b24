//! The speech-to-text server's settings: as given ([`TranscribeSettings`]) and as the workers use
//! them ([`TranscribeConfig`]). Unset, voice messages are not transcribed: in AI mode the user is
//! asked to type, and operators listen to them.

use std::time::Duration;

use clap::Args;

use crate::secret::Secret;

/// OpenAI's API, whose key (OPENAI_API_KEY) a transcription server there takes by default.
const OPENAI_URL: &str = "https://api.openai.com/";
const DEFAULT_MODEL: &str = "whisper-1";

/// The transcription server's settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Transcription (environment variables)")]
pub struct TranscribeSettings {
    /// Base URL of an OpenAI-compatible `POST /audio/transcriptions` endpoint (OpenAI's
    /// https://api.openai.com/v1, or a local whisper server). Unset: voice messages are not
    /// transcribed.
    #[arg(long, env = "CONCIERGE_TRANSCRIBE_URL")]
    pub transcribe_url: Option<String>,
    /// The speech-to-text model.
    #[arg(long, env = "CONCIERGE_TRANSCRIBE_MODEL", default_value = DEFAULT_MODEL)]
    pub transcribe_model: String,
    /// The transcription server's key. Default: OPENAI_API_KEY when the URL is OpenAI's.
    #[arg(long, env = "CONCIERGE_TRANSCRIBE_API_KEY", hide_env_values = true)]
    pub transcribe_api_key: Option<Secret>,
    /// One transcription request, in seconds.
    #[arg(long, env = "CONCIERGE_TRANSCRIBE_TIMEOUT_SECS", default_value_t = 60)]
    pub transcribe_timeout_secs: u64,
}

/// Where voice messages are transcribed.
#[derive(Debug, Clone)]
pub struct TranscribeConfig {
    /// Base URL, without a trailing slash; requests go to `{base_url}/audio/transcriptions`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    /// One request, upload included.
    pub timeout: Duration,
}

impl TranscribeSettings {
    /// `openai_key`: OPENAI_API_KEY, the default key for OpenAI's endpoint.
    pub(super) fn resolve(self, openai_key: Option<&Secret>) -> anyhow::Result<Option<TranscribeConfig>> {
        let Some(url) = self.transcribe_url.map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let parsed = url::Url::parse(&url)
            .map_err(|error| anyhow::anyhow!("CONCIERGE_TRANSCRIBE_URL={url:?} is not a URL: {error}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "CONCIERGE_TRANSCRIBE_URL={url:?} must be an http(s) URL"
        );
        let model = self.transcribe_model.trim().to_owned();
        anyhow::ensure!(!model.is_empty(), "CONCIERGE_TRANSCRIBE_MODEL must not be empty");
        anyhow::ensure!(
            (1..=600).contains(&self.transcribe_timeout_secs),
            "CONCIERGE_TRANSCRIBE_TIMEOUT_SECS must be between 1 and 600"
        );
        let api_key = self.transcribe_api_key.or_else(|| {
            let openai = url.starts_with(OPENAI_URL);
            openai.then(|| openai_key.cloned()).flatten()
        });
        Ok(Some(TranscribeConfig {
            base_url: url.trim_end_matches('/').to_owned(),
            model,
            api_key,
            timeout: Duration::from_secs(self.transcribe_timeout_secs),
        }))
    }
}

impl TranscribeConfig {
    /// A server at `base_url` with the default model and no key.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: DEFAULT_MODEL.into(),
            api_key: None,
            timeout: Duration::from_secs(60),
        }
    }
}
