//! The transcribe job: a user's voice message becomes text, through an OpenAI-compatible
//! `POST /audio/transcriptions` server (`CONCIERGE_TRANSCRIBE_URL`), and then the message is
//! decided on its transcript like any text.
//!
//! Invariants: the process-message job does not decide a message whose voice waits for its
//! transcript (nor any message after it, so replies keep the messages' order); this job queues
//! that decision again once every voice attachment of the message has its transcript, or has
//! been given up — refused by the server, or failed on every attempt — in which case the message
//! is decided as a voice message nobody could read (the user is asked to type). A transcript is
//! stored once; the widget is told with an `edited` event, so the transcript shows under the
//! voice message live.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use apalis::prelude::{Attempt, BoxDynError, Data};
use concierge_shared::{
    ConversationMode,
    config::TranscribeConfig,
    db::{conversations, messages, telegram, transcripts},
    events::Event,
    i18n::{Locale, fill},
    jobs::{self, ProcessMessage, Transcribe},
};

use crate::{Context, retry::Backoff};

/// The longest transcript kept, in characters (about ten minutes of speech; voice messages
/// are at most two).
const MAX_TRANSCRIPT_CHARS: usize = 8_000;

/// Why a transcription did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// Worth another try: the network, a timeout, 429, the server's own failure, our storage.
    #[error("{0}")]
    Transient(String),
    /// The server refused the audio itself (4xx); sending it again changes nothing.
    #[error("{0}")]
    Refused(String),
}

/// A client of one transcription server.
pub struct Transcriber {
    client: reqwest::Client,
    config: TranscribeConfig,
}

impl Transcriber {
    pub fn new(config: &TranscribeConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, config: config.clone() })
    }

    /// The text of one recording.
    pub async fn transcribe(
        &self,
        audio: bytes::Bytes,
        file_name: &str,
        content_type: &str,
    ) -> Result<String, TranscribeError> {
        let started = Instant::now();
        let result = self.request(audio, file_name, content_type).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(TranscribeError::Transient(_)) => "error",
            Err(TranscribeError::Refused(_)) => "refused",
        };
        metrics::counter!("concierge_transcriptions_total", "outcome" => outcome).increment(1);
        metrics::histogram!("concierge_transcription_duration_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn request(
        &self,
        audio: bytes::Bytes,
        file_name: &str,
        content_type: &str,
    ) -> Result<String, TranscribeError> {
        let part = reqwest::multipart::Part::stream(reqwest::Body::from(audio))
            .file_name(upload_name(file_name, content_type))
            .mime_str(content_type)
            .map_err(|error| TranscribeError::Refused(format!("content type {content_type:?}: {error}")))?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.config.model.clone())
            .text("response_format", "json");
        let mut request = self.client.post(format!("{}/audio/transcriptions", self.config.base_url)).multipart(form);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|error| TranscribeError::Transient(format!("request: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            let error = format!("the transcription server answered {status}: {body}");
            return Err(if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                TranscribeError::Transient(error)
            } else {
                TranscribeError::Refused(error)
            });
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            text: String,
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|error| TranscribeError::Transient(format!("the transcription server's answer: {error}")))?;
        Ok(clean(&answer.text))
    }
}

/// The file name the server sees: whisper servers pick the decoder by its extension.
fn upload_name(file_name: &str, content_type: &str) -> String {
    let extension = match content_type {
        "audio/ogg" => "ogg",
        "audio/webm" => "webm",
        "audio/mp4" | "audio/x-m4a" | "audio/m4a" => "m4a",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        _ => return file_name.to_owned(),
    };
    let stem = file_name.rsplit_once('.').map_or(file_name, |(stem, _)| stem);
    let stem = if stem.trim().is_empty() { "voice" } else { stem };
    format!("{stem}.{extension}")
}

