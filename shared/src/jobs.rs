//! Job types and their queues, and the transactional enqueue.
//!
//! Payloads carry ids only; a job reloads what it needs, so a job that runs twice or late sees
//! the current state. Jobs are rows of apalis-postgres' `apalis.jobs` table, written here inside
//! the caller's transaction so that a state change and the job it causes commit together.
//! The row format is the one apalis-postgres' own sink writes (see [`crate::queue_schema`]), and
//! its insert trigger wakes the workers.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::PgConnection;

use crate::{ActionRunId, ConversationId, KnowledgeDraftId, MessageId, ReindexRunId, TelegramUpdateId, queue_schema};

/// A kind of job, with the queue it runs on.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const QUEUE: Queue;

    /// Two enqueues with the same key store one job (unique per queue).
    fn idempotency_key(&self) -> Option<String>;
}

/// The queues a worker process can be told to run (`concierge-worker --queues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Queue {
    ProcessMessage,
    ExecuteAction,
    Reindex,
    Escalate,
    TelegramSend,
    TelegramUpdate,
    Metrics,
    Retention,
    Sla,
    KnowledgeDraft,
    Email,
    Transcribe,
}

impl Queue {
    pub const ALL: &'static [Queue] = &[
        Queue::ProcessMessage,
        Queue::ExecuteAction,
        Queue::Reindex,
        Queue::Escalate,
        Queue::TelegramSend,
        Queue::TelegramUpdate,
        Queue::Metrics,
        Queue::Retention,
        Queue::Sla,
        Queue::KnowledgeDraft,
        Queue::Email,
        Queue::Transcribe,
    ];

    /// The stable name stored in `apalis.jobs.job_type`.
    pub fn name(self) -> &'static str {
        match self {
            Queue::ProcessMessage => "concierge::process-message",
            Queue::ExecuteAction => "concierge::execute-action",
            Queue::Reindex => "concierge::reindex",
            Queue::Escalate => "concierge::escalate",
            Queue::TelegramSend => "concierge::telegram-send",
            Queue::TelegramUpdate => "concierge::telegram-update",
            Queue::Metrics => "concierge::metrics",
            Queue::Retention => "concierge::retention",
            Queue::Sla => "concierge::sla",
            Queue::KnowledgeDraft => "concierge::knowledge-draft",
            Queue::Email => "concierge::email",
            Queue::Transcribe => "concierge::transcribe",
        }
    }

    /// The short name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            Queue::ProcessMessage => "process-message",
            Queue::ExecuteAction => "execute-action",
            Queue::Reindex => "reindex",
            Queue::Escalate => "escalate",
            Queue::TelegramSend => "telegram-send",
            Queue::TelegramUpdate => "telegram-update",
            Queue::Metrics => "metrics",
            Queue::Retention => "retention",
            Queue::Sla => "sla",
            Queue::KnowledgeDraft => "knowledge-draft",
            Queue::Email => "email",
            Queue::Transcribe => "transcribe",
        }
    }

    pub fn from_cli_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|q| q.cli_name() == name)
    }
}

/// Answer (or route) one user message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessMessage {
    pub message_id: MessageId,
}

impl Job for ProcessMessage {
    const QUEUE: Queue = Queue::ProcessMessage;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.message_id.to_string())
    }
}

/// Run one logged action and post its result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecuteAction {
    pub run_id: ActionRunId,
}

impl Job for ExecuteAction {
    const QUEUE: Queue = Queue::ExecuteAction;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.run_id.to_string())
    }
}

/// Bring the stored knowledge base in line with the knowledge directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reindex {
    pub run_id: ReindexRunId,
}

impl Job for Reindex {
    const QUEUE: Queue = Queue::Reindex;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.run_id.to_string())
    }
}

/// Bring operators in: open (or reuse) the conversation's Telegram topic and post the card.
/// `escalation_id` is the notice that announced the hand-over; each escalation posts one card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Escalate {
    pub conversation_id: ConversationId,
    pub escalation_id: MessageId,
}

impl Job for Escalate {
    const QUEUE: Queue = Queue::Escalate;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.escalation_id.to_string())
    }
}

/// Send the pending posts of a conversation's topic, in order. `cause` makes the job unique
/// (the outbox row that asked for it); any run sends everything pending.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TelegramSend {
    pub conversation_id: ConversationId,
    pub cause: String,
}

impl Job for TelegramSend {
    const QUEUE: Queue = Queue::TelegramSend;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.cause.clone())
    }
}

/// Handle one stored Telegram update.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TelegramUpdate {
    pub update_id: TelegramUpdateId,
}

impl Job for TelegramUpdate {
    const QUEUE: Queue = Queue::TelegramUpdate;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.update_id.to_string())
    }
}

/// Compute and store one day's conversation metrics. `cause` makes the job unique (the
/// schedule slot or the admin's request).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComputeMetrics {
    pub day: chrono::NaiveDate,
    pub cause: String,
}

