//! The knowledge base: admin-only reindex and search, collapsing requests, broken documents,
//! and live reload in every running worker process.

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, WAIT, platform_token, user_token, wait_until},
    processes::spawn_worker_with,
};

fn admin_token() -> String {
    platform_token(json!({ "sub": "root", "name": "Админ", "role": "admin", "exp": crate::helpers::now() + 3600 }))
}

/// A copy of the knowledge base the test may edit.
fn copy_knowledge(to: &Path) {
    let from = crate::helpers::knowledge_dir();
    for entry in walk(&from) {
        let target = to.join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

async fn wait_for_run(app: &TestApp, id: &str) -> Value {
    wait_until("the reindex to finish", WAIT, async || {
        let (status, run) = app.get(Some(&admin_token()), &format!("/knowledge/reindex/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["status"] == "succeeded" || run["status"] == "failed" { Ok(run) } else { Err(run) }
    })
    .await
}

#[tokio::test]
async fn only_admins_reindex_and_search() {
    let app = TestApp::spawn().await;
    let visitor = app.open(None).await.bearer;
    for token in [user_token("anna"), visitor] {
        let (status, body) = app.post(Some(&token), "/knowledge/reindex", json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _) = app.get(Some(&token), "/knowledge/search?q=оплата").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = app.post(None, "/knowledge/reindex", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, found) = app.get(Some(&admin_token()), "/knowledge/search?q=как%20оплатить%20подписку&limit=3").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0]["path"].as_str().unwrap().contains("pay"), "{found}");
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    assert!(hits[0]["heading"].is_string() && hits[0]["coverage"].is_number());
    let (status, body) = app.get(Some(&admin_token()), "/knowledge/search?q=%20").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn requests_collapse_and_a_run_reports_what_changed() {
    let dir = tempdir("collapse");
    copy_knowledge(&dir);
    let mut app = TestApp::spawn_with(|config| config.knowledge_dir = dir.clone()).await;
    let admin = admin_token();
    // Three requests before any worker runs: one run.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, run) = app.post(Some(&admin), "/knowledge/reindex/", json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'concierge::reindex'").await, 1);

    // Edit one document, add one, break one, delete one.
    let edited = dir.join("faq/payment-methods.md");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{text}\n## Оплата криптовалютой\nКриптовалюту Lectio не принимает.\n")).unwrap();
    std::fs::write(
        dir.join("faq/new-gift-cards.md"),
        "---\ntitle: Подарочные сертификаты\ncategory: faq\ntags: [сертификат]\nlanguage: ru\nupdated: 2026-11-01\n---\n\n# Подарочные сертификаты\n\nСертификат можно подарить ученику.\n",
    )
    .unwrap();
    std::fs::write(dir.join("faq/broken.md"), "no front matter here").unwrap();
    std::fs::remove_file(dir.join("faq/mobile-app.md")).unwrap();

    app.start_worker().await;
    let run = wait_for_run(&app, &ids[0]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let report = &run["report"];
    assert_eq!(report["added"], json!(["faq/new-gift-cards.md"]));
    assert_eq!(report["updated"], json!(["faq/payment-methods.md"]));
    assert_eq!(report["removed"], json!(["faq/mobile-app.md"]));
    assert_eq!(report["errors"][0]["path"], "faq/broken.md");
    assert!(report["unchanged"].as_u64().unwrap() > 50);

    // The next request is a new run; nothing changed, so the version stays.
    let (_, again) = app.post(Some(&admin), "/knowledge/reindex", json!({})).await;
    assert_ne!(again["id"], ids[0]);
    let second = wait_for_run(&app, again["id"].as_str().unwrap()).await;
    assert_eq!(second["report"]["version"], report["version"]);
    assert_eq!(second["report"]["added"], json!([]));

    // Admin search sees the new version.
    let (_, found) = app.get(Some(&admin), "/knowledge/search?q=подарочный%20сертификат").await;
    assert_eq!(found["hits"][0]["path"], "faq/new-gift-cards.md", "{found}");
    let (_, gone) = app.get(Some(&admin), "/knowledge/search?q=мобильное%20приложение").await;
    assert!(gone["hits"].as_array().unwrap().iter().all(|h| h["path"] != "faq/mobile-app.md"));
}

#[tokio::test]
async fn an_edited_document_changes_answers_in_every_worker_process() {
    let dir = tempdir("live");
    copy_knowledge(&dir);
    let app = TestApp::spawn_with(|config| config.knowledge_dir = dir.clone()).await;
    let _workers = [
        spawn_worker_with(&app.db_url, &dir, &["--queues", "process-message,reindex"]),
        spawn_worker_with(&app.db_url, &dir, &["--queues", "process-message"]),
    ];
    wait_until("both workers to register", WAIT, async || {
        app.count("SELECT count(*) FROM worker_instances").await >= 2
    })
    .await;
    let before: i64 = app.count("SELECT version FROM knowledge_state").await;

    let edited = dir.join("faq/payment-methods.md");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(
        &edited,
        format!("{text}\n## Оплата баллами Спасибо от Сбербанка\nБаллами «Спасибо» от Сбербанка подписку Lectio оплатить нельзя.\n"),
    )
    .unwrap();
    let (_, run) = app.post(Some(&admin_token()), "/knowledge/reindex", json!({})).await;
    let run = wait_for_run(&app, run["id"].as_str().unwrap()).await;
    let after = run["report"]["version"].as_i64().unwrap();
    assert_eq!(after, before + 1);

    // Both processes switch to the new version within seconds, without a restart.
    wait_until("every worker on the new knowledge version", Duration::from_secs(10), async || {
        app.count("SELECT count(*) FROM worker_instances WHERE kb_version < (SELECT version FROM knowledge_state)")
            .await
            == 0
    })
    .await;
    // And answer from it, whichever of them takes the job.
    for _ in 0..4 {
        let conversation = app.open(None).await;
        let mut sse = app.stream(&conversation, None).await;
        app.say(&conversation, "можно оплатить баллами спасибо от сбера?").await;
        let answer = sse.next_from("assistant").await;
        assert_eq!(answer.data["metadata"]["sources"][0]["path"], "faq/payment-methods.md", "{}", answer.data);
        assert!(answer.data["content"].as_str().unwrap().contains("Сбербанка"));
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("concierge-kb-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
