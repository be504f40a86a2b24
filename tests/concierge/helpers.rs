//! Test harness: a private PostgreSQL cluster per test binary (unless
//! `CONCIERGE_TEST_DATABASE_URL` names a server to use), a fresh database per test cloned from
//! a migrated template, the API served in-process on port 0, workers in-process or as real
//! processes, and a small SSE client.

use std::{
    path::PathBuf,
    pin::Pin,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use concierge_shared::{
    config::{Config, LimitsConfig, TrustedProxies},
    pg::{Cluster, ClusterOptions},
};
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::OnceCell, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-for-concierge-0123456789";
pub const WAIT: Duration = Duration::from_secs(20);

/// Where test databases are created: `(admin url, url for a database name)`.
struct Server {
    admin_url: String,
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("CONCIERGE_TEST_DATABASE_URL") {
            let base = url::Url::parse(&url).expect("CONCIERGE_TEST_DATABASE_URL is a URL");
            return Server {
                admin_url: url.clone(),
                url_for: Box::new(move |name| {
                    let mut url = base.clone();
                    url.set_path(name);
                    url.to_string()
                }),
            };
        }
        remove_stale_clusters();
        let dir = test_root().join(format!("concierge-test-{}", std::process::id()));
        let cluster = Cluster::start(&ClusterOptions { data_dir: dir, ephemeral: true, statements: false })
            .expect("start a test cluster");
        let admin_url = cluster.url("postgres");
        // The cluster lives as long as the test process; the parent-death signal stops it.
        let cluster: &'static Cluster = Box::leak(Box::new(cluster));
        Server { admin_url, url_for: Box::new(move |name| cluster.url(name)) }
    })
}

fn test_root() -> PathBuf {
    std::env::temp_dir()
}

/// Data directories of test clusters whose process is gone.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(test_root()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("concierge-test-").and_then(|p| p.parse::<i32>().ok()) {
            // SAFETY: kill with signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                let _ = concierge_shared::pg::remove_cluster_files(&entry.path());
            }
        }
    }
}

/// A fresh, migrated database; returns its URL.
pub async fn fresh_database() -> String {
    let server = tokio::task::spawn_blocking(server).await.unwrap();
    let template = TEMPLATE
        .get_or_init(|| async {
            let name = format!("concierge_template_{}", std::process::id());
            concierge::create_database(&server.admin_url, &name).await.unwrap();
            let pool = concierge_shared::db::connect(&(server.url_for)(&name), 2).await.unwrap();
            concierge_shared::db::migrate(&pool).await.unwrap();
            concierge_shared::knowledge::store::reindex(&pool, &knowledge_dir()).await.unwrap();
            let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/initial_actions.json");
            concierge_shared::actions::load_fixtures(&pool, &fixtures).await.unwrap();
            pool.close().await;
            name
        })
        .await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = concierge_shared::db::connect(&server.admin_url, 1).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    (server.url_for)(&name)
}

pub fn knowledge_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("knowledge")
}

pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: Some(database_url.into()),
        bind: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: Some(SECRET.into()),
        jwt_issuer: None,
        jwt_audience: None,
        data_dir: std::env::temp_dir(),
        knowledge_dir: knowledge_dir(),
        knowledge_read_only: false,
        db_max_connections: 20,
        max_message_chars: 4000,
        sse_heartbeat: Duration::from_secs(15),
        stream_token_ttl: Duration::from_secs(600),
        visitor_token_ttl: Duration::from_secs(86_400),
        job_max_attempts: 3,
        worker_heartbeat: Duration::from_secs(1),
        ai: concierge_shared::config::AiConfig {
            prompts_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompts"),
            ..concierge_shared::config::AiConfig::offline()
        },
        embeddings: None,
        platform_url: None,
        platform_token: None,
        demo: false,
        platform_timeout: Duration::from_secs(2),
        fixtures_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        telegram: None,
        webhook_secret: None,
        admin_token: None,
        metrics_token: None,
        metrics_bind: None,
        retention: None,
        keep_page_query: false,
        limits: test_limits(),
        email: None,
        transcribe: None,
        storage: concierge_shared::config::StorageConfig::Local,
        max_attachment_bytes: 10 * 1024 * 1024,
    }
}

/// Limits no test meets unless it means to: every test's clients share 127.0.0.1 and act much
/// faster than people. The limiters still run on every request; `limits.rs` lowers them.
pub fn test_limits() -> LimitsConfig {
    LimitsConfig {
        trusted_proxies: TrustedProxies::default(),
        conversations_per_hour: 100_000,
        messages_per_minute: 100_000,
        ip_messages_per_minute: 100_000,
        escalations_per_day: 1_000,
        action_runs_per_minute: 100_000,
        stream_tokens_per_minute: 100_000,
        streams_per_principal: 10_000,
        streams_per_process: 100_000,
        admin_search_per_minute: 100_000,
        webhook_per_minute: 100_000,
    }
}

