//! `concierge bench saturate`: the pipeline's throughput with every conversation sending back
//! to back, against its own ceilings measured in the same run on the same private cluster:
//!
//! - (a) the database's: pgbench running, per transaction, the statements one message costs
//!   end to end (the intake insert with its job row, the worker's job claim, the decision's
//!   lock and reads, the reply insert, the job's completion; the streams take the messages
//!   from their notifications), at the client count that gives its best rate;
//! - (b) the queue's: the project's own worker, set up as for real (apalis-postgres, its
//!   storage settings and insert notifications, the same concurrency), with a handler that
//!   does nothing, fed by pgbench running the intake statement;
//! - (c) the full pipeline: API and worker processes, the offline engine, 50 and 200
//!   conversations back to back; then 50 conversations paced at half of (c)'s rate.
//!
//! `--profile` records `perf record --call-graph dwarf` of the API and the worker during (c) at 50
//! conversations and draws a flame graph of each.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use concierge_shared::{config::Config, pg::Cluster, queue_schema::JobStatus};
use hdrhistogram::Histogram;
use tokio::process::{Child, Command};

use crate::bench::{self, ApiProcess, BenchArgs, Client, Pace};

/// pgbench client counts tried for (a); the best rate counts.
const PGBENCH_CLIENTS: [usize; 4] = [4, 8, 16, 32];
/// Conversation counts of (c).
const CONVERSATIONS: [usize; 2] = [50, 200];
/// Jobs each worker process runs at once, as in `concierge bench`.
const CONCURRENCY: &str = "16";
const PROCESS_MESSAGE: &str = "concierge::process-message";

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    bench::on_private_cluster("concierge-bench-saturate", false, async |cluster| run_on(&config, cluster, &args).await)
        .await
}

