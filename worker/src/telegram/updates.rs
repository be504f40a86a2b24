//! The telegram-update job: what operators do in the support group.
//!
//! In a conversation's topic, an operator's text becomes an operator message in the web chat;
//! `/close`, `/ai` and `/note text` (or the card's buttons) close the conversation, hand it
//! back to the bot, or store an internal note; `/kb` makes a knowledge draft of an answer or
//! searches the knowledge base (see `knowledge`); an edited reply edits the web message; photos
//! and files are refused with a word to the operator. Messages from people who are not
//! operators, from other chats and from unknown topics are ignored. Each update is handled
//! once: it is marked processed in the transaction that applies it.

use std::time::Duration;

use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ConversationId, OperatorChannel, TelegramMessageId, TelegramThreadId, TelegramUpdateId,
    db::{
        conversations,
        messages::{self},
        telegram::{self as store, NewPost, Topic},
    },
    events::Event,
    human::{self, HumanError, Operator},
    i18n::{Locale, OperatorTexts},
    jobs::TelegramUpdate,
};
use teloxide::{
    payloads::AnswerCallbackQuerySetters,
    prelude::Requester,
    types::{CallbackQuery, Message, MessageKind, Update, UpdateKind, User},
};

use crate::{
    Context,
    retry::Backoff,
    telegram::{SendError, Telegram},
};

