//! Voice messages and files between the widget and Telegram: transcription by a loopback
//! speech-to-text server (the transcript stored, shown live and answered; a failing server
//! retried; a refusal or no server at all asking the user to type, or leaving the voice to the
//! operator), a user's files in the topic (sendPhoto, sendDocument, sendVoice with captions;
//! a file larger than the Bot API takes as a signed link), and an operator's photo, document
//! and voice from the topic on the user's stream, stored as the reply's files (a failed download
//! retried). Files are written as the API writes them, through `shared::attachments::store`.

use std::time::Duration;

use concierge_shared::config::{TelegramMode, TranscribeConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_telegram::{FakeTelegram, group_message, operator_user},
    fake_transcribe::FakeTranscribe,
    helpers::{Conversation, Sse, TestApp, WAIT, user_token, wait_until},
    telegram::{WEBHOOK_SECRET, escalate, telegram_config, thread_of, webhook},
};

// Files as the widget sends them.

/// A PNG of `width` × `height` pixels of one colour (stored, uncompressed deflate blocks).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    // Each row: filter type 0, then the pixels.
    let row: Vec<u8> = std::iter::once(0).chain([30, 120, 200].repeat(width as usize)).collect();
    let raw = row.repeat(height as usize);
    // zlib: a header, stored blocks of at most 65535 bytes, Adler-32.
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (index, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(index == blocks.len() - 1));
        zlib.extend((block.len() as u16).to_le_bytes());
        zlib.extend((!(block.len() as u16)).to_le_bytes());
        zlib.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// An OGG/Opus file's first pages: what a recording starts with, enough to be known as voice.
pub fn ogg_opus() -> Vec<u8> {
    fn page(out: &mut Vec<u8>, header_type: u8, sequence: u32, packet: &[u8]) {
        let start = out.len();
        out.extend(b"OggS");
        out.push(0);
        out.push(header_type);
        out.extend(0u64.to_le_bytes());
        out.extend(0x1234_5678u32.to_le_bytes());
        out.extend(sequence.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.push(1);
        out.push(packet.len() as u8);
        out.extend(packet);
        // OGG's CRC (polynomial 0x04c11db7, not reflected) over the page with the field zeroed.
        let mut crc = 0u32;
        for byte in &out[start..] {
            crc ^= u32::from(*byte) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
            }
        }
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
    }
    let mut head = b"OpusHead".to_vec();
    head.extend([1, 1]);
    head.extend(312u16.to_le_bytes());
    head.extend(48_000u32.to_le_bytes());
    head.extend(0u16.to_le_bytes());
    head.push(0);
    let mut tags = b"OpusTags".to_vec();
    tags.extend(8u32.to_le_bytes());
    tags.extend(b"concierge");
    tags.extend(0u32.to_le_bytes());
    let mut out = Vec::new();
    page(&mut out, 2, 0, &head);
    page(&mut out, 0, 1, &tags);
    // A silent Opus frame (TOC 0xf8: CELT, 20 ms, one frame), a few times over.
    for sequence in 2..12 {
        page(&mut out, 0, sequence, &[0xf8, 0xff, 0xfe]);
    }
    out
}

/// A small PDF.
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

// A user's message with files, written as the API writes it (the message, its files, its
// decision job), the files stored through `shared::attachments::store`.

/// Post a message with files; returns the message's id.
pub async fn say_with(app: &TestApp, conversation: &Conversation, content: &str, files: &[(&str, Vec<u8>)]) -> String {
    use concierge_shared::{
        ConversationId, MessageRole,
        attachments::{self, NewAttachment},
        db::messages::{self, NewMessage},
        jobs::{self, ProcessMessage},
        storage::Storage,
    };
    let conversation_id: ConversationId = conversation.id.parse().unwrap();
    let storage = Storage::local(&app.config.data_dir);
    let mut tx = app.pool.begin().await.unwrap();
    let message =
        messages::append(&mut tx, conversation_id, NewMessage::new(MessageRole::User, content)).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    for (name, bytes) in files {
        let new = NewAttachment {
            conversation_id,
            message_id: Some(message.id),
            author: "user",
            file_name: name,
            declared_type: None,
            bytes: bytes.clone().into(),
        };
        attachments::store(&app.pool, &storage, new, app.config.max_attachment_bytes).await.unwrap();
    }
    let mut tx = app.pool.begin().await.unwrap();
    jobs::enqueue(&mut tx, &ProcessMessage { message_id: message.id }, 3).await.unwrap();
    tx.commit().await.unwrap();
    message.id.to_string()
}

