//! Operators in Telegram, against a fake Bot API: the topic and its card, forwarding in both
//! directions, commands and buttons, edits, the webhook's checks, polling, and flood control.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use concierge_shared::config::{SlaHours, TelegramConfig, TelegramMode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_telegram::{CHAT_ID, FakeTelegram, OPERATOR_ID, TOKEN, operator_user, stranger_user, text_update},
    helpers::{Conversation, TestApp, WAIT, platform_token, user_token, wait_until},
};

pub const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

pub fn telegram_config(fake: &FakeTelegram, mode: TelegramMode) -> TelegramConfig {
    TelegramConfig {
        bot_token: TOKEN.into(),
        chat_id: CHAT_ID,
        api_url: Some(fake.url.clone()),
        mode,
        operators: vec![OPERATOR_ID],
        messages_per_minute: 60_000,
        topics_per_window: 0,
        topics_window: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
        sla: None,
        sla_hours: SlaHours::Duty,
        on_duty: Vec::new(),
        public_url: None,
        upload_limits: (concierge_shared::config::PHOTO_UPLOAD_LIMIT, concierge_shared::config::FILE_UPLOAD_LIMIT),
    }
}

pub(crate) async fn spawn(fake: &FakeTelegram, mode: TelegramMode) -> TestApp {
    spawn_paced(fake, mode, 60_000).await
}

