//! A conversation's forum topic in the support group and the card that opens each hand-over.
//!
//! The conversation gets one topic, whatever the number of escalations or of jobs asking: a
//! row claims the creation before Telegram is asked, the claim is renewed while Telegram
//! answers, and the topic's id is stored the moment it is known. Each escalation then queues a
//! card (who the user is, where they were, why, what the bot already checked, the transcript)
//! in the topic's outbox, ahead of any later message.
//!
//! Invariant: one topic per conversation and chat, one card per escalation and topic; the
//! card's transcript and the user messages forwarded after it neither overlap nor leave a gap.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use concierge_shared::{
    EscalationReason, MessageRole, OwnerKind, TelegramThreadId, actions,
    db::{
        conversations::{self, Conversation},
        messages::{self, Message},
        telegram::{self as store, TopicClaim, TopicStatus},
    },
    i18n::{Locale, OperatorTexts, fill, lookup},
    jobs::Escalate,
};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::{
    Context,
    telegram::{SendError, Telegram},
};

/// How long a creation claim lasts without renewal (a job that died frees it this soon).
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// Telegram's limit for one message (UTF-16 units), minus room for a heading.
const PART_UNITS: usize = 3900;
/// The most messages a card's transcript shows (the latest ones).
const TRANSCRIPT_MESSAGES: i64 = 500;
/// Telegram's limit for a topic name.
const TOPIC_NAME_CHARS: usize = 128;
/// Support works on Moscow time; transcripts show it.
const SUPPORT_UTC_OFFSET_SECS: i32 = 3 * 3600;

/// Open (or find) the topic and queue this escalation's card in it.
pub async fn open_topic(ctx: &Context, telegram: &Telegram, job: &Escalate) -> Result<(), SendError> {
    let Some(conversation) = conversations::get(&ctx.pool, job.conversation_id).await? else {
        return Ok(());
    };
    let first_question = messages::first_user_message(&ctx.pool, conversation.id).await?;
    let thread_id = ensure_topic(ctx, telegram, &conversation, first_question.as_ref()).await?;
    tracing::debug!(%thread_id, "topic ready");
    if !store::post_queued(&ctx.pool, &store::card_key(job.escalation_id, thread_id, 0)).await? {
        queue_card(ctx, &conversation, job, thread_id).await?;
    }
    Ok(())
}

/// Queue the escalation again for when the cap on new topics lets its topic be created. Its
/// card and the posts that follow wait with it, in order: nothing is dropped, and topics that
/// exist keep receiving posts meanwhile.
pub async fn postpone(ctx: &Context, job: &Escalate, wait: Duration) -> Result<(), SendError> {
    // A little past the moment a place frees, so that the place has freed when the job looks.
    let wait = wait + Duration::from_millis(50);
    let mut conn = ctx.pool.acquire().await?;
    concierge_shared::jobs::enqueue_later(&mut conn, job, ctx.max_attempts, wait).await?;
    tracing::info!(wait_ms = wait.as_millis() as u64, "new topics are capped; this topic waits");
    Ok(())
}

