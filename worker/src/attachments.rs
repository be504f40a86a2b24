//! How a decision reads a message's files: the offline engine and the model see words — a
//! voice message's transcript as the user's own text, and a line saying what else was attached
//! (a screenshot, a file by name) — and a model that reads images (`CONCIERGE_LLM_VISION`)
//! gets the images themselves besides (see `process_message`).

use concierge_shared::db::{
    messages::Message,
    transcripts::{self, AttachmentBrief},
};

/// Images of one message sent to a model that reads them.
pub const MAX_IMAGES_TO_MODEL: usize = 4;

/// `message` as the decision reads it: its text, then each transcript, then a line for each
/// other file.
pub fn with_attachments(mut message: Message, attachments: &[AttachmentBrief]) -> Message {
    let mut parts: Vec<String> = Vec::new();
    let text = message.content.trim();
    if !text.is_empty() {
        parts.push(text.to_owned());
    }
    for attachment in attachments.iter().filter(|a| a.message_id == Some(message.id)) {
        parts.push(describe(attachment));
    }
    message.content = parts.join("\n");
    message
}

/// What one attachment says to the decision.
pub fn describe(attachment: &AttachmentBrief) -> String {
    let name = attachment.file_name.replace(['[', ']', '\n', '\r'], " ");
    match attachment.kind.as_str() {
        "voice" => match attachment.transcript.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(transcript) => transcript.to_owned(),
            None => "[The user sent a voice message that could not be transcribed.]".to_owned(),
        },
        "image" => format!("[The user attached a screenshot (an image file named \"{name}\").]"),
        "pdf" => format!("[The user attached a PDF file named \"{name}\".]"),
        _ => format!("[The user attached a file named \"{name}\".]"),
    }
}

/// The history as the decision reads it: every message with its files.
pub async fn history_with_attachments(
    conn: &mut sqlx::PgConnection,
    history: Vec<Message>,
) -> sqlx::Result<Vec<Message>> {
    let ids: Vec<_> = history.iter().filter(|m| m.has_files()).map(|m| m.id).collect();
    if ids.is_empty() {
        return Ok(history);
    }
    let attachments = transcripts::of_messages(&mut *conn, &ids).await?;
    if attachments.is_empty() {
        return Ok(history);
    }
    Ok(history
        .into_iter()
        .map(|message| {
            if attachments.iter().any(|a| a.message_id == Some(message.id)) {
                with_attachments(message, &attachments)
            } else {
                message
            }
        })
        .collect())
}

/// Attach an operator's stored file to their reply, in the reply's transaction.
pub async fn attach_operator_file(
    conn: &mut sqlx::PgConnection,
    conversation_id: concierge_shared::ConversationId,
    reply: concierge_shared::MessageId,
    attachment: uuid::Uuid,
) -> sqlx::Result<()> {
    if !concierge_shared::db::attachments::attach_to_message(conn, conversation_id, reply, "operator", &[attachment])
        .await?
    {
        tracing::warn!(%attachment, "an operator's stored file could not be attached to the reply");
    }
    Ok(())
}

/// Remove a stored file that never reached a message (its reply was not delivered), row and
/// file; best effort, logged.
pub async fn forget_unsent(ctx: &crate::Context, attachment: uuid::Uuid) {
    match concierge_shared::db::attachments::delete_unsent(&ctx.pool, attachment).await {
        // The row's deletion queued the file; delete it now, or the file sweep will.
        Ok(Some(key)) => match ctx.storage.delete(&key).await {
            Ok(()) => {
                if let Err(error) = concierge_shared::db::storage_deletions::done(&ctx.pool, &key).await {
                    tracing::warn!(%error, %attachment, "an undelivered file's queued deletion was not cleared");
                }
            }
            Err(error) => tracing::warn!(%error, %attachment, "an undelivered file could not be deleted yet"),
        },
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, %attachment, "an undelivered file's row could not be deleted"),
    }
}

/// A signed link to one attachment under `base` (`CONCIERGE_PUBLIC_URL`), valid for
/// `lifetime` (see `concierge_shared::links`).
pub fn signed_link(ctx: &crate::Context, base: &str, attachment: uuid::Uuid, lifetime: std::time::Duration) -> String {
    format!("{base}{}", concierge_shared::links::signed_path(&ctx.link_secret, attachment, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(kind: &str, name: &str, transcript: Option<&str>) -> AttachmentBrief {
        AttachmentBrief {
            id: uuid::Uuid::new_v4(),
            message_id: None,
            kind: kind.into(),
            content_type: "application/octet-stream".into(),
            file_name: name.into(),
            size_bytes: 1,
            storage_key: String::new(),
            transcript: transcript.map(Into::into),
            transcript_failed: false,
        }
    }

    #[test]
    fn files_become_words_and_transcripts_the_users_text() {
        assert_eq!(describe(&brief("voice", "a.ogg", Some(" Как оплатить? "))), "Как оплатить?");
        assert!(describe(&brief("voice", "a.ogg", None)).contains("could not be transcribed"));
        assert!(describe(&brief("image", "screen[1].png", None)).contains("screenshot"));
        assert!(describe(&brief("image", "screen[1].png", None)).contains("screen 1 .png"));
        assert!(describe(&brief("pdf", "check.pdf", None)).contains("PDF file named \"check.pdf\""));
    }
}
