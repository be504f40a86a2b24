//! The widget and the admin console in headless Chromium, against the all-in-one binary run as
//! a process (demo site, demo platform, the fake Bot API standing in for Telegram). One test
//! plays the stories in order, in one browser against one system; a failure names its story
//! (and leaves a screenshot of it).
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs; the tests install nothing. Without them the stories are skipped with a note,
//! except in CI (`CI=true`), where that is a failure.

use std::{io::Write, panic::AssertUnwindSafe, path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{
    fake_telegram::{CHAT_ID, FakeTelegram, OPERATOR_ID, TOKEN, operator_user, text_update},
    helpers::{SECRET, fresh_database, knowledge_dir, user_token, wait_until},
};

const WEBHOOK_SECRET: &str = "browser-webhook-secret-42";
const ADMIN_TOKEN: &str = "browser-admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

/// JavaScript helpers to reach into the widget's shadow root.
const PRELUDE: &str = r#"
const root = () => { const host = document.querySelector('#lectio-concierge'); return host && host.shadowRoot; };
const q = (selector) => { const r = root(); return r ? r.querySelector(selector) : null; };
const qa = (selector) => { const r = root(); return r ? Array.from(r.querySelectorAll(selector)) : []; };
const messages = () => qa('[data-testid=message]').map((m) => ({
  role: m.dataset.role, id: m.dataset.id || null, seq: m.dataset.seq ? Number(m.dataset.seq) : null,
  text: m.textContent, links: Array.from(m.querySelectorAll('a')).map((a) => a.getAttribute('href')),
  images: m.querySelectorAll('img').length,
}));
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn on_path(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether Chromium and chromedriver are here; in CI (`CI=true`) they must be.
fn chromium_available() -> bool {
    let missing: Vec<&str> = ["chromium", "chromedriver"].into_iter().filter(|program| !on_path(program)).collect();
    if missing.is_empty() {
        return true;
    }
    let note = format!(
        "the browser stories need {} (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{note}; in CI (CI=true) they must be here");
    }
    // Straight to the terminal: the test harness keeps what `eprintln!` says of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {note}");
    false
}

struct Browser {
    client: Client,
    _driver: Child,
}

impl Browser {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A browser with more of Chromium's switches (a fake microphone, say).
    async fn start_with(extra: &[String]) -> Self {
        // Several TLS backends are linked in; the driver connection (plain HTTP) needs one chosen.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        let mut args: Vec<String> =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
                .map(String::from)
                .to_vec();
        args.extend_from_slice(extra);
        let capabilities: serde_json::Map<String, Value> =
            serde_json::from_value(json!({ "goog:chromeOptions": { "args": args } })).unwrap();
        let driver_url = format!("http://127.0.0.1:{port}");
        let client = wait_until("chromedriver to start", WAIT, async || {
            ClientBuilder::rustls().expect("a TLS setup").capabilities(capabilities.clone()).connect(&driver_url).await
        })
        .await;
        Self { client, _driver: driver }
    }

    async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        self.client.execute(&format!("{PRELUDE}\n{body}"), args).await.unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Wait until `body` returns something truthy; returns it.
    async fn until(&self, what: &str, body: &str, args: Vec<Value>) -> Value {
        // One round trip a check: the value, and what the widget shows for the message on timeout.
        let script = format!("const value = (() => {{ {body} }})(); return {{ value, seen: messages() }};");
        wait_until(what, WAIT, async || {
            let checked = self.js(&script, args.clone()).await;
            let truthy = match &checked["value"] {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Array(a) => !a.is_empty(),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy { Ok(checked["value"].clone()) } else { Err(format!("the widget shows {:#}", checked["seen"])) }
        })
        .await
    }

    async fn open_widget(&self) {
        self.until("the launcher", "return !!q('[data-testid=launcher]');", vec![]).await;
        self.js(
            "const panel = q('[data-testid=panel]'); if (panel.hidden) q('[data-testid=launcher]').click(); return true;",
            vec![],
        )
        .await;
        self.until("the open panel", "return !q('[data-testid=panel]').hidden;", vec![]).await;
    }

    async fn say(&self, text: &str) {
        self.js(
            "const input = q('[data-testid=input]'); input.value = arguments[0];
             input.dispatchEvent(new Event('input', { bubbles: true })); q('[data-testid=send]').click(); return true;",
            vec![json!(text)],
        )
        .await;
    }

    async fn messages(&self) -> Vec<Value> {
        self.js("return messages();", vec![]).await.as_array().cloned().unwrap_or_default()
    }

    async fn screenshot(&self, name: &str) {
        self.try_screenshot(name).await.unwrap_or_else(|error| panic!("screenshot {name}: {error}"));
    }

    async fn try_screenshot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), png)?;
        Ok(())
    }
}