async fn ensure_topic(
    ctx: &Context,
    telegram: &Telegram,
    conversation: &Conversation,
    first_question: Option<&Message>,
) -> Result<TelegramThreadId, SendError> {
    let texts = &Locale::from_code(&conversation.locale).texts().operators;
    let name = topic_name(conversation, first_question, texts);
    let give_up = Instant::now() + CLAIM_LEASE * 4;
    loop {
        match store::claim_topic(&ctx.pool, conversation.id, telegram.chat_id(), &name, CLAIM_LEASE).await? {
            TopicClaim::Ready(thread_id) => return Ok(thread_id),
            TopicClaim::Claimed => {
                if telegram.topics_per_window > 0
                    && let Some(wait) = store::reserve_creation(
                        &ctx.pool,
                        telegram.chat_id(),
                        conversation.id,
                        telegram.topics_per_window,
                        telegram.topics_window,
                    )
                    .await?
                {
                    store::release_claim(&ctx.pool, conversation.id).await?;
                    metrics::counter!("concierge_rate_limited_total", "limit" => "telegram_topics").increment(1);
                    return Err(SendError::Held(wait));
                }
                // A new topic is for a hand-over: it waits for an operator from the start.
                let shown = TopicStatus::Waiting.topic_name(&name);
                let created = super::while_renewing(telegram.create_topic(&ctx.pool, &shown), CLAIM_LEASE / 3, || {
                    store::renew_claim(&ctx.pool, conversation.id, CLAIM_LEASE)
                })
                .await?;
                return match created {
                    Ok(created) => {
                        let mut conn = ctx.pool.acquire().await?;
                        let recorded =
                            store::set_thread(&mut conn, conversation.id, telegram.chat_id(), created).await?;
                        match recorded {
                            Some(thread_id) if thread_id == created => {
                                store::set_shown(&mut *conn, conversation.id, thread_id, Some(&shown), Some(false))
                                    .await?;
                                tracing::info!(%thread_id, "Telegram topic created");
                                Ok(thread_id)
                            }
                            // Another job's topic was recorded first (its claim had lapsed), or
                            // the conversation's topic moved to another group meanwhile.
                            other => {
                                tracing::warn!(recorded = ?other, spare = %created, "a spare topic was created; deleting it");
                                telegram.delete_topic(&ctx.pool, created).await;
                                other.ok_or_else(|| SendError::Transient("the support group changed".into()))
                            }
                        }
                    }
                    // The group became a supergroup: the support group is its new id now, and
                    // the topic is claimed and made there.
                    Err(SendError::Migrated(from, to)) => {
                        tracing::info!(%from, %to, "the support group moved; creating the topic there");
                        store::release_claim(&ctx.pool, conversation.id).await?;
                        continue;
                    }
                    Err(error) => {
                        store::release_claim(&ctx.pool, conversation.id).await?;
                        Err(error)
                    }
                };
            }
            TopicClaim::Busy if Instant::now() > give_up => {
                return Err(SendError::Transient("another job is still creating the topic".into()));
            }
            TopicClaim::Busy => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// "Анна Петрова · Списали деньги дважды": who and about what, within Telegram's limit.
fn topic_name(conversation: &Conversation, first_question: Option<&Message>, texts: &OperatorTexts) -> String {
    let who = conversation.owner_name.as_deref().unwrap_or(texts.topic_name_visitor);
    let subject =
        first_question.map(|m| m.content.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default();
    let name = if subject.is_empty() { who.to_owned() } else { format!("{who} · {subject}") };
    truncate(&name, TOPIC_NAME_CHARS)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Build the card under the conversation's lock, so that the transcript and the user messages
/// forwarded after it neither overlap nor leave a gap.
async fn queue_card(
    ctx: &Context,
    conversation: &Conversation,
    job: &Escalate,
    thread_id: TelegramThreadId,
) -> Result<(), SendError> {
    let plan = ctx.plans.plan(&ctx.platform, conversation).await;
    let runs = actions::conversation_runs(&ctx.pool, conversation.id).await?;
    let escalation = messages::get(&ctx.pool, job.escalation_id).await?;
    let mut tx = ctx.pool.begin().await?;
    let Some(current) = conversations::lock(&mut tx, conversation.id).await? else {
        return Ok(());
    };
    let first = store::topic(&mut *tx, conversation.id).await?.is_none_or(|topic| topic.card_queued_at.is_none());
    // The latest messages: everything up to `last_seq` is covered by the card, not forwarded.
    let transcript = messages::latest(&mut *tx, conversation.id, TRANSCRIPT_MESSAGES).await?;
    let card = Card { conversation: &current, first, plan, runs: &runs, escalation: escalation.as_ref() };
    let parts = card.render(&transcript);
    store::queue_card(
        &mut tx,
        conversation.id,
        job.escalation_id,
        thread_id,
        parts,
        current.last_seq,
        ctx.max_attempts,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

struct Card<'a> {
    conversation: &'a Conversation,
    first: bool,
    plan: Option<String>,
    runs: &'a [actions::ActionRun],
    escalation: Option<&'a Message>,
}

impl Card<'_> {
    /// The card's messages: the summary with the buttons, then the transcript in parts.
    fn render(&self, transcript: &[Message]) -> Vec<(String, Option<serde_json::Value>)> {
        let c = self.conversation;
        let texts = &Locale::from_code(&c.locale).texts().operators;
        let mut lines = vec![if self.first { texts.card_title } else { texts.card_title_again }.to_owned()];
        lines.push(match c.owner_kind {
            OwnerKind::User => fill(
                texts.user_line,
                &[
                    ("name", c.owner_name.as_deref().unwrap_or("—")),
                    ("role", lookup(&texts.role_labels, c.owner_role.as_str())),
                    ("email", c.owner_email.as_deref().unwrap_or("—")),
                ],
            ),
            OwnerKind::Visitor => texts.visitor_line.to_owned(),
        });
        if c.owner_kind == OwnerKind::User {
            lines.push(fill(texts.plan_line, &[("plan", self.plan.as_deref().unwrap_or(texts.plan_unknown))]));
        }
        let page = match (&c.page_title, &c.page_url) {
            (Some(title), Some(url)) => Some(format!("{title} — {url}")),
            (title, url) => title.clone().or(url.clone()),
        };
        if let Some(page) = page {
            lines.push(fill(texts.page_line, &[("page", &page)]));
        }
        let handover = self.escalation.and_then(|m| m.metadata.as_handover());
        let reason = handover
            .map(|h| h.reason.as_str())
            .or(c.escalation_reason.as_deref())
            .unwrap_or(EscalationReason::UserRequest.as_str());
        lines.push(fill(texts.reason_line, &[("reason", lookup(&texts.reasons, reason))]));
        let summary =
            handover.and_then(|h| h.summary.as_deref()).filter(|s| !s.trim().is_empty()).map(str::to_owned).or_else(
                || {
                    // No model summary (the button, the offline engine): the user's last words.
                    transcript.iter().rev().find(|m| m.role == MessageRole::User).map(|m| truncate(&m.content, 300))
                },
            );
        if let Some(summary) = summary {
            lines.push(fill(texts.summary_line, &[("summary", &summary)]));
        }
        lines.push(String::new());
        if self.runs.is_empty() {
            lines.push(texts.actions_none.to_owned());
        } else {
            lines.push(texts.actions_heading.to_owned());
            for run in self.runs {
                let result = run.result_summary.as_deref().or(run.error.as_deref()).unwrap_or("—");
                lines.push(fill(
                    texts.action_line,
                    &[("name", &run.action), ("status", &run.status), ("result", &truncate(result, 300))],
                ));
            }
        }
        lines.push(String::new());
        lines.push(fill(texts.conversation_line, &[("id", &c.id.to_string())]));
        lines.push(texts.commands_hint.to_owned());
        let header = truncate(&lines.join("\n"), 4000);
        let buttons = InlineKeyboardMarkup::new([[
            InlineKeyboardButton::callback(texts.button_close, format!("close:{}", c.id)),
            InlineKeyboardButton::callback(texts.button_ai, format!("ai:{}", c.id)),
            InlineKeyboardButton::callback(texts.button_take, format!("take:{}", c.id)),
        ]]);
        let mut parts = vec![(header, serde_json::to_value(buttons).ok())];

        let offset = FixedOffset::east_opt(SUPPORT_UTC_OFFSET_SECS).expect("a valid offset");
        let body: String = transcript
            .iter()
            .map(|m| {
                format!(
                    "[{}] {}: {}\n",
                    local_time(m.created_at, offset),
                    lookup(&texts.roles, m.role.as_str()),
                    m.content.trim()
                )
            })
            .collect();
        let pieces = store::split_post(&body, PART_UNITS);
        if pieces.is_empty() {
            parts.push((texts.transcript_empty.to_owned(), None));
        }
        let total = pieces.len().to_string();
        for (index, piece) in pieces.iter().enumerate() {
            let heading = fill(texts.transcript_heading, &[("part", &(index + 1).to_string()), ("total", &total)]);
            parts.push((format!("{heading}\n{piece}"), None));
        }
        parts
    }
}

fn local_time(at: DateTime<Utc>, offset: FixedOffset) -> String {
    at.with_timezone(&offset).format("%d.%m %H:%M").to_string()
}