/// Handle the job's update, and before it any earlier one still waiting: updates are handled
/// one at a time, oldest first, whichever job runs them, so an edit comes after the message it
/// edits and a `/close` after the reply typed before it. An update that keeps failing is
/// retried with the job, and marked failed only when the job's last attempt fails too.
#[tracing::instrument(skip_all, fields(update_id = %job.update_id))]
pub async fn handle(job: TelegramUpdate, ctx: Data<Context>, attempt: Attempt) -> Result<(), BoxDynError> {
    let Some(telegram) = ctx.telegram.clone() else {
        store::finish_update(&ctx.pool, job.update_id, "ignored: Telegram is not configured").await?;
        return Ok(());
    };
    // apalis counts this run already.
    let last_attempt = attempt.current() as u32 >= ctx.max_attempts;
    match handle_through(&ctx, &telegram, job.update_id, last_attempt).await {
        Ok(()) => Ok(()),
        Err(error) if last_attempt => {
            // Not even the lock or the list could be had: the update is not left waiting for a
            // later one's job to apply it, late.
            tracing::error!(%error, "handling a Telegram update failed for good");
            store::finish_update(&ctx.pool, job.update_id, &format!("failed: {error}")).await?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

async fn handle_through(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    last_attempt: bool,
) -> anyhow::Result<()> {
    let backoff = Backoff { tries: 3, first: Duration::from_millis(500), max: Duration::from_secs(5) };
    let _lock = store::lock_updates(&ctx.pool).await?;
    for pending in store::pending_updates_through(&ctx.pool, update_id).await? {
        let handled = backoff.run("handling a Telegram update", |_| false, || process(ctx, telegram, pending)).await;
        match handled {
            Ok(()) => {}
            Err(error) if last_attempt => {
                tracing::error!(update_id = %pending, %error, "handling a Telegram update failed for good");
                store::finish_update(&ctx.pool, pending, &format!("failed: {error}")).await?;
            }
            Err(error) => anyhow::bail!("update {pending}: {error}"),
        }
    }
    Ok(())
}

async fn process(ctx: &Context, telegram: &Telegram, update_id: TelegramUpdateId) -> Result<(), SendError> {
    let Some(payload) = store::pending_update(&ctx.pool, update_id).await? else {
        return Ok(());
    };
    // From text: teloxide's update parser reads a `serde_json::Value` as an unknown kind.
    let outcome = match serde_json::from_str::<Update>(&payload.to_string()) {
        Ok(update) => match update.kind {
            UpdateKind::Message(message) => on_message(ctx, telegram, update_id, &message).await?,
            UpdateKind::EditedMessage(message) => on_edit(ctx, telegram, &message).await?,
            UpdateKind::CallbackQuery(query) => on_button(ctx, telegram, update_id, &query).await?,
            _ => "ignored: not a message".into(),
        },
        Err(error) => format!("ignored: unreadable update ({error})"),
    };
    tracing::info!(outcome, "Telegram update handled");
    // Handlers that change a conversation mark the update in their own transaction.
    store::finish_update(&ctx.pool, update_id, &outcome).await?;
    Ok(())
}

/// The conversation behind a message in the support group, if it was written by an operator
/// in a known topic; otherwise why it is ignored.
async fn operator_topic(
    ctx: &Context,
    telegram: &Telegram,
    message: &Message,
) -> Result<Result<(Topic, User), String>, SendError> {
    if message.chat.id.0 != telegram.chat_id.0 {
        return Ok(Err("ignored: another chat".into()));
    }
    let Some(from) = message.from.clone() else { return Ok(Err("ignored: no sender".into())) };
    if from.is_bot {
        return Ok(Err("ignored: a bot".into()));
    }
    let Some(thread) = message.thread_id else { return Ok(Err("ignored: not in a topic".into())) };
    let Some(topic) = store::topic_by_thread(&ctx.pool, telegram.chat_id, TelegramThreadId(thread.0.0)).await? else {
        return Ok(Err("ignored: unknown topic".into()));
    };
    if !telegram.is_operator(from.id.0).await? {
        return Ok(Err("ignored: not an operator".into()));
    }
    Ok(Ok((topic, from)))
}

async fn on_message(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    message: &Message,
) -> Result<String, SendError> {
    if !matches!(message.kind, MessageKind::Common(_)) {
        // A topic renamed, closed or pinned to: nothing for the user.
        return Ok("ignored: a service message".into());
    }
    let (topic, from) = match operator_topic(ctx, telegram, message).await? {
        Ok(found) => found,
        Err(ignored) => return Ok(ignored),
    };
    let id = topic.conversation_id;
    let texts = texts_of(ctx, id).await?;
    let Some(text) = message.text().map(str::trim).filter(|t| !t.is_empty()) else {
        // Photos, files, stickers, voice: the web chat takes text only.
        notify(ctx, id, update_id, texts.attachment_refused).await?;
        return Ok("refused: not text".into());
    };
    if let Some(command) = text.strip_prefix('/') {
        let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
        // `/close@LectioSupportBot` in groups with several bots.
        let name = name.split('@').next().unwrap_or(name);
        if name == "kb" {
            return super::knowledge::command(ctx, telegram, update_id, &topic, &from, message, rest.trim()).await;
        }
        return command_outcome(ctx, update_id, id, &from, name, rest.trim(), texts).await;
    }
    let name = Operator::first_name(Some(&from.first_name));
    let mut tx = ctx.pool.begin().await?;
    let operator = Operator { name: &name, via: OperatorChannel::Telegram };
    match human::reply(&mut tx, id, &operator, text).await {
        Ok(reply) => {
            if !store::link_message(&mut tx, telegram.chat_id, TelegramMessageId(message.id.0), reply.id).await? {
                // Already mirrored by an earlier run.
                tx.rollback().await?;
                return Ok("reply: already delivered".into());
            }
            store::finish_update(&mut *tx, update_id, "reply").await?;
            tx.commit().await?;
            Ok("reply".into())
        }
        Err(HumanError::Closed) => {
            tx.rollback().await?;
            notify(ctx, id, update_id, texts.already_closed).await?;
            Ok("refused: conversation closed".into())
        }
        Err(HumanError::NotFound) => Ok("ignored: conversation deleted".into()),
        Err(HumanError::Database(error)) => Err(error.into()),
    }
}

async fn command_outcome(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    from: &User,
    command: &str,
    argument: &str,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    match command {
        "close" => close(ctx, update_id, id, texts).await,
        "ai" => hand_back(ctx, update_id, id, texts).await,
        "note" if argument.is_empty() => {
            notify(ctx, id, update_id, texts.note_empty).await?;
            Ok("refused: empty note".into())
        }
        "note" => {
            let author = from.full_name();
            let key = format!("update:{update_id}");
            store::add_note(&ctx.pool, id, &author, argument, OperatorChannel::Telegram, Some(&key)).await?;
            notify(ctx, id, update_id, texts.note_saved).await?;
            Ok("note".into())
        }
        _ => {
            notify(ctx, id, update_id, texts.unknown_command).await?;
            Ok("refused: unknown command".into())
        }
    }
}

async fn close(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let mut tx = ctx.pool.begin().await?;
    let closed = match human::close(&mut tx, id).await {
        Ok(closed) => closed,
        Err(HumanError::NotFound) => return Ok("ignored: conversation deleted".into()),
        Err(HumanError::Closed) => false,
        Err(HumanError::Database(error)) => return Err(error.into()),
    };
    let text = if closed { texts.closed } else { texts.already_closed };
    post_notice(&mut tx, ctx, id, update_id, text).await?;
    tx.commit().await?;
    Ok(if closed { "close" } else { "close: already closed" }.into())
}

async fn hand_back(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let mut tx = ctx.pool.begin().await?;
    let outcome = match human::hand_back(&mut tx, id).await {
        Ok(true) => "ai",
        Ok(false) => "ai: already with the bot",
        Err(HumanError::Closed) => "ai: conversation closed",
        Err(HumanError::NotFound) => return Ok("ignored: conversation deleted".into()),
        Err(HumanError::Database(error)) => return Err(error.into()),
    };
    let text = match outcome {
        "ai" => texts.handed_back,
        "ai: conversation closed" => texts.already_closed,
        _ => texts.already_with_ai,
    };
    post_notice(&mut tx, ctx, id, update_id, text).await?;
    tx.commit().await?;
    Ok(outcome.into())
}

/// An edited operator reply edits the web message.
async fn on_edit(ctx: &Context, telegram: &Telegram, message: &Message) -> Result<String, SendError> {
    if let Err(ignored) = operator_topic(ctx, telegram, message).await? {
        return Ok(ignored);
    }
    let Some(text) = message.text().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok("ignored: edit without text".into());
    };
    let Some(message_id) = store::linked_message(&ctx.pool, telegram.chat_id, TelegramMessageId(message.id.0)).await?
    else {
        return Ok("ignored: edit of a message the user never saw".into());
    };
    let mut tx = ctx.pool.begin().await?;
    let Some(edited) = messages::edit(&mut tx, message_id, text).await? else {
        return Ok("ignored: message deleted".into());
    };
    Event::Edited { conversation_id: edited.conversation_id, message_id }.publish(&mut *tx).await?;
    tx.commit().await?;
    Ok("edit".into())
}

/// The card's buttons: `close:<id>` and `ai:<id>`; `kb:<message id>` under a console reply.
async fn on_button(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    query: &CallbackQuery,
) -> Result<String, SendError> {
    let answer = |text: Option<&'static str>| {
        let request = telegram.bot.answer_callback_query(query.id.clone());
        let request = match text {
            Some(text) => request.text(text).show_alert(true),
            None => request,
        };
        async move {
            // The spinner on the button stops either way; a failure here changes nothing.
            if let Err(error) = request.await {
                tracing::debug!(%error, "answering a button press failed");
            }
        }
    };
    if let Some(answer_id) = query.data.as_deref().and_then(|data| data.strip_prefix("kb:")) {
        return super::knowledge::button(ctx, telegram, update_id, query, answer_id).await;
    }
    let Some((action, id)) = query.data.as_deref().and_then(|data| data.split_once(':')) else {
        answer(None).await;
        return Ok("ignored: unknown button".into());
    };
    let Ok(id) = id.parse::<ConversationId>() else {
        answer(None).await;
        return Ok("ignored: unknown button".into());
    };
    let Some(conversation) = conversations::get(&ctx.pool, id).await? else {
        answer(None).await;
        return Ok("ignored: conversation deleted".into());
    };
    let texts = &Locale::from_code(&conversation.locale).texts().operators;
    let outcome = match telegram.is_operator(query.from.id.0).await {
        Ok(false) => {
            answer(Some(texts.not_an_operator)).await;
            return Ok("ignored: not an operator".into());
        }
        Ok(true) => match action {
            "close" => close(ctx, update_id, id, texts).await,
            "ai" => hand_back(ctx, update_id, id, texts).await,
            _ => Ok("ignored: unknown button".into()),
        },
        Err(error) => Err(error),
    };
    // Telegram waits for an answer to stop the button's spinner, even when handling failed.
    answer(None).await;
    outcome
}

async fn texts_of(ctx: &Context, id: ConversationId) -> Result<&'static OperatorTexts, SendError> {
    let locale = conversations::get(&ctx.pool, id).await?.map(|c| c.locale).unwrap_or_default();
    Ok(&Locale::from_code(&locale).texts().operators)
}

/// Answer the operator in the topic (through the outbox, in order with everything else).
async fn notify(ctx: &Context, id: ConversationId, update_id: TelegramUpdateId, text: &str) -> Result<(), SendError> {
    let mut tx = ctx.pool.begin().await?;
    post_notice(&mut tx, ctx, id, update_id, text).await?;
    tx.commit().await?;
    Ok(())
}

async fn post_notice(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    id: ConversationId,
    update_id: TelegramUpdateId,
    text: &str,
) -> Result<(), SendError> {
    let post = NewPost {
        key: format!("update:{update_id}"),
        kind: "notice",
        message_id: None,
        text: text.to_owned(),
        reply_markup: None,
    };
    store::queue_post(tx, id, post, ctx.max_attempts).await?;
    Ok(())
}
