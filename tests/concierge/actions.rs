//! Actions end to end against a platform server on loopback: each built-in, the platform's
//! failures, other users' data out of reach, declarative actions, admin switches and the log.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use reqwest::StatusCode as Status;
use serde_json::{Value, json};

use crate::{
    fake_llm::{FakeLlm, Reply, content_reply, tool_reply},
    helpers::{Conversation, Sse, TestApp, platform_token, simulate_delay, user_token},
};

pub(crate) const TOKEN: &str = "platform-token";

/// The platform's API as Concierge expects it. Users: `anna` (all fine), `err500` (500s),
/// `slow` (answers after 5 s), `broken` (malformed JSON), `nobody` (404).
#[derive(Clone, Default)]
pub(crate) struct Platform {
    requests: Arc<Mutex<Vec<String>>>,
}

async fn platform_route(State(platform): State<Platform>, headers: HeaderMap, Path(rest): Path<String>) -> Response {
    platform.requests.lock().unwrap().push(rest.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts == ["status"] {
        return Json(json!({ "status": "ok", "components": [] })).into_response();
    }
    let (user, what) = match parts.as_slice() {
        ["users", user, what @ ..] => (*user, what.join("/")),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match user {
        "err500" => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "slow" => simulate_delay(Duration::from_secs(5)).await,
        "broken" => return ([("content-type", "application/json")], "{\"connected\": tru").into_response(),
        "nobody" => return StatusCode::NOT_FOUND.into_response(),
        _ => {}
    }
    let lesson = |id: &str, starts: &str, status: &str| {
        json!({ "id": id, "title": format!("Урок {id}"), "starts_at": starts, "ends_at": starts, "participants": [user],
                "zoom_meeting_created": true, "started": true, "recording": { "status": status, "url": format!("https://lectio.ru/r/{id}") } })
    };
    let body = match what.as_str() {
        "zoom" => {
            json!({ "connected": true, "token_valid": false, "licence": "pro", "meeting_limit_minutes": 1800, "last_error": "token expired" })
        }
        "subscription" => {
            json!({ "plan": "Профи", "status": "past_due", "paid_until": "2026-11-20", "auto_renewal": true,
            "last_payment": { "amount": 1990, "currency": "RUB", "at": "2026-11-21T06:00:00Z", "result": "failed", "failure_reason": "недостаточно средств" } })
        }
        "lessons" => {
            json!({ "lessons": [lesson(&format!("{user}-1"), "2026-11-20T10:00:00Z", "ready"), lesson(&format!("{user}-2"), "2026-11-21T10:00:00Z", "processing"), lesson(&format!("{user}-3"), "2099-01-01T10:00:00Z", "missing")] })
        }
        "homework" => json!({ "pending": 4, "next_deadline": "2026-12-01" }),
        other if other.starts_with("lessons/") => {
            let id = other.trim_start_matches("lessons/");
            if !id.starts_with(&format!("{user}-")) {
                return StatusCode::NOT_FOUND.into_response();
            }
            lesson(id, "2026-11-20T10:00:00Z", "failed")
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(body).into_response()
}

pub(crate) async fn start_platform() -> (Platform, String) {
    let platform = Platform::default();
    let app = Router::new().route("/v1/{*rest}", get(platform_route)).with_state(platform.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (platform, url)
}

async fn app_with_platform(llm: Option<&FakeLlm>) -> (TestApp, Platform) {
    let (platform, url) = start_platform().await;
    let llm_url = llm.map(|f| f.url.clone());
    let mut app = TestApp::spawn_with(move |config| {
        config.platform_url = Some(url);
        config.platform_token = Some(TOKEN.into());
        config.platform_timeout = Duration::from_secs(1);
        if let Some(llm_url) = llm_url {
            config.ai.provider = concierge_shared::config::Provider::Openai;
            config.ai.base_url = llm_url;
            config.ai.model = "scripted-model".into();
            config.ai.stream = false;
            config.ai.max_retries = 0;
        }
    })
    .await;
    app.start_worker().await;
    (app, platform)
}

/// Run an action through the API and return the result message from the stream.
async fn run(app: &TestApp, conversation: &Conversation, sse: &mut Sse, name: &str, params: Value) -> Value {
    let (status, run) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/actions/{name}/execute", conversation.id),
            json!({ "params": params }),
        )
        .await;
    assert_eq!(status, Status::ACCEPTED, "{run}");
    loop {
        let event = sse.next().await;
        if event.data["action_run_id"] == run["id"] {
            return event.data;
        }
    }
}

fn text(message: &Value) -> &str {
    message["content"].as_str().unwrap()
}

#[tokio::test]
async fn each_built_in_action_reports_for_the_signed_in_user() {
    let (app, platform) = app_with_platform(None).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;

    let zoom = run(&app, &conversation, &mut sse, "check_zoom_status", json!({})).await;
    assert!(text(&zoom).contains("доступ к нему истёк"), "{zoom}");
    assert_eq!(zoom["metadata"]["succeeded"], true);

    let subscription = run(&app, &conversation, &mut sse, "check_subscription", json!({})).await;
    assert!(
        text(&subscription).contains("Профи") && text(&subscription).contains("платёж просрочен"),
        "{subscription}"
    );
    assert!(text(&subscription).contains("недостаточно средств"));

    let recordings = run(&app, &conversation, &mut sse, "check_recordings", json!({})).await;
    assert!(text(&recordings).contains("https://lectio.ru/r/anna-1"), "{recordings}");
    assert!(text(&recordings).contains("обрабатывается"));
    assert!(!text(&recordings).contains("anna-3"), "future lessons have no recordings yet");

    let next = run(&app, &conversation, &mut sse, "check_lesson", json!({ "lesson": "next" })).await;
    assert!(text(&next).contains("Урок anna-3"), "{next}");
    let one = run(&app, &conversation, &mut sse, "check_lesson", json!({ "lesson": "anna-1" })).await;
    assert!(text(&one).contains("не удалась"), "{one}");

    let status = run(&app, &conversation, &mut sse, "check_system_status", json!({})).await;
    assert!(text(&status).contains("работает штатно"), "{status}");

    let homework = run(&app, &conversation, &mut sse, "check_homework", json!({})).await;
    assert_eq!(text(&homework), "Невыполненных домашних заданий: 4. Ближайший срок сдачи: 2026-12-01.");

    // Every request named Anna, and only her.
    let requests = platform.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r == "status" || r.starts_with("users/anna/")), "{requests:?}");

    // The action log shows every run.
    let admin = platform_token(json!({ "sub": "root", "role": "admin", "exp": crate::helpers::now() + 600 }));
    let (status, log) = app.get(Some(&admin), "/admin/action-runs?limit=20").await;
    assert_eq!(status, Status::OK);
    let runs = log.as_array().unwrap();
    assert_eq!(runs.len(), 7);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["duration_ms"].is_number() && r["result_summary"].is_string())
    );
}

