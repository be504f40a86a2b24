//! `concierge bench abuse`: what a flood does to everyone else. Normal conversations (each its
//! own user, from its own address) are timed alone, then again while one client floods every
//! limited route as fast as it can, and many visitors, each from its own address, write and call
//! an operator. It reports the normal conversations' latency both times (target: p99 under
//! load within 2× of the unloaded run), what the flood got (429s), the API process's memory
//! before and after, and the Telegram topics created against the hourly cap.
//!
//! The system runs with its default limits, behind a trusted proxy (loopback) whose
//! `X-Forwarded-For` names each client, with Telegram pointed at a loopback Bot API.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use concierge_shared::{config::Config, pg::Cluster};
use serde_json::{Value, json};

use crate::{
    bench::{self, ApiProcess, BenchArgs, Client},
    bench_telegram,
};

const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// New topics per hour in the run: the default.
const TOPICS_PER_HOUR: u64 = 30;
/// The flooding client's address.
const FLOODER: &str = "198.51.100.7";
/// Requests the flooder keeps in flight on each route.
const IN_FLIGHT: usize = 4;
/// Conversations the flooder opens (within the hourly limit of one address) to call an
/// operator in each.
const OWN_CONVERSATIONS: usize = 12;
/// The tally's name for the visitors' hand-overs.
const VISITORS: &str = "visitor hand-over";

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    bench::on_private_cluster("concierge-bench-abuse", false, async |cluster| run_on(&config, cluster, &args).await)
        .await
}

