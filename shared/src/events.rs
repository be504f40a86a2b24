//! The events the workers announce to the API processes over PostgreSQL NOTIFY.
//!
//! Payloads carry ids only: a listener that receives `{kind: message, conversation_id, seq}`
//! reads the rows itself, so a payload can never exceed NOTIFY's 8 KB limit and a missed
//! notification is repaired by reading `seq > last seen`.

use serde::{Deserialize, Serialize};

use crate::{ConversationId, MessageId};

/// The channel every API process LISTENs on.
pub const CHANNEL: &str = "concierge_events";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message was committed (written by the `messages` trigger).
    Message { conversation_id: ConversationId, seq: i64 },
    /// A worker started writing the reply to a message (the widget shows "typing").
    Typing { conversation_id: ConversationId, reply_to: MessageId },
    /// More of a reply being written; the final message replaces it. Not stored.
    Delta { conversation_id: ConversationId, reply_to: MessageId, text: String },
    /// A stored message was edited (an operator edited their reply in Telegram).
    Edited { conversation_id: ConversationId, message_id: MessageId },
    /// An operator is writing a reply in the console (renewed every few seconds while they type).
    OperatorTyping { conversation_id: ConversationId, name: String },
}

impl Event {
    pub fn conversation_id(&self) -> ConversationId {
        match self {
            Event::Message { conversation_id, .. }
            | Event::Typing { conversation_id, .. }
            | Event::Delta { conversation_id, .. }
            | Event::Edited { conversation_id, .. }
            | Event::OperatorTyping { conversation_id, .. } => *conversation_id,
        }
    }

    /// Send an ephemeral event to every API process.
    pub async fn publish(&self, db: impl sqlx::PgExecutor<'_>) -> sqlx::Result<()> {
        let payload = serde_json::to_string(self).expect("events serialise");
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(db).await?;
        Ok(())
    }
}

/// NOTIFY payloads must stay under 8000 bytes; deltas are cut below this.
pub const MAX_DELTA_BYTES: usize = 6000;
