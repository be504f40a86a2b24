//! The process-message job: route one user message. In AI mode the engine decides, and the
//! reply (answer, clarifying question, or the hand-over notice) is written with
//! `reply_to = message`, which the database keeps unique: however often the job runs, the
//! message gets one reply; a hand-over also queues the escalate job. In human mode the message
//! waits for an operator, and is queued for the conversation's Telegram topic.
//!
//! Decisions of one conversation are made one at a time, in the messages' order (a
//! per-conversation advisory lock held for the whole decision): a message sent while a slow model
//! thinks about the previous one is decided after it, with that reply in its history.
//!
//! Transient failures (the database) are retried with exponential backoff within the job's
//! attempt budget; when the budget is spent the user gets a system message instead of silence.

use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ActionRequester, ConversationId, ConversationMode, ConversationStatus, Engine, MessageId, MessageRole, OwnerKind,
    actions,
    db::{
        conversations::{self, Conversation},
        messages::{self, Message, NewMessage},
        telegram,
        transcripts::{self, AttachmentBrief},
    },
    events::{self, Event},
    i18n::{self, Locale},
    jobs::{self, Escalate, ProcessMessage, Transcribe},
    knowledge::SearchOptions,
    message_meta::{MessageMeta, RetrievalInfo},
};

use crate::{
    Context, attachments,
    engine::{self, Decision},
    llm::{self, DecisionInfo},
    retry::Backoff,
};

/// Messages of context the engine sees.
const HISTORY: i64 = 20;

#[tracing::instrument(skip_all, fields(message_id = %job.message_id))]
pub async fn handle(job: ProcessMessage, ctx: Data<Context>, attempt: Attempt) -> Result<(), BoxDynError> {
    let backoff = Backoff::for_job(&attempt, ctx.max_attempts);
    if let Err(error) = backoff.run("processing", |_| false, || process(&ctx, &job)).await {
        tracing::error!(error = format!("{error:#}"), "processing failed for good");
        report_failure(&ctx, &job).await.context("posting the failure notice")?;
    }
    Ok(())
}

async fn process(ctx: &Context, job: &ProcessMessage) -> anyhow::Result<()> {
    // One decision at a time per conversation: a message sent while the model thinks about the
    // previous one waits here, and earlier messages whose jobs have not started yet go first.
    let mut conn = conversations::DecisionConnection::acquire(&ctx.pool).await?;
    let mut lock = conn.begin(job.message_id).await?;
    let Some(mut state) = decision_state(&mut lock, job.message_id).await? else {
        tracing::warn!("message no longer exists; nothing to do");
        return Ok(());
    };
    if state.message.role != MessageRole::User {
        return Ok(());
    }
    if state.earlier_waiting && state.conversation.mode == ConversationMode::Ai {
        for earlier in messages::unhandled_before(&mut *lock, &state.message).await? {
            tracing::info!(earlier = %earlier.id, "deciding an earlier message first");
            let earlier_state =
                decision_state(&mut lock, earlier.id).await?.context("the earlier message is missing")?;
            if process_one(ctx, &mut lock, earlier_state, Commit::OnItsOwn).await? == Written::Waiting {
                // Replies keep the messages' order: this one is decided after the voice message
                // before it, when its transcript comes (the transcribe job queues it again).
                tracing::info!("an earlier voice message waits for its transcript; deciding later");
                lock.rollback().await?;
                return Ok(());
            }
        }
        state = decision_state(&mut lock, job.message_id).await?.context("the message is missing")?;
    }
    match process_one(ctx, &mut lock, state, Commit::WithTheLock).await? {
        Written::Yes => lock.commit().await?,
        Written::No | Written::Waiting => lock.rollback().await?,
    }
    Ok(())
}

/// Where a decision is written.
#[derive(Clone, Copy)]
enum Commit {
    /// In a transaction of its own, committed at once: an earlier message's reply, so that the
    /// conversation's row is not held while the next one is decided.
    OnItsOwn,
    /// In the decision lock's transaction, which the caller commits right after: one commit
    /// fewer for the message the job is about.
    WithTheLock,
}

/// Whether a decision wrote anything (else its transaction is rolled back).
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Yes,
    No,
    /// Not decided yet: the message's voice waits for its transcript.
    Waiting,
}

async fn decision_state(
    conn: &mut sqlx::PgConnection,
    id: MessageId,
) -> anyhow::Result<Option<conversations::DecisionState>> {
    Ok(conversations::decision_state(conn, id, HISTORY).await?)
}

