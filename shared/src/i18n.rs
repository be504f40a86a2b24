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

impl Texts {
    /// A hand-over notice: `lead` and the honest wait at `now`.
    pub fn handover(&self, lead: &str, now: chrono::DateTime<chrono::Utc>) -> String {
        let wait = if crate::duty::on_duty(now) { self.wait_on_duty } else { self.wait_off_duty };
        format!("{lead} {wait}")
    }
}

/// The text of `code` in a table of `(code, text)` pairs, or the code itself.
pub fn lookup<'a>(table: &[(&'a str, &'a str)], code: &'a str) -> &'a str {
    table.iter().find(|(key, _)| *key == code).map_or(code, |(_, text)| text)
}

/// Replace `{name}` placeholders in a template.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The sentences of one language. Templates have `{name}` placeholders, filled with [`fill`].
pub struct Texts {
    pub actions: ActionTexts,
    pub operators: OperatorTexts,
    pub email: EmailTexts,
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
    /// Follows a hand-over while operators are on duty.
    pub wait_on_duty: &'static str,
    /// Follows a hand-over outside operators' hours.
    pub wait_off_duty: &'static str,
    /// Answers a greeting.
    pub greeting_reply: &'static str,
    /// Answers thanks.
    pub thanks_reply: &'static str,
    /// Said when processing a message failed for good.
    pub processing_failed: &'static str,
    /// Answers a voice message the bot cannot listen to (no transcription, or it failed).
    pub voice_please_type: &'static str,
    /// Posted when the user closes the conversation.
    pub conversation_closed: &'static str,
    /// Posted when an operator hands the conversation back to the AI.
    pub back_to_ai: &'static str,
}

/// What the support group reads in Telegram: the card of an escalated conversation, forwarded
/// messages and confirmations of operators' commands.
pub struct OperatorTexts {
    pub card_title: &'static str,
    pub card_title_again: &'static str,
    pub user_line: &'static str,
    pub visitor_line: &'static str,
    pub plan_line: &'static str,
    pub plan_unknown: &'static str,
    pub page_line: &'static str,
    pub reason_line: &'static str,
    /// Escalation reasons by their stored code.
    pub reasons: [(&'static str, &'static str); 5],
    pub summary_line: &'static str,
    pub actions_heading: &'static str,
    pub action_line: &'static str,
    pub actions_none: &'static str,
    pub conversation_line: &'static str,
    pub commands_hint: &'static str,
    pub transcript_heading: &'static str,
    pub transcript_empty: &'static str,
    /// Speaker labels by message role.
    pub roles: [(&'static str, &'static str); 4],
    pub role_labels: [(&'static str, &'static str); 3],
    pub button_close: &'static str,
    pub button_ai: &'static str,
    pub user_message: &'static str,
    pub closed: &'static str,
    pub closed_by_user: &'static str,
    pub already_closed: &'static str,
    pub handed_back: &'static str,
    pub already_with_ai: &'static str,
    pub rated: &'static str,
    pub note_saved: &'static str,
    pub note_empty: &'static str,
    pub console_reply: &'static str,
    /// What the web chat cannot show (stickers, video, locations…): `{kind}`, one of
    /// `media_kinds`.
    pub attachment_refused: &'static str,
    /// Names of the kinds of Telegram messages the web chat does not take.
    pub media_kinds: [(&'static str, &'static str); 8],
    /// An operator's file over what the Bot API lets a bot download (`{limit}` MB).
    pub attachment_too_large: &'static str,
    /// An operator's file Telegram would not hand out (getFile refused it).
    pub attachment_unavailable: &'static str,
    /// An operator's file whose content is none of the kinds the web chat shows.
    pub attachment_unsupported: &'static str,
    /// A user's file too large for the Bot API, posted as a link under its caption: `{file}`,
    /// `{size}`, `{url}`, `{days}`.
    pub user_file_link: &'static str,
    /// The same without a public address to link to: `{file}`, `{size}`.
    pub user_file_in_console: &'static str,
    /// The caption of a user's file: `{name}`, `{text}` (the message's text, when it fits).
    pub user_file_caption: &'static str,
    /// A user's voice message's transcript, posted under it: `{text}`.
    pub voice_transcript: &'static str,
    pub unknown_command: &'static str,
    pub not_an_operator: &'static str,
    pub topic_name_visitor: &'static str,
    /// How an operator posting anonymously (as the group) is named without a signature.
    pub anonymous_admin: &'static str,
    pub button_take: &'static str,
    /// `/take`: who has the conversation now.
    pub taken: &'static str,
    /// `/take` of a conversation another operator had.
    pub taken_over: &'static str,
    pub already_yours: &'static str,
    /// `/release`: the conversation is nobody's again.
    pub released: &'static str,
    pub release_not_yours: &'static str,
    pub release_nobody: &'static str,
    /// An operator answered a conversation another one has; the assignee stays.
    pub reply_by_other: &'static str,
    /// The answer to a button press that took the conversation.
    pub take_toast: &'static str,
    /// The SLA's first and second reminders: `{wait}` and `{who}`.
    pub sla_reminder: &'static str,
    pub sla_reminder_again: &'static str,
    /// Whom reminders address when nobody is named on duty.
    pub sla_everyone: &'static str,
    /// A wait under a minute (`{n}` seconds), in minutes, in hours and minutes.
    pub wait_seconds: &'static str,
    pub wait_minutes: &'static str,
    pub wait_hours: &'static str,
}

