//! Personal data: erasing one person (every table, their Telegram topic through the outbox,
//! a visitor's tokens), exporting it first, the audit of both, retention of closed
//! conversations with the metrics unchanged, and page URLs without their query.

use std::{sync::atomic::Ordering, time::Duration};

use concierge_shared::{
    config::{TelegramConfig, TelegramMode},
    jobs::{self, ApplyRetention},
    metrics,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_telegram::{CHAT_ID, FakeTelegram, OPERATOR_ID, TOKEN, operator_user, text_update},
    helpers::{Conversation, TestApp, WAIT, platform_token, user_token, wait_until},
};

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

fn admin() -> String {
    platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

async fn delete(app: &TestApp, bearer: &str, path: &str) -> (StatusCode, Value) {
    crate::helpers::response(app.client.delete(app.url(path)).bearer_auth(bearer).send().await.unwrap()).await
}

/// Rows of every table of the public schema whose text mentions `needle`.
async fn rows_mentioning(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(&app.pool).await.unwrap();
        if count > 0 {
            found.push((table, count));
        }
    }
    found
}

async fn count_of(app: &TestApp, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(id).fetch_one(&app.pool).await.unwrap()
}

/// An action run and a model call for the conversation, as the engine would have logged them.
async fn log_run_and_call(app: &TestApp, conversation: &Conversation) {
    sqlx::query(
        "INSERT INTO action_runs (id, conversation_id, action, params, requested_by, status)
         VALUES (gen_random_uuid(), $1::uuid, 'check_zoom', '{}', 'user', 'succeeded')",
    )
    .bind(&conversation.id)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO llm_calls (id, message_id, conversation_id, provider, model, purpose, prompt_version,
                                latency_ms, outcome)
         SELECT gen_random_uuid(), id, conversation_id, 'openai', 'gpt-4o-mini', 'decide', 'v1', 10, 'ok'
         FROM messages WHERE conversation_id = $1::uuid AND role = 'user' LIMIT 1",
    )
    .bind(&conversation.id)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn erasure_removes_every_row_about_a_person_and_deletes_their_topic_through_the_outbox() {
    let fake = FakeTelegram::start().await;
    let settings = TelegramConfig {
        bot_token: TOKEN.into(),
        chat_id: CHAT_ID,
        api_url: Some(fake.url.clone()),
        mode: TelegramMode::Webhook,
        operators: vec![OPERATOR_ID],
        messages_per_minute: 60_000,
        topics_per_window: 0,
        topics_window: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
        sla: None,
        sla_hours: concierge_shared::config::SlaHours::Duty,
        on_duty: Vec::new(),
        public_url: None,
        upload_limits: (concierge_shared::config::PHOTO_UPLOAD_LIMIT, concierge_shared::config::FILE_UPLOAD_LIMIT),
    };
    let mut app = TestApp::spawn_with(|config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;
    let admin = admin();

    // Anna asks for a person: a topic, a card, an operator's reply from Telegram.
    let anna = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&anna, None).await;
    app.say(&anna, "Позовите оператора, пожалуйста").await;
    sse.next_from("system").await;
    let thread = wait_until("a topic", WAIT, async || {
        let thread: Option<Option<i32>> =
            sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1::uuid")
                .bind(&anna.id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        thread.flatten().map(i64::from)
    })
    .await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let reply = text_update(1, 5001, thread, operator_user(), "Сейчас посмотрю.");
    let status = app
        .client
        .post(app.url("/telegram/webhook/"))
        .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
        .json(&reply)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    sse.next_from("operator").await;
    log_run_and_call(&app, &anna).await;

    // Boris, another user, keeps everything.
    let boris = app.open(Some(&user_token("boris"))).await;
    let mut sse = app.stream(&boris, None).await;
    app.say(&boris, "Как оплатить подписку?").await;
    sse.next_from("assistant").await;
    log_run_and_call(&app, &boris).await;
    let boris_rows = rows_mentioning(&app, &boris.id).await;

    // Only administrators may export or erase.
    let (status, body) = app.get(Some(&anna.bearer), "/admin/users/anna/export").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = delete(&app, &anna.bearer, "/admin/users/anna").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let status = app.client.delete(app.url("/admin/users/anna")).send().await.unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = delete(&app, &admin, "/admin/users/visitor:not-a-uuid").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_subject")));

    // The export, first, holds everything about her.
    let (status, export) = app.get(Some(&admin), "/admin/users/anna/export").await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["subject"], "user:anna");
    let conversations = export["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "{export}");
    let exported = &conversations[0];
    assert_eq!(exported["conversation"]["id"], anna.id.as_str());
    assert_eq!(exported["conversation"]["owner_email"], "anna@example.com");
    let texts: Vec<&str> =
        exported["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(texts.contains(&"Позовите оператора, пожалуйста"), "{texts:?}");
    assert!(texts.contains(&"Сейчас посмотрю."), "{texts:?}");
    assert_eq!(exported["action_runs"].as_array().unwrap().len(), 1);
    assert_eq!(exported["llm_calls"].as_array().unwrap().len(), 1);
    assert_eq!(exported["telegram_topic"]["thread_id"], thread);
    assert_eq!(export["counts"]["conversations"], 1);
    assert!(rows_mentioning(&app, &anna.id).await.len() > 3, "her rows are in several tables");

    // The erasure; Telegram fails the first deleteForumTopic, the outbox tries again.
    fake.behaviour.fail_deletes.store(1, Ordering::SeqCst);
    let (status, erased) = delete(&app, &admin, "/admin/users/anna/").await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["subject"], "user:anna");
    assert_eq!(erased["tokens_revoked"], false);
    let counts = &erased["erased"];
    assert_eq!(counts["conversations"], 1, "{erased}");
    assert!(counts["messages"].as_i64().unwrap() >= 3, "{erased}");
    assert_eq!(counts["action_runs"], 1, "{erased}");
    assert_eq!(counts["llm_calls"], 1, "{erased}");
    assert_eq!(counts["telegram_updates"], 1, "{erased}");
    assert_eq!(counts["telegram_messages"], 1, "{erased}");
    assert_eq!(counts["telegram_topics"], 1, "{erased}");
    assert_eq!(counts["topics_queued_for_deletion"], 1, "{erased}");
    assert!(counts["telegram_outbox"].as_i64().unwrap() >= 2, "{erased}");

    fake.wait_for("the topic deleted", |f| {
        f.accepted("deleteForumTopic").iter().any(|call| call["message_thread_id"] == thread)
    })
    .await;
    let failed_first = fake.calls().iter().any(|call| call.method == "deleteForumTopic" && call.status == 500);
    assert!(failed_first, "the first deletion failed and was retried:\n{}", fake.summary());
    let state: (String, i32) = wait_until("the deletion recorded", WAIT, async || {
        sqlx::query_as::<_, (String, i32)>("SELECT state, attempts FROM telegram_outbox WHERE kind = 'delete_topic'")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .filter(|(state, _)| state == "sent")
    })
    .await;
    assert_eq!(state, ("sent".to_owned(), 2));

    // Nothing in any table mentions her conversation or her address any more.
    assert_eq!(rows_mentioning(&app, &anna.id).await, vec![]);
    assert_eq!(rows_mentioning(&app, "anna@example.com").await, vec![]);
    assert_eq!(app.count("SELECT count(*) FROM conversations WHERE owner = 'user:anna'").await, 0);
    // Boris' data is untouched.
    assert_eq!(rows_mentioning(&app, &boris.id).await, boris_rows);
    let (status, body) = app.get(Some(&boris.bearer), &format!("/conversations/{}", boris.id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Both requests are audited, with the admin and without her sub.
    let audit: Vec<(String, String, String, Value)> =
        sqlx::query_as("SELECT admin_owner, action, subject_hash, counts FROM admin_audit ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!((audit[0].0.as_str(), audit[0].1.as_str()), ("user:op", "export"));
    assert_eq!((audit[1].0.as_str(), audit[1].1.as_str()), ("user:op", "erase"));
    assert_eq!(audit[0].2, audit[1].2);
    assert_eq!(audit[1].2, erased["subject_hash"].as_str().unwrap());
    assert_eq!(audit[1].3["erased"]["conversations"], 1);
    assert!(!format!("{audit:?}").contains("anna"), "{audit:?}");

    // Erasing again finds nothing; an export now is empty.
    let (status, again) = delete(&app, &admin, "/admin/users/user:anna").await;
    assert_eq!((status, &again["erased"]["conversations"]), (StatusCode::OK, &json!(0)));
    let (_, export) = app.get(Some(&admin), "/admin/users/anna/export").await;
    assert_eq!(export["conversations"], json!([]));
}

#[tokio::test]
async fn an_erased_visitor_s_token_is_refused() {
    let app = TestApp::spawn().await;
    let visitor = app.open(None).await;
    app.say(&visitor, "Здравствуйте").await;
    let other = app.open(None).await;
    let owner: String = sqlx::query_scalar("SELECT owner FROM conversations WHERE id = $1::uuid")
        .bind(&visitor.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(owner.starts_with("visitor:"), "{owner}");

    let (status, erased) = delete(&app, &admin(), &format!("/admin/users/{owner}")).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["tokens_revoked"], true);
    assert_eq!(erased["erased"]["messages"], 1);

    let (status, body) = app.get(Some(&visitor.bearer), "/conversations/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app.post(Some(&visitor.bearer), "/conversations/", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Another visitor is not affected.
    let (status, body) = app.get(Some(&other.bearer), &format!("/conversations/{}", other.id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The routes are documented with the subject's limits and every answer.
    let (_, document) = app.get(None, "/openapi.json").await;
    for (path, method) in [("/admin/users/{sub}", "delete"), ("/admin/users/{sub}/export", "get")] {
        let operation = &document["paths"][path][method];
        let parameter = &operation["parameters"][0];
        assert_eq!((&parameter["name"], &parameter["in"]), (&json!("sub"), &json!("path")), "{operation}");
        assert_eq!(parameter["schema"]["minLength"], 1, "{operation}");
        assert_eq!(parameter["schema"]["maxLength"], 300, "{operation}");
        for status in ["200", "400", "401", "403", "422"] {
            assert!(operation["responses"][status].is_object(), "{method} {path} documents {status}");
        }
    }
}

#[tokio::test]
async fn page_urls_lose_their_query_and_fragment_unless_kept() {
    let url = "https://lectio.ru/pay?email=anna@example.com&token=abc#card";
    for (keep, expected) in [(false, "https://lectio.ru/pay"), (true, url)] {
        let app = TestApp::spawn_with(|config| config.keep_page_query = keep).await;
        let (status, body) =
            app.post(None, "/conversations/", json!({ "page_url": url, "page_title": "Оплата" })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["page_url"], expected, "keep = {keep}");
        let stored: Option<String> = sqlx::query_scalar("SELECT page_url FROM conversations WHERE id = $1::uuid")
            .bind(body["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some(expected), "keep = {keep}");
    }
}

#[tokio::test]
async fn retention_deletes_closed_conversations_past_the_limit_and_keeps_the_metrics() {
    let mut app = TestApp::spawn_with(|config| config.retention = Some(Duration::from_secs(30 * 86_400))).await;
    app.start_worker().await;
    let admin = admin();

    // Old and closed: goes. Recent and closed, old and open: stay.
    let mut ids = Vec::new();
    for (who, close) in [("anna", true), ("boris", true), ("carol", false)] {
        let conversation = app.open(Some(&user_token(who))).await;
        let mut sse = app.stream(&conversation, None).await;
        app.say(&conversation, "Как оплатить подписку?").await;
        sse.next_from("assistant").await;
        if close {
            let path = format!("/conversations/{}/close", conversation.id);
            let (status, body) = app.post(Some(&conversation.bearer), &path, json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            sse.next_from("system").await;
        }
        log_run_and_call(&app, &conversation).await;
        ids.push(conversation.id);
    }
    let (old, recent, open) = (&ids[0], &ids[1], &ids[2]);
    let day = (chrono::Utc::now() - chrono::Duration::days(40)).date_naive();

    // Forty days back, and that day's figures as they stand with the rows.
    let mut tx = app.pool.begin().await.unwrap();
    for (table, column) in
        [("messages", "conversation_id"), ("action_runs", "conversation_id"), ("llm_calls", "conversation_id")]
    {
        let sql =
            format!("UPDATE {table} SET created_at = created_at - interval '40 days' WHERE {column} = ANY($1::uuid[])");
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind([old, open]).execute(&mut *tx).await.unwrap();
    }
    sqlx::query(
        "UPDATE conversations SET created_at = created_at - interval '40 days', updated_at = updated_at - interval '40 days',
                closed_at = closed_at - interval '40 days' WHERE id = ANY($1::uuid[])",
    )
    .bind([old, open])
    .execute(&mut *tx)
    .await
    .unwrap();
    let start = metrics::day_start(day);
    let before = metrics::compute_on(&mut tx, start, start + chrono::Duration::days(1)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(before.conversations, 2, "{before:?}");
    assert_eq!(before.llm_calls, 2, "{before:?}");

    let mut conn = app.pool.acquire().await.unwrap();
    jobs::enqueue(&mut conn, &ApplyRetention { cause: "test".into() }, 3).await.unwrap();
    drop(conn);
    wait_until("the old conversation deleted", WAIT, async || {
        count_of(&app, "SELECT count(*) FROM conversations WHERE id = $1::uuid", old).await == 0
    })
    .await;

    for (table, column) in [
        ("messages", "conversation_id"),
        ("action_runs", "conversation_id"),
        ("llm_calls", "conversation_id"),
        ("telegram_outbox", "conversation_id"),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1::uuid");
        let (old_rows, recent_rows, open_rows) =
            (count_of(&app, &sql, old).await, count_of(&app, &sql, recent).await, count_of(&app, &sql, open).await);
        assert_eq!(old_rows, 0, "{table} of the old conversation");
        if table != "telegram_outbox" {
            assert!(recent_rows > 0 && open_rows > 0, "{table}: {recent_rows} {open_rows}");
        }
    }
    assert_eq!(rows_mentioning(&app, old).await, vec![]);

    // The day's figures are what they were, and a recomputation leaves them so.
    // Durations go through PostgreSQL's float arithmetic: compare them to the microsecond (a
    // difference, not a rounding, which splits values that lie on a rounding boundary).
    fn same(left: &Value, right: &Value) -> bool {
        match (left, right) {
            (Value::Number(l), Value::Number(r)) if l.is_f64() || r.is_f64() => {
                (l.as_f64().unwrap() - r.as_f64().unwrap()).abs() <= 0.001
            }
            (Value::Object(l), Value::Object(r)) => {
                l.len() == r.len() && l.iter().all(|(k, v)| r.get(k).is_some_and(|w| same(v, w)))
            }
            _ => left == right,
        }
    }
    let stored = |figures: Value| {
        let mut figures = figures;
        let object = figures.as_object_mut().unwrap();
        object.remove("day");
        object.remove("computed_at");
        figures
    };
    let before = serde_json::to_value(&before).unwrap();
    let path = format!("/admin/metrics?from={day}&to={day}");
    let (status, body) = app.get(Some(&admin), &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(same(&stored(body["days"][0].clone()), &before), "{body}\nbefore: {before}");
    metrics::compute_day(&app.pool, day).await.unwrap();
    let (_, again) = app.get(Some(&admin), &path).await;
    assert!(same(&stored(again["days"][0].clone()), &before), "{again}\nbefore: {before}");
}