async fn spawn_paced(fake: &FakeTelegram, mode: TelegramMode, per_minute: u32) -> TestApp {
    let settings = TelegramConfig { messages_per_minute: per_minute, ..telegram_config(fake, mode) };
    let mut app = TestApp::spawn_with(|config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;
    app
}

pub(crate) async fn webhook(app: &TestApp, secret: Option<&str>, update: &Value) -> StatusCode {
    let mut request = app.client.post(app.url("/telegram/webhook/")).json(update);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().await.unwrap().status()
}

/// The topic Telegram created for the conversation.
pub(crate) async fn thread_of(app: &TestApp, conversation: &Conversation) -> i64 {
    wait_until("a topic for the conversation", WAIT, async || {
        let thread: Option<Option<i32>> =
            sqlx::query_scalar("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1::uuid")
                .bind(&conversation.id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        thread.flatten().map(i64::from)
    })
    .await
}

/// Press "call an operator", having written first (a hand-over needs a question): the
/// conversation's first message is answered before the button is pressed.
pub(crate) async fn escalate(app: &TestApp, conversation: &Conversation) {
    app.write_first(conversation).await;
    let (status, body) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/escalate/", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_whole_human_loop_runs_through_a_telegram_topic() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;

    // The AI hands over; the user is told an operator is coming.
    app.say(&conversation, "Позовите оператора, пожалуйста").await;
    let handover = sse.next_from("system").await;
    assert_eq!(handover.data["metadata"]["mode"], "human");
    assert!(handover.data["content"].as_str().unwrap().contains("оператор"));

    // One topic named after the user, with the card first.
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let topics = fake.accepted("createForumTopic");
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0]["name"], "🔴 Анна · Позовите оператора, пожалуйста", "a new topic waits for an operator");
    let card = fake.accepted("sendMessage").into_iter().find(|m| m["message_thread_id"] == thread).unwrap();
    let text = card["text"].as_str().unwrap();
    for expected in
        ["Анна", "anna@example.com", "пользователь попросил оператора", "Страница: Lectio", &conversation.id]
    {
        assert!(text.contains(expected), "the card lacks {expected:?}:\n{text}");
    }
    let buttons = &card["reply_markup"]["inline_keyboard"][0];
    assert_eq!(buttons[0]["callback_data"], format!("close:{}", conversation.id));
    assert_eq!(buttons[1]["callback_data"], format!("ai:{}", conversation.id));
    assert!(fake.posts_in(thread)[1].contains("Позовите оператора, пожалуйста"), "the transcript follows the card");

    // The user writes; it reaches the topic, the AI stays silent.
    app.say(&conversation, "С меня дважды списали деньги за подписку").await;
    fake.wait_for("the user's message", |f| {
        f.posts_in(thread).iter().any(|p| p.contains("С меня дважды списали деньги за подписку"))
    })
    .await;
    assert!(fake.posts_in(thread).last().unwrap().starts_with("👤 Анна:"));

    // The operator answers in the topic; the user's stream shows it with her first name.
    let reply = text_update(1, 5001, thread, operator_user(), "Вижу два списания, оформляю возврат.");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &reply).await, StatusCode::OK);
    let seen = sse.next_from("operator").await;
    assert_eq!(seen.data["content"], "Вижу два списания, оформляю возврат.");
    assert_eq!(seen.data["metadata"]["operator"]["name"], "Ольга");
    assert_eq!(seen.data["metadata"]["operator"]["via"], "telegram");

    // She edits it: the web message changes.
    let mut edited = text_update(2, 5001, thread, operator_user(), "Вижу два списания, возврат оформлен.");
    edited["edited_message"] = edited.as_object_mut().unwrap().remove("message").unwrap();
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &edited).await, StatusCode::OK);
    let edit = sse.next().await;
    assert_eq!(edit.event, "edit");
    assert_eq!(edit.data["id"], seen.data["id"]);
    assert_eq!(edit.data["content"], "Вижу два списания, возврат оформлен.");

    // A note stays among operators; a sticker is refused politely.
    let note = text_update(3, 5002, thread, operator_user(), "/note клиентка из Казани, ключевой аккаунт");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &note).await, StatusCode::OK);
    let mut sticker = text_update(4, 5003, thread, operator_user(), "");
    sticker["message"].as_object_mut().unwrap().remove("text");
    sticker["message"]["sticker"] = json!({
        "file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512,
        "is_animated": false, "is_video": false, "file_size": 1000 });
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &sticker).await, StatusCode::OK);
    fake.wait_for("the note and sticker answers", |f| {
        let posts = f.posts_in(thread);
        posts.iter().any(|p| p.starts_with("📝")) && posts.iter().any(|p| p.contains("стикер"))
    })
    .await;
    let admin =
        platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }));
    let (_, detail) = app.get(Some(&admin), &format!("/admin/conversations/{}", conversation.id)).await;
    assert_eq!(detail["notes"][0]["content"], "клиентка из Казани, ключевой аккаунт");
    assert_eq!(detail["telegram_topic"]["thread_id"], thread);
    let stored = app.stored_messages(&conversation.id).await;
    assert!(stored.iter().all(|(_, _, content)| !content.contains("Казани")), "notes never reach the user");

    // /close: the user is asked to rate, rates, and the topic hears of it.
    let close = text_update(5, 5004, thread, operator_user(), "/close@lectio_support_bot");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &close).await, StatusCode::OK);
    let closed = sse.next_from("system").await;
    assert_eq!(closed.event, "status");
    assert_eq!(closed.data["metadata"]["status"], "closed");
    let (status, rated) = app
        .post(Some(&conversation.bearer), &format!("/conversations/{}/rate/", conversation.id), json!({ "rating": 5 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{rated}");
    fake.wait_for("the rating", |f| f.posts_in(thread).iter().any(|p| p.starts_with("⭐ Оценка пользователя: 5/5")))
        .await;
    assert!(fake.posts_in(thread).iter().any(|p| p.starts_with("✅ Разговор закрыт")));
}

#[tokio::test]
async fn operator_updates_apply_in_order_and_long_posts_reach_a_closed_topic() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    escalate(&app, &conversation).await;
    sse.next_from("system").await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;

    // An operator closed the topic by hand; a message longer than Telegram takes (emoji count
    // twice) still arrives, whole, in parts, once the bot has reopened the topic.
    fake.behaviour.closed_threads.lock().unwrap().insert(thread);
    let long = "🙂".repeat(3000);
    app.say(&conversation, &long).await;
    fake.wait_for("the long message", |f| f.posts_in(thread).concat().matches('🙂').count() == 3000).await;
    assert!(fake.posts_in(thread).iter().all(|post| post.encode_utf16().count() <= 4096));
    assert_eq!(fake.accepted("reopenForumTopic").len(), 1);

    // Replies, an edit, a renamed topic and /close arrive back to back; they apply in order.
    let mut edited = text_update(13, 6001, thread, operator_user(), "Первый ответ, исправленный");
    edited["edited_message"] = edited.as_object_mut().unwrap().remove("message").unwrap();
    let mut renamed = crate::fake_telegram::group_message(6004, Some(thread), operator_user());
    renamed["forum_topic_edited"] = json!({ "name": "Анна · возврат" });
    let updates = [
        text_update(11, 6001, thread, operator_user(), "Первый ответ"),
        text_update(12, 6002, thread, operator_user(), "Второй ответ"),
        edited,
        json!({ "update_id": 14, "message": renamed }),
        text_update(15, 6003, thread, operator_user(), "/close"),
    ];
    for update in &updates {
        assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), update).await, StatusCode::OK);
    }
    let mut seen = Vec::new();
    loop {
        let event = sse.next().await;
        if event.data["role"] == "operator" || event.event != "message" {
            seen.push((event.event.clone(), event.data["content"].as_str().unwrap_or_default().to_owned()));
        }
        if event.event == "status" && event.data["metadata"]["status"] == "closed" {
            break;
        }
    }
    let contents: Vec<&str> = seen.iter().filter(|(event, _)| event == "message").map(|(_, c)| c.as_str()).collect();
    assert_eq!(contents, ["Первый ответ", "Второй ответ"], "{seen:?}");
    let stored = app.stored_messages(&conversation.id).await;
    assert!(stored.iter().any(|(_, role, content)| role == "operator" && content == "Первый ответ, исправленный"));
    let outcome: Option<String> = sqlx::query_scalar("SELECT outcome FROM telegram_updates WHERE update_id = 14")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(outcome.as_deref(), Some("ignored: a service message"));
    assert!(
        !fake.posts_in(thread).iter().any(|p| p.contains("в чат пользователя не передаётся")),
        "no refusal for a service message"
    );
}

