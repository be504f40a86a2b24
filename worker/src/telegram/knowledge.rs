//! The knowledge base from a topic: `/kb` in reply to an operator's own answer (or the button
//! under a reply written in the console) asks for a draft article made from the user's question
//! and that answer; `/kb query` answers in the topic with the best passages of the base, so
//! that operators can answer from it quickly.
//!
//! Asking for a draft only stores it with its job (the knowledge-draft job writes it, with the
//! model when one is configured, and confirms in the topic); an answer has one draft, so asking
//! again says where the first one is.

use concierge_shared::{
    ConversationId, MessageId, MessageRole, OperatorChannel, TelegramMessageId, TelegramUpdateId,
    db::{
        conversations,
        knowledge_drafts::{self as drafts, NewDraft},
        messages,
        telegram::{self as store, NewPost, Topic},
    },
    i18n::{KnowledgeTexts, Locale, fill, lookup},
    knowledge::{SearchOptions, normalize_query},
};
use teloxide::{
    payloads::AnswerCallbackQuerySetters,
    prelude::Requester,
    types::{CallbackQuery, Message},
};

use crate::{
    Context,
    telegram::{SendError, Telegram, updates::Author},
};

/// Passages a `/kb query` shows.
const PASSAGES: usize = 3;
/// Characters of each passage shown.
const EXCERPT_CHARS: usize = 280;

/// `/kb` (with `query` empty) or `/kb query`, written by an operator in the topic.
pub(super) async fn command(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    topic: &Topic,
    from: &Author,
    message: &Message,
    query: &str,
) -> Result<String, SendError> {
    let id = topic.conversation_id;
    let texts = texts_of(ctx, id).await?;
    if !query.is_empty() {
        return search(ctx, update_id, id, query, texts).await;
    }
    // In a forum every message replies to the topic's first message unless it replies to
    // another one: only an answer the user saw counts.
    let Some(replied) = message.reply_to_message() else {
        notice(ctx, id, update_id, texts.draft_usage).await?;
        return Ok("refused: /kb without an answer".into());
    };
    let telegram_id = TelegramMessageId(replied.id.0);
    // Anonymous admins share one sender: their signatures tell them apart.
    let same_author = replied.from.as_ref().map(|user| user.id.0 as i64) == Some(from.id)
        && (from.id != super::GROUP_ANONYMOUS_BOT as i64 || replied.author_signature() == message.author_signature());
    let answer_id = match store::linked_message(&ctx.pool, telegram.chat_id(), telegram_id).await? {
        Some(answer_id) if same_author => answer_id,
        Some(_) => {
            notice(ctx, id, update_id, texts.draft_not_yours).await?;
            return Ok("refused: /kb on another operator's answer".into());
        }
        // A reply written in the console, as the bot posted it here.
        None => match drafts::console_reply_at(&ctx.pool, id, i64::from(replied.id.0)).await? {
            Some(answer_id) => answer_id,
            None => {
                notice(ctx, id, update_id, texts.draft_usage).await?;
                return Ok("refused: /kb without an answer".into());
            }
        },
    };
    request_draft(ctx, update_id, id, answer_id, &from.full_name, texts).await
}

/// The button under a console reply: `kb:<message id>`. The press is always answered.
pub(super) async fn button(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    query: &CallbackQuery,
    answer_id: &str,
) -> Result<String, SendError> {
    let answer = |text: Option<&'static str>, alert: bool| {
        let request = telegram.bot.answer_callback_query(query.id.clone());
        let request = match text {
            Some(text) => request.text(text).show_alert(alert),
            None => request,
        };
        async move {
            if let Err(error) = request.await {
                tracing::debug!(%error, "answering a button press failed");
            }
        }
    };
    let message = match answer_id.parse::<MessageId>() {
        Ok(answer_id) => messages::get(&ctx.pool, answer_id).await?,
        Err(_) => None,
    };
    let Some(message) = message.filter(|message| message.role == MessageRole::Operator) else {
        answer(None, false).await;
        return Ok("ignored: unknown button".into());
    };
    let id = message.conversation_id;
    let texts = texts_of(ctx, id).await?;
    let operators = &Locale::from_code(&locale_of(ctx, id).await?).texts().operators;
    match telegram.is_operator(query.from.id.0).await {
        Ok(true) => {}
        Ok(false) => {
            answer(Some(operators.not_an_operator), true).await;
            return Ok("ignored: not an operator".into());
        }
        Err(error) => {
            answer(None, false).await;
            return Err(error);
        }
    }
    let outcome = request_draft(ctx, update_id, id, message.id, &query.from.full_name(), texts).await;
    answer(Some(texts.draft_pressed), false).await;
    outcome
}

