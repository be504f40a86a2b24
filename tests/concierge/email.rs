//! Replies by email outside duty hours: the offer in the conversation's JSON, the user's choice,
//! and operators' replies reaching a loopback SMTP server the test runs (through lettre, as in
//! production; only the server's address differs).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use base64::Engine as _;
use concierge_shared::config::EmailConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{Conversation, TestApp, WAIT, platform_token, user_token, wait_until};

/// One email as the SMTP server received it.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after DATA: headers, a blank line, the body.
    pub data: String,
}

impl Mail {
    /// The plain-text body (the sender encodes it in base64).
    pub fn text(&self) -> String {
        let (_, body) = self.data.split_once("\r\n\r\n").expect("headers, then a body");
        let bytes = base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).expect("base64");
        String::from_utf8(bytes).expect("UTF-8 text")
    }
}

/// A loopback SMTP server that speaks just enough SMTP (220, EHLO/HELO, MAIL, RCPT, DATA, `.`,
/// RSET, NOOP, QUIT) and records every message it accepts.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Messages still to refuse with a temporary failure (451) after DATA.
    refusals: Arc<AtomicUsize>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mails, refusals) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
        let (accepted, refused) = (mails.clone(), refusals.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mails, refusals) = (accepted.clone(), refused.clone());
                tokio::spawn(async move {
                    let _ = session(stream, mails, refusals).await;
                });
            }
        });
        Self { port, mails, refusals }
    }

    /// Settings that send through this server.
    pub fn config(&self) -> EmailConfig {
        EmailConfig {
            smtp_url: format!("smtp://127.0.0.1:{}", self.port).into(),
            from: "Lectio <help@lectio.ru>".parse().unwrap(),
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Answer the next `count` messages with a temporary failure.
    pub fn refuse_next(&self, count: usize) {
        self.refusals.store(count, Ordering::SeqCst);
    }
}

async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>, refusals: Arc<AtomicUsize>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let address = || command.split_once(':').map(|(_, rest)| rest.trim().to_owned()).unwrap_or_default();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                mail.from = address();
                b"250 OK\r\n"
            }
            "RCPT" => {
                mail.to.push(address());
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-stuffing: a line starting with a dot was sent with one more.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                mail.data = data;
                let taken = std::mem::take(&mut mail);
                let refuse = refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if refuse {
                    b"451 try again later\r\n"
                } else {
                    mails.lock().unwrap().push(taken);
                    b"250 queued\r\n"
                }
            }
            "RSET" => {
                mail = Mail::default();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

fn operator() -> String {
    platform_token(
        json!({ "sub": "op-1", "name": "Ольга Сергеевна", "role": "admin", "exp": crate::helpers::now() + 600 }),
    )
}

/// The API and workers, sending email through `sink`.
async fn app_with(sink: &SmtpSink) -> TestApp {
    let config = sink.config();
    let mut app = TestApp::spawn_with(move |c| c.email = Some(config)).await;
    app.start_worker().await;
    app
}

/// The user asks for a person; the hand-over notice is dated `at` (UTC), so the test decides
/// whether operators were on duty.
async fn hand_over_at(app: &TestApp, conversation: &Conversation, at: &str) {
    app.write_first(conversation).await;
    let (status, body) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/escalate", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dated = sqlx::query(
        "UPDATE messages SET created_at = $2::timestamptz
         WHERE conversation_id = $1::uuid AND metadata->>'decision' = 'escalate'",
    )
    .bind(&conversation.id)
    .bind(at)
    .execute(&app.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(dated, 1);
}

/// 23:00 in Moscow, and 13:00.
const NIGHT: &str = "2026-11-25T20:00:00Z";
const DAY: &str = "2026-11-25T10:00:00Z";

async fn email_reply(app: &TestApp, conversation: &Conversation) -> Value {
    let (status, detail) = app.get(Some(&conversation.bearer), &format!("/conversations/{}", conversation.id)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    detail["email_reply"].clone()
}

async fn choose(app: &TestApp, conversation: &Conversation, enabled: bool) -> (StatusCode, Value) {
    app.post(
        Some(&conversation.bearer),
        &format!("/conversations/{}/email-reply", conversation.id),
        json!({ "enabled": enabled }),
    )
    .await
}

async fn reply(app: &TestApp, conversation: &Conversation, text: &str) {
    let path = format!("/admin/conversations/{}/reply", conversation.id);
    let (status, body) = app.post(Some(&operator()), &path, json!({ "content": text })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn an_operators_reply_reaches_the_mailbox_of_a_user_who_asked_off_duty() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    // No hand-over yet: nothing to offer.
    assert_eq!(
        email_reply(&app, &conversation).await,
        json!({ "available": false, "enabled": false, "address": null })
    );

    hand_over_at(&app, &conversation, NIGHT).await;
    assert_eq!(
        email_reply(&app, &conversation).await,
        json!({ "available": true, "enabled": false, "address": "anna@example.com" })
    );
    let (status, chosen) = choose(&app, &conversation, true).await;
    assert_eq!(status, StatusCode::OK, "{chosen}");
    assert_eq!(chosen, json!({ "available": true, "enabled": true, "address": "anna@example.com" }));

    reply(&app, &conversation, "Доброе утро! Деньги вернутся на карту за 3–5 рабочих дней.").await;
    let mail = wait_until("the reply's email", WAIT, async || sink.mails().first().cloned()).await;
    assert_eq!(mail.to, vec!["<anna@example.com>"]);
    assert_eq!(mail.from, "<help@lectio.ru>");
    assert!(mail.data.contains("To: anna@example.com"), "{}", mail.data);
    let text = mail.text();
    assert!(text.contains("Ольга из поддержки Lectio"), "{text}");
    assert!(text.contains("Доброе утро! Деньги вернутся на карту за 3–5 рабочих дней."), "{text}");
    assert!(text.contains("Продолжить разговор: https://lectio.ru/app"), "{text}");
    // The operator's surname stays out, as in the chat.
    assert!(!text.contains("Сергеевна"), "{text}");
    let emailed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1::uuid AND emailed_at IS NOT NULL")
            .bind(&conversation.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(emailed, 1);
    let metrics = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("concierge_emails_total{outcome=\"sent\"}"), "{metrics}");

    // The user stops it: the next reply stays in the chat.
    let (status, chosen) = choose(&app, &conversation, false).await;
    assert_eq!(status, StatusCode::OK, "{chosen}");
    assert_eq!(chosen["enabled"], false);
    reply(&app, &conversation, "Напишите, если деньги не придут.").await;
    app.wait_for_idle_queue().await;
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn no_email_without_the_users_choice_or_for_a_hand_over_on_duty() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;

    // Off duty, but the user did not ask.
    let silent = app.open(Some(&user_token("anna"))).await;
    hand_over_at(&app, &silent, NIGHT).await;
    reply(&app, &silent, "Ответ только в чате.").await;

    // On duty: no offer, and asking is refused.
    let daytime = app.open(Some(&user_token("boris"))).await;
    hand_over_at(&app, &daytime, DAY).await;
    assert_eq!(email_reply(&app, &daytime).await, json!({ "available": false, "enabled": false, "address": null }));
    let (status, refused) = choose(&app, &daytime, true).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "not_waiting_off_duty");
    reply(&app, &daytime, "Операторы на связи, ответ здесь.").await;

    app.wait_for_idle_queue().await;
    assert!(sink.mails().is_empty(), "{:?}", sink.mails());
    let emailed: i64 = app.count("SELECT count(*) FROM messages WHERE emailed_at IS NOT NULL").await;
    assert_eq!(emailed, 0);
}

#[tokio::test]
async fn a_temporary_smtp_failure_is_retried_until_the_email_goes_out() {
    let sink = SmtpSink::start().await;
    let app = app_with(&sink).await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    hand_over_at(&app, &conversation, NIGHT).await;
    let (status, _) = choose(&app, &conversation, true).await;
    assert_eq!(status, StatusCode::OK);
    sink.refuse_next(1);
    reply(&app, &conversation, "Проверили: платёж прошёл.").await;
    let mail = wait_until("the email after a retry", WAIT, async || sink.mails().first().cloned()).await;
    assert!(mail.text().contains("Проверили: платёж прошёл."));
    app.wait_for_idle_queue().await;
    assert_eq!(sink.mails().len(), 1, "sent once");
}

#[tokio::test]
async fn the_choice_is_the_owners_and_bad_input_is_refused() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with({
        let config = sink.config();
        move |c| c.email = Some(config)
    })
    .await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    hand_over_at(&app, &conversation, NIGHT).await;
    let path = format!("/conversations/{}/email-reply", conversation.id);

    // Someone else's conversation, or one that does not exist, is not found.
    let (status, body) = app.post(Some(&user_token("boris")), &path, json!({ "enabled": true })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app
        .post(
            Some(&conversation.bearer),
            &format!("/conversations/{}/email-reply", uuid::Uuid::new_v4()),
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.post(None, &path, json!({ "enabled": true })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) =
        app.post(Some(&conversation.bearer), "/conversations/not-a-uuid/email-reply", json!({ "enabled": true })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    for bad in [json!({}), json!({ "enabled": "yes" }), json!({ "enabled": true, "address": "x@example.com" })] {
        let (status, body) = app.post(Some(&conversation.bearer), &path, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    }
    let raw = app.client.post(app.url(&path)).bearer_auth(&conversation.bearer).body("enabled=1");
    let (status, body) = crate::helpers::response(raw.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // A visitor, or a token without a usable address, has nowhere to send to.
    let visitor = app.open(None).await;
    hand_over_at(&app, &visitor, NIGHT).await;
    let (status, body) = choose(&app, &visitor, true).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("no_email")), "{body}");
    let no_address = platform_token(
        json!({ "sub": "vera", "name": "Вера", "email": "vera", "role": "user", "exp": crate::helpers::now() + 600 }),
    );
    let vera = app.open(Some(&no_address)).await;
    hand_over_at(&app, &vera, NIGHT).await;
    assert_eq!(email_reply(&app, &vera).await["available"], false);
    let (status, body) = choose(&app, &vera, true).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("no_email")), "{body}");

    // Once closed, nothing more is offered; stopping is always possible.
    let (status, _) =
        app.post(Some(&conversation.bearer), &format!("/conversations/{}/close", conversation.id), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = choose(&app, &conversation, true).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conversation_closed")), "{body}");
    let (status, body) = choose(&app, &conversation, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without SMTP the offer never stands.
    let plain = TestApp::spawn().await;
    let anna = plain.open(Some(&user_token("anna"))).await;
    hand_over_at(&plain, &anna, NIGHT).await;
    assert_eq!(email_reply(&plain, &anna).await, json!({ "available": false, "enabled": false, "address": null }));
    let (status, body) = choose(&plain, &anna, true).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_not_configured")),
        "{body}"
    );
}

#[tokio::test]
async fn a_reply_from_the_telegram_topic_is_emailed_too() {
    use concierge_shared::config::TelegramMode;

    use crate::{
        fake_telegram::{FakeTelegram, operator_user, text_update},
        telegram::{WEBHOOK_SECRET, telegram_config},
    };

    let (sink, fake) = (SmtpSink::start().await, FakeTelegram::start().await);
    let (email, telegram) = (sink.config(), telegram_config(&fake, TelegramMode::Webhook));
    let mut app = TestApp::spawn_with(move |c| {
        c.email = Some(email);
        c.telegram = Some(telegram);
        c.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    app.start_worker().await;
    let conversation = app.open(Some(&user_token("anna"))).await;
    hand_over_at(&app, &conversation, NIGHT).await;
    let (status, _) = choose(&app, &conversation, true).await;
    assert_eq!(status, StatusCode::OK);
    let thread = wait_until("a topic for the conversation", WAIT, async || {
        sqlx::query_scalar::<_, Option<i32>>("SELECT thread_id FROM telegram_topics WHERE conversation_id = $1::uuid")
            .bind(&conversation.id)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .flatten()
    })
    .await;

    let update = text_update(1, 7001, i64::from(thread), operator_user(), "Утром вернули деньги, проверьте карту.");
    let sent = app
        .client
        .post(app.url("/telegram/webhook/"))
        .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    let mail = wait_until("the Telegram reply's email", WAIT, async || sink.mails().first().cloned()).await;
    let text = mail.text();
    assert!(text.contains("Ольга из поддержки Lectio"), "{text}");
    assert!(text.contains("Утром вернули деньги, проверьте карту."), "{text}");
}
