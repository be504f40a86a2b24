//! `concierge bench`: the figures behind Concierge's speed and memory goals, measured in one
//! run on a private PostgreSQL cluster, with the API and the workers as separate processes.
//!
//! 1. Intake: user messages accepted per second by one API process under concurrent clients
//!    (no worker running, so only the write path is measured), beside pgbench running the
//!    same write (the same one-statement insert of message and job, whose trigger NOTIFYs)
//!    from as many clients: the database's own ceiling for that work on this machine.
//! 2. Answer latency: from sending a message to receiving its reply on the conversation's SSE
//!    stream, with the offline engine, over many concurrent conversations: once with the
//!    lexical search, once hybrid, each query embedded by an embeddings server on loopback
//!    (the query cache off, so that every message pays for its embedding).
//! 3. Idle streams: how many SSE streams one API process holds, and its memory.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Args;
use concierge_shared::{
    config::{Config, EmbeddingsConfig},
    embeddings::Embedder,
    pg::{self, Cluster, ClusterOptions},
};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent clients posting messages in the intake test (and pgbench clients).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each intake measurement runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent conversations in the latency test.
    #[arg(long, default_value_t = 50)]
    pub conversations: usize,
    /// Messages each conversation sends in the latency test.
    #[arg(long, default_value_t = 12)]
    pub messages: usize,
    /// Pause of each conversation between a reply and its next message, in milliseconds
    /// (randomised ±50%), as people read before they type; 0 sends back to back.
    #[arg(long, default_value_t = 250)]
    pub think_ms: u64,
    /// Idle SSE streams to open against one API process.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// An embeddings server for the hybrid latency case (base URL of `POST /embeddings`).
    /// Default: one the benchmark serves on loopback, answering at once.
    #[arg(long)]
    pub embeddings_url: Option<String>,
    /// The passage model on `--embeddings-url`.
    #[arg(long, default_value = "bench", requires = "embeddings_url")]
    pub embeddings_model: String,
    /// The query model on `--embeddings-url` (default: the passage model).
    #[arg(long, requires = "embeddings_url")]
    pub embeddings_query_model: Option<String>,
    /// Count the database statements of each latency run (pg_stat_statements) and print the
    /// most frequent ones, per answered message.
    #[arg(long)]
    pub statements: bool,
    /// With `bench saturate`: record the API and the worker with `perf record -g` during the
    /// full pipeline's run at 50 conversations, and draw their flame graphs.
    #[arg(long)]
    pub profile: bool,
}

const SECRET: &str = "bench-secret-0123456789-abcdefghij";

/// Questions the knowledge base answers, so that every message gets an assistant reply.
const QUESTIONS: &[&str] = &[
    "Как оплатить подписку?",
    "Нет звука на уроке",
    "Как подключить Zoom?",
    "Как сбросить пароль?",
    "Как отменить подписку?",
    "Где найти чек об оплате?",
    "Как скачать запись урока?",
    "Как перенести урок?",
];

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    on_private_cluster("concierge-bench", args.statements, async |cluster| run_on(&config, cluster, &args).await).await
}

