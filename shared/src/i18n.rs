//! User-facing text. Every sentence Concierge says to a user lives here, keyed by locale, so
//! that adding a language means adding one `Texts` value and one `Locale` variant.

use serde::{Deserialize, Serialize};

/// A language the bot can speak. The conversation stores it; Russian is the platform's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    Ru,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Ru => "ru",
        }
    }

    /// The locale for a stored code; unknown codes fall back to the default.
    pub fn from_code(code: &str) -> Self {
        match code {
            "ru" => Locale::Ru,
            _ => Locale::default(),
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Locale::Ru => &RU,
        }
    }
}

/// The sentences of one language. `{}`-free: callers compose with the pieces.
pub struct Texts {
    /// Opens an answer built from a knowledge-base passage.
    pub answer_intro: &'static str,
    /// Heading of the list of documents an answer is based on.
    pub sources_heading: &'static str,
    /// Asks the user to say more when nothing matched well enough.
    pub clarify_generic: &'static str,
    /// Precedes the titles of near matches in a clarifying question.
    pub clarify_did_you_mean: &'static str,
    /// Closes a clarifying question that lists near matches.
    pub clarify_tail: &'static str,
    /// Said when the conversation is handed to a human.
    pub escalated_to_human: &'static str,
    /// Said when the conversation is handed to a human after failed clarifications.
    pub escalated_after_clarify: &'static str,
    /// Answers a greeting.
    pub greeting_reply: &'static str,
    /// Answers thanks.
    pub thanks_reply: &'static str,
    /// Said when processing a message failed for good.
    pub processing_failed: &'static str,
    /// Posted when the user closes the conversation.
    pub conversation_closed: &'static str,
}

static RU: Texts = Texts {
    answer_intro: "Вот что говорится об этом в справке Lectio:",
    sources_heading: "Источник",
    clarify_generic: "Уточните, пожалуйста, вопрос: что именно вы пытаетесь сделать и что происходит? \
Например: «не приходит чек после оплаты», «нет звука на уроке в Zoom», «где найти запись вчерашнего урока».",
    clarify_did_you_mean: "Я не уверен, что правильно понял вопрос. Возможно, речь об одном из этих разделов справки:",
    clarify_tail: "Опишите, пожалуйста, подробнее, что у вас происходит, — и я подскажу точнее.",
    escalated_to_human: "Передаю разговор оператору поддержки. Операторы отвечают ежедневно с 9:00 до 21:00 по Москве, \
обычно в течение 15 минут; ночью ответ придёт утром. Ответ появится здесь, в этом чате.",
    escalated_after_clarify: "Похоже, в справке нет готового ответа на ваш вопрос. Передаю разговор оператору поддержки: \
операторы отвечают ежедневно с 9:00 до 21:00 по Москве, обычно в течение 15 минут. Ответ появится здесь, в этом чате.",
    greeting_reply: "Здравствуйте! Я помощник Lectio. Спросите меня об оплате и подписке, подключении Zoom, \
записях уроков, расписании или входе в аккаунт.",
    thanks_reply: "Пожалуйста! Если появятся ещё вопросы — пишите.",
    processing_failed: "Не получилось обработать сообщение из-за технической ошибки. Мы уже разбираемся. \
Попробуйте написать ещё раз чуть позже или попросите позвать оператора.",
    conversation_closed: "Разговор закрыт. Спасибо, что обратились в поддержку Lectio!",
};