/// The email that carries an operator's reply to a user who asked for replies by email.
pub struct EmailTexts {
    pub subject: &'static str,
    pub greeting: &'static str,
    /// Precedes the reply's text; `{name}` is the operator's first name.
    pub intro: &'static str,
    /// The way back to the conversation; `{url}` is the page it was opened on.
    pub link: &'static str,
    /// Instead of [`EmailTexts::link`] when the page is not known.
    pub no_link: &'static str,
    /// Under the reply when it carries files; `{files}` is their names.
    pub files: &'static str,
    /// Why the email came, and that answering it reaches nobody.
    pub footer: &'static str,
}

/// What actions tell the user.
pub struct ActionTexts {
    pub zoom_ok: &'static str,
    pub zoom_basic_limit: &'static str,
    pub zoom_token_expired: &'static str,
    pub zoom_not_connected: &'static str,
    pub zoom_last_error: &'static str,
    pub subscription_none: &'static str,
    pub subscription_status: &'static str,
    pub subscription_states: [(&'static str, &'static str); 4],
    pub auto_renewal_on: &'static str,
    pub auto_renewal_off: &'static str,
    pub last_payment_ok: &'static str,
    pub last_payment_failed: &'static str,
    pub recordings_none: &'static str,
    pub recordings_heading: &'static str,
    pub recording_states: [(&'static str, &'static str); 4],
    pub lesson_line: &'static str,
    pub lesson_not_found: &'static str,
    pub lesson_none_next: &'static str,
    pub lesson_none_last: &'static str,
    pub lesson_details: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub system_ok: &'static str,
    pub system_problems: &'static str,
    /// Problems the system check names, joined into `system_problems`.
    pub status_database_down: &'static str,
    pub status_queue_delayed: &'static str,
    pub status_llm_failing: &'static str,
    pub status_telegram_delayed: &'static str,
    /// The bot was kicked from the support group: posts wait.
    pub status_telegram_stopped: &'static str,

    pub status_platform_failing: &'static str,
    pub status_platform_down: &'static str,
    /// How a lesson's start is shown (chrono format, Moscow time).
    pub lesson_time_format: &'static str,
    pub needs_sign_in: &'static str,
    pub unavailable: &'static str,
    pub platform_down: &'static str,
    pub platform_malformed: &'static str,
    pub offer_escalation: &'static str,
}

