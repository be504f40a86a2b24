//! The built-in actions: reads of the owner's Zoom link, subscription, recordings and lessons
//! on the platform, worded for the user.
//!
//! Invariant: every platform path is built from the owner's id (never from a parameter naming
//! a user), with each segment escaped; parameters only pick among the owner's own lessons.

use chrono::{DateTime, Utc};
use concierge_shared::i18n::{ActionTexts, fill};
use serde::Deserialize;
use serde_json::Value;

use super::Outcome;
use crate::{
    Context,
    platform::{PlatformError, segment},
};

#[derive(Deserialize)]
struct Zoom {
    connected: bool,
    token_valid: bool,
    licence: Option<String>,
    meeting_limit_minutes: Option<i64>,
    last_error: Option<String>,
}

pub(super) async fn zoom(ctx: &Context, texts: &ActionTexts, user: &str) -> Result<Outcome, PlatformError> {
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

pub(super) async fn subscription(ctx: &Context, texts: &ActionTexts, user: &str) -> Result<Outcome, PlatformError> {
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

fn when(texts: &ActionTexts, at: &DateTime<Utc>) -> String {
    // Moscow time, the platform's reference zone.
    (*at + chrono::Duration::hours(3)).format(texts.lesson_time_format).to_string()
}

async fn user_lessons(ctx: &Context, user: &str) -> Result<(Value, Vec<Lesson>), PlatformError> {
    let raw = ctx.platform.get_value(&format!("users/{}/lessons", segment(user))).await?;
    let lessons: Lessons = serde_json::from_value(raw.clone()).map_err(|e| PlatformError::Malformed(e.to_string()))?;
    Ok((raw, lessons.lessons))
}

pub(super) async fn recordings(
    ctx: &Context,
    texts: &ActionTexts,
    user: &str,
    params: &Value,
) -> Result<Outcome, PlatformError> {
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
                &[
                    ("title", &l.title),
                    ("when", &when(texts, &l.starts_at)),
                    ("state", &recording_text(texts, &l.recording)),
                ],
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

pub(super) async fn lesson(
    ctx: &Context,
    texts: &ActionTexts,
    user: &str,
    params: &Value,
) -> Result<Outcome, PlatformError> {
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
            ("when", &when(texts, &lesson.starts_at)),
            ("participants", &lesson.participants.join(", ")),
            ("meeting", yes_no(lesson.zoom_meeting_created)),
            ("started", yes_no(lesson.started)),
            ("recording", &recording_text(texts, &lesson.recording)),
        ],
    );
    Ok(Outcome::success(message, format!("lesson {}: started={}", lesson.id, lesson.started), raw))
}
