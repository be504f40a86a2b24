//! The escalate job: bring operators into a conversation that was handed to a person.
//!
//! It opens (or finds) the conversation's topic and queues the hand-over's card there
//! ([`super::topic`]), then sends what is pending ([`super::outbox`]). Invariant: the job may
//! run any number of times for one escalation and still makes one topic and one card.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use concierge_shared::jobs::Escalate;

use crate::{
    Context,
    retry::Backoff,
    telegram::{SendError, Telegram, outbox, topic},
};

/// How often an escalation held by a stopped chat looks again.
const STOPPED_RECHECK: Duration = Duration::from_secs(60);

#[tracing::instrument(skip_all, fields(conversation_id = %job.conversation_id))]
pub async fn handle(job: Escalate, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(telegram) = ctx.telegram.clone() else {
        // Without Telegram the conversation waits for operators in the console API.
        return Ok(());
    };
    let backoff = Backoff { tries: ctx.max_attempts, first: Duration::from_secs(1), max: Duration::from_secs(30) };
    let final_answer =
        |error: &SendError| matches!(error, SendError::Refused(_) | SendError::Held(_) | SendError::Stopped(..));
    match backoff.run("escalating to Telegram", final_answer, || escalate(&ctx, &telegram, &job)).await {
        Ok(()) => Ok(()),
        Err(SendError::Held(wait)) => topic::postpone(&ctx, &job, wait).await.map_err(|error| error.to_string().into()),
        // The bot is out of the group: the hand-over waits, looked at again each minute (no
        // request reaches Telegram meanwhile), and goes ahead once the bot is back.
        Err(SendError::Stopped(chat, reason)) => {
            tracing::warn!(chat_id = %chat, %reason, "the support group takes nothing; the escalation waits");
            topic::postpone(&ctx, &job, STOPPED_RECHECK).await.map_err(|error| error.to_string().into())
        }
        Err(SendError::Refused(error)) => {
            tracing::error!(%error, "Telegram refused the escalation");
            Err(error.into())
        }
        Err(error) => Err(error.to_string().into()),
    }
}

/// Open (or find) the topic, queue this escalation's card, send what is pending.
pub async fn escalate(ctx: &Context, telegram: &Telegram, job: &Escalate) -> Result<(), SendError> {
    topic::open_topic(ctx, telegram, job).await?;
    outbox::deliver(ctx, telegram, job.conversation_id).await
}
