//! The system-status action: the database, the queues, live workers, the model, Telegram's
//! outbox and the platform's own status, in one message for the user and a report for the log.
//!
//! Invariant: the check never fails as a whole — a part that cannot be read is reported as a
//! problem — and the platform is asked at most once per `STATUS_TTL`, however many users ask.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use concierge_shared::{
    db::{self, telegram, worker_instances},
    i18n::{ActionTexts, fill},
    queue_schema,
};
use serde_json::{Value, json};

use super::Outcome;
use crate::Context;

/// The platform's status, cached so that a burst of questions costs one request.
pub struct StatusCache {
    cached: Mutex<Option<(Instant, Result<Value, String>)>>,
}

impl Default for StatusCache {
    fn default() -> Self {
        Self { cached: Mutex::new(None) }
    }
}

const STATUS_TTL: Duration = Duration::from_secs(30);
/// A queue whose oldest waiting job is older than this is reported as delayed.
const QUEUE_DELAYED: chrono::TimeDelta = chrono::TimeDelta::minutes(2);
/// A worker heard from within this is counted as live.
const WORKER_SILENCE: Duration = Duration::from_secs(30);

pub(super) async fn system_status(ctx: &Context, texts: &ActionTexts) -> Outcome {
    let mut problems: Vec<String> = Vec::new();
    let mut report = serde_json::Map::new();

    let database = db::ping(&ctx.pool).await.is_ok();
    report.insert("database".into(), json!(if database { "ok" } else { "down" }));
    if !database {
        problems.push(texts.status_database_down.into());
    }
    let queues = queue_schema::waiting_by_queue(&ctx.pool).await.unwrap_or_default();
    let now = Utc::now();
    for (queue, depth, oldest) in &queues {
        if oldest.is_some_and(|at| now - at > QUEUE_DELAYED) {
            problems.push(fill(texts.status_queue_delayed, &[("queue", queue)]));
        }
        report.insert(format!("queue:{queue}"), json!({ "depth": depth, "oldest": oldest }));
    }
    let workers = worker_instances::live(&ctx.pool, WORKER_SILENCE).await.unwrap_or(0);
    report.insert("live_workers".into(), json!(workers));
    let llm = match &ctx.llm {
        None => "offline engine",
        Some(llm) if llm.client.circuit_open() => {
            problems.push(texts.status_llm_failing.into());
            "failing"
        }
        Some(_) => "ok",
    };
    report.insert("llm".into(), json!(llm));
    let telegram = match &ctx.telegram {
        None => "not configured",
        Some(_) => {
            let stuck = telegram::delayed_posts(&ctx.pool).await.unwrap_or(0);
            // Chats the bot was kicked from, and groups that became supergroups (followed, but
            // SUPPORT_NOTIFICATIONS_CHAT_ID still names the old id).
            let stops = telegram::chat_stops(&ctx.pool).await.unwrap_or_default();
            let stopped = stops.iter().any(|stop| stop.reason == "kicked" && stop.resumed_at.is_none());
            report.insert("telegram_alerts".into(), json!(stops));
            if stopped {
                problems.push(texts.status_telegram_stopped.into());
                "stopped"
            } else if stuck > 0 {
                problems.push(texts.status_telegram_delayed.into());
                "delayed"
            } else {
                "ok"
            }
        }
    };
    report.insert("telegram".into(), json!(telegram));

    let platform = {
        let cached = ctx.status_cache.cached.lock().expect("status cache").clone();
        match cached.filter(|(at, _)| at.elapsed() < STATUS_TTL) {
            Some((_, result)) => result,
            None => {
                let result = ctx.platform.get_value("status").await.map_err(|e| e.to_string());
                *ctx.status_cache.cached.lock().expect("status cache") = Some((Instant::now(), result.clone()));
                result
            }
        }
    };
    match &platform {
        Ok(status) => {
            if status.get("status").and_then(Value::as_str) != Some("ok") {
                for component in status.get("components").and_then(Value::as_array).into_iter().flatten() {
                    if component.get("status").and_then(Value::as_str) != Some("ok") {
                        problems.push(format!(
                            "{}: {}",
                            component["name"].as_str().unwrap_or("?"),
                            component["status"].as_str().unwrap_or("?")
                        ));
                    }
                }
                if problems.is_empty() {
                    problems.push(texts.status_platform_failing.into());
                }
            }
            report.insert("platform".into(), status.clone());
        }
        Err(error) => {
            problems.push(texts.status_platform_down.into());
            report.insert("platform".into(), json!({ "error": error }));
        }
    }
    let message = if problems.is_empty() {
        texts.system_ok.to_owned()
    } else {
        fill(texts.system_problems, &[("problems", &problems.join("; "))])
    };
    let summary = if problems.is_empty() { "all ok".to_owned() } else { problems.join("; ") };
    Outcome::success(message, summary, Value::Object(report))
}
