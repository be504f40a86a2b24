//! Files from the widget: upload (multipart, the type decided by the content, the size capped
//! while reading, owner only), sending them with a message in one transaction, refusals that
//! leave nothing stored, metadata stripped from images, and the upload metrics.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{Conversation, TestApp, response},
    voice::{pdf, png, try_upload, upload},
};

async fn rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM attachments").fetch_one(&app.pool).await.unwrap()
}

/// Files stored under the data folder for this conversation.
fn files(app: &TestApp, conversation: &Conversation) -> usize {
    let dir = app.config.data_dir.join("attachments").join(&conversation.id);
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

async fn send(app: &TestApp, conversation: &Conversation, content: &str, ids: &[&Value]) -> (StatusCode, Value) {
    app.post(
        Some(&conversation.bearer),
        &format!("/conversations/{}/messages/", conversation.id),
        json!({ "content": content, "attachment_ids": ids }),
    )
    .await
}

#[tokio::test]
async fn an_uploaded_file_is_sent_with_a_message_and_can_be_sent_alone() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let image = upload(&app, &conversation, "screen.png", "image/png", png(4, 3)).await;
    assert_eq!(image["kind"], "image", "{image}");
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(image["file_name"], "screen.png");
    assert_eq!(files(&app, &conversation), 1);
    let (status, message) = send(&app, &conversation, "", &[&image["id"]]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    let attached: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT message_id FROM attachments").fetch_one(&app.pool).await.unwrap();
    assert_eq!(attached.unwrap().to_string(), message["id"].as_str().unwrap());
    // Sent once: it cannot be sent again.
    let (status, body) = send(&app, &conversation, "ещё раз", &[&image["id"]]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_attachment");

    let text = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("concierge_attachment_uploads_total")
            && l.contains("kind=\"image\"")
            && l.contains("outcome=\"stored\"")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("concierge_attachment_bytes_total") && l.contains("kind=\"image\"")));
}

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    // Larger than the cap.
    let big = vec![b'a'; app.config.max_attachment_bytes + 1];
    let (status, body) = try_upload(&app, &conversation, "big.txt", "text/plain", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    // Text claiming to be an image.
    let (status, body) = try_upload(&app, &conversation, "fake.png", "image/png", b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "type_mismatch");
    // Of no kind taken.
    let (status, body) =
        try_upload(&app, &conversation, "x.bin", "application/octet-stream", vec![0, 1, 2, 3, 0xff]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_file");
    // Not a form.
    let (status, body) = app
        .post(Some(&conversation.bearer), &format!("/conversations/{}/attachments/", conversation.id), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    // Another user's conversation.
    let stranger = app.open(None).await;
    let intruder = Conversation {
        id: conversation.id.clone(),
        bearer: stranger.bearer.clone(),
        stream_token: stranger.stream_token.clone(),
    };
    let (status, body) = try_upload(&app, &intruder, "doc.pdf", "application/pdf", pdf()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(rows(&app).await, 0);
    assert_eq!(files(&app, &conversation), 0);

    let text = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("outcome=\"too_large\""), "{text}");
    assert!(text.contains("outcome=\"mismatch\""), "{text}");
}

#[tokio::test]
async fn a_message_takes_only_this_conversations_unsent_files_and_at_most_five() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let other = app.open(None).await;
    let theirs = upload(&app, &other, "doc.pdf", "application/pdf", pdf()).await;
    let (status, body) = send(&app, &conversation, "вот", &[&theirs["id"]]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_attachment");
    // Nothing half-stored: no message, and the file still waits in its own conversation.
    let messages: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'user'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(messages, 0);
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM attachments WHERE message_id IS NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(unsent, 1);

    let mut mine = Vec::new();
    for n in 0..6 {
        mine.push(upload(&app, &conversation, &format!("{n}.pdf"), "application/pdf", pdf()).await);
    }
    let ids: Vec<&Value> = mine.iter().map(|a| &a["id"]).collect();
    let (status, body) = send(&app, &conversation, "файлы", &ids).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attachments");
    let (status, body) = send(&app, &conversation, "файлы", &ids[..5]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Neither text nor files.
    let (status, body) = send(&app, &conversation, "  ", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn gps_metadata_is_gone_from_an_uploaded_jpeg() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16];
    jpeg.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let exif = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude55.7558";
    jpeg.extend([0xff, 0xe1]);
    jpeg.extend(((exif.len() + 2) as u16).to_be_bytes());
    jpeg.extend(exif);
    jpeg.extend([0xff, 0xda, 0, 2, 1, 2, 3, 0xff, 0xd9]);
    let image = upload(&app, &conversation, "photo.jpg", "image/jpeg", jpeg).await;
    let key: String = sqlx::query_scalar("SELECT storage_key FROM attachments WHERE id = $1")
        .bind(uuid::Uuid::parse_str(image["id"].as_str().unwrap()).unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let stored = std::fs::read(app.config.data_dir.join("attachments").join(key)).unwrap();
    assert!(!stored.windows(4).any(|w| w == b"Exif"));
    assert!(!stored.windows(11).any(|w| w == b"GPSLatitude"));
    assert!(stored.starts_with(&[0xff, 0xd8]));
}

/// A link as the server signs it.
pub fn signed(app: &TestApp, id: &str, expires: i64, key_secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut key = Hmac::<sha2::Sha256>::new_from_slice(key_secret.as_bytes()).unwrap();
    key.update(b"concierge attachment links");
    let key = key.finalize().into_bytes();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}:{expires}").as_bytes());
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    app.url(&format!("/attachments/{id}?expires={expires}&sig={sig}"))
}

#[tokio::test]
async fn a_signed_link_serves_its_one_file_until_it_expires() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let document = upload(&app, &conversation, "счёт.pdf", "application/pdf", pdf()).await;
    let other = upload(&app, &app.open(None).await, "screen.png", "image/png", png(2, 2)).await;
    let id = document["id"].as_str().unwrap();
    let later = chrono::Utc::now().timestamp() + 300;
    let served = app.client.get(signed(&app, id, later, crate::helpers::SECRET)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let headers = served.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert!(headers["content-disposition"].to_str().unwrap().contains("filename*=UTF-8''%D1%81"));
    assert!(headers["cache-control"].to_str().unwrap().starts_with("private"));
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(served.bytes().await.unwrap().as_ref(), pdf().as_slice());
    // Another id under this signature, a wrong secret, an expired link.
    let moved = signed(&app, id, later, crate::helpers::SECRET).replace(id, other["id"].as_str().unwrap());
    let (status, body) = response(app.client.get(moved).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = response(app.client.get(signed(&app, id, later, "wrong")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let past = chrono::Utc::now().timestamp() - 1;
    let (status, body) =
        response(app.client.get(signed(&app, id, past, crate::helpers::SECRET)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "link_expired");
}
