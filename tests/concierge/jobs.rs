//! The process-message job: one reply per user message however often it runs, and a visible
//! notice when it fails for good.

use std::time::Duration;

use apalis::prelude::{Attempt, Data};
use concierge_shared::{MessageId, jobs::ProcessMessage};

use crate::helpers::{TestApp, WAIT, logged_errors, wait_until};

/// Wait until the message has its reply, and every job has finished.
async fn wait_for_reply_and_idle_queue(app: &TestApp, message_id: &str) {
    wait_until("the reply and an idle queue", WAIT, async || {
        let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to = $1::uuid")
            .bind(message_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let open = concierge_shared::queue_schema::count_unfinished_jobs(&app.pool).await.unwrap();
        if replies > 0 && open == 0 { Ok(()) } else { Err(format!("replies: {replies}, unfinished jobs: {open}")) }
    })
    .await
}

/// Make every assistant reply fail, as a broken database would.
async fn refuse_assistant_replies(app: &TestApp) {
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_assistant() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.role = 'assistant' THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END; $$;
         CREATE TRIGGER refuse_assistant BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_assistant();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_duplicated_job_still_produces_exactly_one_reply() {
    let mut app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let sent = app.say(&conversation, "Как оплатить подписку?").await;
    let message_id = sent["id"].as_str().unwrap();
    // A second job for the same message, as if it had been enqueued twice.
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata)
             SELECT $1, job_type, job, 'Pending', 0, max_attempts, now(), 0, ''::hstore FROM apalis.jobs LIMIT 1",
        )
        .bind(ulid_like())
        .execute(&app.pool)
        .await
        .unwrap();
    }
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 3);
    app.start_worker().await;
    wait_for_reply_and_idle_queue(&app, message_id).await;
    let roles: Vec<String> = app.stored_messages(&conversation.id).await.into_iter().map(|m| m.1).collect();
    assert_eq!(roles, ["user", "assistant"]);
}

#[tokio::test]
async fn concurrent_runs_of_one_job_write_one_reply() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let sent = app.say(&conversation, "Нет звука на уроке").await;
    let message_id: MessageId = sent["id"].as_str().unwrap().parse().unwrap();
    let ctx = concierge_worker::Context::build(&app.config, app.pool.clone()).await.unwrap();
    let runs = (0..6).map(|_| {
        concierge_worker::process_message::handle(ProcessMessage { message_id }, Data::new(ctx.clone()), Attempt::new())
    });
    for result in futures::future::join_all(runs).await {
        result.unwrap();
    }
    let stored = app.stored_messages(&conversation.id).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1].1, "assistant");
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_with_a_notice_to_the_user() {
    let mut app = TestApp::spawn().await;
    refuse_assistant_replies(&app).await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.start_worker().await;
    let sent = app.say(&conversation, "Как оплатить подписку?").await;
    let notice = sse.next_from("system").await;
    assert_eq!(notice.data["metadata"]["kind"], "error");
    assert_eq!(notice.data["reply_to"], sent["id"]);
    assert!(notice.data["content"].as_str().unwrap().contains("оператора"));
    wait_for_reply_and_idle_queue(&app, sent["id"].as_str().unwrap()).await;
    assert_eq!(app.stored_messages(&conversation.id).await.len(), 2);
}

fn ulid_like() -> String {
    // Job ids are ULID text; any unique text works for the table.
    format!("01TEST{}", uuid::Uuid::new_v4().simple()).to_uppercase()[..26].to_owned()
}

#[tokio::test]
async fn workers_come_back_after_their_database_connections_are_cut() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.say(&conversation, "Как оплатить подписку?").await;
    sse.next_from("assistant").await;

    // Every connection of the processes is cut, as when PostgreSQL restarts.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db_url).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS cut",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(cut > 0);

    // The workers reconnect (restarting those whose fetch or heartbeat failed) and answer.
    let mut sse = app.stream(&conversation, None).await;
    let asked = app.say(&conversation, "Как отменить подписку?").await;
    while sse.next().await.data["reply_to"] != asked["id"] {}
}

#[tokio::test]
async fn workers_stopped_by_a_database_outage_are_restarted() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;

    let instance: String = wait_until("the workers' heartbeat", WAIT, async || {
        sqlx::query_scalar("SELECT id FROM worker_instances").fetch_optional(&app.pool).await.unwrap()
    })
    .await;
    let stopped = ["a worker stopped", &instance];
    let stopped_before = logged_errors(&stopped);

    // Nothing can be had from the pool for longer than its acquire timeout (10 s): fetching
    // and heartbeats fail, which ends apalis workers. The outage lasts until one has ended.
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(300), app.pool.acquire()).await {
        held.push(conn);
    }
    wait_until("a worker stopped by the outage", Duration::from_secs(60), async || {
        logged_errors(&stopped) > stopped_before
    })
    .await;
    drop(held);

    // The database is back: the restarted workers answer.
    let mut sse = app.stream(&conversation, None).await;
    let asked = app.say(&conversation, "Как оплатить подписку?").await;
    while sse.next().await.data["reply_to"] != asked["id"] {}
}