/// A JSON document from the API, as `token`'s holder sees it.
async fn get_json(http: &reqwest::Client, url: String, token: impl std::fmt::Display) -> Value {
    http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// The all-in-one binary with the demo site, Telegram pointed at the fake.
async fn start_concierge(fake: &FakeTelegram) -> (Child, String) {
    start_concierge_with(fake, &[]).await
}

/// [`start_concierge`] with more settings.
async fn start_concierge_with(fake: &FakeTelegram, settings: &[(&str, &str)]) -> (Child, String) {
    let database_url = fresh_database().await;
    let port = free_port();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{port}"));
    let child = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .env("DATABASE_URL", &database_url)
        .env("CONCIERGE_BIND", format!("127.0.0.1:{port}"))
        .env("CONCIERGE_JWT_SECRET", SECRET)
        .env("CONCIERGE_DATA_DIR", &data_dir)
        .env("CONCIERGE_KNOWLEDGE_DIR", knowledge_dir())
        .env("CONCIERGE_FIXTURES_DIR", root.join("fixtures"))
        .env("CONCIERGE_PROMPTS_DIR", root.join("prompts"))
        .env("CONCIERGE_AI_PROVIDER", "offline")
        .env("CONCIERGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SUPPORT_BOT_TOKEN", TOKEN)
        .env("SUPPORT_NOTIFICATIONS_CHAT_ID", CHAT_ID.to_string())
        .env("CONCIERGE_TELEGRAM_API_URL", &fake.url)
        .env("CONCIERGE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("CONCIERGE_TELEGRAM_OPERATORS", OPERATOR_ID.to_string())
        .env("CONCIERGE_TELEGRAM_MESSAGES_PER_MINUTE", "6000")
        // A story posts 30 messages in a burst, faster than any person types.
        .env("CONCIERGE_LIMIT_MESSAGES_PER_MINUTE", "100")
        .env("RUST_LOG", "warn")
        .envs(settings.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting concierge");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until("concierge to start", Duration::from_secs(60), async || {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    (child, base)
}

/// What the stories share: one system and one browser, driven in turn.
struct Stage {
    fake: FakeTelegram,
    base: String,
    http: reqwest::Client,
    browser: Browser,
    _concierge: Child,
}

impl Stage {
    fn api(&self, path: &str) -> String {
        format!("{}/api/concierge{path}", self.base)
    }

    /// The latest conversation of the demo user `user`.
    async fn conversation_of(&self, user: &str) -> Value {
        let page = get_json(&self.http, self.api("/conversations/"), user_token(user)).await;
        page["items"][0].clone()
    }

    /// Open the demo site signed in as `user`, with the widget open.
    async fn widget_as(&self, user: &str) {
        let browser = &self.browser;
        browser.client.goto(&format!("{}/", self.base)).await.unwrap();
        browser
            .until("the demo users", "return document.querySelectorAll('#login-as option').length > 1;", vec![])
            .await;
        browser
            .js(
                "const select = document.getElementById('login-as'); select.value = arguments[0];
                 select.dispatchEvent(new Event('change', { bubbles: true })); return true;",
                vec![json!(user)],
            )
            .await;
        browser.open_widget().await;
    }

    /// Deliver `update` to the webhook as Telegram would.
    async fn webhook(&self, update: &Value) {
        let status = self
            .http
            .post(self.api("/telegram/webhook/"))
            .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
            .json(update)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
}

/// Play each story in turn; the first that fails ends the test, named.
macro_rules! stories {
    ($stage:expr, $($story:ident),+ $(,)?) => {
        $( play($stage, stringify!($story), $story($stage)).await; )+
    };
}

async fn play(stage: &Stage, name: &str, story: impl Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(story).catch_unwind().await {
        let _ = stage.browser.try_screenshot(&format!("failed-{name}.png")).await;
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("the browser story `{name}` failed: {message}");
    }
}

#[tokio::test]
async fn the_widget_and_the_console_work_in_chromium() {
    if !chromium_available() {
        return;
    }
    let fake = FakeTelegram::start().await;
    let (concierge, base) = start_concierge(&fake).await;
    let browser = Browser::start().await;
    let stage = Stage { fake, base, http: reqwest::Client::new(), browser, _concierge: concierge };
    stories!(
        &stage,
        a_signed_in_question_gets_an_answer_citing_its_document,
        an_action_runs_and_reports,
        markup_in_a_message_stays_text,
        a_reload_keeps_the_conversation,
        a_cut_stream_loses_and_doubles_nothing,
        calling_an_operator_opens_a_topic_and_the_reply_appears_live,
        a_long_conversation_comes_back_whole,
        a_message_written_offline_is_sent_once,
        polling_skips_no_answer,
        the_console_lists_the_conversation_and_shows_the_metrics,
    );
    stage.browser.client.close().await.unwrap();
}

/// Stream tokens that live four seconds, and a widget that misses its renewal (a tab asleep):
/// the server ends the stream when the token expires, the widget resumes with a fresh one, and
/// the conversation on either side of that shows every message once, in order.
#[tokio::test]
async fn a_stream_past_its_token_resumes_without_a_gap_in_chromium() {
    if !chromium_available() {
        return;
    }
    let fake = FakeTelegram::start().await;
    let (concierge, base) = start_concierge_with(&fake, &[("CONCIERGE_STREAM_TOKEN_TTL_SECS", "4")]).await;
    let browser = Browser::start().await;
    let stage = Stage { fake, base, http: reqwest::Client::new(), browser, _concierge: concierge };
    stories!(&stage, the_widget_resumes_a_stream_its_token_ended);
    stage.browser.client.close().await.unwrap();
}

async fn the_widget_resumes_a_stream_its_token_ended(stage: &Stage) {
    let browser = &stage.browser;
    stage.widget_as("boris").await;
    // Questions and answers before, across and after the expiry.
    for (round, question) in ["Как оплатить подписку?", "Как отменить подписку?", "Спасибо!"].into_iter().enumerate()
    {
        if round == 1 {
            browser.js("window.LectioConcierge.debug.pauseTokenRenewal(); return true;", vec![]).await;
        }
        let answers = browser.messages().await.iter().filter(|m| m["role"] == "assistant").count();
        browser.say(question).await;
        browser
            .until(
                "the answer",
                "return messages().filter((m) => m.role === 'assistant' && m.id).length > arguments[0];",
                vec![json!(answers)],
            )
            .await;
        if round == 1 {
            browser
                .until(
                    "the server to end the stream at its token's expiry",
                    "return window.LectioConcierge.debug.expiredStreams() > 0;",
                    vec![],
                )
                .await;
        }
    }
    shows_every_stored_message_once(stage, "boris").await;
}

/// Signed in as Anna on the demo site, a question gets an answer that cites its document.
async fn a_signed_in_question_gets_an_answer_citing_its_document(stage: &Stage) {
    let browser = &stage.browser;
    stage.widget_as("anna").await;

    browser.say("Как оплатить подписку?").await;
    browser
        .until(
            "a cited answer",
            "return messages().some((m) => m.role === 'assistant' && m.links.some((href) => href.includes('/kb/')));",
            vec![],
        )
        .await;
    let answer = browser.messages().await.into_iter().find(|m| m["role"] == "assistant").unwrap();
    let source =
        answer["links"].as_array().unwrap().iter().find_map(|l| l.as_str().filter(|l| l.contains("/kb/"))).unwrap();
    let page =
        stage.http.get(if source.starts_with("http") { source.to_owned() } else { format!("{}{source}", stage.base) });
    assert_eq!(page.send().await.unwrap().status(), StatusCode::OK, "the cited document opens");
}

async fn an_action_runs_and_reports(stage: &Stage) {
    stage.browser.say("Проверь мой Zoom").await;
    stage
        .browser
        .until(
            "the Zoom check",
            "return messages().some((m) => m.role === 'assistant' && m.text.includes('Zoom') && m.text !== '');",
            vec![],
        )
        .await;
}

async fn markup_in_a_message_stays_text(stage: &Stage) {
    let browser = &stage.browser;
    let attack = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";
    browser.say(attack).await;
    browser
        .until("the attack shown as text", "return messages().some((m) => m.text.includes('<img src=x'));", vec![])
        .await;
    let inert = browser
        .js("return window.__xss === undefined && messages().every((m) => m.images === 0) && !root().querySelector('script');", vec![])
        .await;
    assert_eq!(inert, json!(true), "the XSS attempt must stay inert");
    browser.screenshot("widget.png").await;
}

async fn a_reload_keeps_the_conversation(stage: &Stage) {
    let browser = &stage.browser;
    let before = browser.messages().await.len();
    browser.client.refresh().await.unwrap();
    browser.open_widget().await;
    browser
        .until(
            "the restored conversation",
            "return messages().length >= arguments[0] && messages().some((m) => m.text.includes('Как оплатить подписку?'));",
            vec![json!(before)],
        )
        .await;
}

async fn a_cut_stream_loses_and_doubles_nothing(stage: &Stage) {
    let browser = &stage.browser;
    browser.js("window.LectioConcierge.debug.dropStream(); return true;", vec![]).await;
    browser.say("Спасибо!").await;
    browser
        .until(
            "the reply after the cut",
            "const all = messages(); const last = all[all.length - 1]; return last && last.role === 'assistant' && all.some((m) => m.text.includes('Спасибо!'));",
            vec![],
        )
        .await;
    shows_every_stored_message_once(stage, "anna").await;
}

/// The widget shows each stored message of `user`'s latest conversation once, in order.
async fn shows_every_stored_message_once(stage: &Stage, user: &str) {
    let shown = stage.browser.messages().await;
    let stored: Vec<&Value> = shown.iter().filter(|m| m["id"].is_string()).collect();
    let mut ids: Vec<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "no message shown twice: {shown:#?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "messages in order: {seqs:?}");
    let last_seq = stage.conversation_of(user).await["last_seq"].as_i64().unwrap();
    assert_eq!(stored.len() as i64, last_seq, "every stored message is shown once: {shown:#?}");
}

/// Calling an operator opens a topic; an operator typing in the console shows in the widget
/// until the reply, which appears live.
async fn calling_an_operator_opens_a_topic_and_the_reply_appears_live(stage: &Stage) {
    let (browser, fake) = (&stage.browser, &stage.fake);
    let conversation_id = stage.conversation_of("anna").await["id"].as_str().unwrap().to_owned();
    browser.js("q('[data-testid=escalate]').click(); return true;", vec![]).await;
    browser
        .until(
            "the hand-over notice",
            "return messages().some((m) => m.role === 'system' && m.text.includes('оператор'));",
            vec![],
        )
        .await;
    fake.wait_for("the topic", |f| !f.accepted("createForumTopic").is_empty()).await;
    let thread = wait_until("the card posted", WAIT, async || {
        fake.accepted("sendMessage").iter().find_map(|m| m["message_thread_id"].as_i64())
    })
    .await;
    // Ольга takes the conversation in its topic; the console will show her as its assignee.
    let take = text_update(9000, 7000, thread, operator_user(), "/take");
    stage.webhook(&take).await;
    fake.wait_for("who has it", |f| f.posts_in(thread).iter().any(|p| p.starts_with("🙋"))).await;
    let typing = stage
        .http
        .post(stage.api(&format!("/admin/conversations/{conversation_id}/typing/")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(typing, StatusCode::NO_CONTENT);
    browser
        .until(
            "the operator typing",
            "const t = q('[data-testid=typing]'); return !!t && !t.hidden && t.textContent.includes('Администратор печатает');",
            vec![],
        )
        .await;
    let reply = text_update(9001, 7001, thread, operator_user(), "Здравствуйте, Анна! Я Ольга, помогу.");
    stage.webhook(&reply).await;
    browser
        .until(
            "the operator's reply",
            "return messages().some((m) => m.role === 'operator' && m.text.includes('Я Ольга, помогу') && m.text.includes('Ольга'));",
            vec![],
        )
        .await;
    browser.until("the typing indicator gone", "return q('[data-testid=typing]').hidden;", vec![]).await;
}

/// A long conversation (Boris's) comes back whole, not only its latest page.
async fn a_long_conversation_comes_back_whole(stage: &Stage) {
    let long = stage
        .http
        .post(stage.api("/conversations/"))
        .bearer_auth(user_token("boris"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let long_id = long["id"].as_str().unwrap().to_owned();
    for n in 0..30 {
        let status = stage
            .http
            .post(stage.api(&format!("/conversations/{long_id}/messages/")))
            .bearer_auth(user_token("boris"))
            .json(&json!({ "content": "Спасибо!", "client_message_id": format!("thanks-{n}") }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let long_seq = wait_until("the long conversation answered", WAIT, async || {
        let detail = get_json(&stage.http, stage.api(&format!("/conversations/{long_id}/")), user_token("boris")).await;
        detail["last_seq"].as_i64().filter(|seq| *seq >= 60).ok_or(detail)
    })
    .await;
    let browser = &stage.browser;
    browser
        .js(
            "localStorage.setItem(`lectio-concierge:${location.origin}/api/concierge:user:boris`, JSON.stringify({ conversation_id: arguments[0] }));
             const select = document.getElementById('login-as'); select.value = 'boris';
             select.dispatchEvent(new Event('change', { bubbles: true })); return true;",
            vec![json!(long_id)],
        )
        .await;
    browser.open_widget().await;
    browser
        .until(
            "the whole long conversation",
            "return messages().filter((m) => m.id).length === arguments[0];",
            vec![json!(long_seq)],
        )
        .await;
}

/// Written offline (in Boris's conversation), sent once when the connection is back.
async fn a_message_written_offline_is_sent_once(stage: &Stage) {
    let browser = &stage.browser;
    browser
        .js(
            "window.__fetch = window.fetch; window.fetch = () => Promise.reject(new TypeError('Failed to fetch'));
             window.dispatchEvent(new Event('offline')); return true;",
            vec![],
        )
        .await;
    browser.say("Написано без сети").await;
    browser.until("the offline banner", "const s = q('[data-testid=status]'); return !!s && !s.hidden;", vec![]).await;
    browser.js("window.fetch = window.__fetch; window.dispatchEvent(new Event('online')); return true;", vec![]).await;
    browser
        .until(
            "the offline message delivered",
            "return messages().some((m) => m.id && m.role === 'user' && m.text.includes('Написано без сети'));",
            vec![],
        )
        .await;
    let long_id = stage.conversation_of("boris").await["id"].as_str().unwrap().to_owned();
    let history: Value = get_json(
        &stage.http,
        stage.api(&format!("/conversations/{long_id}/messages/?after=0&limit=200")),
        user_token("boris"),
    )
    .await;
    let copies = history["items"].as_array().unwrap().iter().filter(|m| m["content"] == "Написано без сети").count();
    assert_eq!(copies, 1, "sent once");
}

/// Polling, for sites whose proxy breaks event streams. The second question is sent after the
/// first one's answer is stored but before the next poll (they are 2 s apart): its POST
/// response must not make polling skip that answer.
async fn polling_skips_no_answer(stage: &Stage) {
    let browser = &stage.browser;
    browser
        .js(
            "LectioConcierge.destroy();
             LectioConcierge.init({ api: location.origin + '/api/concierge', token: arguments[0], transport: 'polling' });
             return true;",
            vec![json!(user_token("vera"))],
        )
        .await;
    browser.open_widget().await;
    browser.say("Как оплатить подписку?").await;
    browser
        .until("the first question stored", "return messages().some((m) => m.id && m.role === 'user');", vec![])
        .await;
    wait_until("the first answer stored", WAIT, async || {
        let conversation = stage.conversation_of("vera").await;
        conversation["last_seq"].as_i64().is_some_and(|seq| seq >= 2)
    })
    .await;
    browser.say("Как отменить подписку?").await;
    browser
        .until(
            "both answers, by polling",
            "return messages().filter((m) => m.id && m.role === 'assistant').length === 2;",
            vec![],
        )
        .await;
    let polled =
        browser.js("return Array.from(new Set(messages().filter((m) => m.id).map((m) => m.id))).length;", vec![]).await;
    assert_eq!(
        polled,
        browser.js("return messages().filter((m) => m.id).length;", vec![]).await,
        "nothing shown twice"
    );
}

/// The console lists Anna's conversation with the operator's reply and who has it, and shows the metrics.
async fn the_console_lists_the_conversation_and_shows_the_metrics(stage: &Stage) {
    let (browser, http) = (&stage.browser, &stage.http);
    let conversation_id = stage.conversation_of("anna").await["id"].as_str().unwrap().to_owned();
    let today = chrono::Utc::now().date_naive().to_string();
    let recompute = http
        .post(stage.api("/admin/metrics/recompute/"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "from": today, "to": today }))
        .send()
        .await
        .unwrap();
    assert_eq!(recompute.status(), StatusCode::ACCEPTED);
    browser.client.goto(&format!("{}/admin/?token={ADMIN_TOKEN}", stage.base)).await.unwrap();
    browser
        .until(
            "the conversation in the console",
            "return !!document.querySelector(`[data-testid=conversation-row][data-id=\"${arguments[0]}\"]`);",
            vec![json!(conversation_id)],
        )
        .await;
    browser
        .until(
            "the assignee in the list",
            "const row = document.querySelector(`[data-testid=conversation-row][data-id=\"${arguments[0]}\"]`); const a = row && row.querySelector('[data-testid=assignee]'); return !!a && a.textContent.includes('Ольга Сергеевна');",
            vec![json!(conversation_id)],
        )
        .await;
    browser
        .js(
            "document.querySelector(`[data-testid=conversation-row][data-id=\"${arguments[0]}\"]`).click(); return true;",
            vec![json!(conversation_id)],
        )
        .await;
    browser
        .until(
            "the transcript in the console",
            "const detail = document.querySelector('[data-testid=conversation-detail]'); const a = document.querySelector('[data-testid=info-assignee]'); return !!detail && detail.textContent.includes('Я Ольга, помогу') && !!a && a.textContent === 'Ольга Сергеевна';",
            vec![],
        )
        .await;
    browser
        .until(
            "the console's live feed",
            "return document.querySelector('[data-testid=live]').dataset.state === 'live';",
            vec![],
        )
        .await;
    browser.screenshot("console.png").await;
    browser
        .js(
            "const tab = Array.from(document.querySelectorAll('button, a, [role=tab]')).find((el) => /Метрики/.test(el.textContent)); tab.click(); return true;",
            vec![],
        )
        .await;
    browser
        .until("the metric cards", "return document.querySelectorAll('[data-testid=metric-card]').length > 0;", vec![])
        .await;
    browser.screenshot("metrics.png").await;
    let metrics = get_json(http, stage.api("/admin/metrics/"), ADMIN_TOKEN).await;
    assert!(metrics["totals"]["conversations"].as_i64().unwrap() >= 1, "{metrics:#}");
    assert!(metrics["totals"]["escalated"].as_i64().unwrap() >= 1, "{metrics:#}");
    let prometheus = http.get(format!("{}/metrics", stage.base)).send().await.unwrap().text().await.unwrap();
    assert!(prometheus.contains("concierge_http_requests_total"), "{prometheus}");
    assert!(prometheus.contains("concierge_jobs_total"), "{prometheus}");
}

/// An operator's answer made a knowledge draft with `/kb` in the topic; the administrator sees
/// it in the console's knowledge tab, edits and approves it there; it is published into the
/// knowledge directory (a copy, for this test) and the next question is answered from it.
#[tokio::test]
async fn a_knowledge_draft_is_approved_in_the_console_in_chromium() {
    if !chromium_available() {
        return;
    }
    let fake = FakeTelegram::start().await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-kb-{}", uuid::Uuid::new_v4().simple()));
    copy_dir(&knowledge_dir(), &dir);
    let knowledge = dir.to_string_lossy().into_owned();
    let (concierge, base) = start_concierge_with(&fake, &[("CONCIERGE_KNOWLEDGE_DIR", &knowledge)]).await;
    let browser = Browser::start().await;
    let stage = Stage { fake, base, http: reqwest::Client::new(), browser, _concierge: concierge };
    stories!(&stage, an_operators_answer_is_approved_as_a_document_in_the_console);
    stage.browser.client.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

async fn an_operators_answer_is_approved_as_a_document_in_the_console(stage: &Stage) {
    const QUESTION: &str = "Можно ли переключить интерфейс Lectio на казахский язык?";
    const ANSWER: &str = "Пока нет: интерфейс Lectio доступен на русском и английском. Язык переключается в **Настройки → Язык интерфейса**.";
    let (browser, fake, http) = (&stage.browser, &stage.fake, &stage.http);
    let user = user_token("anna");
    let post = |path: String, token: String, body: Value| async move {
        let response = http.post(stage.api(&path)).bearer_auth(token).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, conversation) = post("/conversations/".into(), user.clone(), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let id = conversation["id"].as_str().unwrap().to_owned();
    post(format!("/conversations/{id}/messages/"), user.clone(), json!({ "content": "Здравствуйте" })).await;
    wait_until("the greeting answered", WAIT, async || {
        let detail = get_json(http, stage.api(&format!("/conversations/{id}/")), &user).await;
        detail["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["role"] == "assistant"))
    })
    .await;
    let (status, body) = post(format!("/conversations/{id}/escalate/"), user.clone(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    post(format!("/conversations/{id}/messages/"), user.clone(), json!({ "content": QUESTION })).await;
    let thread = wait_until("the question in the topic", WAIT, async || {
        fake.accepted("sendMessage").iter().find_map(|m| {
            m["text"].as_str().is_some_and(|t| t.contains(QUESTION)).then(|| m["message_thread_id"].as_i64()).flatten()
        })
    })
    .await;
    stage.webhook(&text_update(9101, 7101, thread, operator_user(), ANSWER)).await;
    let mut kb = text_update(9102, 7102, thread, operator_user(), "/kb");
    kb["message"]["reply_to_message"] = text_update(0, 7101, thread, operator_user(), ANSWER)["message"].clone();
    stage.webhook(&kb).await;
    fake.wait_for("the draft confirmed", |f| f.posts_in(thread).iter().any(|p| p.starts_with("📚 Черновик статьи")))
        .await;

    // The console lists it on the knowledge tab; the administrator adds a line and approves.
    browser.client.goto(&format!("{}/admin/?token={ADMIN_TOKEN}#/knowledge", stage.base)).await.unwrap();
    browser
        .until(
            "the draft in the console",
            "const d = document.querySelector('[data-testid=kb-draft][data-status=ready]'); return !!d && d.textContent.includes('Ольга');",
            vec![],
        )
        .await;
    browser
        .js(
            "const d = document.querySelector('[data-testid=kb-draft][data-status=ready]');
             const body = d.querySelector('[data-testid=kb-draft-body]');
             body.value = body.value + '\\n\\n## Какие языки есть в Lectio\\nРусский и английский.';
             body.dispatchEvent(new Event('input', { bubbles: true }));
             return true;",
            vec![],
        )
        .await;
    browser.screenshot("knowledge-draft.png").await;
    browser
        .js("document.querySelector('[data-testid=kb-draft][data-status=ready] [data-testid=kb-draft-approve]').click(); return true;", vec![])
        .await;
    let path = browser
        .until(
            "the draft published",
            "const p = document.querySelector('[data-testid=kb-draft][data-status=approved] [data-testid=kb-draft-path]'); return p ? p.textContent : null;",
            vec![],
        )
        .await;
    let path = path.as_str().unwrap().to_owned();
    assert!(path.starts_with("faq/") && path.ends_with(".md"), "{path}");
    browser
        .until(
            "the document listed",
            "return Array.from(document.querySelectorAll('[data-testid=kb-document]')).some((row) => row.textContent.includes(arguments[0]));",
            vec![json!(path)],
        )
        .await;

    // The next user's question is answered from the new document.
    let boris = user_token("boris");
    let (_, asked) = post("/conversations/".into(), boris.clone(), json!({})).await;
    let asked_id = asked["id"].as_str().unwrap().to_owned();
    post(format!("/conversations/{asked_id}/messages/"), boris.clone(), json!({ "content": QUESTION })).await;
    let answer = wait_until("the answer", WAIT, async || {
        let detail = get_json(http, stage.api(&format!("/conversations/{asked_id}/")), &boris).await;
        detail["messages"].as_array().and_then(|m| m.iter().find(|m| m["role"] == "assistant").cloned())
    })
    .await;
    assert_eq!(answer["metadata"]["sources"][0]["path"], path.as_str(), "{answer}");
}

/// A WAV file (16-bit PCM, mono, 16 kHz) of `seconds` of a tone: what the fake microphone hears.
fn tone_wav(seconds: u32) -> Vec<u8> {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate * seconds)
        .map(|n| ((n as f64 * 440.0 * 2.0 * std::f64::consts::PI / f64::from(rate)).sin() * 8_000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend(b"RIFF");
    wav.extend((36 + data_len).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(rate.to_le_bytes());
    wav.extend((rate * 2).to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(data_len.to_le_bytes());
    for sample in samples {
        wav.extend(sample.to_le_bytes());
    }
    wav
}

/// Files both ways and a recorded voice message: a pasted screenshot and a PDF reach the
/// widget and the topic (sendPhoto, sendDocument), an operator's photo reaches the widget, and
/// a voice message recorded from Chromium's fake microphone (a generated WAV) is transcribed
/// by a loopback speech-to-text server and answered.
#[tokio::test]
async fn files_and_voice_work_in_chromium() {
    if !chromium_available() {
        return;
    }
    let wav = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("voice-{}.wav", free_port()));
    std::fs::write(&wav, tone_wav(4)).unwrap();
    let stt = crate::fake_transcribe::FakeTranscribe::start("Как оплатить подписку?").await;
    let fake = FakeTelegram::start().await;
    let (concierge, base) = start_concierge_with(&fake, &[("CONCIERGE_TRANSCRIBE_URL", stt.url.as_str())]).await;
    let browser = Browser::start_with(&[
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
    ])
    .await;
    let stage = Stage { fake, base, http: reqwest::Client::new(), browser, _concierge: concierge };
    stories!(
        &stage,
        a_pasted_screenshot_and_a_pdf_reach_the_widget_and_the_topic,
        an_operators_photo_appears_in_the_widget,
        a_recorded_voice_message_is_transcribed_and_answered,
        the_console_shows_the_files_and_sends_one_to_the_widget,
    );
    assert!(!stt.requests().is_empty(), "the recording was transcribed");
    stage.browser.client.close().await.unwrap();
}

/// The topic's thread id, once the card is posted (its transcript covers what was written
/// before it, so later messages come as posts of their own).
async fn topic_thread(fake: &FakeTelegram) -> i64 {
    fake.wait_for("the topic", |f| !f.accepted("createForumTopic").is_empty()).await;
    let thread = wait_until("the card posted", WAIT, async || {
        fake.accepted("sendMessage").iter().find_map(|m| m["message_thread_id"].as_i64())
    })
    .await;
    fake.wait_for("the whole card", |f| f.posts_in(thread).len() >= 2).await;
    thread
}

async fn a_pasted_screenshot_and_a_pdf_reach_the_widget_and_the_topic(stage: &Stage) {
    let browser = &stage.browser;
    stage.widget_as("anna").await;
    // With a person: the files go to the topic.
    browser.say("Позовите оператора").await;
    browser
        .until(
            "the hand-over notice",
            "return messages().some((m) => m.role === 'system' && m.text.includes('оператор'));",
            vec![],
        )
        .await;
    topic_thread(&stage.fake).await;

    // A screenshot pasted into the message box, a PDF chosen with the file input.
    browser
        .js(
            "const canvas = document.createElement('canvas'); canvas.width = 120; canvas.height = 80;
             const g = canvas.getContext('2d'); g.fillStyle = '#c0392b'; g.fillRect(0, 0, 120, 80);
             g.fillStyle = '#fff'; g.fillText('Ошибка 500', 10, 40);
             return new Promise((resolve) => canvas.toBlob((blob) => {
               const data = new DataTransfer();
               data.items.add(new File([blob], 'screenshot.png', { type: 'image/png' }));
               q('[data-testid=input]').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
               resolve(true);
             }, 'image/png'));",
            vec![],
        )
        .await;
    // Uploaded in turn: the first file carries the message's text as its caption in the topic.
    browser
        .until(
            "the screenshot uploaded",
            "const chips = qa('[data-testid=file-chip]'); return chips.length === 1 && chips[0].dataset.state === 'done';",
            vec![],
        )
        .await;
    browser
        .js(
            "const pdf = '%PDF-1.4\\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\\ntrailer << /Root 1 0 R >>\\n%%EOF\\n';
             const data = new DataTransfer();
             data.items.add(new File([pdf], 'receipt.pdf', { type: 'application/pdf' }));
             const input = q('[data-testid=file-input]'); input.files = data.files;
             input.dispatchEvent(new Event('change', { bubbles: true })); return true;",
            vec![],
        )
        .await;
    browser
        .until(
            "both files uploaded",
            "const chips = qa('[data-testid=file-chip]'); return chips.length === 2 && chips.every((c) => c.dataset.state === 'done');",
            vec![],
        )
        .await;
    // Dropped on the panel: a program is refused before any upload, a text file is attached,
    // and removed again with its ×.
    browser
        .js(
            "const drop = (file) => {
               const data = new DataTransfer(); data.items.add(file);
               const panel = q('[data-testid=panel]');
               panel.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
               panel.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
             };
             drop(new File(['заметка'], 'notes.txt', { type: 'text/plain' }));
             drop(new File(['MZ'], 'setup.exe', { type: 'application/x-msdownload' }));
             return true;",
            vec![],
        )
        .await;
    browser
        .until(
            "the program refused and the text attached",
            "const notice = q('[data-testid=file-notice]'); const chips = qa('[data-testid=file-chip]');
             return chips.length === 3 && chips[2].textContent.includes('notes.txt') && chips[2].dataset.state === 'done'
               && !notice.hidden && notice.textContent.includes('setup.exe');",
            vec![],
        )
        .await;
    browser
        .js("qa('[data-testid=file-chip]')[2].querySelector('[data-testid=file-remove]').click(); return true;", vec![])
        .await;
    browser.until("the text file removed", "return qa('[data-testid=file-chip]').length === 2;", vec![]).await;
    browser.say("Вот ошибка и чек").await;
    browser
        .until(
            "the message with its files",
            "return messages().some((m) => m.role === 'user' && m.text.includes('Вот ошибка и чек') && m.images > 0 && m.links.some((href) => href && href.includes('/attachments/')));",
            vec![],
        )
        .await;
    stage
        .fake
        .wait_for("a photo and a document", |f| {
            !f.uploads("sendPhoto").is_empty() && !f.uploads("sendDocument").is_empty()
        })
        .await;
    let (photo, image) = stage.fake.uploads("sendPhoto").remove(0);
    assert!(photo["caption"].as_str().unwrap_or_default().contains("Вот ошибка и чек"), "{photo}");
    assert!(image.bytes.starts_with(b"\x89PNG") || image.bytes.starts_with(&[0xff, 0xd8]), "an image");
    let (_, document) = stage.fake.uploads("sendDocument").remove(0);
    assert_eq!(document.file_name, "receipt.pdf");
    stage.browser.screenshot("widget-files.png").await;
}

async fn an_operators_photo_appears_in_the_widget(stage: &Stage) {
    let thread = topic_thread(&stage.fake).await;
    stage.fake.add_file("operator-photo", crate::voice::png(90, 60));
    let mut message = crate::fake_telegram::group_message(7101, Some(thread), operator_user());
    message["photo"] = json!([{ "file_id": "operator-photo", "file_unique_id": "u-operator-photo", "width": 90, "height": 60, "file_size": 2000 }]);
    message["caption"] = json!("Нажмите сюда");
    stage.webhook(&json!({ "update_id": 9101, "message": message })).await;
    stage
        .browser
        .until(
            "the operator's photo",
            "return messages().some((m) => m.role === 'operator' && m.images > 0 && m.text.includes('Нажмите сюда'));",
            vec![],
        )
        .await;
    let loaded = stage
        .browser
        .until(
            "the photo loaded through its signed URL",
            "const shown = qa('[data-testid=message][data-role=operator] img'); return shown.some((img) => img.complete && img.naturalWidth === 90);",
            vec![],
        )
        .await;
    assert_eq!(loaded, json!(true));
}

async fn a_recorded_voice_message_is_transcribed_and_answered(stage: &Stage) {
    let thread = topic_thread(&stage.fake).await;
    // Back to the bot, which answers the voice message.
    stage.webhook(&text_update(9102, 7102, thread, operator_user(), "/ai")).await;
    let browser = &stage.browser;
    browser
        .until(
            "back with the assistant",
            "return messages().some((m) => m.role === 'system' && m.text.includes('помощнику'));",
            vec![],
        )
        .await;
    let answers = browser.messages().await.iter().filter(|m| m["role"] == "assistant").count();
    // A recording cancelled leaves nothing behind.
    browser.js("q('[data-testid=record]').click(); return true;", vec![]).await;
    browser.until("the recorder", "return !q('[data-testid=recorder]').hidden;", vec![]).await;
    browser.js("q('[data-testid=record-cancel]').click(); return true;", vec![]).await;
    browser
        .until(
            "the recording cancelled",
            "return q('[data-testid=recorder]').hidden && !q('[data-testid=input]').hidden && qa('[data-testid=file-chip]').length === 0;",
            vec![],
        )
        .await;
    browser.js("q('[data-testid=record]').click(); return true;", vec![]).await;
    browser
        .until(
            "the recording with its timer",
            "const bar = q('[data-testid=recorder]'); const t = q('[data-testid=recorder-timer]');
             return !!bar && !bar.hidden && /0:0[1-9] \\/ 2:00/.test(t.textContent);",
            vec![],
        )
        .await;
    // The POST's answer is the message as stored, before its transcript. Held back until the
    // stream has brought the transcript, it must not take the transcript away again.
    browser.js(HOLD_THE_VOICE_POST, vec![]).await;
    browser.js("q('[data-testid=record-send]').click(); return true;", vec![]).await;
    browser
        .until(
            "the voice message with its transcript",
            "const node = qa('[data-testid=message][data-role=user]').find((m) => m.querySelector('audio'));
             return window.voicePostAnswered === true && !!node && node.textContent.includes('Как оплатить подписку?');",
            vec![],
        )
        .await;
    browser
        .until(
            "the answer to the voice message",
            "return messages().filter((m) => m.role === 'assistant' && m.id).length > arguments[0] && messages().some((m) => m.role === 'assistant' && m.links.some((href) => href.includes('/kb/')));",
            vec![json!(answers)],
        )
        .await;
    browser.screenshot("widget-voice.png").await;
}

/// Hold the answer to the next POST of a message with files until the widget shows a
/// transcript, then set `window.voicePostAnswered` once the widget has had the answer.
const HOLD_THE_VOICE_POST: &str = "
const original = window.fetch;
window.voicePostAnswered = false;
window.fetch = async (url, init) => {
  const response = await original(url, init);
  if (init && init.method === 'POST' && String(url).endsWith('/messages/') && String(init.body).includes('attachment_ids')) {
    window.fetch = original;
    const shown = () => qa('[data-testid=message][data-role=user] [data-testid=transcript]').length > 0;
    for (let waited = 0; !shown() && waited < 20000; waited += 50) await new Promise((done) => setTimeout(done, 50));
    setTimeout(() => { window.voicePostAnswered = true; }, 500);
  }
  return response;
};
return true;";

/// The console shows the conversation's files (the screenshot, the PDF, the operator's photo,
/// the voice message with its transcript); an operator attaches an image to a reply there, and
/// it reaches the topic (sendPhoto) and the user's widget.
async fn the_console_shows_the_files_and_sends_one_to_the_widget(stage: &Stage) {
    let browser = &stage.browser;
    let conversation = stage.conversation_of("anna").await;
    let id = conversation["id"].as_str().unwrap().to_owned();
    let photos = stage.fake.uploads("sendPhoto").len();
    browser.client.goto(&format!("{}/admin/?token={ADMIN_TOKEN}#/conversations/{id}", stage.base)).await.unwrap();
    browser
        .until(
            "the files in the console's transcript",
            "const box = document.querySelector('.transcript'); if (!box) return false;
             const voice = box.querySelector('[data-testid=voice-transcript]');
             return box.querySelectorAll('[data-testid=attachment-image]').length >= 2
               && !!box.querySelector('[data-testid=attachment-file]') && !!box.querySelector('[data-testid=attachment-voice]')
               && !!voice && voice.textContent.includes('Как оплатить подписку?');",
            vec![],
        )
        .await;
    browser
        .js(
            "const canvas = document.createElement('canvas'); canvas.width = 64; canvas.height = 48;
             const g = canvas.getContext('2d'); g.fillStyle = '#2563eb'; g.fillRect(0, 0, 64, 48);
             return new Promise((resolve) => canvas.toBlob((blob) => {
               const data = new DataTransfer();
               data.items.add(new File([blob], 'where-to-click.png', { type: 'image/png' }));
               const input = document.querySelector('[data-testid=reply-file-input]'); input.files = data.files;
               input.dispatchEvent(new Event('change', { bubbles: true })); resolve(true);
             }, 'image/png'));",
            vec![],
        )
        .await;
    browser
        .until(
            "the file uploaded from the console",
            "const files = Array.from(document.querySelectorAll('[data-testid=reply-file]'));
             return files.length === 1 && files[0].dataset.state === 'done' && !document.querySelector('[data-testid=reply-send]').disabled;",
            vec![],
        )
        .await;
    browser
        .js(
            "const input = document.querySelector('[data-testid=reply-input]'); input.value = 'Нажмите синюю кнопку';
             document.querySelector('[data-testid=reply-send]').click(); return true;",
            vec![],
        )
        .await;
    browser
        .until(
            "the reply with its file in the console",
            "return Array.from(document.querySelectorAll('.transcript [data-testid=message][data-role=operator]'))
               .some((m) => m.textContent.includes('Нажмите синюю кнопку') && m.querySelector('[data-testid=attachment-image]'));",
            vec![],
        )
        .await;
    browser.screenshot("console-files.png").await;
    stage.fake.wait_for("the console's photo in the topic", |f| f.uploads("sendPhoto").len() > photos).await;

    stage.widget_as("anna").await;
    browser
        .until(
            "the operator's file in the widget",
            "return messages().some((m) => m.role === 'operator' && m.images > 0 && m.text.includes('Нажмите синюю кнопку'));",
            vec![],
        )
        .await;
}
