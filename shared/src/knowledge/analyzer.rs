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