async fn run_on(config: &Config, cluster: &Cluster, args: &BenchArgs) -> anyhow::Result<()> {
    let (url, pool) = bench::prepare(config, cluster).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build()?;
    let api = ApiProcess::spawn(&url).await?;
    let user = bench::user_token();
    let most = *PGBENCH_CLIENTS.iter().max().unwrap_or(&16);
    sqlx::query("CREATE TABLE bench_clients (n int PRIMARY KEY, conversation_id uuid NOT NULL)").execute(&pool).await?;
    for n in 0..most {
        let id = api.open(&http, &user).await?;
        sqlx::query("INSERT INTO bench_clients VALUES ($1, $2::uuid)").bind(n as i32).bind(&id).execute(&pool).await?;
    }

    // pgbench's clients claim jobs under worker names of their own, which apalis-postgres
    // requires registered (the row its `register.sql` writes).
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
         SELECT 'pgbench-' || n, $1, 'PostgresStorage', '', now() FROM generate_series(0, $2 - 1) AS n",
    )
    .bind(PROCESS_MESSAGE)
    .bind(most as i32)
    .execute(&pool)
    .await?;

    // (a) The database's ceiling for the whole pipeline.
    println!("\n[a] pgbench, the statements of one message end to end, {} s per client count", args.seconds);
    let mut best = (0, 0.0);
    for clients in PGBENCH_CLIENTS {
        let rate = bench::pgbench_script(cluster, &pipeline_script(), clients, args.seconds).await?;
        println!("    {clients:>3} clients: {rate:>7.0} messages/s");
        if rate > best.1 {
            best = (clients, rate);
        }
    }
    let (a_clients, a) = best;
    concierge_shared::queue_schema::delete_all_jobs(&pool).await?;

    // (b) The queue's ceiling: the worker with a no-op handler, fed by the intake statement.
    println!("\n[b] the process-message worker with a no-op handler, fed by pgbench's intake for {} s", args.seconds);
    let mut noop = bench::spawn_concierge_command(
        &url,
        &["worker", "--queues", "process-message", "--concurrency", CONCURRENCY, "--noop-handler"],
    )?
    .spawn()
    .context("cannot start the no-op worker")?;
    // The intake statement, with job ids the worker decodes (ULIDs, as the API writes them).
    let feed = bench::PGBENCH_SCRIPT.replace("gen_random_uuid()::text", "apalis.generate_ulid()::text");
    // Warm-up: the worker registers and drains its first jobs.
    bench::pgbench_script(cluster, &feed, a_clients, 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done_before = jobs(&pool, JobStatus::Done).await?;
    let started = Instant::now();
    let inserted = bench::pgbench_script(cluster, &feed, a_clients, args.seconds).await?;
    let b = (jobs(&pool, JobStatus::Done).await? - done_before) as f64 / started.elapsed().as_secs_f64();
    let backlog = jobs(&pool, JobStatus::Pending).await? + jobs(&pool, JobStatus::Queued).await?;
    println!("    {inserted:.0} jobs/s inserted, {b:.0} jobs/s completed, {backlog} waiting at the end");
    stop(&mut noop).await;
    concierge_shared::queue_schema::delete_all_jobs(&pool).await?;

    // (c) The full pipeline, back to back.
    let mut worker = bench::spawn_concierge_command(&url, &["worker", "--concurrency", CONCURRENCY])?
        .spawn()
        .context("cannot start a worker process")?;
    // Timed from the worker's first reply on: its start-up is not an answer's latency.
    bench::latency_of(&http, &api, &[client(&user)], 1, 0).await.context("the worker's first reply")?;
    let mut runs = Vec::new();
    for (n, conversations) in CONVERSATIONS.into_iter().enumerate() {
        println!("\n[c] full pipeline, {conversations} conversations × {} messages back to back", args.messages);
        let profile = if args.profile && n == 0 {
            Some((Profile::start("api", api.pid())?, Profile::start("worker", worker.id())?))
        } else {
            None
        };
        let clients = vec![client(&user); conversations];
        let started = Instant::now();
        let histogram = bench::latency_paced(&http, &api, &clients, args.messages, Pace::Think(0)).await?;
        let rate = histogram.len() as f64 / started.elapsed().as_secs_f64();
        if let Some((api_profile, worker_profile)) = profile {
            for profile in [api_profile, worker_profile] {
                profile.finish().await?;
            }
        }
        runs.push((conversations, rate, histogram));
    }
    let (_, c, _) = &runs[0];
    let c = *c;
    let conversations = CONVERSATIONS[0];
    // Half the rate over the same conversations: each sends once per `period`.
    let period = Duration::from_secs_f64(conversations as f64 / (c / 2.0));
    println!(
        "\n[c] paced: {conversations} conversations, one message each every {} ms (≈ {:.0} msg/s)",
        period.as_millis(),
        c / 2.0
    );
    let clients = vec![client(&user); conversations];
    let started = Instant::now();
    let paced = bench::latency_paced(&http, &api, &clients, args.messages, Pace::Every(period)).await?;
    let paced_rate = paced.len() as f64 / started.elapsed().as_secs_f64();
    worker.kill().await.ok();
    api.stop().await;

    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("\n=== Concierge saturation ({} cores) ===", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("(a) database, pgbench of one message's statements   {a:>7.0} msg/s   ({a_clients} clients)");
    println!(
        "(b) queue, no-op handler                             {b:>7.0} jobs/s  (fed at {inserted:.0}/s, {backlog} left waiting)"
    );
    for (conversations, rate, histogram) in &runs {
        println!(
            "(c) full pipeline, {conversations:>3} conversations            {rate:>7.0} msg/s   (c)/(a) {:.2}   (c)/(b) {:.2}   p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms over {} messages",
            rate / a,
            rate / b,
            ms(histogram, 0.5),
            ms(histogram, 0.9),
            ms(histogram, 0.99),
            histogram.max() as f64 / 1000.0,
            histogram.len()
        );
    }
    println!("target (c)/(a) ≥ 0.70 at {conversations} conversations: {}", mark(c / a >= 0.7));
    println!(
        "paced at half of (c), {paced_rate:.0} msg/s: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms over {} messages   (target p99 ≤ 60) {}",
        ms(&paced, 0.5),
        ms(&paced, 0.9),
        ms(&paced, 0.99),
        paced.max() as f64 / 1000.0,
        paced.len(),
        mark(ms(&paced, 0.99) <= 60.0)
    );
    Ok(())
}

fn client(bearer: &str) -> Client {
    Client { bearer: bearer.to_owned(), forwarded_for: None }
}

async fn jobs(pool: &sqlx::PgPool, status: JobStatus) -> anyhow::Result<i64> {
    let counts = concierge_shared::queue_schema::count_by_queue_and_status(pool).await?;
    Ok(counts.iter().filter(|(queue, s, _)| queue == PROCESS_MESSAGE && s == status.as_str()).map(|row| row.2).sum())
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
}

/// One message's statements end to end, in the order the pipeline runs them, as pgbench
/// runs them (prepared) with its client id choosing the conversation: what the API, the
/// worker (apalis-postgres' claim and completion, `process_message`'s decision) send to the
/// database for one answered question (the streams read nothing: each message's notification,
/// sent by its insert's trigger, carries it). They are copies of the statements
/// in `db::messages`, `db::conversations`, apalis-postgres' `queries/task/*.sql` and
/// `get_jobs`; the offline engine's knowledge search and the action definitions are in memory.
/// (`chr(58)` is a colon, which pgbench would read as a variable.)
fn pipeline_script() -> String {
    let job = concierge_shared::insert_apalis_job!(
        "apalis.generate_ulid()::text",
        "'concierge::process-message'",
        "convert_to(json_build_object('message_id', msg.id)::text, 'UTF8')",
        "5",
        "msg.id::text"
    );
    let message = "id, conversation_id, seq, role, content, metadata, client_message_id, reply_to, action_run_id, created_at, files";
    let conversation = "id, owner, owner_kind, owner_name, owner_email, owner_role, status, mode, page_url, page_title, \
                        locale, clarify_count, rating, rating_comment, rated_at, escalated_at, escalation_reason, \
                        closed_at, last_seq, created_at, updated_at";
    format!(
        r#"-- The API: the user's message and its job, one statement (the job's trigger NOTIFYs the worker).
WITH conv AS (
    UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
    WHERE id = (SELECT conversation_id FROM bench_clients WHERE n = :client_id)
      AND owner = 'user' || chr(58) || 'bench-user' AND status = 'open'
    RETURNING id, last_seq
), msg AS (
    INSERT INTO messages (id, conversation_id, seq, role, content, client_message_id)
    SELECT gen_random_uuid(), conv.id, conv.last_seq, 'user', 'Как оплатить подписку?', NULL FROM conv
    ON CONFLICT (conversation_id, client_message_id) DO NOTHING
    RETURNING id, conversation_id, seq
), job AS (
    {job} FROM msg
)
SELECT id AS msg_id, conversation_id AS conv_id, seq AS msg_seq FROM msg \gset
-- The worker's claim: apalis-postgres' fetch (`get_jobs`), one job.
SELECT coalesce(max(id), '') AS job_id FROM apalis.get_jobs('pgbench-' || :client_id, 'concierge::process-message', 1) \gset
-- process_message: `BEGIN` with the decision lock in one round trip, the message with the
-- conversation's state and history, the reply.
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(1668247139, hashtext(conversation_id::text)) FROM messages WHERE id = :msg_id;
\endpipeline
WITH target AS (SELECT {message} FROM messages WHERE id = :msg_id)
SELECT {conversation}, (SELECT to_jsonb(target) FROM target) AS message,
       (SELECT EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = target.id)
               OR EXISTS (SELECT 1 FROM action_runs a WHERE a.message_id = target.id) FROM target) AS handled,
       EXISTS (SELECT m.id FROM target, messages m
               WHERE m.conversation_id = target.conversation_id AND m.role = 'user' AND m.seq < target.seq
                 AND m.seq > COALESCE((SELECT max(o.seq) FROM messages o WHERE o.conversation_id = target.conversation_id
                                         AND o.role <> 'user' AND o.seq < target.seq), 0)
                 AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = m.id)
                 AND NOT EXISTS (SELECT 1 FROM action_runs a WHERE a.message_id = m.id)) AS earlier_waiting,
       (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.seq), '[]')
        FROM (SELECT {message} FROM messages WHERE conversation_id = (SELECT conversation_id FROM target)
              ORDER BY seq DESC LIMIT 20) AS m) AS latest
