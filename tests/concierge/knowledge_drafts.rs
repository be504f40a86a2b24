//! Answers that grow the knowledge base, against the fake Bot API: `/kb` in reply to an
//! operator's answer (or the button under a console reply) makes a draft, an administrator
//! edits and approves it, it becomes a document (a file, or a database row when the directory
//! is read-only), the knowledge base is reindexed, and the next user's question is answered
//! from it by the offline engine. `/kb query` answers in the topic with the top passages.

use std::{path::PathBuf, time::Duration};

use concierge_shared::config::TelegramMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_llm::{FakeLlm, Reply, content_reply},
    fake_telegram::{CHAT_ID, FakeTelegram, operator_user, stranger_user, text_update},
    helpers::{Conversation, TestApp, WAIT, knowledge_dir, platform_token, user_token, wait_until},
    telegram::{self, WEBHOOK_SECRET, telegram_config, thread_of},
};

/// A question nothing in the knowledge base answers, and an operator's answer to it.
const QUESTION: &str = "Можно ли переключить интерфейс Lectio на казахский язык?";
const ANSWER: &str = "Пока нет: интерфейс Lectio доступен на русском и английском. Язык переключается в **Настройки → Язык интерфейса**.";

fn admin() -> String {
    platform_token(json!({ "sub": "olga", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

/// A writable copy of the knowledge base, for a test that publishes into it.
fn knowledge_copy() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kb-{}", uuid::Uuid::new_v4().simple()));
    copy_dir(&knowledge_dir(), &target);
    target
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

async fn spawn(fake: &FakeTelegram, adjust: impl FnOnce(&mut concierge_shared::config::Config)) -> TestApp {
    let settings = telegram_config(fake, TelegramMode::Webhook);
    let mut app = TestApp::spawn_with(|config| {
        config.telegram = Some(settings);
        config.webhook_secret = Some(WEBHOOK_SECRET.into());
        adjust(config);
    })
    .await;
    app.start_worker().await;
    app
}

async fn webhook(app: &TestApp, update: &Value) {
    assert_eq!(telegram::webhook(app, Some(WEBHOOK_SECRET), update).await, StatusCode::OK);
}

/// A user asks [`QUESTION`] and is handed to a person; returns the conversation and its topic.
async fn asked_and_escalated(app: &TestApp, user: &str) -> (Conversation, i64) {
    let conversation = app.open(Some(&user_token(user))).await;
    app.write_first(&conversation).await;
    let (status, body) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/escalate/", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.say(&conversation, QUESTION).await;
    let thread = thread_of(app, &conversation).await;
    (conversation, thread)
}

/// `/kb` from the operator, in reply to the message `answer_message_id` written by `author`.
fn kb_reply(update_id: i64, message_id: i64, thread: i64, answer_message_id: i64, author: Value) -> Value {
    let mut update = text_update(update_id, message_id, thread, operator_user(), "/kb");
    let replied = text_update(0, answer_message_id, thread, author, ANSWER);
    update["message"]["reply_to_message"] = replied["message"].clone();
    update
}

async fn outcome_of(app: &TestApp, update_id: i64) -> String {
    wait_until("the update handled", WAIT, async || {
        sqlx::query_scalar::<_, Option<String>>("SELECT outcome FROM telegram_updates WHERE update_id = $1")
            .bind(update_id)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .flatten()
    })
    .await
}

/// The draft once its status is `status`.
async fn draft_in(app: &TestApp, id: &str, status: &str) -> Value {
    let admin = admin();
    wait_until(&format!("the draft {status}"), WAIT, async || {
        let (code, draft) = app.get(Some(&admin), &format!("/knowledge/drafts/{id}/")).await;
        assert_eq!(code, StatusCode::OK, "{draft}");
        if draft["status"] == status { Ok(draft) } else { Err(draft.to_string()) }
    })
    .await
}

/// Wait for the reindex run to succeed and the worker to answer from its version.
async fn reindexed(app: &TestApp, run_id: &str) -> Value {
    let admin = admin();
    let run = wait_until("the reindex", WAIT, async || {
        let (_, run) = app.get(Some(&admin), &format!("/knowledge/reindex/{run_id}/")).await;
        if run["status"] == "succeeded" { Ok(run) } else { Err(run.to_string()) }
    })
    .await;
    let version = run["report"]["version"].as_i64().unwrap();
    wait_until("the worker on the new knowledge version", WAIT, async || {
        let answering: Option<i64> =
            sqlx::query_scalar("SELECT min(kb_version) FROM worker_instances").fetch_one(&app.pool).await.unwrap();
        answering.is_some_and(|answering| answering >= version)
    })
    .await;
    run
}

/// A new user asks the question; the offline engine's answer and what it cites.
async fn answer_to_question(app: &TestApp, user: &str) -> Value {
    let conversation = app.open(Some(&user_token(user))).await;
    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, QUESTION).await;
    sse.next_from("assistant").await.data
}

#[tokio::test]
async fn an_operators_answer_becomes_a_document_the_next_question_is_answered_from() {
    let fake = FakeTelegram::start().await;
    let dir = knowledge_copy();
    let app = spawn(&fake, {
        let dir = dir.clone();
        move |config| config.knowledge_dir = dir
    })
    .await;
    let admin = admin();
    let before = answer_to_question(&app, "vera").await;
    assert!(
        before["metadata"]["sources"].as_array().is_none_or(|sources| sources.is_empty())
            || before["metadata"]["decision"] != "answer",
        "nothing answers it yet: {before}"
    );

    let (conversation, thread) = asked_and_escalated(&app, "anna").await;
    webhook(&app, &text_update(1, 5001, thread, operator_user(), ANSWER)).await;
    assert_eq!(outcome_of(&app, 1).await, "reply");

    // `/kb` on somebody else's answer is refused, on a message that is no answer explains itself.
    webhook(&app, &kb_reply(2, 5002, thread, 5001, stranger_user())).await;
    assert_eq!(outcome_of(&app, 2).await, "refused: /kb on another operator's answer");
    webhook(&app, &text_update(3, 5003, thread, operator_user(), "/kb")).await;
    assert_eq!(outcome_of(&app, 3).await, "refused: /kb without an answer");

    // In reply to her own answer: a draft, and a word in the topic once it is written.
    webhook(&app, &kb_reply(4, 5004, thread, 5001, operator_user())).await;
    assert_eq!(outcome_of(&app, 4).await, "kb: draft requested");
    fake.wait_for("the draft's confirmation", |f| {
        f.posts_in(thread).iter().any(|p| p.starts_with("📚 Черновик статьи"))
    })
    .await;
    let (status, drafts) = app.get(Some(&admin), "/knowledge/drafts/?status=ready").await;
    assert_eq!(status, StatusCode::OK, "{drafts}");
    let drafts = drafts.as_array().unwrap().clone();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let draft = &drafts[0];
    let id = draft["id"].as_str().unwrap().to_owned();
    assert_eq!(draft["conversation_id"], conversation.id.as_str());
    assert_eq!(draft["question"], QUESTION);
    assert_eq!(draft["answer"], ANSWER);
    assert_eq!(draft["written_by"], "template");
    assert_eq!(draft["requested_by"], "Ольга Сергеевна");
    assert_eq!(draft["title"], QUESTION);
    assert!(draft["body"].as_str().unwrap().contains("Настройки → Язык интерфейса"), "{draft}");

    // Asking again finds the same draft.
    webhook(&app, &kb_reply(5, 5005, thread, 5001, operator_user())).await;
    assert_eq!(outcome_of(&app, 5).await, "kb: the draft exists");
    fake.wait_for("the word that it exists", |f| f.posts_in(thread).iter().any(|p| p.contains("уже есть"))).await;
    assert_eq!(app.count("SELECT count(*) FROM knowledge_drafts").await, 1);

    // The administrator edits it (bad input refused) and approves it.
    let path = format!("/knowledge/drafts/{id}/");
    let client = &app.client;
    let patch = |body: Value| {
        let request = client.patch(app.url(&path)).bearer_auth(&admin).json(&body);
        async move { crate::helpers::response(request.send().await.unwrap()).await }
    };
    let (status, refused) = patch(json!({ "title": "две\nстроки" })).await;
    assert_eq!((status, refused["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("title")));
    let (status, refused) = patch(json!({ "body": "   " })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (status, refused) = patch(json!({ "tags": [] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let title = "Можно ли переключить интерфейс Lectio на казахский язык";
    let body = format!("{ANSWER}\n\n## Какие языки есть в Lectio\nРусский и английский.");
    let (status, edited) = patch(json!({ "title": title, "body": body })).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["title"], title);
    let user = user_token("anna");
    let (status, _) = app.post(Some(&user), &format!("/knowledge/drafts/{id}/approve/"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "administrators only");
    let (status, approved) = app.post(Some(&admin), &format!("/knowledge/drafts/{id}/approve/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{approved}");
    assert_eq!(approved["status"], "publishing");
    let (status, again) = app.post(Some(&admin), &format!("/knowledge/drafts/{id}/approve/"), json!({})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("draft_not_ready")));

    // A new file of the knowledge directory, with front matter; reindexed.
    let published = draft_in(&app, &id, "approved").await;
    let doc_path = published["path"].as_str().unwrap().to_owned();
    assert_eq!(doc_path, "faq/mozhno-li-pereklyuchit-interfeys-lectio-na-kazakhskiy-yazyk.md");
    assert_eq!(published["stored_in"], "file");
    let source = std::fs::read_to_string(dir.join(&doc_path)).unwrap();
    assert!(source.starts_with("---\ntitle: Можно ли переключить"), "{source}");
    assert!(source.contains("category: faq") && source.contains(&format!("# {title}\n")), "{source}");
    let run = reindexed(&app, published["reindex_run_id"].as_str().unwrap()).await;
    assert_eq!(run["report"]["added"], json!([doc_path]), "{run}");
    fake.wait_for("the publication", |f| f.posts_in(thread).iter().any(|p| p.contains("опубликована"))).await;

    // The next user's question is answered from it.
    let answer = answer_to_question(&app, "boris").await;
    assert_eq!(answer["metadata"]["decision"], "answer", "{answer}");
    assert_eq!(answer["metadata"]["sources"][0]["path"], doc_path.as_str(), "{answer}");
    assert!(answer["content"].as_str().unwrap().contains("Настройки → Язык интерфейса"), "{answer}");

    // A second draft of the same title never overwrites the file.
    let mut tx = app.pool.begin().await.unwrap();
    let (second, _) = concierge_shared::db::knowledge_drafts::request(
        &mut tx,
        concierge_shared::db::knowledge_drafts::NewDraft {
            conversation_id: conversation.id.parse().unwrap(),
            answer_id: concierge_shared::MessageId(
                sqlx::query_scalar(
                    "SELECT id FROM messages WHERE conversation_id = $1::uuid AND role = 'user' LIMIT 1",
                )
                .bind(&conversation.id)
                .fetch_one(&app.pool)
                .await
                .unwrap(),
            ),
            question: QUESTION,
            answer: "Другой ответ.",
            requested_by: "Ольга",
            requested_via: concierge_shared::OperatorChannel::Telegram,
        },
        3,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let second_id = second.id.to_string();
    draft_in(&app, &second_id, "ready").await;
    let (status, _) = patch_title(&app, &second_id, title).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post(Some(&admin), &format!("/knowledge/drafts/{second_id}/approve/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let second = draft_in(&app, &second_id, "approved").await;
    assert_eq!(second["path"], doc_path.replace(".md", "-2.md"));
    assert_eq!(std::fs::read_to_string(dir.join(&doc_path)).unwrap(), source, "the first file is untouched");
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn patch_title(app: &TestApp, id: &str, title: &str) -> (StatusCode, Value) {
    let request = app
        .client
        .patch(app.url(&format!("/knowledge/drafts/{id}/")))
        .bearer_auth(admin())
        .json(&json!({ "title": title }));
    crate::helpers::response(request.send().await.unwrap()).await
}

#[tokio::test]
async fn the_button_under_a_console_reply_makes_a_draft_kept_in_the_database_when_the_directory_is_read_only() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, |config| config.knowledge_read_only = true).await;
    let admin = admin();
    let (conversation, thread) = asked_and_escalated(&app, "anna").await;

    // The console's reply reaches the topic with a button under it.
    let (status, reply) = app
        .post(Some(&admin), &format!("/admin/conversations/{}/reply/", conversation.id), json!({ "content": ANSWER }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply_id = reply["id"].as_str().unwrap().to_owned();
    fake.wait_for("the console reply", |f| f.posts_in(thread).iter().any(|p| p.contains("из консоли"))).await;
    let post = fake
        .accepted("sendMessage")
        .into_iter()
        .find(|m| m["text"].as_str().is_some_and(|t| t.contains("из консоли")))
        .unwrap();
    let button = &post["reply_markup"]["inline_keyboard"][0][0];
    assert_eq!(button["callback_data"], format!("kb:{reply_id}"), "{post}");
    assert_eq!(button["text"], "📚 В базу знаний");

    // A stranger's press gets an alert; the operator's makes the draft, and both are answered.
    let press = |update_id: i64, from: Value| {
        json!({ "update_id": update_id, "callback_query": {
            "id": format!("cb{update_id}"), "from": from, "chat_instance": "ci", "data": format!("kb:{reply_id}"),
            "message": { "message_id": 77, "date": 1_764_000_000, "message_thread_id": thread,
                "chat": { "id": CHAT_ID, "type": "supergroup", "title": "Lectio support", "is_forum": true }, "text": "reply" }
        }})
    };
    webhook(&app, &press(30, stranger_user())).await;
    assert_eq!(outcome_of(&app, 30).await, "ignored: not an operator");
    webhook(&app, &press(31, operator_user())).await;
    assert_eq!(outcome_of(&app, 31).await, "kb: draft requested");
    fake.wait_for("both presses answered", |f| f.accepted("answerCallbackQuery").len() == 2).await;
    let answers = fake.accepted("answerCallbackQuery");
    assert_eq!(answers[0]["show_alert"], true);
    assert_eq!(answers[1]["text"], "Готовлю черновик статьи из этого ответа.");

    let (_, drafts) = app.get(Some(&admin), "/knowledge/drafts/").await;
    let id = drafts[0]["id"].as_str().unwrap().to_owned();
    let draft = draft_in(&app, &id, "ready").await;
    assert_eq!(draft["answer_id"], reply_id.as_str());
    assert_eq!(draft["question"], QUESTION);

    // Approved: kept in the database, not written into the (read-only) directory.
    let (status, _) = app.post(Some(&admin), &format!("/knowledge/drafts/{id}/approve/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let published = draft_in(&app, &id, "approved").await;
    assert_eq!(published["stored_in"], "database");
    let doc_path = published["path"].as_str().unwrap().to_owned();
    assert!(!knowledge_dir().join(&doc_path).exists(), "nothing written into the directory");
    assert_eq!(app.count("SELECT count(*) FROM knowledge_stored_documents").await, 1);
    reindexed(&app, published["reindex_run_id"].as_str().unwrap()).await;
    let (_, documents) = app.get(Some(&admin), "/knowledge/documents/").await;
    assert!(documents.as_array().unwrap().iter().any(|d| d["path"] == doc_path.as_str()), "{documents}");
    let answer = answer_to_question(&app, "boris").await;
    assert_eq!(answer["metadata"]["sources"][0]["path"], doc_path.as_str(), "{answer}");

    // Another reindex keeps it: the loader reads the database's documents beside the files.
    let (status, run) = app.post(Some(&admin), "/knowledge/reindex/", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = reindexed(&app, run["id"].as_str().unwrap()).await;
    assert_eq!(run["report"]["removed"], json!([]), "{run}");
    let kb_page = app.client.get(format!("http://{}/kb/{doc_path}", app.addr)).send().await.unwrap();
    assert_eq!(kb_page.status(), StatusCode::OK);
    assert!(kb_page.text().await.unwrap().contains("Настройки → Язык интерфейса"));
}

#[tokio::test]
async fn kb_with_a_query_answers_in_the_topic_with_the_top_passages() {
    let fake = FakeTelegram::start().await;
    let app = spawn(&fake, |_| {}).await;
    let (_, thread) = asked_and_escalated(&app, "anna").await;
    webhook(&app, &text_update(40, 6001, thread, operator_user(), "/kb как оплатить подписку картой")).await;
    assert_eq!(outcome_of(&app, 40).await, "kb: search (3 passages)");
    webhook(&app, &text_update(41, 6002, thread, operator_user(), "/kb@lectio_support_bot щщщзззххх")).await;
    fake.wait_for("both answers", |f| f.posts_in(thread).iter().filter(|p| p.starts_with("📚")).count() == 2).await;
    let posts = fake.posts_in(thread);
    let found =
        posts.iter().find(|p| p.starts_with("📚 База знаний по запросу «как оплатить подписку картой»")).unwrap();
    let numbered = found.lines().filter(|line| ["1. ", "2. ", "3. "].iter().any(|n| line.starts_with(n))).count();
    assert_eq!(numbered, 3, "{found}");
    assert!(found.contains("faq/payment-methods.md") || found.contains("guides/pay-subscription.md"), "{found}");
    assert!(!found.contains("**"), "excerpts are plain text: {found}");
    assert!(posts.iter().any(|p| p.starts_with("📚 В базе знаний ничего не нашлось")), "{posts:#?}");
    // A stranger's /kb is ignored like anything else they write.
    webhook(&app, &text_update(42, 6003, thread, stranger_user(), "/kb оплата")).await;
    assert_eq!(outcome_of(&app, 42).await, "ignored: not an operator");
}

#[tokio::test]
async fn draft_routes_refuse_what_they_cannot_do() {
    let app = TestApp::spawn().await;
    let admin = admin();
    let missing = uuid::Uuid::new_v4();
    let (status, body) = app.get(Some(&admin), &format!("/knowledge/drafts/{missing}/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app.post(Some(&admin), &format!("/knowledge/drafts/{missing}/approve/"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post(Some(&admin), &format!("/knowledge/drafts/{missing}/discard/"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get(Some(&admin), "/knowledge/drafts/not-a-uuid/").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.get(Some(&admin), "/knowledge/drafts/?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.get(Some(&admin), "/knowledge/drafts/?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app.get(Some(&user_token("anna")), "/knowledge/drafts/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get(None, "/knowledge/drafts/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A draft under review can be discarded once; then it can be neither edited nor approved.
    let conversation = app.open(Some(&user_token("anna"))).await;
    app.say(&conversation, QUESTION).await;
    let mut tx = app.pool.begin().await.unwrap();
    let id: concierge_shared::ConversationId = conversation.id.parse().unwrap();
    let operator =
        concierge_shared::human::Operator { name: "Ольга", via: concierge_shared::OperatorChannel::Console };
    let answer = concierge_shared::human::reply(&mut tx, id, &operator, ANSWER).await.unwrap();
    let new = concierge_shared::db::knowledge_drafts::NewDraft {
        conversation_id: id,
        answer_id: answer.id,
        question: QUESTION,
        answer: ANSWER,
        requested_by: "Ольга",
        requested_via: concierge_shared::OperatorChannel::Console,
    };
    let (draft, created) = concierge_shared::db::knowledge_drafts::request(&mut tx, new, 3).await.unwrap();
    assert!(created);
    let (title, body) = concierge_shared::knowledge::draft::template(QUESTION, ANSWER);
    concierge_shared::db::knowledge_drafts::store_written(&mut tx, draft.id, &title, &body, "template", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (status, refused) = patch_title(&app, &draft.id.to_string(), &"я".repeat(201)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (status, discarded) =
        app.post(Some(&admin), &format!("/knowledge/drafts/{}/discard/", draft.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{discarded}");
    assert_eq!(discarded["status"], "discarded");
    assert_eq!(discarded["decided_by"], "user:olga");
    let (status, _) = patch_title(&app, &draft.id.to_string(), "Новый заголовок").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.post(Some(&admin), &format!("/knowledge/drafts/{}/approve/", draft.id), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, listed) = app.get(Some(&admin), "/knowledge/drafts/?status=discarded").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let (_, ready) = app.get(Some(&admin), "/knowledge/drafts/?status=ready").await;
    assert_eq!(ready, json!([]));
}

#[tokio::test]
async fn the_model_writes_the_draft_when_one_is_configured() {
    let fake = FakeTelegram::start().await;
    let llm = FakeLlm::start().await;
    // Decisions fail (the offline engine answers them); the draft request gets an article.
    llm.respond_with(|request| {
        let system = request["messages"][0]["content"].as_str().unwrap_or_default();
        if system.contains("help-centre articles") {
            let article = json!({
                "title": "Есть ли интерфейс Lectio на казахском",
                "body": "Пока нет: Lectio говорит по-русски и по-английски.\n\n## Как сменить язык\nОткройте **Настройки → Язык интерфейса**.",
            });
            Reply::Json(content_reply(&article.to_string()))
        } else {
            Reply::Status(500, None)
        }
    });
    let llm_url = llm.url.clone();
    let app = spawn(&fake, move |config| {
        config.ai.provider = concierge_shared::config::Provider::Openai;
        config.ai.base_url = llm_url;
        config.ai.model = "scripted-model".into();
        config.ai.api_key = Some("test-key".into());
        config.ai.timeout = Duration::from_secs(5);
        config.ai.max_retries = 0;
        config.ai.stream = false;
    })
    .await;
    let (_, thread) = asked_and_escalated(&app, "anna").await;
    webhook(&app, &text_update(50, 7001, thread, operator_user(), ANSWER)).await;
    webhook(&app, &kb_reply(51, 7002, thread, 7001, operator_user())).await;
    assert_eq!(outcome_of(&app, 51).await, "kb: draft requested");
    let admin = admin();
    let id = wait_until("the draft", WAIT, async || {
        let (_, drafts) = app.get(Some(&admin), "/knowledge/drafts/?status=ready").await;
        drafts[0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let draft = draft_in(&app, &id, "ready").await;
    assert_eq!(draft["written_by"], "model", "{draft}");
    assert_eq!(draft["title"], "Есть ли интерфейс Lectio на казахском");
    assert!(draft["body"].as_str().unwrap().starts_with("Пока нет"), "{draft}");
    let request = llm
        .requests()
        .into_iter()
        .find(|r| r["messages"][0]["content"].as_str().is_some_and(|s| s.contains("help-centre articles")))
        .unwrap();
    assert_eq!(request["response_format"]["type"], "json_object");
    let data: Value = serde_json::from_str(request["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(data["question"], QUESTION);
    assert_eq!(data["operator_answer"], ANSWER);
    assert_eq!(app.count("SELECT count(*) FROM llm_calls WHERE purpose = 'kb_draft' AND outcome = 'ok'").await, 1);
}