static RU: Texts = Texts {
    operators: OperatorTexts {
        card_title: "🆘 Новое обращение в поддержку",
        card_title_again: "🔁 Повторное обращение в этом разговоре",
        user_line: "Пользователь: {name} ({role}), {email}",
        visitor_line: "Гость без входа в аккаунт",
        plan_line: "Тариф: {plan}",
        plan_unknown: "нет данных с платформы",
        page_line: "Страница: {page}",
        reason_line: "Причина: {reason}",
        reasons: [
            ("user_request", "пользователь попросил оператора"),
            ("no_answer", "бот не нашёл ответа после уточнений"),
            ("needs_human", "вопрос требует решения человека"),
            ("security", "подозрительный запрос — проверьте"),
            ("operator_joined", "оператор подключился сам"),
        ],
        summary_line: "Суть (по словам ИИ): {summary}",
        actions_heading: "Проверки, которые уже выполнил бот:",
        action_line: "• {name} — {status}: {result}",
        actions_none: "Проверки не запускались.",
        conversation_line: "Разговор: {id}",
        commands_hint: "Ответьте в этой теме — ответ увидит пользователь. Команды: /take — взять разговор себе, /release — отпустить, /close — закрыть, /ai — вернуть боту, /note текст — заметка для своих, /kb в ответ на свой ответ — черновик статьи, /kb запрос — поиск по базе знаний.",
        transcript_heading: "Переписка ({part}/{total}):",
        transcript_empty: "Переписка пуста.",
        roles: [("user", "Пользователь"), ("assistant", "Бот"), ("operator", "Оператор"), ("system", "Система")],
        role_labels: [("user", "пользователь"), ("admin", "администратор"), ("visitor", "гость")],
        button_close: "✅ Закрыть",
        button_ai: "🤖 Вернуть боту",
        user_message: "👤 {name}: {text}",
        closed: "✅ Разговор закрыт, пользователя попросили оценить помощь.",
        closed_by_user: "Пользователь закрыл разговор.",
        already_closed: "Разговор уже закрыт — пользователь это сообщение не увидит.",
        handed_back: "🤖 Разговор передан боту.",
        already_with_ai: "Разговор и так у бота.",
        rated: "⭐ Оценка пользователя: {rating}/5. {comment}",
        note_saved: "📝 Заметка сохранена. Пользователь её не видит.",
        note_empty: "Напишите текст заметки после команды: /note текст.",
        console_reply: "💬 {name} ответил(а) из консоли: {text}",
        attachment_refused: "Такое ({kind}) в чат пользователя не передаётся: можно отправить текст, фото, PDF, текстовый файл или голосовое сообщение.",
        media_kinds: [
            ("sticker", "стикер"),
            ("video", "видео"),
            ("video_note", "видеосообщение"),
            ("animation", "GIF-анимация"),
            ("location", "геопозиция"),
            ("contact", "контакт"),
            ("poll", "опрос"),
            ("other", "сообщение такого типа"),
        ],
        attachment_too_large: "Файл больше {limit} МБ — бот не может его скачать. Пришлите файл поменьше или ссылку на него.",
        attachment_unavailable: "Не получилось скачать файл из Telegram — пользователь его не увидел. Пришлите его ещё раз.",
        attachment_unsupported: "Этот файл не передан пользователю: в чат можно отправить фото (PNG, JPEG, WebP), PDF, текстовый файл или голосовое сообщение.",
        user_file_link: "📎 {file} ({size}) — файл больше, чем принимает Telegram. Скачать (ссылка действует {days} дн.): {url}",
        user_file_in_console: "📎 {file} ({size}) — файл больше, чем принимает Telegram; откройте его в консоли, в переписке.",
        user_file_caption: "👤 {name}: {text}",
        voice_transcript: "🎙 Расшифровка: {text}",
        unknown_command: "Неизвестная команда. Доступно: /take — взять, /release — отпустить, /close — закрыть, /ai — вернуть боту, /note текст — заметка, /kb — черновик статьи или поиск по базе знаний.",
        not_an_operator: "Эта кнопка только для операторов поддержки.",
        topic_name_visitor: "Гость",
        anonymous_admin: "Администратор",
        button_take: "🙋 Взять",
        taken: "🙋 Разговор ведёт {name}.",
        taken_over: "🙋 Разговор ведёт {name} (до этого — {previous}).",
        already_yours: "Разговор уже ведёте вы.",
        released: "👐 {name} отпустил(а) разговор — его может взять любой оператор: /take.",
        release_not_yours: "Разговор ведёт {name}: отпустить его может только он(а). Чтобы забрать себе — /take.",
        release_nobody: "Разговор ни за кем не закреплён.",
        reply_by_other: "ℹ️ Пользователю ответил(а) {name}; разговор по-прежнему ведёт {assignee}.",
        take_toast: "Разговор ваш.",
        sla_reminder: "⏰ Пользователь ждёт ответа оператора уже {wait}. {who}, ответьте, пожалуйста, или возьмите разговор: /take.",
        sla_reminder_again: "⏰ Второе напоминание: пользователь ждёт уже {wait}, ответа всё ещё нет. {who}!",
        sla_everyone: "Операторы",
        wait_seconds: "{n} с",
        wait_minutes: "{n} мин",
        wait_hours: "{h} ч {m} мин",
    },
    email: EmailTexts {
        subject: "Ответ поддержки Lectio",
        greeting: "Здравствуйте!",
        intro: "{name} из поддержки Lectio ответил(а) на ваше обращение:",
        link: "Продолжить разговор: {url}",
        no_link: "Ответ есть и в чате поддержки на сайте Lectio.",
        files: "К ответу приложены файлы: {files}. Открыть их можно в чате поддержки.",
        footer: "Вы получили это письмо, потому что попросили присылать ответы операторов на почту. \
Ответ на письмо до оператора не дойдёт — пишите, пожалуйста, в чате поддержки.",
    },
    actions: ActionTexts {
        zoom_ok: "Zoom подключён к Lectio, доступ действует. Лицензия: {licence}.",
        zoom_basic_limit: "На бесплатной лицензии Basic встречи ограничены {minutes} минутами — для длинных уроков нужна лицензия Pro.",
        zoom_token_expired: "Zoom подключён, но доступ к нему истёк. Переподключите аккаунт: **Настройки → Интеграции → Zoom** → «Переподключить».",
        zoom_not_connected: "Zoom не подключён к Lectio. Подключите его в **Настройки → Интеграции → Zoom** — без этого уроки не смогут начаться.",
        zoom_last_error: "Последняя ошибка: {error}",
        subscription_none: "У вас нет подписки Lectio.",
        subscription_status: "Ваш тариф — «{plan}», статус: {status}. Оплачено до {paid_until}. {renewal}",
        subscription_states: [
            ("active", "активна"),
            ("past_due", "платёж просрочен"),
            ("cancelled", "отменена"),
            ("trial", "пробный период"),
        ],
        auto_renewal_on: "Автопродление включено.",
        auto_renewal_off: "Автопродление выключено.",
        last_payment_ok: "Последний платёж {amount} ₽ {date} прошёл успешно.",
        last_payment_failed: "Последний платёж {amount} ₽ {date} не прошёл: {reason}. Проверьте карту в **Настройки → Подписка и оплата** или оплатите другим способом.",
        recordings_none: "Не нашёл ваших уроков за этот период.",
        recordings_heading: "Записи ваших последних уроков:",
        recording_states: [
            ("ready", "запись готова: {url}"),
            ("processing", "запись обрабатывается — обычно это 15–30 минут, иногда до 2 часов"),
            ("failed", "запись не удалась при обработке — мы можем передать это оператору"),
            ("missing", "записи нет (урок не проводился, был короче 5 минут или запись была выключена)"),
        ],
        lesson_line: "- {title}, {when}: {state}",
        lesson_not_found: "Не нашёл такого урока среди ваших уроков.",
        lesson_none_next: "У вас нет запланированных уроков.",
        lesson_none_last: "У вас ещё не было уроков.",
        lesson_details: "Урок «{title}» {when}. Участники: {participants}. Встреча в Zoom создана: {meeting}. Урок начался: {started}. Запись: {recording}.",
        yes: "да",
        no: "нет",
        system_ok: "Lectio работает штатно: все сервисы отвечают.",
        system_problems: "Сейчас есть проблемы: {problems}. Мы уже знаем о них.",
        status_database_down: "база данных Concierge недоступна",
        status_queue_delayed: "очередь {queue} задерживается",
        status_llm_failing: "языковая модель не отвечает, отвечает встроенный помощник",
        status_telegram_delayed: "сообщения операторам в Telegram задерживаются",
        status_telegram_stopped: "бота удалили из группы поддержки в Telegram, сообщения операторам ждут его возвращения",

        status_platform_failing: "платформа сообщает о сбое",
        status_platform_down: "платформа Lectio не отвечает",
        lesson_time_format: "%d.%m.%Y %H:%M МСК",
        needs_sign_in: "Чтобы проверить это, войдите в свой аккаунт Lectio и откройте чат снова.",
        unavailable: "Эта проверка сейчас недоступна.",
        platform_down: "Не удалось получить данные с платформы: сервис сейчас не отвечает. Попробуйте ещё раз через несколько минут.",
        platform_malformed: "Платформа вернула неожиданный ответ, и проверить это автоматически не получилось.",
        offer_escalation: "Если это мешает вам, напишите «позовите оператора» — подключим человека.",
    },
    answer_intro: "Вот что говорится об этом в справке Lectio:",
    sources_heading: "Источник",
    clarify_generic: "Уточните, пожалуйста, вопрос: что именно вы пытаетесь сделать и что происходит? \
Например: «не приходит чек после оплаты», «нет звука на уроке в Zoom», «где найти запись вчерашнего урока».",
    clarify_did_you_mean: "Я не уверен, что правильно понял вопрос. Возможно, речь об одном из этих разделов справки:",
    clarify_tail: "Опишите, пожалуйста, подробнее, что у вас происходит, — и я подскажу точнее.",
    escalated_to_human: "Передаю разговор оператору поддержки.",
    escalated_after_clarify: "Похоже, в справке нет готового ответа на ваш вопрос. Передаю разговор оператору поддержки.",
    wait_on_duty: "Операторы сейчас на связи и обычно отвечают в течение 15 минут. Ответ появится здесь, в этом чате.",
    wait_off_duty: "Операторы работают ежедневно с 9:00 до 21:00 по Москве, поэтому ответ придёт утром. \
Он появится здесь, в этом чате, даже если вы закроете страницу.",
    greeting_reply: "Здравствуйте! Я помощник Lectio. Спросите меня об оплате и подписке, подключении Zoom, \
записях уроков, расписании или входе в аккаунт.",
    thanks_reply: "Пожалуйста! Если появятся ещё вопросы — пишите.",
    processing_failed: "Не получилось обработать сообщение из-за технической ошибки. Мы уже разбираемся. \
Попробуйте написать ещё раз чуть позже или попросите позвать оператора.",
    voice_please_type: "К сожалению, я пока не умею слушать голосовые сообщения. Напишите, пожалуйста, вопрос текстом — \
или попросите позвать оператора.",
    conversation_closed: "Разговор закрыт. Спасибо, что обратились в поддержку Lectio! Оцените, пожалуйста, помощь от 1 до 5.",
    back_to_ai: "Оператор передал разговор обратно помощнику Lectio. Задайте вопрос — я отвечу.",
};

