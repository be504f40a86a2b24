//! Uploading a file to a conversation: a `multipart/form-data` body with one `file` part (its
//! declared type must agree with the content, which decides the kind), read as a stream and
//! refused as soon as it passes the cap, so an oversized upload is never held whole. The file waits, not yet sent, until a message
//! names it in `attachment_ids`.

use axum::{
    Json as JsonOut,
    body::Bytes,
    extract::{
        Multipart, State,
        multipart::{MultipartError, MultipartRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use concierge_shared::{
    ConversationId,
    attachments::{self, AttachmentError, AttachmentKind, NewAttachment},
    db::attachments::Attachment,
};
use serde::Serialize;

use crate::{
    AppState,
    auth::{Caller, owned},
    error::{
        ApiError,
        responses::{InvalidInput, Malformed, NoSuchConversation, TooManyRequests, Unauthenticated, Unavailable},
    },
    extract::Path,
    limits::ClientIp,
};

/// An attachment as its conversation's owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttachmentOut {
    pub id: uuid::Uuid,
    pub conversation_id: ConversationId,
    /// `image`, `pdf`, `text` or `voice`.
    pub kind: String,
    /// The type found in the content (not the one the sender claimed).
    pub content_type: String,
    pub file_name: String,
    pub size_bytes: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Attachment> for AttachmentOut {
    fn from(a: Attachment) -> Self {
        Self {
            id: a.id,
            conversation_id: a.conversation_id,
            kind: a.kind,
            content_type: a.content_type,
            file_name: a.file_name,
            size_bytes: a.size_bytes,
            created_at: a.created_at,
        }
    }
}

/// The upload form: one part named `file`, with its file name and type.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file: PNG, JPEG, WebP, PDF, UTF-8 text or a voice recording, decided by the content.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// The hard cap of the upload request: the file cap (`CONCIERGE_MAX_ATTACHMENT_MB`) and room
/// for the form's headers.
pub fn request_cap(max_attachment_bytes: usize) -> usize {
    max_attachment_bytes + 64 * 1024
}

/// The configured file cap, said in the upload's description and its 413 answer.
pub fn document_limit(openapi: &mut utoipa::openapi::OpenApi, max_attachment_bytes: usize) {
    let limit = format!(
        "The file is at most {} MB ({max_attachment_bytes} bytes, CONCIERGE_MAX_ATTACHMENT_MB).",
        max_attachment_bytes / (1024 * 1024)
    );
    for path in ["/conversations/{id}/attachments", "/admin/conversations/{id}/attachments"] {
        let Some(upload) = openapi.paths.paths.get_mut(path).and_then(|item| item.post.as_mut()) else { continue };
        upload.description = Some(match upload.description.take() {
            Some(description) => format!("{description}\n\n{limit}"),
            None => limit.clone(),
        });
        if let Some(utoipa::openapi::RefOr::T(response)) = upload.responses.responses.get_mut("413") {
            response.description = format!("The file is larger than the cap. {limit}");
        }
    }
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::bad_request("bad_multipart", format!("the upload form could not be read: {}", error.body_text()))
    }
}

/// The `file` part, read chunk by chunk and refused as soon as it passes `cap` bytes, so an
/// oversized upload is never held whole. Returns the name, the declared type and the bytes.
async fn read_file_part(mut form: Multipart, cap: usize) -> Result<(String, Option<String>, Bytes), ApiError> {
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("").replace('\0', "");
        let declared = field.content_type().map(str::to_owned);
        let mut out = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if out.len() + chunk.len() > cap {
                return Err(ApiError::PayloadTooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        return Ok((name, declared, Bytes::from(out)));
    }
    Err(ApiError::validation("no_file", "file", "the form has no part named `file`"))
}

/// The kind a declared `Content-Type` claims; none for generic types (`application/octet-stream`).
fn claimed_kind(declared: &str) -> Option<AttachmentKind> {
    let essence = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence.starts_with("image/") {
        Some(AttachmentKind::Image)
    } else if essence == "application/pdf" {
        Some(AttachmentKind::Pdf)
    } else if essence.starts_with("audio/") {
        Some(AttachmentKind::Voice)
    } else if essence.starts_with("text/") {
        Some(AttachmentKind::Text)
    } else {
        None
    }
}

fn count(kind: &str, outcome: &'static str, bytes: usize) {
    metrics::counter!("concierge_attachment_uploads_total", "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
    if outcome == "stored" {
        metrics::counter!("concierge_attachment_bytes_total", "kind" => kind.to_owned()).increment(bytes as u64);
    }
}

#[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
#[utoipa::path(post, path = "/conversations/{id}/attachments", tag = "messages", summary = "Upload a file (a multipart form with one `file` part) to send with the next message", params(("id" = uuid::Uuid, Path, description = "The conversation")), request_body(content = UploadForm, content_type = "multipart/form-data"), responses((status = 201, body = AttachmentOut), Malformed, Unauthenticated, NoSuchConversation, (status = 413, description = "The file is larger than the attachment cap", body = crate::error::ErrorBody), (status = 415, description = "The body is not `multipart/form-data`", body = crate::error::ErrorBody), InvalidInput, TooManyRequests, Unavailable))]
pub async fn upload_attachment(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    Path(id): Path<ConversationId>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    state.limits.ip_messages.check(&ip)?;
    state.limits.messages.check(&caller.owner)?;
    owned(&state, id, &caller.owner).await?;
    store_upload(&state, id, "user", form).await
}

/// Attach `files`, uploaded by `author` (`user` or `operator`) to the message's conversation and
/// not sent yet, to `message` in the caller's transaction. Any other file refuses the request
/// with `invalid_attachment` and `refusal` saying which files it takes; the caller's
/// transaction, dropped by the `?`, rolls back with the message.
pub async fn attach_or_refuse(
    tx: &mut sqlx::PgConnection,
    message: &mut concierge_shared::db::messages::Message,
    author: &str,
    files: &[uuid::Uuid],
    refusal: &str,
) -> Result<(), ApiError> {
    if files.is_empty() {
        return Ok(());
    }
    if !concierge_shared::db::attachments::attach_to_message(tx, message.conversation_id, message.id, author, files)
        .await?
    {
        return Err(ApiError::validation("invalid_attachment", "attachment_ids", refusal));
    }
    // As the database now counts them.
    message.files = files.len() as i16;
    Ok(())
}

/// Read, check and store the uploaded file of `author` (`user` or `operator`) for conversation
/// `id`, whose access the caller has checked: the same cap, content sniffing and counting for
/// every route that takes files.
pub async fn store_upload(
    state: &AppState,
    id: ConversationId,
    author: &str,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = form.map_err(|_| ApiError::UnsupportedMediaType("the body is not `multipart/form-data`".into()))?;
    let (file_name, declared, bytes) = match read_file_part(form, state.config.max_attachment_bytes).await {
        Ok(file) => file,
        Err(error) => {
            count("unknown", "too_large", 0);
            return Err(error);
        }
    };
    let size = bytes.len();
    let sniffed = attachments::sniff(&bytes);
    let kind = sniffed.map(|(kind, _)| kind.as_str()).unwrap_or("unknown");
    if let (Some(declared), Some((found, _))) = (declared.as_deref(), sniffed)
        && let Some(claimed) = claimed_kind(declared)
        && claimed != found
    {
        count(kind, "mismatch", size);
        return Err(ApiError::validation(
            "type_mismatch",
            "body",
            format!("the content is {}, not the {declared} it was sent as", found.as_str()),
        ));
    }
    let stored = attachments::store(
        &state.pool,
        &state.storage,
        NewAttachment {
            conversation_id: id,
            message_id: None,
            author,
            file_name: &file_name,
            declared_type: declared.as_deref(),
            bytes,
        },
        state.config.max_attachment_bytes,
    )
    .await;
    match stored {
        Ok(attachment) => {
            count(kind, "stored", attachment.size_bytes.max(0) as usize);
            Ok((StatusCode::CREATED, JsonOut(AttachmentOut::from(attachment))).into_response())
        }
        Err(AttachmentError::Empty) => {
            count(kind, "empty", size);
            Err(ApiError::validation("empty_file", "body", "the file is empty"))
        }
        Err(AttachmentError::TooLarge(_)) => {
            count(kind, "too_large", size);
            Err(ApiError::PayloadTooLarge)
        }
        Err(AttachmentError::Unsupported) => {
            count(kind, "unsupported", size);
            Err(ApiError::validation(
                "unsupported_file",
                "body",
                "the file is none of the kinds taken (PNG, JPEG, WebP, PDF, UTF-8 text, voice)",
            ))
        }
        Err(AttachmentError::Database(error)) => {
            count(kind, "failed", size);
            Err(error.into())
        }
        Err(error @ AttachmentError::Storage(_)) => {
            count(kind, "failed", size);
            Err(ApiError::Internal(error.into()))
        }
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// When the link stops working (Unix seconds).
    pub expires: i64,
    /// The link's signature (hex HMAC-SHA256 of the id and the expiry).
    pub sig: String,
}

/// The secret links to files are signed with (see `concierge_shared::links`).
pub fn link_secret(state: &AppState) -> String {
    state.config.jwt_secret.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default()
}

#[utoipa::path(get, path = "/attachments/{id}", tag = "messages", summary = "A file, by its signed link", security(()), params(("id" = uuid::Uuid, Path, description = "The attachment"), SignedQuery), responses((status = 200, description = "The file, with its content type"), Malformed, (status = 403, description = "The signature does not hold for this file", body = crate::error::ErrorBody), (status = 404, description = "No such file", body = crate::error::ErrorBody), (status = 410, description = "The link has expired", body = crate::error::ErrorBody), Unavailable))]
pub async fn get_attachment(
    State(state): State<AppState>,
    Path(id): Path<uuid::Uuid>,
    crate::extract::Query(query): crate::extract::Query<SignedQuery>,
) -> Result<Response, ApiError> {
    let secret = link_secret(&state);
    if !concierge_shared::links::signature_holds(&secret, id, query.expires, &query.sig) {
        return Err(ApiError::Forbidden("the link's signature does not hold for this file".into()));
    }
    if query.expires < chrono::Utc::now().timestamp() {
        return Err(ApiError::Gone("the link has expired; reload the conversation for a fresh one".into()));
    }
    let attachment = concierge_shared::db::attachments::get(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    let bytes = state.storage.get(&attachment.storage_key).await.map_err(|error| match error {
        concierge_shared::storage::StorageError::NotFound(_) => ApiError::NotFound,
        other => ApiError::Internal(other.into()),
    })?;
    let inline = matches!(attachment.kind.as_str(), "image" | "voice");
    let ascii: String = attachment
        .file_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
        .collect();
    let encoded: String = attachment
        .file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let disposition =
        format!("{}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}", if inline { "inline" } else { "attachment" });
    let headers = [
        (axum::http::header::CONTENT_TYPE, attachment.content_type),
        (axum::http::header::CONTENT_DISPOSITION, disposition),
        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".to_owned()),
        (axum::http::header::CACHE_CONTROL, "private, max-age=300".to_owned()),
    ];
    Ok((headers, bytes).into_response())
}
