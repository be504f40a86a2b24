//! Which web message an operator's Telegram message became.
//!
//! Invariant: one Telegram message maps to at most one web message, so an edit or a replayed
//! update never posts it twice.

use sqlx::{PgConnection, PgExecutor};

use crate::{MessageId, TelegramChatId, TelegramMessageId};

/// Remember which web message an operator's Telegram message became; false if it is known.
pub async fn link_message(
    conn: &mut PgConnection,
    chat_id: TelegramChatId,
    telegram_message_id: TelegramMessageId,
    message_id: MessageId,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(chat_id)
    .bind(i64::from(telegram_message_id.0))
    .bind(message_id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub async fn linked_message(
    db: impl PgExecutor<'_>,
    chat_id: TelegramChatId,
    telegram_message_id: TelegramMessageId,
) -> sqlx::Result<Option<MessageId>> {
    sqlx::query_scalar("SELECT message_id FROM telegram_messages WHERE chat_id = $1 AND telegram_message_id = $2")
        .bind(chat_id)
        .bind(i64::from(telegram_message_id.0))
        .fetch_optional(db)
        .await
}