FROM conversations WHERE id = (SELECT conversation_id FROM target);
WITH conv AS (UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
              WHERE id = :conv_id AND status = 'open' AND mode = 'ai' RETURNING last_seq)
INSERT INTO messages (id, conversation_id, seq, role, content, metadata, reply_to, action_run_id)
SELECT gen_random_uuid(), :conv_id, conv.last_seq, 'assistant',
       'Оплатить подписку можно в личном кабинете, в разделе «Подписка»: выберите тариф и способ оплаты.',
       '{{"engine": "offline", "retrieval": {{"chunks": ["billing/pay.md#0"], "fallback": false}}}}'::jsonb, :msg_id, NULL FROM conv
ON CONFLICT DO NOTHING
RETURNING {message};
COMMIT;
-- apalis-postgres' completion of the job.
WITH j AS (
    SELECT (value ->> 'task_id')::text AS task_id, (value ->> 'attempt')::integer AS attempt,
           value -> 'result' AS result, value ->> 'status' AS status
    FROM jsonb_array_elements(jsonb_build_array(jsonb_build_object('task_id', :job_id::text, 'attempt', 1, 'result', 'null'::jsonb, 'status', 'Done'))) AS value
), locked AS (
    SELECT jobs.id FROM apalis.jobs AS jobs INNER JOIN j ON j.task_id = jobs.id
    WHERE jobs.lock_by = 'pgbench-' || :client_id ORDER BY jobs.id FOR UPDATE
)
UPDATE apalis.jobs AS jobs SET status = j.status, attempts = j.attempt, last_result = j.result, done_at = NOW()
FROM j INNER JOIN locked ON locked.id = j.task_id WHERE jobs.id = locked.id;
"#
    )
}

