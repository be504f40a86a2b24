//! The knowledge base: Markdown documents with front matter, split into chunks at their
//! headings, and a tantivy index over those chunks with Russian and English stemming.

mod document;
mod index;

pub use document::{Chunk, Document, DocumentError, FrontMatter, load_dir, parse_document};
pub use index::{Hit, KnowledgeIndex, SearchResult};