/// Route one user message, under the conversation's decision lock (`lock`, which the reads go
/// through).
async fn process_one(
    ctx: &Context,
    lock: &mut sqlx::PgConnection,
    state: conversations::DecisionState,
    commit: Commit,
) -> anyhow::Result<Written> {
    let conversations::DecisionState { conversation, message: sqlx::types::Json(message), handled, latest, .. } = state;
    if handled || conversation.status == ConversationStatus::Closed {
        return Ok(Written::No);
    }
    let attachments =
        if message.has_files() { transcripts::of_message(&mut *lock, message.id).await? } else { Vec::new() };
    let awaits_transcript = ctx.transcriber.is_some() && attachments.iter().any(AttachmentBrief::awaits_transcript);
    // Operators answer; those in Telegram read it in the conversation's topic (a voice message
    // goes at once, its transcript follows when it comes). (Handed back to the AI since the
    // conversation was read: the AI answers.)
    if conversation.mode == ConversationMode::Human && forward_to_operators(ctx, &message).await? {
        if awaits_transcript {
            queue_transcription(ctx, &message).await?;
        }
        return Ok(Written::No);
    }
    if awaits_transcript {
        tracing::info!("the voice message waits for its transcript");
        queue_transcription(ctx, &message).await?;
        return Ok(Written::Waiting);
    }
    // A voice message nobody can listen to (no transcription, or it failed), with no text.
    let unheard =
        attachments.iter().any(|a| a.is_voice() && a.transcript.as_deref().is_none_or(|t| t.trim().is_empty()));
    if unheard && message.content.trim().is_empty() {
        let text = Locale::from_code(&conversation.locale).texts().voice_please_type.to_owned();
        let decision = Decision::Answer { text, sources: Vec::new() };
        let info = DecisionInfo::offline(Some("voice_not_transcribed".into()));
        return write_decision(ctx, lock, commit, &conversation, &message, decision, &info).await;
    }
    // The model and the offline engine read the files as words: transcripts, and what was
    // attached; with vision, the images themselves go to the model.
    let images = match &ctx.llm {
        Some(llm) if llm.config.vision => image_urls(ctx, &attachments).await,
        _ => Vec::new(),
    };
    let heard = attachments::with_attachments(message.clone(), &attachments);

    // What came before the message, and the replies to earlier messages that were sent after
    // it while they were decided (replies follow the order of the questions).
    let latest = attachments::history_with_attachments(&mut *lock, latest.0).await?;
    let earlier = |id: Option<MessageId>| latest.iter().any(|m| Some(m.id) == id && m.seq < message.seq);
    let history = latest.iter().filter(|m| m.seq < message.seq || earlier(m.reply_to)).cloned().collect::<Vec<_>>();
    let query = engine::query_with_context(&history, &heard.content);
    let retrieval = ctx.knowledge.search(&query, &SearchOptions::top(engine::SEARCHED)).await;
    let found = &retrieval.result;
    let available = ctx.definitions.available(&ctx.pool, conversation.owner_kind == OwnerKind::User).await?;
    let (decision, info) = match &ctx.llm {
        // A request for a person needs no model.
        Some(_) if engine::asks_for_human(&engine::words(&heard.content)) => {
            (engine::decide(found, &conversation, &heard, &available), DecisionInfo::offline(None))
        }
        Some(llm) => {
            Event::Typing { conversation_id: conversation.id, reply_to: message.id }.publish(&ctx.pool).await?;
            let deltas = Deltas::start(ctx.pool.clone(), conversation.id, message.id);
            let plan = ctx.plans.plan(&ctx.platform, &conversation).await;
            let turn = llm::Turn {
                conversation: &conversation,
                history: &history,
                message: &heard,
                found,
                actions: &available,
                plan,
                images: &images,
            };
            let sender = deltas.sender();
            let mut on_delta = move |text: &str| {
                let _ = sender.send(text.to_owned());
            };
            let decided = llm::decide(llm, &ctx.pool, &turn, &mut on_delta).await;
            drop(on_delta);
            deltas.finish().await;
            decided?
        }
        None => (engine::decide(found, &conversation, &heard, &available), DecisionInfo::offline(None)),
    };
    let mut info = info;
    info.retrieval = Some(RetrievalInfo::of(found, retrieval.fallback));
    write_decision(ctx, lock, commit, &conversation, &message, decision, &info).await
}

/// Have the message's voice transcribed (once: the job is keyed by the message), in a
/// transaction of its own, since the decision's is rolled back when nothing is decided.
async fn queue_transcription(ctx: &Context, message: &Message) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await?;
    jobs::enqueue(&mut tx, &Transcribe { message_id: message.id }, ctx.max_attempts).await?;
    tx.commit().await?;
    Ok(())
}

