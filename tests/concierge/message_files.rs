//! Messages carry their files: the owner's routes, the stream and the admin view list each
//! message's attachments with a signed link that opens the file; operators upload files in the
//! console and send them with a reply, which reaches the user's stream; neither side can send
//! the other's uploads.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{Conversation, TestApp, platform_token, response, user_token},
    voice::{pdf, png, upload},
};

fn operator() -> String {
    platform_token(
        json!({ "sub": "op-1", "name": "Ольга Сергеевна", "role": "admin", "exp": crate::helpers::now() + 600 }),
    )
}

async fn admin_upload(
    app: &TestApp,
    conversation: &Conversation,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let sent = app
        .client
        .post(app.url(&format!("/admin/conversations/{}/attachments/", conversation.id)))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    response(sent).await
}

/// The file behind a message's attachment link, fetched as a browser would (no token).
async fn open_link(app: &TestApp, attachment: &Value) -> (StatusCode, Vec<u8>) {
    let url = attachment["url"].as_str().unwrap_or_else(|| panic!("{attachment}"));
    let path = url.strip_prefix("/api/concierge").unwrap_or_else(|| panic!("a path from the site's root: {url}"));
    let got = app.client.get(app.url(path)).send().await.unwrap();
    (got.status(), got.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_message_lists_its_files_with_links_that_open_them() {
    let app = TestApp::spawn().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let image = upload(&app, &conversation, "screen.png", "image/png", png(4, 3)).await;
    let receipt = upload(&app, &conversation, "receipt.pdf", "application/pdf", pdf()).await;
    let (status, posted) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/messages/", conversation.id),
            json!({ "content": "Вот ошибка и чек", "attachment_ids": [image["id"], receipt["id"]] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{posted}");
    let files = posted["attachments"].as_array().unwrap_or_else(|| panic!("{posted}"));
    assert_eq!(files.len(), 2, "{posted}");
    assert_eq!(files[0]["id"], image["id"]);
    assert_eq!(files[0]["kind"], "image");
    assert_eq!(files[0]["file_name"], "screen.png");
    assert_eq!(files[1]["kind"], "pdf");
    assert_eq!(files[1]["content_type"], "application/pdf");
    assert_eq!(files[1]["size_bytes"], pdf().len());
    assert!(files[1]["transcript"].is_null());
    let (status, bytes) = open_link(&app, &files[1]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, pdf());

    // The stream, the history and the detail view carry the same files.
    let event = sse.next_from("user").await;
    assert_eq!(event.data["attachments"].as_array().map(Vec::len), Some(2), "{:?}", event.data);
    let (_, page) = app.get(Some(&conversation.bearer), &format!("/conversations/{}/messages/", conversation.id)).await;
    let listed = page["items"].as_array().unwrap().iter().find(|m| m["id"] == posted["id"]).unwrap().clone();
    assert_eq!(listed["attachments"][0]["id"], image["id"], "{listed}");
    let (status, _) = open_link(&app, &listed["attachments"][0]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, detail) = app.get(Some(&conversation.bearer), &format!("/conversations/{}", conversation.id)).await;
    let shown = detail["messages"].as_array().unwrap().iter().find(|m| m["id"] == posted["id"]).unwrap().clone();
    assert_eq!(shown["attachments"][1]["id"], receipt["id"], "{shown}");
    let (_, admin) = app.get(Some(&operator()), &format!("/admin/conversations/{}", conversation.id)).await;
    let seen = admin["messages"].as_array().unwrap().iter().find(|m| m["id"] == posted["id"]).unwrap().clone();
    assert_eq!(seen["attachments"].as_array().map(Vec::len), Some(2), "{seen}");
    // Messages without files say so.
    let plain = app.say(&conversation, "И ещё вопрос").await;
    assert_eq!(plain["attachments"], json!([]), "{plain}");
}

#[tokio::test]
async fn operators_attach_files_to_a_reply_from_the_console() {
    let app = TestApp::spawn().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    app.say(&conversation, "Где найти чек?").await;
    let mut sse = app.stream(&conversation, None).await;

    let (status, stored) = admin_upload(&app, &conversation, &operator(), "guide.png", png(6, 4)).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["kind"], "image");
    let author: String = sqlx::query_scalar("SELECT author FROM attachments WHERE id = $1::uuid")
        .bind(stored["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(author, "operator");
    // Only admins upload there; the content decides, as for users.
    let (status, _) = admin_upload(&app, &conversation, &conversation.bearer, "x.png", png(2, 2)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = admin_upload(&app, &conversation, &operator(), "x.png", vec![0, 1, 2, 3]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A user cannot send an operator's upload, nor an operator a user's.
    let (status, body) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/messages/", conversation.id),
            json!({ "content": "", "attachment_ids": [stored["id"]] }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_attachment"))
    );
    let users = upload(&app, &conversation, "mine.pdf", "application/pdf", pdf()).await;
    let reply_path = format!("/admin/conversations/{}/reply/", conversation.id);
    let (status, body) =
        app.post(Some(&operator()), &reply_path, json!({ "content": "Вот", "attachment_ids": [users["id"]] })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_attachment"))
    );
    // More ids than a message carries are refused as sent, even repeated ones.
    let six = vec![stored["id"].clone(); 6];
    let (status, body) =
        app.post(Some(&operator()), &reply_path, json!({ "content": "", "attachment_ids": six })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_attachments"))
    );

    // A reply of files alone reaches the user's stream with them.
    let (status, reply) =
        app.post(Some(&operator()), &reply_path, json!({ "content": "", "attachment_ids": [stored["id"]] })).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["attachments"][0]["id"], stored["id"], "{reply}");
    let event = sse.next_from("operator").await;
    assert_eq!(event.data["attachments"][0]["file_name"], "guide.png", "{:?}", event.data);
    let (status, bytes) = open_link(&app, &event.data["attachments"][0]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.starts_with(b"\x89PNG"));
    // Sent once.
    let (status, _) =
        app.post(Some(&operator()), &reply_path, json!({ "content": "", "attachment_ids": [stored["id"]] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A reply with neither text nor files is refused.
    let (status, _) = app.post(Some(&operator()), &reply_path, json!({ "content": " " })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A console reply's files go to the conversation's topic after its text, each as the Bot API
/// method for its kind, captioned with who sent it.
#[tokio::test]
async fn a_console_reply_with_files_reaches_the_topic() {
    use concierge_shared::config::TelegramMode;

    use crate::{fake_telegram::FakeTelegram, telegram};

    let fake = FakeTelegram::start().await;
    let app = telegram::spawn(&fake, TelegramMode::Webhook).await;
    let (conversation, thread) = telegram::waiting_in_topic(&app, &fake, "anna").await;
    let (_, photo) = admin_upload(&app, &conversation, &operator(), "where.png", png(8, 5)).await;
    let (_, guide) = admin_upload(&app, &conversation, &operator(), "guide.pdf", pdf()).await;
    let (status, reply) = app
        .post(
            Some(&operator()),
            &format!("/admin/conversations/{}/reply/", conversation.id),
            json!({ "content": "Смотрите сюда", "attachment_ids": [photo["id"], guide["id"]] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    fake.wait_for("the photo and the document", |f| {
        !f.uploads("sendPhoto").is_empty() && !f.uploads("sendDocument").is_empty()
    })
    .await;
    let (sent, image) = fake.uploads("sendPhoto").remove(0);
    assert_eq!(sent["message_thread_id"].as_i64(), Some(thread), "{sent}");
    assert!(sent["caption"].as_str().unwrap_or_default().contains("where.png"), "{sent}");
    assert!(image.bytes.starts_with(b"\x89PNG"));
    let (_, document) = fake.uploads("sendDocument").remove(0);
    assert_eq!(document.file_name, "guide.pdf");
    assert!(fake.posts_in(thread).iter().any(|post| post.contains("Смотрите сюда")), "{}", fake.summary());
}
