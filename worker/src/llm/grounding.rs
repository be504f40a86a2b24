//! Whether an answer is supported by the passages it cites: the facts a reader would act on —
//! numbers (prices, durations, percentages, counts, dates, times), quoted names («…», "…") and
//! the steps of UI paths (`A → B`) — must appear in those passages (numbers may also come from
//! the user's own messages).
//!
//! Invariant: an answer whose facts are all found passes, whatever its wording; matching is
//! lenient on form (spaces inside numbers, decimal commas, `₽`/`руб`, case, simple word
//! endings) and strict on content.

use super::words;

/// A checkable statement in an answer, as shown in the repair message.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fact {
    /// A number, canonical: no spaces inside, a point for decimals (`1990`, `2.5`, `18:00`).
    Number(String),
    /// A quoted name, as written inside the quotes.
    Name(String),
    /// One step of a UI path.
    Step(String),
}

impl std::fmt::Display for Fact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fact::Number(n) => write!(f, "{n}"),
            Fact::Name(name) => write!(f, "«{name}»"),
            Fact::Step(step) => write!(f, "the menu step «{step}»"),
        }
    }
}

/// Numbers that say nothing checkable ("1 урок", "шаг 1").
const TRIVIAL_NUMBERS: &[&str] = &["0", "1"];
/// Longest quoted text taken as a name; longer quotes are citations of prose.
const MAX_NAME_CHARS: usize = 80;

/// The facts in an answer, each once, in order.
pub(super) fn facts(answer: &str) -> Vec<Fact> {
    let mut facts: Vec<Fact> = Vec::new();
    let mut add = |fact: Fact| {
        if !facts.contains(&fact) {
            facts.push(fact);
        }
    };
    for number in numbers(answer, true) {
        if !TRIVIAL_NUMBERS.contains(&number.as_str()) {
            add(Fact::Number(number));
        }
    }
    for name in quoted(answer) {
        add(Fact::Name(name));
    }
    for step in path_steps(answer) {
        add(Fact::Step(step));
    }
    facts
}

/// The facts of `answer` found neither in `sources` nor (numbers only) in `user_texts`.
pub(super) fn unsupported(answer: &str, sources: &[&str], user_texts: &[&str]) -> Vec<Fact> {
    let source_text = normalize(&sources.join("\n"));
    let source_numbers: Vec<String> = sources.iter().flat_map(|s| numbers(s, false)).collect();
    let user_numbers: Vec<String> = user_texts.iter().flat_map(|s| numbers(s, false)).collect();
    facts(answer)
        .into_iter()
        .filter(|fact| match fact {
            Fact::Number(n) => !source_numbers.contains(n) && !user_numbers.contains(n),
            Fact::Name(name) => !source_text.contains(&normalize(name)),
            Fact::Step(step) => !words::stems(step).iter().all(|stem| source_text.contains(stem.as_str())),
        })
        .collect()
}

/// Lower case, `ё` as `е`, every run of whitespace one space.
fn normalize(text: &str) -> String {
    text.to_lowercase().replace('ё', "е").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// The numbers in `text`, canonical. Digit groups split by a space (`1 990`) are one number;
/// `,` and `.` between digits are a decimal point (or a date's), `:` a time's. With
/// `skip_list_markers`, the `1.` / `2)` that start a list item are not numbers.
fn numbers(text: &str, skip_list_markers: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let attached = i > 0 && chars[i - 1].is_alphabetic();
        if !chars[i].is_ascii_digit() || attached {
            i += 1;
            continue;
        }
        let start = i;
        let mut number = String::new();
        loop {
            while i < chars.len() && chars[i].is_ascii_digit() {
                number.push(chars[i]);
                i += 1;
            }
            let next_digit = |at: usize| chars.get(at).is_some_and(char::is_ascii_digit);
            match chars.get(i) {
                Some(&c) if matches!(c, ',' | '.' | ':') && next_digit(i + 1) => {
                    number.push(if c == ':' { ':' } else { '.' });
                    i += 1;
                }
                // A thousands group: exactly three digits after the space.
                Some(&c) if is_space(c) && (1..=3).all(|k| next_digit(i + k)) && !next_digit(i + 4) => {
                    i += 1;
                }
                _ => break,
            }
        }
        let line_start = chars[..start].iter().rev().take_while(|c| **c != '\n').all(|c| c.is_whitespace());
        let marker =
            line_start && matches!(chars.get(i), Some('.' | ')')) && chars.get(i + 1).is_none_or(|c| is_space(*c));
        if !(skip_list_markers && marker) {
            found.push(number);
        }
    }
    found
}

