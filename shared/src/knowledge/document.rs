//! Parsing knowledge documents: YAML front matter, then Markdown split into chunks at `##`
//! and `###` headings. Each chunk carries its document's title and its heading so that it can
//! be shown, cited and ranked on its own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The front matter every document starts with (see `knowledge/README.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub title: String,
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub language: String,
    pub updated: String,
}

/// One parsed document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Document {
    /// Path relative to the knowledge directory, with `/` separators: the document's identity.
    pub path: String,
    pub front: FrontMatter,
    pub chunks: Vec<Chunk>,
    /// SHA-256 of the source text, hex.
    pub content_hash: String,
}

/// A section of a document, the unit of retrieval and citation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Chunk {
    /// `path#anchor`, stable while the heading stays.
    pub id: String,
    pub doc_path: String,
    pub doc_title: String,
    /// The section heading; the document title for the text before the first section.
    pub heading: String,
    /// Section text without the heading line, as Markdown.
    pub text: String,
    pub tags: Vec<String>,
    pub category: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: no front matter (the file must start with a line `---`)")]
    NoFrontMatter { path: String },
    #[error("{path}: bad front matter: {message}")]
    BadFrontMatter { path: String, message: String },
    #[error("{path}: the document has no text")]
    Empty { path: String },
    #[error(
        "{path}: kept in the database, but a file of the knowledge directory has the same path and is used instead"
    )]
    Shadowed { path: String },
}

impl DocumentError {
    pub fn path(&self) -> &str {
        match self {
            DocumentError::Read { path, .. }
            | DocumentError::NoFrontMatter { path }
            | DocumentError::BadFrontMatter { path, .. }
            | DocumentError::Empty { path }
            | DocumentError::Shadowed { path } => path,
        }
    }
}

/// Parse one document's text; `path` is its identity relative to the knowledge directory.
pub fn parse_document(path: &str, source: &str) -> Result<Document, DocumentError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let Some(rest) = source.strip_prefix("---\n").or_else(|| source.strip_prefix("---\r\n")) else {
        return Err(DocumentError::NoFrontMatter { path: path.into() });
    };
    let Some(end) = rest.find("\n---") else {
        return Err(DocumentError::BadFrontMatter {
            path: path.into(),
            message: "the closing `---` is missing".into(),
        });
    };
    let yaml = &rest[..end];
    let body = rest[end + 4..].trim_start_matches(['-']).trim();
    let front: FrontMatter = serde_norway::from_str(yaml)
        .map_err(|e| DocumentError::BadFrontMatter { path: path.into(), message: e.to_string() })?;
    if front.title.trim().is_empty() {
        return Err(DocumentError::BadFrontMatter { path: path.into(), message: "`title` is empty".into() });
    }
    let chunks = chunk(path, &front, body);
    if chunks.is_empty() {
        return Err(DocumentError::Empty { path: path.into() });
    }
    Ok(Document { path: path.into(), front, chunks, content_hash: content_hash(source) })
}

pub fn content_hash(source: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(source.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Split at `##`/`###` headings outside code fences. The `#` title line is dropped (the front
/// matter's title is the title); text before the first section becomes a chunk headed by it.
fn chunk(path: &str, front: &FrontMatter, body: &str) -> Vec<Chunk> {
    let mut sections: Vec<(String, String)> = vec![(front.title.clone(), String::new())];
    let mut in_fence = false;
    for line in body.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if !in_fence {
            let is_title_line = trimmed.strip_prefix("# ").is_some_and(|title| title.trim() == front.title.trim());
            if is_title_line && sections.len() == 1 && sections[0].1.trim().is_empty() {
                continue;
            }
            if let Some(heading) = trimmed.strip_prefix("## ").or_else(|| trimmed.strip_prefix("### ")) {
                sections.push((heading.trim().to_owned(), String::new()));
                continue;
            }
        }
        let text = &mut sections.last_mut().expect("never empty").1;
        text.push_str(line);
        text.push('\n');
    }
    let mut seen = std::collections::HashSet::new();
    sections
        .into_iter()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(heading, text)| {
            let mut anchor = slug(&heading);
            let mut n = 2;
            while !seen.insert(anchor.clone()) {
                anchor = format!("{}-{n}", slug(&heading));
                n += 1;
            }
            Chunk {
                id: format!("{path}#{anchor}"),
                doc_path: path.into(),
                doc_title: front.title.clone(),
                heading,
                text: text.trim().to_owned(),
                tags: front.tags.clone(),
                category: front.category.clone(),
            }
        })
        .collect()
}

/// A URL fragment for a heading: lowercase letters and digits, words joined by `-`.
fn slug(heading: &str) -> String {
    let mut out = String::new();
    for word in heading.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    if out.is_empty() { "section".into() } else { out }
}

/// Every `*.md` under `dir` except README files, parsed. Broken documents are returned as
/// errors beside the good ones, so that one bad file never hides the rest.
pub fn load_dir(dir: &Path) -> std::io::Result<(Vec<Document>, Vec<DocumentError>)> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().replace('\\', "/");
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_document(&relative, &text) {
                Ok(document) => documents.push(document),
                Err(error) => errors.push(error),
            },
            Err(source) => errors.push(DocumentError::Read { path: relative, source }),
        }
    }
    Ok((documents, errors))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md")
            && !path.file_name().is_some_and(|n| n.eq_ignore_ascii_case("README.md"))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\ntitle: Как оплатить подписку\ncategory: faq\ntags: [оплата, подписка]\nlanguage: ru\nupdated: 2026-10-01\n---\n\n# Как оплатить подписку\n\nКоротко: картой или через СБП.\n\n## Оплата картой\nОткройте **Настройки → Оплата**.\n\n## Оплата через СБП\nВыберите СБП.\n";

    #[test]
    fn splits_at_headings_and_keeps_the_intro() {
        let doc = parse_document("faq/pay.md", DOC).unwrap();
        let headings: Vec<_> = doc.chunks.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(headings, ["Как оплатить подписку", "Оплата картой", "Оплата через СБП"]);
        assert_eq!(doc.chunks[1].id, "faq/pay.md#оплата-картой");
        assert_eq!(doc.chunks[1].text, "Откройте **Настройки → Оплата**.");
    }

    #[test]
    fn reports_broken_documents() {
        assert!(matches!(parse_document("a.md", "no front matter"), Err(DocumentError::NoFrontMatter { .. })));
        assert!(matches!(
            parse_document("a.md", "---\ntitle: x\n---\nbody"),
            Err(DocumentError::BadFrontMatter { .. })
        ));
        let empty = "---\ntitle: T\ncategory: faq\nlanguage: ru\nupdated: 2026-01-01\n---\n\n# T\n";
        assert!(matches!(parse_document("a.md", empty), Err(DocumentError::Empty { .. })));
    }
}
