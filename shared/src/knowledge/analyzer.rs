//! The one text analyzer for Russian and English, used alike for indexing and for queries.
//!
//! Split on non-alphanumerics, lowercase, fold ё to е, drop stop words, then the Russian and
//! the English Snowball stemmers (each leaves the other alphabet alone). The colloquial
//! synonyms users type are listed here too, analysed like text by the index.
//!
//! Invariant: documents and queries go through exactly the same analysis, so a term found in
//! a query is comparable with the indexed vocabulary.

use std::collections::HashSet;

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};

/// The name the analyzer is registered under in the index.
pub(super) const ANALYZER: &str = "lectio_ru_en";

/// Words too common to tell documents apart. Negations stay: "нет звука" is not "звук".
const STOP_WORDS: &[&str] = &[
    "и",
    "в",
    "во",
    "на",
    "с",
    "со",
    "к",
    "ко",
    "по",
    "о",
    "об",
    "от",
    "до",
    "из",
    "за",
    "у",
    "для",
    "а",
    "но",
    "или",
    "ли",
    "же",
    "бы",
    "то",
    "это",
    "этот",
    "эта",
    "эти",
    "что",
    "чтобы",
    "как",
    "так",
    "там",
    "тут",
    "я",
    "мы",
    "вы",
    "ты",
    "он",
    "она",
    "оно",
    "они",
    "мне",
    "меня",
    "мой",
    "моя",
    "мои",
    "моё",
    "мое",
    "мою",
    "моего",
    "моей",
    "моих",
    "нас",
    "наш",
    "вас",
    "ваш",
    "ваша",
    "ваши",
    "вам",
    "ему",
    "его",
    "её",
    "ее",
    "их",
    "им",
    "при",
    "ещё",
    "еще",
    "уже",
    "только",
    "вот",
    "какой",
    "какая",
    "какие",
    "где",
    "когда",
    "можно",
    "есть",
    "быть",
    "был",
    "была",
    "было",
    "были",
    "будет",
    "пожалуйста",
    "подскажите",
    "скажите",
    "здравствуйте",
    "привет",
    "добрый",
    "день",
    "вечер",
    "спасибо",
    "всё",
    "все",
    "очень",
    "просто",
    "тоже",
    "почему",
    "зачем",
    "сколько",
    "ну",
    "вообще",
    "типа",
    "короче",
    "блин",
    "кстати",
    "сейчас",
    "нужно",
    "надо",
    "хочу",
    "могу",
    "можете",
    "помогите",
    "help",
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "but",
    "by",
    "for",
    "if",
    "in",
    "into",
    "is",
    "it",
    "of",
    "on",
    "or",
    "such",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "will",
    "with",
    "how",
    "what",
    "where",
    "my",
    "i",
    "do",
    "does",
    "can",
    "please",
];

/// Words users type for what the documents call otherwise. Both sides are analysed like text.
pub(super) const SYNONYMS: &[(&str, &str)] = &[
    ("зум", "zoom"),
    ("зуме", "zoom"),
    ("зума", "zoom"),
    ("видос", "видео запись"),
    ("видео", "запись"),
    ("созвон", "урок встреча"),
    ("звонок", "урок встреча"),
    ("занятие", "урок"),
    ("препод", "репетитор"),
    ("преподаватель", "репетитор"),
    ("учитель", "репетитор"),
    ("училка", "репетитор"),
    ("ученик", "студент"),
    ("бабки", "деньги оплата"),
    ("деньги", "оплата платеж"),
    ("списали", "списание оплата"),
    ("сняли", "списание"),
    ("карта", "карточка"),
    ("тариф", "подписка план"),
    ("план", "тариф"),
    ("пароль", "password"),
    ("логин", "вход"),
    ("залогиниться", "войти"),
    ("комп", "компьютер"),
    ("ноут", "компьютер ноутбук"),
    ("инет", "интернет"),
    ("микро", "микрофон"),
    ("камера", "видео"),
    ("мобила", "телефон"),
    ("смартфон", "телефон"),
    ("прилага", "приложение"),
    ("домашка", "домашнее задание"),
    ("дз", "домашнее задание"),
    ("телега", "telegram"),
    ("телеграм", "telegram"),
    ("тг", "telegram"),
    ("гугл", "google"),
    ("календарь", "calendar"),
    ("чек", "квитанция"),
    ("возврат", "вернуть"),
    ("вернуть", "возврат"),
    ("удалить", "удаление"),
    ("расписание", "календарь"),
];

pub(super) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(STOP_WORDS.iter().map(|w| w.to_string())))
        .filter(Stemmer::new(Language::Russian))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The words of `text`, lowercased, ё folded to е and stemmed like indexed text, stop words
