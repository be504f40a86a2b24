//! How long a stream lives and what it reads: it ends when its token expires and resumes with a
//! new one without a gap; a long backlog arrives whole, in order, a page at a time; one read per
//! notification serves every stream of a conversation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Conversation, Sse, SseEvent, TestApp, now, platform_token};

/// The events until the server ends the stream, which must happen within `within`.
async fn until_end(sse: &mut Sse, within: Duration) -> Vec<SseEvent> {
    let mut events = Vec::new();
    tokio::time::timeout(within, async {
        while let Some(event) = sse.next_or_end().await {
            events.push(event);
        }
    })
    .await
    .expect("the stream to end in time");
    events
}

/// Insert `count` user messages at once, as a long conversation would have them.
async fn insert_messages(app: &TestApp, conversation: &Conversation, count: i64) {
    insert_messages_of(app, conversation, count, 1).await;
}

/// `count` messages committed at once, each its number repeated `repeat` times.
async fn insert_messages_of(app: &TestApp, conversation: &Conversation, count: i64, repeat: i32) {
    let mut tx = app.pool.begin().await.unwrap();
    let last: i64 =
        sqlx::query_scalar("UPDATE conversations SET last_seq = last_seq + $2 WHERE id = $1::uuid RETURNING last_seq")
            .bind(&conversation.id)
            .bind(count)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, seq, role, content)
         SELECT gen_random_uuid(), $1::uuid, seq, 'user', repeat('сообщение ' || seq, $4)
         FROM generate_series($2 - $3 + 1, $2) AS seq",
    )
    .bind(&conversation.id)
    .bind(last)
    .bind(count)
    .bind(repeat)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires_and_resumes_without_a_gap() {
    let app = TestApp::spawn_with(|config| config.stream_token_ttl = Duration::from_secs(2)).await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, "Первый вопрос").await;
    let first = sse.next_from("user").await;

    let rest = until_end(&mut sse, Duration::from_secs(10)).await;
    let last = rest.last().expect("an event before the end");
    assert_eq!(last.event, "expired", "the stream says why it ends: {rest:?}");
    assert_eq!(last.data["reason"], "token_expired");
    let last_id = rest.iter().filter_map(|event| event.id).chain(first.id).max().unwrap();

    // Reconnecting with the expired token is refused; a new one resumes after the last event.
    let expired = app
        .client
        .get(app.url(&format!("/conversations/{}/stream/?token={}", conversation.id, conversation.stream_token)))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    app.say(&conversation, "Второй вопрос, пока поток закрыт").await;
    let (status, body) = app
        .post(Some(&conversation.bearer), &format!("/conversations/{}/stream-token/", conversation.id), json!({}))
        .await;
    assert!(status.is_success(), "{status} {body}");
    let renewed = Conversation { stream_token: body["token"].as_str().unwrap().to_owned(), ..conversation };
    let mut sse = app.stream(&renewed, Some(last_id)).await;
    let missed = sse.next_from("user").await;
    assert_eq!(missed.id, Some(last_id + 1), "nothing skipped, nothing sent twice");
    assert_eq!(missed.data["content"], "Второй вопрос, пока поток закрыт");
}

#[tokio::test]
async fn a_stream_opened_with_a_platform_token_ends_when_that_token_expires() {
    let app = TestApp::spawn().await;
    let token = platform_token(json!({ "sub": "short-lived", "role": "user", "exp": now() + 2 }));
    let conversation = app.open(Some(&token)).await;
    let response = app
        .client
        .get(app.url(&format!("/conversations/{}/stream/", conversation.id)))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut sse = Sse::from_response(response);
    let events = until_end(&mut sse, Duration::from_secs(10)).await;
    assert_eq!(events.last().map(|event| event.event.as_str()), Some("expired"), "{events:?}");
}

#[tokio::test]
async fn the_console_feed_ends_when_its_token_expires() {
    let app = TestApp::spawn_with(|config| config.stream_token_ttl = Duration::from_secs(2)).await;
    let admin = platform_token(json!({ "sub": "admin-1", "role": "admin", "exp": now() + 3600 }));
    let (status, body) = app.post(Some(&admin), "/admin/events/token/", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = app.url(&format!("/admin/events/?token={}", body["token"].as_str().unwrap()));
    let mut sse = Sse::connect(&app.client, &url, None).await;
    let events = until_end(&mut sse, Duration::from_secs(10)).await;
    assert_eq!(events.last().map(|event| event.event.as_str()), Some("expired"), "{events:?}");
}

#[tokio::test]
async fn a_long_backlog_arrives_whole_and_in_order() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    insert_messages(&app, &conversation, 1_000).await;
    let last_seq = app.stored_messages(&conversation.id).await.last().unwrap().0;

    let before = app.hub.database_reads();
    let mut sse = app.stream(&conversation, Some(3)).await;
    let mut expected = 4;
    while expected <= last_seq {
        let event = sse.next().await;
        assert_eq!(event.id, Some(expected), "in order, nothing skipped");
        expected += 1;
    }
    // Read in pages of at most 200, each after the previous one was sent: 997 messages take
    // at least five reads.
    assert!(app.hub.database_reads() - before >= 5, "read a page at a time");

    // And the stream is live afterwards.
    app.say(&conversation, "И ещё один").await;
    assert_eq!(sse.next_from("user").await.id, Some(last_seq + 1));
}

#[tokio::test]
async fn one_read_per_notification_serves_every_stream_of_a_conversation() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(app.stream(&conversation, None).await);
    }
    app.say(&conversation, "Первое").await;
    for sse in &mut streams {
        sse.next_from("user").await;
    }

    for round in 0..3 {
        // Committed by another process (a worker's reply, another API's post): its
        // notification carries it.
        let before = app.hub.database_reads();
        insert_messages(&app, &conversation, 1).await;
        let seq = app.stored_messages(&conversation.id).await.last().unwrap().0;
        for sse in &mut streams {
            assert_eq!(sse.next_from("user").await.id, Some(seq));
        }
        assert_eq!(app.hub.database_reads() - before, 0, "ten streams, no read");

        // Too long for a notification: read once.
        let before = app.hub.database_reads();
        insert_messages_of(&app, &conversation, 1, 800).await;
        let seq = app.stored_messages(&conversation.id).await.last().unwrap().0;
        for sse in &mut streams {
            let event = sse.next_from("user").await;
            assert_eq!(event.id, Some(seq));
            assert!(event.data["content"].as_str().unwrap().len() > 8000);
        }
        assert_eq!(app.hub.database_reads() - before, 1, "ten streams, one read");

        // Posted through this process: the streams get it from the tail (handed over by the
        // route or carried by the notification), unless a stream was still reading.
        let before = app.hub.database_reads();
        let sent = app.say(&conversation, &format!("Ещё одно, {round}")).await;
        for sse in &mut streams {
            let event = sse.next_from("user").await;
            assert_eq!(event.data["id"], sent["id"]);
        }
        assert!(app.hub.database_reads() - before <= 1, "ten streams, at most one read");
    }
    // A stream that falls behind the shared window reads for itself, and misses nothing.
    insert_messages(&app, &conversation, 150).await;
    let last_seq = app.stored_messages(&conversation.id).await.last().unwrap().0;
    let mut late = app.stream(&conversation, Some(1)).await;
    let mut seen = 1;
    while seen < last_seq {
        let event = late.next().await;
        assert_eq!(event.id, Some(seen + 1));
        seen += 1;
    }
    for sse in &mut streams {
        let mut last = 0;
        while last < last_seq {
            last = sse.next().await.id.unwrap();
        }
        assert_eq!(last, last_seq);
    }
}
