//! The knowledge base in PostgreSQL: reindexing the Markdown directory into it, and reading it
//! back to build a search index.
//!
//! A reindex compares each file's hash with the stored one: new and changed documents are
//! (re)chunked and written, unchanged ones are left alone, documents whose file is gone are
//! removed. A broken file is reported by name and skipped; its previous version, if any, stays.
//! When anything changed the knowledge version goes up by one and `concierge_kb` is notified,
//! all in one transaction, serialised by an advisory lock. Documents kept in the database
//! (`knowledge_stored_documents`) are read beside the directory's files, as if they were some.

use std::{collections::HashMap, path::Path, time::Instant};

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::{Chunk, Document, DocumentError, FrontMatter, load_dir};
use crate::embeddings::Space;

/// The channel announcing a new knowledge version (payload: the version).
pub const CHANNEL: &str = "concierge_kb";

/// Lock key serialising reindex transactions.
pub(super) const REINDEX_LOCK: i64 = 0x636f_6e63_6b62; // "concb"

/// What a reindex did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReindexReport {
    /// The knowledge version after the run.
    pub version: i64,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Documents and chunks in the knowledge base after the run.
    pub documents: usize,
    pub chunks: usize,
    /// Broken files, skipped.
    pub errors: Vec<BrokenDocument>,
    pub duration_ms: u64,
    /// What embedding the chunks did, with an embeddings server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<super::embed::EmbedReport>,
    /// Why the new chunks have no vectors yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BrokenDocument {
    pub path: String,
    pub error: String,
}

impl From<&DocumentError> for BrokenDocument {
    fn from(error: &DocumentError) -> Self {
        Self { path: error.path().to_owned(), error: error.to_string() }
    }
}

/// Bring the stored knowledge base in line with the files in `dir`.
pub async fn reindex(pool: &PgPool, dir: &Path) -> anyhow::Result<ReindexReport> {
    let started = Instant::now();
    let owned_dir = dir.to_path_buf();
    let (documents, errors) = tokio::task::spawn_blocking(move || load_dir(&owned_dir))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot read the knowledge directory {}: {e}", dir.display()))?;

    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REINDEX_LOCK).execute(&mut *tx).await?;
    let (documents, errors) = with_stored_documents(&mut tx, documents, errors).await?;
    let stored: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT path, content_hash FROM knowledge_documents")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let version: i64 = sqlx::query_scalar("SELECT version FROM knowledge_state").fetch_one(&mut *tx).await?;
    let next = version + 1;

    let mut report = ReindexReport { errors: errors.iter().map(BrokenDocument::from).collect(), ..Default::default() };
    for document in &documents {
        match stored.get(&document.path) {
            Some(hash) if *hash == document.content_hash => report.unchanged += 1,
            Some(_) => {
                write_document(&mut tx, document, next).await?;
                report.updated.push(document.path.clone());
            }
            None => {
                write_document(&mut tx, document, next).await?;
                report.added.push(document.path.clone());
            }
        }
    }
    let present: std::collections::HashSet<&str> =
        documents.iter().map(|d| d.path.as_str()).chain(errors.iter().map(|e| e.path())).collect();
    for path in stored.keys().filter(|p| !present.contains(p.as_str())) {
        sqlx::query("DELETE FROM knowledge_documents WHERE path = $1").bind(path).execute(&mut *tx).await?;
        report.removed.push(path.clone());
    }
    report.removed.sort();

    let changed = !(report.added.is_empty() && report.updated.is_empty() && report.removed.is_empty());
    report.version = if changed {
        sqlx::query("UPDATE knowledge_state SET version = $1, updated_at = now()").bind(next).execute(&mut *tx).await?;
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(next.to_string()).execute(&mut *tx).await?;
        next
    } else {
        version
    };
    (report.documents, report.chunks) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT (SELECT count(*) FROM knowledge_documents), (SELECT count(*) FROM knowledge_chunks)",
    )
    .fetch_one(&mut *tx)
    .await
    .map(|(d, c)| (d as usize, c as usize))?;
    tx.commit().await?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The directory's documents and, beside them, those kept in the database
