//! The telegram-update job: what operators do in the support group.
//!
//! In a conversation's topic, an operator's text becomes an operator message in the web chat;
//! `/close`, `/ai` and `/note text` (or the card's buttons) close the conversation, hand it
//! back to the bot, or store an internal note; `/take` (or the card's button) gives the
//! conversation to the operator, `/release` gives it back to all; `/kb` makes a knowledge draft of an answer or
//! searches the knowledge base (see `knowledge`); an edited reply edits the web message; photos
//! and files are refused with a word to the operator. Messages from people who are not
//! operators, from other chats and from unknown topics are ignored, and so are commands for
//! another bot (`/close@OtherBot`). The group's anonymous admins are operators. An update
//! teloxide cannot read is handled from its JSON where it can be (a button press is answered)
//! and logged with its kind. The bot's membership and a group's upgrade to a supergroup stop,
//! resume or move the sending. Each update is handled once: it is marked processed in the
//! transaction that applies it.

use std::time::Duration;

use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ConversationId, OperatorChannel, TelegramChatId, TelegramMessageId, TelegramThreadId, TelegramUpdateId,
    attachments::{self, NewAttachment},
    db::{
        conversations,
        messages::{self},
        telegram::{self as store, NewPost, Topic},
    },
    events::Event,
    human::{self, HumanError, Operator},
    i18n::{self, Locale, OperatorTexts, fill},
    jobs::TelegramUpdate,
};
use teloxide::{
    payloads::AnswerCallbackQuerySetters,
    prelude::Requester,
    types::{CallbackQuery, ChatMemberUpdated, Message, MessageKind, Update, UpdateKind, User},
};

use crate::{
    Context,
    retry::Backoff,
    telegram::{SendError, Telegram, assign},
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
    let Some(raw) = store::pending_update(&ctx.pool, update_id).await? else {
        return Ok(());
    };
    // teloxide reads an update it cannot parse (a kind or field newer than the Bot API it
    // knows) as an empty `UpdateKind::Error`: such updates are handled from the JSON itself.
    let outcome = match serde_json::from_str::<Update>(&raw) {
        Ok(update) => match update.kind {
            UpdateKind::Message(message) => on_message(ctx, telegram, update_id, &message).await?,
            UpdateKind::EditedMessage(message) => on_edit(ctx, telegram, &message).await?,
            UpdateKind::CallbackQuery(query) => on_button(ctx, telegram, update_id, &query).await?,
            UpdateKind::MyChatMember(member) => on_membership(telegram, ctx, &member).await?,
            UpdateKind::Error(_) => unreadable(telegram, &raw, None).await,
            other => format!("ignored: {}", kind_of(&raw).unwrap_or_else(|| format!("{other:?}"))),
        },
        Err(error) => unreadable(telegram, &raw, Some(&error)).await,
    };
    tracing::info!(outcome, "Telegram update handled");
    // Handlers that change a conversation mark the update in their own transaction.
    store::finish_update(&ctx.pool, update_id, &outcome).await?;
    Ok(())
}

/// The update's kind: its one key besides `update_id`.
fn kind_of(raw: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    value.as_object()?.keys().find(|key| *key != "update_id").cloned()
}

/// An update teloxide could not read: a button press is still answered (its `id` read from the
/// JSON), so that its spinner stops; anything else is logged with its kind and kept.
async fn unreadable(telegram: &Telegram, raw: &str, error: Option<&serde_json::Error>) -> String {
    let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    let kind = kind_of(raw).unwrap_or_else(|| "unknown".into());
    let detail = error.map(ToString::to_string).unwrap_or_else(|| "a shape teloxide does not know".into());
    if let Some(id) = value.pointer("/callback_query/id").and_then(|id| id.as_str()) {
        if let Err(error) = telegram.bot.answer_callback_query(teloxide::types::CallbackQueryId(id.to_owned())).await {
            tracing::warn!(%error, "answering an unreadable button press failed");
        }
        tracing::warn!(kind, %detail, "a button press could not be read; it was answered and ignored");
        return "ignored: unreadable callback_query (answered)".into();
    }
    tracing::warn!(kind, %detail, "a Telegram update could not be read; it is stored and ignored");
    format!("ignored: unreadable {kind}")
}

