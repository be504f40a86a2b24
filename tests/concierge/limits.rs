//! Rate limits and quotas: over each limit the caller gets 429 with `Retry-After` and the error
//! body, under it nothing changes; clients behind a trusted proxy are told apart by
//! `X-Forwarded-For`; hand-overs need a question and are capped per principal per day, in the
//! database; new Telegram topics are capped per hour and held ones open once the window
//! allows; the model's daily tokens are capped per principal across conversations.

use std::time::Duration;

use concierge_shared::config::{LimitsConfig, TelegramConfig, TelegramMode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_llm::{FakeLlm, Reply, tool_reply},
    fake_telegram::FakeTelegram,
    helpers::{Conversation, Sse, TestApp, WAIT, response, test_limits, user_token, wait_until},
    telegram::{WEBHOOK_SECRET, telegram_config},
};

const ADMIN_TOKEN: &str = "admin-token-for-limit-tests-0123";

/// The API alone, with `limits` and 127.0.0.1 trusted as a proxy (so that each test client is
/// told apart by its `X-Forwarded-For`).
async fn app_with(limits: LimitsConfig) -> TestApp {
    TestApp::spawn_with(move |config| {
        config.limits = LimitsConfig { trusted_proxies: "127.0.0.1".parse().unwrap(), ..limits };
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.sse_heartbeat = Duration::from_millis(300);
    })
    .await
}

/// A request from `client` (the address the trusted proxy forwards).
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    client: &str,
    bearer: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<u64>) {
    let mut request = app.client.request(method, app.url(path)).header("x-forwarded-for", client);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let retry_after = answer.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let (status, body) = response(answer).await;
    (status, body, retry_after)
}

async fn post(
    app: &TestApp,
    client: &str,
    bearer: Option<&str>,
    path: &str,
    body: Value,
) -> (StatusCode, Value, Option<u64>) {
    send(app, reqwest::Method::POST, client, bearer, path, Some(body)).await
}

