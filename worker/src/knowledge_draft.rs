//! The knowledge-draft job: write a draft an operator asked for, or publish one an
//! administrator approved.
//!
//! Writing: the model writes the article when one is configured (falling back to the plain
//! template, saying why), the draft becomes `ready`, and the conversation's topic hears of it.
//! Publishing: the document goes into the knowledge directory as a new file (never over an
//! existing one), or into the database when the directory is read-only; the draft becomes
//! `approved` with a reindex queued in the same transaction, and the topic hears of it.
//!
//! The job reloads the draft and acts only when the draft is still in the state the job was
//! queued for, so a run that comes twice or late changes nothing.

use std::{
    io::{ErrorKind, Write},
    path::Path,
};

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use concierge_shared::{
    OwnerKey,
    db::{
        conversations,
        knowledge_drafts::{self as drafts, Draft},
        reindex_runs, telegram,
    },
    i18n::{Locale, fill},
    jobs::KnowledgeDraft,
    knowledge::draft,
};

use crate::Context;

/// File names tried for one slug (`slug.md`, `slug-2.md`…) before giving up.
const CANDIDATES: usize = 100;

#[tracing::instrument(skip_all, fields(draft_id = %job.draft_id, step = %job.step))]
pub async fn handle(job: KnowledgeDraft, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(draft) = drafts::get(&ctx.pool, job.draft_id).await? else {
        // Erased with its conversation.
        return Ok(());
    };
    match (job.step.as_str(), draft.status.as_str()) {
        ("writing", "writing") => write(&ctx, &draft).await.context("writing the draft")?,
        ("publishing", "publishing") => publish(&ctx, &draft).await.context("publishing the draft")?,
        _ => tracing::debug!(status = draft.status, "the draft has moved on"),
    }
    Ok(())
}