/// The bot's own membership of a chat changed: back in a chat it was kicked from, its held
/// posts go; removed, the chat is stopped at once (before a post fails on it).
async fn on_membership(telegram: &Telegram, ctx: &Context, update: &ChatMemberUpdated) -> Result<String, SendError> {
    let chat = TelegramChatId(update.chat.id.0);
    if update.new_chat_member.is_present() {
        let resumed = telegram.resume(&ctx.pool, chat).await?;
        return Ok(if resumed { "resumed: the bot is back in the chat" } else { "ignored: membership" }.into());
    }
    if chat != telegram.chat_id() {
        return Ok("ignored: another chat".into());
    }
    if store::stop_kicked(&ctx.pool, chat, "the bot was removed from the chat").await? {
        tracing::error!(chat_id = %chat, "the bot was removed from the chat; its posts are held");
    }
    Ok("stopped: the bot was removed from the chat".into())
}

/// A group upgraded to a supergroup says so twice: `migrate_to_chat_id` in the old group,
/// `migrate_from_chat_id` in the new one. Either moves the support group.
async fn on_migration(ctx: &Context, telegram: &Telegram, message: &Message) -> Result<Option<String>, SendError> {
    let (from, to) = match (message.migrate_to_chat_id(), message.migrate_from_chat_id()) {
        (Some(to), _) => (TelegramChatId(message.chat.id.0), TelegramChatId(to.0)),
        (None, Some(from)) => (TelegramChatId(from.0), TelegramChatId(message.chat.id.0)),
        (None, None) => return Ok(None),
    };
    if from != telegram.chat_id() && to != telegram.chat_id() {
        return Ok(Some("ignored: another chat".into()));
    }
    telegram.follow(&ctx.pool, from, to, "group chat was upgraded to a supergroup chat").await?;
    Ok(Some(format!("migrated: {from} to {to}")))
}

/// Who wrote an operator's message: a person, or one of the group's anonymous admins.
pub(super) struct Author {
    /// The Telegram user id: GroupAnonymousBot's for every anonymous admin, whom Telegram does
    /// not tell apart.
    pub(super) id: i64,
    /// Shown to the user with the reply.
    pub(super) first_name: String,
    /// Signs internal notes.
    pub(super) full_name: String,
    /// Names the operator to the other operators: the full name and the @username.
    pub(super) label: String,
}

impl Author {
    pub(super) fn of_user(user: &User) -> Self {
        let label = match &user.username {
            Some(username) => format!("{} (@{username})", user.full_name()),
            None => user.full_name(),
        };
        Self {
            id: user.id.0 as i64,
            first_name: Operator::first_name(Some(&user.first_name)),
            full_name: user.full_name(),
            label,
        }
    }
}

/// The conversation behind a message in the support group, if it was written by an operator
/// in a known topic; otherwise why it is ignored. An anonymous admin (from GroupAnonymousBot,
/// on behalf of the group itself) is an operator: only the group's admins can post so.
async fn operator_topic(
    ctx: &Context,
    telegram: &Telegram,
    message: &Message,
) -> Result<Result<(Topic, Author), String>, SendError> {
    if message.chat.id.0 != telegram.chat_id().0 {
        return Ok(Err("ignored: another chat".into()));
    }
    let Some(from) = message.from.clone() else { return Ok(Err("ignored: no sender".into())) };
    let anonymous = from.id.0 == super::GROUP_ANONYMOUS_BOT
        && message.sender_chat.as_ref().is_some_and(|sender| sender.id == message.chat.id);
    if from.is_bot && !anonymous {
        return Ok(Err("ignored: a bot".into()));
    }
    // General never has a thread id; a reply in a group without topics has one (its root
    // message) but is no topic message.
    let Some(thread) = message.thread_id.filter(|_| message.is_topic_message) else {
        return Ok(Err("ignored: not in a topic".into()));
    };
    let Some(topic) = store::topic_by_thread(&ctx.pool, telegram.chat_id(), TelegramThreadId(thread.0.0)).await? else {
        return Ok(Err("ignored: unknown topic".into()));
    };
    if anonymous {
        let texts = texts_of(ctx, topic.conversation_id).await?;
        let name = message
            .author_signature()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(texts.anonymous_admin)
            .to_owned();
        let author = Author { id: from.id.0 as i64, first_name: name.clone(), full_name: name.clone(), label: name };
        return Ok(Ok((topic, author)));
    }
    if !telegram.is_operator(from.id.0).await? {
        return Ok(Err("ignored: not an operator".into()));
    }
    Ok(Ok((topic, Author::of_user(&from))))
}

