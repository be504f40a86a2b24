//! Admin routes over one person's data (152-FZ, GDPR): erase everything held about them, or
//! export it. Both are written to `admin_audit` with the administrator who asked, and logged.
//!
//! The person is named in the path: a platform user by their `sub` (or `user:<sub>`), an
//! anonymous visitor by `visitor:<uuid>`, the owner key the console shows.

use axum::{
    Json as JsonOut,
    body::{Body, Bytes},
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use concierge_shared::{
    OwnerKey, OwnerKind, attachments,
    db::privacy::{self, AuditEntry, Erased, Held},
    privacy::{MAX_SUBJECT_CHARS, subject_owner},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    AppState,
    auth::{Admin, Caller},
    error::{
        ApiError,
        responses::{Malformed, NotAdmin, Unauthenticated},
    },
    extract::Path,
};

/// Queued file deletions an erasure takes down right after its commit; the workers' file sweep
/// takes the rest.
const ERASED_FILES_AT_ONCE: i64 = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubjectPath {
    /// The person: a platform user's `sub` (`anna`, or `user:anna`), or a visitor's owner key
    /// `visitor:<uuid>`. Percent-encode a `/` in a sub.
    #[param(min_length = 1, max_length = 300, example = "visitor:6f1c2d3e-0a4b-4c5d-8e9f-a0b1c2d3e4f5")]
    pub sub: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureOut {
    /// The owner key whose data went (`user:<sub>` or `visitor:<uuid>`).
    pub subject: String,
    /// How the audit log names the subject: HMAC-SHA256 of the owner key, hex.
    pub subject_hash: String,
    /// Rows removed per table. Zero everywhere when nothing was held: erasing twice is fine.
    pub erased: Erased,
    /// Whether the visitor's tokens are now refused (401); platform tokens are the platform's.
    pub tokens_revoked: bool,
}

/// The shape of an export; the response is streamed, one conversation at a time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportOut {
    pub subject: String,
    pub exported_at: DateTime<Utc>,
    /// How much the export holds.
    pub counts: Held,
    /// Oldest first: `conversation` (every stored field), `messages` (each with its
    /// `attachments`: file name, kind, content type, size, SHA-256, storage key, transcript),
    /// `unsent_attachments` (uploaded, never sent), `action_runs`, `llm_calls`,
    /// `operator_notes` and `telegram_topic` (or null), each row with all its columns.
    #[schema(value_type = Vec<Object>)]
    pub conversations: Vec<serde_json::Value>,
}

fn subject(sub: &str) -> Result<OwnerKey, ApiError> {
    subject_owner(sub).ok_or_else(|| {
        ApiError::validation(
            "invalid_subject",
            "sub",
            format!("name a platform user's sub (1-{MAX_SUBJECT_CHARS} characters) or visitor:<uuid>"),
        )
    })
}

async fn audit(
    db: impl sqlx::PgExecutor<'_>,
    admin: &Caller,
    action: &str,
    subject_hash: &str,
    counts: serde_json::Value,
) -> Result<(), ApiError> {
    let entry =
        AuditEntry { admin_owner: &admin.owner, admin_name: admin.name.as_deref(), action, subject_hash, counts };
    privacy::record_audit(db, entry).await?;
    Ok(())
}

/// `DELETE /admin/users/{sub}`: erase the person's conversations with their messages,
/// attachments, action runs, model calls, notes, Telegram updates and outbox rows, queue the
/// deletion of their forum topics and stored files, and revoke a visitor's tokens; one
/// transaction. The files are deleted after the commit, without holding up the answer; a
/// failed delete is retried by the workers' file sweep.
#[tracing::instrument(skip_all, err(level = "debug"))]
#[utoipa::path(delete, path = "/admin/users/{sub}", tag = "privacy", summary = "Admin: erase everything held about one person", params(SubjectPath), responses((status = 200, description = "Erased (the Telegram topics follow through the outbox)", body = ErasureOut), Malformed, Unauthenticated, NotAdmin, (status = 422, description = "The subject is not a sub or visitor:<uuid>", body = crate::error::ErrorBody)))]
pub async fn erase_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(path): Path<SubjectPath>,
) -> Result<JsonOut<ErasureOut>, ApiError> {
    let owner = subject(&path.sub)?;
    let subject_hash = state.keys.subject_hash(&owner);
    let mut tx = state.pool.begin().await?;
    let ids = privacy::owned_conversations(&mut tx, &owner).await?;
    let erased = privacy::delete_conversations(&mut tx, &ids, state.config.job_max_attempts).await?;
    let visitor = match owner.kind() {
        OwnerKind::Visitor => owner.as_str().strip_prefix("visitor:").and_then(|id| uuid::Uuid::parse_str(id).ok()),
        OwnerKind::User => None,
    };
    if let Some(id) = visitor {
        privacy::revoke_visitor(&mut *tx, id, state.keys.visitor_tokens_expire()).await?;
    }
    let counts = json!({ "erased": erased, "tokens_revoked": visitor.is_some() });
    audit(&mut *tx, &admin, "erase", &subject_hash, counts).await?;
    tx.commit().await?;
    if erased.attachments > 0 {
        let (pool, storage) = (state.pool.clone(), state.storage.clone());
        tokio::spawn(async move {
            if let Err(error) = attachments::delete_queued_files(&pool, &storage, ERASED_FILES_AT_ONCE).await {
                tracing::warn!(%error, "deleting erased files failed; the file sweep retries");
            }
        });
    }
    tracing::info!(
        admin = %admin.owner,
        subject = subject_hash,
        conversations = erased.conversations,
        messages = erased.messages,
        topics = erased.topics_queued_for_deletion,
        attachments = erased.attachments,
        "personal data erased"
    );
    Ok(JsonOut(ErasureOut {
        subject: owner.as_str().to_owned(),
        subject_hash,
        erased,
        tokens_revoked: visitor.is_some(),
    }))
}

