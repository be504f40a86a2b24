//! The process-message job: route one user message. In AI mode the engine decides, and the
//! reply (answer, clarifying question, or the hand-over notice) is written with
//! `reply_to = message`, which the database keeps unique: however often the job runs, the
//! message gets one reply. In human mode the message waits for an operator.
//!
//! Transient failures (the database) are retried with exponential backoff within the job's
//! attempt budget; when the budget is spent the user gets a system message instead of silence.

use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ConversationMode, ConversationStatus, MessageRole,
    db::{
        conversations::{self, Conversation},
        messages::{self, Message, NewMessage},
    },
    i18n::Locale,
    jobs::ProcessMessage,
};
use serde_json::json;

use crate::{
    Context,
    engine::{self, Decision},
};

/// Messages of context the engine sees.
const HISTORY: i64 = 20;

#[tracing::instrument(skip_all, fields(message_id = %job.message_id))]
pub async fn handle(job: ProcessMessage, ctx: Data<Context>, attempt: Attempt) -> Result<(), BoxDynError> {
    // Attempts already spent by earlier runs of this job (a worker that died holding it).
    let spent = attempt.current() as u32;
    let budget = ctx.max_attempts.saturating_sub(spent).max(1);
    let mut delay = Duration::from_millis(200);
    for try_number in 1..=budget {
        match process(&ctx, &job).await {
            Ok(()) => return Ok(()),
            Err(error) if try_number < budget => {
                tracing::warn!(error = format!("{error:#}"), try_number, ?delay, "processing failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "processing failed for good");
                report_failure(&ctx, &job).await.context("posting the failure notice")?;
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn process(ctx: &Context, job: &ProcessMessage) -> anyhow::Result<()> {
    let Some(message) = messages::get(&ctx.pool, job.message_id).await.context("loading the message")? else {
        tracing::warn!("message no longer exists; nothing to do");
        return Ok(());
    };
    if message.role != MessageRole::User || messages::reply_to(&ctx.pool, message.id).await?.is_some() {
        return Ok(());
    }
    let conversation = conversations::get(&ctx.pool, message.conversation_id)
        .await?
        .context("the message's conversation is missing")?;
    if conversation.mode == ConversationMode::Human || conversation.status == ConversationStatus::Closed {
        // Operators answer human-mode conversations; closed ones take no replies.
        return Ok(());
    }

    let history = messages::latest(&ctx.pool, conversation.id, HISTORY)
        .await?
        .into_iter()
        .filter(|m| m.seq < message.seq)
        .collect::<Vec<_>>();
    let kb = ctx.knowledge.current();
    let decision = engine::decide(&kb, &conversation, &history, &message);
    apply(ctx, &conversation, &message, decision).await
}

/// Write the decision in one transaction under the conversation's lock.
async fn apply(
    ctx: &Context,
    conversation: &Conversation,
    message: &Message,
    decision: Decision,
) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let Some(current) = conversations::lock(&mut tx, conversation.id).await? else {
        return Ok(());
    };
    if current.mode != ConversationMode::Ai || current.status != ConversationStatus::Open {
        return Ok(());
    }
    let kind = decision.kind();
    let reply = match decision {
        Decision::Answer { text, sources } => NewMessage::new(MessageRole::Assistant, text)
            .with_metadata(json!({ "decision": kind, "engine": "offline", "sources": sources })),
        Decision::Clarify { text, suggestions } => {
            conversations::increment_clarify(&mut tx, conversation.id).await?;
            NewMessage::new(MessageRole::Assistant, text)
                .with_metadata(json!({ "decision": kind, "engine": "offline", "suggestions": suggestions }))
        }
        Decision::Escalate { reason, text } => {
            conversations::set_human_mode(&mut tx, conversation.id, reason.as_str()).await?;
            NewMessage::system(text).with_metadata(json!({
                "kind": "status",
                "decision": kind,
                "engine": "offline",
                "reason": reason,
                "status": ConversationStatus::Open,
                "mode": ConversationMode::Human,
            }))
        }
    };
    match messages::append(&mut tx, conversation.id, reply.replying_to(message.id)).await? {
        Some(reply) => {
            tx.commit().await?;
            tracing::info!(conversation_id = %conversation.id, decision = kind, reply_seq = reply.seq, "replied");
        }
        // Another run of this job replied first.
        None => tx.rollback().await?,
    }
    Ok(())
}

/// Tell the user that their message could not be processed, once.
async fn report_failure(ctx: &Context, job: &ProcessMessage) -> anyhow::Result<()> {
    let Some(message) = messages::get(&ctx.pool, job.message_id).await? else {
        return Ok(());
    };
    let conversation = conversations::get(&ctx.pool, message.conversation_id).await?.context("conversation missing")?;
    let text = Locale::from_code(&conversation.locale).texts().processing_failed;
    let mut tx = ctx.pool.begin().await?;
    let notice = NewMessage::system(text).with_metadata(json!({ "kind": "error" })).replying_to(message.id);
    match messages::append(&mut tx, conversation.id, notice).await? {
        Some(_) => tx.commit().await?,
        None => tx.rollback().await?,
    }
    Ok(())
}
