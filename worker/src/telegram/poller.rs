//! Polling mode: where Telegram cannot reach the API's webhook, one worker process asks for
//! updates with getUpdates and stores them exactly as the webhook would. A PostgreSQL advisory
//! lock elects that process; the others wait and take over if it stops.

use std::{sync::Arc, time::Duration};

use concierge_shared::{TelegramUpdateId, db::telegram as store};
use teloxide::{RequestError, payloads::GetUpdatesSetters, prelude::Requester, types::AllowedUpdate};
use tokio_util::sync::CancellationToken;

use crate::{Context, telegram::Telegram};

/// Seconds Telegram holds a getUpdates request open when there is nothing new.
const LONG_POLL_SECS: u32 = 25;
/// An arbitrary key shared by every Concierge process.
const POLLER_LOCK: i64 = 0x636f_6e63_6965_7267;

pub fn allowed_updates() -> [AllowedUpdate; 3] {
    [AllowedUpdate::Message, AllowedUpdate::EditedMessage, AllowedUpdate::CallbackQuery]
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
    let mut offset: Option<i32> = None;
    loop {
        let mut request = telegram.bot.get_updates().timeout(LONG_POLL_SECS).allowed_updates(allowed_updates());
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = request.into_future() => received,
        };
        match received {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                let mut tx = ctx.pool.begin().await?;
                for update in &updates {
                    let payload = serde_json::to_value(update)?;
                    store::store_update(&mut tx, TelegramUpdateId(update.id.0 as i64), &payload, ctx.max_attempts)
                        .await?;
                }
                tx.commit().await?;
                if let Some(last) = updates.last() {
                    offset = Some(last.id.0 as i32 + 1);
                }
                // Keep the election connection alive and checked.
                sqlx::query("SELECT 1").execute(&mut lock).await?;
            }
            Err(RequestError::RetryAfter(seconds)) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(seconds.duration()) => {}
                }
            }
            Err(error) => {
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
