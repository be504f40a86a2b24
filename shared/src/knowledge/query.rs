//! What a user typed, reduced to what is worth searching for.
//!
//! Real messages carry invisible and decorative characters, pasted links and addresses,
//! greetings, thanks and signatures. [`normalize_query`]
//! removes what carries no meaning so that both the lexical and the vector search see the
//! question itself; [`is_follow_up`] recognises a short message that only makes sense with the
//! previous one ("а на год?").
//!
//! Invariants: a negation is never removed ("не", "нет", "not" are not courtesies), and a
//! message made only of what would be removed (a bare greeting, a bare link) is returned
//! cleaned but otherwise whole, so that nothing a user typed turns into an empty query.

use std::sync::LazyLock;

use regex_lite::Regex;

/// A follow-up that opens with "а" or "и" is at most this many words...
const FOLLOW_UP_WORDS: usize = 6;
/// ...and one that only points back ("сколько это стоит?") at most this many.
const ANAPHORIC_FOLLOW_UP_WORDS: usize = 4;

/// Courtesies that open a message (a follow-up often opens with thanks), as lowercase words
/// with ё folded to е. Longest first where one is a prefix of another.
const OPENINGS: &[&[&str]] = &[
    &["доброго", "времени", "суток"],
    &["доброго", "времени"],
    &["добрый", "день"],
    &["добрый", "вечер"],
    &["добрый", "утро"],
    &["доброе", "утро"],
    &["доброй", "ночи"],
    &["доброго", "дня"],
    &["доброго", "утра"],
    &["доброго", "вечера"],
    &["здравствуйте"],
    &["здравствуй"],
    &["здрасте"],
    &["здрасьте"],
    &["приветствую"],
    &["привет"],
    &["хай"],
    &["извините", "за", "беспокойство"],
    &["извините"],
    &["простите"],
    &["прошу", "прощения"],
    &["у", "меня", "такой", "вопрос"],
    &["у", "меня", "вопрос"],
    &["такой", "вопрос"],
    &["вопрос", "такой"],
    &["есть", "вопрос"],
    &["подскажите", "пожалуйста"],
    &["скажите", "пожалуйста"],
    &["помогите", "пожалуйста"],
    &["подскажите"],
    &["скажите"],
    &["пожалуйста"],
    &["спасибо", "большое"],
    &["большое", "спасибо"],
    &["спасибо"],
    &["благодарю"],
    &["понятно"],
    &["ясно"],
    &["окей"],
    &["ок"],
    &["ok"],
    &["good", "morning"],
    &["good", "afternoon"],
    &["good", "evening"],
    &["hello"],
    &["hi"],
    &["hey"],
    &["thank", "you"],
    &["thanks"],
    &["please"],
];

/// Courtesies that close a message, in the same form as [`OPENINGS`].
const CLOSINGS: &[&[&str]] = &[
    &["спасибо", "заранее"],
    &["заранее", "спасибо"],
    &["заранее", "благодарю"],
    &["спасибо", "большое"],
    &["большое", "спасибо"],
    &["спасибо", "за", "помощь"],
    &["спасибо", "за", "ответ"],
    &["спасибо"],
    &["благодарю"],
    &["буду", "благодарен"],
    &["буду", "благодарна"],
    &["буду", "признателен"],
    &["буду", "признательна"],
    &["пожалуйста"],
    &["thanks", "in", "advance"],
    &["thank", "you"],
    &["thanks"],
    &["thx"],
    &["please"],
];

/// Words that open a signature ("С уважением, Максим", "Отправлено с iPhone"): they and the
/// few words after them close a message.
const SIGNATURES: &[&[&str]] = &[
    &["с", "уважением"],
    &["отправлено", "с"],
    &["отправлено", "из"],
    &["best", "regards"],
    &["kind", "regards"],
    &["regards"],
    &["sent", "from"],
];
/// A signature is its opening and at most this many words.
const SIGNATURE_WORDS: usize = 4;

