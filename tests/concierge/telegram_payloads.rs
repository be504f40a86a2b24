//! Telegram's real payloads (fixtures/telegram/, written after the samples captured by others
//! in shared/telegram-samples/) through the webhook and through polling, and the handling
//! they exposed: anonymous admins, commands for other bots, updates teloxide cannot read, a
//! topic Telegram could not find, a kicked bot and a group upgraded to a supergroup.

use std::{collections::HashMap, sync::atomic::Ordering};

use concierge_shared::config::{TelegramConfig, TelegramMode};
use reqwest::StatusCode;
use serde_json::{Value, json, value::RawValue};

use crate::{
    fake_telegram::{CHAT_ID, FakeTelegram, OLD_GROUP_ID, operator_user, text_update},
    helpers::{Conversation, TestApp, WAIT, platform_token, user_token, wait_until},
    telegram::{WEBHOOK_SECRET, spawn, telegram_config, waiting_in_topic, webhook},
};

/// The thread id the fixtures use for "the conversation's topic".
const FIXTURE_THREAD: i64 = 100;
/// The conversation id the fixtures' buttons name.
const FIXTURE_CONVERSATION: &str = "00000000-0000-0000-0000-000000000000";

fn fixture_text(name: &str) -> String {
    let path = format!("{}/fixtures/telegram/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

/// The fixture, moved into the conversation's topic: its thread (and the topic's creation
/// message) and the conversation its buttons name.
fn in_topic(mut value: Value, thread: i64, conversation: &str) -> Value {
    fn walk(value: &mut Value, thread: i64, conversation: &str) {
        match value {
            Value::Object(fields) => {
                let creation = fields.get("message_id").and_then(Value::as_i64) == Some(FIXTURE_THREAD);
                for (key, item) in fields.iter_mut() {
                    let is_thread = key == "message_thread_id" || (key == "message_id" && creation);
                    if is_thread && item.as_i64() == Some(FIXTURE_THREAD) {
                        *item = json!(thread);
                    } else {
                        walk(item, thread, conversation);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, thread, conversation)),
            Value::String(text) if text.contains(FIXTURE_CONVERSATION) => {
                *text = text.replace(FIXTURE_CONVERSATION, conversation);
            }
            _ => {}
        }
    }
    walk(&mut value, thread, conversation);
    value
}

fn update_id(update: &Value) -> i64 {
    update["update_id"].as_i64().unwrap()
}

/// Wait until every stored update is handled; their outcomes by update id.
async fn outcomes(app: &TestApp) -> HashMap<i64, String> {
    wait_until("the updates handled", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_updates WHERE processed_at IS NULL").await == 0
    })
    .await;
    sqlx::query_as::<_, (i64, String)>("SELECT update_id, outcome FROM telegram_updates")
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn send(app: &TestApp, update: &Value) {
    assert_eq!(webhook(app, Some(WEBHOOK_SECRET), update).await, StatusCode::OK, "{update}");
}

fn admin() -> String {
    platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

/// Run `check_system_status` and return its result.
async fn system_status(app: &TestApp, conversation: &Conversation) -> Value {
    let path = format!("/conversations/{}/actions/check_system_status/execute", conversation.id);
    let (status, run) = app.post(Some(&conversation.bearer), &path, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    wait_until("the system check", WAIT, async || {
        let result: Option<Option<Value>> = sqlx::query_scalar(
            "SELECT result FROM action_runs WHERE id = $1::uuid AND status IN ('succeeded', 'failed')",
        )
        .bind(&id)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        result.flatten()
    })
    .await
}

#[tokio::test]
async fn every_real_payload_through_the_webhook_gives_its_outcome() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    let mut sse = app.stream(&conversation, None).await;
    let topic = |name: &str| in_topic(fixture(name), thread, &conversation.id);

    // Forum service messages, in a topic and in General: nothing for the user.
    let service = fixture("getUpdates_forum_service_messages.json");
    let service: Vec<Value> = service["result"].as_array().unwrap().clone();
    for update in &service {
        send(&app, update).await;
    }
    // An operator's reply in the topic (quoting the topic's creation, as Telegram does).
    let reply = topic("update_text_in_topic.json");
    send(&app, &reply).await;
    let seen = sse.next_from("operator").await;
    assert_eq!(seen.data["content"], "Вижу два списания, оформляю возврат.");
    assert_eq!(seen.data["metadata"]["operator"]["name"], "Ольга");
    let edited = topic("update_edited_message_in_topic.json");
    send(&app, &edited).await;
    let edit = sse.next().await;
    assert_eq!(
        (edit.event.as_str(), &edit.data["content"]),
        ("edit", &json!("Вижу два списания, возврат уже оформлен."))
    );

    // An anonymous admin answers, forwards, starts a video chat: the first two reach the user
    // under the admin's signature.
    let anonymous = topic("update_anonymous_admin_text_in_topic.json");
    send(&app, &anonymous).await;
    let seen = sse.next_from("operator").await;
    assert_eq!(seen.data["content"], "Здравствуйте! Проверяю списания, вернусь через пять минут.");
    assert_eq!(seen.data["metadata"]["operator"]["name"], "Мария");
    let forwarded = topic("update_anonymous_admin_forward_in_topic.json");
    send(&app, &forwarded).await;
    assert_eq!(sse.next_from("operator").await.data["content"], "Возврат оформлен, деньги придут за 3–5 дней.");
    let video_chat = topic("update_anonymous_admin_service_message.json");
    send(&app, &video_chat).await;

    // A photo, a General message, a reply thread of a group without topics, a command for
    // another bot, a button press teloxide cannot read, the two halves of a group's upgrade.
    let photo = topic("update_photo_in_topic.json");
    // The photo's largest size, as Telegram would serve it.
    fake.add_file("AgACAgIAAxkBAAIBZ2d1_large", crate::voice::png(80, 45));
    let general = topic("update_general_topic_message.json");
    let nonforum = topic("update_reply_thread_nonforum_command.json");
    let other_bot = topic("update_command_for_another_bot_in_topic.json");
    let unreadable = topic("update_callback_query_unreadable.json");
    let migrate_to = fixture("update_group_migrate_to_chat_id.json");
    let migrate_from = fixture("update_supergroup_migrate_from_chat_id.json");
    for update in [&photo, &general, &nonforum, &other_bot, &unreadable, &migrate_to, &migrate_from] {
        send(&app, update).await;
    }
    // The photo reaches the user as an operator's message carrying the downloaded file.
    let photo_reply = sse.next_from("operator").await;
    assert_eq!(photo_reply.data["attachments"][0]["kind"], "image", "{}", photo_reply.data);
    // The card's button closes; `/close@<this bot>` then finds it closed.
    let button = topic("update_callback_query_in_topic.json");
    send(&app, &button).await;
    assert_eq!(sse.next_from("system").await.data["metadata"]["status"], "closed");
    let this_bot = topic("update_command_for_this_bot_in_topic.json");
    send(&app, &this_bot).await;
    // The bot removed from the group and added back.
    let kicked = fixture("update_my_chat_member_kicked.json");
    let added_back = fixture("update_my_chat_member_added_back.json");
    send(&app, &kicked).await;
    send(&app, &added_back).await;

    let outcomes = outcomes(&app).await;
    for update in &service {
        assert_eq!(outcomes[&update_id(update)], "ignored: a service message", "{update}");
    }
    let expected = [
        (&reply, "reply"),
        (&edited, "edit"),
        (&anonymous, "reply"),
        (&forwarded, "reply"),
        (&video_chat, "ignored: a service message"),
        (&photo, "reply"),
        (&general, "ignored: not in a topic"),
        (&nonforum, "ignored: not in a topic"),
        (&other_bot, "ignored: a command for another bot"),
        (&unreadable, "ignored: unreadable callback_query (answered)"),
        (&migrate_to, "migrated: -4012345678 to -1001234567890"),
        (&migrate_from, "migrated: -4012345678 to -1001234567890"),
        (&button, "close"),
        (&this_bot, "close: already closed"),
        (&kicked, "stopped: the bot was removed from the chat"),
        (&added_back, "resumed: the bot is back in the chat"),
    ];
    for (update, outcome) in expected {
        assert_eq!(outcomes[&update_id(update)], outcome, "{update}");
    }
    // Both button presses were answered, the unreadable one by the id in its JSON.
    let answered: Vec<String> = fake
        .accepted("answerCallbackQuery")
        .iter()
        .map(|body| body["callback_query_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(answered.contains(&"4611686018427387906".to_owned()), "{answered:?}");
    assert!(answered.contains(&"4611686018427387905".to_owned()), "{answered:?}");
    assert_eq!(fake.accepted("getMe").len(), 1, "the bot's username is asked once");
    // The photo reached the user as an operator reply with its caption and the largest size.
    let photo_reply: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages m JOIN attachments a ON a.message_id = m.id
         WHERE m.role = 'operator' AND m.content = 'Скриншот из админки' AND a.kind = 'image'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(photo_reply, 1);
    assert!(fake.accepted("getFile").iter().any(|body| body["file_id"] == "AgACAgIAAxkBAAIBZ2d1_large"));
    assert!(!fake.posts_in(thread).iter().any(|p| p.contains("не передан")), "no refusal");

    // Stored as sent: the webhook's body is the raw JSON, byte for byte.
    let raw: String = sqlx::query_scalar("SELECT raw FROM telegram_updates WHERE update_id = $1")
        .bind(update_id(&reply))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(raw, reply.to_string());
    // A NUL, which no jsonb can hold, is stored as U+FFFD there and as sent in the raw copy:
    // refused, the update would only come again.
    let nul = text_update(730_900_001, 5999, thread, operator_user(), "a\u{0}b");
    assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), &nul).await, StatusCode::OK);
    let (raw, text): (String, String) =
        sqlx::query_as("SELECT raw, payload->'message'->>'text' FROM telegram_updates WHERE update_id = $1")
            .bind(730_900_001_i64)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((raw, text.as_str()), (nul.to_string(), "a\u{fffd}b"));
}

#[tokio::test]
async fn an_anonymous_admin_edits_and_runs_commands() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "boris").await;
    let mut sse = app.stream(&conversation, None).await;
    let anonymous = in_topic(fixture("update_anonymous_admin_text_in_topic.json"), thread, &conversation.id);
    send(&app, &anonymous).await;
    let seen = sse.next_from("operator").await;

    // The same message edited, then a note and /close, all by the group's anonymous admin;
    // without a signature the admin is "Администратор".
    let mut edited = anonymous.clone();
    edited["update_id"] = json!(update_id(&anonymous) + 1);
    let mut message = edited.as_object_mut().unwrap().remove("message").unwrap();
    message["text"] = json!("Здравствуйте! Проверила списания.");
    message["edit_date"] = json!(1_764_000_400);
    edited["edited_message"] = message;
    send(&app, &edited).await;
    let edit = sse.next().await;
    assert_eq!((edit.event.as_str(), &edit.data["id"]), ("edit", &seen.data["id"]));
    let mut note = anonymous.clone();
    note["update_id"] = json!(update_id(&anonymous) + 2);
    note["message"]["message_id"] = json!(5301);
    note["message"]["text"] = json!("/note проверить второй платёж");
    note["message"].as_object_mut().unwrap().remove("author_signature");
    send(&app, &note).await;
    let mut close = note.clone();
    close["update_id"] = json!(update_id(&anonymous) + 3);
    close["message"]["message_id"] = json!(5302);
    close["message"]["text"] = json!("/close");
    send(&app, &close).await;
    assert_eq!(sse.next_from("system").await.data["metadata"]["status"], "closed");

    let outcomes = outcomes(&app).await;
    assert_eq!(outcomes[&update_id(&edited)], "edit");
    assert_eq!(outcomes[&update_id(&note)], "note");
    assert_eq!(outcomes[&update_id(&close)], "close");
    let (_, detail) = app.get(Some(&admin()), &format!("/admin/conversations/{}", conversation.id)).await;
    assert_eq!(detail["notes"][0]["author"], "Администратор", "{detail}");
}

#[tokio::test]
async fn polling_stores_each_update_exactly_as_telegram_sent_it() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Polling).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    let mut sse = app.stream(&conversation, None).await;

    // The updates of a real getUpdates answer as written (indented, non-ASCII), an operator's
    // reply written by hand with odd spacing and escapes, and a button press teloxide cannot
    // read: each one goes out and is stored byte for byte.
    let service = fixture_text("getUpdates_forum_service_messages.json");
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Vec<&'a RawValue>,
    }
    let service: Answer<'_> = serde_json::from_str(&service).unwrap();
    let mut sent: Vec<String> = service.result.iter().map(|raw| raw.get().to_owned()).collect();
    sent.push(format!(
        "{{ \"update_id\" : 730700001, \"message\": {{\"message_id\":5401, \"from\": {}, \"chat\": {{\"id\": {CHAT_ID}, \
         \"title\": \"Lectio support\", \"is_forum\": true, \"type\": \"supergroup\"}}, \"date\": 1764001000, \
         \"message_thread_id\": {thread}, \"text\": \"\\u041e\\u0442\\u0432\\u0435\\u0442 \u{1F642} \\/ ok\", \"is_topic_message\": true }} }}",
        operator_user()
    ));
    let unreadable = in_topic(fixture("update_callback_query_unreadable.json"), thread, &conversation.id);
    sent.push(serde_json::to_string_pretty(&unreadable).unwrap());
    for raw in &sent {
        fake.push_raw_update(raw);
    }
    assert_eq!(sse.next_from("operator").await.data["content"], "Ответ 🙂 / ok");
    let outcomes = outcomes(&app).await;
    for raw in &sent {
        let value: Value = serde_json::from_str(raw).unwrap();
        let (stored, payload): (String, Value) =
            sqlx::query_as("SELECT raw, payload FROM telegram_updates WHERE update_id = $1")
                .bind(update_id(&value))
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(&stored, raw, "stored byte for byte");
        assert_eq!(payload, value, "and as the same jsonb value");
    }
    assert_eq!(outcomes[&730700001], "reply");
    assert_eq!(outcomes[&update_id(&unreadable)], "ignored: unreadable callback_query (answered)");
    fake.wait_for("the unreadable press answered", |f| {
        f.accepted("answerCallbackQuery").iter().any(|body| body["callback_query_id"] == "4611686018427387906")
    })
    .await;
}

