//! The SLA job: remind a topic when its user has waited longer than `CONCIERGE_SLA_MINUTES`
//! for a first human reply, naming who is on duty (`CONCIERGE_TELEGRAM_ON_DUTY`); once more
//! after as long again; no more. Only during operators' hours unless `CONCIERGE_SLA_HOURS` is
//! `always`: a user who wrote at night is reminded of when the day starts.
//!
//! A schedule in every worker process that runs this queue asks for a run every few seconds;
//! the job key makes one request per slot count once. Invariant: each reminder is posted once,
//! however many processes run the job at once: a run claims the due waits in SQL and queues
//! their reminders in the same transaction (see `concierge_shared::db::waits`).

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use concierge_shared::{
    config::SlaHours,
    db::{
        telegram::{self as store, NewPost},
        waits,
    },
    duty,
    i18n::{Locale, OperatorTexts, fill},
    jobs::{self, WatchSla},
};
use tokio_util::sync::CancellationToken;

use crate::{Context, telegram::Telegram};

/// Reminders per wait: the first at the SLA, the second at twice the SLA.
const MAX_REMINDERS: i16 = 2;
/// Waits claimed per transaction.
const BATCH: i64 = 50;

#[tracing::instrument(skip_all, fields(cause = %job.cause))]
pub async fn handle(job: WatchSla, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(telegram) = ctx.telegram.clone() else { return Ok(()) };
    let Some(sla) = telegram.sla else { return Ok(()) };
    if telegram.sla_hours == SlaHours::Duty && !duty::on_duty(Utc::now()) {
        return Ok(());
    }
    let reminded = remind(&ctx, &telegram, sla).await?;
    if reminded > 0 {
        tracing::info!(reminded, "reminded topics of users waiting for a person");
    }
    Ok(())
}

/// Queue the reminders due now; returns how many.
async fn remind(ctx: &Context, telegram: &Telegram, sla: Duration) -> sqlx::Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = ctx.pool.begin().await?;
        let due = waits::claim_due_reminders(&mut tx, sla, MAX_REMINDERS, BATCH).await?;
        for reminder in &due {
            let texts = &Locale::from_code(&reminder.locale).texts().operators;
            let waited = (Utc::now() - reminder.since).to_std().unwrap_or_default();
            let template = if reminder.reminder == 1 { texts.sla_reminder } else { texts.sla_reminder_again };
            let text = fill(template, &[("wait", &wait_text(waited, texts)), ("who", &addressed(telegram, texts))]);
            let post = NewPost {
                key: format!("sla:{}:{}", reminder.wait_id, reminder.reminder),
                kind: "notice",
                message_id: None,
                text,
                reply_markup: None,
            };
            store::queue_post(&mut tx, reminder.conversation_id, post, ctx.max_attempts).await?;
        }
        tx.commit().await?;
        for reminder in &due {
            if reminder.reminder == 1 {
                metrics::counter!("concierge_sla_breaches_total").increment(1);
            }
            metrics::counter!("concierge_sla_reminders_total").increment(1);
        }
        total += due.len();
        if (due.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// The operators on duty as mentions (`@olga_support, @ivan`), or all operators.
fn addressed(telegram: &Telegram, texts: &OperatorTexts) -> String {
    if telegram.on_duty.is_empty() {
        return texts.sla_everyone.to_owned();
    }
    telegram.on_duty.iter().map(|name| format!("@{name}")).collect::<Vec<_>>().join(", ")
}

/// "45 с", "12 мин", "1 ч 5 мин".
fn wait_text(waited: Duration, texts: &OperatorTexts) -> String {
    let seconds = waited.as_secs();
    if seconds < 60 {
        fill(texts.wait_seconds, &[("n", &seconds.to_string())])
    } else if seconds < 3600 {
        fill(texts.wait_minutes, &[("n", &(seconds / 60).to_string())])
    } else {
        fill(texts.wait_hours, &[("h", &(seconds / 3600).to_string()), ("m", &(seconds % 3600 / 60).to_string())])
    }
}

/// How often the schedule asks for a run: a tenth of the SLA, from a second to half a minute.
fn every(sla: Duration) -> Duration {
    (sla / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Ask for an SLA run every few seconds (see [`every`]) until `shutdown`.
pub async fn schedule(ctx: Context, sla: Duration, shutdown: CancellationToken) {
    let every = every(sla);
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let slot = Utc::now().timestamp_millis() / every.as_millis() as i64;
        let job = WatchSla { cause: format!("slot:{slot}") };
        let enqueued = async {
            let mut conn = ctx.pool.acquire().await?;
            jobs::enqueue(&mut conn, &job, ctx.max_attempts).await
        };
        if let Err(error) = enqueued.await {
            tracing::warn!(%error, "scheduling the SLA job failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use concierge_shared::i18n::Locale;

    #[test]
    fn waits_read_in_the_largest_unit_that_fits() {
        let texts = &Locale::Ru.texts().operators;
        assert_eq!(super::wait_text(Duration::from_secs(45), texts), "45 с");
        assert_eq!(super::wait_text(Duration::from_secs(12 * 60 + 5), texts), "12 мин");
        assert_eq!(super::wait_text(Duration::from_secs(3900), texts), "1 ч 5 мин");
    }

    #[test]
    fn the_schedule_looks_often_enough_for_the_sla() {
        assert_eq!(super::every(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(super::every(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(super::every(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
