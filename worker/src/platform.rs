//! The host platform's API, which actions read (see README, "The host platform's API").
//!
//! Every request is a GET of a path under the configured base URL, for one user who is always
//! the conversation's owner; with a bearer token; no redirects (a redirect is an error, so no
//! request can end up on another host); a deadline; and a cap on the body size.

use std::time::Duration;

use concierge_shared::config::Secret;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest platform response accepted.
const MAX_BODY: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("the platform did not answer within {0:?}")]
    Timeout(Duration),
    #[error("not found on the platform")]
    NotFound,
    #[error("the platform answered HTTP {0}")]
    Status(u16),
    #[error("cannot reach the platform: {0}")]
    Transport(String),
    #[error("the platform's answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the platform's answer is not what was expected: {0}")]
    Malformed(String),
    #[error("the request would leave the platform's host")]
    OffHost,
    #[error("no platform API is configured")]
    NotConfigured,
}

pub struct PlatformClient {
    http: reqwest::Client,
    base: Option<url::Url>,
    token: Option<Secret>,
    timeout: Duration,
}

impl PlatformClient {
    pub fn new(base_url: Option<&str>, token: Option<Secret>, timeout: Duration) -> anyhow::Result<Self> {
        let base = base_url.map(|u| url::Url::parse(&format!("{}/", u.trim_end_matches('/')))).transpose()?;
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).connect_timeout(timeout).build()?;
        Ok(Self { http, base, token, timeout })
    }

    pub fn configured(&self) -> bool {
        self.base.is_some()
    }

    /// GET `path` (relative to the base URL) and parse the JSON body.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PlatformError> {
        let value = self.get_value(path).await?;
        serde_json::from_value(value).map_err(|e| PlatformError::Malformed(e.to_string()))
    }

    pub async fn get_value(&self, path: &str) -> Result<Value, PlatformError> {
        let base = self.base.as_ref().ok_or(PlatformError::NotConfigured)?;
        // A parameter "." or ".." (or its percent-encoded form, which URLs treat alike) would
        // move the request to another resource than the one named: nothing is there.
        let dot = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "." | ".." | "%2e" | "%2e." | ".%2e" | "%2e%2e");
        if path.split(['/', '?', '#']).any(dot) {
            return Err(PlatformError::NotFound);
        }
        let url = base.join(path.trim_start_matches('/')).map_err(|_| PlatformError::OffHost)?;
        if url.scheme() != base.scheme()
            || url.host() != base.host()
            || url.port_or_known_default() != base.port_or_known_default()
            || !url.path().starts_with(base.path())
        {
            return Err(PlatformError::OffHost);
        }
        tokio::time::timeout(self.timeout, self.fetch(url)).await.unwrap_or(Err(PlatformError::Timeout(self.timeout)))
    }

    async fn fetch(&self, url: url::Url) -> Result<Value, PlatformError> {
        let mut request = self.http.get(url).header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| PlatformError::Transport(e.to_string()))?;
        match response.status().as_u16() {
            200..=299 => {}
            404 => return Err(PlatformError::NotFound),
            status => return Err(PlatformError::Status(status)),
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| PlatformError::Transport(e.to_string()))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(PlatformError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| PlatformError::Malformed(e.to_string()))
    }
}

/// A path segment, percent-encoded.
pub fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}