#[tokio::test]
async fn the_webhook_checks_the_secret_and_ignores_replays_strangers_and_unknown_topics() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let conversation = app.open(None).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    let update = text_update(10, 6001, thread, operator_user(), "Здравствуйте! Чем помочь?");

    for secret in [None, Some("wrong"), Some("webhook-secret-012345678")] {
        assert_eq!(webhook(&app, secret, &update).await, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.count("SELECT count(*) FROM telegram_updates").await, 0, "refused updates are not stored");

    // Delivered twice (Telegram retries): stored and answered once.
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &update).await, StatusCode::OK);
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &update).await, StatusCode::OK);
    // A stranger in the topic, an operator in an unknown topic.
    let stranger = text_update(11, 6002, thread, stranger_user(), "я тоже хочу ответить");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &stranger).await, StatusCode::OK);
    let elsewhere = text_update(12, 6003, thread + 1000, operator_user(), "не туда");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &elsewhere).await, StatusCode::OK);

    wait_until("the updates handled", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_updates WHERE processed_at IS NULL").await == 0
    })
    .await;
    let operator_messages: Vec<String> = app
        .stored_messages(&conversation.id)
        .await
        .into_iter()
        .filter(|(_, role, _)| role == "operator")
        .map(|(_, _, content)| content)
        .collect();
    let outcomes: HashMap<i64, String> = sqlx::query_as("SELECT update_id, outcome FROM telegram_updates")
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(operator_messages, vec!["Здравствуйте! Чем помочь?"], "{outcomes:?}");
    assert_eq!(outcomes[&10], "reply");
    assert_eq!(outcomes[&11], "ignored: not an operator");
    assert_eq!(outcomes[&12], "ignored: unknown topic");

    // Malformed bodies get the API's error shape.
    let response = app
        .client
        .post(app.url("/telegram/webhook/"))
        .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &json!({ "message": {} })).await, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_card_buttons_hand_back_to_the_ai_and_close() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let conversation = app.open(Some(&user_token("boris"))).await;
    let mut sse = app.stream(&conversation, None).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    let button = |update_id: i64, from: Value, data: String| {
        json!({ "update_id": update_id, "callback_query": {
            "id": format!("cb{update_id}"), "from": from, "chat_instance": "ci", "data": data,
            "message": { "message_id": 1, "date": 1_764_000_000, "message_thread_id": thread,
                "chat": { "id": CHAT_ID, "type": "supergroup", "title": "Lectio support", "is_forum": true }, "text": "card" }
        }})
    };
    // A stranger's press does nothing but an alert.
    let pressed = button(20, stranger_user(), format!("ai:{}", conversation.id));
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &pressed).await, StatusCode::OK);
    fake.wait_for("the stranger's alert", |f| !f.accepted("answerCallbackQuery").is_empty()).await;
    assert_eq!(fake.accepted("answerCallbackQuery")[0]["show_alert"], true);

    let pressed = button(21, operator_user(), format!("ai:{}", conversation.id));
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &pressed).await, StatusCode::OK);
    let back = sse.next_from("system").await;
    let back = if back.data["metadata"]["mode"] == "human" { sse.next_from("system").await } else { back };
    assert_eq!(back.data["metadata"]["mode"], "ai");
    app.say(&conversation, "Как оплатить подписку?").await;
    assert_eq!(sse.next_from("assistant").await.data["metadata"]["decision"], "answer");

    let pressed = button(22, operator_user(), format!("close:{}", conversation.id));
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &pressed).await, StatusCode::OK);
    assert_eq!(sse.next_from("system").await.data["metadata"]["status"], "closed");
    fake.wait_for("both confirmations", |f| {
        let posts = f.posts_in(thread);
        posts.iter().any(|p| p.starts_with("🤖")) && posts.iter().any(|p| p.starts_with("✅"))
    })
    .await;
}

