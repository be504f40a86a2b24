//! An OpenAI-compatible speech-to-text server on loopback (`POST /v1/audio/transcriptions`,
//! multipart `file` + `model`, answering `{"text": …}`). It answers every recording with the
//! transcript the test set, can fail the next requests with 500 or refuse them with 400, and
//! keeps every request it got.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;

use crate::fake_telegram::{Upload, parse_multipart};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub file: Upload,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    transcript: Mutex<String>,
    requests: Mutex<Vec<Request>>,
    /// Answer the next N requests with 500.
    fail: AtomicUsize,
    /// Answer every request with 400 (audio the server cannot read).
    refuse: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeTranscribe {
    /// Base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeTranscribe {
    pub async fn start(transcript: &str) -> Self {
        let inner = Arc::new(Inner::default());
        *inner.transcript.lock().unwrap() = transcript.to_owned();
        let app = Router::new().route("/v1/audio/transcriptions", post(transcribe)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Fail the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.inner.fail.store(n, Ordering::SeqCst);
    }

    /// Refuse every request from now on with 400.
    pub fn refuse_all(&self) {
        self.inner.refuse.store(1, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.requests.lock().unwrap().clone()
    }
}

async fn transcribe(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("multipart/form-data"), "transcriptions are multipart uploads: {content_type}");
    let (fields, uploads) = parse_multipart(content_type, &body);
    let file = uploads.into_iter().find(|u| u.field == "file").expect("the recording is the `file` field");
    let model = fields["model"].as_str().unwrap_or_default().to_owned();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    inner.requests.lock().unwrap().push(Request { model, file, authorization });
    if inner.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": { "message": "overloaded" } })))
            .into_response();
    }
    if inner.refuse.load(Ordering::SeqCst) > 0 {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": { "message": "Invalid file format." } })))
            .into_response();
    }
    let text = inner.transcript.lock().unwrap().clone();
    Json(json!({ "text": text })).into_response()
}
