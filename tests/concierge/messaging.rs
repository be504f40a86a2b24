//! Messages in, answers out over SSE: the offline engine answers from the knowledge base,
//! clarifies, escalates; streams resume without gaps or duplicates; resends are idempotent.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, WAIT, wait_until};

#[tokio::test]
async fn a_question_gets_an_answer_from_the_knowledge_base_over_sse() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    let sent = app.say(&conversation, "Как оплатить подписку?").await;

    let echo = sse.next().await;
    assert_eq!(echo.event, "message");
    assert_eq!(echo.id, Some(1));
    assert_eq!(echo.data["id"], sent["id"]);
    assert_eq!(echo.data["role"], "user");

    let answer = sse.next().await;
    assert_eq!(answer.id, Some(2));
    assert_eq!(answer.data["role"], "assistant");
    assert_eq!(answer.data["reply_to"], sent["id"]);
    assert_eq!(answer.data["metadata"]["decision"], "answer");
    let sources = answer.data["metadata"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    let path = sources[0]["path"].as_str().unwrap();
    assert!(path.contains("pay"), "cited {path}");
    let content = answer.data["content"].as_str().unwrap();
    assert!(content.contains("Источник"), "{content}");
    assert!(content.to_lowercase().contains("оплат"), "{content}");
}

#[tokio::test]
async fn unclear_questions_are_clarified_twice_then_escalated() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    for round in 1..=2 {
        app.say(&conversation, "ква ква ква").await;
        let reply = sse.next_from("assistant").await;
        assert_eq!(reply.data["metadata"]["decision"], "clarify", "round {round}");
    }
    app.say(&conversation, "фыва пролд").await;
    let handover = sse.next_from("system").await;
    assert_eq!(handover.event, "status");
    assert_eq!(handover.data["metadata"]["mode"], "human");
    assert_eq!(handover.data["metadata"]["reason"], "no_answer");

    let (_, detail) = app.get(Some(&conversation.bearer), &format!("/conversations/{}", conversation.id)).await;
    assert_eq!(detail["mode"], "human");
    // In human mode the AI stays silent.
    app.say(&conversation, "Как оплатить подписку?").await;
    sse.next_from("user").await;
    app.assert_stream_quiet(&conversation, &mut sse).await;
}

#[tokio::test]
async fn asking_for_a_human_escalates_at_once() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, "Позовите оператора, пожалуйста").await;
    let handover = sse.next_from("system").await;
    assert_eq!(handover.event, "status");
    assert_eq!(handover.data["metadata"]["reason"], "user_request");
    assert!(handover.data["content"].as_str().unwrap().contains("оператор"));
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_replays_what_was_missed_without_duplicates() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, "Как оплатить подписку?").await;
    assert_eq!(sse.next().await.id, Some(1));
    assert_eq!(sse.next().await.id, Some(2));
    drop(sse);

    // While disconnected: two more exchanges.
    app.say(&conversation, "Нет звука на уроке").await;
    app.say(&conversation, "Как сбросить пароль?").await;
    wait_until("the replies", WAIT, async || app.stored_messages(&conversation.id).await.len() >= 6).await;

    let mut sse = app.stream(&conversation, Some(2)).await;
    let replayed: Vec<i64> = [sse.next().await, sse.next().await, sse.next().await, sse.next().await]
        .iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(replayed, [3, 4, 5, 6]);
    // Then live, continuing the sequence.
    app.say(&conversation, "Спасибо!").await;
    assert_eq!(sse.next().await.id, Some(7));
    assert_eq!(sse.next().await.id, Some(8));

    // Polling clients get the same history.
    let (status, page) =
        app.get(Some(&conversation.bearer), &format!("/conversations/{}/messages?after=6", conversation.id)).await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<i64> = page["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [7, 8]);
    assert_eq!(page["last_seq"], 8);
    // And the stream sent nothing twice.
    app.assert_stream_quiet(&conversation, &mut sse).await;
}

#[tokio::test]
async fn resending_the_same_client_message_id_stores_nothing_new() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/messages", conversation.id);
    let body = json!({ "content": "Как оплатить подписку?", "client_message_id": "draft-1" });
    let (first_status, first) = app.post(Some(&conversation.bearer), &path, body.clone()).await;
    assert_eq!(first_status, StatusCode::ACCEPTED);
    // Resent concurrently too.
    let resends =
        futures::future::join_all((0..5).map(|_| app.post(Some(&conversation.bearer), &path, body.clone()))).await;
    for (status, again) in resends {
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["seq"], first["seq"]);
    }
    assert_eq!(app.stored_messages(&conversation.id).await.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 1);
    // A different id is a different message.
    let (_, other) =
        app.post(Some(&conversation.bearer), &path, json!({ "content": "ещё", "client_message_id": "draft-2" })).await;
    assert_ne!(other["id"], first["id"]);
}