/// (`knowledge_stored_documents`: approved drafts where the directory is read-only). A file
/// takes precedence over a stored document of the same path, which is reported.
async fn with_stored_documents(
    conn: &mut PgConnection,
    mut documents: Vec<Document>,
    mut errors: Vec<DocumentError>,
) -> sqlx::Result<(Vec<Document>, Vec<DocumentError>)> {
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT path, source FROM knowledge_stored_documents ORDER BY path").fetch_all(conn).await?;
    let files: std::collections::HashSet<String> =
        documents.iter().map(|d| d.path.clone()).chain(errors.iter().map(|e| e.path().to_owned())).collect();
    for (path, source) in stored {
        if files.contains(&path) {
            errors.push(DocumentError::Shadowed { path });
            continue;
        }
        match super::parse_document(&path, &source) {
            Ok(document) => documents.push(document),
            Err(error) => errors.push(error),
        }
    }
    Ok((documents, errors))
}

async fn write_document(conn: &mut PgConnection, document: &Document, version: i64) -> sqlx::Result<()> {
    let front = &document.front;
    sqlx::query(
        "INSERT INTO knowledge_documents (path, title, category, tags, language, updated, content_hash, version, indexed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
         ON CONFLICT (path) DO UPDATE SET title = $2, category = $3, tags = $4, language = $5, updated = $6,
             content_hash = $7, version = $8, indexed_at = now()",
    )
    .bind(&document.path)
    .bind(&front.title)
    .bind(&front.category)
    .bind(&front.tags)
    .bind(&front.language)
    .bind(&front.updated)
    .bind(&document.content_hash)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM knowledge_chunks WHERE doc_path = $1").bind(&document.path).execute(&mut *conn).await?;
    let ords: Vec<i32> = (0..document.chunks.len() as i32).collect();
    let ids: Vec<&str> = document.chunks.iter().map(|c| c.id.as_str()).collect();
    let headings: Vec<&str> = document.chunks.iter().map(|c| c.heading.as_str()).collect();
    let bodies: Vec<&str> = document.chunks.iter().map(|c| c.text.as_str()).collect();
    sqlx::query(
        "INSERT INTO knowledge_chunks (doc_path, ord, id, heading, body)
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[])",
    )
    .bind(&document.path)
    .bind(&ords)
    .bind(&ids)
    .bind(&headings)
    .bind(&bodies)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stored knowledge base at its current version.
pub async fn load(pool: &PgPool) -> sqlx::Result<(i64, Vec<Document>)> {
    load_documents(pool).await
}

/// The stored knowledge base at its current version, with the vectors of the model searched,
/// read in one snapshot.
pub async fn load_with_vectors(pool: &PgPool) -> sqlx::Result<(i64, Vec<Document>, Option<StoredVectors>)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let (version, documents) = load_documents_in(&mut tx).await?;
    let model: Option<(String, String, String, String, i32)> = sqlx::query_as(
        "SELECT m.model, m.query_model, m.query_prefix, m.passage_prefix, m.dims
         FROM knowledge_state s JOIN knowledge_vector_models m ON m.model = s.vector_model",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let vectors = match model {
        Some((model, query_model, query_prefix, passage_prefix, dims)) => {
            let rows: Vec<(String, Vec<f32>)> =
                sqlx::query_as("SELECT text_hash, vector FROM knowledge_vectors WHERE model = $1")
                    .bind(&model)
                    .fetch_all(&mut *tx)
                    .await?;
            Some(StoredVectors {
                space: Space { model, query_model, query_prefix, passage_prefix },
                dims: dims as usize,
                by_hash: rows.into_iter().collect(),
            })
        }
        None => None,
    };
    tx.commit().await?;
    Ok((version, documents, vectors))
}

