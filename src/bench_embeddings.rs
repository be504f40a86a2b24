//! A loopback embeddings server for `concierge bench`: an OpenAI-compatible `POST /embeddings`
//! that answers at once with deterministic vectors, so that the hybrid case measures
//! Concierge's own cost of a query's embedding (the HTTP round trip, parsing, the fused
//! search), not a model's speed. `--embeddings-url` measures a real server instead.

use axum::{Json, Router, routing::post};
use serde::Deserialize;
use serde_json::{Value, json};

/// Dimensions, as multilingual-e5-small has.
const DIMS: usize = 384;

#[derive(Deserialize)]
struct Request {
    input: Input,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// Serve on an ephemeral loopback port; returns the base URL (`…/v1`).
pub async fn serve() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new().route("/v1/embeddings", post(embeddings));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/v1"))
}

async fn embeddings(Json(request): Json<Request>) -> Json<Value> {
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| json!({ "object": "embedding", "index": index, "embedding": vector(text) }))
        .collect();
    Json(json!({ "object": "list", "data": data, "model": "bench" }))
}

/// Hashed character trigrams of the lower-cased words, normalised: texts that share words
/// point the same way.
fn vector(text: &str) -> Vec<f32> {
    let mut vector = vec![0f32; DIMS];
    for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let chars: Vec<char> = format!("^{word}$").chars().collect();
        for gram in chars.windows(3) {
            let hash =
                gram.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3));
            let sign = if hash & 1 == 0 { 1.0 } else { -1.0 };
            vector[(hash >> 1) as usize % DIMS] += sign;
        }
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
    } else {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

#[cfg(test)]
mod tests {
    #[test]
    fn vectors_are_unit_length_and_closer_for_shared_words() {
        let a = super::vector("как оплатить подписку");
        let b = super::vector("оплатить подписку картой");
        let c = super::vector("нет звука на уроке");
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4);
        assert!(dot(&a, &b) > dot(&a, &c));
        assert_eq!(super::vector(""), super::vector("?!"));
    }
}