#[tokio::test]
async fn an_action_that_cannot_post_its_result_ends_with_a_notice_and_a_failed_run() {
    let mut app = TestApp::spawn().await;
    refuse_assistant_replies(&app).await;
    let conversation = app.open(None).await;
    let mut sse = app.stream(&conversation, None).await;
    app.start_worker().await;
    let path = format!("/conversations/{}/actions/check_system_status/execute", conversation.id);
    let (status, run) = app.post(Some(&conversation.bearer), &path, serde_json::json!({})).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{run}");
    let notice = sse.next_from("system").await;
    assert_eq!(notice.data["metadata"]["kind"], "error");
    assert_eq!(notice.data["action_run_id"], run["id"]);
    let failed: String = sqlx::query_scalar("SELECT status FROM action_runs WHERE id = $1::uuid")
        .bind(run["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failed, "failed");
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_a_week_and_their_causes_stay_deduplicated() {
    let app = TestApp::spawn_with_worker().await;
    let conversation = app.open(None).await;
    let path = format!("/conversations/{}/messages", conversation.id);
    let message = serde_json::json!({ "content": "Как оплатить подписку?", "client_message_id": "pay-1" });
    let (_, sent) = app.post(Some(&conversation.bearer), &path, message.clone()).await;
    wait_for_reply_and_idle_queue(&app, sent["id"].as_str().unwrap()).await;
    let done = app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await;
    assert!(done > 0);

    let week = concierge_shared::jobs::FINISHED_JOBS_KEPT;
    assert_eq!(concierge_shared::jobs::prune_finished(&app.pool, week).await.unwrap(), 0, "nothing is a week old yet");
    let aged = sqlx::query("UPDATE apalis.jobs SET done_at = now() - interval '8 days' WHERE status = 'Done'")
        .execute(&app.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(concierge_shared::jobs::prune_finished(&app.pool, week).await.unwrap(), aged);

    // Resending the message queues nothing new: the message itself remembers it was taken.
    let (status, again) = app.post(Some(&conversation.bearer), &path, message).await;
    assert!(status.is_success());
    assert_eq!(again["id"], sent["id"]);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'concierge::process-message'").await, 0);
}

/// Hold the decision lock of a fresh conversation's message from a connection of its own (the
/// lock goes with it), and start waiting for it from a task whose connection comes from `pool`.
async fn wait_behind_a_decision(
    app: &TestApp,
    pool: &sqlx::PgPool,
) -> (sqlx::PgConnection, tokio::task::JoinHandle<sqlx::Result<()>>) {
    use concierge_shared::db::conversations::{DECISION_LOCK, DecisionConnection};
    use sqlx::Connection as _;
    let conversation = app.open(None).await;
    let sent = app.say(&conversation, "Как оплатить подписку?").await;
    let id: MessageId = sent["id"].as_str().unwrap().parse().unwrap();
    let mut holder = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1, hashtext(conversation_id::text)) FROM messages WHERE id = $2")
        .bind(DECISION_LOCK)
        .bind(id)
        .execute(&mut holder)
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = DecisionConnection::acquire(&pool).await?;
            conn.begin(id).await?.commit().await
        }
    });
    wait_until("a decision waiting for the lock", WAIT, async || {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting == 1 { Ok(()) } else { Err(format!("{waiting} waiting")) }
    })
    .await;
    (holder, waiter)
}

/// Whether the statements of a pool of one connection run in a transaction left open: two of
/// them then share a transaction id.
async fn in_transaction(pool: &sqlx::PgPool) -> bool {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id: i64 = sqlx::query_scalar("SELECT txid_current()").fetch_one(pool).await.expect("a usable connection");
        ids.push(id);
    }
    ids[0] == ids[1]
}

#[tokio::test]
async fn a_decision_lock_that_fails_while_waiting_leaves_no_broken_connection_in_the_pool() {
    let app = TestApp::spawn().await;
    let pool = concierge_shared::db::connect(&app.db_url, 1).await.unwrap();
    let (_holder, waiter) = wait_behind_a_decision(&app, &pool).await;
    sqlx::query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'")
        .execute(&app.pool)
        .await
        .unwrap();
    let error = waiter.await.unwrap().expect_err("the cancelled lock fails");
    assert!(error.to_string().contains("cancel"), "{error}");
    // The pool's one connection serves the next borrower outside any transaction.
    assert!(!in_transaction(&pool).await);
}

#[tokio::test]
async fn a_decision_dropped_while_waiting_for_its_lock_leaves_no_transaction_in_the_pool() {
    let app = TestApp::spawn().await;
    let pool = concierge_shared::db::connect(&app.db_url, 1).await.unwrap();
    let (holder, waiter) = wait_behind_a_decision(&app, &pool).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    // The holder's session ends, so the waiting statement would now get the lock.
    sqlx::Connection::close(holder).await.unwrap();
    assert!(!in_transaction(&pool).await, "the next borrower runs in the dropped decision's transaction");
    wait_until("no advisory lock left", WAIT, async || {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if held == 0 { Ok(()) } else { Err(format!("{held} held")) }
    })
    .await;
}