/// Words that open a follow-up: "а на год?", "и сколько это стоит", "and for a year?".
const FOLLOW_UP_OPENERS: &[&str] = &["а", "и", "ещё", "еще", "also", "and"];
/// Words that point back at what was said before: "сколько это стоит?", "how much is it?".
const ANAPHORA: &[&str] = &[
    "это",
    "этого",
    "этом",
    "этим",
    "эту",
    "там",
    "туда",
    "тогда",
    "тоже",
    "так",
    "его",
    "её",
    "ее",
    "их",
    "него",
    "нее",
    "неё",
    "it",
    "that",
    "this",
    "them",
    "there",
    "too",
];

/// Links: a scheme or "www." and then printable ASCII. Cyrillic text glued to a link's end
/// ("…/playlists.Не могу") is not part of it.
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:https?://|www\.)[!-~]+").expect("the link pattern compiles"));
/// E-mail addresses.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("the e-mail pattern compiles")
});
/// Domains typed without a scheme ("rutube.ru/info"), by their common top-level domains.
static BARE_DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:[a-z0-9-]+\.)+(?:ru|com|net|org|io|me|su|info|app|tv)\b(?:/[!-~]*)?")
        .expect("the domain pattern compiles")
});

/// The searchable part of what a user typed: what both the lexical and the vector search see.
///
/// Cleans the characters (invisible and format characters, odd spaces, emoji and decorative
/// symbols, full-width forms, combining accents), removes links and e-mail addresses, and the
/// greetings, thanks and signatures around the question. Whitespace comes out collapsed.
pub fn normalize_query(text: &str) -> String {
    let cleaned = clean_characters(text);
    let without_addresses = strip_addresses(&cleaned);
    let core = strip_courtesies(&without_addresses);
    if !has_word(core) {
        if has_word(&cleaned) {
            return collapse_whitespace(&cleaned);
        }
        let visible: String = text.chars().filter(|&c| !is_invisible(c)).collect();
        return collapse_whitespace(&visible);
    }
    collapse_whitespace(core)
}

/// Whether `text` is a short follow-up that only makes sense with the previous user turn
/// ("а на год?", "а для ученика?", "и сколько это стоит", "а если картой"): then the search
/// joins it to that turn.
pub fn is_follow_up(text: &str) -> bool {
    let normalized = normalize_query(text);
    let words = words(&normalized);
    match words.first() {
        Some(first) if FOLLOW_UP_OPENERS.contains(&first.as_str()) => words.len() <= FOLLOW_UP_WORDS,
        Some(_) => words.len() <= ANAPHORIC_FOLLOW_UP_WORDS && words.iter().any(|w| ANAPHORA.contains(&w.as_str())),
        None => false,
    }
}

/// One pass over the characters: drop the invisible ones, turn odd spaces into plain ones,
/// emoji and decorative symbols into spaces, full-width
/// forms into ASCII; recompose й and ё typed as a letter and a combining mark, drop other
/// combining marks (stress marks, accents).
fn clean_characters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{0306}' | '\u{0308}' => {
                if let Some(base) = out.pop() {
                    out.push(compose(base, c));
                }
            }
            c if is_invisible(c) || ('\u{0300}'..='\u{036F}').contains(&c) => {}
            c if c.is_whitespace() || c.is_control() => out.push(' '),
            c if is_decorative(c) => out.push(' '),
            '\u{FF01}'..='\u{FF5E}' => out.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
            c => out.push(c),
        }
    }
    out
}

/// A base letter and a combining breve or diaeresis, as the one letter Russian writes.
fn compose(base: char, mark: char) -> char {
    match (base, mark) {
        ('и', '\u{0306}') => 'й',
        ('И', '\u{0306}') => 'Й',
        ('е', '\u{0308}') => 'ё',
        ('Е', '\u{0308}') => 'Ё',
        (base, _) => base,
    }
}

/// Zero-width, bidirectional and other format characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// Emoji, pictographs, dingbats, arrows, box drawing, keycaps and marks like © ® ™.
fn is_decorative(c: char) -> bool {
    matches!(c,
        '\u{00A9}' | '\u{00AE}' | '\u{2122}' | '\u{20E3}' | '\u{2190}'..='\u{21FF}' | '\u{2300}'..='\u{23FF}'
        | '\u{2500}'..='\u{27BF}' | '\u{2900}'..='\u{297F}' | '\u{2B00}'..='\u{2BFF}'
        | '\u{1F000}'..='\u{1FAFF}')
}

