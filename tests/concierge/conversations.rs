//! Opening, listing, reading, closing and rating conversations.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, user_token};

#[tokio::test]
async fn a_visitor_opens_a_conversation_and_gets_tokens() {
    let app = TestApp::spawn().await;
    let (status, body) =
        app.post(None, "/conversations", json!({ "page_url": "https://lectio.ru/pay", "page_title": "Оплата" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "open");
    assert_eq!(body["mode"], "ai");
    assert_eq!(body["page_title"], "Оплата");
    assert!(body["visitor_token"].is_string());
    assert!(body["stream_token"]["token"].is_string());

    // The visitor token identifies the visitor from now on.
    let token = body["visitor_token"].as_str().unwrap();
    let (status, detail) = app.get(Some(token), &format!("/conversations/{}", body["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["messages"], json!([]));
}

#[tokio::test]
async fn a_user_lists_only_their_own_conversations_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let anna = user_token("anna");
    let boris = user_token("boris");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.open(Some(&anna)).await.id);
    }
    app.open(Some(&boris)).await;
    // A platform user's token carries no visitor token in the answer.
    let (_, created) = app.post(Some(&anna), "/conversations", json!({})).await;
    assert!(created.get("visitor_token").is_none());
    ids.push(created["id"].as_str().unwrap().to_owned());

    let (status, page) = app.get(Some(&anna), "/conversations?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let first: Vec<&str> = page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(first, [ids[3].as_str(), ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app.get(Some(&anna), &format!("/conversations/?limit=3&cursor={cursor}")).await;
    let rest: Vec<&str> = page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(rest, [ids[0].as_str()]);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn a_closed_conversation_refuses_messages_and_closing_twice_is_harmless() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/close/", conversation.id);
    let (status, body) = app.post(Some(&conversation.bearer), &path, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "closed");
    let (status, _) = app.post(Some(&conversation.bearer), &path, json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/messages", conversation.id),
            json!({ "content": "Алло?" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "conversation_closed");
    // Only the closing notice is stored, once.
    let stored = app.stored_messages(&conversation.id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, "system");
}

#[tokio::test]
async fn rating_needs_an_answer_a_valid_score_and_happens_once() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/rate", conversation.id);
    let (status, body) = app.post(Some(&conversation.bearer), &path, json!({ "rating": 5 })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "nothing_to_rate");

    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, "Как оплатить подписку?").await;
    sse.next_from("assistant").await;

    for bad in [json!({ "rating": 0 }), json!({ "rating": 6 })] {
        let (status, body) = app.post(Some(&conversation.bearer), &path, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["field"], "rating");
    }
    let (status, body) =
        app.post(Some(&conversation.bearer), &path, json!({ "rating": 4, "comment": "Помогло" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rating"], 4);
    let (status, body) = app.post(Some(&conversation.bearer), &path, json!({ "rating": 1 })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "already_rated");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.client.get(format!("http://{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(format!("http://{}/readyz/", app.addr)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