#[tokio::test]
async fn one_topic_when_the_job_runs_twice_and_telegram_is_slow_and_failing() {
    let fake = FakeTelegram::start().await;
    fake.behaviour.create_delay_ms.store(1500, Ordering::SeqCst);
    fake.behaviour.fail_sends.store(2, Ordering::SeqCst);
    let app = TestApp::spawn_with({
        let settings = telegram_config(&fake, TelegramMode::Webhook);
        move |config| config.telegram = Some(settings)
    })
    .await;
    // Escalate without workers, then run the job's body twice at once.
    let conversation = app.open(Some(&user_token("vera"))).await;
    app.say(&conversation, "Не могу войти в аккаунт").await;
    escalate(&app, &conversation).await;
    let escalation_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1::uuid AND role = 'system' ORDER BY seq DESC LIMIT 1",
    )
    .bind(&conversation.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let ctx = concierge_worker::Context::build(&app.config, app.pool.clone()).await.unwrap();
    let telegram = ctx.telegram.clone().unwrap();
    let job = concierge_shared::jobs::Escalate {
        conversation_id: conversation.id.parse().unwrap(),
        escalation_id: concierge_shared::MessageId(escalation_id),
    };
    let run = || async {
        let mut outcome = concierge_worker::telegram::escalate::escalate(&ctx, &telegram, &job).await;
        // Telegram's 500s end a run; the job retries.
        while outcome.is_err() {
            outcome = concierge_worker::telegram::escalate::escalate(&ctx, &telegram, &job).await;
        }
    };
    tokio::join!(run(), run());
    assert_eq!(fake.accepted("createForumTopic").len(), 1, "one topic");
    let thread = thread_of(&app, &conversation).await;
    let posts = fake.posts_in(thread);
    assert_eq!(posts.len(), 2, "the card and the transcript, once each: {posts:#?}");
    assert!(posts[0].starts_with("🆘"));
    assert!(posts[1].contains("Не могу войти в аккаунт"));
    let failed = fake.calls().iter().filter(|c| c.status == 500).count();
    assert_eq!(failed, 2, "the fake failed twice and the posts still arrived");

    // A second escalation (after the bot had it back) reuses the topic.
    let mut tx = app.pool.begin().await.unwrap();
    concierge_shared::human::hand_back(&mut tx, job.conversation_id).await.unwrap();
    tx.commit().await.unwrap();
    escalate(&app, &conversation).await;
    let second: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1::uuid AND role = 'system' ORDER BY seq DESC LIMIT 1",
    )
    .bind(&conversation.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let again = concierge_shared::jobs::Escalate { escalation_id: concierge_shared::MessageId(second), ..job.clone() };
    concierge_worker::telegram::escalate::escalate(&ctx, &telegram, &again).await.unwrap();
    assert_eq!(fake.accepted("createForumTopic").len(), 1, "the topic is reused");
    assert!(fake.posts_in(thread).iter().any(|p| p.starts_with("🔁")), "the second card says it is a return");
}

