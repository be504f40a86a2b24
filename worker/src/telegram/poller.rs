//! Polling mode: where Telegram cannot reach the API's webhook, one worker process asks for
//! updates with getUpdates and stores them exactly as the webhook would. A PostgreSQL advisory
//! lock elects that process; the others wait and take over if it stops.
//!
//! getUpdates is read as raw JSON, not through teloxide's types: each element of `result` is
//! stored as Telegram wrote it, so an update teloxide cannot parse is kept whole (and a
//! re-encoding never changes what was received).

use std::{sync::Arc, time::Duration};

use concierge_shared::{TelegramUpdateId, db::telegram as store};
use serde_json::value::RawValue;
use teloxide::{prelude::Requester, types::AllowedUpdate};
use tokio_util::sync::CancellationToken;

use crate::{Context, telegram::Telegram};

/// Seconds Telegram holds a getUpdates request open when there is nothing new.
const LONG_POLL_SECS: u32 = 25;
/// An arbitrary key shared by every Concierge process.
const POLLER_LOCK: i64 = 0x636f_6e63_6965_7267;

/// The updates Concierge asks for: operators' messages and edits, button presses, and the
/// bot's own membership of the group (kicked, or added back).
pub fn allowed_updates() -> [AllowedUpdate; 4] {
    [AllowedUpdate::Message, AllowedUpdate::EditedMessage, AllowedUpdate::CallbackQuery, AllowedUpdate::MyChatMember]
}

/// getUpdates' answer, its updates left as the raw JSON Telegram wrote.
#[derive(serde::Deserialize)]
struct UpdatesOut<'a> {
    ok: bool,
    #[serde(borrow, default)]
    result: Vec<&'a RawValue>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

/// Why a getUpdates call gave nothing.
enum PollError {
    RetryAfter(Duration),
    Failed(String),
}

/// One getUpdates call, as raw JSON: each update's text and its id.
async fn get_updates(
    telegram: &Telegram,
    offset: Option<i64>,
) -> Result<Vec<(TelegramUpdateId, serde_json::Value, String)>, PollError> {
    let mut url = telegram.bot.api_url();
    url.path_segments_mut()
        .map_err(|()| PollError::Failed("the Bot API URL cannot take a path".into()))?
        .push(&format!("bot{}", telegram.bot.token()))
        .push("getUpdates");
    let allowed: Vec<AllowedUpdate> = allowed_updates().into();
    let mut body = serde_json::json!({ "timeout": LONG_POLL_SECS, "allowed_updates": allowed });
    if let Some(offset) = offset {
        body["offset"] = offset.into();
    }
    let response = telegram
        .bot
        .client()
        .post(url)
        .json(&body)
        // Telegram holds the request open for the long poll's wait.
        .timeout(telegram.timeout + Duration::from_secs(LONG_POLL_SECS.into()))
        .send()
        .await
        .map_err(|error| PollError::Failed(error.without_url().to_string()))?;
    let text = response.text().await.map_err(|error| PollError::Failed(error.without_url().to_string()))?;
    let answer: UpdatesOut<'_> =
        serde_json::from_str(&text).map_err(|error| PollError::Failed(format!("getUpdates answered {error}")))?;
    if !answer.ok {
        if let Some(seconds) = answer.parameters.and_then(|p| p.retry_after) {
            return Err(PollError::RetryAfter(Duration::from_secs(seconds.max(1))));
        }
        return Err(PollError::Failed(answer.description.unwrap_or_else(|| "getUpdates refused".into())));
    }
    let mut updates = Vec::with_capacity(answer.result.len());
    for raw in answer.result {
        let value: serde_json::Value =
            serde_json::from_str(raw.get()).map_err(|error| PollError::Failed(error.to_string()))?;
        let Some(id) = value.get("update_id").and_then(serde_json::Value::as_i64) else {
            return Err(PollError::Failed("an update without update_id".into()));
        };
        updates.push((TelegramUpdateId(id), value, raw.get().to_owned()));
    }
    Ok(updates)
}

pub async fn run(ctx: Context, telegram: Arc<Telegram>, shutdown: CancellationToken) {
    loop {
        match poll_while_elected(&ctx, &telegram, &shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "Telegram polling stopped; restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

/// Wait to be the one poller, then poll until shutdown. The lock lives as long as the
/// connection holding it: a connection of its own, so that the pool keeps all of its.
async fn poll_while_elected(ctx: &Context, telegram: &Telegram, shutdown: &CancellationToken) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut lock = sqlx::PgConnection::connect_with(&ctx.pool.connect_options()).await?;
    loop {
        let elected: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(POLLER_LOCK).fetch_one(&mut lock).await?;
        if elected {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
    tracing::info!("polling Telegram for updates");
    // Telegram answers getUpdates with 409 while a webhook is set.
    if let Err(error) = telegram.bot.delete_webhook().await {
        tracing::warn!(%error, "could not remove the Telegram webhook before polling");
    }
    let mut backoff = Duration::from_secs(1);
    // Telegram keeps what was confirmed: a new poller starts without an offset and gets every
    // update not confirmed yet (those already stored are ignored). Update ids are not always
    // increasing (after a week without updates the next one is random), so the offset is never
    // taken from the stored ones.
    let mut offset: Option<i64> = None;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = get_updates(telegram, offset) => received,
        };
        match received {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                let mut tx = ctx.pool.begin().await?;
                for (update_id, payload, raw) in &updates {
                    store::store_update(&mut tx, *update_id, payload, raw, ctx.max_attempts).await?;
                }
                tx.commit().await?;
                if let Some((last, ..)) = updates.last() {
                    offset = Some(last.0 + 1);
                }
                // Keep the election connection alive and checked.
                sqlx::query("SELECT 1").execute(&mut lock).await?;
            }
            Err(PollError::RetryAfter(pause)) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(PollError::Failed(error)) => {
                tracing::warn!(%error, ?backoff, "getUpdates failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(POLLER_LOCK).execute(&mut lock).await?;
    Ok(())
}
