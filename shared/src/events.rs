//! The events the workers announce to the API processes over PostgreSQL NOTIFY.
//!
//! A committed message is announced as `{kind: message, conversation_id, seq}`, with the
//! message itself when it fits in NOTIFY's 8 KB: a listener that holds every message up to
//! `seq - 1` can take it from there, any other reads the rows itself (`seq > last seen`), which
//! is also how a missed notification is repaired. The other events carry ids and short texts.

use serde::{Deserialize, Serialize};

use crate::{ConversationId, MessageId, db::messages::Message};

/// The channel every API process LISTENs on.
pub const CHANNEL: &str = "concierge_events";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message was committed (written by the `messages` trigger, at commit): the message as
    /// committed, unless it was too long for a notification.
    Message {
        conversation_id: ConversationId,
        seq: i64,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "message_or_none")]
        message: Option<Box<Message>>,
    },
    /// A worker started writing the reply to a message (the widget shows "typing").
    Typing { conversation_id: ConversationId, reply_to: MessageId },
    /// More of a reply being written; the final message replaces it. Not stored.
    Delta { conversation_id: ConversationId, reply_to: MessageId, text: String },
    /// A stored message was edited (an operator edited their reply in Telegram).
    Edited { conversation_id: ConversationId, message_id: MessageId },
    /// An operator is writing a reply in the console (renewed every few seconds while they type).
    OperatorTyping { conversation_id: ConversationId, name: String },
}

/// The message a notification carries, or none when this process cannot read it (a newer
/// process's message during a rolling deploy): the listener then reads the row, as it does for a
/// message too long to carry, rather than losing the whole notification.
fn message_or_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Box<Message>>, D::Error> {
    let carried = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(carried.and_then(|message| match Message::deserialize(message) {
        Ok(message) => Some(Box::new(message)),
        // Not the error itself: it may quote what the user wrote.
        Err(_) => {
            tracing::warn!("a notification's message is unreadable here; reading it from the database");
            None
        }
    }))
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
        let body = &sql[sql.find("CREATE FUNCTION concierge_notify_message").unwrap()..];
        assert!(body.contains(&format!("pg_notify('{CHANNEL}'")), "the trigger notifies another channel: {body}");
        let object = &body[body.find("json_build_object(").unwrap() + "json_build_object(".len()..];
        let args: Vec<&str> = object[..object.find(')').unwrap()].split(',').map(str::trim).collect();
        let mut sql_keys: Vec<&str> = args.iter().step_by(2).map(|key| key.trim_matches('\'')).collect();
        assert_eq!(args[1], "'message'", "{body}");
        assert!(body.contains("jsonb_build_object('message', message)"), "{body}");
        sql_keys.push("message");
        // The message is read with the columns a `Message` is read with.
        assert!(body.contains(crate::db::messages::COLUMNS), "{body}");

        let payload = format!(r#"{{"kind": "message", "conversation_id": "{}", "seq": 7}}"#, uuid::Uuid::new_v4());
        let event: Event = serde_json::from_str(&payload).unwrap();
        let json = serde_json::to_value(&event).unwrap();
        let mut rust_keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        rust_keys.push("message");
        rust_keys.sort();
        sql_keys.sort();
        assert_eq!(sql_keys, rust_keys, "{body}");
        assert!(matches!(event, Event::Message { seq: 7, message: None, .. }));
    }

    #[test]
    fn a_carried_message_this_process_cannot_read_leaves_the_notification_readable() {
        let conversation = uuid::Uuid::new_v4();
        let payload = format!(
            r#"{{"kind": "message", "conversation_id": "{conversation}", "seq": 7, "message": {{"role": "robot"}}}}"#
        );
        let event: Event = serde_json::from_str(&payload).unwrap();
        assert!(matches!(event, Event::Message { seq: 7, message: None, .. }));
    }
}
