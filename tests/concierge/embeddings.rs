//! Hybrid search against a fake embeddings server on loopback: what a reindex embeds, a model
//! change that re-embeds while the old vectors serve, a server that fails, hangs or answers
//! with the wrong dimension (the search answers lexically and says so, the reply still comes),
//! and a document found only through the vector ranking.

use std::{path::PathBuf, time::Duration};

use concierge_shared::{
    config::EmbeddingsConfig,
    embeddings::Embedder,
    knowledge::{KnowledgeBase, SearchOptions, embed, store},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_embeddings::{Behaviour, FakeEmbeddings},
    helpers::{Sse, TestApp, WAIT, platform_token, wait_until},
};

fn admin_token() -> String {
    platform_token(json!({ "sub": "root", "name": "Админ", "role": "admin", "exp": crate::helpers::now() + 3600 }))
}

fn write(dir: &std::path::Path, path: &str, title: &str, body: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let text =
        format!("---\ntitle: {title}\ncategory: faq\ntags: []\nlanguage: ru\nupdated: 2026-12-01\n---\n\n{body}\n");
    std::fs::write(file, text).unwrap();
}

/// A small knowledge base: the refund document shares no word with "хочу назад мои тугрики".
fn small_kb() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("concierge-kb-vec-{}", uuid::Uuid::new_v4().simple()));
    write(&dir, "faq/refund.md", "Возврат средств", "Возврат приходит на ту же карту за 5–10 дней.");
    write(&dir, "faq/sound.md", "Нет звука на уроке", "## Микрофон\nПроверьте микрофон в настройках Zoom.");
    write(&dir, "faq/records.md", "Записи уроков", "## Где найти\nЗапись появляется в разделе «Мои уроки».");
    dir
}

fn embeddings(fake: &FakeEmbeddings, model: &str) -> EmbeddingsConfig {
    let mut config = EmbeddingsConfig::new(&fake.url, model);
    config.query_timeout = Duration::from_millis(400);
    config.max_retries = 0;
    // Every failure is seen as it is, not hidden by an open breaker.
    config.breaker_cooldown = Duration::ZERO;
    config
}

/// The API and a worker over `kb`, embedding with `model` on `fake`, its vectors in sync.
async fn app_with_vectors(fake: &FakeEmbeddings, kb: &std::path::Path, model: &str) -> TestApp {
    app_with_config(kb, embeddings(fake, model)).await
}

/// [`app_with_vectors`] with the embeddings `config` as given.
async fn app_with_config(kb: &std::path::Path, config: EmbeddingsConfig) -> TestApp {
    let kb = kb.to_path_buf();
    let mut app = TestApp::spawn_with(move |c| {
        c.knowledge_dir = kb;
        c.embeddings = Some(config);
    })
    .await;
    app.start_worker().await;
    reindex(&app).await;
    // The worker reloads its index when the reindex's new version is announced, a moment after
    // the run has finished.
    wait_until("the worker to search with the vectors", WAIT, async || {
        let meta = reply_metadata(&app, "какой звук").await;
        if meta["retrieval"]["mode"] == "hybrid" { Ok(()) } else { Err(meta) }
    })
    .await;
    app
}

