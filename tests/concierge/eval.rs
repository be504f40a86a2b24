//! Decision evaluations: `eval decisions --compare` runs two prompt versions over the same
//! conversations against a model server on loopback and pairs their outcomes, and the recorded
//! runs reach the console's list.

use std::{path::Path, time::Duration};

use chrono::{TimeDelta, Utc};
use concierge_shared::db::eval_runs::{self, EvalComparison, NewEvalRun};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_llm::{FakeLlm, Reply, tool_reply},
    helpers::{TestApp, platform_token, user_token},
};

/// What prompt B says and prompt A does not; the fake model follows it.
const MARKER: &str = "Prefer answering from the passages over handing the conversation to a person.";

/// The questions a model given prompt B answers; everything else, and everything under prompt
/// A, it hands to a person.
const ANSWERED_UNDER_B: &[&str] = &[
    "Как оплатить подписку?",
    "Как подключить Zoom к Lectio?",
    "Как удалить аккаунт?",
    "Как сбросить пароль?",
    "Как отменить подписку?",
    "Как привязать аккаунт родителя к ребёнку?",
    "В счёте для бухгалтерии ошибка в ИНН организации, исправьте реквизиты",
];

/// A folder of its own under the system's temporary folder, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("concierge-eval-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn admin() -> String {
    platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

/// The newest user message of a chat request.
fn last_user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn prompt_follows_marker(request: &Value) -> bool {
    request["messages"][0]["content"].as_str().is_some_and(|system| system.contains(MARKER))
}