async fn on_message(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    message: &Message,
) -> Result<String, SendError> {
    if let Some(outcome) = on_migration(ctx, telegram, message).await? {
        return Ok(outcome);
    }
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
    if let Some(file) = OperatorFile::of(message) {
        return on_file(ctx, telegram, update_id, message, id, &from, file, texts).await;
    }
    let Some(text) = message.text().map(str::trim).filter(|t| !t.is_empty()) else {
        // Stickers, video, locations…: the web chat shows text, images, documents and voice.
        let kind = i18n::lookup(&texts.media_kinds, media_kind(message));
        notify(ctx, id, update_id, &fill(texts.attachment_refused, &[("kind", kind)])).await?;
        return Ok("refused: not text".into());
    };
    if let Some(command) = text.strip_prefix('/') {
        let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
        // `/close@LectioSupportBot` in groups with several bots: only a command for this bot
        // (or for none) is run.
        let (name, addressee) = name.split_once('@').unwrap_or((name, ""));
        if !addressee.is_empty() && !addressee.eq_ignore_ascii_case(telegram.username().await?) {
            return Ok("ignored: a command for another bot".into());
        }
        if name == "kb" {
            return super::knowledge::command(ctx, telegram, update_id, &topic, &from, message, rest.trim()).await;
        }
        return command_outcome(ctx, update_id, id, &from, name, rest.trim(), texts).await;
    }
    deliver_reply(ctx, telegram, update_id, message, id, &from, text, None, texts).await
}