/// `perf record` of one process until [`Profile::finish`], which draws its flame graph. Stacks
/// are unwound from DWARF: the standard library and most crates are built without frame
/// pointers, so `-g` alone stops at the first frame.
struct Profile {
    name: &'static str,
    data: PathBuf,
    perf: Child,
}

impl Profile {
    fn start(name: &'static str, pid: Option<u32>) -> anyhow::Result<Self> {
        let pid = pid.context("the process has exited")?;
        let data = std::env::temp_dir().join(format!("concierge-saturate-{name}-{}.perf", std::process::id()));
        let perf = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run perf (Debian: linux-perf)")?;
        Ok(Self { name, data, perf })
    }

    /// Stop recording, write `bench-saturate-<name>.svg` in the current directory and print the
    /// functions with most samples of their own.
    async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.perf.id() {
            // SAFETY: signalling our own child; perf writes its data on SIGINT.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
        }
        let status = self.perf.wait().await?;
        // perf writes its data, then ends itself with the signal it was sent.
        let interrupted = std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT);
        if !status.success() && status.code() != Some(130) && !interrupted {
            bail!("perf record failed ({status}); is perf_event_paranoid too high?");
        }
        let script = Command::new("perf")
            .args(["script", "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .await
            .context("cannot run perf script")?;
        let _ = std::fs::remove_file(&self.data);
        let (name, stacks) = (self.name, script.stdout);
        let svg = PathBuf::from(format!("bench-saturate-{name}.svg"));
        let top = tokio::task::spawn_blocking({
            let svg = svg.clone();
            move || draw(&stacks, name, &svg)
        })
        .await??;
        println!("    {name}: flame graph in {}; most samples of their own:", svg.display());
        for (share, function) in top.own {
            println!("      {:>5.1}%  {function}", share * 100.0);
        }
        println!("    {name}: the project's functions with most samples, callees included:");
        for (share, function) in top.ours {
            println!("      {:>5.1}%  {function}", share * 100.0);
        }
        Ok(())
    }
}

/// The functions a profile spent most in, each with its share of the samples.
struct Top {
    /// By samples of their own (the leaf of the stack).
    own: Vec<(f64, String)>,
    /// The project's own functions, by samples with their callees included.
    ours: Vec<(f64, String)>,
}

/// Collapse `perf script` output, draw it into `svg`, and return the functions with most samples.
fn draw(stacks: &[u8], name: &str, svg: &Path) -> anyhow::Result<Top> {
    use inferno::collapse::Collapse;
    let mut collapsed = Vec::new();
    inferno::collapse::perf::Folder::from(inferno::collapse::perf::Options::default())
        .collapse(stacks, &mut collapsed)
        .context("collapsing perf's stacks")?;
    let collapsed = String::from_utf8_lossy(&collapsed);
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!("concierge {name}, bench saturate");
    let file = std::io::BufWriter::new(std::fs::File::create(svg)?);
    inferno::flamegraph::from_lines(&mut options, collapsed.lines(), file).context("drawing the flame graph")?;
    let mut own: HashMap<&str, u64> = HashMap::new();
    let mut ours: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for line in collapsed.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let count: u64 = count.parse().unwrap_or(0);
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *own.entry(leaf).or_default() += count;
        // A function counts once per stack, however deep it recurses.
        let mut seen = HashSet::new();
        for frame in stack.split(';').filter(|frame| is_ours(frame)) {
            if seen.insert(frame) {
                *ours.entry(frame).or_default() += count;
            }
        }
        total += count;
    }
    let rank = |counts: HashMap<&str, u64>| {
        let mut top: Vec<_> = counts.into_iter().collect();
        top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        top.into_iter().take(15).map(|(f, n)| (n as f64 / total.max(1) as f64, f.to_owned())).collect()
    };
    Ok(Top { own: rank(own), ours: rank(ours) })
}

/// Whether a symbol is one of the workspace's own functions, rather than a dependency's.
fn is_ours(frame: &str) -> bool {
    const CRATES: [&str; 4] = ["concierge::", "concierge_api::", "concierge_shared::", "concierge_worker::"];
    let path = frame.trim_start_matches('<').trim_start_matches("&mut ").trim_start_matches('&');
    CRATES.iter().any(|krate| path.starts_with(krate))
}