impl Job for ComputeMetrics {
    const QUEUE: Queue = Queue::Metrics;

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.day, self.cause))
    }
}

/// Delete the closed conversations past `CONCIERGE_RETENTION_DAYS`, in batches. `cause` makes
/// the job unique (the schedule slot); any run deletes everything due.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApplyRetention {
    pub cause: String,
}

impl Job for ApplyRetention {
    const QUEUE: Queue = Queue::Retention;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.cause.clone())
    }
}

/// Move a knowledge draft on from its current state: write a draft being asked for (the model
/// or the template), or publish an approved one (the document, then a reindex). The key is the
/// draft and the state it was queued for, so each step is queued once and a late run of an
/// earlier step finds the draft moved on and does nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KnowledgeDraft {
    pub draft_id: KnowledgeDraftId,
    /// The draft's status when this job was queued (`writing` or `publishing`).
    pub step: String,
}

impl Job for KnowledgeDraft {
    const QUEUE: Queue = Queue::KnowledgeDraft;

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.draft_id, self.step))
    }
}

/// Send an operator's reply by email to the user who asked for replies by email.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SendReplyEmail {
    pub message_id: MessageId,
}

impl Job for SendReplyEmail {
    const QUEUE: Queue = Queue::Email;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.message_id.to_string())
    }
}

/// Transcribe the voice attachments of one user message, then have the message decided. Keyed
/// by the message: its voice is transcribed once, however often the message is processed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transcribe {
    pub message_id: MessageId,
}

impl Job for Transcribe {
    const QUEUE: Queue = Queue::Transcribe;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.message_id.to_string())
    }
}

/// Look for users who have waited too long for a person and remind their topics. A schedule
/// in every worker process that runs this queue asks for it every few seconds (one request per
/// slot counts, by its key); the rows it reminds of are claimed in SQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatchSla {
    pub cause: String,
}

impl Job for WatchSla {
    const QUEUE: Queue = Queue::Sla;

    fn idempotency_key(&self) -> Option<String> {
        Some(self.cause.clone())
    }
}

/// A job ready to be written by a larger statement (see `db::messages::insert_user_message`).
pub struct EncodedJob {
    pub id: String,
    pub queue: &'static str,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
}

pub fn encode<J: Job>(job: &J) -> EncodedJob {
    EncodedJob {
        id: ulid::Ulid::new().to_string(),
        queue: J::QUEUE.name(),
        payload: serde_json::to_vec(job).expect("job payloads are plain data"),
        idempotency_key: job.idempotency_key(),
    }
}

/// Enqueue `job` on the caller's connection (usually inside its transaction). A job with the
/// same idempotency key already queued makes this a no-op; returns whether a row was written.
pub async fn enqueue<J: Job>(conn: &mut PgConnection, job: &J, max_attempts: u32) -> sqlx::Result<bool> {
    let job = encode(job);
    let written = sqlx::query(crate::insert_apalis_job!("$1", "$2", "$3", "$4", "$5", skip_duplicate))
        .bind(&job.id)
        .bind(job.queue)
        .bind(&job.payload)
        .bind(max_attempts as i32)
        .bind(&job.idempotency_key)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(written == 1)
}

/// Enqueue `job` again to run once `delay` has passed: work that must wait (a capped resource)
/// without spending its attempts. The payload is the job's own; its idempotency key gets a
/// unique suffix, since the key of the run that postpones it is taken.
pub async fn enqueue_later<J: Job>(
    conn: &mut PgConnection,
    job: &J,
    max_attempts: u32,
    delay: std::time::Duration,
) -> sqlx::Result<()> {
    let job = encode(job);
    let key = job.idempotency_key.map(|key| format!("{key}:later:{}", job.id));
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
         VALUES ($1, $2, $3, 'Pending', 0, $4, now() + $6 * interval '1 millisecond', 0, ''::hstore, $5)",
    )
    .bind(&job.id)
    .bind(job.queue)
    .bind(&job.payload)
    .bind(max_attempts as i32)
    .bind(&key)
    .bind(delay.as_millis() as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// How long finished jobs stay in `apalis.jobs` (for the console's and Prometheus' figures).
pub const FINISHED_JOBS_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Forget jobs that finished (done, killed, or failed for good) longer than `kept` ago, and
/// workers silent as long that hold none. What they were queued for stays deduplicated by the
/// tables that queued them (messages, update ids, action runs), so nothing is queued twice for
/// lack of them. Returns how many jobs went.
pub async fn prune_finished(pool: &sqlx::PgPool, kept: std::time::Duration) -> sqlx::Result<u64> {
    let jobs = queue_schema::delete_finished_jobs(pool, kept).await?;
    queue_schema::delete_idle_workers(pool, kept).await?;
    Ok(jobs)
}
