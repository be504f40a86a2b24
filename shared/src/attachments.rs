//! Files attached to messages: what a file is, known by its content (never its name or the
//! type it claims), images without their metadata, and storing a file as an attachment.
//!
//! Invariant: nothing is half-stored — a file is put to storage before its row is inserted,
//! and a failed insert deletes the file again. Nothing is left behind either: a deleted row
//! leaves its key in `storage_deletions` in the same transaction (a trigger does it, whatever
//! deleted the row), and [`delete_queued_files`] deletes the files after the commit, retrying a
//! failed delete later.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{
    ConversationId, MessageId,
    db::attachments::{self as store, Attachment},
    storage::{Storage, StorageError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    Image,
    Pdf,
    Text,
    Voice,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Image => "image",
            AttachmentKind::Pdf => "pdf",
            AttachmentKind::Text => "text",
            AttachmentKind::Voice => "voice",
        }
    }
}

/// What a file is by its first bytes: PNG, JPEG, WebP, PDF, voice (OGG, WebM, MP4/M4A, MPEG,
/// WAV), or UTF-8 text without control characters; `None` for anything else.
pub fn sniff(bytes: &[u8]) -> Option<(AttachmentKind, &'static str)> {
    use AttachmentKind::*;
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some((Image, "image/png"));
    }
    if starts(&[0xff, 0xd8, 0xff]) {
        return Some((Image, "image/jpeg"));
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Some((Image, "image/webp"));
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WAVE" {
        return Some((Voice, "audio/wav"));
    }
    if starts(b"%PDF-") {
        return Some((Pdf, "application/pdf"));
    }
    if starts(b"OggS") {
        return Some((Voice, "audio/ogg"));
    }
    if starts(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Some((Voice, "audio/webm"));
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some((Voice, "audio/mp4"));
    }
    if starts(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0) {
        return Some((Voice, "audio/mpeg"));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let printable = !text.is_empty() && text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    printable.then_some((Text, "text/plain; charset=utf-8"))
}

/// An image without the metadata that can locate or name a person: JPEG APPn segments but
/// JFIF (EXIF, XMP, IPTC…) and comments, PNG's text and EXIF chunks. Segments are dropped
/// without decoding the image. Other files are returned as they are.
pub fn strip_metadata(content_type: &str, bytes: Bytes) -> Bytes {
    match content_type {
        "image/jpeg" => strip_jpeg(&bytes).map(Bytes::from).unwrap_or(bytes),
        "image/png" => strip_png(&bytes).map(Bytes::from).unwrap_or(bytes),
        _ => bytes,
    }
}

