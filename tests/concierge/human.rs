//! The human path without Telegram: escalation, the operators' console API, replies reaching
//! the user's stream, handing back to the AI, closing and rating.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, platform_token, user_token};

fn operator() -> String {
    platform_token(
        json!({ "sub": "op-1", "name": "Ольга Сергеевна", "role": "admin", "exp": crate::helpers::now() + 600 }),
    )
}

#[tokio::test]
async fn the_whole_human_loop_works_through_the_admin_api() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;

    app.say(&conversation, "Позовите оператора").await;
    let handover = sse.next_from("system").await;
    assert_eq!(handover.data["metadata"]["mode"], "human");

    // Operators see it waiting, with who the user is.
    let (status, waiting) = app.get(Some(&operator()), "/admin/conversations?mode=human&status=open").await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    let item = &waiting["items"][0];
    assert_eq!(item["id"], conversation.id.as_str());
    assert_eq!(item["owner_name"], "Анна");
    assert_eq!(item["escalation_reason"], "user_request");

    // The user writes; the AI stays silent; the operator reads and replies.
    let asked = app.say(&conversation, "С меня дважды списали деньги за подписку").await;
    sse.next_from("user").await;
    // Once its job has run, nothing follows the message (and the next event is the operator's).
    app.wait_for_idle_queue().await;
    let after =
        app.stored_messages(&conversation.id).await.into_iter().filter(|m| m.0 > asked["seq"].as_i64().unwrap());
    assert_eq!(after.count(), 0, "the AI must not answer in human mode");
    let (_, detail) = app.get(Some(&operator()), &format!("/admin/conversations/{}", conversation.id)).await;
    assert!(
        detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["content"] == "С меня дважды списали деньги за подписку")
    );
    // While the operator types, the user sees who is writing.
    let typing_path = format!("/admin/conversations/{}/typing", conversation.id);
    let (status, _) = app.post(Some(&operator()), &typing_path, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let typing = sse.next().await;
    assert_eq!((typing.event.as_str(), typing.id), ("typing", None));
    assert_eq!(typing.data, json!({ "operator": "Ольга" }));
    let (status, reply) = app
        .post(
            Some(&operator()),
            &format!("/admin/conversations/{}/reply", conversation.id),
            json!({ "content": "Проверю платежи и вернусь через 5 минут." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let seen = sse.next_from("operator").await;
    assert_eq!(seen.data["content"], "Проверю платежи и вернусь через 5 минут.");
    assert_eq!(seen.data["metadata"]["operator"]["name"], "Ольга");

    // Closing asks for a rating; the user rates.
    let (status, closed) =
        app.post(Some(&operator()), &format!("/admin/conversations/{}/close", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(closed["status"], "closed");
    let notice = sse.next_from("system").await;
    assert_eq!(notice.event, "status");
    assert_eq!(notice.data["metadata"]["status"], "closed");
    let (status, body) = app.post(Some(&operator()), &typing_path, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, rated) = app
        .post(Some(&conversation.bearer), &format!("/conversations/{}/rate", conversation.id), json!({ "rating": 5 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{rated}");
}

#[tokio::test]
async fn the_user_button_escalates_and_operators_hand_back_to_the_ai() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.write_first(&conversation).await;
    let (status, body) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/escalate", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "human");
    assert_eq!(sse.next_from("system").await.data["metadata"]["reason"], "user_request");

    let (status, back) =
        app.post(Some(&operator()), &format!("/admin/conversations/{}/ai", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back["mode"], "ai");
    sse.next_from("system").await;
    app.say(&conversation, "Как оплатить подписку?").await;
    assert_eq!(sse.next_from("assistant").await.data["metadata"]["decision"], "answer");
}

#[tokio::test]
async fn only_operators_use_the_console_api() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    for token in [user_token("anna"), conversation.bearer.clone()] {
        let (status, _) = app.get(Some(&token), "/admin/conversations").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .post(Some(&token), &format!("/admin/conversations/{}/reply", conversation.id), json!({ "content": "x" }))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) =
            app.post(Some(&token), &format!("/admin/conversations/{}/typing", conversation.id), json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body) = app.get(Some(&operator()), "/admin/conversations?mode=robot").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app
        .post(Some(&operator()), &format!("/admin/conversations/{}/reply", conversation.id), json!({ "content": " " }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = uuid::Uuid::new_v4();
    let (status, _) =
        app.post(Some(&operator()), &format!("/admin/conversations/{missing}/reply"), json!({ "content": "x" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_feed_takes_a_short_lived_token_never_the_credential() {
    let app = TestApp::spawn().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let events = |token: &str| app.url(&format!("/admin/events?token={token}"));

    // The admin credential and a conversation's stream token are refused in the URL.
    for token in [operator(), conversation.stream_token.clone()] {
        let status = app.client.get(events(&token)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app.post(Some(&user_token("anna")), "/admin/events/token", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A stream token from the console's credential opens the feed, which reports activity.
    let (status, issued) = app.post(Some(&operator()), "/admin/events/token", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["expires_in"], 600);
    let mut feed = crate::helpers::Sse::connect(&app.client, &events(issued["token"].as_str().unwrap()), None).await;
    app.say(&conversation, "Как оплатить подписку?").await;
    let activity = feed.next().await;
    assert_eq!(activity.event, "activity");
    assert_eq!(activity.data["conversation_id"], conversation.id.as_str());

    // The header still works for clients that can send one.
    let response = app.client.get(app.url("/admin/events")).bearer_auth(operator()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