/// Write a decision where `commit` says.
async fn write_decision(
    ctx: &Context,
    lock: &mut sqlx::PgConnection,
    commit: Commit,
    conversation: &Conversation,
    message: &Message,
    decision: Decision,
    info: &DecisionInfo,
) -> anyhow::Result<Written> {
    match commit {
        Commit::WithTheLock => apply(lock, ctx, conversation, message, decision, info).await,
        Commit::OnItsOwn => {
            let mut tx = ctx.pool.begin().await?;
            let written = apply(&mut tx, ctx, conversation, message, decision, info).await?;
            if written == Written::Yes {
                tx.commit().await?;
            }
            Ok(written)
        }
    }
}

/// The message's images as data URLs, for a model that reads images. An image that cannot be
/// read from storage is left out (the prompt still names it).
async fn image_urls(ctx: &Context, attachments: &[AttachmentBrief]) -> Vec<String> {
    use base64::Engine as _;
    let mut urls = Vec::new();
    for image in attachments.iter().filter(|a| a.is_image()).take(attachments::MAX_IMAGES_TO_MODEL) {
        match ctx.storage.get(&image.storage_key).await {
            Ok(bytes) => urls.push(format!(
                "data:{};base64,{}",
                image.content_type,
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )),
            Err(error) => tracing::warn!(attachment_id = %image.id, %error, "an image could not be read for the model"),
        }
    }
    urls
}

/// Leave the message to operators if the conversation is (still) with them; returns false
/// when it was handed back to the AI meanwhile.
async fn forward_to_operators(ctx: &Context, message: &Message) -> anyhow::Result<bool> {
    let mut tx = ctx.pool.begin().await?;
    let Some(conversation) = conversations::lock(&mut tx, message.conversation_id).await? else {
        return Ok(true);
    };
    if conversation.mode != ConversationMode::Human {
        return Ok(false);
    }
    queue_for_operators(&mut tx, ctx, &conversation, message).await?;
    tx.commit().await?;
    Ok(true)
}

/// Queue the message for the conversation's Telegram topic, in order with everything else
/// posted there; call under the conversation's lock. Without Telegram, operators read it in
/// the console API.
async fn queue_for_operators(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
) -> anyhow::Result<()> {
    if ctx.telegram.is_none() {
        return Ok(());
    }
    let texts = &Locale::from_code(&conversation.locale).texts().operators;
    let name = conversation.owner_name.as_deref().unwrap_or(texts.topic_name_visitor);
    let text = i18n::fill(texts.user_message, &[("name", name), ("text", &message.content)]);
    let files: Vec<_> = if message.has_files() {
        transcripts::of_message(&mut *tx, message.id).await?.iter().map(|a| a.id).collect()
    } else {
        Vec::new()
    };
    let signature = i18n::fill(texts.user_file_caption, &[("name", name), ("text", "")])
        .trim_end()
        .trim_end_matches(':')
        .to_owned();
    telegram::forward_user_files(tx, message, text, signature, &files, ctx.max_attempts).await?;
    Ok(())
}

/// Streamed answer text, sent to the widget in pieces of at most every 100 ms so that
/// PostgreSQL is not flooded with one NOTIFY per token; and the typing notice, renewed while a
/// slow model thinks, so that the widget's dots stay on however long the answer takes.
struct Deltas {
    sender: tokio::sync::mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Deltas {
    const EVERY: Duration = Duration::from_millis(100);
    /// Well within the widget's 60 s without news before it drops the dots.
    const TYPING_EVERY: Duration = Duration::from_secs(15);

    fn start(pool: sqlx::PgPool, conversation_id: ConversationId, reply_to: MessageId) -> Self {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut pending = String::new();
            let mut ticks = tokio::time::interval(Self::EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut typing =
                tokio::time::interval_at(tokio::time::Instant::now() + Self::TYPING_EVERY, Self::TYPING_EVERY);
            let mut open = true;
            while open {
                tokio::select! {
                    piece = receiver.recv() => match piece {
                        Some(piece) => {
                            pending.push_str(&piece);
                            continue;
                        }
                        None => open = false,
                    },
                    _ = ticks.tick() => {}
                    _ = typing.tick() => {
                        if let Err(error) = (Event::Typing { conversation_id, reply_to }).publish(&pool).await {
                            tracing::debug!(%error, "a typing notice was not sent");
                        }
                        continue;
                    }
                }
                // Every tick, and once more when the answer is complete: send what came.
                while !pending.is_empty() {
                    let cut = floor_char_boundary(&pending, events::MAX_DELTA_BYTES);
                    let text: String = pending.drain(..cut).collect();
                    let event = Event::Delta { conversation_id, reply_to, text };
                    if let Err(error) = event.publish(&pool).await {
                        tracing::debug!(%error, "a streamed delta was not sent");
                    }
                }
            }
        });
        Self { sender, task }
    }

    fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<String> {
        self.sender.clone()
    }