/// The text with links and e-mail addresses replaced by spaces. Punctuation right after a link
/// stays: "…/vasya_007?" still asks something.
fn strip_addresses(text: &str) -> String {
    let mut text = text.to_owned();
    for pattern in [&*URL, &*EMAIL, &*BARE_DOMAIN] {
        text = pattern
            .replace_all(&text, |caps: &regex_lite::Captures| {
                let link = &caps[0];
                let kept = link.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '"', '\'']);
                format!(" {} ", &link[kept.len()..])
            })
            .into_owned();
    }
    text
}

/// `text` without the courtesies that open and close it. Punctuation that ends the question
/// stays; the commas and dashes that joined it to a courtesy go.
fn strip_courtesies(text: &str) -> &str {
    let spans = word_spans(text);
    let keys: Vec<String> = spans.iter().map(|&(start, end)| fold(&text[start..end])).collect();
    // Closings first: "спасибо заранее" is a closing even where "спасибо" could open.
    let mut last = signature_start(&keys).unwrap_or(keys.len());
    while let Some(phrase) = CLOSINGS.iter().find(|p| ends_with(&keys[..last], p)) {
        last -= phrase.len();
    }
    let mut first = 0;
    while let Some(phrase) = OPENINGS.iter().find(|p| starts_with(&keys[first..last], p)) {
        first += phrase.len();
    }
    if first == last {
        return "";
    }
    let start = if first == 0 { 0 } else { spans[first].0 };
    let end = if last == keys.len() { text.len() } else { spans[last].0 };
    text[start..end].trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-' | '–' | '—'))
}

/// Where a signature among the last words begins, if there is one.
fn signature_start(keys: &[String]) -> Option<usize> {
    let earliest = keys.len().saturating_sub(SIGNATURE_WORDS + 2);
    (earliest..keys.len()).find(|&at| {
        SIGNATURES.iter().any(|p| starts_with(&keys[at..], p) && keys.len() - at - p.len() <= SIGNATURE_WORDS)
    })
}

fn starts_with(words: &[String], phrase: &[&str]) -> bool {
    words.len() >= phrase.len() && words.iter().zip(phrase).all(|(w, p)| w == p)
}

fn ends_with(words: &[String], phrase: &[&str]) -> bool {
    words.len() >= phrase.len() && words[words.len() - phrase.len()..].iter().zip(phrase).all(|(w, p)| w == p)
}

/// Byte ranges of the words (runs of letters and digits).
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

fn words(text: &str) -> Vec<String> {
    word_spans(text).into_iter().map(|(start, end)| fold(&text[start..end])).collect()
}

/// Lowercase with ё as е: how words are compared with the lists above.
fn fold(word: &str) -> String {
    word.to_lowercase().replace('ё', "е")
}

fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_invisible_characters_and_odd_spaces() {
        assert_eq!(normalize_query("опл\u{200B}ата\u{00AD} под\u{FEFF}писки"), "оплата подписки");
        assert_eq!(normalize_query("\u{200E}как\u{00A0}оплатить\u{2009}\u{202F}картой\t\n?"), "как оплатить картой ?");
        assert_eq!(normalize_query("\u{202B}нет звука\u{202C}\u{2060}"), "нет звука");
    }

    #[test]
    fn recomposes_russian_letters_and_drops_accents() {
        assert_eq!(normalize_query("мои\u{0306} урок, её\u{0301}"), "мой урок, её");
        assert_eq!(normalize_query("зе\u{0308}леная за\u{0301}пись"), "зёленая запись");
        assert_eq!(normalize_query("ＺＯＯＭ не работает"), "ZOOM не работает");
    }

    #[test]
    fn removes_emoji_and_decorative_symbols() {
        assert_eq!(normalize_query("не приходит код 😡😡"), "не приходит код");
        assert_eq!(normalize_query("👍🏻оплата✅картой ➡️ ошибка™"), "оплата картой ошибка");
        assert_eq!(normalize_query("🇷🇺 где запись?"), "где запись?");
    }

    #[test]
    fn removes_links_and_addresses() {
        assert_eq!(
            normalize_query("причины Правилhttps://rutube.ru/info/taboo_agreement/ по которым удаляются ролики?"),
            "причины Правил по которым удаляются ролики?"
        );
        assert_eq!(
            normalize_query("как поменять адрес, чтобы было так https://rutube.ru/vasya_007?"),
            "как поменять адрес, чтобы было так ?"
        );
        assert_eq!(normalize_query("смотрите studio.rutube.ru/playlists.Не могу войти"), "смотрите . Не могу войти");
        assert_eq!(normalize_query("пишу с ivan.petrov+1@mail.ru, не приходит письмо"), "пишу с , не приходит письмо");
        assert_eq!(normalize_query("www.example.com/a?b=1 не открывается"), "не открывается");
    }

    #[test]
    fn a_message_of_only_what_would_be_removed_stays_whole() {
        assert_eq!(normalize_query("Здравствуйте!"), "Здравствуйте!");
        assert_eq!(normalize_query("Добрый день,  спасибо заранее"), "Добрый день, спасибо заранее");
        assert_eq!(normalize_query("https://rutube.ru/video/123/"), "https://rutube.ru/video/123/");
        assert_eq!(normalize_query("\u{200B}👍"), "👍");
        assert_eq!(normalize_query(""), "");
    }

    #[test]
    fn removes_greetings_and_thanks_around_the_question() {
        assert_eq!(
            normalize_query("Здравствуйте! Подскажите, пожалуйста, как оплатить картой?"),
            "как оплатить картой?"
        );
        assert_eq!(normalize_query("Доброго времени суток. Где запись урока? Заранее спасибо!"), "Где запись урока?");
        assert_eq!(normalize_query("добрый вечер, как отменить подписку, спасибо"), "как отменить подписку");
        assert_eq!(normalize_query("Hi! How do I cancel? Thanks in advance"), "How do I cancel?");
        assert_eq!(normalize_query("Привет, привет. Нужна запись"), "Нужна запись");
        assert_eq!(normalize_query("Спасибо! А на год?"), "А на год?");
        assert_eq!(
            normalize_query("«Требуется информация» для монетизации? Спасибо за помощь."),
            "«Требуется информация» для монетизации?"
        );
    }

    #[test]
    fn removes_signatures() {
        assert_eq!(normalize_query("Как перенести видео? С Уважением, Максим"), "Как перенести видео?");
        assert_eq!(
            normalize_query("можно загружать видео? Отправлено с Студия RUTUBE на Android"),
            "можно загружать видео?"
        );
        assert_eq!(
            normalize_query("с уважением относятся ли модераторы к авторам и что им за это будет"),
            "с уважением относятся ли модераторы к авторам и что им за это будет"
        );
    }

    #[test]
    fn keeps_greeting_words_inside_the_question() {
        assert_eq!(normalize_query("как сказать ученику спасибо за урок"), "как сказать ученику спасибо за урок");
        assert_eq!(normalize_query("урок в добрый день недели"), "урок в добрый день недели");
    }

    #[test]
    fn keeps_negations() {
        assert_eq!(normalize_query("Здравствуйте, не приходит код, спасибо"), "не приходит код");
        assert_eq!(normalize_query("Добрый день! Нет звука в зуме"), "Нет звука в зуме");
        assert_eq!(normalize_query("Hello, payment does not work. Thanks"), "payment does not work.");
        assert_eq!(normalize_query("пожалуйста не списывайте деньги"), "не списывайте деньги");
    }

    #[test]
    fn a_long_story_is_kept_whole() {
        let story =
            "Здравствуйте, у меня два канала. В одном логин телефон. На основном хочу запустить трансляцию, так можно?";
        assert_eq!(normalize_query(story), &story["Здравствуйте, ".len()..]);
    }

    #[test]
    fn recognises_follow_ups() {
        for text in [
            "а на год?",
            "А для ученика?",
            "и сколько это стоит",
            "а если картой",
            "сколько это стоит?",
            "and for a year?",
        ] {
            assert!(is_follow_up(text), "{text}");
        }
        for text in [
            "как оплатить подписку на год?",
            "не приходит код",
            "Здравствуйте!",
            "",
            "а у меня не работает зум и не слышно звука совсем",
        ] {
            assert!(!is_follow_up(text), "{text}");
        }
    }
}