/// Run `bench` on a private cluster made for it in a temporary folder named `name`, removed
/// afterwards; `statements`: with pg_stat_statements loaded.
pub(crate) async fn on_private_cluster(
    name: &str,
    statements: bool,
    bench: impl AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let options = ClusterOptions { data_dir: dir.clone(), ephemeral: false, statements };
    println!("Starting a private PostgreSQL cluster in {}", dir.display());
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options)).await??;
    let result = bench(&cluster).await;
    tokio::task::spawn_blocking(move || cluster.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A database on `cluster` with the migrations, the knowledge base and the actions: the same
/// start as the all-in-one binary. Returns its URL and a small pool on it.
pub(crate) async fn prepare(config: &Config, cluster: &Cluster) -> anyhow::Result<(String, sqlx::PgPool)> {
    crate::create_database(&cluster.url("postgres"), "bench").await?;
    let url = cluster.url("bench");
    let pool = concierge_shared::db::connect(&url, 4).await?;
    concierge_shared::db::migrate(&pool).await?;
    concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?;
    concierge_shared::actions::load_fixtures(&pool, &config.fixtures_dir.join("initial_actions.json")).await?;
    Ok((url, pool))
}

async fn run_on(config: &Config, cluster: &Cluster, args: &BenchArgs) -> anyhow::Result<()> {
    let (url, pool) = prepare(config, cluster).await?;
    if args.statements {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build()?;

    // 1. Intake.
    println!("\n[1/3] Intake: {} clients for {} s, no worker running", args.clients, args.seconds);
    let api = ApiProcess::spawn(&url).await?;
    let user = user_token();
    let mut conversations = Vec::new();
    for _ in 0..args.clients {
        conversations.push(api.open(&http, &user).await?);
    }
    api.post(&http, &user, &conversations[0], "прогрев").await?;
    let accepted = intake(&http, &api, &user, &conversations, Duration::from_secs(args.seconds)).await?;
    let api_rate = accepted as f64 / args.seconds as f64;
    sqlx::query("CREATE TABLE bench_clients (n int PRIMARY KEY, conversation_id uuid NOT NULL)").execute(&pool).await?;
    for (n, id) in conversations.iter().enumerate() {
        sqlx::query("INSERT INTO bench_clients VALUES ($1, $2::uuid)").bind(n as i32).bind(id).execute(&pool).await?;
    }
    let pgbench_rate = pgbench(cluster, args.clients, args.seconds).await?;
    let ratio = api_rate / pgbench_rate;
    concierge_shared::queue_schema::delete_all_jobs(&pool).await?;

    // 2. Latency, lexical then hybrid.
    println!(
        "\n[2/3] Answer latency: {} conversations × {} messages, ~{} ms between a reply and the next message, one worker process",
        args.conversations, args.messages, args.think_ms
    );
    let lexical = measure_latency(&http, &api, &user, &url, &pool, args, &[]).await?;
    let embeddings = match &args.embeddings_url {
        Some(url) => url.clone(),
        None => crate::bench_embeddings::serve().await?,
    };
    let mut settings = EmbeddingsConfig::new(&embeddings, &args.embeddings_model);
    if let Some(model) = &args.embeddings_query_model {
        settings.query_model = model.clone();
    }
    println!("      … and hybrid, queries embedded by {embeddings} (model {})", settings.query_model);
    concierge_shared::knowledge::embed::sync(&pool, &Embedder::new(&settings)).await?;
    let env = [
        ("CONCIERGE_EMBEDDINGS_URL", embeddings.clone()),
        ("CONCIERGE_EMBEDDINGS_MODEL", settings.model.clone()),
        ("CONCIERGE_EMBEDDINGS_QUERY_MODEL", settings.query_model.clone()),
        ("CONCIERGE_EMBEDDINGS_QUERY_CACHE", "0".to_owned()),
    ];
    let hybrid = measure_latency(&http, &api, &user, &url, &pool, args, &env).await?;

    // 3. Idle streams.
    println!("\n[3/3] Idle SSE streams: {} against one API process", args.streams);
    api.stop().await;
    let api = ApiProcess::spawn(&url).await?;
    let (held, rss_before, rss_after) = idle_streams(&http, &api, &user, args.streams).await?;
    api.stop().await;

    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("\n=== Concierge benchmark ({} cores) ===", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!(
        "intake   API {api_rate:>8.0} msg/s   pgbench {pgbench_rate:>8.0} tx/s   ratio {ratio:.2}   (target ≥ 0.60) {}",
        mark(ratio >= 0.6)
    );
    for (name, measured) in [("lexical", &lexical), ("hybrid ", &hybrid)] {
        let (p50, p99) = (measured.quantile_ms(0.50), measured.quantile_ms(0.99));
        println!(
            "latency  {name} p50 {p50:>6.1} ms   p99 {p99:>6.1} ms   max {:.1} ms   over {} messages at {:.0} msg/s   (target p50 ≤ 15, p99 ≤ 60) {}",
            measured.histogram.max() as f64 / 1000.0,
            measured.histogram.len(),
            measured.rate,
            mark(p50 <= 15.0 && p99 <= 60.0)
        );
        if let Some(statements) = &measured.statements {
            statements.print(measured.histogram.len());
        }
    }
    println!(
        "streams  {held} idle streams held   API RSS {:.0} MB → {:.0} MB   (target 10,000 under 300 MB) {}",
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        mark(held >= 10_000 && rss_after < 300_000_000)
    );
    Ok(())
}

/// Reply latencies of one run of the latency test.
struct Latency {
    histogram: Histogram<u64>,
    /// Messages answered per second.
    rate: f64,
    /// With `--statements`: what the database ran meanwhile.
    statements: Option<Statements>,
}

/// The statements run during a latency test, most frequent first.
struct Statements {
    total: i64,
    top: Vec<(i64, f64, String)>,
}

impl Statements {
    async fn reset(pool: &sqlx::PgPool) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await?;
        Ok(())
    }

    async fn read(pool: &sqlx::PgPool) -> anyhow::Result<Self> {
        let rows: Vec<(i64, f64, String)> = sqlx::query_as(
            "SELECT calls, total_exec_time / calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'
             ORDER BY calls DESC",
        )
        .fetch_all(pool)
        .await?;
        Ok(Self { total: rows.iter().map(|row| row.0).sum(), top: rows.into_iter().take(25).collect() })
    }

    fn print(&self, messages: u64) {
        let per = |calls: i64| calls as f64 / messages.max(1) as f64;
        println!("         {:.1} statements per answered message; the most frequent:", per(self.total));
        for (calls, mean_ms, query) in &self.top {
            println!("         {:>6.2}/msg {:>7.3} ms  {query}", per(*calls), mean_ms);
        }
    }
}

impl Latency {
    fn quantile_ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// The latency test with a fresh worker process started with `env`.
async fn measure_latency(
    http: &reqwest::Client,
    api: &ApiProcess,
    user: &str,
    url: &str,
    pool: &sqlx::PgPool,
    args: &BenchArgs,
    env: &[(&str, String)],
) -> anyhow::Result<Latency> {
    let mut command = spawn_concierge_command(url, &["worker", "--concurrency", "16"])?;
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut worker = command.spawn().context("cannot start a worker process")?;
    // Timed from the worker's first reply on: its start-up is not an answer's latency.
    latency(http, api, user, 1, 1, 0).await.context("the worker's first reply")?;
    if args.statements {
        Statements::reset(pool).await?;
    }
    let started = Instant::now();
    let histogram = latency(http, api, user, args.conversations, args.messages, args.think_ms).await;
    let rate = histogram.as_ref().map_or(0.0, |h| h.len() as f64 / started.elapsed().as_secs_f64());
    let statements = if args.statements { Some(Statements::read(pool).await?) } else { None };
    worker.kill().await.ok();
    Ok(Latency { histogram: histogram?, rate, statements })
}

pub(crate) fn user_token() -> String {
    platform_token("bench-user")
}

/// A day's platform token for user `sub`.
pub(crate) fn platform_token(sub: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() + 86_400;
    let claims = json!({ "sub": sub, "name": "Bench", "role": "user", "exp": exp });
    concierge_api::auth::sign_platform_token(SECRET, &claims).expect("signing a token")
}

pub(crate) struct ApiProcess {
    child: Child,
    pub(crate) base: String,
}

impl ApiProcess {
    pub(crate) async fn spawn(url: &str) -> anyhow::Result<Self> {
        Self::spawn_with(url, &[], false).await
    }

    /// An API process with more settings; `limited`: with its default rate limits.
    pub(crate) async fn spawn_with(url: &str, env: &[(&str, String)], limited: bool) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = spawn_concierge_command(url, &["api"])?;
        if limited {
            with_default_limits(&mut command);
        }
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = command.env("CONCIERGE_BIND", format!("127.0.0.1:{port}")).spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            if Instant::now() > deadline {
                bail!("the API process did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, base: format!("{base}/api/concierge") })
    }

    pub(crate) async fn open(&self, http: &reqwest::Client, bearer: &str) -> anyhow::Result<String> {
        self.open_as(http, &Client { bearer: bearer.to_owned(), forwarded_for: None }).await
    }

    async fn open_as(&self, http: &reqwest::Client, client: &Client) -> anyhow::Result<String> {
        let body: Value = client
            .request(http.post(format!("{}/conversations", self.base)))
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(body["id"].as_str().context("no id")?.to_owned())
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        bearer: &str,
        conversation: &str,
        content: &str,
    ) -> anyhow::Result<Value> {
        Ok(http
            .post(format!("{}/conversations/{conversation}/messages", self.base))
            .bearer_auth(bearer)
            .json(&json!({ "content": content }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn rss(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kb| kb * 1024)
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The rate limits switched off for the benchmark's processes.
const BENCH_UNLIMITED: [&str; 9] = [
    "CONCIERGE_LIMIT_CONVERSATIONS_PER_HOUR",
    "CONCIERGE_LIMIT_MESSAGES_PER_MINUTE",
    "CONCIERGE_LIMIT_IP_MESSAGES_PER_MINUTE",
    "CONCIERGE_LIMIT_ESCALATIONS_PER_DAY",
    "CONCIERGE_LIMIT_ACTION_RUNS_PER_MINUTE",
    "CONCIERGE_LIMIT_STREAM_TOKENS_PER_MINUTE",
    "CONCIERGE_LIMIT_STREAMS_PER_PRINCIPAL",
    "CONCIERGE_LIMIT_STREAMS_PER_PROCESS",
    "CONCIERGE_LIMIT_ADMIN_SEARCH_PER_MINUTE",
];

pub(crate) fn spawn_concierge_command(url: &str, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(args)
        .env("DATABASE_URL", url)
        .env("CONCIERGE_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .env("CONCIERGE_DB_MAX_CONNECTIONS", "32")
        // The benchmark is one client driving thousands of conversations and streams from
        // 127.0.0.1 as fast as it can: it measures the system, not the limits.
        .envs(BENCH_UNLIMITED.iter().map(|name| (name, "0")))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// Undo [`spawn_concierge_command`]'s switching off of the limits.
pub(crate) fn with_default_limits(command: &mut Command) {
    for name in BENCH_UNLIMITED {
        command.env_remove(name);
    }
}

async fn intake(
    http: &reqwest::Client,
    api: &ApiProcess,
    bearer: &str,
    conversations: &[String],
    duration: Duration,
) -> anyhow::Result<u64> {
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = conversations
        .iter()
        .map(|conversation| {
            let (http, url, bearer) =
                (http.clone(), format!("{}/conversations/{conversation}/messages", api.base), bearer.to_owned());
            let (accepted, failed) = (accepted.clone(), failed.clone());
            tokio::spawn(async move {
                let body = serde_json::to_vec(&json!({ "content": "Как оплатить подписку?" })).unwrap();
                while Instant::now() < deadline {
                    let response = http
                        .post(&url)
                        .bearer_auth(&bearer)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 202 => accepted.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  {failed} requests failed");
    }
    Ok(accepted.load(Ordering::Relaxed))
}

/// pgbench with one client per conversation, each running the API's own write statement.
async fn pgbench(cluster: &Cluster, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    pgbench_script(cluster, PGBENCH_SCRIPT, clients, seconds).await
}

/// pgbench running `script` (prepared) from `clients` clients for `seconds`; its rate.
pub(crate) async fn pgbench_script(
    cluster: &Cluster,
    script: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let text = script;
    let script = std::env::temp_dir().join(format!("concierge-bench-{}.sql", std::process::id()));
    std::fs::write(&script, text)?;
    let pgbench: PathBuf = pg::find_tool("pgbench")?;
    let output = Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args(["-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string()])
        .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string(), "-U", cluster.user(), "bench"])
        .env("PGPASSWORD", cluster.password())
        .output()
        .await
        .context("cannot run pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
    }
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next()?.parse().ok())
        .context("no tps in pgbench's output")?;
    Ok(tps)
}

/// The statement `db::messages::post_user_message` runs, with pgbench's client id choosing
/// the conversation. (`chr(58)` is a colon, which pgbench would read as a variable.)
pub(crate) const PGBENCH_SCRIPT: &str = concat!(
    r#"WITH conv AS (
    UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
    WHERE id = (SELECT conversation_id FROM bench_clients WHERE n = :client_id)
      AND owner = 'user' || chr(58) || 'bench-user' AND status = 'open'
    RETURNING id, last_seq
), msg AS (
    INSERT INTO messages (id, conversation_id, seq, role, content, client_message_id)
    SELECT gen_random_uuid(), conv.id, conv.last_seq, 'user', 'Как оплатить подписку?', NULL FROM conv
    ON CONFLICT (conversation_id, client_message_id) DO NOTHING
    RETURNING id
), job AS (
    "#,
    concierge_shared::insert_apalis_job!(
        "gen_random_uuid()::text",
        "'concierge::process-message'",
        "convert_to(json_build_object('message_id', msg.id)::text, 'UTF8')",
        "5",
        "msg.id::text"
    ),
    r#" FROM msg
)
SELECT id FROM msg;
"#
);

async fn latency(
    http: &reqwest::Client,
    api: &ApiProcess,
    bearer: &str,
    conversations: usize,
    messages: usize,
    think_ms: u64,
) -> anyhow::Result<Histogram<u64>> {
    let client = Client { bearer: bearer.to_owned(), forwarded_for: None };
    latency_of(http, api, &vec![client; conversations], messages, think_ms).await
}

/// Who sends a conversation's messages: a bearer token, and the client address a trusted
/// proxy would name.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) bearer: String,
    pub(crate) forwarded_for: Option<String>,
}

impl Client {
    fn request(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.bearer_auth(&self.bearer);
        match &self.forwarded_for {
            Some(address) => request.header("x-forwarded-for", address),
            None => request,
        }
    }
}

/// One conversation per client, each sending `messages` questions `think_ms` apart (±50%)
/// after its previous reply; the time from each POST to its reply on the stream.
pub(crate) async fn latency_of(
    http: &reqwest::Client,
    api: &ApiProcess,
    clients: &[Client],
    messages: usize,
    think_ms: u64,
) -> anyhow::Result<Histogram<u64>> {
    latency_paced(http, api, clients, messages, Pace::Think(think_ms)).await
}

/// When a conversation sends its next message.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// `think_ms` (±50%) after the previous reply; 0: at once.
    Think(u64),
    /// On a fixed schedule, one message per period from a random start within the first one
    /// (or at once after the previous reply, when that came later than the next slot).
    Every(Duration),
}

/// [`latency_of`], with the conversations paced by `pace`.
pub(crate) async fn latency_paced(
    http: &reqwest::Client,
    api: &ApiProcess,
    clients: &[Client],
    messages: usize,
    pace: Pace,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let id = api.open_as(http, client).await?;
        let (http, base, client) = (http.clone(), api.base.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).unwrap();
            let response = client
                .request(http.get(format!("{base}/conversations/{id}/stream")))
                .send()
                .await?
                .error_for_status()?;
            let mut events = SseReader::new(response);
            let mut next = match pace {
                Pace::Every(period) => tokio::time::Instant::now() + period.mul_f64(rand::random_range(0.0..1.0)),
                Pace::Think(_) => tokio::time::Instant::now(),
            };
            for i in 0..messages {
                match pace {
                    Pace::Think(think_ms) if think_ms > 0 => {
                        let pause = rand::random_range(think_ms / 2..=think_ms + think_ms / 2);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    Pace::Think(_) => {}
                    Pace::Every(period) => {
                        tokio::time::sleep_until(next).await;
                        next += period;
                    }
                }
                let question = QUESTIONS[(n + i) % QUESTIONS.len()];
                let started = Instant::now();
                let sent: Value = client
                    .request(http.post(format!("{base}/conversations/{id}/messages")))
                    .json(&json!({ "content": question }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                loop {
                    let event = tokio::time::timeout(Duration::from_secs(30), events.next())
                        .await
                        .context("no reply within 30 s")??;
                    if event["reply_to"] == sent["id"] {
                        break;
                    }
                }
                histogram.record(started.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut total = Histogram::<u64>::new(3)?;
    for task in tasks {
        total.add(task.await??)?;
    }
    Ok(total)
}

/// The `data:` of each SSE event, as JSON.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self { body: response.bytes_stream().boxed(), buffer: String::new() }
    }

    async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Ok(serde_json::from_str(data.trim_start())?);
                }
            }
            let chunk = self.body.next().await.context("the stream ended")??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Wait for the first bytes: the stream is open.
    async fn opened(&mut self) -> anyhow::Result<()> {
        let chunk = self.body.next().await.context("the stream ended")??;
        self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        Ok(())
    }
}

/// Open `count` streams (one per conversation) and keep them open while measuring the API
/// process's resident memory. Returns (streams held, RSS before, RSS with all open).
async fn idle_streams(
    http: &reqwest::Client,
    api: &ApiProcess,
    bearer: &str,
    count: usize,
) -> anyhow::Result<(usize, u64, u64)> {
    // Conversations are created through the API in parallel batches.
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let batch = futures::future::join_all(chunk.iter().map(|_| api.open(http, bearer))).await;
        for id in batch {
            ids.push(id?);
        }
    }
    let rss_before = api.rss();
    let streams_client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let mut open = Vec::with_capacity(count);
    for chunk in ids.chunks(500) {
        let batch = futures::future::join_all(chunk.iter().map(|id| {
            let (client, url, bearer) =
                (streams_client.clone(), format!("{}/conversations/{id}/stream", api.base), bearer.to_owned());
            async move {
                let response = client.get(url).bearer_auth(bearer).send().await?.error_for_status()?;
                let mut reader = SseReader::new(response);
                reader.opened().await?;
                anyhow::Ok(reader)
            }
        }))
        .await;
        for stream in batch {
            open.push(stream?);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = api.rss();
    let held = open.len();
    drop(open);
    Ok((held, rss_before, rss_after))
}

/// 10,000 sockets need more than the usual 1,024 descriptors; children inherit the limit.
pub(crate) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