    /// Send what is left and stop.
    async fn finish(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Write the decision in `tx`, under the conversation's row lock; the caller commits it if
/// anything was written.
async fn apply(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
    decision: Decision,
    info: &DecisionInfo,
) -> anyhow::Result<Written> {
    let kind = decision.kind();
    let info = info.clone();
    // What the reply commits the conversation to besides.
    let (reply, clarifies, hands_over) = match decision {
        Decision::Action { name, params } => {
            return queue_action(tx, ctx, conversation, message, &name, &params, &info).await;
        }
        Decision::Answer { text, sources } => (
            NewMessage::new(MessageRole::Assistant, text).with_metadata(MessageMeta::answer(info, sources)),
            false,
            None,
        ),
        Decision::Clarify { text, suggestions } => (
            NewMessage::new(MessageRole::Assistant, text).with_metadata(MessageMeta::clarify(info, suggestions)),
            true,
            None,
        ),
        Decision::Escalate { reason, text, summary } => {
            let reason_text = reason.as_str();
            (
                NewMessage::system(text).with_metadata(MessageMeta::handover(reason, summary, info)),
                false,
                Some(reason_text),
            )
        }
    };
    // The reply takes the conversation's row lock, only while it is open and with the AI.
    let Some(reply) = messages::append_while_ai(&mut *tx, conversation.id, reply.replying_to(message.id)).await? else {
        return not_written(tx, ctx, conversation, message).await;
    };
    if clarifies {
        conversations::increment_clarify(&mut *tx, conversation.id).await?;
    }
    if let Some(reason) = hands_over {
        conversations::set_human_mode(&mut *tx, conversation.id, reason).await?;
        concierge_shared::db::waits::start(&mut *tx, conversation.id).await?;
        let job = Escalate { conversation_id: conversation.id, escalation_id: reply.id };
        jobs::enqueue(&mut *tx, &job, ctx.max_attempts).await?;
    }
    tracing::info!(conversation_id = %conversation.id, decision = kind.as_str(), reply_seq = reply.seq, "replied");
    Ok(Written::Yes)
}

/// Queue the action a decision runs; its result is the reply, posted by the execute-action job.
async fn queue_action(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
    name: &str,
    params: &serde_json::Value,
    info: &DecisionInfo,
) -> anyhow::Result<Written> {
    if let Some(written) = unless_with_the_ai(tx, ctx, conversation, message).await? {
        return Ok(written);
    }
    let requested_by = if info.engine == Engine::Llm { ActionRequester::Llm } else { ActionRequester::Offline };
    let queued =
        actions::queue_run(&mut *tx, conversation.id, Some(message.id), name, params, requested_by, ctx.max_attempts)
            .await?;
    if queued.is_none() {
        return Ok(Written::No);
    }
    tracing::info!(conversation_id = %conversation.id, action = name, "action queued");
    Ok(Written::Yes)
}

/// Why a reply was not written: the conversation was closed or handed to a person while the
/// decision was made (then the message is the operators'), or another run of this job replied
/// first (then the caller rolls back the sequence number it spent).
async fn not_written(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
) -> anyhow::Result<Written> {
    Ok(unless_with_the_ai(tx, ctx, conversation, message).await?.unwrap_or(Written::No))
}

/// Lock the conversation and see whether it is still open and with the AI (`None`). If it is
/// gone or closed, nothing is written; if a person took over while the decision was being
/// made, the message is theirs now and goes to the operators.
async fn unless_with_the_ai(
    tx: &mut sqlx::PgConnection,
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
) -> anyhow::Result<Option<Written>> {
    let Some(current) = conversations::lock(&mut *tx, conversation.id).await? else {
        return Ok(Some(Written::No));
    };
    match (current.status, current.mode) {
        (ConversationStatus::Closed, _) => Ok(Some(Written::No)),
        (ConversationStatus::Open, ConversationMode::Ai) => Ok(None),
        (ConversationStatus::Open, _) => {
            queue_for_operators(&mut *tx, ctx, &current, message).await?;
            Ok(Some(Written::Yes))
        }
    }
}

/// Tell the user that their message could not be processed, once.
async fn report_failure(ctx: &Context, job: &ProcessMessage) -> anyhow::Result<()> {
    let Some(message) = messages::get(&ctx.pool, job.message_id).await? else {
        return Ok(());
    };
    let conversation = conversations::get(&ctx.pool, message.conversation_id).await?.context("conversation missing")?;
    let text = Locale::from_code(&conversation.locale).texts().processing_failed;
    let mut tx = ctx.pool.begin().await?;
    let notice = NewMessage::system(text).with_metadata(MessageMeta::error(None)).replying_to(message.id);
    match messages::append(&mut tx, conversation.id, notice).await? {
        Some(_) => tx.commit().await?,
        None => tx.rollback().await?,
    }
    Ok(())
}
