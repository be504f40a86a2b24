//! The knowledge base: Markdown documents with front matter, split into chunks at their
//! headings; stored in PostgreSQL with a version; searched through a tantivy index that each
//! process builds from the stored documents and rebuilds when the version changes, beside the
//! chunks' embedding vectors for semantic search.

mod analyzer;
mod base;
mod document;
mod index;
pub mod store;
mod vectors;

pub use base::KnowledgeBase;
pub use document::{Chunk, Document, DocumentError, FrontMatter, content_hash, load_dir, parse_document};
pub use index::{Hit, KnowledgeIndex, SearchResult};
pub use vectors::{EXACT_LIMIT, VectorError, VectorIndex};