// The API, as the widget calls it.

/// Send a file to the conversation's upload route as its owner; returns the answer.
pub async fn try_upload(
    app: &TestApp,
    conversation: &Conversation,
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()).mime_str(content_type).unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = app
        .client
        .post(app.url(&format!("/conversations/{}/attachments/", conversation.id)))
        .bearer_auth(&conversation.bearer)
        .multipart(form)
        .send()
        .await
        .unwrap();
    crate::helpers::response(response).await
}

/// Upload a file to the conversation; returns the attachment.
pub async fn upload(
    app: &TestApp,
    conversation: &Conversation,
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Value {
    let (status, body) = try_upload(app, conversation, file_name, content_type, bytes).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// A voice message (an OGG/Opus recording, no text); returns its id.
async fn send_voice(app: &TestApp, conversation: &Conversation) -> String {
    say_with(app, conversation, "", &[("voice.ogg", ogg_opus())]).await
}

/// The stored attachments of the conversation: (author, kind, file name, transcript, bytes).
async fn stored_files(
    app: &TestApp,
    conversation: &Conversation,
) -> Vec<(String, String, String, Option<String>, Vec<u8>)> {
    let rows: Vec<(String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT author, kind, file_name, transcript, storage_key FROM attachments
         WHERE conversation_id = $1::uuid ORDER BY created_at, id",
    )
    .bind(&conversation.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let storage = concierge_shared::storage::Storage::local(&app.config.data_dir);
    let mut files = Vec::new();
    for (author, kind, name, transcript, key) in rows {
        files.push((author, kind, name, transcript, storage.get(&key).await.unwrap().to_vec()));
    }
    files
}

/// The next event on `sse` that satisfies `check`.
async fn event_where(sse: &mut Sse, what: &str, check: impl Fn(&str, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {what} on the stream");
        let event = sse.next_within(left).await;
        if check(&event.event, &event.data) {
            return event.data;
        }
    }
}

async fn spawn_transcribing(fake: &FakeTranscribe) -> TestApp {
    let mut app = TestApp::spawn_with(|config| config.transcribe = Some(TranscribeConfig::new(&fake.url))).await;
    app.start_worker().await;
    app
}

#[tokio::test]
async fn a_voice_message_is_transcribed_shown_under_it_and_answered() {
    let stt = FakeTranscribe::start("Как оплатить подписку?").await;
    let app = spawn_transcribing(&stt).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let id = send_voice(&app, &conversation).await;

    // The voice message first, then an `edit` of it when its transcript is there (live).
    event_where(&mut sse, "the voice message", |kind, data| kind == "message" && data["id"] == id.as_str()).await;
    event_where(&mut sse, "the transcript's edit", |kind, data| kind == "edit" && data["id"] == id.as_str()).await;
    let answer = event_where(&mut sse, "the answer", |_, data| data["role"] == "assistant").await;
    assert_eq!(answer["reply_to"], id.as_str(), "{answer}");
    assert!(
        answer["content"].as_str().unwrap().to_lowercase().contains("оплат"),
        "answered on the transcript: {answer}"
    );

    let requests = stt.requests();
    assert_eq!(requests.len(), 1, "transcribed once");
    assert_eq!(requests[0].model, "whisper-1");
    assert!(requests[0].authorization.is_none(), "a local server gets no key");
    assert!(requests[0].file.file_name.ends_with(".ogg"), "{:?}", requests[0].file.file_name);
    assert_eq!(requests[0].file.bytes, ogg_opus(), "the recording as uploaded");

    // The transcript stays with the voice message.
    let files = stored_files(&app, &conversation).await;
    assert_eq!(files[0].3.as_deref(), Some("Как оплатить подписку?"), "{:?}", files[0].3);
    let counted = app.count("SELECT count(*) FROM messages WHERE reply_to IS NOT NULL").await;
    assert_eq!(counted, 1, "one reply");
}

#[tokio::test]
async fn a_failing_transcription_server_is_retried_and_a_later_message_waits_its_turn() {
    let stt = FakeTranscribe::start("Как оплатить подписку?").await;
    stt.fail_next(2);
    let app = spawn_transcribing(&stt).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&conversation, None).await;
    let voice = send_voice(&app, &conversation).await;
    let text = app.say(&conversation, "Спасибо!").await;

    let first =
        event_where(&mut sse, "the first answer", |kind, data| kind == "message" && data["role"] == "assistant").await;
    assert_eq!(first["reply_to"], voice.as_str(), "the voice message is answered first: {first}");
    let second =
        event_where(&mut sse, "the second answer", |kind, data| kind == "message" && data["role"] == "assistant").await;
    assert_eq!(second["reply_to"], text["id"], "{second}");
    assert!(stt.requests().len() >= 3, "retried after two failures: {}", stt.requests().len());
    let transcript: Option<String> = sqlx::query_scalar("SELECT transcript FROM attachments WHERE kind = 'voice'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(transcript.as_deref(), Some("Как оплатить подписку?"));
}

#[tokio::test]
async fn a_voice_message_nobody_can_transcribe_gets_a_polite_request_to_type() {
    // A server that refuses the audio, and no server at all.
    let stt = FakeTranscribe::start("").await;
    stt.refuse_all();
    let refusing = spawn_transcribing(&stt).await;
    let mut without = TestApp::spawn().await;
    without.start_worker().await;
    for app in [&refusing, &without] {
        let conversation = app.open(Some(&user_token("anna"))).await;
        let mut sse = app.stream(&conversation, None).await;
        let voice = send_voice(app, &conversation).await;
        let reply =
            event_where(&mut sse, "the reply", |kind, data| kind == "message" && data["role"] == "assistant").await;
        assert_eq!(reply["reply_to"], voice.as_str());
        assert!(reply["content"].as_str().unwrap().contains("текстом"), "asks to type: {reply}");
    }
    assert_eq!(stt.requests().len(), 1, "a refusal is not retried");
    let failed = refusing.count("SELECT count(*) FROM attachments WHERE transcript_failed_at IS NOT NULL").await;
    assert_eq!(failed, 1, "the transcription is given up");
}

async fn spawn_with_telegram(
    fake: &FakeTelegram,
    adjust: impl FnOnce(&mut concierge_shared::config::Config),
) -> TestApp {
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

#[tokio::test]
async fn a_users_files_reach_the_topic_as_photo_document_and_voice_with_their_caption() {
    let fake = FakeTelegram::start().await;
    // No transcription: a voice message in a conversation with a person goes to the operator.
    let app = spawn_with_telegram(&fake, |_| {}).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    say_with(&app, &conversation, "Вот ошибка и чек", &[("screen.png", png(40, 30)), ("чек.pdf", pdf())]).await;
    send_voice(&app, &conversation).await;

    fake.wait_for("a photo, a document and a voice message", |fake| {
        !fake.uploads("sendPhoto").is_empty()
            && !fake.uploads("sendDocument").is_empty()
            && !fake.uploads("sendVoice").is_empty()
    })
    .await;
    let (photo, photo_file) = fake.uploads("sendPhoto").remove(0);
    assert_eq!(photo["message_thread_id"], thread, "{photo}");
    assert_eq!(photo["caption"], "👤 Анна: Вот ошибка и чек", "the text is the first file's caption");
    assert!(photo_file.bytes.starts_with(b"\x89PNG"), "the image itself");
    let (document, document_file) = fake.uploads("sendDocument").remove(0);
    assert_eq!(document["caption"], "👤 Анна", "later files say who sent them: {document}");
    assert_eq!(document_file.file_name, "чек.pdf");
    assert_eq!(document_file.bytes, pdf());
    let (voice, voice_file) = fake.uploads("sendVoice").remove(0);
    assert_eq!(voice["caption"], "👤 Анна", "{voice}");
    assert_eq!(voice_file.bytes, ogg_opus());
    assert_eq!(voice_file.content_type, None, "teloxide names no type: the file name says it");
    // The text went as the caption, not as a message of its own; nobody answered for the bot.
    assert!(!fake.posts_in(thread).iter().any(|post| post.contains("Вот ошибка и чек")));
    let bot_replies = app
        .count("SELECT count(*) FROM messages m JOIN attachments a ON a.message_id = m.id AND a.kind = 'voice' JOIN messages r ON r.reply_to = m.id")
        .await;
    assert_eq!(bot_replies, 0, "the operator answers the voice message");
}

#[tokio::test]
async fn a_long_text_goes_before_its_files_and_a_file_too_large_for_the_bot_api_as_a_link() {
    let fake = FakeTelegram::start().await;
    let public = "https://support.example.com";
    let app = spawn_with_telegram(&fake, |config| {
        let telegram = config.telegram.as_mut().unwrap();
        telegram.public_url = Some(public.into());
        // Smaller than the PDF: it goes as a link.
        telegram.upload_limits = (100_000, 100);
    })
    .await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let long = "Очень подробно. ".repeat(80);
    say_with(&app, &conversation, &long, &[("чек.pdf", pdf())]).await;
    let receipt: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM attachments WHERE kind = 'pdf'").fetch_one(&app.pool).await.unwrap();

    fake.wait_for("the link", |fake| fake.posts_in(thread).iter().any(|post| post.contains("чек.pdf"))).await;
    let posts = fake.posts_in(thread);
    let text_at = posts.iter().position(|post| post.contains("Очень подробно")).expect("the text as its own post");
    let link_at = posts.iter().position(|post| post.contains("чек.pdf")).unwrap();
    assert!(text_at < link_at, "the text first: {posts:?}");
    let link = &posts[link_at];
    assert!(fake.uploads("sendDocument").is_empty(), "nothing uploaded");
    let url = link.split_whitespace().find(|word| word.starts_with(public)).expect("a link").to_owned();
    let expected = format!("{public}/api/concierge/attachments/{receipt}?expires=");
    assert!(url.starts_with(&expected) && url.contains("&sig="), "a signed link to this file: {url}");
    let expires: i64 = url.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now().timestamp()) / 86_400;
    assert!((6..=7).contains(&days), "valid for a week: {days} days");
}

/// An update with an operator's file in the topic: `media` is the message's photo, document or
/// voice field.
fn file_update(update_id: i64, message_id: i64, thread: i64, media: Value, caption: Option<&str>) -> Value {
    let mut message = group_message(message_id, Some(thread), operator_user());
    for (key, value) in media.as_object().unwrap() {
        message[key] = value.clone();
    }
    if let Some(caption) = caption {
        message["caption"] = json!(caption);
    }
    json!({ "update_id": update_id, "message": message })
}

fn meta(file_id: &str, size: usize) -> Value {
    json!({ "file_id": file_id, "file_unique_id": format!("u-{file_id}"), "file_size": size })
}

#[tokio::test]
async fn an_operators_photo_document_and_voice_reach_the_users_stream_as_the_replys_files() {
    let fake = FakeTelegram::start().await;
    let app = spawn_with_telegram(&fake, |_| {}).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let mut sse = app.stream(&conversation, None).await;

    let (photo, document, voice) = (png(64, 48), pdf(), ogg_opus());
    fake.add_file("photo-small", png(8, 6));
    fake.add_file("photo-large", photo.clone());
    fake.add_file("doc-1", document.clone());
    fake.add_file("voice-1", voice.clone());
    // The first download fails: the update is handled again.
    fake.behaviour.fail_downloads.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut small = meta("photo-small", 100);
    small["width"] = json!(8);
    small["height"] = json!(6);
    let mut large = meta("photo-large", photo.len());
    large["width"] = json!(64);
    large["height"] = json!(48);
    let updates = [
        file_update(9001, 501, thread, json!({ "photo": [small, large] }), Some("Вот так должно быть")),
        file_update(
            9002,
            502,
            thread,
            json!({ "document": { "file_name": "инструкция.pdf", "mime_type": "application/pdf", "file_id": "doc-1", "file_unique_id": "u-doc-1", "file_size": document.len() } }),
            None,
        ),
        file_update(
            9003,
            503,
            thread,
            json!({ "voice": { "duration": 1, "mime_type": "audio/ogg", "file_id": "voice-1", "file_unique_id": "u-voice-1", "file_size": voice.len() } }),
            None,
        ),
    ];
    for update in &updates {
        assert_eq!(webhook(&app, Some(WEBHOOK_SECRET), update).await, StatusCode::OK);
    }
    // Three operator replies reach the user's stream, the photo's with its caption.
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(
            event_where(&mut sse, "an operator's reply", |kind, data| kind == "message" && data["role"] == "operator")
                .await,
        );
    }
    assert_eq!(replies[0]["content"], "Вот так должно быть", "the caption is the text: {:?}", replies[0]);
    wait_until("the files attached", WAIT, async || {
        app.count("SELECT count(*) FROM attachments WHERE author = 'operator' AND message_id IS NOT NULL").await == 3
    })
    .await;
    let files = stored_files(&app, &conversation).await;
    let kinds: Vec<&str> = files.iter().map(|f| f.1.as_str()).collect();
    assert_eq!(kinds, ["image", "pdf", "voice"], "in order");
    assert!(files[0].4.starts_with(b"\x89PNG"), "the photo's largest size");
    assert_eq!(files[0].4.len(), photo.len());
    assert_eq!((files[1].2.as_str(), &files[1].4), ("инструкция.pdf", &document));
    assert_eq!(files[2].4, voice);
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attachments a JOIN messages m ON m.id = a.message_id WHERE m.role = 'operator'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(linked, 3, "each file belongs to its reply");
    let downloads: Vec<_> = fake.calls().into_iter().filter(|c| c.method == "download").map(|c| c.status).collect();
    assert_eq!(downloads.iter().filter(|s| **s == 500).count(), 1, "{downloads:?}");
    assert!(fake.accepted("getFile").iter().any(|body| body["file_id"] == "photo-large"), "the largest size");
    // Nobody was told the file was refused.
    assert!(!fake.posts_in(thread).iter().any(|post| post.contains("не передан")));
}

#[tokio::test]
async fn a_sticker_from_an_operator_gets_a_clear_word_and_nothing_reaches_the_user() {
    let fake = FakeTelegram::start().await;
    let app = spawn_with_telegram(&fake, |_| {}).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    escalate(&app, &conversation).await;
    let thread = thread_of(&app, &conversation).await;
    fake.wait_for("the card", |f| f.posts_in(thread).len() >= 2).await;
    let sticker = json!({ "sticker": {
        "file_id": "st-1", "file_unique_id": "u-st-1", "type": "regular", "width": 512, "height": 512,
        "is_animated": false, "is_video": false, "file_size": 100 } });
    assert_eq!(
        webhook(&app, Some(WEBHOOK_SECRET), &file_update(9101, 601, thread, sticker, None)).await,
        StatusCode::OK
    );
    fake.wait_for("the word", |fake| fake.posts_in(thread).iter().any(|post| post.contains("стикер"))).await;
    let operator_messages = app.count("SELECT count(*) FROM messages WHERE role = 'operator'").await;
    assert_eq!(operator_messages, 0);
    wait_until("the update handled", Duration::from_secs(5), async || {
        app.count("SELECT count(*) FROM telegram_updates WHERE outcome LIKE 'refused%'").await > 0
    })
    .await;
}

/// The last user message of a model request: its content as sent.
fn user_content(request: &Value) -> Value {
    request["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "user").unwrap()["content"].clone()
}

#[tokio::test]
async fn images_go_to_a_model_that_reads_them_and_are_named_to_one_that_does_not() {
    use crate::fake_llm::{FakeLlm, Reply, tool_reply};
    for vision in [true, false] {
        let llm = FakeLlm::start().await;
        llm.respond_with(|_| Reply::Json(tool_reply("clarify", json!({ "text": "Что именно на экране не так?" }))));
        let url = llm.url.clone();
        let mut app = TestApp::spawn_with(move |config| {
            config.ai.provider = concierge_shared::config::Provider::Openai;
            config.ai.base_url = url;
            config.ai.model = "vision-model".into();
            config.ai.api_key = Some("test-key".into());
            config.ai.stream = false;
            config.ai.vision = vision;
        })
        .await;
        app.start_worker().await;
        let conversation = app.open(Some(&user_token("anna"))).await;
        let mut sse = app.stream(&conversation, None).await;
        say_with(&app, &conversation, "Что это за ошибка?", &[("screen.png", png(20, 10))]).await;
        event_where(&mut sse, "the reply", |kind, data| kind == "message" && data["role"] == "assistant").await;
        let content = user_content(&llm.requests()[0]);
        if vision {
            let parts = content.as_array().expect("content parts");
            assert_eq!(parts[0]["type"], "text");
            assert!(parts[0]["text"].as_str().unwrap().contains("Что это за ошибка?"));
            assert_eq!(parts[1]["type"], "image_url", "{content}");
            assert!(parts[1]["image_url"]["url"].as_str().unwrap().starts_with("data:image/png;base64,iVBORw0KGgo"));
        } else {
            let text = content.as_str().expect("plain text");
            assert!(
                text.contains("Что это за ошибка?") && text.contains("screenshot") && text.contains("screen.png"),
                "{text}"
            );
        }
    }
}
