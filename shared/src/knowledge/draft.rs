//! Knowledge documents made from an operator's answer: the plain template used when no model
//! writes the draft, the Markdown document an approved draft becomes (the front matter every
//! knowledge document has), and its file name.
//!
//! Invariant: [`render`] returns only text that [`parse_document`] reads back as a document
//! with the draft's title, so what an administrator approved is never skipped as broken.

use super::{DocumentError, FrontMatter, analyzer::latin_letters, parse_document};

/// The category, and folder, of documents made from answers: short question-and-answer
/// articles.
pub const CATEGORY: &str = "faq";
/// The longest title, in characters.
pub const TITLE_MAX: usize = 200;
/// The longest body, in characters.
pub const BODY_MAX: usize = 20_000;
/// The longest file name stem.
const SLUG_MAX: usize = 60;

/// The draft a plain template makes: the question as the title, then the question and the
/// answer as sections.
pub fn template(question: &str, answer: &str) -> (String, String) {
    let title = title_from(question);
    let body = format!("## Вопрос\n\n{}\n\n## Ответ\n\n{}\n", question.trim(), answer.trim());
    (title, body)
}

/// A title from the user's words: their first line, cut at a word to 120 characters.
pub fn title_from(question: &str) -> String {
    let line = question.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("Вопрос пользователя");
    let mut title = String::new();
    for word in line.split_whitespace() {
        if title.chars().count() + word.chars().count() + 1 > 120 {
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    if title.is_empty() {
        title = line.chars().take(120).collect();
    }
    title
}

/// Why a title or body cannot be a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("the title must be one line of 1 to {TITLE_MAX} characters")]
    Title,
    #[error("the body must be 1 to {BODY_MAX} characters of Markdown")]
    Body,
    #[error("the body has no text a reader could be shown")]
    Empty,
}

/// The title, checked: one line, not blank, at most [`TITLE_MAX`] characters. Returned trimmed.
pub fn checked_title(title: &str) -> Result<&str, DraftError> {
    let trimmed = title.trim();
    if trimmed.is_empty() || title.chars().count() > TITLE_MAX || trimmed.contains(['\n', '\r']) {
        return Err(DraftError::Title);
    }
    Ok(trimmed)
}

/// The body, checked: not blank, at most [`BODY_MAX`] characters. Returned trimmed.
pub fn checked_body(body: &str) -> Result<&str, DraftError> {
    let trimmed = body.trim();
    if trimmed.is_empty() || body.chars().count() > BODY_MAX {
        return Err(DraftError::Body);
    }
    Ok(trimmed)
}

/// The Markdown document of an approved draft at `path`: front matter (title, category
/// [`CATEGORY`], no tags, Russian, updated `today`), the title as its one `#` heading, then
/// the body. Checked by parsing it back.
pub fn render(path: &str, title: &str, body: &str, today: chrono::NaiveDate) -> Result<String, DraftError> {
    let title = checked_title(title)?;
    let body = checked_body(body)?;
    let front = FrontMatter {
        title: title.to_owned(),
        category: CATEGORY.into(),
        tags: Vec::new(),
        language: "ru".into(),
        updated: today.format("%Y-%m-%d").to_string(),
    };
    let yaml = serde_norway::to_string(&front).map_err(|_| DraftError::Title)?;
    // A body that repeats the title as its heading keeps one.
    let body = body.strip_prefix(&format!("# {title}")).map(str::trim_start).unwrap_or(body);
    let source = format!("---\n{}---\n\n# {title}\n\n{body}\n", yaml.trim_start_matches("---\n"));
    match parse_document(path, &source) {
        Ok(document) if document.front.title == title => Ok(source),
        Ok(_) => Err(DraftError::Title),
        Err(DocumentError::Empty { .. }) => Err(DraftError::Empty),
        Err(_) => Err(DraftError::Title),
    }
}

/// A file name stem for a title: Latin letters (Cyrillic transliterated), digits and dashes,
/// lowercase, at most 60 characters; `fallback` when nothing is left.
pub fn slug(title: &str, fallback: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        let latin: &str = match c {
            'a'..='z' | '0'..='9' => {
                let mut buffer = [0; 4];
                let text: &str = c.encode_utf8(&mut buffer);
                if dash && !out.is_empty() {
                    out.push('-');
                }
                dash = false;
                out.push_str(text);
                continue;
            }
            c => match latin_letters(c) {
                Some(latin) => latin,
                None => {
                    dash = true;
                    continue;
                }
            },
        };
        if latin.is_empty() {
            continue;
        }
        if dash && !out.is_empty() {
            out.push('-');
        }
        dash = false;
        out.push_str(latin);
    }
    if out.len() > SLUG_MAX {
        let cut = out[..SLUG_MAX].rfind('-').filter(|&at| at >= SLUG_MAX / 2).unwrap_or(SLUG_MAX);
        out.truncate(cut);
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() { fallback.to_owned() } else { out }
}

/// The path of the `n`-th candidate for a slug (1: the slug itself, then `-2`, `-3`…).
pub fn candidate_path(slug: &str, n: usize) -> String {
    if n <= 1 { format!("{CATEGORY}/{slug}.md") } else { format!("{CATEGORY}/{slug}-{n}.md") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
    }

    #[test]
    fn a_template_draft_renders_to_a_document_with_front_matter() {
        let (title, body) = template("Можно ли: сменить язык интерфейса?\nспасибо", "Да, в **Настройки → Язык**.");
        assert_eq!(title, "Можно ли: сменить язык интерфейса?");
        let source = render("faq/x.md", &title, &body, today()).unwrap();
        let document = parse_document("faq/x.md", &source).unwrap();
        assert_eq!(document.front.title, title);
        assert_eq!(document.front.category, "faq");
        assert_eq!(document.front.updated, "2026-12-04");
        let headings: Vec<_> = document.chunks.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(headings, ["Вопрос", "Ответ"]);
        assert!(document.chunks[1].text.contains("Настройки → Язык"));
    }

    #[test]
    fn bad_titles_and_bodies_are_refused() {
        assert_eq!(render("faq/x.md", " ", "text", today()), Err(DraftError::Title));
        assert_eq!(render("faq/x.md", "a\nb", "text", today()), Err(DraftError::Title));
        assert_eq!(render("faq/x.md", "T", "  ", today()), Err(DraftError::Body));
        assert_eq!(render("faq/x.md", "T", "# T", today()), Err(DraftError::Empty));
        assert_eq!(render("faq/x.md", &"я".repeat(201), "text", today()), Err(DraftError::Title));
        assert!(render("faq/x.md", "--- \"quoted\" # and: colons", "Body", today()).is_ok());
    }

    #[test]
    fn slugs_are_latin_kebab_case() {
        assert_eq!(slug("Как сменить язык интерфейса?", "x"), "kak-smenit-yazyk-interfeysa");
        assert_eq!(slug("Zoom Pro: 30 часов", "x"), "zoom-pro-30-chasov");
        assert_eq!(slug("???", "draft-1"), "draft-1");
        assert!(slug(&"слово ".repeat(40), "x").len() <= 60);
        assert_eq!(candidate_path("a", 1), "faq/a.md");
        assert_eq!(candidate_path("a", 3), "faq/a-3.md");
    }
}
