//! Attachment storage and its lifecycle: files go when their rows go (erasure, retention, the
//! cleanup of uploads never sent), after the commit, a failed delete retried later; the export
//! lists the files; the size limit is the setting's; and the S3 backend against a real
//! S3-compatible server on loopback (moto's standalone server from PyPI, which `.ci/moto`
//! installs and `.ci/run` runs before the tests).

use std::{path::PathBuf, time::Duration};

use concierge_shared::{
    ConversationId, MessageRole,
    attachments::{self, NewAttachment},
    config::{S3Config, StorageConfig},
    db::messages::{self, NewMessage},
    jobs::{self, ApplyRetention},
    storage::{Storage, StorageError},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    attachments::signed,
    helpers::{Conversation, TestApp, WAIT, platform_token, response, user_token, wait_until},
    voice::{pdf, png, try_upload, upload},
};

fn admin() -> String {
    platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }))
}

async fn erase(app: &TestApp, sub: &str) -> Value {
    let sent = app.client.delete(app.url(&format!("/admin/users/{sub}"))).bearer_auth(admin()).send().await.unwrap();
    let (status, body) = response(sent).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn send(app: &TestApp, conversation: &Conversation, ids: &[&Value]) {
    let path = format!("/conversations/{}/messages/", conversation.id);
    let (status, body) =
        app.post(Some(&conversation.bearer), &path, json!({ "content": "вот", "attachment_ids": ids })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

async fn key_of(app: &TestApp, attachment: &Value) -> String {
    sqlx::query_scalar("SELECT storage_key FROM attachments WHERE id = $1::uuid")
        .bind(attachment["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn local_file(app: &TestApp, key: &str) -> PathBuf {
    app.config.data_dir.join("attachments").join(key)
}

async fn queued_deletions(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM storage_deletions").fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn erasure_deletes_the_persons_files_and_the_export_lists_them_first() {
    let app = TestApp::spawn().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let sent = upload(&app, &conversation, "screen.png", "image/png", png(4, 3)).await;
    send(&app, &conversation, &[&sent["id"]]).await;
    let unsent = upload(&app, &conversation, "check.pdf", "application/pdf", pdf()).await;
    let keys = [key_of(&app, &sent).await, key_of(&app, &unsent).await];
    assert!(keys.iter().all(|key| local_file(&app, key).exists()));

    let (status, export) = app.get(Some(&admin()), "/admin/users/anna/export").await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["counts"]["attachments"], 2, "{export}");
    let held = &export["conversations"][0];
    let files = held["messages"].as_array().unwrap().iter().flat_map(|m| m["attachments"].as_array().unwrap());
    let files: Vec<&Value> = files.collect();
    assert_eq!(files.len(), 1, "{held}");
    assert_eq!(files[0]["file_name"], "screen.png");
    assert_eq!(files[0]["content_type"], "image/png");
    assert_eq!(files[0]["storage_key"], keys[0].as_str());
    assert!(files[0]["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(held["unsent_attachments"][0]["file_name"], "check.pdf", "{held}");

    let erased = erase(&app, "anna").await;
    assert_eq!(erased["erased"]["attachments"], 2, "{erased}");
    wait_until("the erased files deleted", WAIT, async || {
        keys.iter().all(|key| !local_file(&app, key).exists()) && queued_deletions(&app).await == 0
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_the_files_of_expired_conversations() {
    let mut app = TestApp::spawn_with(|config| config.retention = Some(Duration::from_secs(30 * 86_400))).await;
    let storage = Storage::local(&app.config.data_dir);
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let conversation = app.open(None).await;
        let id: ConversationId = conversation.id.parse().unwrap();
        let mut tx = app.pool.begin().await.unwrap();
        let message = messages::append(&mut tx, id, NewMessage::new(MessageRole::User, "вот")).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let new = NewAttachment {
            conversation_id: id,
            message_id: Some(message.id),
            author: "user",
            file_name: "check.pdf",
            declared_type: None,
            bytes: pdf().into(),
        };
        let stored = attachments::store(&app.pool, &storage, new, app.config.max_attachment_bytes).await.unwrap();
        keys.push(stored.storage_key);
        ids.push(conversation.id);
    }
    // The first is closed and forty days old; the second stays.
    sqlx::query(
        "UPDATE conversations SET status = 'closed', updated_at = now() - interval '40 days' WHERE id = $1::uuid",
    )
    .bind(&ids[0])
    .execute(&app.pool)
    .await
    .unwrap();
    app.start_worker().await;
    let mut conn = app.pool.acquire().await.unwrap();
    jobs::enqueue(&mut conn, &ApplyRetention { cause: "test".into() }, 3).await.unwrap();
    drop(conn);
    wait_until("the expired conversation's file deleted", WAIT, async || {
        !local_file(&app, &keys[0]).exists() && queued_deletions(&app).await == 0
    })
    .await;
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations WHERE id = $1::uuid")
        .bind(&ids[0])
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(gone, 0);
    assert!(local_file(&app, &keys[1]).exists(), "the kept conversation's file stays");
}

#[tokio::test]
async fn old_unsent_uploads_are_swept_and_a_failed_delete_is_retried() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let old = upload(&app, &conversation, "old.pdf", "application/pdf", pdf()).await;
    let fresh = upload(&app, &conversation, "fresh.pdf", "application/pdf", pdf()).await;
    let (old_key, fresh_key) = (key_of(&app, &old).await, key_of(&app, &fresh).await);
    sqlx::query("UPDATE attachments SET created_at = now() - interval '25 hours' WHERE id = $1::uuid")
        .bind(old["id"].as_str().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let ctx = concierge_worker::Context::build(&app.config, app.pool.clone()).await.unwrap();
    let swept = concierge_worker::retention::sweep_files(&ctx).await.unwrap();
    assert_eq!((swept.unsent_removed, swept.files.deleted, swept.files.failed), (1, 1, 0), "{swept:?}");
    assert!(!local_file(&app, &old_key).exists());
    assert!(local_file(&app, &fresh_key).exists(), "a fresh upload waits for its message");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM attachments").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 1);

    // A file that cannot be deleted (a directory stands where it should be): logged, kept
    // queued, and deleted at a later sweep once it can be.
    let stuck = format!("{}/{}", conversation.id, uuid::Uuid::new_v4());
    std::fs::create_dir_all(local_file(&app, &stuck)).unwrap();
    sqlx::query("INSERT INTO storage_deletions (storage_key) VALUES ($1)")
        .bind(&stuck)
        .execute(&app.pool)
        .await
        .unwrap();
    let swept = concierge_worker::retention::sweep_files(&ctx).await.unwrap();
    assert_eq!(swept.files.failed, 1, "{swept:?}");
    let (attempts, error, later): (i32, Option<String>, bool) = sqlx::query_as(
        "SELECT attempts, last_error, next_attempt_at > now() FROM storage_deletions WHERE storage_key = $1",
    )
    .bind(&stuck)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(attempts == 1 && error.is_some() && later, "{attempts} {error:?} {later}");
    std::fs::remove_dir(local_file(&app, &stuck)).unwrap();
    std::fs::create_dir_all(local_file(&app, &stuck).parent().unwrap()).unwrap();
    std::fs::write(local_file(&app, &stuck), b"x").unwrap();
    sqlx::query("UPDATE storage_deletions SET next_attempt_at = now()").execute(&app.pool).await.unwrap();
    let swept = concierge_worker::retention::sweep_files(&ctx).await.unwrap();
    assert_eq!((swept.files.deleted, swept.files.failed), (1, 0), "{swept:?}");
    assert!(!local_file(&app, &stuck).exists());
    assert_eq!(queued_deletions(&app).await, 0);
}

#[tokio::test]
async fn the_size_limit_is_the_setting_and_an_oversized_file_is_refused_whole() {
    let app = TestApp::spawn_with(|config| config.max_attachment_bytes = 1024 * 1024).await;
    let conversation = app.open(None).await;
    let (status, body) = try_upload(&app, &conversation, "big.txt", "text/plain", vec![b'a'; 1024 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM attachments").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 0);
    assert!(!app.config.data_dir.join("attachments").join(&conversation.id).exists());
    // At the limit exactly: taken.
    let at_limit = upload(&app, &conversation, "limit.txt", "text/plain", vec![b'a'; 1024 * 1024]).await;
    assert_eq!(at_limit["size_bytes"], 1024 * 1024);
    // The document says the configured limit.
    let (_, document) = app.get(None, "/openapi.json").await;
    let upload = &document["paths"]["/conversations/{id}/attachments"]["post"];
    assert!(upload["description"].as_str().unwrap().contains("1 MB"), "{upload}");
}

// S3, against moto's standalone server.

/// The moto version `.ci/moto` pins, read from the script so that both agree.
fn moto_version() -> String {
    let script = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/moto")).unwrap();
    script.lines().find_map(|line| line.strip_prefix("VERSION=")).expect("VERSION= in .ci/moto").trim().to_owned()
}

/// `moto_server`: in the virtualenv `.ci/moto` makes under the target directory, or on PATH.
/// Missing, the test is skipped, except in CI (`CI=true`), where that is a failure.
fn moto_server() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // target/debug/deps/concierge-…
        std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf()
    });
    let target = if target.is_absolute() { target } else { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(target) };
    let venv = target.join(format!("moto-venv-{}", moto_version())).join("bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file());
    if on_path.is_none() {
        let note = format!("the S3 test needs moto's server ({} or moto_server on PATH; run .ci/moto)", venv.display());
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{note}; in CI (CI=true) it must be here");
        }
        eprintln!("skipped: {note}");
    }
    on_path
}

#[tokio::test]
async fn files_live_in_an_s3_bucket_and_go_with_the_erasure() {
    let Some(moto) = moto_server() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = tokio::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until("moto answering", WAIT, async || client.get(&endpoint).send().await.is_ok()).await;
    let bucket = "concierge-files";
    let created = client.put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let s3 = S3Config {
        bucket: bucket.into(),
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".into(),
        credentials: Some(("testing".into(), "testing".into())),
        path_style: true,
        allow_http: true,
    };
    // The bucket read on its own, with the same keys (moto refuses unsigned reads of objects).
    let bucket_reader = Storage::s3(&s3).unwrap();
    bucket_reader.check().await.unwrap();
    // A bucket that is not there is said at start-up.
    let missing = Storage::s3(&S3Config { bucket: "no-such-bucket".into(), ..s3.clone() }).unwrap();
    let error = missing.check().await.unwrap_err().to_string();
    assert!(error.contains("CONCIERGE_S3_"), "{error}");
    let app = TestApp::spawn_with(|config| config.storage = StorageConfig::S3(s3)).await;
    let conversation = app.open(Some(&user_token("s3-user"))).await;
    let image = png(4, 3);
    let stored = upload(&app, &conversation, "screen.png", "image/png", image.clone()).await;
    let key = key_of(&app, &stored).await;
    assert!(!app.config.data_dir.join("attachments").join(&conversation.id).exists(), "nothing on the local disk");
    let object = bucket_reader.get(&key).await.unwrap();
    assert_eq!(object.as_ref(), image.as_slice(), "the object in the bucket is the file");
    send(&app, &conversation, &[&stored["id"]]).await;

    let expires = crate::helpers::now() as i64 + 300;
    let link = signed(&app, stored["id"].as_str().unwrap(), expires, crate::helpers::SECRET);
    let downloaded = app.client.get(&link).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK, "{link}");
    assert_eq!(downloaded.headers()["content-type"], "image/png");
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), image.as_slice());

    let erased = erase(&app, "s3-user").await;
    assert_eq!(erased["erased"]["attachments"], 1, "{erased}");
    wait_until("the object deleted from the bucket", WAIT, async || {
        let gone = matches!(bucket_reader.get(&key).await, Err(StorageError::NotFound(_)));
        gone && queued_deletions(&app).await == 0
    })
    .await;
    let gone = app.client.get(&link).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