/// The vectors of the searched model, by the hash of the text embedded.
pub struct StoredVectors {
    pub space: Space,
    pub dims: usize,
    pub by_hash: HashMap<String, Vec<f32>>,
}

/// [`load`], in a snapshot of its own.
pub(super) async fn load_documents(pool: &PgPool) -> sqlx::Result<(i64, Vec<Document>)> {
    let mut tx = pool.begin().await?;
    // One snapshot for the version and the rows.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let loaded = load_documents_in(&mut tx).await?;
    tx.commit().await?;
    Ok(loaded)
}

/// The version and the documents as `conn`'s transaction sees them.
pub(super) async fn load_documents_in(conn: &mut PgConnection) -> sqlx::Result<(i64, Vec<Document>)> {
    let version: i64 = sqlx::query_scalar("SELECT version FROM knowledge_state").fetch_one(&mut *conn).await?;
    let rows: Vec<DocumentRow> = sqlx::query_as(
        "SELECT path, title, category, tags, language, updated, content_hash FROM knowledge_documents ORDER BY path",
    )
    .fetch_all(&mut *conn)
    .await?;
    let chunk_rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT doc_path, id, heading, body FROM knowledge_chunks ORDER BY doc_path, ord")
            .fetch_all(&mut *conn)
            .await?;

    let mut chunks_by_doc: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for (path, id, heading, body) in chunk_rows {
        chunks_by_doc.entry(path).or_default().push((id, heading, body));
    }
    let documents = rows
        .into_iter()
        .map(|DocumentRow { path, title, category, tags, language, updated, content_hash }| {
            let chunks = chunks_by_doc
                .remove(&path)
                .unwrap_or_default()
                .into_iter()
                .map(|(id, heading, text)| Chunk {
                    id,
                    doc_path: path.clone(),
                    doc_title: title.clone(),
                    heading,
                    text,
                    tags: tags.clone(),
                    category: category.clone(),
                })
                .collect();
            Document { path, front: FrontMatter { title, category, tags, language, updated }, chunks, content_hash }
        })
        .collect();
    Ok((version, documents))
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    path: String,
    title: String,
    category: String,
    tags: Vec<String>,
    language: String,
    updated: String,
    content_hash: String,
}

/// The knowledge version currently stored.
pub async fn version(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT version FROM knowledge_state").fetch_one(pool).await
}

/// One stored document, for the admin console's list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DocumentSummary {
    pub path: String,
    pub title: String,
    pub category: String,
    pub tags: Vec<String>,
    pub updated: String,
    pub chunks: i64,
    /// The knowledge version that last wrote it.
    pub version: i64,
    pub indexed_at: chrono::DateTime<chrono::Utc>,
}

/// Every stored document, by path.
pub async fn documents(pool: &PgPool) -> sqlx::Result<Vec<DocumentSummary>> {
    sqlx::query_as(
        "SELECT d.path, d.title, d.category, d.tags, d.updated, d.version, d.indexed_at,
                (SELECT count(*) FROM knowledge_chunks c WHERE c.doc_path = d.path) AS chunks
         FROM knowledge_documents d ORDER BY d.path",
    )
    .fetch_all(pool)
    .await
}

/// A stored document as readers see it: its title, category and sections in order.
#[derive(Debug, Clone)]
pub struct DocumentPage {
    pub title: String,
    pub category: String,
    /// `(heading, Markdown body)`.
    pub sections: Vec<(String, String)>,
}

/// The document at `path`, if there is one.
pub async fn page(pool: &PgPool, path: &str) -> sqlx::Result<Option<DocumentPage>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let document: Option<(String, String)> =
        sqlx::query_as("SELECT title, category FROM knowledge_documents WHERE path = $1")
            .bind(path)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((title, category)) = document else { return Ok(None) };
    let sections = sqlx::query_as("SELECT heading, body FROM knowledge_chunks WHERE doc_path = $1 ORDER BY ord")
        .bind(path)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(DocumentPage { title, category, sections }))
}
