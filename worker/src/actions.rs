//! Running an action for the owner of a conversation, and turning what the platform says into
//! a message for the user. The user whose data is read is always the conversation's owner,
//! taken from the conversation row: no parameter can name another user.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use concierge_shared::{
    OwnerKind,
    actions::{ActionDefinition, HttpAction},
    db::conversations::Conversation,
    i18n::{ActionTexts, Locale, fill},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Context,
    platform::{PlatformError, segment},
};

/// How an action ended, for the user and for the log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub succeeded: bool,
    /// For the user.
    pub message: String,
    /// One line for the action log.
    pub summary: String,
    /// What the platform said, for the log and for the model's final answer.
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl Outcome {
    fn success(message: String, summary: impl Into<String>, result: Value) -> Self {
        Self { succeeded: true, message, summary: summary.into(), result: Some(result), error: None }
    }

    fn failure(texts: &ActionTexts, error: &PlatformError) -> Self {
        let message = match error {
            PlatformError::NotFound => texts.lesson_not_found.to_owned(),
            PlatformError::Malformed(_) | PlatformError::TooLarge => {
                format!("{} {}", texts.platform_malformed, texts.offer_escalation)
            }
            PlatformError::NotConfigured | PlatformError::OffHost => {
                format!("{} {}", texts.unavailable, texts.offer_escalation)
            }
            _ => format!("{} {}", texts.platform_down, texts.offer_escalation),
        };
        Self { succeeded: false, message, summary: error.to_string(), result: None, error: Some(error.to_string()) }
    }
}

/// Run `definition` with `params` for the conversation's owner.
pub async fn run(ctx: &Context, definition: &ActionDefinition, conversation: &Conversation, params: &Value) -> Outcome {
    let texts = &Locale::from_code(&conversation.locale).texts().actions;
    let user = match conversation.owner_kind {
        OwnerKind::User => conversation.owner.strip_prefix("user:").map(str::to_owned),
        OwnerKind::Visitor => None,
    };
    let Some(user) =
        user.filter(|_| definition.requires_user).or_else(|| (!definition.requires_user).then(String::new))
    else {
        return Outcome {
            succeeded: false,
            message: texts.needs_sign_in.into(),
            summary: "no signed-in user".into(),
            result: None,
            error: Some("no signed-in user".into()),
        };
    };
    let handler = definition.handler.strip_prefix("builtin:").unwrap_or(&definition.handler);
    let result = match handler {
        "check_zoom_status" => zoom(ctx, texts, &user).await,
        "check_subscription" => subscription(ctx, texts, &user).await,
        "check_recordings" => recordings(ctx, texts, &user, params).await,
        "check_lesson" => lesson(ctx, texts, &user, params).await,
        "check_system_status" => return system_status(ctx, texts).await,
        "http" => match &definition.http {
            Some(http) => declarative(ctx, &http.0, &user, params).await,
            None => Err(PlatformError::NotConfigured),
        },
        _ => Err(PlatformError::NotConfigured),
    };
    result.unwrap_or_else(|error| Outcome::failure(texts, &error))
}

#[derive(Deserialize)]
struct Zoom {
    connected: bool,
    token_valid: bool,
    licence: Option<String>,
    meeting_limit_minutes: Option<i64>,
    last_error: Option<String>,
}

async fn zoom(ctx: &Context, texts: &ActionTexts, user: &str) -> Result<Outcome, PlatformError> {
    let raw = ctx.platform.get_value(&format!("users/{}/zoom", segment(user))).await?;
    let zoom: Zoom = serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
    let mut parts = Vec::new();
    let summary = match (zoom.connected, zoom.token_valid) {
        (true, true) => {
            let licence = zoom.licence.clone().unwrap_or_else(|| "—".into());
            parts.push(fill(texts.zoom_ok, &[("licence", &licence)]));
            if licence.eq_ignore_ascii_case("basic") {
                let minutes = zoom.meeting_limit_minutes.unwrap_or(40).to_string();
                parts.push(fill(texts.zoom_basic_limit, &[("minutes", &minutes)]));
            }
            "connected"
        }
        (true, false) => {
            parts.push(texts.zoom_token_expired.to_owned());
            "token expired"
        }
        (false, _) => {
            parts.push(texts.zoom_not_connected.to_owned());
            "not connected"
        }
    };
    if let Some(error) = zoom.last_error.filter(|_| summary != "connected") {
        parts.push(fill(texts.zoom_last_error, &[("error", &error)]));
    }
    Ok(Outcome::success(parts.join(" "), format!("zoom: {summary}"), raw))
}

