//! Bad input gets a 4xx in one stable JSON shape, and nothing is stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn bad_messages_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/messages", conversation.id);
    let bearer = Some(conversation.bearer.as_str());

    let cases = [
        (json!({ "content": "" }), StatusCode::UNPROCESSABLE_ENTITY, "empty_message"),
        (json!({ "content": " \n\t " }), StatusCode::UNPROCESSABLE_ENTITY, "empty_message"),
        (json!({ "content": "я".repeat(4001) }), StatusCode::UNPROCESSABLE_ENTITY, "message_too_long"),
        (json!({ "content": "привет", "extra": 1 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "content": 42 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            json!({ "content": "ok", "client_message_id": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_message_id",
        ),
        (
            json!({ "content": "ok", "client_message_id": "x".repeat(101) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_message_id",
        ),
    ];
    for (body, expected, code) in cases {
        let (status, answer) = app.post(bearer, &path, body).await;
        assert_error(status, &answer, expected, code);
    }
    // A value of the wrong type is named.
    let (_, answer) = app.post(bearer, &path, json!({ "content": 42 })).await;
    assert_eq!(answer["error"]["field"], "content", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("content: invalid type"), "{answer}");
    // Exactly the limit is fine.
    let (status, _) = app.post(bearer, &path, json!({ "content": "я".repeat(4000) })).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let url = app.url(&path);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client.post(&url).bearer_auth(&conversation.bearer).header("content-type", content_type).body(body)
    };
    let (status, answer) =
        crate::helpers::response(raw("{\"content\": \"a\"", "application/json").send().await.unwrap()).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_json");
    let (status, answer) = crate::helpers::response(raw("content=a", "text/plain").send().await.unwrap()).await;
    assert_error(status, &answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!("{{\"content\": \"{}\"}}", "a".repeat(100 * 1024));
    let response =
        app.client.post(&url).bearer_auth(&conversation.bearer).header("content-type", "application/json").body(huge);
    let (status, answer) = crate::helpers::response(response.send().await.unwrap()).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Only the one valid message and its job were stored.
    assert_eq!(app.stored_messages(&conversation.id).await.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 1);
}

#[tokio::test]
async fn malformed_ids_queries_and_routes_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let bearer = Some(conversation.bearer.as_str());

    let (status, body) = app.get(bearer, "/conversations/not-a-uuid").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
    let (status, body) = app.post(bearer, "/conversations/123/messages", json!({ "content": "a" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
    let (status, body) = app.get(bearer, &format!("/conversations/{}/messages?after=abc", conversation.id)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, body) = app.get(bearer, &format!("/conversations/{}/messages?after=-1", conversation.id)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_after");
    let (status, body) = app.get(bearer, "/conversations?limit=0").await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit");
    let (status, body) = app.get(bearer, "/conversations?cursor=nonsense").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_cursor");
    let (status, body) = app.get(bearer, "/no/such/route").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = app.client.delete(app.url("/conversations")).send().await.unwrap();
    let (status, body) = crate::helpers::response(response).await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (status, body) = app.post(None, "/conversations", json!({ "page_url": "javascript:alert(1)" })).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_page_url");
    let (status, body) = app.post(None, "/conversations", json!({ "page_title": 5 })).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let response = app
        .client
        .get(app.url(&format!("/conversations/{}/stream?token={}", conversation.id, conversation.stream_token)))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::response(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_last_event_id");

    assert!(app.stored_messages(&conversation.id).await.is_empty());
}

#[tokio::test]
async fn nul_characters_and_dates_out_of_range_are_refused_not_failed() {
    let app = TestApp::spawn().await;
    let anna = crate::helpers::user_token("anna");
    let admin = crate::helpers::platform_token(
        json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }),
    );

    // PostgreSQL takes no NUL in text or jsonb: every body is checked before it reaches it.
    let (status, body) = app.post(None, "/conversations", json!({ "page_title": "Оплата\u{0}" })).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text");
    assert_eq!(body["error"]["field"], "page_title");
    let conversation = app.open(Some(&anna)).await;
    let cases = [
        (format!("/conversations/{}/rate", conversation.id), json!({ "rating": 5, "comment": "\u{0}" }), "comment"),
        (
            format!("/conversations/{}/actions/check_recordings/execute", conversation.id),
            json!({ "params": { "lesson_id": "les\u{0}" } }),
            "params.lesson_id",
        ),
    ];
    for (path, input, field) in cases {
        let (status, body) = app.post(Some(&anna), &path, input).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text");
        assert_eq!(body["error"]["field"], field);
    }
    let (status, body) = app
        .post(Some(&admin), &format!("/admin/conversations/{}/notes", conversation.id), json!({ "content": "\u{0}" }))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text");
    assert_eq!(app.count("SELECT count(*) FROM action_runs").await, 0);
    // Nor in a query string or a path.
    let (status, body) = app.get(Some(&admin), "/admin/action-runs?action=zoom%00check").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, body) = app.get(Some(&admin), "/admin/users/an%00na/export").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");

    // Dates the database cannot hold are refused as input, not failed on.
    let (status, body) =
        app.get(Some(&anna), "/conversations?cursor=-300000000000000000_00000000-0000-0000-0000-000000000000").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_cursor");
    for query in
        ["/admin/conversations?from=-5000-01-01", "/admin/metrics?from=0001-01-01", "/admin/metrics?to=262143-12-31"]
    {
        let (status, body) = app.get(Some(&admin), query).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_date");
    }
}

/// What the OpenAPI document states is what is accepted: a body is an object (serde alone would
/// read a struct from an array of its fields), lengths count characters as sent, a page URL is
/// an absolute http(s) URL.
#[tokio::test]
async fn inputs_outside_the_documented_contract_are_refused() {
    let app = TestApp::spawn().await;
    for body in [json!([null, null]), json!(["https://lectio.ru/", "Lectio"]), json!("text"), json!(1)] {
        let (status, answer) = app.post(None, "/conversations", body.clone()).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    for url in ["", " https://lectio.ru/", "https:lectio.ru", "mailto:help@lectio.ru"] {
        let (status, answer) = app.post(None, "/conversations", json!({ "page_url": url })).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_page_url");
    }
    let padded = format!("{} ", "т".repeat(300));
    let (status, answer) = app.post(None, "/conversations", json!({ "page_title": padded })).await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "too_long");
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/messages", conversation.id);
    let (status, answer) =
        app.post(Some(&conversation.bearer), &path, json!({ "content": format!("{} ", "я".repeat(4000)) })).await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "message_too_long");
    let stream = format!("/conversations/{}/stream?after=-1", conversation.id);
    let response = app
        .client
        .get(app.url(&stream))
        .bearer_auth(&conversation.bearer)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