#[tokio::test]
async fn platform_failures_end_in_a_helpful_message() {
    let (app, _) = app_with_platform(None).await;
    for (user, expected) in
        [("err500", "не отвечает"), ("slow", "не отвечает"), ("broken", "неожиданный ответ"), ("nobody", "Не нашёл")]
    {
        let conversation = app.open(Some(&user_token(user))).await;
        let mut sse = app.stream(&conversation, None).await;
        let result = run(&app, &conversation, &mut sse, "check_zoom_status", json!({})).await;
        assert!(text(&result).contains(expected), "{user}: {result}");
        assert_eq!(result["metadata"]["succeeded"], false);
        if user != "nobody" {
            assert!(text(&result).contains("позовите оператора"), "an offer to escalate: {result}");
        }
    }
    let failed = app.count("SELECT count(*) FROM action_runs WHERE status = 'failed' AND error IS NOT NULL").await;
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn another_users_data_is_never_reachable() {
    let (app, platform) = app_with_platform(None).await;
    let boris = app.open(Some(&user_token("boris"))).await;
    let path = format!("/conversations/{}/actions/check_subscription/execute", boris.id);
    let (status, body) = app.post(Some(&boris.bearer), &path, json!({ "params": { "user_id": "anna" } })).await;
    assert_eq!(status, Status::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params");

    // Naming Anna's lesson still asks about Boris's lessons: the platform says not found.
    let mut sse = app.stream(&boris, None).await;
    let result = run(&app, &boris, &mut sse, "check_lesson", json!({ "lesson": "anna-1" })).await;
    assert!(text(&result).contains("Не нашёл"), "{result}");
    // A lesson named ".." or "." would move the request to another resource: nothing is asked
    // for it ("%2e%2E" is sent as text, encoded, and names no lesson either).
    for dots in ["..", ".", "%2e%2E"] {
        let result = run(&app, &boris, &mut sse, "check_lesson", json!({ "lesson": dots })).await;
        assert!(text(&result).contains("Не нашёл"), "{dots}: {result}");
    }
    let requests = platform.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r.starts_with("users/boris/")), "{requests:?}");
    let lesson =
        |r: &String| r.strip_prefix("users/boris/lessons/").is_some_and(|id| !id.is_empty() && !id.contains('/'));
    assert!(requests.iter().all(lesson), "{requests:?}");

    // Visitors see only what needs no account, and cannot run the rest.
    let visitor = app.open(None).await;
    let (_, list) = app.get(Some(&visitor.bearer), &format!("/conversations/{}/actions", visitor.id)).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["check_system_status"]);
    let (status, _) = app
        .post(
            Some(&visitor.bearer),
            &format!("/conversations/{}/actions/check_subscription/execute", visitor.id),
            json!({}),
        )
        .await;
    assert_eq!(status, Status::NOT_FOUND);
    // And nobody runs actions in someone else's conversation.
    let (status, _) = app.post(Some(&visitor.bearer), &path, json!({})).await;
    assert_eq!(status, Status::NOT_FOUND);
}