#[derive(Deserialize)]
struct Subscription {
    plan: String,
    status: String,
    paid_until: Option<String>,
    auto_renewal: bool,
    last_payment: Option<Payment>,
}

#[derive(Deserialize)]
struct Payment {
    amount: f64,
    at: DateTime<Utc>,
    result: String,
    failure_reason: Option<String>,
}

async fn subscription(ctx: &Context, texts: &ActionTexts, user: &str) -> Result<Outcome, PlatformError> {
    let raw = ctx.platform.get_value(&format!("users/{}/subscription", segment(user))).await?;
    if raw.is_null() {
        return Ok(Outcome::success(texts.subscription_none.into(), "no subscription", raw));
    }
    let s: Subscription = serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
    let status = texts.subscription_states.iter().find(|(k, _)| *k == s.status).map_or(s.status.as_str(), |(_, v)| v);
    let renewal = if s.auto_renewal { texts.auto_renewal_on } else { texts.auto_renewal_off };
    let mut message = fill(
        texts.subscription_status,
        &[
            ("plan", &s.plan),
            ("status", status),
            ("paid_until", s.paid_until.as_deref().unwrap_or("—")),
            ("renewal", renewal),
        ],
    );
    if let Some(payment) = &s.last_payment {
        let amount = format!("{}", payment.amount);
        let date = payment.at.format("%d.%m.%Y").to_string();
        let line = if payment.result == "succeeded" {
            fill(texts.last_payment_ok, &[("amount", &amount), ("date", &date)])
        } else {
            fill(
                texts.last_payment_failed,
                &[("amount", &amount), ("date", &date), ("reason", payment.failure_reason.as_deref().unwrap_or("—"))],
            )
        };
        message = format!("{message}\n\n{line}");
    }
    Ok(Outcome::success(message, format!("subscription: {} ({})", s.plan, s.status), raw))
}

#[derive(Debug, Clone, Deserialize)]
struct Lesson {
    id: String,
    title: String,
    starts_at: DateTime<Utc>,
    #[serde(default)]
    participants: Vec<String>,
    zoom_meeting_created: bool,
    started: bool,
    recording: Recording,
}

#[derive(Debug, Clone, Deserialize)]
struct Recording {
    status: String,
    url: Option<String>,
}

#[derive(Deserialize)]
struct Lessons {
    lessons: Vec<Lesson>,
}

fn recording_text(texts: &ActionTexts, recording: &Recording) -> String {
    let template = texts.recording_states.iter().find(|(k, _)| *k == recording.status).map_or("{status}", |(_, v)| v);
    fill(template, &[("url", recording.url.as_deref().unwrap_or("")), ("status", &recording.status)])
}

fn when(at: &DateTime<Utc>) -> String {
    // Moscow time, the platform's reference zone.
    (*at + chrono::Duration::hours(3)).format("%d.%m.%Y %H:%M МСК").to_string()
}

async fn user_lessons(ctx: &Context, user: &str) -> Result<(Value, Vec<Lesson>), PlatformError> {
    let raw = ctx.platform.get_value(&format!("users/{}/lessons", segment(user))).await?;
    let lessons: Lessons = serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
    Ok((raw, lessons.lessons))
}

