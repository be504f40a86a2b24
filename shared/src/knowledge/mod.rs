//! The knowledge base: Markdown documents with front matter, split into chunks at their
//! headings; stored in PostgreSQL with a version; searched through a tantivy index that each
//! process builds from the stored documents and rebuilds when the version changes, beside the
//! chunks' embedding vectors for semantic search.

mod analyzer;
mod base;
mod document;
pub mod draft;
pub mod embed;
mod index;
mod query;
pub mod store;
mod vectors;

pub use analyzer::stems;
pub use base::{KnowledgeBase, Retrieval};
pub use document::{Chunk, Document, DocumentError, FrontMatter, content_hash, load_dir, parse_document};
pub use index::{DEFAULT_FUSION, Fusion, Hit, KnowledgeIndex, SearchOptions, SearchResult, Vectors};
pub use query::{is_follow_up, normalize_query};
pub use vectors::{EXACT_LIMIT, VectorError, VectorIndex};
