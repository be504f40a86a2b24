//! The events the workers announce to the API processes over PostgreSQL NOTIFY.
//!
//! Payloads carry ids only: a listener that receives `{kind: message, conversation_id, seq}`
//! reads the rows itself, so a payload can never exceed NOTIFY's 8 KB limit and a missed
//! notification is repaired by reading `seq > last seen`.

use serde::{Deserialize, Serialize};

use crate::ConversationId;

/// The channel every API process LISTENs on.
pub const CHANNEL: &str = "concierge_events";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message was committed (written by the `messages` trigger).
    Message { conversation_id: ConversationId, seq: i64 },
}

impl Event {
    pub fn conversation_id(&self) -> ConversationId {
        match self {
            Event::Message { conversation_id, .. } => *conversation_id,
        }
    }
}