#[tokio::test]
async fn polling_mode_fetches_updates_without_a_webhook() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Polling).await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.push_update(text_update(700, 8001, thread, operator_user(), "Ответ через getUpdates"));
    assert_eq!(sse.next_from("operator").await.data["content"], "Ответ через getUpdates");
    assert!(!fake.accepted("deleteWebhook").is_empty(), "polling removes a webhook first");
    fake.wait_for("the next poll", |f| f.accepted("getUpdates").iter().any(|body| body["offset"] == 701)).await;
}

#[tokio::test]
async fn without_telegram_escalation_queues_nothing_for_it() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    escalate(&app, &conversation).await;
    app.say(&conversation, "Есть кто живой?").await;
    app.wait_for_idle_queue().await;
    assert_eq!(app.count("SELECT count(*) FROM telegram_topics").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM telegram_outbox").await, 0);
    let status = app
        .client
        .post(app.url("/telegram/webhook/"))
        .header("X-Telegram-Bot-Api-Secret-Token", "anything")
        .json(&json!({ "update_id": 1 }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN, "no secret configured: every update is refused");
}

/// 50 conversations escalate at once while the fake answers 429 half the time (every other
/// second); each user then writes twice. Every conversation gets exactly one topic, and every
/// topic gets its card, transcript and both messages, in order, once. Sends are paced at 1,200
/// a minute so that they span many flood windows.
#[tokio::test]
async fn fifty_escalations_under_flood_control() {
    let fake = FakeTelegram::start().await;
    fake.behaviour.flood_windows.store(true, Ordering::SeqCst);
    let app = spawn_paced(&fake, TelegramMode::Webhook, 1200).await;
    let started = Instant::now();
    let mut conversations = Vec::new();
    for _ in 0..50 {
        let conversation = app.open(None).await;
        escalate(&app, &conversation).await;
        conversations.push(conversation);
    }
    // Messages written before the card is built are in its transcript; these come after.
    fake.wait_for_within("the cards", Duration::from_secs(120), |f| f.accepted("sendMessage").len() >= 50 * 2).await;
    for round in 1..=2 {
        for (index, conversation) in conversations.iter().enumerate() {
            app.say(conversation, &format!("сообщение {round} из разговора {index}")).await;
        }
    }
    fake.wait_for_within("every post", Duration::from_secs(120), |f| f.accepted("sendMessage").len() >= 50 * 4).await;
    let elapsed = started.elapsed();

    let topics = fake.accepted("createForumTopic");
    assert_eq!(topics.len(), 50, "one topic per conversation");
    let mut threads = HashSet::new();
    for (index, conversation) in conversations.iter().enumerate() {
        let thread = thread_of(&app, conversation).await;
        assert!(threads.insert(thread), "topics are not shared");
        let posts = fake.posts_in(thread);
        assert_eq!(posts.len(), 4, "card, transcript, two messages, once each: {posts:#?}");
        assert!(posts[0].starts_with("🆘"));
        assert!(posts[2].ends_with(&format!("сообщение 1 из разговора {index}")), "{posts:#?}");
        assert!(posts[3].ends_with(&format!("сообщение 2 из разговора {index}")), "{posts:#?}");
    }
    let calls = fake.calls();
    let limited = calls.iter().filter(|c| c.status == 429).count();
    let accepted = calls.iter().filter(|c| c.status == 200 && c.method != "getUpdates").count();
    assert!(limited > 0, "the fake answered 429");
    wait_until("every post marked sent", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_outbox WHERE state <> 'sent'").await == 0
    })
    .await;
    eprintln!(
        "50 escalations under flood control: {} topics, {accepted} accepted calls, {limited} answered 429, all delivered in {:.1} s",
        topics.len(),
        elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn a_message_the_model_was_deciding_on_goes_to_the_operator_who_took_over_meanwhile() {
    use crate::fake_llm::{FakeLlm, Reply};
    let fake = FakeTelegram::start().await;
    let llm = FakeLlm::start().await;
    let (settings, llm_url) = (telegram_config(&fake, TelegramMode::Webhook), llm.url.clone());
    let mut app = TestApp::spawn_with(move |config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
        config.ai.provider = concierge_shared::config::Provider::Openai;
        config.ai.base_url = llm_url;
        config.ai.model = "scripted-model".into();
        config.ai.api_key = Some("test-key".into());
        config.ai.timeout = Duration::from_secs(5);
        config.ai.stream = false;
    })
    .await;
    app.start_worker().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;

    // A topic exists; the operator hands the conversation back to the bot.
    app.say(&conversation, "Позовите оператора").await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let back = text_update(21, 7001, thread, operator_user(), "/ai");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &back).await, StatusCode::OK);
    while sse.next().await.data["metadata"]["mode"] != "ai" {}

    // The model takes its time over the next message; the operator answers first.
    llm.push(Reply::Hang(Duration::from_millis(1500)));
    let question = "Кстати, можно перенести урок на пятницу?";
    let asked_before = llm.requests().len();
    app.say(&conversation, question).await;
    wait_until("the model asked about the message", WAIT, async || llm.requests().len() > asked_before).await;
    let reply = text_update(22, 7002, thread, operator_user(), "Я на связи, сейчас посмотрю.");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &reply).await, StatusCode::OK);

    // The message is the operator's now: it reaches the topic, and the late decision is dropped.
    fake.wait_for("the message in the topic", |f| f.posts_in(thread).iter().any(|p| p.contains(question))).await;
    app.wait_for_idle_queue().await;
    let stored = app.stored_messages(&conversation.id).await;
    assert!(stored.iter().all(|(_, _, content)| content != "поздно"), "{stored:?}");
}

#[tokio::test]
async fn a_topic_deleted_in_telegram_is_opened_again_with_its_card() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &conversation).await;
    let first = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(first).len() >= 2).await;

    // Someone deletes the topic; the user writes again.
    fake.behaviour.deleted_threads.lock().unwrap().insert(first);
    app.say(&conversation, "Вы тут? Жду ответа").await;
    fake.wait_for("a new topic", |f| f.accepted("createForumTopic").len() == 2).await;
    let thread = wait_until("the new topic stored", WAIT, async || {
        Some(thread_of(&app, &conversation).await).filter(|thread| *thread != first)
    })
    .await;
    // The card comes first in the new topic; its transcript carries the message.
    fake.wait_for("the card and transcript", |f| {
        f.posts_in(thread).iter().any(|post| post.starts_with("Переписка") && post.contains("Вы тут? Жду ответа"))
    })
    .await;
    let posts = fake.posts_in(thread);
    assert!(posts[0].starts_with("🆘"), "{posts:#?}");
    // Telegram has every post; the outbox marks each one sent just after.
    wait_until("every post marked sent", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_outbox WHERE state = 'pending'").await == 0
    })
    .await;
}