/// A 429 as every limit answers it: `Retry-After` in whole seconds, the same in the body.
fn assert_limited(answer: &(StatusCode, Value, Option<u64>), code: &str, longest: u64) {
    let (status, body, retry_after) = answer;
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let seconds = retry_after.expect("a Retry-After header");
    assert!((1..=longest).contains(&seconds), "Retry-After {seconds} within 1..={longest}");
    assert_eq!(body["error"]["retry_after"], seconds, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// Open a conversation as a new visitor from `client`.
async fn open_from(app: &TestApp, client: &str) -> Conversation {
    let (status, body, _) = post(app, client, None, "/conversations/", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Conversation {
        id: body["id"].as_str().unwrap().to_owned(),
        bearer: body["visitor_token"].as_str().unwrap().to_owned(),
        stream_token: body["stream_token"]["token"].as_str().unwrap().to_owned(),
    }
}

async fn message(app: &TestApp, client: &str, conversation: &Conversation) -> (StatusCode, Value, Option<u64>) {
    let path = format!("/conversations/{}/messages/", conversation.id);
    post(app, client, Some(&conversation.bearer), &path, json!({ "content": "Как оплатить подписку?" })).await
}

#[tokio::test]
async fn conversations_and_messages_are_limited_per_ip_and_per_principal() {
    let app = app_with(LimitsConfig {
        conversations_per_hour: 2,
        messages_per_minute: 2,
        ip_messages_per_minute: 3,
        ..test_limits()
    })
    .await;
    let (a, b) = ("198.51.100.1", "198.51.100.2");

    // Two conversations an hour from one address; a forged left part of the header changes
    // nothing, since only the proxy's own entry (the rightmost) is believed.
    let first = open_from(&app, a).await;
    open_from(&app, a).await;
    assert_limited(&post(&app, a, None, "/conversations/", json!({})).await, "rate_limited", 1800);
    assert_limited(
        &post(&app, &format!("6.6.6.6, {a}"), None, "/conversations/", json!({})).await,
        "rate_limited",
        1800,
    );
    // Another address is not affected, nor is reading.
    let second = open_from(&app, b).await;
    let (status, _, _) =
        send(&app, reqwest::Method::GET, a, Some(&first.bearer), &format!("/conversations/{}/", first.id), None).await;
    assert_eq!(status, StatusCode::OK);

    // Two messages a minute per visitor, three per address whoever writes.
    for _ in 0..2 {
        assert_eq!(message(&app, a, &first).await.0, StatusCode::ACCEPTED);
    }
    assert_limited(&message(&app, a, &first).await, "rate_limited", 30);
    // The address has made three requests: the next visitor there is refused too ...
    let other = open_from(&app, b).await;
    assert_limited(&message(&app, a, &other).await, "rate_limited", 20);
    // ... but the same visitors elsewhere are not.
    assert_eq!(message(&app, b, &second).await.0, StatusCode::ACCEPTED);
    assert_eq!(message(&app, b, &other).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE role = 'user'").await,
        4,
        "refused messages are not stored"
    );

    // Each refusal is counted by limit.
    let metrics = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    for limit in ["conversations", "messages", "ip_messages"] {
        assert!(metrics.contains(&format!("concierge_rate_limited_total{{limit=\"{limit}\"}}")), "{limit}:\n{metrics}");
    }
}

#[tokio::test]
async fn actions_stream_tokens_searches_and_the_webhook_are_limited() {
    let app = app_with(LimitsConfig {
        action_runs_per_minute: 1,
        stream_tokens_per_minute: 1,
        admin_search_per_minute: 1,
        webhook_per_minute: 2,
        ..test_limits()
    })
    .await;
    let client = "203.0.113.10";
    let conversation = open_from(&app, client).await;

    let run = format!("/conversations/{}/actions/check_system_status/execute/", conversation.id);
    let (status, body, _) = post(&app, client, Some(&conversation.bearer), &run, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_limited(&post(&app, client, Some(&conversation.bearer), &run, json!({})).await, "rate_limited", 60);
    assert_eq!(app.count("SELECT count(*) FROM action_runs").await, 1);

    let token = format!("/conversations/{}/stream-token/", conversation.id);
    let (status, body, _) = post(&app, client, Some(&conversation.bearer), &token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_limited(&post(&app, client, Some(&conversation.bearer), &token, json!({})).await, "rate_limited", 60);
    // Another visitor's allowance is their own.
    let other = open_from(&app, client).await;
    let token = format!("/conversations/{}/stream-token/", other.id);
    assert_eq!(post(&app, client, Some(&other.bearer), &token, json!({})).await.0, StatusCode::OK);

    let search = "/knowledge/search/?q=%D0%BE%D0%BF%D0%BB%D0%B0%D1%82%D0%B0";
    let (status, body, _) = send(&app, reqwest::Method::GET, client, Some(ADMIN_TOKEN), search, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_limited(
        &send(&app, reqwest::Method::GET, client, Some(ADMIN_TOKEN), search, None).await,
        "rate_limited",
        60,
    );

    // The webhook is limited per address before its secret is looked at.
    for _ in 0..2 {
        let (status, _, _) = post(&app, client, None, "/telegram/webhook/", json!({ "update_id": 1 })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_limited(
        &post(&app, client, None, "/telegram/webhook/", json!({ "update_id": 1 })).await,
        "rate_limited",
        30,
    );
    let (status, _, _) = post(&app, "203.0.113.11", None, "/telegram/webhook/", json!({ "update_id": 1 })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another address still reaches the secret check");
}

#[tokio::test]
async fn open_streams_are_limited_per_principal_and_places_come_back() {
    let app = app_with(LimitsConfig { streams_per_principal: 1, ..test_limits() }).await;
    let conversation = app.open(None).await;
    let url = app.url(&format!("/conversations/{}/stream/?token={}", conversation.id, conversation.stream_token));
    let stream = Sse::connect(&app.client, &url, None).await;
    let second = app.client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let (_, body) = response(second).await;
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    // Another principal streams as usual.
    let other = app.open(None).await;
    app.stream(&other, None).await;

    // Once the first stream is gone (noticed at its next heartbeat), its place is free again.
    drop(stream);
    wait_until("the stream's place to come back", WAIT, async || {
        app.client.get(&url).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn escalation_needs_a_question_and_is_capped_per_principal_per_day() {
    let app = app_with(LimitsConfig { escalations_per_day: 2, ..test_limits() }).await;
    let zoe = user_token("zoe");
    let escalate = async |conversation: &Conversation| {
        let path = format!("/conversations/{}/escalate/", conversation.id);
        post(&app, "198.51.100.7", Some(&conversation.bearer), &path, json!({})).await
    };
    let mut opened = Vec::new();
    for _ in 0..4 {
        opened.push(app.open(Some(&zoe)).await);
    }

    // Nothing written yet: nothing for an operator to answer.
    let (status, body, _) = escalate(&opened[0]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "nothing_written");
    assert_eq!(app.count("SELECT count(*) FROM conversations WHERE mode = 'human'").await, 0);

    for conversation in &opened {
        app.write_first(conversation).await;
    }
    for conversation in &opened[..2] {
        let (status, body, _) = escalate(conversation).await;
        assert_eq!((status, body["mode"].as_str()), (StatusCode::OK, Some("human")), "{body}");
    }
    // Asking again where a person is already coming costs nothing.
    assert_eq!(escalate(&opened[0]).await.0, StatusCode::OK);
    // A third conversation of the same user is over the quota; it stays with the assistant.
    let refused = escalate(&opened[2]).await;
    assert_limited(&refused, "escalation_limit", 86_400);
    assert!(refused.2.unwrap() > 86_000, "the oldest request ages out in a day: {:?}", refused.2);
    let (_, detail) = app.get(Some(&zoe), &format!("/conversations/{}/", opened[2].id)).await;
    assert_eq!(detail["mode"], "ai");
    assert_eq!(app.count("SELECT count(*) FROM escalation_requests").await, 2);

    // Another user is not affected.
    let other = app.open(Some(&user_token("yan"))).await;
    app.write_first(&other).await;
    assert_eq!(escalate(&other).await.0, StatusCode::OK);

    // The quota is the rows of the last 24 hours, whichever process counts them: a day later
    // the same user may ask again.
    sqlx::query("UPDATE escalation_requests SET created_at = created_at - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(escalate(&opened[2]).await.0, StatusCode::OK);
    assert_eq!(escalate(&opened[3]).await.0, StatusCode::OK);
    let fifth = app.open(Some(&zoe)).await;
    app.write_first(&fifth).await;
    assert_limited(&escalate(&fifth).await, "escalation_limit", 86_400);
}

/// A flood of hand-overs: new topics stop at the cap while the rest wait queued, topics that
/// exist keep receiving posts, and the held ones open, with their card and the messages written
/// meanwhile, once the window allows.
#[tokio::test]
async fn new_topics_are_capped_per_hour_and_held_ones_open_later() {
    let fake = FakeTelegram::start().await;
    let settings = TelegramConfig { topics_per_window: 2, ..telegram_config(&fake, TelegramMode::Webhook) };
    let mut app = TestApp::spawn_with(move |config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;

    let mut flood = Vec::new();
    for _ in 0..5 {
        let conversation = app.open(None).await;
        app.write_first(&conversation).await;
        let path = format!("/conversations/{}/escalate/", conversation.id);
        let (status, body) = app.post(Some(&conversation.bearer), &path, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        flood.push(conversation);
    }
    let queue = concierge_shared::jobs::Queue::Escalate.name();
    let held = async || -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' AND run_at > now()",
        )
        .bind(queue)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    wait_until("three escalations held", WAIT, async || held().await == 3).await;
    fake.wait_for("two cards", |f| f.accepted("sendMessage").len() >= 2 * 2).await;
    assert_eq!(fake.accepted("createForumTopic").len(), 2, "no topic beyond the cap");
    let thread = |conversation: &Conversation| {
        let pool = app.pool.clone();
        let id = conversation.id.clone();
        async move {
            let thread: Option<Option<i32>> =
                sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1::uuid")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            thread.flatten().map(i64::from)
        }
    };
    let mut opened = Vec::new();
    let mut waiting = Vec::new();
    for conversation in &flood {
        match thread(conversation).await {
            Some(thread) => opened.push((conversation, thread)),
            None => waiting.push(conversation),
        }
    }
    assert_eq!((opened.len(), waiting.len()), (2, 3));

    // Existing topics keep working; messages to the held ones wait for their topic.
    app.say(opened[0].0, "Жду ответа в открытой теме").await;
    fake.wait_for("the post in an open topic", |f| {
        f.posts_in(opened[0].1).iter().any(|p| p.ends_with("Жду ответа в открытой теме"))
    })
    .await;
    for conversation in &waiting {
        app.say(conversation, "Жду ответа, пока темы нет").await;
    }
    wait_until("the messages queued for the held topics", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_outbox WHERE kind = 'message'").await == 4
    })
    .await;
    assert_eq!(fake.accepted("createForumTopic").len(), 2);

    // An hour later (the creations aged, the held jobs due): the rest open, each with its card
    // first and the message written meanwhile after it.
    sqlx::query("UPDATE telegram_topic_creations SET created_at = created_at - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE apalis.jobs SET run_at = now() WHERE job_type = $1 AND status = 'Pending'")
        .bind(queue)
        .execute(&app.pool)
        .await
        .unwrap();
    fake.wait_for("every topic", |f| f.accepted("createForumTopic").len() == 4).await;
    wait_until("one more escalation held", WAIT, async || held().await == 1).await;
    assert_eq!(fake.accepted("createForumTopic").len(), 4, "two more, then the cap again");
    let mut late = 0;
    for conversation in &waiting {
        let Some(thread) = thread(conversation).await else { continue };
        late += 1;
        // The message written while the topic waited is in the card's transcript.
        fake.wait_for("the held topic's card with the message", |f| {
            f.posts_in(thread).iter().any(|p| p.contains("Жду ответа, пока темы нет"))
        })
        .await;
        let posts = fake.posts_in(thread);
        assert!(posts[0].starts_with("🆘"), "the card first: {posts:#?}");
    }
    assert_eq!(late, 2);
    let topics: i64 = app.count("SELECT count(*) FROM telegram_topics WHERE thread_id IS NOT NULL").await;
    assert_eq!(topics, 4);
    let metrics = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("concierge_rate_limited_total{limit=\"telegram_topics\"}"), "{metrics}");
}

#[tokio::test]
async fn the_daily_token_budget_of_a_principal_spans_their_conversations() {
    let fake = FakeLlm::start().await;
    fake.respond_with(|_| Reply::Json(tool_reply("answer", json!({ "text": "Ответ модели.", "citations": [] }))));
    let url = fake.url.clone();
    let mut app = TestApp::spawn_with(move |config| {
        config.ai.provider = concierge_shared::config::Provider::Openai;
        config.ai.base_url = url;
        config.ai.model = "scripted-model".into();
        config.ai.api_key = Some("test-key".into());
        config.ai.timeout = Duration::from_millis(1500);
        config.ai.stream = false;
        // One call costs 960 tokens: a second one goes over.
        config.ai.principal_daily_token_budget = 1_500;
    })
    .await;
    app.start_worker().await;
    let mia = user_token("mia");
    let ask = async |conversation: &Conversation| -> Value {
        let mut sse = app.stream(conversation, None).await;
        let sent = app.say(conversation, "Как оплатить подписку?").await;
        loop {
            let event = sse.next().await;
            if event.event == "message" && event.data["reply_to"] == sent["id"] {
                return event.data;
            }
        }
    };
    let first = app.open(Some(&mia)).await;
    assert_eq!(ask(&first).await["metadata"]["engine"], "llm");
    assert_eq!(ask(&first).await["metadata"]["engine"], "llm");
    // 1,920 tokens today: a new conversation does not start the count again.
    let fresh = app.open(Some(&mia)).await;
    let reply = ask(&fresh).await;
    assert_eq!(reply["metadata"]["engine"], "offline", "{reply}");
    assert_eq!(reply["metadata"]["fallback"], "principal_budget", "{reply}");
    assert_eq!(fake.requests().len(), 2, "no call over the budget");
    // Others are unaffected, visitors included.
    let other = app.open(Some(&user_token("noah"))).await;
    assert_eq!(ask(&other).await["metadata"]["engine"], "llm");
    let visitor = app.open(None).await;
    assert_eq!(ask(&visitor).await["metadata"]["engine"], "llm");
    // Yesterday's calls do not count today.
    sqlx::query("UPDATE llm_calls SET created_at = created_at - interval '1 day'").execute(&app.pool).await.unwrap();
    assert_eq!(ask(&fresh).await["metadata"]["engine"], "llm");
}

#[tokio::test]
async fn every_limited_route_documents_its_429() {
    let app = TestApp::spawn().await;
    let (status, document) = app.get(None, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let limited = [
        ("post", "/conversations"),
        ("post", "/conversations/{id}/messages"),
        ("post", "/conversations/{id}/escalate"),
        ("post", "/conversations/{id}/actions/{name}/execute"),
        ("post", "/conversations/{id}/stream-token"),
        ("get", "/conversations/{id}/stream"),
        ("get", "/knowledge/search"),
        ("post", "/telegram/webhook"),
    ];
    for (method, path) in limited {
        let response = &document["paths"][path][method]["responses"]["429"];
        assert!(response.is_object(), "{method} {path} documents no 429");
        assert!(response["headers"]["Retry-After"].is_object(), "{method} {path}: {response}");
    }
}
