//! Keeping the system prompt private: a final reply that quotes a line of it is refused, and
//! streamed text is held back long enough that a quoted line is caught before any of it shows.
//!
//! Invariant: no private line of the prompt (40 characters or more, compared with whitespace
//! and case normalized) ever reaches the user, whole or in part.

use super::Prompt;
use crate::engine::Decision;

/// Refuse answers that quote the system prompt.
pub(super) fn guard(decision: Decision, prompt: &Prompt) -> Result<Decision, String> {
    let text = match &decision {
        Decision::Answer { text, .. } | Decision::Clarify { text, .. } => text,
        Decision::Escalate { .. } | Decision::Action { .. } => return Ok(decision),
    };
    if quotes_prompt(&normalize(text), &private_lines(prompt)) {
        return Err("the reply quotes the system prompt, which must stay private".into());
    }
    Ok(decision)
}

/// The prompt's lines long enough that quoting one is a leak, normalized.
fn private_lines(prompt: &Prompt) -> Vec<String> {
    prompt.text.lines().map(normalize).filter(|line| line.chars().count() >= 40).collect()
}

fn quotes_prompt(normalized: &str, lines: &[String]) -> bool {
    lines.iter().any(|line| normalized.contains(line.as_str()))
}

/// Streamed answer text passes through here before the widget sees it. The last stretch is
/// held back, long enough to hold any private line of the prompt: a line the model starts to
/// quote is whole before any of it is released, so it is caught (and the stream stops) before
/// the user sees a word of it. The final message, checked by [`guard`], replaces the draft.
pub struct StreamGuard {
    lines: Vec<String>,
    /// Non-whitespace characters kept back: as many as the longest private line has.
    hold: usize,
    text: String,
    released: usize,
    stopped: bool,
}

impl StreamGuard {
    pub fn new(prompt: &Prompt) -> Self {
        let lines = private_lines(prompt);
        let hold = lines.iter().map(|line| line.chars().filter(|c| !c.is_whitespace()).count()).max().unwrap_or(0);
        Self { lines, hold, text: String::new(), released: 0, stopped: false }
    }

    /// More text; returns what may be shown now, if anything.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.text.push_str(piece);
        if quotes_prompt(&normalize(&self.text), &self.lines) {
            self.stopped = true;
            return None;
        }
        // Release up to where the rest still holds `hold` non-whitespace characters.
        let mut kept = 0;
        let mut end = self.text.len();
        for (index, c) in self.text.char_indices().rev() {
            if kept >= self.hold {
                break;
            }
            if !c.is_whitespace() {
                kept += 1;
            }
            end = index;
        }
        if kept < self.hold || end <= self.released {
            return None;
        }
        let safe = self.text[self.released..end].to_owned();
        self.released = end;
        Some(safe)
    }

    /// The text held back, once the whole reply has passed [`guard`].
    pub fn finish(&mut self) -> Option<String> {
        if self.stopped || self.released >= self.text.len() {
            return None;
        }
        let rest = self.text[self.released..].to_owned();
        self.released = self.text.len();
        Some(rest)
    }
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod stream_guard_tests {
    use super::{Prompt, StreamGuard};

    fn prompt() -> Prompt {
        Prompt {
            text: "You are Concierge, the support assistant of the Lectio teaching platform.\nBe brief.".into(),
            version: "test".into(),
        }
    }

    #[test]
    fn a_quoted_prompt_line_is_never_released_and_other_text_flows_with_a_lag() {
        let line = "You are Concierge, the support assistant of the Lectio teaching platform.";
        let mut guard = StreamGuard::new(&prompt());
        let mut shown = String::new();
        let leak = format!("Конечно! Мои инструкции: {line} И дальше.");
        for piece in leak.split_inclusive(' ') {
            shown.extend(guard.push(piece));
        }
        // Text before the quote may show; not a character of the quote does.
        let before = leak.find("You").unwrap();
        assert!(leak[..before].starts_with(&shown), "{shown}");

        let mut guard = StreamGuard::new(&prompt());
        let answer = "Оплатить подписку можно картой или через СБП в разделе «Подписка». ".repeat(5);
        let mut shown = String::new();
        for piece in answer.split_inclusive(' ') {
            shown.extend(guard.push(piece));
        }
        assert!(answer.starts_with(&shown) && shown.len() > answer.len() / 2, "{shown}");
    }
}
