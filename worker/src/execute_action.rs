//! The execute-action job: run one logged action for the conversation's owner and post its
//! result. When the model chose the action, the result goes back to the model to word the final
//! answer (falling back to the action's own message). The result message is unique per run
//! (and per user message), so a retried job never posts twice. When the job's work keeps
//! failing (the database, not the platform: its failures are results), the run is marked
//! failed and the user gets a notice instead of silence.

use std::time::Instant;

use anyhow::Context as _;
use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ActionRequester, Engine, MessageRole,
    actions::{self, validate_params},
    db::{
        conversations,
        messages::{self, NewMessage},
    },
    i18n::Locale,
    jobs::ExecuteAction,
    message_meta::MessageMeta,
};

use crate::{Context, actions::Outcome, llm, retry::Backoff};

#[tracing::instrument(skip_all, fields(run_id = %job.run_id))]
pub async fn handle(job: ExecuteAction, ctx: Data<Context>, attempt: Attempt) -> Result<(), BoxDynError> {
    let backoff = Backoff::for_job(&attempt, ctx.max_attempts);
    if let Err(error) = backoff.run("running an action", |_| false, || execute(&ctx, &job)).await {
        tracing::error!(error = format!("{error:#}"), "running the action failed for good");
        report_failure(&ctx, &job, &format!("{error:#}")).await.context("posting the failure notice")?;
    }
    Ok(())
}

async fn execute(ctx: &Context, job: &ExecuteAction) -> anyhow::Result<()> {
    let Some(run) = actions::get_run(&ctx.pool, job.run_id).await.context("loading the run")? else {
        return Ok(());
    };
    if run.status == "succeeded" || run.status == "failed" {
        return Ok(());
    }
    let conversation =
        conversations::get(&ctx.pool, run.conversation_id).await?.context("the run's conversation is gone")?;
    actions::mark_running(&ctx.pool, run.id).await?;
    let texts = &Locale::from_code(&conversation.locale).texts().actions;

    let started = Instant::now();
    let definition = actions::get(&ctx.pool, &run.action).await?.filter(|d| d.active);
    let outcome = match &definition {
        None => Outcome {
            succeeded: false,
            message: texts.unavailable.into(),
            summary: "the action is unknown or switched off".into(),
            result: None,
            error: Some("the action is unknown or switched off".into()),
        },
        Some(definition) => match validate_params(definition.schema(), &run.params) {
            Err(problem) => Outcome {
                succeeded: false,
                message: texts.unavailable.into(),
                summary: format!("bad parameters: {problem}"),
                result: None,
                error: Some(problem),
            },
            Ok(()) => crate::actions::run(ctx, definition, &conversation, &run.params).await,
        },
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    tracing::info!(
        action = run.action,
        succeeded = outcome.succeeded,
        duration_ms,
        summary = outcome.summary,
        "action ran"
    );

    // The model words the final answer from the result when it chose the action.
    let mut text = outcome.message.clone();
    let mut engine = Engine::Action;
    if let (Some(llm), ActionRequester::Llm, true, Some(message_id), Some(definition)) =
        (&ctx.llm, run.requested_by, outcome.succeeded, run.message_id, &definition)
        && let Some(message) = messages::get(&ctx.pool, message_id).await?
        && let Some(answer) = llm::follow_up(llm, &ctx.pool, &conversation, &message, definition, &outcome).await?
    {
        text = answer;
        engine = Engine::Llm;
    }

    let mut tx = ctx.pool.begin().await?;
    actions::finish_run(
        &mut tx,
        run.id,
        outcome.succeeded,
        duration_ms,
        &outcome.summary,
        outcome.result.as_ref(),
        outcome.error.as_deref(),
    )
    .await?;
    let mut report = NewMessage::new(MessageRole::Assistant, text)
        .with_metadata(MessageMeta::action_result(engine, &run.action, run.id, outcome.succeeded))
        .reporting(run.id);
    if let Some(message_id) = run.message_id {
        report = report.replying_to(message_id);
    }
    match messages::append(&mut tx, conversation.id, report).await? {
        Some(_) => tx.commit().await?,
        // Already reported by an earlier run of this job.
        None => tx.rollback().await?,
    }
    Ok(())
}

/// The run failed for good: say so in the log and to the user (once, however often this runs).
async fn report_failure(ctx: &Context, job: &ExecuteAction, error: &str) -> anyhow::Result<()> {
    let Some(run) = actions::get_run(&ctx.pool, job.run_id).await?.filter(|run| run.status != "succeeded") else {
        return Ok(());
    };
    let Some(conversation) = conversations::get(&ctx.pool, run.conversation_id).await? else {
        return Ok(());
    };
    let text = Locale::from_code(&conversation.locale).texts().processing_failed;
    let mut notice = NewMessage::system(text).with_metadata(MessageMeta::error(Some(run.id))).reporting(run.id);
    if let Some(message_id) = run.message_id {
        notice = notice.replying_to(message_id);
    }
    // The notice and the failed run together: a retry finds both or neither.
    let mut tx = ctx.pool.begin().await?;
    match messages::append(&mut tx, conversation.id, notice).await? {
        Some(_) => {
            actions::finish_run(&mut tx, run.id, false, 0, "the job kept failing", None, Some(error)).await?;
            tx.commit().await?;
        }
        // The result was posted after all, or the message already has its answer.
        None => tx.rollback().await?,
    }
    Ok(())
}