#[tokio::test]
async fn a_topic_telegram_could_not_find_is_checked_and_posted_to_again() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;

    // Telegram answers "message thread not found" once for a topic that is there.
    fake.behaviour.lost_lookups.store(1, Ordering::SeqCst);
    app.say(&conversation, "Жду ответа по возврату").await;
    fake.wait_for("the message in the same topic", |f| {
        f.posts_in(thread).iter().any(|p| p.contains("Жду ответа по возврату"))
    })
    .await;
    assert_eq!(fake.accepted("createForumTopic").len(), 1, "no second topic");
    assert_eq!(fake.accepted("sendChatAction").len(), 1, "the topic was checked once");
    let cards = fake.posts_in(thread).iter().filter(|p| p.starts_with("🆘")).count();
    assert_eq!(cards, 1, "no second card");
    wait_until("every post marked sent", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_outbox WHERE state <> 'sent'").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_kicked_bot_holds_every_post_alerts_and_resumes_when_added_back() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    let (other, other_thread) = waiting_in_topic(&app, &fake, "boris").await;

    fake.behaviour.kicked.store(true, Ordering::SeqCst);
    app.say(&conversation, "Первое, пока бота нет").await;
    wait_until("the chat stopped", WAIT, async || {
        app.count("SELECT count(*) FROM telegram_chat_stops WHERE reason = 'kicked' AND resumed_at IS NULL").await == 1
    })
    .await;
    app.say(&conversation, "Второе, пока бота нет").await;
    app.say(&other, "Из другого разговора").await;
    app.wait_for_idle_queue().await;
    // Held, not failed, and only one request found out.
    assert_eq!(app.count("SELECT count(*) FROM telegram_outbox WHERE state = 'failed'").await, 0);
    // Three posts, and each conversation's topic status change after them.
    assert_eq!(
        app.count("SELECT count(*) FROM telegram_outbox WHERE state = 'pending' AND kind <> 'topic_status'").await,
        3
    );
    assert_eq!(
        app.count("SELECT count(*) FROM telegram_outbox WHERE state = 'pending' AND kind = 'topic_status'").await,
        2
    );
    let refused = fake.calls().iter().filter(|c| c.status == 403).count();
    assert_eq!(refused, 1, "{}", fake.summary());

    // The console and the system check say so.
    let (status, alerts) = app.get(Some(&admin()), "/admin/telegram/alerts/").await;
    assert_eq!(status, StatusCode::OK, "{alerts}");
    assert_eq!(alerts[0]["chat_id"], CHAT_ID);
    assert_eq!(alerts[0]["reason"], "kicked");
    assert_eq!(alerts[0]["description"], "Forbidden: bot was kicked from the supergroup chat");
    assert!(alerts[0]["resumed_at"].is_null());
    let (status, _) = app.get(Some(&user_token("anna")), "/admin/telegram/alerts/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let report = system_status(&app, &other).await;
    assert_eq!(report["telegram"], "stopped", "{report}");
    assert_eq!(report["telegram_alerts"][0]["reason"], "kicked", "{report}");

    // Added back: the held posts go, in order.
    fake.behaviour.kicked.store(false, Ordering::SeqCst);
    send(&app, &fixture("update_my_chat_member_added_back.json")).await;
    fake.wait_for("the held posts", |f| {
        let posts = f.posts_in(thread);
        let first = posts.iter().position(|p| p.contains("Первое, пока бота нет"));
        let second = posts.iter().position(|p| p.contains("Второе, пока бота нет"));
        matches!((first, second), (Some(a), Some(b)) if a < b)
            && f.posts_in(other_thread).iter().any(|p| p.contains("Из другого разговора"))
    })
    .await;
    let (_, alerts) = app.get(Some(&admin()), "/admin/telegram/alerts/").await;
    assert!(!alerts[0]["resumed_at"].is_null(), "{alerts}");
    assert_eq!(system_status(&app, &other).await["telegram"], "ok");
}

fn old_group_config(fake: &FakeTelegram) -> TelegramConfig {
    TelegramConfig { chat_id: OLD_GROUP_ID, ..telegram_config(fake, TelegramMode::Webhook) }
}

async fn spawn_in_old_group(fake: &FakeTelegram) -> TestApp {
    let settings = old_group_config(fake);
    let mut app = TestApp::spawn_with(|config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;
    app
}

#[tokio::test]
async fn a_group_upgraded_to_a_supergroup_is_followed_when_telegram_refuses_the_old_id() {
    let fake = FakeTelegram::start().await;
    fake.behaviour.upgraded.store(true, Ordering::SeqCst);
    let app = spawn_in_old_group(&fake).await;

    // SUPPORT_NOTIFICATIONS_CHAT_ID names the old group: the first request learns the new id,
    // and the topic and its card are made there.
    let (conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    let refused: Vec<_> = fake.calls().into_iter().filter(|c| c.status == 400).collect();
    assert_eq!(refused.len(), 1, "{}", fake.summary());
    assert_eq!(refused[0].body["chat_id"], OLD_GROUP_ID);
    assert!(fake.accepted("sendMessage").iter().all(|m| m["chat_id"] == CHAT_ID));
    let chat: i64 = sqlx::query_scalar("SELECT chat_id FROM telegram_topics WHERE conversation_id = $1::uuid")
        .bind(&conversation.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(chat, CHAT_ID);

    // Operators answer in the new group.
    send(&app, &text_update(1, 9001, thread, operator_user(), "Ответ из новой группы")).await;
    assert_eq!(outcomes(&app).await[&1], "reply");

    // The move is on show.
    let (_, alerts) = app.get(Some(&admin()), "/admin/telegram/alerts/").await;
    assert_eq!(alerts[0]["reason"], "migrated", "{alerts}");
    assert_eq!(alerts[0]["chat_id"], OLD_GROUP_ID);
    assert_eq!(alerts[0]["migrate_to_chat_id"], CHAT_ID);
    let report = system_status(&app, &conversation).await;
    assert_eq!(report["telegram_alerts"][0]["migrate_to_chat_id"], CHAT_ID, "{report}");
}

#[tokio::test]
async fn a_group_upgraded_to_a_supergroup_is_followed_from_its_service_message() {
    let fake = FakeTelegram::start().await;
    fake.behaviour.upgraded.store(true, Ordering::SeqCst);
    let app = spawn_in_old_group(&fake).await;
    send(&app, &fixture("update_group_migrate_to_chat_id.json")).await;
    assert_eq!(outcomes(&app).await[&730300001], "migrated: -4012345678 to -1001234567890");

    // Nothing is asked of the old id any more.
    let (_conversation, thread) = waiting_in_topic(&app, &fake, "anna").await;
    assert!(fake.calls().iter().all(|c| c.status == 200), "{}", fake.summary());
    assert!(fake.posts_in(thread).iter().any(|p| p.starts_with("🆘")));
    assert!(fake.accepted("createForumTopic").iter().all(|c| c["chat_id"] == CHAT_ID));
}

#[tokio::test]
async fn the_fake_bot_api_answers_in_the_real_shapes() {
    // The fixtures' results, key for key and type for type, against what the fake answers.
    fn shape(value: &Value) -> Value {
        match value {
            Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
            Value::Array(items) => items.first().map(|item| json!([shape(item)])).unwrap_or(json!([])),
            Value::String(_) => json!("string"),
            Value::Number(_) => json!("number"),
            Value::Bool(_) => json!("bool"),
            Value::Null => json!("null"),
        }
    }
    let fake = FakeTelegram::start().await;
    let client = reqwest::Client::new();
    let call = async |method: &str, body: Value| -> Value {
        let url = format!("{}/bot{}/{method}", fake.url, crate::fake_telegram::TOKEN);
        client.post(url).json(&body).send().await.unwrap().json().await.unwrap()
    };
    let created = call("createForumTopic", json!({ "chat_id": CHAT_ID, "name": "Анна · вопрос" })).await;
    let mut expected = fixture("createForumTopic_result.json");
    // No custom emoji was asked for, so Telegram names none.
    expected["result"].as_object_mut().unwrap().remove("icon_custom_emoji_id");
    assert_eq!(shape(&created), shape(&expected), "{created}");
    let thread = created["result"]["message_thread_id"].as_i64().unwrap();
    let markup = fixture("sendMessage_in_topic_result.json")["result"]["reply_markup"].clone();
    let sent = call(
        "sendMessage",
        json!({ "chat_id": CHAT_ID, "message_thread_id": thread, "text": "🆘", "reply_markup": markup }),
    )
    .await;
    let mut expected = fixture("sendMessage_in_topic_result.json");
    // The fake's topic was made by the bot, the fixture's by a person.
    expected["result"]["reply_to_message"]["from"] = crate::fake_telegram::bot_user();
    assert_eq!(shape(&sent), shape(&expected), "{sent}");
    assert_eq!(sent["result"]["reply_to_message"]["message_id"], thread);

    let errors = fixture("errors.json");
    fake.behaviour.deleted_threads.lock().unwrap().insert(thread);
    let lost = call("sendMessage", json!({ "chat_id": CHAT_ID, "message_thread_id": thread, "text": "?" })).await;
    assert_eq!(lost, errors["message_thread_not_found"]);
    fake.behaviour.kicked.store(true, Ordering::SeqCst);
    let kicked = call("sendMessage", json!({ "chat_id": CHAT_ID, "text": "?" })).await;
    assert_eq!(kicked, errors["bot_kicked_supergroup"]);
    fake.behaviour.kicked.store(false, Ordering::SeqCst);
    fake.behaviour.upgraded.store(true, Ordering::SeqCst);
    let upgraded = call("sendMessage", json!({ "chat_id": OLD_GROUP_ID, "text": "?" })).await;
    assert_eq!(upgraded, errors["group_upgraded"]);
    assert_eq!(upgraded["parameters"]["migrate_to_chat_id"], CHAT_ID);
}