async fn recordings(ctx: &Context, texts: &ActionTexts, user: &str, params: &Value) -> Result<Outcome, PlatformError> {
    let (raw, mut lessons) = match params.get("lesson_id").and_then(Value::as_str) {
        Some(id) => {
            let raw = ctx.platform.get_value(&format!("users/{}/lessons/{}", segment(user), segment(id))).await?;
            let lesson: Lesson =
                serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
            (raw, vec![lesson])
        }
        None => user_lessons(ctx, user).await?,
    };
    let now = Utc::now();
    lessons.retain(|l| l.starts_at <= now);
    if let Some(date) = params.get("date").and_then(Value::as_str) {
        lessons.retain(|l| (l.starts_at + chrono::Duration::hours(3)).format("%Y-%m-%d").to_string() == date);
    }
    lessons.sort_by_key(|l| std::cmp::Reverse(l.starts_at));
    lessons.truncate(5);
    if lessons.is_empty() {
        return Ok(Outcome::success(texts.recordings_none.into(), "no lessons", raw));
    }
    let lines: Vec<String> = lessons
        .iter()
        .map(|l| {
            fill(
                texts.lesson_line,
                &[("title", &l.title), ("when", &when(&l.starts_at)), ("state", &recording_text(texts, &l.recording))],
            )
        })
        .collect();
    let summary = lessons.iter().map(|l| format!("{}={}", l.id, l.recording.status)).collect::<Vec<_>>().join(", ");
    Ok(Outcome::success(
        format!("{}\n{}", texts.recordings_heading, lines.join("\n")),
        format!("recordings: {summary}"),
        raw,
    ))
}

async fn lesson(ctx: &Context, texts: &ActionTexts, user: &str, params: &Value) -> Result<Outcome, PlatformError> {
    let which = params.get("lesson").and_then(Value::as_str).unwrap_or("next");
    let (raw, lesson) = match which {
        "next" | "last" => {
            let (raw, lessons) = user_lessons(ctx, user).await?;
            let now = Utc::now();
            let found = if which == "next" {
                lessons.into_iter().filter(|l| l.starts_at > now).min_by_key(|l| l.starts_at)
            } else {
                lessons.into_iter().filter(|l| l.starts_at <= now).max_by_key(|l| l.starts_at)
            };
            match found {
                Some(lesson) => (raw, lesson),
                None => {
                    let text = if which == "next" { texts.lesson_none_next } else { texts.lesson_none_last };
                    return Ok(Outcome::success(text.into(), format!("no {which} lesson"), raw));
                }
            }
        }
        id => {
            let raw = ctx.platform.get_value(&format!("users/{}/lessons/{}", segment(user), segment(id))).await?;
            let lesson: Lesson =
                serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
            (raw, lesson)
        }
    };
    let yes_no = |b: bool| if b { texts.yes } else { texts.no };
    let message = fill(
        texts.lesson_details,
        &[
            ("title", &lesson.title),
            ("when", &when(&lesson.starts_at)),
            ("participants", &lesson.participants.join(", ")),
            ("meeting", yes_no(lesson.zoom_meeting_created)),
            ("started", yes_no(lesson.started)),
            ("recording", &recording_text(texts, &lesson.recording)),
        ],
    );
    Ok(Outcome::success(message, format!("lesson {}: started={}", lesson.id, lesson.started), raw))
}

