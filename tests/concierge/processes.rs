//! The API and the workers as separate processes against one database: two API processes
//! stream each other's writes, and a worker killed in the middle of a job is replaced by
//! another that finishes it with exactly one reply.

use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::helpers::{SECRET, Sse, TestApp, WAIT, knowledge_dir, wait_until};

fn concierge(database_url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("CONCIERGE_JWT_SECRET", SECRET)
        .env("CONCIERGE_KNOWLEDGE_DIR", knowledge_dir())
        .env("CONCIERGE_WORKER_HEARTBEAT_SECS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn spawn_worker(database_url: &str) -> Child {
    spawn_worker_with(database_url, &knowledge_dir(), &["--queues", "process-message"])
}

/// A worker process reading the knowledge directory `knowledge`, with extra arguments.
pub fn spawn_worker_with(database_url: &str, knowledge: &std::path::Path, args: &[&str]) -> Child {
    concierge(database_url, &["worker", "--concurrency", "4"])
        .args(args)
        .env("CONCIERGE_KNOWLEDGE_DIR", knowledge)
        .spawn()
        .unwrap()
}

/// An API process on a free port; returns it with its base URL once it answers.
async fn spawn_api(app: &TestApp) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = concierge(&app.db_url, &["api"]).env("CONCIERGE_BIND", format!("127.0.0.1:{port}")).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the API process to start", WAIT, async || {
        app.client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    (child, format!("{base}/api/concierge"))
}

#[tokio::test]
async fn two_api_processes_and_a_worker_process_share_one_database() {
    // The in-process API only hands out tokens here; the processes do the work.
    let app = TestApp::spawn().await;
    let (_api_a, base_a) = spawn_api(&app).await;
    let (_api_b, base_b) = spawn_api(&app).await;
    let _worker = spawn_worker(&app.db_url);

    let created: serde_json::Value = app
        .client
        .post(format!("{base_a}/conversations/"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let bearer = created["visitor_token"].as_str().unwrap();
    let token = created["stream_token"]["token"].as_str().unwrap();
    let mut on_a = Sse::connect(&app.client, &format!("{base_a}/conversations/{id}/stream?token={token}"), None).await;
    let mut on_b = Sse::connect(&app.client, &format!("{base_b}/conversations/{id}/stream?token={token}"), None).await;

    // Written through B, seen on A (and B); answered by the worker process.
    let status = app
        .client
        .post(format!("{base_b}/conversations/{id}/messages"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({ "content": "Как подключить Zoom?" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    for sse in [&mut on_a, &mut on_b] {
        assert_eq!(sse.next().await.data["role"], "user");
        let answer = sse.next().await;
        assert_eq!(answer.data["role"], "assistant");
        assert!(answer.data["metadata"]["sources"][0]["path"].as_str().unwrap().contains("zoom"));
    }
    // And the other way round.
    app.client
        .post(format!("{base_a}/conversations/{id}/messages"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({ "content": "Спасибо" }))
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.next().await.id, Some(3));
    assert_eq!(on_b.next().await.id, Some(4));
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_replaced_and_the_message_gets_one_reply() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let sent = app.say(&conversation, "Как оплатить подписку?").await;

    // Hold the conversation's row lock: the worker will block writing its reply.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1::uuid FOR UPDATE")
        .bind(&conversation.id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut first = spawn_worker(&app.db_url);
    wait_until("the worker to reach the reply", WAIT, async || {
        app.count(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE conversations%' AND pid <> pg_backend_pid()",
        )
        .await
            > 0
    })
    .await;
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE status IN ('Queued', 'Running')").await, 1);

    first.kill().await.unwrap();
    blocker.rollback().await.unwrap();
    assert_eq!(app.stored_messages(&conversation.id).await.len(), 1, "no reply yet");

    let _second = spawn_worker(&app.db_url);
    let mut sse = app.stream(&conversation, Some(1)).await;
    let reply = sse.next().await;
    assert_eq!(reply.data["role"], "assistant");
    assert_eq!(reply.data["reply_to"], sent["id"]);
    wait_until("the job to finish", WAIT, async || {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done'").await == 0
    })
    .await;
    assert_eq!(app.stored_messages(&conversation.id).await.len(), 2);
    app.assert_stream_quiet(&conversation, &mut sse).await;
}

/// `concierge` with the demo platform on an address others can reach: it refuses before it
/// starts anything, and says what to configure.
#[tokio::test]
async fn the_demo_refuses_a_public_address() {
    let data_dir = tempfile_dir("demo-public");
    let run = |extra: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
        command
            .env_remove("DATABASE_URL")
            .env_remove("CONCIERGE_PLATFORM_URL")
            .env_remove("CONCIERGE_DEMO")
            .env("CONCIERGE_BIND", "0.0.0.0:0")
            .env("CONCIERGE_DATA_DIR", &data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output()
    };
    let output = tokio::time::timeout(WAIT, run(&[])).await.expect("concierge exits").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for needed in ["0.0.0.0:0 is not a loopback address", "CONCIERGE_PLATFORM_URL", "CONCIERGE_DEMO=1"] {
        assert!(stderr.contains(needed), "{needed:?} in {stderr}");
    }
    // Nothing was started: no cluster, no generated secret.
    assert!(!data_dir.join("pg").exists() && !data_dir.join("jwt-secret").exists());

    let beside_platform = [("CONCIERGE_DEMO", "1"), ("CONCIERGE_PLATFORM_URL", "http://127.0.0.1:9/api")];
    let output = tokio::time::timeout(WAIT, run(&beside_platform)).await.expect("concierge exits").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("Unset CONCIERGE_DEMO"), "{stderr}");
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
