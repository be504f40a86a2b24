//! The support group at a glance, against the fake Bot API: a topic's name shows whether its
//! conversation waits for an operator, was answered or is closed (and a closed conversation's
//! topic is closed in Telegram); a user waiting too long is reminded of, naming who is on
//! duty; an operator takes a conversation with `/take` or the card's button and releases it.

use std::time::Duration;

use concierge_shared::config::{SlaHours, TelegramConfig, TelegramMode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_telegram::{CHAT_ID, FakeTelegram, OPERATOR_ID, operator_user, text_update},
    helpers::{Conversation, TestApp, WAIT, platform_token, user_token, wait_until},
    telegram::{WEBHOOK_SECRET, escalate, spawn, telegram_config, thread_of, waiting_in_topic, webhook},
};

const SECOND_OPERATOR_ID: u64 = 4343;

fn second_operator() -> Value {
    json!({ "id": SECOND_OPERATOR_ID, "is_bot": false, "first_name": "Иван", "last_name": "Петров", "username": "ivan_petrov" })
}

fn admin() -> String {
    platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

async fn spawn_with(settings: TelegramConfig) -> TestApp {
    let mut app = TestApp::spawn_with(|config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;
    app
}

async fn send(app: &TestApp, update: Value) {
    assert_eq!(webhook(app, Some(WEBHOOK_SECRET), &update).await, StatusCode::OK);
}

fn button(update_id: i64, thread: i64, from: Value, data: String) -> Value {
    json!({ "update_id": update_id, "callback_query": {
        "id": format!("cb{update_id}"), "from": from, "chat_instance": "ci", "data": data,
        "message": { "message_id": 1, "date": 1_764_000_000, "message_thread_id": thread, "is_topic_message": true,
            "chat": { "id": CHAT_ID, "type": "supergroup", "title": "Lectio support", "is_forum": true }, "text": "card" }
    }})
}

async fn detail(app: &TestApp, conversation: &Conversation) -> Value {
    let (status, detail) = app.get(Some(&admin()), &format!("/admin/conversations/{}", conversation.id)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    detail
}

/// Wait until the topic's name starts with `prefix`.
async fn named(fake: &FakeTelegram, thread: i64, prefix: &str) {
    fake.wait_for(&format!("the topic named {prefix}…"), |f| f.topic_name(thread).starts_with(prefix)).await;
}

#[tokio::test]
async fn a_topic_shows_whether_it_waits_was_answered_or_is_closed() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    assert!(fake.topic_name(thread).starts_with("🔴 Анна · "), "a new topic waits: {}", fake.topic_name(thread));

    // The operator answers in the topic: the user has the word.
    send(&app, text_update(1, 9001, thread, operator_user(), "Здравствуйте! Смотрю.")).await;
    named(&fake, thread, "💬 Анна · ").await;

    // Five messages from the user: the topic waits again, renamed once, not five times.
    for n in 1..=5 {
        app.say(&conversation, &format!("Сообщение номер {n}")).await;
    }
    fake.wait_for("the five messages", |f| f.posts_in(thread).iter().any(|p| p.contains("Сообщение номер 5"))).await;
    named(&fake, thread, "🔴 Анна · ").await;
    app.wait_for_idle_queue().await;
    assert_eq!(fake.accepted("editForumTopic").len(), 2, "one rename per change of status: {}", fake.summary());

    // A reply from the console counts as an answer too.
    let (status, body) = app
        .post(
            Some(&admin()),
            &format!("/admin/conversations/{}/reply", conversation.id),
            json!({ "content": "Возврат оформлен." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    named(&fake, thread, "💬 Анна · ").await;

    // /close: the topic is renamed and closed in Telegram, after the closing notice.
    send(&app, text_update(2, 9002, thread, operator_user(), "/close")).await;
    fake.wait_for("the topic closed", |f| f.topic_closed(thread) && f.topic_name(thread).starts_with("✅ ")).await;
    assert!(fake.posts_in(thread).last().unwrap().starts_with("✅ Разговор закрыт"));
    assert_eq!(fake.accepted("closeForumTopic").len(), 1);

    // The user rates afterwards: the topic opens for the rating and closes again.
    let path = format!("/conversations/{}/rate/", conversation.id);
    let (status, body) = app.post(Some(&conversation.bearer), &path, json!({ "rating": 4 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    fake.wait_for("the rating, and the topic closed again", |f| {
        f.posts_in(thread).iter().any(|p| p.starts_with("⭐")) && f.accepted("closeForumTopic").len() == 2
    })
    .await;
    assert!(fake.topic_closed(thread));
    assert_eq!(fake.accepted("reopenForumTopic").len(), 1);
    wait_until("every status change done", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_outbox WHERE state <> 'sent'").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_topic_follows_the_conversation_back_to_the_bot_and_to_people_again() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;

    send(&app, text_update(1, 9101, thread, operator_user(), "/ai")).await;
    named(&fake, thread, "🤖 Анна · ").await;

    // An operator closed the topic by hand meanwhile; the user asks for a person again: the
    // topic is reopened for the new card and waits.
    fake.behaviour.closed_threads.lock().unwrap().insert(thread);
    let (status, body) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/escalate/", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    fake.wait_for("the second card", |f| f.posts_in(thread).iter().any(|p| p.starts_with("🔁"))).await;
    named(&fake, thread, "🔴 Анна · ").await;
    assert!(!fake.topic_closed(thread), "the topic is open again");
    assert_eq!(fake.accepted("createForumTopic").len(), 1, "the same topic");
}

#[tokio::test]
async fn a_user_waiting_past_the_sla_is_reminded_of_twice_naming_who_is_on_duty() {
    let fake = FakeTelegram::start().await;
    let sla = Duration::from_secs(2);
    let app = spawn_with(TelegramConfig {
        sla: Some(sla),
        sla_hours: SlaHours::Always,
        on_duty: vec!["olga_support".into(), "ivan_petrov".into()],
        ..telegram_config(&fake, TelegramMode::Webhook)
    })
    .await;
    let waiting = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &waiting).await;
    // Another user is answered at once (from the console): no reminder for them.
    let answered = app.open(Some(&user_token("boris"))).await;
    escalate(&app, &answered).await;
    let path = format!("/admin/conversations/{}/reply", answered.id);
    let (status, body) = app.post(Some(&admin()), &path, json!({ "content": "Уже смотрю." })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (thread, answered_thread) = (thread_of(&app, &waiting).await, thread_of(&app, &answered).await);

    // The console shows who waits, and since when.
    let (_, list) = app.get(Some(&admin()), "/admin/conversations?mode=human").await;
    let item = |id: &str| list["items"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    assert!(item(&waiting.id)["waiting_since"].is_string(), "{list}");

    let reminder =
        |f: &FakeTelegram| f.posts_in(thread).into_iter().filter(|p| p.starts_with("⏰")).collect::<Vec<_>>();
    fake.wait_for("the first reminder", |f| !reminder(f).is_empty()).await;
    let first = &reminder(&fake)[0];
    assert!(first.contains("@olga_support, @ivan_petrov"), "{first}");
    assert!(first.contains("/take"), "{first}");
    fake.wait_for("the second reminder", |f| reminder(f).len() == 2).await;
    assert!(reminder(&fake)[1].starts_with("⏰ Второе напоминание"));

    // Two periods more bring nothing: two reminders, no more.
    tokio::time::sleep(sla * 2).await;
    app.wait_for_idle_queue().await;
    assert_eq!(reminder(&fake).len(), 2, "{:#?}", fake.posts_in(thread));
    assert!(
        !fake.posts_in(answered_thread).iter().any(|p| p.starts_with("⏰")),
        "a user answered within the SLA is not reminded of"
    );
    let detail_answered = detail(&app, &answered).await;
    assert!(detail_answered["waiting_since"].is_null(), "{detail_answered}");

    // The breach is counted; the reply ends the wait.
    let today = chrono::Utc::now().date_naive();
    let (_, metrics) = app.get(Some(&admin()), &format!("/admin/metrics?from={today}&to={today}")).await;
    assert_eq!(metrics["totals"]["sla_breaches"], 1, "{metrics}");
    send(&app, text_update(1, 9202, thread, operator_user(), "Простите за ожидание!")).await;
    wait_until("the wait to end", WAIT, async || detail(&app, &waiting).await["waiting_since"].is_null()).await;
    let text = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("concierge_sla_breaches_total"), "{text}");
    assert!(text.contains("concierge_first_human_reply_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn without_anyone_named_on_duty_reminders_address_all_operators() {
    let fake = FakeTelegram::start().await;
    let app = spawn_with(TelegramConfig {
        sla: Some(Duration::from_secs(1)),
        sla_hours: SlaHours::Always,
        ..telegram_config(&fake, TelegramMode::Webhook)
    })
    .await;
    let conversation = app.open(None).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("a reminder", |f| f.posts_in(thread).iter().any(|p| p.starts_with("⏰"))).await;
    let posts = fake.posts_in(thread);
    let reminder = posts.iter().find(|p| p.starts_with("⏰")).unwrap();
    assert!(reminder.contains("Операторы,") && !reminder.contains('@'), "{reminder}");
}

#[tokio::test]
async fn an_operator_takes_a_conversation_and_releases_it() {
    let fake = FakeTelegram::start().await;
    let app = spawn_with(TelegramConfig {
        operators: vec![OPERATOR_ID, SECOND_OPERATOR_ID],
        ..telegram_config(&fake, TelegramMode::Webhook)
    })
    .await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let card = fake.accepted("sendMessage").into_iter().find(|m| m["message_thread_id"] == thread).unwrap();
    let take = &card["reply_markup"]["inline_keyboard"][0][2];
    assert_eq!(take["callback_data"], format!("take:{}", conversation.id), "{card}");

    // Ольга presses the card's button: the press is answered, the topic says she has it, and
    // the console shows it.
    send(&app, button(1, thread, operator_user(), format!("take:{}", conversation.id))).await;
    fake.wait_for("the press answered", |f| {
        f.accepted("answerCallbackQuery").iter().any(|a| a["callback_query_id"] == "cb1")
    })
    .await;
    fake.wait_for("who has it", |f| f.posts_in(thread).iter().any(|p| p == "🙋 Разговор ведёт Ольга Сергеевна.")).await;
    assert_eq!(detail(&app, &conversation).await["assignee"], "Ольга Сергеевна");
    let (_, list) = app.get(Some(&admin()), "/admin/conversations?mode=human").await;
    assert_eq!(list["items"][0]["assignee"], "Ольга Сергеевна", "{list}");

    // Иван answers anyway: the user gets it, under his first name; the topic points it out and
    // Ольга still has the conversation.
    send(&app, text_update(2, 9301, thread, second_operator(), "Добрый день, подключился.")).await;
    let reply = sse.next_from("operator").await;
    assert_eq!(reply.data["metadata"]["operator"]["name"], "Иван");
    fake.wait_for("the note about the reply", |f| {
        f.posts_in(thread).iter().any(|p| {
            p == "ℹ️ Пользователю ответил(а) Иван Петров (@ivan_petrov); разговор по-прежнему ведёт Ольга Сергеевна."
        })
    })
    .await;
    assert_eq!(detail(&app, &conversation).await["assignee"], "Ольга Сергеевна");

    // Only Ольга can release it; then Иван takes it, and Ольга takes it back from him.
    send(&app, text_update(3, 9302, thread, second_operator(), "/release")).await;
    fake.wait_for("the refusal", |f| {
        f.posts_in(thread).iter().any(|p| p.starts_with("Разговор ведёт Ольга Сергеевна:"))
    })
    .await;
    send(&app, text_update(4, 9303, thread, operator_user(), "/release@lectio_support_bot")).await;
    fake.wait_for("the release", |f| f.posts_in(thread).iter().any(|p| p.starts_with("👐 Ольга Сергеевна"))).await;
    assert!(detail(&app, &conversation).await["assignee"].is_null());
    send(&app, text_update(5, 9304, thread, second_operator(), "/take")).await;
    fake.wait_for("Иван has it", |f| {
        f.posts_in(thread).iter().any(|p| p == "🙋 Разговор ведёт Иван Петров (@ivan_petrov).")
    })
    .await;
    send(&app, text_update(6, 9305, thread, operator_user(), "/take")).await;
    fake.wait_for("Ольга took it over", |f| {
        f.posts_in(thread)
            .iter()
            .any(|p| p == "🙋 Разговор ведёт Ольга Сергеевна (до этого — Иван Петров (@ivan_petrov)).")
    })
    .await;
    assert_eq!(detail(&app, &conversation).await["assignee"], "Ольга Сергеевна");
    send(&app, text_update(7, 9306, thread, operator_user(), "/take")).await;
    fake.wait_for("already hers", |f| f.posts_in(thread).iter().any(|p| p == "Разговор уже ведёте вы.")).await;
}