/// Store the draft of `answer_id` with its job, or say in the topic where the draft of it is.
async fn request_draft(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    answer_id: MessageId,
    requested_by: &str,
    texts: &'static KnowledgeTexts,
) -> Result<String, SendError> {
    let Some(answer) = messages::get(&ctx.pool, answer_id).await?.filter(|m| m.conversation_id == id) else {
        return Ok("ignored: the answer is gone".into());
    };
    let question = drafts::question_before(&ctx.pool, id, answer.seq).await?;
    let new = NewDraft {
        conversation_id: id,
        answer_id,
        question: &question,
        answer: &answer.content,
        requested_by,
        requested_via: OperatorChannel::Telegram,
    };
    let mut tx = ctx.pool.begin().await?;
    let (draft, created) = drafts::request(&mut tx, new, ctx.max_attempts).await?;
    let outcome = if created {
        "kb: draft requested"
    } else {
        let title = draft.title.as_deref().unwrap_or(&draft.question);
        let status = lookup(&texts.draft_statuses, &draft.status);
        post(&mut tx, ctx, id, update_id, fill(texts.draft_exists, &[("title", title), ("status", status)])).await?;
        "kb: the draft exists"
    };
    store::finish_update(&mut *tx, update_id, outcome).await?;
    tx.commit().await?;
    Ok(outcome.into())
}

/// The best passages for `query`, posted in the topic.
async fn search(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    query: &str,
    texts: &'static KnowledgeTexts,
) -> Result<String, SendError> {
    let normalized = normalize_query(query);
    let options = SearchOptions { per_document: 1, ..SearchOptions::top(PASSAGES) };
    let found = ctx.knowledge.search(&normalized, &options).await;
    let shown = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = if found.result.hits.is_empty() {
        fill(texts.search_empty, &[("query", &shown)])
    } else {
        let mut text = fill(texts.search_heading, &[("query", &shown)]);
        for (n, hit) in found.result.hits.iter().enumerate() {
            let chunk = &hit.chunk;
            let heading = if chunk.heading == chunk.doc_title { "" } else { chunk.heading.as_str() };
            let line = fill(
                texts.search_hit,
                &[
                    ("n", &(n + 1).to_string()),
                    ("title", &chunk.doc_title),
                    ("heading", heading),
                    ("excerpt", &excerpt(&chunk.text, EXCERPT_CHARS)),
                    ("path", &chunk.doc_path),
                ],
            );
            text.push_str("\n\n");
            // A passage under its document's own title has no heading to name.
            text.push_str(&line.replace(" — \n", "\n"));
        }
        text
    };
    notice(ctx, id, update_id, &text).await?;
    Ok(format!("kb: search ({} passages)", found.result.hits.len()))
}

/// A passage as plain text: Markdown emphasis dropped, whitespace folded, cut at a word.
fn excerpt(text: &str, max: usize) -> String {
    let plain = text.replace("**", "").replace('`', "");
    let folded = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max {
        return folded;
    }
    let cut: String = folded.chars().take(max).collect();
    let cut = cut.rfind(' ').map_or(cut.as_str(), |at| &cut[..at]);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

async fn locale_of(ctx: &Context, id: ConversationId) -> Result<String, SendError> {
    Ok(conversations::get(&ctx.pool, id).await?.map(|c| c.locale).unwrap_or_default())
}

async fn texts_of(ctx: &Context, id: ConversationId) -> Result<&'static KnowledgeTexts, SendError> {
    Ok(Locale::from_code(&locale_of(ctx, id).await?).knowledge_texts())
}

async fn notice(ctx: &Context, id: ConversationId, update_id: TelegramUpdateId, text: &str) -> Result<(), SendError> {
    let mut tx = ctx.pool.begin().await?;
    post(&mut tx, ctx, id, update_id, text.to_owned()).await?;
    tx.commit().await?;
    Ok(())
}

/// A notice in the topic, keyed by the update that caused it.
async fn post(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    id: ConversationId,
    update_id: TelegramUpdateId,
    text: String,
) -> Result<(), SendError> {
    let post =
        NewPost { key: format!("update:{update_id}"), kind: "notice", message_id: None, text, reply_markup: None };
    store::queue_post(tx, id, post, ctx.max_attempts).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_are_plain_and_cut_at_a_word() {
        assert_eq!(excerpt("Откройте **Настройки →\nОплата**.", 100), "Откройте Настройки → Оплата.");
        assert_eq!(excerpt("один два три четыре", 12), "один два…");
    }
}
