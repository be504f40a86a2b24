//! Conversations are private: every route answers 404 to anyone but the owner, exactly as
//! for an id that does not exist, and 401 without credentials.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Sse, TestApp, platform_token, user_token};

#[tokio::test]
async fn other_users_and_visitors_see_404_everywhere() {
    let app = TestApp::spawn().await;
    let anna = user_token("anna");
    let conversation = app.open(Some(&anna)).await;
    let other_visitor = app.open(None).await.bearer;
    let missing = uuid::Uuid::new_v4().to_string();

    for intruder in [user_token("boris"), other_visitor] {
        for id in [conversation.id.as_str(), missing.as_str()] {
            for path in ["", "/messages", "/stream", "/stream-token", "/close", "/rate"] {
                let url = format!("/conversations/{id}{path}");
                let (status, body) = match path {
                    "" | "/messages" | "/stream" => app.get(Some(&intruder), &url).await,
                    "/rate" => app.post(Some(&intruder), &url, json!({ "rating": 5 })).await,
                    _ => app.post(Some(&intruder), &url, json!({})).await,
                };
                assert_eq!(status, StatusCode::NOT_FOUND, "{url}: {body}");
                assert_eq!(body["error"]["code"], "not_found");
            }
            let (status, _) = app
                .post(Some(&intruder), &format!("/conversations/{id}/messages"), json!({ "content": "чужое" }))
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
    }
    // Nothing was written into Anna's conversation.
    assert!(app.stored_messages(&conversation.id).await.is_empty());
    let (_, list) = app.get(Some(&user_token("boris")), "/conversations").await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn missing_or_bad_credentials_are_401() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let id = &conversation.id;
    let expired = platform_token(json!({ "sub": "anna", "role": "user", "exp": crate::helpers::now() - 3600 }));
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "anna", "exp": crate::helpers::now() + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret"),
    )
    .unwrap();
    let none_alg = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(format!(r#"{{"sub":"anna","exp":{}}}"#, crate::helpers::now() + 3600).as_bytes())
    );
    for token in [None, Some(expired.as_str()), Some(wrong_key.as_str()), Some(none_alg.as_str()), Some("garbage")] {
        let (status, body) = app.get(token, &format!("/conversations/{id}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // A stream token is not a bearer token.
    let (status, _) = app.get(Some(&conversation.stream_token), &format!("/conversations/{id}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_stream_token_opens_only_its_own_conversation() {
    let app = TestApp::spawn().await;
    let mine = app.open(None).await;
    let other = app.open(None).await;
    let url = app.url(&format!("/conversations/{}/stream?token={}", other.id, mine.stream_token));
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The owner's bearer token works on the stream too (for clients that can set headers).
    let url = app.url(&format!("/conversations/{}/stream", mine.id));
    let response = app.client.get(url).bearer_auth(&mine.bearer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Without any credential: 401.
    let url = app.url(&format!("/conversations/{}/stream", mine.id));
    assert_eq!(app.client.get(url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let url = app.url(&format!("/conversations/{}/stream?token={}", mine.id, mine.stream_token));
    let _ = Sse::connect(&app.client, &url, None).await;
}

fn base64url(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