/// What operators read in Telegram about the knowledge base: drafts made from their answers
/// (`/kb` in reply to one, or the button under a console reply) and `/kb query` searches.
pub struct KnowledgeTexts {
    /// The button under a reply written in the console.
    pub button_draft: &'static str,
    /// The toast a press of that button shows.
    pub draft_pressed: &'static str,
    pub draft_ready: &'static str,
    pub draft_exists: &'static str,
    /// Draft statuses by their stored code.
    pub draft_statuses: [(&'static str, &'static str); 5],
    pub draft_published: &'static str,
    /// `/kb` with no query, not in reply to an answer.
    pub draft_usage: &'static str,
    /// `/kb` in reply to somebody else's message.
    pub draft_not_yours: &'static str,
    pub search_heading: &'static str,
    pub search_hit: &'static str,
    pub search_empty: &'static str,
}

static RU_KNOWLEDGE: KnowledgeTexts = KnowledgeTexts {
    button_draft: "📚 В базу знаний",
    draft_pressed: "Готовлю черновик статьи из этого ответа.",
    draft_ready: "📚 Черновик статьи «{title}» готов. Администратор проверит и опубликует его в консоли: База знаний → Черновики.",
    draft_exists: "📚 Черновик по этому ответу уже есть: «{title}» — {status}.",
    draft_statuses: [
        ("writing", "пишется"),
        ("ready", "ждёт проверки"),
        ("publishing", "публикуется"),
        ("approved", "опубликован"),
        ("discarded", "отклонён"),
    ],
    draft_published: "📚 Статья «{title}» опубликована в базе знаний ({path}): бот теперь отвечает по ней.",
    draft_usage: "Ответьте командой /kb на свой ответ пользователю — из вопроса и ответа получится черновик статьи для базы знаний. Чтобы найти ответ в базе, напишите /kb и запрос.",
    draft_not_yours: "Черновик делается из вашего собственного ответа: ответьте командой /kb на своё сообщение.",
    search_heading: "📚 База знаний по запросу «{query}»:",
    search_hit: "{n}. {title} — {heading}\n{excerpt}\n{path}",
    search_empty: "📚 В базе знаний ничего не нашлось по запросу «{query}».",
};

impl Locale {
    /// What operators read about the knowledge base in this locale.
    pub fn knowledge_texts(self) -> &'static KnowledgeTexts {
        match self {
            Locale::Ru => &RU_KNOWLEDGE,
        }
    }
}