async fn write(ctx: &Context, draft: &Draft) -> anyhow::Result<()> {
    let Some(conversation) = conversations::get(&ctx.pool, draft.conversation_id).await? else { return Ok(()) };
    let written = match &ctx.llm {
        Some(llm) => crate::llm::draft::write(llm, &ctx.pool, &conversation, draft).await?,
        None => Err("offline"),
    };
    let (title, body, written_by, fallback) = match written {
        Ok((title, body)) => (title, body, "model", None),
        Err(reason) => {
            let (title, body) = draft::template(&draft.question, &draft.answer);
            (title, body, "template", (reason != "offline").then_some(reason))
        }
    };
    let texts = Locale::from_code(&conversation.locale).knowledge_texts();
    let mut tx = ctx.pool.begin().await?;
    if drafts::store_written(&mut tx, draft.id, &title, &body, written_by, fallback).await? {
        let text = fill(texts.draft_ready, &[("title", &title)]);
        telegram::notify_topic(
            &mut tx,
            draft.conversation_id,
            format!("kb-draft:{}", draft.id),
            text,
            ctx.max_attempts,
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(written_by, fallback, "knowledge draft ready for review");
    Ok(())
}

async fn publish(ctx: &Context, draft: &Draft) -> anyhow::Result<()> {
    let (Some(title), Some(body)) = (draft.title.as_deref(), draft.body.as_deref()) else {
        anyhow::bail!("an approved draft has no text");
    };
    let source = match draft::render("draft.md", title, body, Utc::now().date_naive()) {
        Ok(source) => source,
        // The API checked the text when it was approved; a draft edited since cannot be.
        Err(error) => anyhow::bail!("the draft does not make a document: {error}"),
    };
    let fallback = format!("draft-{}", &draft.id.to_string()[..8]);
    let slug = draft::slug(title, &fallback);
    let mut tx = ctx.pool.begin().await?;
    let Some(locked) = drafts::lock(&mut tx, draft.id).await? else { return Ok(()) };
    if locked.status != "publishing" {
        return Ok(());
    }
    let written =
        if ctx.knowledge_read_only { None } else { write_file(ctx, &ctx.knowledge_dir, &slug, &source).await? };
    let (path, stored_in) = match written {
        Some(path) => (path, "file"),
        None => (store_in_database(ctx, &mut tx, draft, &slug, &source).await?, "database"),
    };
    drafts::published(&mut tx, draft.id, &path, stored_in).await?;
    let admin = locked.decided_by.as_deref().and_then(OwnerKey::parse).unwrap_or_else(|| OwnerKey::user("admin"));
    let (run, _) = reindex_runs::request_in(&mut tx, &admin, ctx.max_attempts).await?;
    drafts::set_reindex_run(&mut *tx, draft.id, run.id).await?;
    if let Some(conversation) = conversations::get(&mut *tx, draft.conversation_id).await? {
        let texts = Locale::from_code(&conversation.locale).knowledge_texts();
        let text = fill(texts.draft_published, &[("title", title), ("path", &path)]);
        let key = format!("kb-published:{}", draft.id);
        telegram::notify_topic(&mut tx, draft.conversation_id, key, text, ctx.max_attempts).await?;
    }
    tx.commit().await?;
    tracing::info!(path, stored_in, run_id = %run.id, "knowledge draft published; reindex queued");
    Ok(())
}

/// Write the document as a new file of the knowledge directory; its path, or `None` when the
/// directory cannot be written (read-only), so that the database keeps it instead. A file this
/// draft's earlier run already wrote (the same text) is taken as written.
async fn write_file(ctx: &Context, dir: &Path, slug: &str, source: &str) -> anyhow::Result<Option<String>> {
    for n in 1..=CANDIDATES {
        let path = draft::candidate_path(slug, n);
        if drafts::path_taken(&ctx.pool, &path).await? {
            continue;
        }
        let (file, text) = (dir.join(&path), source.to_owned());
        let outcome = tokio::task::spawn_blocking(move || create_new(&file, &text)).await?;
        match outcome {
            Ok(Created::Written | Created::Same) => return Ok(Some(path)),
            Ok(Created::Taken) => continue,
            Err(error) if read_only(&error) => {
                tracing::warn!(%error, dir = %dir.display(), "the knowledge directory is read-only; the document goes to the database");
                return Ok(None);
            }
            Err(error) => return Err(error).with_context(|| format!("writing {}", dir.join(&path).display())),
        }
    }
    anyhow::bail!("no free file name for {slug:?} after {CANDIDATES} tries")
}

enum Created {
    Written,
    /// The file exists with this very text.
    Same,
    /// Another file has the name.
    Taken,
}

fn create_new(file: &Path, text: &str) -> std::io::Result<Created> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).open(file) {
        Ok(mut handle) => {
            handle.write_all(text.as_bytes())?;
            handle.sync_all()?;
            Ok(Created::Written)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            Ok(if std::fs::read_to_string(file).is_ok_and(|existing| existing == text) {
                Created::Same
            } else {
                Created::Taken
            })
        }
        Err(error) => Err(error),
    }
}

fn read_only(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem)
}

/// Keep the document in the database under the first free path (no document, stored or
/// indexed, and no file of the directory has it).
async fn store_in_database(
    ctx: &Context,
    tx: &mut sqlx::PgConnection,
    draft: &Draft,
    slug: &str,
    source: &str,
) -> anyhow::Result<String> {
    let created_by = draft.decided_by.as_deref().unwrap_or("admin");
    for n in 1..=CANDIDATES {
        let path = draft::candidate_path(slug, n);
        let on_disk = ctx.knowledge_dir.join(&path);
        if drafts::path_taken(&mut *tx, &path).await? || tokio::fs::try_exists(&on_disk).await.unwrap_or(false) {
            continue;
        }
        if drafts::store_document(tx, &path, source, draft.id, created_by).await? {
            return Ok(path);
        }
    }
    anyhow::bail!("no free path for {slug:?} after {CANDIDATES} tries")
}
