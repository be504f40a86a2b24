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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `messages` trigger builds `Event::Message` in SQL (the migration that last defines
    /// `concierge_notify_message`); this keeps that payload and the Rust type the same shape.
    #[test]
    fn the_message_trigger_sends_what_event_message_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let sql = files
            .iter()
            .rev()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .find(|sql| sql.contains("FUNCTION concierge_notify_message"))
            .expect("a migration defines concierge_notify_message");
        let body = &sql[sql.find("FUNCTION concierge_notify_message").unwrap()..];
        let notify = &body[body.find("pg_notify(").unwrap()..];
        assert!(notify.contains(&format!("'{CHANNEL}'")), "the trigger notifies another channel: {notify}");
        let args = &notify[notify.find("json_build_object(").unwrap() + "json_build_object(".len()..];
        let args: Vec<&str> = args[..args.find(')').unwrap()].split(',').map(str::trim).collect();
        let sql_keys: Vec<&str> = args.iter().step_by(2).map(|key| key.trim_matches('\'')).collect();
        assert_eq!(args[1], "'message'", "{notify}");

        let event = Event::Message { conversation_id: ConversationId::new(), seq: 1 };
        let json = serde_json::to_value(&event).unwrap();
        let mut rust_keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sql_sorted = sql_keys.clone();
        rust_keys.sort();
        sql_sorted.sort();
        assert_eq!(sql_sorted, rust_keys, "{notify}");
        assert_eq!(json["kind"], "message");

        // And what the trigger sends parses back into the event.
        let payload = format!(r#"{{"kind" : "message", "conversation_id" : "{}", "seq" : 7}}"#, uuid::Uuid::new_v4());
        assert!(matches!(serde_json::from_str(&payload).unwrap(), Event::Message { seq: 7, .. }));
    }
}