async fn run_on(config: &Config, cluster: &Cluster, args: &BenchArgs) -> anyhow::Result<()> {
    let (url, _pool) = bench::prepare(config, cluster).await?;
    let (telegram_url, telegram) = bench_telegram::serve().await?;
    let env = [
        ("CONCIERGE_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ("CONCIERGE_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SUPPORT_BOT_TOKEN", bench_telegram::TOKEN.to_owned()),
        ("SUPPORT_NOTIFICATIONS_CHAT_ID", bench_telegram::CHAT_ID.to_string()),
        ("CONCIERGE_TELEGRAM_API_URL", telegram_url),
        ("CONCIERGE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("CONCIERGE_TELEGRAM_TOPICS_PER_HOUR", TOPICS_PER_HOUR.to_string()),
    ];
    let api = ApiProcess::spawn_with(&url, &env, true).await?;
    let mut command = bench::spawn_concierge_command(&url, &["worker", "--concurrency", "16"])?;
    bench::with_default_limits(&mut command);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut worker = command.spawn().context("cannot start a worker process")?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build()?;
    // The worker's first reply: its start-up is not an answer's latency.
    bench::latency_of(&http, &api, &[normal_client(usize::MAX)], 1, 0).await.context("the worker's first reply")?;

    println!(
        "\n[1/2] {} normal conversations × {} messages, ~{} ms apart, alone",
        args.conversations, args.messages, args.think_ms
    );
    let clients: Vec<Client> = (0..args.conversations).map(normal_client).collect();
    let alone = bench::latency_of(&http, &api, &clients, args.messages, args.think_ms).await?;
    let rss_before = api.rss();

    println!("[2/2] the same, while one client floods every limited route and 100 visitors call an operator");
    let clients: Vec<Client> = (0..args.conversations).map(|n| normal_client(n + args.conversations)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::default();
    let flood = tokio::spawn(flood(http.clone(), api.base.clone(), stop.clone(), tally.clone()));
    let escalations = tokio::spawn(escalating_visitors(http.clone(), api.base.clone(), 100, tally.clone()));
    let loaded = bench::latency_of(&http, &api, &clients, args.messages, args.think_ms).await;
    stop.store(true, Ordering::Relaxed);
    let streams_held = flood.await??;
    escalations.await??;
    let rss_after = api.rss();
    let loaded = loaded?;
    // Give the worker time to open every topic the cap allows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut topics = telegram.topics.load(Ordering::Relaxed);
    while topics < TOPICS_PER_HOUR && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        topics = telegram.topics.load(Ordering::Relaxed);
    }
    worker.kill().await.ok();
    api.stop().await;

    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    let (alone_p50, alone_p99) = (quantile(&alone, 0.5), quantile(&alone, 0.99));
    let (loaded_p50, loaded_p99) = (quantile(&loaded, 0.5), quantile(&loaded, 0.99));
    println!(
        "\n=== Concierge abuse benchmark ({} cores) ===",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("normal   alone p50 {alone_p50:>6.1} ms  p99 {alone_p99:>6.1} ms   ({} messages)", alone.len());
    println!(
        "normal   flood p50 {loaded_p50:>6.1} ms  p99 {loaded_p99:>6.1} ms   ({} messages)   p99 ×{:.2} (target ≤ 2) {}",
        loaded.len(),
        loaded_p99 / alone_p99.max(0.001),
        mark(loaded_p99 <= 2.0 * alone_p99)
    );
    let counts = tally.0.lock().expect("tally lock").clone();
    let mut all_limited = true;
    for (route, statuses) in &counts {
        let limited = statuses.get(&429).copied().unwrap_or(0);
        let others: Vec<String> =
            statuses.iter().filter(|(status, _)| **status != 429).map(|(status, n)| format!("{status}: {n}")).collect();
        println!("flood    {route:<22} 429: {limited:>6}   {}", others.join("  "));
        // The visitors calling an operator are many clients, each within its limits.
        if *route != VISITORS {
            all_limited &= limited > 0;
        }
    }
    println!("flood    every route the flooder hit answered 429 {}", mark(all_limited));
    println!("flood    streams held open by the flooder at the end: {streams_held}");
    println!("memory   API RSS {:.0} MB → {:.0} MB during the flood", rss_before as f64 / 1e6, rss_after as f64 / 1e6);
    println!(
        "topics   {topics} created in Telegram for 100 hand-overs, cap {TOPICS_PER_HOUR} per hour {}",
        mark(topics <= TOPICS_PER_HOUR)
    );
    Ok(())
}

fn quantile(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// A platform user of their own, from an address of their own.
fn normal_client(n: usize) -> Client {
    Client {
        bearer: bench::platform_token(&format!("bench-user-{n}")),
        forwarded_for: Some(format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)),
    }
}

/// Responses by route and status.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<BTreeMap<&'static str, BTreeMap<u16, u64>>>>);

impl Tally {
    fn count(&self, route: &'static str, status: u16) {
        *self.0.lock().expect("tally lock").entry(route).or_default().entry(status).or_default() += 1;
    }
}

/// One client, one address, as fast as it can on every limited route until `stop`. Returns how
/// many streams it held open at the end.
async fn flood(http: reqwest::Client, base: String, stop: Arc<AtomicBool>, tally: Tally) -> anyhow::Result<usize> {
    let flooder = |request: reqwest::RequestBuilder| request.header("x-forwarded-for", FLOODER);
    // The flooder's own conversation, as a visitor.
    let opened: Value = flooder(http.post(format!("{base}/conversations")).json(&json!({})))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = opened["id"].as_str().context("no id")?.to_owned();
    let visitor = opened["visitor_token"].as_str().context("no visitor token")?.to_owned();
    let stream_token = opened["stream_token"]["token"].as_str().context("no stream token")?.to_owned();

    // A user of the flooder's with conversations of their own, each with a question in it, to
    // call an operator in one after another.
    let user = bench::platform_token("bench-flooder");
    let mut own = Vec::new();
    for _ in 0..OWN_CONVERSATIONS {
        let opened: Value = flooder(http.post(format!("{base}/conversations")).bearer_auth(&user).json(&json!({})))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let own_id = opened["id"].as_str().context("no id")?.to_owned();
        flooder(
            http.post(format!("{base}/conversations/{own_id}/messages"))
                .bearer_auth(&user)
                .json(&json!({ "content": "Где запись урока?" })),
        )
        .send()
        .await?
        .error_for_status()?;
        own.push(own_id);
    }

    type Make = Box<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>;
    let routes: Vec<(&'static str, Make)> = vec![
        ("open conversation", {
            let (http, base) = (http.clone(), base.clone());
            Box::new(move || http.post(format!("{base}/conversations")).json(&json!({})))
        }),
        ("post message", {
            let (http, base, id, visitor) = (http.clone(), base.clone(), id.clone(), visitor.clone());
            Box::new(move || {
                http.post(format!("{base}/conversations/{id}/messages"))
                    .bearer_auth(&visitor)
                    .json(&json!({ "content": "Как оплатить подписку?" }))
            })
        }),
        ("escalate", {
            // Round the flooder's own conversations: a hand-over in each costs a topic.
            let (http, base, user) = (http.clone(), base.clone(), user.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let own = Arc::new(own);
            Box::new(move || {
                let id = &own[next.fetch_add(1, Ordering::Relaxed) % own.len()];
                http.post(format!("{base}/conversations/{id}/escalate")).bearer_auth(&user)
            })
        }),
        ("run action", {
            let (http, base, id, visitor) = (http.clone(), base.clone(), id.clone(), visitor.clone());
            Box::new(move || {
                http.post(format!("{base}/conversations/{id}/actions/check_system_status/execute"))
                    .bearer_auth(&visitor)
                    .json(&json!({ "params": {} }))
            })
        }),
        ("stream token", {
            let (http, base, id, visitor) = (http.clone(), base.clone(), id.clone(), visitor.clone());
            Box::new(move || http.post(format!("{base}/conversations/{id}/stream-token")).bearer_auth(&visitor))
        }),
        ("admin search", {
            let (http, base) = (http.clone(), base.clone());
            Box::new(move || {
                http.get(format!("{base}/knowledge/search")).query(&[("q", "подписка")]).bearer_auth(ADMIN_TOKEN)
            })
        }),
        ("telegram webhook", {
            let (http, base) = (http.clone(), base.clone());
            Box::new(move || {
                http.post(format!("{base}/telegram/webhook"))
                    .header("x-telegram-bot-api-secret-token", WEBHOOK_SECRET)
                    .json(&json!({ "update_id": rand::random_range(1..i64::MAX) }))
            })
        }),
    ];
    let mut tasks = Vec::new();
    for (route, make) in routes {
        let make = Arc::new(make);
        for _ in 0..IN_FLIGHT {
            let (stop, tally, make) = (stop.clone(), tally.clone(), make.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let status = match flooder(make()).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    tally.count(route, status);
                }
            }));
        }
    }
    // Streams: open and hold as many as the server lets one visitor have.
    let streams = {
        let (http, tally, stop) = (http.clone(), tally.clone(), stop.clone());
        let url = format!("{base}/conversations/{id}/stream?token={stream_token}");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match flooder(http.get(&url)).send().await {
                    Ok(response) => {
                        tally.count("open stream", response.status().as_u16());
                        if response.status().is_success() {
                            held.push(response);
                        }
                    }
                    Err(_) => tally.count("open stream", 0),
                }
            }
            held.len()
        })
    };
    for task in tasks {
        task.await?;
    }
    Ok(streams.await?)
}

/// `count` visitors, each from an address of its own, who write once and call an operator:
/// more hand-overs than the hourly cap on new Telegram topics.
async fn escalating_visitors(http: reqwest::Client, base: String, count: usize, tally: Tally) -> anyhow::Result<()> {
    for n in 0..count {
        let address = format!("192.0.2.{}", n % 250 + 1);
        let forwarded = |request: reqwest::RequestBuilder| request.header("x-forwarded-for", address.clone());
        let opened: Value =
            forwarded(http.post(format!("{base}/conversations")).json(&json!({}))).send().await?.json().await?;
        let (Some(id), Some(visitor)) = (opened["id"].as_str(), opened["visitor_token"].as_str()) else {
            tally.count(VISITORS, 0);
            continue;
        };
        forwarded(
            http.post(format!("{base}/conversations/{id}/messages"))
                .bearer_auth(visitor)
                .json(&json!({ "content": "У меня не работает оплата" })),
        )
        .send()
        .await?;
        let status = forwarded(http.post(format!("{base}/conversations/{id}/escalate")).bearer_auth(visitor))
            .send()
            .await?
            .status();
        tally.count(VISITORS, status.as_u16());
    }
    Ok(())
}