#[tokio::test]
async fn declarative_actions_need_no_code_and_stay_on_the_platform() {
    let (app, _) = app_with_platform(None).await;
    let dir = std::env::temp_dir().join(format!("concierge-actions-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = |path: &str| {
        json!([{ "name": "count_homework", "display_name": "Домашки", "description": "Counts homework.",
                 "parameters": { "type": "object", "properties": {}, "additionalProperties": false },
                 "handler": "http", "http": { "path": path, "message": "Заданий: {n}", "fields": { "n": "/pending" } } }])
    };
    for outside in ["https://evil.example/steal", "//evil.example/steal", "/users/../../admin", "/x@evil.example"] {
        let file = dir.join("outside.json");
        std::fs::write(&file, fixture(outside).to_string()).unwrap();
        let error = concierge_shared::actions::load_fixtures(&app.pool, &file).await.unwrap_err();
        assert!(error.to_string().contains("count_homework"), "{outside}: {error}");
    }
    let file = dir.join("ok.json");
    std::fs::write(&file, fixture("/users/{user_id}/homework").to_string()).unwrap();
    concierge_shared::actions::load_fixtures(&app.pool, &file).await.unwrap();

    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let result = run(&app, &conversation, &mut sse, "count_homework", json!({})).await;
    assert_eq!(text(&result), "Заданий: 4");
}

#[tokio::test]
async fn admins_switch_actions_off_and_others_cannot() {
    let (app, _) = app_with_platform(None).await;
    let admin = platform_token(json!({ "sub": "root", "role": "admin", "exp": crate::helpers::now() + 600 }));
    let (status, _) = app.get(Some(&user_token("anna")), "/admin/actions").await;
    assert_eq!(status, Status::FORBIDDEN);
    let (status, list) = app.get(Some(&admin), "/admin/actions").await;
    assert_eq!(status, Status::OK);
    assert!(list.as_array().unwrap().len() >= 6);

    let response = app
        .client
        .patch(app.url("/admin/actions/check_zoom_status"))
        .bearer_auth(&admin)
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::OK);
    let conversation = app.open(Some(&user_token("anna"))).await;
    let (_, available) =
        app.get(Some(&conversation.bearer), &format!("/conversations/{}/actions", conversation.id)).await;
    assert!(available.as_array().unwrap().iter().all(|a| a["name"] != "check_zoom_status"));
    let (status, _) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/actions/check_zoom_status/execute", conversation.id),
            json!({}),
        )
        .await;
    assert_eq!(status, Status::NOT_FOUND);
    // Reloading the fixtures keeps the admin's switch.
    concierge_shared::actions::load_fixtures(&app.pool, &app.config.fixtures_dir.join("initial_actions.json"))
        .await
        .unwrap();
    let active: bool = sqlx::query_scalar("SELECT active FROM action_definitions WHERE name = 'check_zoom_status'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!active);
    let response = app
        .client
        .patch(app.url("/admin/actions/no_such"))
        .bearer_auth(&admin)
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::NOT_FOUND);
}

#[tokio::test]
async fn the_offline_engine_checks_when_a_trigger_phrase_is_used() {
    let (app, _) = app_with_platform(None).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let sent = app.say(&conversation, "у меня не работает зум, что делать").await;
    let reply = sse.next_from("assistant").await;
    assert_eq!(reply.data["reply_to"], sent["id"]);
    assert_eq!(reply.data["metadata"]["action"], "check_zoom_status");
    assert!(text(&reply.data).contains("Zoom"));
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT action, requested_by FROM action_runs").fetch_all(&app.pool).await.unwrap();
    assert_eq!(runs, [("check_zoom_status".to_owned(), "offline".to_owned())]);
}