/// kept: how trigger phrases are compared with what users type.
pub fn stems(text: &str) -> Vec<String> {
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::Russian))
        .filter(Stemmer::new(Language::English))
        .build();
    let folded = fold(text);
    let mut stream = analyzer.token_stream(&folded);
    let mut stems = Vec::new();
    while stream.advance() {
        stems.push(stream.token().text.clone());
    }
    stems
}

/// The distinct terms of `text`, in order of first occurrence.
pub(super) fn analyze_distinct(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let folded = fold(text);
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    let mut stream = analyzer.token_stream(&folded);
    while stream.advance() {
        let term = &stream.token().text;
        if seen.insert(term.clone()) {
            terms.push(term.clone());
        }
    }
    terms
}

/// ё and е are one letter to searchers.
pub(super) fn fold(text: &str) -> String {
    text.replace('ё', "е").replace('Ё', "Е")
}

/// The English stemmer alone, for [`sound_key`].
pub(super) fn english_stemmer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(Stemmer::new(Language::English)).build()
}

/// A term's sound in Latin letters, so that a word written in the other alphabet is found:
/// "андроид" and "android", "зум" and "zoom", "ютуб" and "youtube", "виндовс" and "windows",
/// "смартфон" and "smartphone". Cyrillic letters are transliterated and the result stemmed like
/// English; then spellings that sound alike are folded together (ph/f, w/v, oo/ou/u, ee/ea/i,
/// y/i, doubled letters, a final e). `term` is an analysed term. `None` for a term with digits
/// or letters of other alphabets, or a key too short to tell words apart.
pub(super) fn sound_key(term: &str, english: &mut TextAnalyzer) -> Option<String> {
    const MIN_KEY: usize = 3;
    let mut latin = String::with_capacity(term.len() + 4);
    let mut cyrillic = false;
    for c in term.chars() {
        match c {
            'a'..='z' => latin.push(c),
            'а'..='я' | 'ё' => {
                cyrillic = true;
                // Brand names write х as h (хелп, help) and щ as sch, not kh and shch.
                latin.push_str(match c {
                    'х' => "h",
                    'щ' => "sch",
                    c => latin_letters(c).unwrap_or_default(),
                });
            }
            _ => return None,
        }
    }
    if cyrillic {
        let mut stream = english.token_stream(&latin);
        if stream.advance() {
            let stemmed = stream.token().text.clone();
            drop(stream);
            latin = stemmed;
        }
    }
    let mut folded = latin;
    for (from, to) in [("ph", "f"), ("ck", "k"), ("qu", "kv"), ("x", "ks"), ("w", "v"), ("oo", "u"), ("ou", "u")] {
        folded = folded.replace(from, to);
    }
    for (from, to) in [("ee", "i"), ("ea", "i"), ("y", "i")] {
        folded = folded.replace(from, to);
    }
    let mut key = String::with_capacity(folded.len());
    for c in folded.chars() {
        if !key.ends_with(c) {
            key.push(c);
        }
    }
    if key.len() > MIN_KEY + 1 && key.ends_with('e') {
        key.pop();
    }
    (key.len() >= MIN_KEY).then_some(key)
}

/// A Russian letter in Latin ones (`None` for anything else): how file names are made of titles,
/// and, with х as h and щ as sch, how brand names are heard.
pub(super) fn latin_letters(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' => "g",
        'д' => "d",
        'е' | 'ё' | 'э' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' => "i",
        'й' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ы' => "y",
        'ю' => "yu",
        'я' => "ya",
        'ъ' | 'ь' => "",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(word: &str) -> Option<String> {
        let term = analyze_distinct(&mut analyzer(), word).pop().expect("a term");
        sound_key(&term, &mut english_stemmer())
    }

    #[test]
    fn a_word_sounds_the_same_in_either_alphabet() {
        for (russian, english) in [
            ("андроида", "Android"),
            ("зум", "Zoom"),
            ("ютуб", "YouTube"),
            ("гугл", "Google"),
            ("виндовс", "Windows"),
            ("смартфоне", "smartphone"),
            ("стрим", "stream"),
            ("шортсы", "Shorts"),
            ("телеграме", "Telegram"),
            ("Аndroid", "Android"),
        ] {
            assert!(key(russian).is_some(), "{russian}");
            assert_eq!(key(russian), key(english), "{russian} / {english}");
        }
    }

    #[test]
    fn words_that_only_look_alike_keep_apart() {
        for (russian, english) in [("делать", "delay"), ("формат", "form"), ("студии", "studio")] {
            assert_ne!(key(russian), key(english), "{russian} / {english}");
        }
        assert_eq!(key("mp4"), None);
        assert_eq!(key("тв"), None);
    }
}
