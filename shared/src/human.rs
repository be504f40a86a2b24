//! What operators do to a conversation, wherever they do it (the console API or a Telegram
//! topic): reply, hand back to the AI, close. Each runs in the caller's transaction under the
//! conversation's row lock, so it is ordered with the conversation's messages.

use sqlx::PgConnection;

use crate::{
    ConversationId, ConversationMode, ConversationStatus, MessageRole, OperatorChannel,
    db::{
        conversations::{self, CloseOutcome, Conversation},
        email_replies,
        messages::{self, Message, NewMessage},
        waits,
    },
    i18n::Locale,
    message_meta::MessageMeta,
};

/// The Prometheus histogram of the time from a hand-over to the first operator reply.
pub const FIRST_HUMAN_REPLY_SECONDS: &str = "concierge_first_human_reply_seconds";

#[derive(Debug, thiserror::Error)]
pub enum HumanError {
    #[error("no such conversation")]
    NotFound,
    #[error("the conversation is closed")]
    Closed,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Who is replying, as the user will see them.
pub struct Operator<'a> {
    /// The first name shown next to the reply.
    pub name: &'a str,
    pub via: OperatorChannel,
}

impl Operator<'_> {
    /// The first word of a full name, or a neutral word when there is none.
    pub fn first_name(full: Option<&str>) -> String {
        full.and_then(|name| name.split_whitespace().next()).unwrap_or("Оператор").to_owned()
    }
}

async fn lock_open(conn: &mut PgConnection, id: ConversationId) -> Result<Conversation, HumanError> {
    let conversation = conversations::lock(conn, id).await?.ok_or(HumanError::NotFound)?;
    if conversation.status == ConversationStatus::Closed {
        return Err(HumanError::Closed);
    }
    Ok(conversation)
}

/// Post an operator's reply; a conversation still with the AI becomes human-handled. When the
/// user asked for replies by email, the reply's email is queued with it.
pub async fn reply(
    conn: &mut PgConnection,
    id: ConversationId,
    operator: &Operator<'_>,
    content: &str,
) -> Result<Message, HumanError> {
    let conversation = lock_open(conn, id).await?;
    if conversation.mode == ConversationMode::Ai {
        conversations::set_human_mode(conn, id, "operator_joined").await?;
    }
    // The first reply after a hand-over ends the user's wait for a person.
    if let Some(waited) = waits::answer(&mut *conn, id).await? {
        ::metrics::histogram!(FIRST_HUMAN_REPLY_SECONDS, "via" => operator.via.as_str()).record(waited.as_secs_f64());
    }
    let reply = NewMessage::new(MessageRole::Operator, content)
        .with_metadata(MessageMeta::operator(operator.name, operator.via));
    let reply =
        messages::append(conn, id, reply).await?.expect("an operator reply has no reply_to, so it cannot conflict");
    email_replies::queue_for_reply(conn, id, reply.id).await?;
    Ok(reply)
}

/// Hand the conversation back to the AI; returns whether it was with a person.
pub async fn hand_back(conn: &mut PgConnection, id: ConversationId) -> Result<bool, HumanError> {
    let conversation = lock_open(conn, id).await?;
    if conversation.mode != ConversationMode::Human {
        return Ok(false);
    }
    conversations::set_ai_mode(conn, id).await?;
    let text = Locale::from_code(&conversation.locale).texts().back_to_ai;
    let notice =
        NewMessage::system(text).with_metadata(MessageMeta::status(ConversationStatus::Open, ConversationMode::Ai));
    messages::append(conn, id, notice).await?;
    Ok(true)
}

/// Close the conversation; the closing notice asks the user to rate. Returns whether it was
/// open.
pub async fn close(conn: &mut PgConnection, id: ConversationId) -> Result<bool, HumanError> {
    let conversation = conversations::lock(conn, id).await?.ok_or(HumanError::NotFound)?;
    let text = Locale::from_code(&conversation.locale).texts().conversation_closed;
    Ok(matches!(conversations::close(conn, &conversation, text).await?, CloseOutcome::Closed(_)))
}