/// Reindex through the API and wait for the run's report.
async fn reindex(app: &TestApp) -> Value {
    let (status, run) = app.post(Some(&admin_token()), "/knowledge/reindex", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    wait_until("the reindex to finish", WAIT, async || {
        let (_, run) = app.get(Some(&admin_token()), &format!("/knowledge/reindex/{id}")).await;
        if run["status"] == "succeeded" { Ok(run) } else { Err(run) }
    })
    .await
}

async fn search(app: &TestApp, q: &str) -> Value {
    let (status, found) = app.get(Some(&admin_token()), &format!("/knowledge/search?q={}", urlencode(q))).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn a_reindex_embeds_only_new_and_changed_chunks() {
    let fake = FakeEmbeddings::start().await;
    let kb = small_kb();
    let app = app_with_vectors(&fake, &kb, "fake-1").await;
    let chunks: i64 = app.count("SELECT count(*) FROM knowledge_chunks").await;
    // Each chunk is embedded as its passage and as its label.
    let texts: i64 = app.count("SELECT count(*) FROM knowledge_vectors").await;
    assert_eq!(texts, 2 * chunks, "{texts} vectors for {chunks} chunks");

    fake.forget();
    write(&kb, "faq/records.md", "Записи уроков", "## Где найти\nЗапись хранится 90 дней в разделе «Мои уроки».");
    let run = reindex(&app).await;
    let embedded = fake.texts("fake-1");
    assert_eq!(embedded.len(), 1, "only the changed section: {embedded:?}");
    assert!(embedded[0].contains("90 дней"), "{embedded:?}");
    assert_eq!(run["report"]["embedded"]["embedded"], 1, "{run}");
    assert_eq!(app.count("SELECT count(*) FROM knowledge_vectors").await, texts, "the old vector is pruned");

    fake.forget();
    let run = reindex(&app).await;
    assert!(fake.texts("fake-1").is_empty(), "nothing changed, nothing embedded: {run}");
}

#[tokio::test]
async fn a_model_change_re_embeds_while_the_old_vectors_serve() {
    let fake = FakeEmbeddings::start().await;
    let kb = small_kb();
    let app = app_with_vectors(&fake, &kb, "fake-1").await;
    let version = store::version(&app.pool).await.unwrap();

    // The new model's server holds every request: the re-embedding is under way.
    fake.set(Behaviour::Held);
    let pool = app.pool.clone();
    let new_model = embeddings(&fake, "fake-2");
    let running = tokio::spawn(async move { embed::sync(&pool, &Embedder::new(&new_model)).await.unwrap() });
    wait_until("the new model's first batch to be sent", WAIT, async || {
        if fake.texts("fake-2").is_empty() { Err("none yet") } else { Ok(()) }
    })
    .await;
    let active: Option<String> =
        sqlx::query_scalar("SELECT vector_model FROM knowledge_state").fetch_one(&app.pool).await.unwrap();
    assert_eq!(active.as_deref(), Some("fake-1"));
    // Searches still embed with the old model and rank with its vectors.
    fake.set(Behaviour::Normal);
    let found = search(&app, "хочу назад мои тугрики").await;
    assert_eq!(found["mode"], "hybrid", "{found}");
    assert_eq!(fake.requests().last().unwrap().0, "fake-1");

    fake.release();
    let report = running.await.unwrap();
    assert!(report.switched && report.version > version, "{report:?}");
    let active: Option<String> =
        sqlx::query_scalar("SELECT vector_model FROM knowledge_state").fetch_one(&app.pool).await.unwrap();
    assert_eq!(active.as_deref(), Some("fake-2"));
    assert_eq!(app.count("SELECT count(*) FROM knowledge_vectors WHERE model = 'fake-1'").await, 0);

    // Every process loads the new set: a fresh one embeds queries with the new model.
    let kb =
        KnowledgeBase::load(app.pool.clone(), Some(std::sync::Arc::new(Embedder::new(&embeddings(&fake, "fake-2")))))
            .await
            .unwrap();
    assert_eq!(kb.current().vectors().unwrap().space.model, "fake-2");
    let retrieval = kb.search("хочу назад мои тугрики", &SearchOptions::top(3)).await;
    assert!(retrieval.result.semantic);
    assert_eq!(retrieval.result.hits[0].chunk.doc_path, "faq/refund.md");
}

#[tokio::test]
async fn the_vector_ranking_finds_a_document_that_shares_no_word_with_the_question() {
    let fake = FakeEmbeddings::start().await;
    let app = app_with_vectors(&fake, &small_kb(), "fake-1").await;
    let found = search(&app, "хочу назад мои тугрики").await;
    assert_eq!(found["mode"], "hybrid", "{found}");
    let top = &found["hits"][0];
    assert_eq!(top["path"], "faq/refund.md", "{found}");
    assert!(top["lexical"].is_null() && top["vector"].as_f64().unwrap() > 0.5, "{top}");
    assert_eq!(top["vector_rank"], 1);
}

/// Ask in a new conversation and return the stored reply's metadata.
async fn reply_metadata(app: &TestApp, text: &str) -> Value {
    let conversation = app.open(None).await;
    let mut sse: Sse = app.stream(&conversation, None).await;
    let sent = app.say(&conversation, text).await;
    loop {
        let event = sse.next().await;
        if (event.event == "message" || event.event == "status") && event.data["reply_to"] == sent["id"] {
            break;
        }
    }
    sqlx::query_scalar(
        "SELECT metadata FROM messages WHERE conversation_id = $1::uuid AND role <> 'user' ORDER BY seq DESC LIMIT 1",
    )
    .bind(&conversation.id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_failing_hanging_or_wrong_server_leaves_the_search_lexical_and_the_reply_on_time() {
    let fake = FakeEmbeddings::start().await;
    let app = app_with_vectors(&fake, &small_kb(), "fake-1").await;

    let meta = reply_metadata(&app, "нет звука микрофон").await;
    assert_eq!(meta["retrieval"]["mode"], "hybrid", "{meta}");

    // A new text each time: a cached vector would hide the failure.
    for (behaviour, outcome, question) in [
        (Behaviour::Fail, "http_error", "микрофон, нет звука"),
        (Behaviour::Hang(Duration::from_secs(10)), "timeout", "звука нет, микрофон"),
        (Behaviour::WrongDimensions, "dimensions", "нет звука микрофон!"),
    ] {
        fake.set(behaviour);
        let started = std::time::Instant::now();
        let meta = reply_metadata(&app, question).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{outcome}: {:?}", started.elapsed());
        assert_eq!(meta["retrieval"]["mode"], "lexical", "{outcome}: {meta}");
        assert_eq!(meta["retrieval"]["fallback"], outcome, "{meta}");
        assert_eq!(meta["sources"][0]["path"], "faq/sound.md", "still answered lexically: {meta}");
    }
}

#[tokio::test]
async fn the_engine_answers_from_the_vectors_only_at_the_models_least_similarity() {
    let fake = FakeEmbeddings::start().await;
    let kb = small_kb();
    let open = app_with_vectors(&fake, &kb, "fake-1").await;
    let meta = reply_metadata(&open, "нет звука микрофон").await;
    assert_eq!(meta["retrieval"]["mode"], "hybrid", "{meta}");
    assert_eq!(meta["sources"][0]["path"], "faq/sound.md", "{meta}");

    let mut config = embeddings(&fake, "fake-1");
    config.min_similarity = Some(0.9999);
    let strict = app_with_config(&kb, config).await;
    let meta = reply_metadata(&strict, "нет звука микрофон").await;
    assert_eq!(meta["retrieval"]["mode"], "hybrid", "{meta}");
    assert!(meta["sources"].as_array().is_none_or(Vec::is_empty), "not answered from a passage: {meta}");
}