/// A transcript as stored: trimmed, without NUL or other control characters but line breaks,
/// and at most [`MAX_TRANSCRIPT_CHARS`].
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_TRANSCRIPT_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[tracing::instrument(skip_all, fields(message_id = %job.message_id))]
pub async fn handle(job: Transcribe, ctx: Data<Context>, attempt: Attempt) -> Result<(), BoxDynError> {
    // apalis counts this run already.
    let last_attempt = attempt.current() as u32 >= ctx.max_attempts;
    let backoff = Backoff { tries: 3, first: Duration::from_secs(1), max: Duration::from_secs(10) };
    let transcribed = backoff
        .run("transcribing", |error: &anyhow::Error| error.is::<Hopeless>(), || transcribe_message(&ctx, &job))
        .await;
    match transcribed {
        Ok(()) => {}
        Err(error) if error.is::<Hopeless>() || last_attempt => {
            tracing::error!(
                error = format!("{error:#}"),
                "transcription failed for good; the message is decided without it"
            );
            for clip in transcripts::of_message(&ctx.pool, job.message_id).await? {
                if clip.awaits_transcript() {
                    transcripts::give_up(&ctx.pool, clip.id).await?;
                }
            }
        }
        // apalis runs the job again later, with its own backoff.
        Err(error) => return Err(error.context("transcribing a voice message").into()),
    }
    decide_again(&ctx, &job).await.context("queueing the decision")?;
    Ok(())
}

/// A failure no retry can mend (the server refused the audio).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Hopeless(String);

/// Transcribe every voice attachment of the message that waits for its transcript.
async fn transcribe_message(ctx: &Context, job: &Transcribe) -> anyhow::Result<()> {
    let Some(transcriber) = ctx.transcriber.as_ref() else {
        return Err(Hopeless("transcription is not configured (CONCIERGE_TRANSCRIBE_URL)".into()).into());
    };
    let Some(message) = messages::get(&ctx.pool, job.message_id).await? else { return Ok(()) };
    for clip in transcripts::of_message(&ctx.pool, job.message_id).await? {
        if !clip.awaits_transcript() {
            continue;
        }
        let audio = ctx.storage.get(&clip.storage_key).await.context("reading the recording from storage")?;
        let text = match transcriber.transcribe(audio, &clip.file_name, &clip.content_type).await {
            Ok(text) => text,
            Err(TranscribeError::Refused(error)) => return Err(Hopeless(error).into()),
            Err(TranscribeError::Transient(error)) => anyhow::bail!(error),
        };
        let mut tx = ctx.pool.begin().await?;
        if transcripts::set_transcript(&mut *tx, clip.id, &text).await? {
            // The widget and the console read the message again, with its transcript.
            Event::Edited { conversation_id: message.conversation_id, message_id: message.id }
                .publish(&mut *tx)
                .await?;
            // Operators who have the conversation read it under the voice message in its topic.
            if let Some(conversation) = conversations::lock(&mut tx, message.conversation_id).await?
                && conversation.mode == ConversationMode::Human
                && ctx.telegram.is_some()
                && !text.is_empty()
            {
                let texts = &Locale::from_code(&conversation.locale).texts().operators;
                let notice = fill(texts.voice_transcript, &[("text", &text)]);
                telegram::notify_topic(
                    &mut tx,
                    conversation.id,
                    format!("transcript:{}", clip.id),
                    notice,
                    ctx.max_attempts,
                )
                .await?;
            }
        }
        tx.commit().await?;
        tracing::info!(attachment_id = %clip.id, chars = text.chars().count(), "voice message transcribed");
    }
    Ok(())
}

/// Have the message decided now that its voice is readable (or never will be), and the
/// conversation's latest unanswered message with it: messages sent after the voice message
/// waited for it, and deciding the latest decides the earlier ones first, in order.
async fn decide_again(ctx: &Context, job: &Transcribe) -> anyhow::Result<()> {
    let Some(message) = messages::get(&ctx.pool, job.message_id).await? else { return Ok(()) };
    let mut tx = ctx.pool.begin().await?;
    // The message's own job ran already (it saw the voice waiting): a new key.
    jobs::enqueue_later(&mut tx, &ProcessMessage { message_id: message.id }, ctx.max_attempts, Duration::ZERO).await?;
    if let Some(latest) = transcripts::latest_unanswered(&mut *tx, message.conversation_id).await?
        && latest != message.id
    {
        jobs::enqueue_later(&mut tx, &ProcessMessage { message_id: latest }, ctx.max_attempts, Duration::ZERO).await?;
    }
    tx.commit().await?;
    Ok(())
}
