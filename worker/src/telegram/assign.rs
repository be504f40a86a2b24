//! Taking a conversation: `/take` (or the card's button) gives it to the operator who asked,
//! even from another operator; `/release` gives it back to all operators. The topic is told
//! who has it, and the console shows it. Replies stay open to every operator: one from
//! another operator goes through and is pointed out in the topic (see [`super::updates`]),
//! without changing who has the conversation. The name the user sees stays the replying
//! operator's first name.

use concierge_shared::{
    ConversationId, ConversationStatus, TelegramUpdateId,
    db::{conversations, telegram as store},
    i18n::{OperatorTexts, fill},
};

use crate::{
    Context,
    telegram::{
        SendError,
        updates::{Author, post_notice},
    },
};

/// `/take` or the card's button: the conversation is the operator's, even if another one had it.
pub(super) async fn take(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    from: &Author,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let mut tx = ctx.pool.begin().await?;
    let Some(conversation) = conversations::lock(&mut tx, id).await? else {
        return Ok("ignored: conversation deleted".into());
    };
    if conversation.status == ConversationStatus::Closed {
        post_notice(&mut tx, ctx, id, update_id, texts.already_closed).await?;
        tx.commit().await?;
        return Ok("take: conversation closed".into());
    }
    let me = from.id;
    let name = from.label.clone();
    let (text, outcome) = match store::lock_assignee(&mut tx, id).await? {
        Some((assignee, _)) if assignee == me => (texts.already_yours.to_owned(), "take: already taken"),
        Some((_, previous)) => {
            store::set_assignee(&mut *tx, id, Some((me, &name))).await?;
            (fill(texts.taken_over, &[("name", &name), ("previous", &previous)]), "take")
        }
        None => {
            store::set_assignee(&mut *tx, id, Some((me, &name))).await?;
            (fill(texts.taken, &[("name", &name)]), "take")
        }
    };
    post_notice(&mut tx, ctx, id, update_id, &text).await?;
    tx.commit().await?;
    Ok(outcome.into())
}

/// `/release`: the operator who has the conversation hands it back to all operators.
pub(super) async fn release(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    from: &Author,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let mut tx = ctx.pool.begin().await?;
    let (text, outcome) = match store::lock_assignee(&mut tx, id).await? {
        None => (texts.release_nobody.to_owned(), "release: nobody has it"),
        Some((assignee, _)) if assignee == from.id => {
            store::set_assignee(&mut *tx, id, None).await?;
            (fill(texts.released, &[("name", &from.label)]), "release")
        }
        Some((_, name)) => (fill(texts.release_not_yours, &[("name", &name)]), "release: not theirs"),
    };
    post_notice(&mut tx, ctx, id, update_id, &text).await?;
    tx.commit().await?;
    Ok(outcome.into())
}