fn write_set(dir: &Path) -> std::path::PathBuf {
    let cases = [
        ("c1", "Как оплатить подписку?", "answer"),
        ("c2", "Как подключить Zoom к Lectio?", "answer"),
        ("c3", "Как удалить аккаунт?", "answer"),
        ("c4", "Как сбросить пароль?", "answer"),
        ("c5", "Как отменить подписку?", "answer"),
        ("c6", "Как привязать аккаунт родителя к ребёнку?", "answer"),
        ("c7", "В счёте для бухгалтерии ошибка в ИНН организации, исправьте реквизиты", "escalate"),
        ("c8", "Позовите оператора", "escalate"),
    ];
    let lines: Vec<String> = cases
        .iter()
        .map(|(id, text, expected)| {
            json!({ "id": id, "turns": [{ "role": "user", "content": text }], "expected": expected }).to_string()
        })
        .collect();
    let file = dir.join("set.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    file
}

#[tokio::test]
async fn compare_pairs_two_prompts_on_the_same_conversations_and_records_them() {
    let fake = FakeLlm::start().await;
    fake.respond_with(|request| {
        let message = last_user_message(request);
        if prompt_follows_marker(request) && ANSWERED_UNDER_B.contains(&message.as_str()) {
            Reply::Json(tool_reply("answer", json!({ "text": "Это описано в справке Lectio.", "citations": ["p1"] })))
        } else {
            Reply::Json(tool_reply(
                "escalate",
                json!({ "reason": "needs_human", "summary": "Пользователю нужен оператор." }),
            ))
        }
    });
    let url = fake.url.clone();
    let app = TestApp::spawn_with(move |config| {
        config.ai.provider = concierge_shared::config::Provider::Openai;
        config.ai.base_url = url;
        config.ai.model = "scripted-model".into();
        config.ai.api_key = Some("test-key".into());
        config.ai.timeout = Duration::from_secs(5);
        config.ai.max_retries = 1;
        config.ai.stream = false;
    })
    .await;

    let dir = TempDir::new();
    let prompt = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/system.md")).unwrap();
    let (dir_a, dir_b) = (dir.0.as_path().join("prompts-a"), dir.0.as_path().join("prompts-b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::write(dir_a.join("system.md"), &prompt).unwrap();
    std::fs::write(dir_b.join("system.md"), format!("{prompt}\n{MARKER}\n")).unwrap();
    let set = write_set(dir.0.as_path());

    let comparison = concierge::eval::compare(&app.config, &set, &dir_a, &dir_b).await.unwrap();
    assert_eq!(fake.requests().len(), 16, "each conversation decided once per prompt, no repairs");

    let differing: Vec<(&str, &str, &str, bool, bool)> = comparison
        .differing
        .iter()
        .map(|d| (d.id.as_str(), d.a.as_str(), d.b.as_str(), d.a_right, d.b_right))
        .collect();
    let mut expected: Vec<(&str, &str, &str, bool, bool)> =
        ["c1", "c2", "c3", "c4", "c5", "c6"].iter().map(|id| (*id, "escalate", "answer", false, true)).collect();
    expected.push(("c7", "escalate", "answer", true, false));
    assert_eq!(differing, expected);
    assert_eq!((comparison.a_only_right, comparison.b_only_right), (1, 6));
    // 2 · (C(7,0) + C(7,1)) / 2^7
    assert!((comparison.p_value - 0.125).abs() < 1e-12, "{}", comparison.p_value);
    assert_eq!(comparison.a.figures.accuracy, 0.25);
    assert_eq!(comparison.b.figures.accuracy, 0.875);
    assert_ne!(comparison.a.engine.prompt_version, comparison.b.engine.prompt_version);

    let report = concierge::eval::render_comparison(&comparison);
    eprintln!("{report}");
    assert!(report.contains("conversations decided differently (7):"), "{report}");
    assert!(report.contains("escalate (right)") && report.contains("answer (wrong)"), "{report}");
    assert!(report.contains("b = 1 (A right, B wrong), c = 6 (A wrong, B right), two-sided p = 0.1250"), "{report}");
    assert!(report.contains("The difference is not significant at 0.05"), "{report}");
    let answer_row = report.lines().find(|l| l.trim_start().starts_with("answer ")).unwrap();
    assert!(answer_row.contains("0/6") && answer_row.contains("6/6"), "{report}");

    let recorded = concierge::eval::record_comparison(&app.config, &comparison).await.unwrap();
    assert!(recorded.starts_with("eval comparison "), "{recorded}");
    let (status, entries) = app.get(Some(&admin()), "/admin/eval-runs").await;
    assert_eq!(status, StatusCode::OK, "{entries}");
    let entry = &entries[0];
    assert_eq!(entry["kind"], "compare", "{entry}");
    assert_eq!(entry["comparison"]["a_only_right"], 1);
    assert_eq!(entry["comparison"]["b_only_right"], 6);
    assert!((entry["comparison"]["p_value"].as_f64().unwrap() - 0.125).abs() < 1e-12, "{entry}");
    assert_eq!(entry["comparison"]["differing"].as_array().unwrap().len(), 7);
    assert_eq!(entry["runs"][0]["side"], "a");
    assert_eq!(entry["runs"][1]["side"], "b");
    assert_eq!(entry["runs"][1]["accuracy"], 0.875);
    assert_eq!(entry["runs"][0]["model"], "scripted-model");
    assert_eq!(entry["runs"][0]["engine"], "openai");
    assert_eq!(entry["runs"][0]["decision_format"], "tools");
    assert_eq!(entry["runs"][0]["cases"], 8);
    assert_eq!(entry["runs"][0]["prompts_dir"], dir_a.display().to_string());
    assert_eq!(entry["runs"][1]["figures"]["by_label"]["answer"], json!([6, 6]));
}

#[tokio::test]
async fn compare_refuses_the_offline_engine_which_reads_no_prompt() {
    let app = TestApp::spawn().await;
    let dir = TempDir::new();
    let set = write_set(dir.0.as_path());
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let error = concierge::eval::compare(&app.config, &set, &prompts, &prompts).await.unwrap_err();
    assert!(format!("{error:#}").contains("the offline engine reads none"), "{error:#}");
}

fn run(engine: &str, started_ago_minutes: i64, accuracy: f64) -> NewEvalRun {
    let started_at = Utc::now() - TimeDelta::minutes(started_ago_minutes);
    NewEvalRun {
        started_at,
        finished_at: started_at + TimeDelta::seconds(30),
        set_file: "fixtures/eval/decisions.jsonl".into(),
        cases: 79,
        engine: engine.into(),
        model: (engine != "offline").then(|| "qwen2.5-1.5b".into()),
        prompt_version: (engine != "offline").then(|| format!("system.md@{started_ago_minutes:010}")),
        prompts_dir: None,
        decision_format: (engine != "offline").then(|| "tools".into()),
        accuracy,
        figures: json!({ "accuracy": accuracy }),
    }
}

#[tokio::test]
async fn recorded_runs_are_listed_newest_first_to_admins_only() {
    let app = TestApp::spawn().await;
    eval_runs::insert_run(&app.pool, &run("offline", 120, 0.506)).await.unwrap();
    let test = EvalComparison { a_only_right: 1, b_only_right: 9, p_value: 0.021_484_375, differing: json!([]) };
    let compared =
        eval_runs::insert_comparison(&app.pool, &run("openai", 60, 0.5), &run("openai", 60, 0.6), &test).await.unwrap();
    eval_runs::insert_run(&app.pool, &run("offline", 1, 0.71)).await.unwrap();

    let (status, body) = app.get(None, "/admin/eval-runs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, body) = app.get(Some(&user_token("anna")), "/admin/eval-runs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden", "{body}");

    let (status, entries) = app.get(Some(&admin()), "/admin/eval-runs").await;
    assert_eq!(status, StatusCode::OK, "{entries}");
    let entries = entries.as_array().unwrap();
    let kinds: Vec<(&str, f64)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["runs"][e["runs"].as_array().unwrap().len() - 1]["accuracy"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("run", 0.71), ("compare", 0.6), ("run", 0.506)]);
    let comparison = &entries[1];
    assert_eq!(comparison["id"], compared.to_string());
    assert_eq!(comparison["comparison"]["p_value"], 0.021_484_375);
    assert_eq!(comparison["runs"].as_array().unwrap().len(), 2);
    assert_eq!(comparison["runs"][0]["side"], "a");
    assert_eq!(comparison["runs"][0]["model"], "qwen2.5-1.5b");
    let plain = &entries[0];
    assert_eq!(plain["comparison"], Value::Null);
    assert_eq!(plain["runs"][0]["engine"], "offline");
    assert_eq!(plain["runs"][0]["side"], Value::Null);
    assert_eq!(plain["runs"][0]["set_file"], "fixtures/eval/decisions.jsonl");
    assert!(plain["started_at"].as_str().is_some() && plain["runs"][0]["finished_at"].as_str().is_some(), "{plain}");

    // A comparison counts as one entry.
    let (status, entries) = app.get(Some(&admin()), "/admin/eval-runs?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert_eq!(entries[1]["kind"], "compare");

    for bad in ["limit=0", "limit=201"] {
        let (status, body) = app.get(Some(&admin()), &format!("/admin/eval-runs?{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_limit");
        assert_eq!(body["error"]["field"], "limit");
    }
    for bad in ["limit=many", "order=asc"] {
        let (status, body) = app.get(Some(&admin()), &format!("/admin/eval-runs?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].as_str().is_some(), "{bad}: {body}");
    }
}
