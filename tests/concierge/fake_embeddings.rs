//! A deterministic OpenAI-compatible embeddings server on loopback.
//!
//! A text's vector has one axis per concept: words listed under a concept ("тугрик" and
//! "возврат" both mean money back) add to its axis, so texts that share no word can still be
//! close; every other word adds to an axis chosen by its hash, weakly. The test can make the
//! server fail, hang, answer with the wrong dimension, or hold requests until released, and
//! reads every request it got.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Dimensions of the fake's vectors.
pub const DIMS: usize = 16;

/// Concept axes and the word stems that point along them.
const CONCEPTS: &[&[&str]] = &[
    &["тугрик", "возврат", "вернут", "refund"],
    &["звук", "микрофон", "слыш"],
    &["запис", "видео"],
    &["оплат", "подписк", "карт"],
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    Normal,
    /// 500 to every request.
    Fail,
    /// Answer after this long.
    Hang(Duration),
    /// Vectors one component too long.
    WrongDimensions,
    /// Wait for [`FakeEmbeddings::release`] before answering.
    Held,
}

struct Inner {
    behaviour: Behaviour,
    /// (model, inputs) of every request.
    requests: Vec<(String, Vec<String>)>,
}

#[derive(Clone)]
pub struct FakeEmbeddings {
    /// Base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    gate: Arc<Semaphore>,
}

impl FakeEmbeddings {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner { behaviour: Behaviour::Normal, requests: Vec::new() }));
        let gate = Arc::new(Semaphore::new(0));
        let app = Router::new().route("/v1/embeddings", post(embed)).with_state((inner.clone(), gate.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner, gate }
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.inner.lock().unwrap().behaviour = behaviour;
    }

    /// Let the held requests through, and every later one.
    pub fn release(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Every request so far: (model, inputs).
    pub fn requests(&self) -> Vec<(String, Vec<String>)> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Every text embedded with `model`.
    pub fn texts(&self, model: &str) -> Vec<String> {
        self.requests().into_iter().filter(|(m, _)| m == model).flat_map(|(_, inputs)| inputs).collect()
    }

    pub fn forget(&self) {
        self.inner.lock().unwrap().requests.clear();
    }
}

/// The fake's vector for `text`.
pub fn vector(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMS];
    for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        match CONCEPTS.iter().position(|stems| stems.iter().any(|s| word.starts_with(s))) {
            Some(axis) => vector[axis] += 1.0,
            None => {
                let hash = word.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
                vector[CONCEPTS.len() + hash as usize % (DIMS - CONCEPTS.len())] += 0.1;
            }
        }
    }
    if vector.iter().all(|x| *x == 0.0) {
        vector[DIMS - 1] = 1.0;
    }
    vector
}

async fn embed(State((inner, gate)): State<(Arc<Mutex<Inner>>, Arc<Semaphore>)>, body: axum::Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => return (StatusCode::BAD_REQUEST, "input must be a string or strings").into_response(),
    };
    let behaviour = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push((model.clone(), inputs.clone()));
        inner.behaviour
    };
    match behaviour {
        Behaviour::Fail => return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"scripted\"}").into_response(),
        Behaviour::Hang(delay) => tokio::time::sleep(delay).await,
        Behaviour::Held => drop(gate.acquire().await.unwrap()),
        Behaviour::Normal | Behaviour::WrongDimensions => {}
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut embedding = vector(text);
            if behaviour == Behaviour::WrongDimensions {
                embedding.push(0.5);
            }
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    axum::Json(
        json!({ "object": "list", "model": model, "data": data, "usage": { "prompt_tokens": 1, "total_tokens": 1 } }),
    )
    .into_response()
}