fn strip_jpeg(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    loop {
        if at + 4 > bytes.len() || bytes[at] != 0xff {
            return None;
        }
        let marker = bytes[at + 1];
        // Start of scan: the image data follows, to the end.
        if marker == 0xda {
            out.extend_from_slice(&bytes[at..]);
            return Some(out);
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let end = at + 2 + length;
        if length < 2 || end > bytes.len() {
            return None;
        }
        let jfif = marker == 0xe0 && bytes[at + 4..end].starts_with(b"JFIF");
        let metadata = (0xe1..=0xef).contains(&marker) || marker == 0xfe || (marker == 0xe0 && !jfif);
        if !metadata {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
    }
}

fn strip_png(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes[..8].to_vec();
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let end = at + 12 + length;
        if end > bytes.len() {
            return None;
        }
        let kind = &bytes[at + 4..at + 8];
        if !matches!(kind, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME") {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
    }
    Some(out)
}

/// A file to store as an attachment.
pub struct NewAttachment<'a> {
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    /// `user` or `operator`.
    pub author: &'a str,
    pub file_name: &'a str,
    /// The type the sender claimed; only the content decides.
    pub declared_type: Option<&'a str>,
    pub bytes: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the file is none of the kinds taken (PNG, JPEG, WebP, PDF, text, voice)")]
    Unsupported,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AttachmentError {
    /// The sender's fault (the file), not ours.
    pub fn is_client_error(&self) -> bool {
        matches!(self, AttachmentError::Empty | AttachmentError::TooLarge(_) | AttachmentError::Unsupported)
    }
}

/// Check, strip and store a file of at most `max_bytes` (`CONCIERGE_MAX_ATTACHMENT_MB`), and
/// insert its row.
pub async fn store(
    db: &sqlx::PgPool,
    storage: &Storage,
    new: NewAttachment<'_>,
    max_bytes: usize,
) -> Result<Attachment, AttachmentError> {
    if new.bytes.is_empty() {
        return Err(AttachmentError::Empty);
    }
    if new.bytes.len() > max_bytes {
        return Err(AttachmentError::TooLarge(max_bytes));
    }
    let (kind, content_type) = sniff(&new.bytes).ok_or(AttachmentError::Unsupported)?;
    let bytes = strip_metadata(content_type, new.bytes);
    let id = uuid::Uuid::new_v4();
    let key = format!("{}/{id}", new.conversation_id);
    let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let file_name: String =
        new.file_name.chars().filter(|c| !c.is_control() && !matches!(c, '/' | '\\')).take(200).collect();
    let file_name = if file_name.trim().is_empty() { kind.as_str().to_owned() } else { file_name };
    storage.put(&key, bytes.clone()).await?;
    let row = store::NewRow {
        id,
        conversation_id: new.conversation_id,
        message_id: new.message_id,
        author: new.author,
        kind: kind.as_str(),
        content_type,
        file_name: &file_name,
        size_bytes: bytes.len() as i64,
        sha256: &sha256,
        storage_key: &key,
    };
    match store::insert(db, &row).await {
        Ok(attachment) => Ok(attachment),
        Err(error) => {
            if let Err(cleanup) = storage.delete(&key).await {
                tracing::warn!(%cleanup, key, "a file whose row failed could not be deleted");
            }
            Err(error.into())
        }
    }
}

/// What one pass over the queued file deletions did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileDeletions {
    /// Files deleted (or found gone already).
    pub deleted: u64,
    /// Deletes that failed; they are tried again later.
    pub failed: u64,
}

/// Delete up to `limit` files whose rows are gone (queued in `storage_deletions`), each
/// claimed for a while so that two processes never delete the same one at once. A failed
/// delete is logged and stays queued, tried again later (backing off to once an hour), never
/// given up: no file outlives its row for good.
pub async fn delete_queued_files(db: &sqlx::PgPool, storage: &Storage, limit: i64) -> sqlx::Result<FileDeletions> {
    let keys = crate::db::storage_deletions::claim(db, limit).await?;
    let mut done = FileDeletions::default();
    for key in keys {
        match storage.delete(&key).await {
            Ok(()) => {
                crate::db::storage_deletions::done(db, &key).await?;
                done.deleted += 1;
            }
            Err(error) => {
                tracing::warn!(%error, key, "a deleted attachment's file could not be deleted; it is tried again later");
                crate::db::storage_deletions::failed(db, &key, &error.to_string()).await?;
                done.failed += 1;
            }
        }
    }
    metrics::counter!("concierge_attachment_file_deletions_total", "outcome" => "deleted").increment(done.deleted);
    metrics::counter!("concierge_attachment_file_deletions_total", "outcome" => "failed").increment(done.failed);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap().0, AttachmentKind::Image);
        assert_eq!(sniff(b"%PDF-1.4 ...").unwrap().1, "application/pdf");
        assert_eq!(sniff(b"OggS\0\x02").unwrap().1, "audio/ogg");
        assert_eq!(sniff(&[0x1a, 0x45, 0xdf, 0xa3, 1]).unwrap().1, "audio/webm");
        assert_eq!(sniff("Привет".as_bytes()).unwrap().0, AttachmentKind::Text);
        assert!(sniff(&[0, 1, 2, 3]).is_none());
    }

    #[test]
    fn jpeg_exif_is_dropped_and_the_image_kept() {
        let mut jpeg = vec![0xff, 0xd8];
        jpeg.extend([0xff, 0xe0, 0, 7]);
        jpeg.extend(b"JFIF\0");
        jpeg.extend([0xff, 0xe1, 0, 8]);
        jpeg.extend(b"Exif\0G");
        jpeg.extend([0xff, 0xda, 0, 2, 1, 2, 3, 0xff, 0xd9]);
        let stripped = strip_metadata("image/jpeg", Bytes::from(jpeg));
        assert!(!stripped.windows(4).any(|w| w == b"Exif"));
        assert!(stripped.windows(4).any(|w| w == b"JFIF"));
        assert!(stripped.ends_with(&[0xff, 0xda, 0, 2, 1, 2, 3, 0xff, 0xd9]));
    }
}