#[tokio::test]
async fn the_model_runs_an_action_and_words_the_answer_from_its_result() {
    let llm = FakeLlm::start().await;
    llm.push(Reply::Json(tool_reply(
        "run_action",
        json!({ "name": "check_subscription", "params": { "user_id": "anna" } }),
    )))
    .push(Reply::Json(tool_reply("run_action", json!({ "name": "check_subscription", "params": {} }))))
    .push(Reply::Json(content_reply(
        "Ваш платёж не прошёл: на карте недостаточно средств. Пополните карту или смените её.",
    )));
    let (app, platform) = app_with_platform(Some(&llm)).await;
    let conversation = app.open(Some(&user_token("boris"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let sent = app.say(&conversation, "почему не прошла оплата подписки").await;
    let reply = loop {
        let event = sse.next().await;
        if event.event == "message" && event.data["reply_to"] == sent["id"] {
            break event.data;
        }
    };
    assert_eq!(text(&reply), "Ваш платёж не прошёл: на карте недостаточно средств. Пополните карту или смените её.");
    assert_eq!(reply["metadata"]["engine"], "llm");
    // The first choice named another user: refused and repaired, never sent to the platform.
    assert!(platform.requests.lock().unwrap().iter().all(|r| r.starts_with("users/boris/")));
    let requests = llm.requests();
    let offered = requests[0]["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "run_action");
    assert!(offered);
    let follow_up = requests[2]["messages"].to_string();
    assert!(follow_up.contains("недостаточно средств"), "the result went back to the model");
}

#[tokio::test]
async fn an_answer_that_skips_the_users_own_check_or_a_person_is_repaired() {
    let llm = FakeLlm::start().await;
    let general = "Zoom подключают в «Настройки → Интеграции → Zoom».";
    llm.push(Reply::Json(tool_reply("answer", json!({ "text": general, "citations": ["p1"] }))))
        .push(Reply::Json(tool_reply("run_action", json!({ "name": "check_zoom_status", "params": {} }))))
        .push(Reply::Json(content_reply("Zoom подключён, но токен истёк: переподключите его в настройках.")))
        // A disputed double charge: a clarifying question, then an answer, both refused.
        .push(Reply::Json(tool_reply("clarify", json!({ "question": "Какой картой вы платили?" }))))
        .push(Reply::Json(tool_reply("answer", json!({ "text": "Деньги вернутся сами.", "citations": ["p1"] }))));
    let (app, _platform) = app_with_platform(Some(&llm)).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let ask = |text: &'static str| {
        let (app, conversation) = (&app, &conversation);
        async move { app.say(conversation, text).await }
    };

    // The user asks about their own Zoom: a general answer is refused and the repair checks it.
    let sent = ask("подключён ли мой зум? уроки не запускаются").await;
    let reply = loop {
        let event = sse.next().await;
        if event.event == "message" && event.data["reply_to"] == sent["id"] {
            break event.data;
        }
    };
    assert_eq!(reply["metadata"]["engine"], "llm", "{reply}");
    assert!(text(&reply).contains("токен истёк"), "{reply}");
    let repair = llm.requests()[1]["messages"].to_string();
    assert!(repair.contains("run the offered action `check_zoom_status`"), "{repair}");
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT action, requested_by FROM action_runs").fetch_all(&app.pool).await.unwrap();
    assert_eq!(runs, [("check_zoom_status".to_owned(), "llm".to_owned())]);

    // A disputed charge needs a person: neither the question nor the answer is accepted, and
    // the offline engine hands over.
    let sent = ask("с меня дважды списали деньги за подписку, верните").await;
    let reply = loop {
        let event = sse.next().await;
        let stored = event.event == "message" || event.event == "status";
        if stored && event.data["reply_to"] == sent["id"] {
            break event.data;
        }
    };
    assert_eq!(reply["metadata"]["decision"], "escalate", "{reply}");
    assert_eq!(reply["metadata"]["fallback"], "needs_person", "{reply}");
    let repair = llm.requests()[4]["messages"].to_string();
    assert!(repair.contains("this needs a person (a disputed charge or refund)"), "{repair}");
}