/// Mirror an operator's message in the web chat: its text, and the file stored for it.
#[allow(clippy::too_many_arguments)]
async fn deliver_reply(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    message: &Message,
    id: ConversationId,
    from: &Author,
    text: &str,
    attachment: Option<uuid::Uuid>,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let name = from.first_name.clone();
    let mut tx = ctx.pool.begin().await?;
    let operator = Operator { name: &name, via: OperatorChannel::Telegram };
    match human::reply(&mut tx, id, &operator, text).await {
        Ok(reply) => {
            if let Some(attachment) = attachment {
                crate::attachments::attach_operator_file(&mut tx, id, reply.id, attachment).await?;
            }
            if !store::link_message(&mut tx, telegram.chat_id(), TelegramMessageId(message.id.0), reply.id).await? {
                // Already mirrored by an earlier run.
                tx.rollback().await?;
                return Ok("reply: already delivered".into());
            }
            // Someone else has the conversation: the reply goes through, the assignee stays, and
            // the topic is told so.
            match store::lock_assignee(&mut tx, id).await? {
                Some((assignee, assignee_name)) if assignee != from.id => {
                    let text = fill(texts.reply_by_other, &[("name", &from.label), ("assignee", &assignee_name)]);
                    post_notice(&mut tx, ctx, id, update_id, &text).await?;
                }
                _ => {
                    store::refresh_topic_status(&mut tx, id, ctx.max_attempts).await?;
                }
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

/// A file an operator posted: the largest size of a photo, a document, a voice message or
/// an audio file.
struct OperatorFile {
    file_id: teloxide::types::FileId,
    size: u64,
    file_name: String,
    declared_type: Option<String>,
}

impl OperatorFile {
    fn of(message: &Message) -> Option<Self> {
        let named = |meta: &teloxide::types::FileMeta, name: Option<&str>, mime: Option<String>, fallback: &str| Self {
            file_id: meta.id.clone(),
            size: u64::from(meta.size),
            file_name: name.map(str::to_owned).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| fallback.to_owned()),
            declared_type: mime,
        };
        if let Some(photo) = message.photo().and_then(|sizes| sizes.iter().max_by_key(|p| p.width * p.height)) {
            return Some(named(&photo.file, None, Some("image/jpeg".into()), "photo.jpg"));
        }
        if let Some(document) = message.document() {
            let mime = document.mime_type.as_ref().map(ToString::to_string);
            return Some(named(&document.file, document.file_name.as_deref(), mime, "file"));
        }
        if let Some(voice) = message.voice() {
            let mime = voice.mime_type.as_ref().map(ToString::to_string);
            return Some(named(&voice.file, None, mime, "voice.ogg"));
        }
        if let Some(audio) = message.audio() {
            let mime = audio.mime_type.as_ref().map(ToString::to_string);
            return Some(named(&audio.file, audio.file_name.as_deref(), mime, "audio"));
        }
        None
    }
}

/// What kind of message the web chat cannot show, for the word to the operator.
fn media_kind(message: &Message) -> &'static str {
    if message.sticker().is_some() {
        "sticker"
    } else if message.video().is_some() {
        "video"
    } else if message.video_note().is_some() {
        "video_note"
    } else if message.animation().is_some() {
        "animation"
    } else if message.location().is_some() || message.venue().is_some() {
        "location"
    } else if message.contact().is_some() {
        "contact"
    } else if message.poll().is_some() {
        "poll"
    } else {
        "other"
    }
}

/// An operator's file in the topic: downloaded from Telegram (getFile, then the file's URL),
/// stored as an attachment of the operator's reply (its caption the reply's text), and shown
/// in the web chat like any reply. A failed download fails the update, which is retried; a
/// file too large for the Bot API to hand out, or of a kind the web chat does not take, gets
/// a word to the operator.
#[allow(clippy::too_many_arguments)]
async fn on_file(
    ctx: &Context,
    telegram: &Telegram,
    update_id: TelegramUpdateId,
    message: &Message,
    id: ConversationId,
    from: &Author,
    file: OperatorFile,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    let limit = super::DOWNLOAD_LIMIT.min(ctx.max_attachment_bytes as u64);
    let too_large = || async {
        let megabytes = (limit / (1024 * 1024)).to_string();
        notify(ctx, id, update_id, &fill(texts.attachment_too_large, &[("limit", &megabytes)])).await?;
        Ok::<_, SendError>("refused: file too large to download".to_owned())
    };
    if file.size > limit {
        return too_large().await;
    }
    if store::linked_message(&ctx.pool, telegram.chat_id(), TelegramMessageId(message.id.0)).await?.is_some() {
        return Ok("reply: already delivered".into());
    }
    let bytes = match telegram.download(&file.file_id, limit).await {
        Ok(bytes) => bytes,
        // "file is too big" from getFile, or more bytes than the limit came.
        Err(SendError::Refused(error)) if error.contains("too big") || error.contains("larger than") => {
            tracing::info!(%error, "an operator's file is too large to download");
            return too_large().await;
        }
        Err(SendError::Refused(error)) => {
            tracing::warn!(%error, "Telegram would not hand out an operator's file");
            notify(ctx, id, update_id, texts.attachment_unavailable).await?;
            return Ok("refused: file unavailable".into());
        }
        Err(error) => return Err(error),
    };
    let caption = message.caption().map(str::trim).unwrap_or_default();
    let new = NewAttachment {
        conversation_id: id,
        message_id: None,
        author: "operator",
        file_name: &file.file_name,
        declared_type: file.declared_type.as_deref(),
        bytes,
    };
    let stored = match attachments::store(&ctx.pool, &ctx.storage, new, ctx.max_attachment_bytes).await {
        Ok(stored) => stored,
        Err(error) if error.is_client_error() => {
            tracing::info!(%error, "an operator's file was not taken");
            notify(ctx, id, update_id, texts.attachment_unsupported).await?;
            return Ok("refused: file not taken".into());
        }
        Err(error) => return Err(SendError::Transient(format!("storing an operator's file: {error}"))),
    };
    let outcome = deliver_reply(ctx, telegram, update_id, message, id, from, caption, Some(stored.id), texts).await;
    if !matches!(outcome.as_deref(), Ok("reply")) {
        // Not delivered (closed, deleted, or mirrored already): the stored file is not kept.
        crate::attachments::forget_unsent(ctx, stored.id).await;
    }
    outcome
}

async fn command_outcome(
    ctx: &Context,
    update_id: TelegramUpdateId,
    id: ConversationId,
    from: &Author,
    command: &str,
    argument: &str,
    texts: &'static OperatorTexts,
) -> Result<String, SendError> {
    match command {
        "close" => close(ctx, update_id, id, texts).await,
        "ai" => hand_back(ctx, update_id, id, texts).await,
        "take" => assign::take(ctx, update_id, id, from, texts).await,
        "release" => assign::release(ctx, update_id, id, from, texts).await,
        "note" if argument.is_empty() => {
            notify(ctx, id, update_id, texts.note_empty).await?;
            Ok("refused: empty note".into())
        }
        "note" => {
            let author = &from.full_name;
            let key = format!("update:{update_id}");
            store::add_note(&ctx.pool, id, author, argument, OperatorChannel::Telegram, Some(&key)).await?;
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
    let Some(message_id) =
        store::linked_message(&ctx.pool, telegram.chat_id(), TelegramMessageId(message.id.0)).await?
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

/// The card's buttons: `close:<id>`, `ai:<id>` and `take:<id>`; `kb:<message id>` under a console reply.
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
            "take" => assign::take(ctx, update_id, id, &Author::of_user(&query.from), texts).await,
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

pub(super) async fn post_notice(
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