/// A platform user's token, as Lectio would sign it.
pub fn user_token(sub: &str) -> String {
    platform_token(
        json!({ "sub": sub, "name": "Анна", "email": format!("{sub}@example.com"), "role": "user", "exp": now() + 3600 }),
    )
}

pub fn platform_token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The API in-process, optionally with workers in-process too.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub db_url: String,
    pub pool: PgPool,
    pub config: Config,
    pub client: reqwest::Client,
    /// The API's event hub, to observe what its streams read.
    pub hub: concierge_api::hub::Hub,
    /// Whether workers run in-process, so that messages get answered.
    worker: bool,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl TestApp {
    /// The API alone: messages are stored and queued, nothing answers them.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let db_url = fresh_database().await;
        let mut config = test_config(&db_url);
        adjust(&mut config);
        let pool = concierge_shared::db::connect(&db_url, 20).await.unwrap();
        let shutdown = CancellationToken::new();
        let state = concierge_api::AppState::build(config.clone(), pool.clone(), shutdown.clone()).await.unwrap();
        let hub = state.hub.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { concierge_api::serve(listener, concierge_api::router(state), shutdown).await.unwrap() }
        });
        let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        Self { addr, db_url, pool, config, client, hub, worker: false, shutdown, tasks: vec![server] }
    }

    /// The API and the workers, both in-process.
    pub async fn spawn_with_worker() -> Self {
        let mut app = Self::spawn().await;
        app.start_worker().await;
        app
    }

    pub async fn start_worker(&mut self) {
        self.worker = true;
        let ctx = concierge_worker::Context::build(&self.config, self.pool.clone()).await.unwrap();
        let (config, shutdown) = (self.config.clone(), self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            concierge_worker::run(&config, ctx, concierge_worker::WorkerOptions::default(), shutdown).await.unwrap()
        }));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/concierge{}", self.addr, path)
    }

    /// Open a conversation; `None` opens it as a new visitor. Returns `(id, bearer, stream token)`.
    pub async fn open(&self, bearer: Option<&str>) -> Conversation {
        let (status, body) = self
            .post(bearer, "/conversations/", json!({ "page_url": "https://lectio.ru/app", "page_title": "Lectio" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let bearer = match bearer {
            Some(token) => token.to_owned(),
            None => body["visitor_token"].as_str().expect("a visitor token").to_owned(),
        };
        Conversation {
            id: body["id"].as_str().unwrap().to_owned(),
            bearer,
            stream_token: body["stream_token"]["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn post(&self, bearer: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        response(request.send().await.unwrap()).await
    }

    pub async fn get(&self, bearer: Option<&str>, path: &str) -> (StatusCode, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        response(request.send().await.unwrap()).await
    }

    /// Post a user message and expect it accepted.
    pub async fn say(&self, conversation: &Conversation, content: &str) -> Value {
        let (status, body) = self
            .post(
                Some(&conversation.bearer),
                &format!("/conversations/{}/messages/", conversation.id),
                json!({ "content": content }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    pub async fn stream(&self, conversation: &Conversation, last_event_id: Option<i64>) -> Sse {
        let url = self.url(&format!("/conversations/{}/stream/?token={}", conversation.id, conversation.stream_token));
        Sse::connect(&self.client, &url, last_event_id).await
    }

    /// Unless the user has written in the conversation already, write a first question (one the
    /// offline engine asks to clarify) and, with workers running, wait for its answer: what a
    /// user does before asking for a person, which needs a question to answer.
    pub async fn write_first(&self, conversation: &Conversation) {
        let written: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1::uuid AND role = 'user'")
                .bind(&conversation.id)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        if written > 0 {
            return;
        }
        let question = self.say(conversation, "Здравствуйте, у меня вопрос").await;
        if self.worker {
            wait_until("the first question answered", WAIT, async || {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages WHERE reply_to = $1::uuid")
                    .bind(question["id"].as_str().unwrap())
                    .fetch_one(&self.pool)
                    .await
                    .unwrap()
                    > 0
            })
            .await;
        }
    }

    /// Messages of the conversation as stored, by sequence.
    pub async fn stored_messages(&self, conversation: &str) -> Vec<(i64, String, String)> {
        sqlx::query_as("SELECT seq, role, content FROM messages WHERE conversation_id = $1::uuid ORDER BY seq")
            .bind(conversation)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub struct Conversation {
    pub id: String,
    pub bearer: String,
    pub stream_token: String,
}

pub async fn response(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// A minimal Server-Sent Events client.
pub struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    pub async fn connect(client: &reqwest::Client, url: &str, last_event_id: Option<i64>) -> Self {
        let mut request = client.get(url).timeout(Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap_or_default());
        Self::from_response(response)
    }

    /// The events of a response already known to be a stream.
    pub fn from_response(response: reqwest::Response) -> Self {
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Self { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next event, or `None` once the server has ended the stream.
    pub async fn next_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.buffered() {
                return Some(event);
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event (comments and retry hints skipped); panics after `WAIT`.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(WAIT).await
    }

    /// The next event, waiting up to `within` (a real model can take longer than [`WAIT`]).
    pub async fn next_within(&mut self, within: Duration) -> SseEvent {
        tokio::time::timeout(within, self.next_inner()).await.expect("no SSE event in time")
    }

    async fn next_inner(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.buffered() {
                return event;
            }
            let chunk = self.body.next().await.expect("the stream ended").unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The first whole event in the buffer, taken out of it.
    fn buffered(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                return Some(SseEvent { id, event, data: serde_json::from_str(&data).unwrap() });
            }
        }
        None
    }

    /// Skip events until one from `role` arrives.
    pub async fn next_from(&mut self, role: &str) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.data["role"] == role {
                return event;
            }
        }
    }
}

// Waiting. Tests wait on a condition they can observe (a row, a call the fake received, an
// event), never for a fixed time; the fakes' simulated latency is the only other sleep.

/// The first and the longest pause between two checks of a [`wait_until`].
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(100);

/// What a [`wait_until`] check returns: `Ok` with what it found once the condition holds,
/// otherwise what it saw instead, for the message when time runs out.
pub trait Condition {
    type Found;
    fn holds(self) -> Result<Self::Found, String>;
}

impl Condition for bool {
    type Found = ();
    fn holds(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Condition for Option<T> {
    type Found = T;
    fn holds(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: std::fmt::Display> Condition for Result<T, E> {
    type Found = T;
    fn holds(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// Check until the condition holds and return what the check found; after `within`, panic
/// naming `what` was awaited and what the last check saw.
pub async fn wait_until<C: Condition>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> C) -> C::Found {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = POLL_FIRST;
    loop {
        let seen = match check().await.holds() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            let seen = if seen.is_empty() { seen } else { format!("; the last check saw: {seen}") };
            panic!("timed out after {within:?} waiting for {what}{seen}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// A fake peer being slow on purpose (a hanging model, a slow platform, Telegram's long
/// polling). Not a way for a test to wait for something: that is [`wait_until`].
pub async fn simulate_delay(delay: Duration) {
    tokio::time::sleep(delay).await
}

impl TestApp {
    /// Wait until every queued job has run to its end (done, killed, or failed with no try left).
    pub async fn wait_for_idle_queue(&self) {
        wait_until("every queued job to finish", WAIT, async || {
            let open = concierge_shared::queue_schema::count_unfinished_jobs(&self.pool).await.unwrap();
            if open == 0 { Ok(()) } else { Err(format!("{open} unfinished jobs")) }
        })
        .await
    }

    /// Assert that `sse` has nothing more to say: once every queued job has run, a message
    /// posted now is the next event. (Events are delivered in commit order, so anything the
    /// jobs produced would come first; the reply the message itself may get is not waited for.)
    pub async fn assert_stream_quiet(&self, conversation: &Conversation, sse: &mut Sse) {
        self.wait_for_idle_queue().await;
        let marker = self.say(conversation, "(the end of what this test expects)").await;
        loop {
            let next = sse.next().await;
            // Announcing the marker's own reply may overtake the marker: that says nothing.
            if next.data["reply_to"] == marker["id"] && matches!(next.event.as_str(), "typing" | "delta") {
                continue;
            }
            assert_eq!(next.data["id"], marker["id"], "an unexpected event: {next:?}");
            return;
        }
    }
}

/// Errors logged by the code under test since the first call of [`logged_errors`], which
/// installs the global `tracing` subscriber that keeps them.
static ERRORS: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();

/// How many errors logged so far contain every one of `fragments` (message and fields, as
/// `name=value`). For what a test cannot see anywhere else, such as a worker stopping while
/// the database is out of reach: count before, then wait for the count to grow.
pub fn logged_errors(fragments: &[&str]) -> usize {
    let errors = ERRORS.get_or_init(|| {
        use tracing_subscriber::{Layer, filter::LevelFilter, layer::SubscriberExt};
        let subscriber = tracing_subscriber::registry().with(ErrorLog.with_filter(LevelFilter::ERROR));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in the tests");
        Default::default()
    });
    let errors = errors.lock().unwrap();
    errors.iter().filter(|error| fragments.iter().all(|fragment| error.contains(fragment))).count()
}

struct ErrorLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!("{}={value} ", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        if let Some(errors) = ERRORS.get() {
            errors.lock().unwrap().push(fields.0);
        }
    }
}
