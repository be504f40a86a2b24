//! Content words compared loosely: lower case, punctuation gone, function words dropped, and
//! simple endings ignored (two stems match when one begins the other), enough to tell whether
//! two Russian or English sentences say the same things.

/// Words that carry no content of their own.
const FUNCTION_WORDS: &[&str] = &[
    "и",
    "в",
    "во",
    "на",
    "с",
    "со",
    "к",
    "ко",
    "по",
    "за",
    "из",
    "от",
    "до",
    "для",
    "о",
    "об",
    "у",
    "а",
    "но",
    "или",
    "ли",
    "же",
    "бы",
    "не",
    "ни",
    "то",
    "что",
    "как",
    "это",
    "так",
    "вы",
    "вас",
    "вам",
    "ваш",
    "ваша",
    "ваше",
    "ваши",
    "вашей",
    "вашего",
    "я",
    "мне",
    "меня",
    "мой",
    "моя",
    "мое",
    "мои",
    "ты",
    "он",
    "она",
    "они",
    "мы",
    "какой",
    "какая",
    "какое",
    "какие",
    "какую",
    "каким",
    "каком",
    "который",
    "которая",
    "которые",
    "пожалуйста",
    "уточните",
    "подскажите",
    "скажите",
    "можете",
    "именно",
    "где",
    "когда",
    "почему",
    "зачем",
    "есть",
    "был",
    "была",
    "было",
    "были",
    "ещё",
    "еще",
    "уже",
    "имеете",
    "виду",
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "for",
    "and",
    "or",
    "is",
    "are",
    "do",
    "does",
    "you",
    "your",
    "i",
    "my",
    "me",
    "it",
    "what",
    "which",
    "how",
    "please",
    "can",
    "could",
    "would",
];

/// The stems of the content words of `text`, in order.
pub(super) fn stems(text: &str) -> Vec<String> {
    concierge_shared::actions::split_words(text)
        .into_iter()
        .filter(|w| w.chars().count() > 2 && !FUNCTION_WORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// A word without a simple ending: at most two characters off, never shorter than four.
pub(super) fn stem(word: &str) -> String {
    let length = word.chars().count();
    word.chars().take(length.saturating_sub(2).max(4)).collect()
}

/// Whether two stems are the same word with different endings.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// How many of `these` stems are among `those`.
pub(super) fn shared(these: &[String], those: &[String]) -> usize {
    these.iter().filter(|a| those.iter().any(|b| same(a, b))).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_and_function_words_do_not_matter() {
        assert_eq!(
            stems("Картой зарубежного банка можно ли оплатить?"),
            ["карт", "зарубежно", "банк", "можн", "оплати"]
        );
        let question = stems("Картой зарубежного банка можно ли оплатить?");
        let message = stems("картой зарубежного банка можно заплатить?");
        assert_eq!(shared(&question, &message), 4);
        assert!(same("подписк", "подписку"));
    }
}