/// Text inside «…», "…" and “…”, trimmed of punctuation.
fn quoted(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (open, close) in [('«', '»'), ('"', '"'), ('“', '”')] {
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len_utf8()..];
            let Some(end) = after.find(close) else { break };
            let name = after[..end].trim().trim_matches(|c: char| c.is_ascii_punctuation() && c != '%');
            if !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS {
                names.push(name.to_owned());
            }
            rest = &after[end + close.len_utf8()..];
        }
    }
    names
}

/// The steps of `A → B → C` paths: the word before the first arrow, every step between two
/// arrows, and the word after the last.
fn path_steps(text: &str) -> Vec<String> {
    let mut steps = Vec::new();
    for line in text.lines() {
        let line = line.replace("->", "→").replace('⟶', "→");
        let parts: Vec<&str> = line.split('→').collect();
        if parts.len() < 2 {
            continue;
        }
        let clean = |s: &str| s.trim().trim_matches(|c: char| "«»\"“”*`'.,:;!?()".contains(c)).trim().to_owned();
        let last = parts.len() - 1;
        for (n, part) in parts.iter().enumerate() {
            let step = if n == 0 {
                clean(part.split_whitespace().last().unwrap_or(""))
            } else if n == last {
                let part = clean(part);
                // Up to the end of the clause: a quoted step may hold several words.
                let step: String = part.split(['.', ',', ';', '!', '?']).next().unwrap_or("").to_owned();
                clean(step.split_whitespace().next().unwrap_or(""))
            } else {
                clean(part)
            };
            if !words::stems(&step).is_empty() {
                steps.push(step);
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers_of(text: &str) -> Vec<String> {
        facts(text)
            .into_iter()
            .filter_map(|f| match f {
                Fact::Number(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn numbers_are_found_in_every_usual_form() {
        assert_eq!(numbers_of("Подписка стоит 1 990 ₽ в месяц, на год — 19 900 руб."), ["1990", "19900"]);
        assert_eq!(numbers_of("Скидка 15%, урок 45 минут, с 10:00 до 18:30"), ["15", "45", "10:00", "18:30"]);
        assert_eq!(numbers_of("Возврат в течение 14 дней, до 01.09.2025; комиссия 2,5%"), ["14", "01.09.2025", "2.5"]);
        // List markers, a lone 1 and digits inside names are not facts.
        assert_eq!(
            numbers_of("1. Откройте профиль.\n2) Нажмите «Выйти».\n3. Готово: 1 урок, MP4"),
            Vec::<String>::new()
        );
        assert_eq!(numbers_of("3 урока по 2 часа"), ["3", "2"]);
    }

    #[test]
    fn names_and_path_steps_are_found() {
        let text = "Откройте «Настройки» → «Оплата» → Карты и нажмите \"Удалить карту\".";
        assert_eq!(
            facts(text),
            [
                Fact::Name("Настройки".into()),
                Fact::Name("Оплата".into()),
                Fact::Name("Удалить карту".into()),
                Fact::Step("Настройки".into()),
                Fact::Step("Оплата".into()),
                Fact::Step("Карты".into()),
            ]
        );
        assert_eq!(
            facts("Зайдите в Профиль -> Безопасность."),
            [Fact::Step("Профиль".into()), Fact::Step("Безопасность".into())]
        );
    }

    #[test]
    fn facts_must_be_in_the_cited_passages_or_the_users_words() {
        let passage = "Подписка «Стандарт» стоит 1990 руб. в месяц. Карту можно удалить в разделе Настройки → Оплата.";
        let answer = "Тариф «Стандарт» стоит 1 990 ₽, отменить можно в Настройках → Оплате.";
        assert!(unsupported(answer, &[passage], &[]).is_empty());
        let wrong = "Тариф «Премиум» стоит 2 490 ₽ за 3 месяца, смотрите Профиль → Тарифы.";
        assert_eq!(
            unsupported(wrong, &[passage], &["у меня 3 урока"]),
            [
                Fact::Number("2490".into()),
                Fact::Name("Премиум".into()),
                Fact::Step("Профиль".into()),
                Fact::Step("Тарифы".into())
            ]
        );
        // Nothing cited: any fact is unsupported; an answer with no facts passes.
        assert_eq!(unsupported("Стоит 500 ₽.", &[], &[]), [Fact::Number("500".into())]);
        assert!(unsupported("Рад помочь! Обращайтесь.", &[], &[]).is_empty());
    }
}
