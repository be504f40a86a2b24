//! Pulls one string field out of JSON that arrives in pieces: the `text` argument of an
//! `answer` tool call, so that the answer can be shown while the model is still writing it.

/// Decodes the value of `"<field>": "..."` incrementally.
pub struct FieldStream {
    key: String,
    raw: String,
    /// Byte index in `raw` of the next undecoded character of the value, once it is found.
    pos: Option<usize>,
    done: bool,
}

impl FieldStream {
    pub fn new(field: &str) -> Self {
        Self { key: format!("\"{field}\""), raw: String::new(), pos: None, done: false }
    }

    /// Add a piece of the JSON; returns the value text decoded from it (possibly empty).
    pub fn push(&mut self, piece: &str) -> String {
        self.raw.push_str(piece);
        if self.done {
            return String::new();
        }
        if self.pos.is_none() {
            self.pos = self.value_start();
        }
        let Some(mut pos) = self.pos else { return String::new() };
        let mut out = String::new();
        let bytes = self.raw.as_bytes();
        while pos < bytes.len() {
            match bytes[pos] {
                b'"' => {
                    self.done = true;
                    break;
                }
                b'\\' => match decode_escape(&self.raw[pos..]) {
                    Some((text, used)) => {
                        out.push_str(&text);
                        pos += used;
                    }
                    None => break,
                },
                _ => {
                    let c = self.raw[pos..].chars().next().expect("in bounds");
                    out.push(c);
                    pos += c.len_utf8();
                }
            }
        }
        self.pos = Some(pos);
        out
    }

    /// Where the value starts: after `"key"`, optional spaces, `:`, optional spaces and `"`.
    fn value_start(&self) -> Option<usize> {
        let at = self.raw.find(&self.key)? + self.key.len();
        let rest = &self.raw[at..];
        let after_colon = rest.trim_start().strip_prefix(':')?;
        let after_quote = after_colon.trim_start().strip_prefix('"')?;
        Some(self.raw.len() - after_quote.len())
    }
}

/// One escape sequence at the start of `s`: its text and length, or `None` if incomplete.
fn decode_escape(s: &str) -> Option<(String, usize)> {
    let mut chars = s.chars();
    chars.next(); // the backslash
    let c = chars.next()?;
    let simple = match c {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        '/' => Some('/'),
        '\\' => Some('\\'),
        '"' => Some('"'),
        'u' => None,
        other => Some(other),
    };
    if let Some(c) = simple {
        return Some((c.to_string(), 2));
    }
    let unit = u16::from_str_radix(s.get(2..6)?, 16).ok()?;
    if (0xD800..0xDC00).contains(&unit) {
        // A surrogate pair: the low half must follow.
        if s.get(6..8)? != "\\u" {
            return Some(('\u{FFFD}'.to_string(), 6));
        }
        let low = u16::from_str_radix(s.get(8..12)?, 16).ok()?;
        let c = char::decode_utf16([unit, low]).next()?.unwrap_or('\u{FFFD}');
        return Some((c.to_string(), 12));
    }
    Some((char::from_u32(unit as u32).unwrap_or('\u{FFFD}').to_string(), 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_value_split_anywhere() {
        let json = r#"{"citations": ["a"], "text": "Оплата \"картой\"\nи \u0421\u0411\u041f 😀 \ud83d\ude00", "x": 1}"#;
        for split in 1..json.len() {
            if !json.is_char_boundary(split) {
                continue;
            }
            let mut stream = FieldStream::new("text");
            let mut out = stream.push(&json[..split]);
            out.push_str(&stream.push(&json[split..]));
            assert_eq!(out, "Оплата \"картой\"\nи СБП 😀 😀", "split at {split}");
        }
    }
}
