//! `POST /telegram/webhook`: updates from Telegram's Bot API; `GET /admin/telegram/alerts`:
//! the chats the bot can no longer post to.
//!
//! The secret Telegram was given at `setWebhook` comes back in
//! `X-Telegram-Bot-Api-Secret-Token`; it is compared in constant time and anything else is
//! refused with 403 before the body is read. Each update is stored once by `update_id` with
//! the job that handles it, and Telegram gets its 200 at once; a replayed update is
//! acknowledged and ignored. The body is kept as Telegram sent it (`telegram_updates.raw`).

use axum::{
    Json as JsonOut,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
};
use concierge_shared::{
    TelegramUpdateId,
    config::Secret,
    db::telegram::{self, ChatStop},
};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::{
    AppState,
    auth::Admin,
    error::{
        ApiError, ErrorBody,
        responses::{InvalidInput, Malformed, NotAdmin, TooLarge, TooManyRequests, Unauthenticated, Unavailable},
    },
    limits::ClientIp,
};

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// What Telegram gets back: it only looks at the status.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookOut {
    /// Always `true`.
    pub ok: bool,
}

#[utoipa::path(post, path = "/telegram/webhook", tag = "telegram", summary = "Telegram Bot API updates (X-Telegram-Bot-Api-Secret-Token must match)", params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "The secret given to Telegram with `setWebhook` (CONCIERGE_WEBHOOK_SECRET)")), request_body(content = Object, description = "A Telegram Update"), responses((status = 200, body = WebhookOut, description = "Stored (or a replay, ignored)"), Malformed, (status = 403, description = "Wrong or missing secret, or no webhook configured; nothing stored", body = ErrorBody), TooLarge, InvalidInput, TooManyRequests, Unavailable), security(()))]
pub async fn webhook(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<JsonOut<WebhookOut>, ApiError> {
    // Before the secret is compared: guessing it costs a request like any other.
    state.limits.webhook.check(&ip)?;
    let Some(secret) = state.config.webhook_secret.as_ref().map(Secret::expose) else {
        return Err(ApiError::Forbidden("the Telegram webhook is not configured".into()));
    };
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(given.ct_eq(secret.as_bytes())) {
        return Err(ApiError::Forbidden("wrong or missing X-Telegram-Bot-Api-Secret-Token".into()));
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::bad_request("invalid_body", rejection.body_text()),
    })?;
    let mut update: Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    // Telegram passes on whatever its users typed; jsonb stores no NUL, and refusing the update
    // would only make Telegram send it again.
    replace_nul(&mut update);
    // Valid JSON is UTF-8; kept as Telegram sent it, byte for byte.
    let raw = std::str::from_utf8(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    let update_id =
        update.get("update_id").and_then(Value::as_i64).map(TelegramUpdateId).ok_or_else(|| {
            ApiError::validation("invalid_update", "update_id", "an update needs an integer update_id")
        })?;
    let mut tx = state.pool.begin().await?;
    let stored = telegram::store_update(&mut tx, update_id, &update, raw, state.config.job_max_attempts).await?;
    tx.commit().await?;
    if !stored {
        tracing::debug!(%update_id, "replayed Telegram update ignored");
    }
    Ok(JsonOut(WebhookOut { ok: true }))
}

/// `GET /admin/telegram/alerts`: chats the bot was kicked from (their posts held until it is
/// back) and groups upgraded to a supergroup (followed by themselves; the setting still names
/// the old id), newest first. The console shows the active ones as a banner.
#[utoipa::path(get, path = "/admin/telegram/alerts", tag = "telegram", summary = "Admin: Telegram chats the bot cannot post to (kicked, or upgraded to a supergroup)", responses((status = 200, body = Vec<ChatStop>), Unauthenticated, NotAdmin, Unavailable))]
pub async fn admin_telegram_alerts(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<JsonOut<Vec<ChatStop>>, ApiError> {
    Ok(JsonOut(telegram::chat_stops(&state.pool).await?))
}

/// Replaces every NUL character in the strings and keys of `value` with U+FFFD.
fn replace_nul(value: &mut Value) {
    const REPLACEMENT: &str = "\u{fffd}";
    match value {
        Value::String(text) if text.contains('\0') => *text = text.replace('\0', REPLACEMENT),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => {
            if fields.keys().any(|key| key.contains('\0')) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, item)| (key.replace('\0', REPLACEMENT), item))
                    .collect();
            }
            fields.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn nul_characters_become_replacement_characters() {
        let mut update =
            json!({ "update_id": 1, "message": { "text": "a\u{0}b", "entities": [{ "x\u{0}": "\u{0}" }] } });
        super::replace_nul(&mut update);
        assert_eq!(
            update,
            json!({ "update_id": 1, "message": { "text": "a\u{fffd}b", "entities": [{ "x\u{fffd}": "\u{fffd}" }] } })
        );
    }
}