/// A declarative action: GET the path with parameters filled in, fill the message from the
/// response.
async fn declarative(ctx: &Context, http: &HttpAction, user: &str, params: &Value) -> Result<Outcome, PlatformError> {
    let mut path = http.path.replace("{user_id}", &segment(user));
    for (name, value) in params.as_object().into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        path = path.replace(&format!("{{{name}}}"), &segment(&text));
    }
    if path.contains('{') {
        return Err(PlatformError::Malformed("the path has unfilled parameters".into()));
    }
    let raw = ctx.platform.get_value(&path).await?;
    let missing = http.missing.clone().unwrap_or_else(|| "—".into());
    let values: Vec<(String, String)> = http
        .fields
        .iter()
        .map(|(name, pointer)| {
            let text = match raw.pointer(pointer) {
                None | Some(Value::Null) => missing.clone(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let message = fill(&http.message, &pairs);
    Ok(Outcome::success(message, format!("GET {}", http.path), raw))
}

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

async fn system_status(ctx: &Context, texts: &ActionTexts) -> Outcome {
    let mut problems: Vec<String> = Vec::new();
    let mut report = serde_json::Map::new();

    let database = sqlx::query("SELECT 1").execute(&ctx.pool).await.is_ok();
    report.insert("database".into(), json!(if database { "ok" } else { "down" }));
    if !database {
        problems.push("база данных Concierge недоступна".into());
    }
    let queues: Vec<(String, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT job_type, count(*), min(run_at) FROM apalis.jobs WHERE status IN ('Pending', 'Queued') GROUP BY job_type",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap_or_default();
    let now = Utc::now();
    for (queue, depth, oldest) in &queues {
        if oldest.is_some_and(|at| now - at > chrono::Duration::minutes(2)) {
            problems.push(format!("очередь {queue} задерживается"));
        }
        report.insert(format!("queue:{queue}"), json!({ "depth": depth, "oldest": oldest }));
    }
    let workers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM worker_instances WHERE last_seen > now() - interval '30 seconds'")
            .fetch_one(&ctx.pool)
            .await
            .unwrap_or(0);
    report.insert("live_workers".into(), json!(workers));
    let llm = match &ctx.llm {
        None => "offline engine",
        Some(llm) if llm.client.circuit_open() => {
            problems.push("языковая модель не отвечает, отвечает встроенный помощник".into());
            "failing"
        }
        Some(_) => "ok",
    };
    report.insert("llm".into(), json!(llm));
    let telegram = match &ctx.telegram {
        None => "not configured",
        Some(_) => {
            let stuck: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM telegram_outbox
                 WHERE (state = 'pending' AND created_at < now() - interval '5 minutes')
                    OR (state = 'failed' AND created_at > now() - interval '1 hour')",
            )
            .fetch_one(&ctx.pool)
            .await
            .unwrap_or(0);
            if stuck > 0 {
                problems.push("сообщения операторам в Telegram задерживаются".into());
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
                    problems.push("платформа сообщает о сбое".into());
                }
            }
            report.insert("platform".into(), status.clone());
        }
        Err(error) => {
            problems.push("платформа Lectio не отвечает".into());
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

/// Users' subscription plans, for the model's context: looked up on the platform at most every
/// five minutes per user, and given up on quickly, since an answer must not wait for them.
#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<std::collections::HashMap<String, (Instant, Option<String>)>>,
}

const PLAN_TTL: Duration = Duration::from_secs(300);
/// Plans remembered at most; past this, expired ones are forgotten first, then all.
const PLANS_KEPT: usize = 10_000;
const PLAN_TIMEOUT: Duration = Duration::from_millis(800);

impl PlanCache {
    /// "Профи (active)", or `None` for visitors, users without a plan, or a slow platform.
    pub async fn plan(
        &self,
        platform: &crate::platform::PlatformClient,
        conversation: &Conversation,
    ) -> Option<String> {
        let user = conversation.owner.strip_prefix("user:").filter(|_| conversation.owner_kind == OwnerKind::User)?;
        if !platform.configured() {
            return None;
        }
        if let Some((at, plan)) = self.plans.lock().expect("plan cache").get(user)
            && at.elapsed() < PLAN_TTL
        {
            return plan.clone();
        }
        let path = format!("users/{}/subscription", segment(user));
        let plan = match tokio::time::timeout(PLAN_TIMEOUT, platform.get_value(&path)).await {
            Ok(Ok(value)) => {
                let name = value.get("plan").and_then(Value::as_str);
                let status = value.get("status").and_then(Value::as_str).unwrap_or("unknown");
                name.map(|name| format!("{name} ({status})"))
            }
            // Not cached: try again next time.
            _ => return None,
        };
        let mut plans = self.plans.lock().expect("plan cache");
        if plans.len() >= PLANS_KEPT {
            plans.retain(|_, (at, _)| at.elapsed() < PLAN_TTL);
            if plans.len() >= PLANS_KEPT {
                plans.clear();
            }
        }
        plans.insert(user.to_owned(), (Instant::now(), plan.clone()));
        plan
    }
}

/// Action definitions, read at most every few seconds: every message consults them, and they
/// change only when fixtures are loaded or an admin switches one (seen here within seconds).
#[derive(Default)]
pub struct DefinitionCache {
    cached: tokio::sync::Mutex<Option<(Instant, Vec<ActionDefinition>)>>,
}

const DEFINITIONS_TTL: Duration = Duration::from_secs(5);

impl DefinitionCache {
    /// Active actions a caller may run (see `actions::available`).
    pub async fn available(&self, pool: &sqlx::PgPool, signed_in: bool) -> sqlx::Result<Vec<ActionDefinition>> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < DEFINITIONS_TTL);
        if !fresh {
            *cached = Some((Instant::now(), concierge_shared::actions::list(pool).await?));
        }
        let all = &cached.as_ref().expect("filled above").1;
        Ok(all.iter().filter(|a| a.active && (signed_in || !a.requires_user)).cloned().collect())
    }
}