/// `GET /admin/users/{sub}/export`: everything held about the person as one JSON document,
/// streamed one conversation at a time so that a long history never sits in memory whole.
#[tracing::instrument(skip_all, err(level = "debug"))]
#[utoipa::path(get, path = "/admin/users/{sub}/export", tag = "privacy", summary = "Admin: export everything held about one person", params(SubjectPath), responses((status = 200, description = "Everything held, as JSON (an empty list when nothing is)", body = ExportOut), Malformed, Unauthenticated, NotAdmin, (status = 422, description = "The subject is not a sub or visitor:<uuid>", body = crate::error::ErrorBody)))]
pub async fn export_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(path): Path<SubjectPath>,
) -> Result<Response, ApiError> {
    let owner = subject(&path.sub)?;
    let subject_hash = state.keys.subject_hash(&owner);
    let held = privacy::held(&state.pool, &owner).await?;
    let ids = privacy::conversation_ids(&state.pool, &owner).await?;
    audit(&state.pool, &admin, "export", &subject_hash, json!(held)).await?;
    tracing::info!(admin = %admin.owner, subject = subject_hash, conversations = held.conversations, "personal data exported");

    let head = json!({ "subject": owner.as_str(), "exported_at": Utc::now(), "counts": held });
    let head = serde_json::to_string(&head).map_err(anyhow::Error::from)?;
    // `{...head, "conversations": [` — the head without its closing brace.
    let opening = format!("{},\"conversations\":[", &head[..head.len() - 1]);
    let pool = state.pool.clone();
    let body = futures::stream::unfold((Some(opening), ids.into_iter(), true, false), move |state| {
        let pool = pool.clone();
        async move {
            let (opening, mut ids, first, done) = state;
            if let Some(opening) = opening {
                return Some((Ok(Bytes::from(opening)), (None, ids, first, done)));
            }
            if done {
                return None;
            }
            loop {
                let Some(id) = ids.next() else {
                    return Some((Ok(Bytes::from_static(b"]}")), (None, ids, first, true)));
                };
                match privacy::export_conversation(&pool, id).await {
                    // Erased while the export ran.
                    Ok(None) => continue,
                    Ok(Some(conversation)) => {
                        let mut chunk = if first { String::new() } else { ",".to_owned() };
                        chunk.push_str(&conversation.to_string());
                        return Some((Ok(Bytes::from(chunk)), (None, ids, false, false)));
                    }
                    Err(error) => {
                        // The status is sent already: cut the body short, so the client sees
                        // invalid JSON rather than a complete-looking partial export.
                        tracing::error!(%error, "an export failed midway");
                        return Some((Err(std::io::Error::other(error)), (None, ids, first, true)));
                    }
                }
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}
