/*
 * Lectio Concierge: the embeddable support chat widget.
 *
 *   <script src="https://HOST/widget.js" data-api="https://HOST/api/concierge"
 *           data-token="<platform JWT or empty>" data-lang="ru" async></script>
 *
 * The script starts by itself when its tag has a `data-api`, `data-token` or `data-auto`
 * attribute. Otherwise the host page starts it:
 *
 *   LectioConcierge.init({ api, token, lang, transport });  // once; a second call is ignored
 *
 * `transport` (`data-transport`): "auto" (Server-Sent Events, polling when they keep failing)
 * or "polling", for sites behind a proxy known to break event streams.
 *   LectioConcierge.open(); LectioConcierge.close();
 *   LectioConcierge.destroy();                   // removes the widget, its streams and timers
 *
 * Everything lives in <div id="lectio-concierge"> under an open shadow root, so the host
 * page's CSS and the widget's never meet. Plain ES2019, no dependencies, no build step.
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------------------
  // Markdown: a deliberately small subset. The whole text is HTML-escaped first; the only
  // markup in the result is what the rules below add, and links are http(s) only. Tested with
  // `node --test web/test/` (cargo test runs it).

  const HTML_ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  // \u0000 marks a stashed piece of markup (see renderInline): never part of a URL.
  const SAFE_URL = /^https?:\/\/[^\s\u0000]+$/i;
  // A URL ends at white space or at an escaped character that cannot be part of it.
  const BARE_URL = /https?:\/\/(?:(?!&(?:lt|gt|quot|#39);)[^\s\u0000])+/gi;
  // [label](url) and ![alt](url); the URL may hold one level of balanced parentheses.
  const LINK = /\[([^\]\n]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/g;
  const IMAGE = /!\[([^\]\n]*)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/g;
  const PLACEHOLDER = /\u0000(\d+)\u0000/g;
  // *em* and **strong**: the content holds no asterisk and neither starts nor ends with a
  // space; a single asterisk inside a word (2*3*4) stays one.
  const EMPHASIS = /(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g;
  const STRONG = /\*\*(?=[^\s*])([^*\n]*?[^\s*])\*\*/g;
  // A fence of three or more backticks (and an optional language) opens a code block; a
  // fence alone on its line closes it.
  const FENCE_OPEN = /^ {0,3}```+[^`]*$/;
  const FENCE_CLOSE = /^ {0,3}```+\s*$/;

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]);
  }

  function anchor(url, label) {
    return `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
  }

  function linkOrText(url, label) {
    return SAFE_URL.test(url) ? anchor(url, label) : label;
  }

  // Punctuation that ends a sentence is not part of the URL before it; a closing
  // parenthesis is, when the URL opened one.
  function splitTrailing(url) {
    let end = url.length;
    while (end > 0 && /[.,;:!?)]/.test(url[end - 1])) {
      const body = url.slice(0, end - 1);
      if (url[end - 1] === ')' && body.split('(').length > body.split(')').length) break;
      end -= 1;
    }
    return [url.slice(0, end), url.slice(end)];
  }

  // Emphasis inside strong text first, then strong, then emphasis around strong text. Neither
  // pattern's content holds an asterisk, so the tags always nest.
  function emphasis(escaped) {
    return escaped
      .replace(EMPHASIS, '$1<em>$2</em>')
      .replace(STRONG, '<strong>$1</strong>')
      .replace(EMPHASIS, '$1<em>$2</em>');
  }

  // Code spans, links and bare URLs become markup first and are set aside as \u0000<n>\u0000,
  // so that nothing inside them is read as emphasis or as another link.
  function renderInline(escaped) {
    const slots = [];
    const stash = (html) => `\u0000${slots.push(html) - 1}\u0000`;
    const unstash = (html) => html.replace(PLACEHOLDER, (match, index) => unstash(slots[Number(index)]));
    // A code span inside a link's URL makes it no link: the text stays as written.
    const link = (match, label, url) => (url.includes('\u0000') ? match : stash(linkOrText(url, emphasis(label))));
    const html = escaped
      .replace(/`([^`\n]+)`/g, (match, code) => stash(`<code>${code}</code>`))
      .replace(IMAGE, (match, alt, url) => link(match, alt || url, url))
      .replace(LINK, link)
      .replace(BARE_URL, (match) => {
        const [url, tail] = splitTrailing(match);
        return stash(anchor(url, url)) + tail;
      });
    return unstash(emphasis(html));
  }

  function renderList(list) {
    const start = list.tag === 'ol' && list.start !== 1 ? ` start="${list.start}"` : '';
    const items = list.items.map((item) => `<li>${renderInline(item)}</li>`).join('');
    return `<${list.tag}${start}>${items}</${list.tag}>`;
  }

  function renderMarkdown(text) {
    const lines = escapeHtml(
      String(text)
        .replace(/\u0000/g, '')
        .replace(/\r\n?/g, '\n')
    ).split('\n');
    const blocks = [];
    let paragraph = [];
    let list = null;
    let code = null;
    const endParagraph = () => {
      if (paragraph.length) blocks.push(`<p>${paragraph.map(renderInline).join('<br>')}</p>`);
      paragraph = [];
    };
    const endList = () => {
      if (list) blocks.push(renderList(list));
      list = null;
    };
    const endCode = () => {
      if (code) blocks.push(`<pre><code>${code.join('\n')}</code></pre>`);
      code = null;
    };

    lines.forEach((line) => {
      if (code) {
        if (FENCE_CLOSE.test(line)) endCode();
        else code.push(line);
        return;
      }
      if (FENCE_OPEN.test(line)) {
        endParagraph();
        endList();
        code = [];
        return;
      }
      const heading = /^ {0,3}#{1,3}\s+(.+?)\s*#*\s*$/.exec(line);
      const bullet = /^ {0,3}[-*]\s+(.*)$/.exec(line);
      const ordered = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/.exec(line);
      if (!line.trim()) {
        endParagraph();
        endList();
      } else if (heading) {
        endParagraph();
        endList();
        blocks.push(`<p><strong>${renderInline(heading[1])}</strong></p>`);
      } else if (bullet || ordered) {
        endParagraph();
        const tag = bullet ? 'ul' : 'ol';
        if (!list || list.tag !== tag) {
          endList();
          list = { tag, start: ordered ? Number(ordered[1]) : 1, items: [] };
        }
        list.items.push(bullet ? bullet[1] : ordered[2]);
      } else if (list && /^\s+\S/.test(line)) {
        list.items[list.items.length - 1] += ` ${line.trim()}`;
      } else {
        endList();
        paragraph.push(line);
      }
    });
    endParagraph();
    endList();
    // A block the text never closed runs to its end.
    endCode();
    return blocks.join('');
  }

  // Node's test runner loads this file for the renderer above (web/test/): it gets that and
  // nothing of the widget, which needs a browser.
  if (typeof window === 'undefined') {
    if (typeof module === 'object' && module && module.exports) module.exports = { renderMarkdown };
    return;
  }

  const SCRIPT = document.currentScript;

  const HOST_ID = 'lectio-concierge';
  const API_PATH = '/api/concierge';
  const STORAGE_PREFIX = 'lectio-concierge';
  const DEFAULT_LANG = 'ru';
  // How long "the operator is typing" lasts without a renewal (the console renews every 3 s).
  const OPERATOR_TYPING_MS = 7000;
  // An operator's typing notice this soon after one of their messages was sent before it.
  const LATE_TYPING_MS = 1500;
  // How long the assistant's dots and draft last without a typing or delta event: a reply
  // the worker dropped never arrives to end them.
  const ASSISTANT_TYPING_MS = 60000;
  const AUTO_INIT_ATTRIBUTES = ['data-api', 'data-token', 'data-auto'];

  const MAX_MESSAGE_CHARS = 4000;
  const COUNTER_FROM_CHARS = 3600;
  const MAX_COMMENT_CHARS = 2000;
  const MAX_PAGE_URL_CHARS = 2048;
  const MAX_PAGE_TITLE_CHARS = 300;

  const REQUEST_TIMEOUT_MS = 15000;
  const POLL_INTERVAL_MS = 2000;
  const POLL_PAGE_SIZE = 100;
  const MAX_HISTORY = 1000;
  const STREAM_RETRY_MS = 30000;
  const STREAM_MAX_FAILURES = 3;
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_MAX_MS = 30000;

  const NEAR_BOTTOM_PX = 80;
  const INPUT_MAX_HEIGHT_PX = 132;

  // Files a user may attach. The server decides by the content and stays the authority; these
  // checks only spare an upload it would refuse. The server writes its CONCIERGE_MAX_ATTACHMENT_MB
  // into the next line as it serves this script.
  const MAX_FILE_MB = 10;
  const MAX_FILE_BYTES = MAX_FILE_MB * 1024 * 1024;
  const MAX_FILES = 5;
  const FILE_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'application/pdf'];
  const FILE_EXTENSIONS = /\.(png|jpe?g|webp|pdf|txt|log|md|csv)$/i;
  const FILE_ACCEPT = 'image/png,image/jpeg,image/webp,application/pdf,text/plain,.txt,.log,.md,.csv';

  const ROLES = ['user', 'assistant', 'operator', 'system'];
  const STREAM_EVENTS = ['message', 'status', 'typing', 'delta', 'edit'];

  // Every text the widget shows. Add a language by adding one entry here.
  const STRINGS = {
    ru: {
      title: 'Поддержка Lectio',
      subtitleAi: 'Отвечает ассистент',
      subtitleHuman: 'Отвечает оператор',
      subtitleClosed: 'Разговор завершён',
      launcherOpen: 'Открыть чат поддержки',
      launcherOpenUnread: 'Открыть чат поддержки: есть новые сообщения',
      launcherClose: 'Закрыть чат поддержки',
      minimize: 'Свернуть чат',
      greeting:
        'Здравствуйте! Я помощник Lectio. Спросите про оплату, уроки, Zoom или записи — отвечу сразу, а если не смогу, позову оператора.',
      gone: 'Прежний разговор больше недоступен. Напишите, чтобы начать новый.',
      logLabel: 'Сообщения',
      you: 'Вы',
      assistant: 'Ассистент',
      operator: 'Оператор',
      operatorNamed: '{name}, оператор',
      edited: 'изменено',
      sources: 'Источники',
      suggestions: 'Уточните, пожалуйста',
      sending: 'Отправляется…',
      queued: 'Ждёт отправки',
      failed: 'Не отправлено. {reason}',
      dismiss: 'Убрать',
      typing: 'Ассистент печатает…',
      operatorTyping: '{name} печатает…',
      inputLabel: 'Ваше сообщение',
      placeholder: 'Напишите вопрос…',
      placeholderClosed: 'Разговор завершён',
      send: 'Отправить',
      escalate: 'Позвать оператора',
      emailOffer: 'Операторы сейчас не на связи, ответ придёт утром. Прислать его и на почту {address}?',
      emailOfferButton: 'Прислать на почту',
      emailEnabled: 'Ответ оператора придёт и на почту {address}.',
      emailCancel: 'Не присылать',
      end: 'Завершить',
      endPrompt: 'Завершить разговор?',
      endConfirm: 'Да, завершить',
      endCancel: 'Отмена',
      newConversation: 'Новый разговор',
      rateTitle: 'Оцените, пожалуйста, помощь',
      rateStar: 'Оценка {n} из 5',
      rateComment: 'Комментарий (необязательно)',
      rateSubmit: 'Отправить оценку',
      rateThanks: 'Спасибо за оценку!',
      rateUnavailable: 'Оценить разговор можно, только когда в нём есть ответ.',
      offline: 'Нет соединения — сообщения отправятся, когда связь вернётся',
      retry: 'Повторить',
      attach: 'Прикрепить файл',
      removeFile: 'Убрать {name}',
      dropHere: 'Отпустите, чтобы прикрепить',
      uploading: 'Загружается…',
      uploadFailed: 'Не загружено: {reason}',
      fileTooBig: 'Файл «{name}» больше {limit} МБ.',
      fileWrongType: 'Файл «{name}» не подходит: можно картинки (PNG, JPEG, WebP), PDF и текст.',
      tooManyFiles: 'В одном сообщении — не больше {n} файлов.',
      filesPending: 'Прикреплённые файлы',
      record: 'Записать голосовое сообщение',
      recording: 'Запись',
      recordCancel: 'Отменить запись',
      recordSend: 'Отправить запись',
      micDenied: 'Нет доступа к микрофону.',
      voiceMessage: 'Голосовое сообщение',
      transcript: 'Расшифровка',
      openImage: 'Открыть {name}',
      kb: '{n} КБ',
      mb: '{n} МБ',
      errors: {
        network: 'Нет связи с сервером.',
        server: 'Сервер временно недоступен.',
        generic: 'Не получилось. Попробуйте ещё раз.',
        unauthorized: 'Сессия истекла. Войдите на сайт заново.',
        conversation_closed: 'Разговор уже завершён.',
        empty_message: 'Сообщение пустое.',
        message_too_long: 'Сообщение длиннее 4000 символов.',
        already_rated: 'Разговор уже оценён.',
        nothing_to_rate: 'Оценить разговор можно, только когда в нём есть ответ.',
        email_not_configured: 'Отправка ответов на почту сейчас недоступна.',
        no_email: 'В вашем аккаунте нет адреса почты.',
        not_waiting_off_duty: 'Операторы на связи — ответ придёт здесь, в чате.',
        payload_too_large: 'Файл слишком большой.',
        unsupported_file: 'Такой файл не принимается: можно картинки (PNG, JPEG, WebP), PDF, текст и голосовые.',
        type_mismatch: 'Содержимое файла не совпадает с его типом.',
        empty_file: 'Файл пустой.',
        invalid_attachment: 'Файл уже отправлен или не найден.',
        too_many_attachments: 'В одном сообщении — не больше 5 файлов.',
      },
    },
    en: {
      title: 'Lectio support',
      subtitleAi: 'The assistant is answering',
      subtitleHuman: 'An operator is answering',
      subtitleClosed: 'Conversation ended',
      launcherOpen: 'Open support chat',
      launcherOpenUnread: 'Open support chat: new messages',
      launcherClose: 'Close support chat',
      minimize: 'Minimise chat',
      greeting:
        'Hello! I am the Lectio assistant. Ask about payments, lessons, Zoom or recordings — I will answer right away or call an operator.',
      gone: 'The previous conversation is no longer available. Write to start a new one.',
      logLabel: 'Messages',
      you: 'You',
      assistant: 'Assistant',
      operator: 'Operator',
      operatorNamed: '{name}, operator',
      edited: 'edited',
      sources: 'Sources',
      suggestions: 'Please choose',
      sending: 'Sending…',
      queued: 'Waiting to send',
      failed: 'Not sent. {reason}',
      dismiss: 'Dismiss',
      typing: 'The assistant is typing…',
      operatorTyping: '{name} is typing…',
      inputLabel: 'Your message',
      placeholder: 'Type your question…',
      placeholderClosed: 'Conversation ended',
      send: 'Send',
      escalate: 'Call an operator',
      emailOffer: 'Operators are away now; the answer will come in the morning. Also send it to {address}?',
      emailOfferButton: 'Email me the answer',
      emailEnabled: 'The operator’s answer will also be sent to {address}.',
      emailCancel: 'Do not email',
      end: 'End chat',
      endPrompt: 'End this conversation?',
      endConfirm: 'Yes, end it',
      endCancel: 'Cancel',
      newConversation: 'New conversation',
      rateTitle: 'Please rate the help you got',
      rateStar: 'Rating {n} of 5',
      rateComment: 'Comment (optional)',
      rateSubmit: 'Send rating',
      rateThanks: 'Thank you for your rating!',
      rateUnavailable: 'A conversation can be rated once it has an answer.',
      offline: 'No connection — messages will be sent when it is back',
      retry: 'Retry',
      attach: 'Attach a file',
      removeFile: 'Remove {name}',
      dropHere: 'Drop to attach',
      uploading: 'Uploading…',
      uploadFailed: 'Not uploaded: {reason}',
      fileTooBig: 'The file “{name}” is larger than {limit} MB.',
      fileWrongType: 'The file “{name}” cannot be sent: images (PNG, JPEG, WebP), PDF and text only.',
      tooManyFiles: 'At most {n} files in one message.',
      filesPending: 'Attached files',
      record: 'Record a voice message',
      recording: 'Recording',
      recordCancel: 'Cancel recording',
      recordSend: 'Send recording',
      micDenied: 'The microphone is not available.',
      voiceMessage: 'Voice message',
      transcript: 'Transcript',
      openImage: 'Open {name}',
      kb: '{n} KB',
      mb: '{n} MB',
      errors: {
        network: 'Cannot reach the server.',
        server: 'The server is temporarily unavailable.',
        generic: 'Something went wrong. Please try again.',
        unauthorized: 'Your session has expired. Please sign in again.',
        conversation_closed: 'The conversation has already ended.',
        empty_message: 'The message is empty.',
        message_too_long: 'The message is longer than 4000 characters.',
        already_rated: 'The conversation has already been rated.',
        nothing_to_rate: 'A conversation can be rated once it has an answer.',
        email_not_configured: 'Answers by email are not available now.',
        no_email: 'Your account has no email address.',
        not_waiting_off_duty: 'Operators are here: the answer will come in this chat.',
        payload_too_large: 'The file is too large.',
        unsupported_file: 'This kind of file is not taken: images (PNG, JPEG, WebP), PDF, text and voice only.',
        type_mismatch: 'The file’s content does not match its type.',
        empty_file: 'The file is empty.',
        invalid_attachment: 'A file was sent already or is not found.',
        too_many_attachments: 'At most 5 files in one message.',
      },
    },
  };

  const STYLES = `
    :host { all: initial; }
    *, *::before, *::after { box-sizing: border-box; }
    [hidden] { display: none !important; }

    .shell {
      font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
      font-size: 15px;
      line-height: 1.45;
      color: #111827;
      -webkit-font-smoothing: antialiased;
    }
    button, textarea { font: inherit; color: inherit; margin: 0; }
    button { cursor: pointer; }
    button:disabled { cursor: not-allowed; }
    :focus-visible { outline: 2px solid #4F46E5; outline-offset: 2px; }
    .sr-only {
      position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
      overflow: hidden; clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0;
    }
    svg { width: 20px; height: 20px; flex: none; }

    .launcher {
      position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
      width: 56px; height: 56px; padding: 0; border: 0; border-radius: 50%;
      display: grid; place-items: center;
      background: #4F46E5; color: #fff;
      box-shadow: 0 8px 24px rgba(79, 70, 229, .35), 0 2px 6px rgba(17, 24, 39, .15);
      transition: transform .15s ease, background-color .15s ease;
    }
    .launcher:hover { background: #4338CA; transform: translateY(-1px); }
    .launcher:focus-visible { outline: 3px solid #A5B4FC; outline-offset: 3px; }
    .launcher svg { width: 26px; height: 26px; }
    .launcher__dot {
      position: absolute; top: 4px; right: 4px; width: 14px; height: 14px;
      border-radius: 50%; background: #EF4444; border: 2px solid #fff;
    }

    .panel {
      position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
      width: 380px; height: 600px; max-width: calc(100vw - 40px); max-height: calc(100vh - 108px);
      display: flex; flex-direction: column; overflow: hidden;
      background: #fff; border: 1px solid #E5E7EB; border-radius: 16px;
      box-shadow: 0 24px 48px rgba(17, 24, 39, .18), 0 4px 12px rgba(17, 24, 39, .08);
      animation: lc-rise .18s ease-out;
    }
    @keyframes lc-rise { from { opacity: 0; transform: translateY(8px); } to { opacity: 1; transform: none; } }

    .header {
      display: flex; align-items: center; gap: 12px;
      padding: 12px 10px 12px 16px; background: #4F46E5; color: #fff;
    }
    .header__text { flex: 1; min-width: 0; }
    .header__title { margin: 0; font-size: 16px; font-weight: 600; line-height: 1.3; }
    .header__subtitle { margin: 0; font-size: 13px; opacity: .85; }
    .icon-button {
      width: 36px; height: 36px; padding: 0; border: 0; border-radius: 8px;
      display: grid; place-items: center; background: transparent; color: inherit;
    }
    .icon-button:hover { background: rgba(255, 255, 255, .16); }
    .header .icon-button:focus-visible { outline-color: #fff; outline-offset: 0; }

    .toolbar {
      display: flex; flex-wrap: wrap; align-items: center; justify-content: flex-end; gap: 8px;
      padding: 8px 12px; background: #F9FAFB; border-bottom: 1px solid #E5E7EB; font-size: 13px;
    }
    .toolbar__prompt { margin-right: auto; color: #374151; }

    .button {
      padding: 6px 12px; border: 1px solid #D1D5DB; border-radius: 8px;
      background: #fff; font-size: 13px; line-height: 1.3;
    }
    .button:hover { background: #F3F4F6; }
    .button:disabled { opacity: .55; }
    .button--primary { background: #4F46E5; border-color: #4F46E5; color: #fff; }
    .button--primary:hover { background: #4338CA; }
    .button--danger { background: #DC2626; border-color: #DC2626; color: #fff; }
    .button--danger:hover { background: #B91C1C; }

    .email-reply {
      display: flex; flex-wrap: wrap; align-items: center; gap: 8px; padding: 8px 12px; font-size: 13px;
      background: #EEF2FF; color: #3730A3; border-bottom: 1px solid #E0E7FF;
    }
    .email-reply__text { flex: 1 1 200px; }

    .status {
      display: flex; align-items: center; gap: 8px; padding: 8px 12px; font-size: 13px;
      background: #FEF3C7; color: #92400E; border-bottom: 1px solid #FDE68A;
    }
    .status[data-kind="error"] { background: #FEE2E2; color: #991B1B; border-bottom-color: #FECACA; }
    .status__text { flex: 1; }

    .body {
      flex: 1; min-height: 0; overflow-y: auto; overscroll-behavior: contain;
      display: flex; flex-direction: column; gap: 10px; padding: 16px 12px;
    }
    .greeting {
      margin: 0; padding: 12px 14px; border-radius: 12px;
      background: #EEF2FF; color: #3730A3; font-size: 14px;
    }
    .log { display: flex; flex-direction: column; gap: 10px; }

    .msg {
      position: relative; display: flex; flex-direction: column; align-items: flex-start;
      max-width: 85%; align-self: flex-start;
    }
    .msg--user { align-self: flex-end; align-items: flex-end; }
    .msg--system { align-self: center; align-items: center; max-width: 92%; text-align: center; }
    .msg__author { margin: 0 4px 2px; font-size: 12px; color: #6B7280; }
    .msg__bubble {
      max-width: 100%; padding: 9px 13px; border-radius: 16px; background: #F3F4F6;
      overflow-wrap: anywhere;
    }
    .msg--user .msg__bubble { background: #4F46E5; color: #fff; border-bottom-right-radius: 4px; }
    .msg--assistant .msg__bubble { border-bottom-left-radius: 4px; }
    .msg--operator .msg__bubble { background: #ECFDF5; border: 1px solid #A7F3D0; border-bottom-left-radius: 4px; }
    .msg--system .msg__bubble { padding: 2px 8px; background: transparent; color: #6B7280; font-size: 13px; }
    .msg[data-pending] .msg__bubble { opacity: .7; }
    .msg--failed .msg__bubble { opacity: 1; background: #FEE2E2; color: #991B1B; }
    .msg__meta { margin: 3px 4px 0; font-size: 12px; color: #6B7280; }
    .msg__meta--error { color: #B91C1C; }
    .msg__dismiss {
      min-width: 24px; min-height: 24px; margin-left: 4px; padding: 0 6px; border: 0; border-radius: 6px;
      background: transparent; color: inherit; font-size: 16px; line-height: 1; vertical-align: middle;
    }
    .msg__dismiss:hover { background: #FEE2E2; }

    .msg__bubble p, .msg__bubble ul, .msg__bubble ol { margin: 0; }
    .msg__bubble > * + * { margin-top: 6px; }
    .msg__bubble ul, .msg__bubble ol { padding-left: 20px; }
    .msg__bubble a { color: #4338CA; text-decoration: underline; }
    .msg--user .msg__bubble a { color: #fff; }
    .msg__bubble code {
      padding: 1px 4px; border-radius: 4px; background: rgba(17, 24, 39, .07);
      font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
    }
    .msg--user .msg__bubble code { background: rgba(255, 255, 255, .2); }
    .msg__bubble pre { margin: 0; padding: 6px 8px; border-radius: 6px; background: rgba(17, 24, 39, .07); overflow-x: auto; }
    .msg__bubble pre code { padding: 0; background: none; white-space: pre; }
    .msg--user .msg__bubble pre { background: rgba(255, 255, 255, .2); }
    .msg[data-streaming] .msg__bubble::after {
      content: ""; display: inline-block; width: 7px; height: 1em; margin-left: 2px;
      vertical-align: text-bottom; background: #9CA3AF; animation: lc-blink 1s steps(2) infinite;
    }
    @keyframes lc-blink { 50% { opacity: 0; } }

    .sources { margin: 6px 4px 0; font-size: 13px; }
    .sources__title { font-size: 12px; color: #6B7280; }
    .sources ul { display: flex; flex-direction: column; gap: 2px; margin: 2px 0 0; padding: 0; list-style: none; }
    .sources a { color: #4338CA; }

    .chips { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
    .chip {
      padding: 5px 12px; border: 1px solid #C7D2FE; border-radius: 999px;
      background: #EEF2FF; color: #3730A3; font-size: 13px; text-align: left;
    }
    .chip:hover { background: #E0E7FF; }
    .msg--stale .chips { display: none; }

    .typing {
      align-self: flex-start; display: flex; align-items: center; gap: 4px;
      padding: 12px 14px; border-radius: 16px; border-bottom-left-radius: 4px; background: #F3F4F6;
    }
    .typing__dot { width: 6px; height: 6px; border-radius: 50%; background: #9CA3AF; animation: lc-bounce 1.2s infinite ease-in-out; }
    .typing__dot:nth-child(2) { animation-delay: .15s; }
    .typing__dot:nth-child(3) { animation-delay: .3s; }
    .typing__label { margin-left: 6px; color: #4B5563; font-size: 13px; }
    @keyframes lc-bounce { 0%, 80%, 100% { opacity: .35; transform: none; } 40% { opacity: 1; transform: translateY(-3px); } }

    .closed { display: flex; flex-direction: column; gap: 10px; }
    .rating { padding: 12px; border: 1px solid #E5E7EB; border-radius: 12px; background: #fff; }
    .rating__title { margin: 0 0 6px; font-size: 14px; font-weight: 600; }
    .rating__result { margin: 0; font-size: 14px; color: #374151; }
    .stars { display: flex; gap: 2px; margin-bottom: 8px; }
    .star {
      width: 38px; height: 38px; padding: 0; border: 0; border-radius: 8px;
      display: grid; place-items: center; background: transparent; color: #D1D5DB;
    }
    .star svg { width: 28px; height: 28px; }
    .star:hover, .star--on { color: #F59E0B; }
    .field-label { display: block; margin-bottom: 4px; font-size: 13px; color: #374151; }
    .rating textarea {
      display: block; width: 100%; min-height: 60px; padding: 8px 10px; resize: vertical;
      border: 1px solid #D1D5DB; border-radius: 8px; font-size: 14px;
    }
    .rating__actions { display: flex; justify-content: flex-end; margin-top: 8px; }

    .composer {
      display: flex; align-items: flex-end; gap: 8px; margin: 0;
      padding: 10px 12px; border-top: 1px solid #E5E7EB; background: #fff;
    }
    .composer__field { flex: 1; min-width: 0; display: flex; flex-direction: column; }
    .composer__input {
      display: block; width: 100%; min-height: 42px; max-height: ${INPUT_MAX_HEIGHT_PX}px; padding: 9px 12px;
      resize: none; border: 1px solid #D1D5DB; border-radius: 12px; background: #fff;
      font-size: 15px; line-height: 1.4;
    }
    .composer__input:focus-visible { outline: 2px solid #4F46E5; outline-offset: 0; border-color: #4F46E5; }
    .composer__input:disabled { background: #F3F4F6; }
    .counter { margin-top: 2px; font-size: 12px; color: #6B7280; text-align: right; }
    .counter--over { color: #B91C1C; }
    .send {
      flex: none; width: 42px; height: 42px; padding: 0; border: 0; border-radius: 50%;
      display: grid; place-items: center; background: #4F46E5; color: #fff;
    }
    .send:hover { background: #4338CA; }
    .send:disabled { background: #C7D2FE; }

    .files { display: flex; flex-direction: column; align-items: inherit; gap: 6px; margin-top: 4px; max-width: 100%; }
    .file--image { display: block; line-height: 0; border-radius: 12px; overflow: hidden; border: 1px solid #E5E7EB; }
    .file__thumb { display: block; max-width: 220px; max-height: 180px; object-fit: cover; background: #F3F4F6; }
    .file--doc {
      display: inline-flex; align-items: baseline; gap: 8px; max-width: 100%; padding: 8px 12px;
      border: 1px solid #E5E7EB; border-radius: 12px; background: #fff; color: #4338CA; font-size: 14px;
    }
    .file--doc { text-decoration: none; }
    .file__name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-decoration: underline; }
    .file__size { flex: none; color: #6B7280; font-size: 12px; }
    .file--voice { display: flex; flex-direction: column; gap: 4px; max-width: 100%; }
    .file--voice audio { width: 240px; max-width: 100%; height: 40px; }
    .file__transcript { margin: 0; padding: 6px 10px; border-radius: 10px; background: #F9FAFB; color: #374151; font-size: 13px; }
    .pending-files { margin: 3px 4px 0; font-size: 12px; color: #6B7280; }

    .composer__files { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 6px; }
    .composer__files:empty { display: none; }
    .file-chip {
      position: relative; display: inline-flex; align-items: center; gap: 6px; max-width: 100%;
      padding: 4px 4px 6px 10px; border: 1px solid #D1D5DB; border-radius: 10px; background: #F9FAFB;
      font-size: 12px; overflow: hidden;
    }
    .file-chip--failed { border-color: #FECACA; background: #FEF2F2; color: #991B1B; }
    .file-chip__name { max-width: 140px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    .file-chip__size { color: #6B7280; }
    .file-chip__error { flex-basis: 100%; }
    .file-chip__remove {
      width: 22px; height: 22px; padding: 0; border: 0; border-radius: 6px; background: transparent;
      font-size: 15px; line-height: 1;
    }
    .file-chip__remove:hover { background: #E5E7EB; }
    .file-chip__progress {
      position: absolute; left: 0; bottom: 0; height: 3px; width: 100%; border: 0; appearance: none;
      background: transparent;
    }
    .file-chip__progress::-webkit-progress-bar { background: transparent; }
    .file-chip__progress::-webkit-progress-value { background: #4F46E5; }
    .file-chip__progress::-moz-progress-bar { background: #4F46E5; }
    .composer__notice { margin-bottom: 4px; font-size: 12px; color: #B91C1C; }
    .tool {
      flex: none; width: 42px; height: 42px; padding: 0; border: 0; border-radius: 50%;
      display: grid; place-items: center; background: transparent; color: #4B5563;
    }
    .tool:hover { background: #F3F4F6; }
    .tool:disabled { color: #D1D5DB; background: transparent; }
    .recorder {
      display: flex; align-items: center; gap: 8px; min-height: 42px; padding: 4px 6px 4px 12px;
      border: 1px solid #FECACA; border-radius: 12px; background: #FEF2F2; color: #991B1B; font-size: 14px;
    }
    .recorder__dot { width: 10px; height: 10px; border-radius: 50%; background: #DC2626; animation: lc-blink 1s steps(2) infinite; }
    .recorder__timer { flex: 1; font-variant-numeric: tabular-nums; }
    .panel--dragging::after {
      content: attr(data-drop-label); position: absolute; inset: 8px; display: grid; place-items: center;
      border: 2px dashed #4F46E5; border-radius: 12px; background: rgba(238, 242, 255, .92);
      color: #3730A3; font-size: 15px; font-weight: 600; pointer-events: none;
    }

    @media (max-width: 480px) {
      .panel {
        inset: 0; width: auto; height: auto; max-width: none; max-height: none;
        border: 0; border-radius: 0;
      }
      .shell--open .launcher { display: none; }
      /* iOS zooms into a field whose text is smaller than 16px. */
      .composer__input, .rating textarea { font-size: 16px; }
    }
    @media (prefers-reduced-motion: reduce) {
      *, *::before, *::after { animation: none !important; transition: none !important; }
    }
  `;

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ICONS = {
    chat: { stroke: true, d: 'M21 12a8 8 0 0 1-11.6 7.1L4 20l1.2-4.4A8 8 0 1 1 21 12z' },
    close: { stroke: true, d: 'M6 6l12 12M18 6L6 18' },
    send: {
      stroke: false,
      d: 'M3.4 20.4l17.4-7.5a1 1 0 0 0 0-1.8L3.4 3.6a.7.7 0 0 0-1 .8L4.6 11 13 12l-8.4 1-2.2 6.6a.7.7 0 0 0 1 .8z',
    },
    clip: {
      stroke: true,
      d: 'M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9',
    },
    mic: { stroke: true, d: 'M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zM5 11a7 7 0 0 0 14 0M12 18v3' },
    star: { stroke: false, d: 'M12 2.8l2.8 5.8 6.3.9-4.6 4.4 1.1 6.3L12 17.2l-5.6 3 1.1-6.3-4.6-4.4 6.3-.9z' },
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function h(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (value === null || value === undefined || value === false) return;
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    });
    [].concat(children === undefined ? [] : children).forEach((child) => {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    });
    return node;
  }

  function icon(name) {
    const spec = ICONS[name];
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', spec.d);
    if (spec.stroke) {
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', 'currentColor');
      path.setAttribute('stroke-width', '2');
      path.setAttribute('stroke-linecap', 'round');
      path.setAttribute('stroke-linejoin', 'round');
    } else {
      path.setAttribute('fill', 'currentColor');
    }
    svg.append(path);
    return svg;
  }

  function format(template, vars) {
    return String(template).replace(/\{(\w+)\}/g, (match, name) =>
      vars && Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : match
    );
  }

  function charCount(text) {
    return Array.from(text).length;
  }

  function truncate(text, max) {
    return Array.from(text).slice(0, max).join('');
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  function uuid() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // The `sub` claim of a JWT, read without verification: it only names the storage slot.
  function jwtSubject(token) {
    try {
      const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const binary = atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '='));
      const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && claims.sub !== undefined && claims.sub !== null ? String(claims.sub) : null;
    } catch {
      return null;
    }
  }

  // A short, non-cryptographic digest of a string (32-bit FNV-1a, in hex): it only names the
  // storage slot of a token whose subject cannot be read.
  function shortHash(text) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < text.length; i += 1) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    return (hash >>> 0).toString(16).padStart(8, '0');
  }

  // localStorage that never throws: when it is full or disabled the widget works from memory.
  const storage = {
    read(key) {
      try {
        const raw = localStorage.getItem(key);
        return raw === null ? null : parseJson(raw);
      } catch {
        return null;
      }
    },
    write(key, value) {
      try {
        localStorage.setItem(key, JSON.stringify(value));
      } catch {
        // Not persisted: this page keeps working, the next one starts afresh.
      }
    },
    remove(key) {
      try {
        localStorage.removeItem(key);
      } catch {
        // Nothing was persisted either.
      }
    },
  };

  function sseSupported() {
    return typeof window.EventSource === 'function';
  }

  function eventKind(message) {
    return message.metadata && message.metadata.kind === 'status' ? 'status' : 'message';
  }

  function isMessage(value) {
    return Boolean(value) && typeof value.id === 'string' && Number.isFinite(value.seq);
  }

  // Links to files are signed afresh each time a message is read: a new link is not a change.
  function sameMessage(a, b) {
    const withoutLinks = (key, value) => (key === 'url' ? undefined : value);
    return JSON.stringify(a, withoutLinks) === JSON.stringify(b, withoutLinks);
  }

  function fileAccepted(file) {
    const type = String(file.type || '').toLowerCase().split(';')[0];
    if (type) return FILE_TYPES.includes(type) || type.startsWith('text/') || type.startsWith('audio/');
    return FILE_EXTENSIONS.test(file.name || '');
  }

  function attachmentsOf(message) {
    return Array.isArray(message.attachments)
      ? message.attachments.filter((a) => a && typeof a.id === 'string' && typeof a.url === 'string')
      : [];
  }

  function scriptApiBase(script) {
    const origin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
    return origin + API_PATH;
  }

  function normalizeApiBase(api) {
    return new URL(String(api).trim(), location.href).href.replace(/\/+$/, '');
  }

  // What the server accepts as the page the conversation started on.
  function pageInfo() {
    const info = {};
    if (/^https?:$/.test(location.protocol) && location.href.length <= MAX_PAGE_URL_CHARS) {
      info.page_url = location.href;
    }
    const title = document.title.trim();
    if (title) info.page_title = truncate(title, MAX_PAGE_TITLE_CHARS);
    return info;
  }

  // ---------------------------------------------------------------------------------------
  // HTTP

  class RequestError extends Error {
    constructor(status, code, message) {
      super(message || code);
      this.name = 'RequestError';
      this.status = status;
      this.code = code;
    }

    get network() {
      return this.status === 0;
    }

    get retryable() {
      return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
    }
  }

  // A promise that never settles: what calls in flight become once the widget is destroyed,
  // so that none of their callbacks runs against a removed widget (and all can be collected).
  function never() {
    return new Promise(() => {});
  }

  class Api {
    constructor(base, authToken, onReachable) {
      this.base = base;
      this.authToken = authToken;
      this.onReachable = onReachable;
      this.inflight = new Set();
      this.uploads = new Set();
      this.closed = false;
    }

    createConversation(page) {
      return this.request('POST', '/conversations/', page);
    }

    getConversation(id) {
      return this.request('GET', `/conversations/${encodeURIComponent(id)}/`);
    }

    postMessage(id, content, clientMessageId, attachmentIds) {
      const body = { content, client_message_id: clientMessageId };
      if (attachmentIds && attachmentIds.length) body.attachment_ids = attachmentIds;
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/messages/`, body);
    }

    // One file, as the form's `file` part, with XMLHttpRequest for its upload progress
    // (onProgress gets 0..1). Returns { promise, abort }; the promise gives the stored file.
    upload(id, file, onProgress) {
      if (this.closed) return { promise: never(), abort() {} };
      const xhr = new XMLHttpRequest();
      const promise = new Promise((resolve, reject) => {
        xhr.open('POST', `${this.base}/conversations/${encodeURIComponent(id)}/attachments/`);
        xhr.setRequestHeader('Accept', 'application/json');
        const token = this.authToken();
        if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
        xhr.upload.addEventListener('progress', (event) => {
          if (event.lengthComputable && event.total) onProgress(event.loaded / event.total);
        });
        xhr.addEventListener('load', () => {
          const data = parseJson(xhr.responseText);
          if (xhr.status >= 200 && xhr.status < 300 && data && typeof data.id === 'string') {
            resolve(data);
            return;
          }
          const error = data && data.error ? data.error : {};
          reject(new RequestError(xhr.status, error.code ? String(error.code) : `http_${xhr.status}`, error.message));
        });
        xhr.addEventListener('error', () => reject(new RequestError(0, 'network')));
        xhr.addEventListener('abort', () => reject(new RequestError(0, 'aborted')));
        const form = new FormData();
        form.append('file', file, file.name);
        xhr.send(form);
      });
      this.uploads.add(xhr);
      const settle = () => this.uploads.delete(xhr);
      promise.then(settle, settle);
      return {
        promise: promise.then(
          (data) => (this.closed ? never() : data),
          (error) => {
            if (this.closed) return never();
            this.onReachable(!error.network);
            throw error;
          }
        ),
        abort: () => xhr.abort(),
      };
    }

    listMessages(id, after) {
      return this.request(
        'GET',
        `/conversations/${encodeURIComponent(id)}/messages/?after=${after}&limit=${POLL_PAGE_SIZE}`
      );
    }

    streamToken(id) {
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/stream-token/`);
    }

    escalate(id) {
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/escalate/`);
    }

    close(id) {
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/close/`);
    }

    emailReply(id, enabled) {
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/email-reply/`, { enabled });
    }

    rate(id, rating, comment) {
      return this.request('POST', `/conversations/${encodeURIComponent(id)}/rate/`, { rating, comment });
    }

    streamUrl(id, token, after) {
      return `${this.base}/conversations/${encodeURIComponent(id)}/stream/?token=${encodeURIComponent(token)}&after=${after}`;
    }

    abortAll() {
      this.closed = true;
      this.inflight.forEach((controller) => controller.abort());
      this.inflight.clear();
      this.uploads.forEach((xhr) => xhr.abort());
      this.uploads.clear();
    }

    request(method, path, body) {
      if (this.closed) return never();
      return this.fetchJson(method, path, body).then(
        (data) => {
          if (this.closed) return never();
          this.onReachable(true);
          return data;
        },
        (error) => {
          if (this.closed) return never();
          this.onReachable(!error.network);
          throw error;
        }
      );
    }

    async fetchJson(method, path, body) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      this.inflight.add(controller);
      const headers = { Accept: 'application/json' };
      const token = this.authToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      try {
        let response;
        let text;
        try {
          response = await fetch(this.base + path, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            credentials: 'omit',
            signal: controller.signal,
          });
          text = await response.text();
        } catch {
          throw new RequestError(0, 'network');
        }
        const data = parseJson(text);
        if (!response.ok) {
          const error = data && data.error ? data.error : {};
          throw new RequestError(
            response.status,
            error.code ? String(error.code) : `http_${response.status}`,
            error.message
          );
        }
        if (data === null || typeof data !== 'object') throw new RequestError(502, 'invalid_response');
        return data;
      } finally {
        clearTimeout(timer);
        this.inflight.delete(controller);
      }
    }
  }

  class Backoff {
    constructor() {
      this.attempt = 0;
    }

    // Exponential, capped, with jitter so that many widgets do not retry in step.
    next() {
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
      this.attempt += 1;
      return ceiling / 2 + (Math.random() * ceiling) / 2;
    }

    reset() {
      this.attempt = 0;
    }
  }

  // Messages typed but not yet accepted by the server, oldest first, kept across page loads.
  class Outbox {
    constructor(key) {
      this.key = key;
      const saved = storage.read(key);
      this.items = Array.isArray(saved)
        ? saved.filter((item) => item && typeof item.client_message_id === 'string' && typeof item.content === 'string')
        : [];
    }

    first() {
      return this.items[0];
    }

    add(item) {
      this.items.push(item);
      this.save();
    }

    remove(clientMessageId) {
      const before = this.items.length;
      this.items = this.items.filter((item) => item.client_message_id !== clientMessageId);
      if (this.items.length !== before) this.save();
    }

    save() {
      if (this.items.length) storage.write(this.key, this.items);
      else storage.remove(this.key);
    }
  }

  // ---------------------------------------------------------------------------------------
  // The live feed of one conversation: an EventSource that resumes after the highest seq the
  // feed (or the restored history) has delivered. After repeated failures (or without
  // EventSource, or when told to) it polls every 2 s and tries the stream again every 30 s.
  // Stream tokens are renewed before they expire and whenever the server refuses the stream.

  class LiveFeed {
    constructor(options) {
      this.pollOnly = Boolean(options.pollOnly);
      this.api = options.api;
      this.conversationId = options.conversationId;
      this.afterSeq = options.afterSeq;
      this.isGone = options.isGone;
      this.onEvent = options.onEvent;
      this.onGone = options.onGone;
      this.token = '';
      this.source = null;
      this.failures = 0;
      this.polling = false;
      this.pollRound = 0;
      this.timers = { token: 0, poll: 0, retry: 0 };
      this.stopped = false;
      // Streams the server ended because their token expired.
      this.expired = 0;
    }

    // With the token from the create response, or without one (a restored conversation).
    start(streamToken) {
      if (!this.canStream()) this.startPolling();
      else if (streamToken) {
        this.setToken(streamToken);
        this.openStream();
      } else {
        this.recover();
      }
    }

    stop() {
      this.stopped = true;
      this.closeStream();
      this.stopPolling();
      clearTimeout(this.timers.token);
    }

    // A fresh connection now, resuming after the highest seq the feed delivered.
    reconnect() {
      if (this.stopped || !this.canStream()) return;
      this.failures = 0;
      this.openStream();
    }

    canStream() {
      return !this.pollOnly && sseSupported();
    }

    // Reconnect unless the stream is healthy.
    wake() {
      if (!this.source || this.source.readyState !== EventSource.OPEN) this.reconnect();
    }

    setToken(streamToken) {
      this.token = streamToken.token;
      clearTimeout(this.timers.token);
      const seconds = Number(streamToken.expires_in) || 60;
      const renewIn = Math.max(seconds * 0.8, seconds - 60) * 1000;
      this.timers.token = setTimeout(() => this.renewToken(), renewIn);
    }

    pauseRenewal() {
      clearTimeout(this.timers.token);
    }

    // Reconnect with the new token while the old one is still valid, so that the browser's
    // own reconnections never present an expired one.
    async renewToken() {
      if ((await this.refreshToken()) && this.source) this.openStream();
    }

    async refreshToken() {
      try {
        const streamToken = await this.api.streamToken(this.conversationId);
        if (this.stopped) return false;
        this.setToken(streamToken);
        return true;
      } catch (error) {
        if (this.isGone(error)) this.gone();
        return false;
      }
    }

    openStream() {
      this.closeStream();
      const source = new EventSource(this.api.streamUrl(this.conversationId, this.token, this.afterSeq()));
      source.onopen = () => {
        this.failures = 0;
        this.stopPolling();
      };
      source.onerror = () => this.onStreamError(source);
      // The server ends a stream when its token expires (a tab asleep past the renewal, say):
      // connect again at once with a fresh token, after the last event delivered.
      source.addEventListener('expired', () => {
        if (source !== this.source) return;
        this.expired += 1;
        this.recover();
      });
      STREAM_EVENTS.forEach((type) => {
        source.addEventListener(type, (event) => {
          if (source === this.source) this.dispatch(type, parseJson(event.data));
        });
      });
      this.source = source;
    }

    closeStream() {
      if (this.source) this.source.close();
      this.source = null;
    }

    // A network drop leaves the source CONNECTING (the browser retries with Last-Event-ID);
    // a refusal (an expired token, most often) leaves it CLOSED.
    onStreamError(source) {
      if (source !== this.source) return;
      this.failures += 1;
      if (this.polling || this.failures >= STREAM_MAX_FAILURES) {
        this.closeStream();
        this.startPolling();
      } else if (source.readyState === EventSource.CLOSED) {
        this.recover();
      }
    }

    // Get a fresh token (which also tells whether the conversation is still there), then
    // connect; poll if even that fails.
    async recover() {
      this.closeStream();
      if (await this.refreshToken()) this.openStream();
      else if (!this.stopped) this.startPolling();
    }

    startPolling() {
      if (!this.polling) {
        this.polling = true;
        this.pollRound += 1;
        this.poll(this.pollRound);
      }
      if (this.canStream() && !this.timers.retry) {
        this.timers.retry = setInterval(() => this.retryStream(), STREAM_RETRY_MS);
      }
    }

    stopPolling() {
      this.polling = false;
      clearTimeout(this.timers.poll);
      clearInterval(this.timers.retry);
      this.timers.retry = 0;
    }

    async retryStream() {
      if (!this.source && (await this.refreshToken()) && this.polling) this.openStream();
    }

    isCurrentPoll(round) {
      return this.polling && !this.stopped && round === this.pollRound;
    }

    async poll(round) {
      try {
        const page = await this.api.listMessages(this.conversationId, this.afterSeq());
        if (!this.isCurrentPoll(round)) return;
        page.items.forEach((message) => this.dispatch(eventKind(message), message));
        if (page.has_more && page.items.length) {
          this.poll(round);
          return;
        }
      } catch (error) {
        if (this.isGone(error)) {
          this.gone();
          return;
        }
      }
      if (this.isCurrentPoll(round)) this.timers.poll = setTimeout(() => this.poll(round), POLL_INTERVAL_MS);
    }

    dispatch(type, data) {
      if (!this.stopped && data && typeof data === 'object') this.onEvent(type, data);
    }

    gone() {
      this.stop();
      this.onGone();
    }
  }

  // ---------------------------------------------------------------------------------------
  // The widget

  // A voice message: at most two minutes, recorded with MediaRecorder.
  const VOICE_MAX_MS = 120000;
  const VOICE_TICK_MS = 250;
  // What the server takes as voice, best first: OGG/Opus plays as a voice message in Telegram.
  const VOICE_TYPES = ['audio/ogg;codecs=opus', 'audio/webm;codecs=opus', 'audio/webm', 'audio/mp4'];

  function voiceSupported() {
    return Boolean(
      typeof window.MediaRecorder === 'function' && navigator.mediaDevices && navigator.mediaDevices.getUserMedia
    );
  }

  function clock(ms) {
    const seconds = Math.floor(ms / 1000);
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
  }

  // Records one voice message: start() asks for the microphone, the timer runs (and stops the
  // recording at VOICE_MAX_MS), finish() gives the recording as a File, cancel() throws it away.
  // onChange() is called on every change of state and tick of the timer.
  class VoiceRecorder {
    constructor(onChange) {
      this.onChange = onChange;
      this.state = 'idle'; // idle | starting | recording | stopped
      this.elapsed = 0;
      this.stream = null;
      this.recorder = null;
      this.chunks = [];
      this.timer = null;
      this.stopped = null;
    }

    get active() {
      return this.state !== 'idle';
    }

    async start() {
      if (this.active) return;
      this.state = 'starting';
      this.onChange();
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        // Cancelled while the browser asked for the microphone.
        if (this.state !== 'starting') {
          stream.getTracks().forEach((track) => track.stop());
          return;
        }
        this.stream = stream;
        const type = VOICE_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
        this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : undefined);
      } catch (error) {
        this.release();
        throw error;
      }
      this.chunks = [];
      this.recorder.addEventListener('dataavailable', (event) => {
        if (event.data && event.data.size > 0) this.chunks.push(event.data);
      });
      this.stopped = new Promise((resolve) => this.recorder.addEventListener('stop', resolve, { once: true }));
      const startedAt = Date.now();
      this.recorder.start(VOICE_TICK_MS * 4);
      this.state = 'recording';
      this.elapsed = 0;
      this.timer = setInterval(() => {
        this.elapsed = Math.min(Date.now() - startedAt, VOICE_MAX_MS);
        if (this.elapsed >= VOICE_MAX_MS) this.stop();
        this.onChange();
      }, VOICE_TICK_MS);
      this.onChange();
    }

    stop() {
      clearInterval(this.timer);
      this.timer = null;
      if (this.recorder && this.recorder.state !== 'inactive') this.recorder.stop();
      if (this.state === 'recording') this.state = 'stopped';
    }

    // The recording as a File, or null when nothing was recorded.
    async finish() {
      if (!this.recorder) return null;
      this.stop();
      await this.stopped;
      const type = (this.recorder.mimeType || (this.chunks[0] && this.chunks[0].type) || 'audio/webm').split(';')[0];
      const blob = new Blob(this.chunks, { type });
      this.release();
      if (!blob.size) return null;
      const extension = { 'audio/ogg': 'ogg', 'audio/webm': 'webm', 'audio/mp4': 'm4a' }[type] || 'webm';
      return new File([blob], `voice.${extension}`, { type });
    }

    cancel() {
      this.stop();
      this.release();
    }

    release() {
      clearInterval(this.timer);
      this.timer = null;
      if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
      this.stream = null;
      this.recorder = null;
      this.chunks = [];
      this.state = 'idle';
      this.elapsed = 0;
      this.onChange();
    }

    timerText() {
      return `${clock(this.elapsed)} / ${clock(VOICE_MAX_MS)}`;
    }
  }

  class Widget {
    constructor(options) {
      this.apiBase = normalizeApiBase(options.api);
      this.siteBase = this.apiBase.replace(/\/api\/concierge$/, '');
      this.token = options.token ? String(options.token) : '';
      this.lang = Object.prototype.hasOwnProperty.call(STRINGS, options.lang) ? options.lang : DEFAULT_LANG;
      this.strings = STRINGS[this.lang];
      this.transport = options.transport === 'polling' ? 'polling' : 'auto';

      // A token without a readable subject gets a slot of its own, named after the token.
      const identity = this.token ? `user:${jwtSubject(this.token) || `h${shortHash(this.token)}`}` : 'visitor';
      this.recordKey = `${STORAGE_PREFIX}:${this.apiBase}:${identity}`;
      this.outbox = new Outbox(`${this.recordKey}:outbox`);
      const record = this.readRecord();
      this.visitorToken = record && record.visitor_token ? record.visitor_token : '';
      this.api = new Api(
        this.apiBase,
        () => this.token || this.visitorToken,
        (reachable) => this.setReachable(reachable)
      );

      this.conversation = null; // { id, status, mode, rating }
      // Replies by email while operators are away, as the server last said: { available, enabled, address }.
      this.emailReply = null;
      this.messages = new Map(); // message id → message
      this.pending = new Map(); // client_message_id → { content, state: queued|sending|failed, error }
      this.drafts = new Map(); // reply_to → the reply written so far
      this.typing = new Set(); // reply_to of replies being written
      this.typingTimer = 0; // ends the assistant's dots and drafts when their events stop
      this.operatorTyping = ''; // the name of an operator writing in the console
      this.operatorTypingTimer = 0;
      this.operatorMessageAt = 0; // when the latest operator message arrived (Date.now())
      this.answered = new Set(); // reply_to of replies that have arrived or were abandoned
      // Where the feed resumes: the highest seq delivered by the feed or the restored history.
      // Messages in POST responses do not raise it: a reply stored before them could be skipped.
      this.feedSeq = 0;
      this.feed = null;
      this.restoring = null;
      this.creating = null;

      this.flushing = false;
      this.flushTimer = 0;
      this.backoff = new Backoff();
      this.browserOffline = navigator.onLine === false;
      this.unreachable = false;
      this.problem = null; // { text, retry } shown in the status banner
      this.notice = '';
      this.busy = new Set(); // actions waiting for the server: escalate, close, rate, email
      this.confirmingEnd = false;
      this.rating = { value: 0, state: 'idle' }; // idle | done | unavailable
      this.isOpen = false;
      this.unread = false;
      this.forceScroll = false;
      this.nodes = new Map(); // render key → { node, data }
      // Files chosen for the next message: { key, file, name, size, state: uploading|done|failed,
      // progress 0..1, error, attachment (the server's), abort, then (run once uploaded) }.
      this.files = [];
      this.fileNotice = ''; // why a chosen file was refused before its upload
      this.dragging = false;
      this.recorder = new VoiceRecorder(() => this.renderRecorder());

      this.mount();
      this.listen();
      this.outbox.items.forEach((item) => {
        this.pending.set(item.client_message_id, {
          content: item.content,
          files: Array.isArray(item.files) ? item.files : [],
          state: 'queued',
          error: '',
        });
      });
      if (record) this.restoreInBackground();
      this.flushOutbox();
      this.render();
    }

    // --- public -------------------------------------------------------------------------

    open() {
      if (this.isOpen) return;
      this.isOpen = true;
      this.unread = false;
      this.render();
      this.scrollToBottom();
      this.focusComposer();
    }

    close() {
      if (!this.isOpen) return;
      const focusInside = this.root.activeElement !== null;
      this.isOpen = false;
      this.confirmingEnd = false;
      this.render();
      if (focusInside) this.el.launcher.focus();
    }

    toggle() {
      if (this.isOpen) this.close();
      else this.open();
    }

    destroy() {
      this.stopFeed();
      clearTimeout(this.flushTimer);
      clearTimeout(this.typingTimer);
      clearTimeout(this.operatorTypingTimer);
      this.api.abortAll();
      if (this.recorder.active) this.recorder.cancel();
      window.removeEventListener('online', this.handlers.online);
      window.removeEventListener('offline', this.handlers.offline);
      this.host.remove();
    }

    dropStream() {
      if (this.feed) this.feed.reconnect();
    }

    pauseTokenRenewal() {
      if (this.feed) this.feed.pauseRenewal();
    }

    expiredStreams() {
      return this.feed ? this.feed.expired : 0;
    }

    // --- text ---------------------------------------------------------------------------

    t(key, vars) {
      return format(this.strings[key], vars);
    }

    errorText(error) {
      const errors = this.strings.errors;
      if (error.network) return errors.network;
      if (error.status >= 500) return errors.server;
      return Object.prototype.hasOwnProperty.call(errors, error.code) ? errors[error.code] : errors.generic;
    }

    // --- the stored conversation ----------------------------------------------------------

    readRecord() {
      const record = storage.read(this.recordKey);
      if (!record || typeof record.conversation_id !== 'string' || !record.conversation_id) return null;
      if (!this.token && typeof record.visitor_token !== 'string') return null;
      return record;
    }

    writeRecord(conversationId) {
      const record = this.token
        ? { conversation_id: conversationId }
        : { conversation_id: conversationId, visitor_token: this.visitorToken };
      storage.write(this.recordKey, record);
    }

    forgetRecord() {
      storage.remove(this.recordKey);
      this.visitorToken = '';
    }

    // Gone: deleted, someone else's, or (for visitors) a visitor token that expired.
    isGone(error) {
      return error.status === 404 || (error.status === 401 && !this.token);
    }

    // --- opening the conversation ---------------------------------------------------------

    async ensureConversation() {
      if (!this.conversation) await this.restoreStored();
      if (!this.conversation) await this.createOnce();
      return this.conversation;
    }

    restoreStored() {
      if (!this.restoring) {
        this.restoring = this.restore().finally(() => {
          this.restoring = null;
        });
      }
      return this.restoring;
    }

    createOnce() {
      if (!this.creating) {
        this.creating = this.create().finally(() => {
          this.creating = null;
        });
      }
      return this.creating;
    }

    restoreInBackground() {
      this.restoreStored().then(
        () => this.clearProblem(),
        (error) => this.reportFailure(error, () => this.restoreInBackground())
      );
    }

    async restore() {
      const record = this.readRecord();
      if (!record || this.conversation) return;
      let detail;
      try {
        detail = await this.api.getConversation(record.conversation_id);
      } catch (error) {
        if (!this.isGone(error)) throw error;
        this.forgetRecord();
        return;
      }
      this.adopt(detail);
      const latest = detail.messages || [];
      if (detail.has_earlier && latest.length) await this.loadEarlier(detail.id, latest[0].seq);
      latest.forEach((message) => this.acceptInSequence(message, false));
      if (this.conversation.status === 'open') this.startFeed(null);
      this.forceScroll = true;
      this.render();
    }

    // The history before the latest messages, page by page, up to MAX_HISTORY messages.
    async loadEarlier(id, beforeSeq) {
      let after = Math.max(0, beforeSeq - 1 - MAX_HISTORY);
      while (after < beforeSeq - 1) {
        const page = await this.api.listMessages(id, after);
        const items = (page.items || []).filter((message) => message.seq < beforeSeq);
        items.forEach((message) => this.acceptMessage(message, false));
        if (!page.has_more || items.length === 0 || page.last_seq <= after) return;
        after = page.last_seq;
      }
    }

    async create() {
      const created = await this.api.createConversation(pageInfo());
      if (created.visitor_token) this.visitorToken = created.visitor_token;
      this.writeRecord(created.id);
      this.adopt(created);
      this.notice = '';
      this.startFeed(created.stream_token);
      this.render();
    }

    // Take the server's view of the conversation (from create, restore or an action).
    adopt(conversation) {
      if (this.conversation && this.conversation.id !== conversation.id) return;
      this.conversation = {
        id: conversation.id,
        status: conversation.status,
        mode: conversation.mode,
        rating: conversation.rating === undefined ? null : conversation.rating,
      };
      if (conversation.email_reply) this.emailReply = conversation.email_reply;
    }

    startFeed(streamToken) {
      this.stopFeed();
      this.feed = new LiveFeed({
        api: this.api,
        conversationId: this.conversation.id,
        afterSeq: () => this.feedSeq,
        pollOnly: this.transport === 'polling',
        isGone: (error) => this.isGone(error),
        onEvent: (type, data) => this.onFeedEvent(type, data),
        onGone: () => this.startOver(this.t('gone')),
      });
      this.feed.start(streamToken);
    }

    stopFeed() {
      if (this.feed) this.feed.stop();
      this.feed = null;
    }

    // Forget the conversation; the next message opens a new one. Unsent messages stay.
    startOver(notice) {
      this.stopFeed();
      this.forgetRecord();
      this.conversation = null;
      this.emailReply = null;
      this.messages.clear();
      this.stopTyping();
      this.stopOperatorTyping();
      this.operatorMessageAt = 0;
      this.answered.clear();
      this.pending.forEach((entry, clientMessageId) => {
        if (entry.state === 'failed') this.pending.delete(clientMessageId);
      });
      this.feedSeq = 0;
      // Files are uploaded to one conversation: those chosen for the old one cannot go.
      this.files.forEach((entry) => entry.abort && entry.abort());
      this.files = [];
      this.fileNotice = '';
      this.rating = { value: 0, state: 'idle' };
      this.el.ratingComment.value = '';
      this.confirmingEnd = false;
      this.notice = notice;
      this.problem = null;
      this.render();
    }

    startNew() {
      this.startOver('');
      this.el.input.focus();
    }

    // --- incoming messages ----------------------------------------------------------------

    onFeedEvent(type, data) {
      if (type === 'message' || type === 'status') this.acceptInSequence(data, true);
      else if (type === 'edit') this.applyEdit(data);
      else if (type === 'typing' && typeof data.operator === 'string') this.startOperatorTyping(data.operator);
      else if (type === 'typing') this.startTyping(data.reply_to);
      else if (type === 'delta') this.appendDelta(data.reply_to, data.text);
      this.render();
    }

    // Every stored message goes through here, whatever brought it: restore, the POST
    // response, the stream or polling. Keyed by id, so nothing is shown twice. True when the
    // message belongs to the conversation shown. A POST response (`posted`) is the message as
    // it was stored: the stream may have brought a later form of it already (a voice
    // message's transcript), and that form stays.
    acceptMessage(message, live, posted) {
      if (!isMessage(message) || !this.conversation) return false;
      if (message.conversation_id !== this.conversation.id) return false;
      const known = this.messages.get(message.id);
      if (!known || (!posted && !sameMessage(known, message))) this.messages.set(message.id, message);
      if (message.client_message_id) {
        this.pending.delete(message.client_message_id);
        this.outbox.remove(message.client_message_id);
      }
      if (message.reply_to) {
        this.answered.add(message.reply_to);
        this.typing.delete(message.reply_to);
        this.drafts.delete(message.reply_to);
      }
      if (live && !known) this.onNewMessage(message);
      return true;
    }

    // A message from the feed or the restored history: both come in seq order, so the feed
    // can resume after it.
    acceptInSequence(message, live) {
      if (this.acceptMessage(message, live)) this.feedSeq = Math.max(this.feedSeq, message.seq);
    }

    onNewMessage(message) {
      const meta = message.metadata || {};
      if (message.role === 'operator') {
        this.conversation.mode = 'human';
        this.operatorMessageAt = Date.now();
        this.stopOperatorTyping();
      }
      // The worker drops a reply it was writing once a person answers: its dots and draft
      // would stay forever.
      if (message.role === 'operator' || (meta.kind === 'status' && meta.mode === 'human')) this.abandonReplies();
      if (meta.kind === 'status') this.applyStatus(meta);
      if (meta.kind === 'status' && meta.mode === 'human' && meta.status === 'open') this.refreshEmailReply();
      if (message.role !== 'user' && !this.isOpen) this.unread = true;
    }

    applyStatus(meta) {
      if (meta.status) this.conversation.status = meta.status;
      if (meta.mode) this.conversation.mode = meta.mode;
      if (this.isClosed()) {
        this.stopFeed();
        this.confirmingEnd = false;
        this.stopTyping();
        this.stopOperatorTyping();
      }
    }

    applyEdit(message) {
      if (isMessage(message) && this.messages.has(message.id)) this.messages.set(message.id, message);
    }

    startTyping(replyTo) {
      if (!replyTo || this.answered.has(replyTo)) return;
      this.typing.add(replyTo);
      this.keepTyping();
    }

    // The assistant is still writing: its dots and drafts last ASSISTANT_TYPING_MS more.
    keepTyping() {
      clearTimeout(this.typingTimer);
      this.typingTimer = setTimeout(() => {
        this.stopTyping();
        this.render();
      }, ASSISTANT_TYPING_MS);
    }

    stopTyping() {
      clearTimeout(this.typingTimer);
      this.typing.clear();
      this.drafts.clear();
    }

    // End the replies being written and ignore their later typing and delta events.
    abandonReplies() {
      this.typing.forEach((replyTo) => this.answered.add(replyTo));
      this.drafts.forEach((text, replyTo) => this.answered.add(replyTo));
      this.stopTyping();
    }

    startOperatorTyping(name) {
      if (this.isClosed()) return;
      // Sent before the message that just arrived, but delivered after it.
      if (Date.now() - this.operatorMessageAt < LATE_TYPING_MS) return;
      this.operatorTyping = name.trim() || this.t('operator');
      clearTimeout(this.operatorTypingTimer);
      this.operatorTypingTimer = setTimeout(() => {
        this.stopOperatorTyping();
        this.render();
      }, OPERATOR_TYPING_MS);
    }

    stopOperatorTyping() {
      clearTimeout(this.operatorTypingTimer);
      this.operatorTyping = '';
    }

    appendDelta(replyTo, text) {
      if (!replyTo || this.answered.has(replyTo) || typeof text !== 'string') return;
      this.drafts.set(replyTo, (this.drafts.get(replyTo) || '') + text);
      this.keepTyping();
    }

    // A message that failed for good leaves the log when the user dismisses it.
    dismissFailed(clientMessageId) {
      const entry = this.pending.get(clientMessageId);
      if (!entry || entry.state !== 'failed') return;
      this.pending.delete(clientMessageId);
      this.render();
      // The focused dismiss button is gone: keep the focus in the widget.
      if (this.isOpen && this.root.activeElement === null) this.focusComposer();
    }

    // --- sending --------------------------------------------------------------------------

    isClosed() {
      return Boolean(this.conversation) && this.conversation.status === 'closed';
    }

    // Files uploaded and waiting to go with the next message typed.
    readyFiles() {
      return this.files.filter((entry) => entry.state === 'done' && !entry.then);
    }

    canSend(text, files) {
      const count = charCount(text.trim());
      const withFiles = Boolean(files && files.length);
      return (count > 0 || withFiles) && count <= MAX_MESSAGE_CHARS && !this.isClosed();
    }

    // A file of the next message is still on its way to the server.
    uploading() {
      return this.files.some((entry) => entry.state === 'uploading' && !entry.then);
    }

    submitComposer() {
      const text = this.el.input.value;
      const files = this.readyFiles();
      if (this.uploading() || this.recorder.active || !this.canSend(text, files)) return;
      this.el.input.value = '';
      this.files = this.files.filter((entry) => !files.includes(entry));
      this.fileNotice = '';
      this.autosize();
      this.sendText(text, files);
    }

    // The message shows at once; the outbox delivers it, in order, when it can.
    sendText(text, files) {
      const sent = files || [];
      if (!this.canSend(text, sent)) return;
      const item = {
        client_message_id: uuid(),
        content: text.trim(),
        attachment_ids: sent.map((entry) => entry.attachment.id),
        files: sent.map((entry) => ({ name: entry.attachment.file_name, size: entry.attachment.size_bytes })),
      };
      this.outbox.add(item);
      this.pending.set(item.client_message_id, { content: item.content, files: item.files, state: 'queued', error: '' });
      this.notice = '';
      this.forceScroll = true;
      this.flushOutbox();
      this.render();
    }

    setPending(clientMessageId, state, error) {
      const entry = this.pending.get(clientMessageId);
      if (entry) this.pending.set(clientMessageId, Object.assign({}, entry, { state, error: error || '' }));
    }

    // --- files ----------------------------------------------------------------------------

    // Chosen, dropped or pasted files: each is checked here (the server checks again, by the
    // content) and uploaded at once, with its progress on its chip.
    addFiles(list) {
      if (this.isClosed()) return;
      let refused = '';
      Array.from(list || []).forEach((file) => {
        const name = file.name || 'file';
        if (this.files.length >= MAX_FILES) refused = this.t('tooManyFiles', { n: MAX_FILES });
        else if (!fileAccepted(file)) refused = this.t('fileWrongType', { name });
        else if (file.size > MAX_FILE_BYTES) refused = this.t('fileTooBig', { name, limit: MAX_FILE_MB });
        else if (!file.size) refused = this.strings.errors.empty_file;
        else this.startUpload(file);
      });
      this.fileNotice = refused;
      this.render();
    }

    startUpload(file, then) {
      const entry = {
        key: uuid(),
        file,
        name: file.name || 'file',
        size: file.size,
        state: 'uploading',
        progress: 0,
        error: '',
        attachment: null,
        abort: null,
        then: then || null,
      };
      this.files.push(entry);
      this.uploadFile(entry);
      return entry;
    }

    async uploadFile(entry) {
      try {
        const conversation = await this.ensureConversation();
        if (!this.files.includes(entry)) return;
        const upload = this.api.upload(conversation.id, entry.file, (progress) => {
          entry.progress = progress;
          this.renderFiles();
        });
        entry.abort = upload.abort;
        entry.attachment = await upload.promise;
        if (!this.files.includes(entry)) return;
        entry.state = 'done';
        entry.progress = 1;
        if (entry.then) entry.then(entry);
      } catch (error) {
        if (!this.files.includes(entry)) return;
        entry.state = 'failed';
        entry.error = this.uploadErrorText(error);
      } finally {
        entry.abort = null;
        this.render();
      }
    }

    // The server's word on a refused file: ours when we have one for its code, else its own.
    uploadErrorText(error) {
      const errors = this.strings.errors;
      if (error.network || error.status >= 500) return this.errorText(error);
      if (Object.prototype.hasOwnProperty.call(errors, error.code)) return errors[error.code];
      return error.message && error.message !== error.code ? error.message : errors.generic;
    }

    removeFile(key) {
      const entry = this.files.find((candidate) => candidate.key === key);
      if (!entry) return;
      if (entry.abort) entry.abort();
      this.files = this.files.filter((candidate) => candidate !== entry);
      this.render();
      this.focusComposer();
    }

    async startRecording() {
      if (this.recorder.active || this.isClosed()) return;
      this.fileNotice = '';
      try {
        await this.recorder.start();
      } catch {
        this.fileNotice = this.t('micDenied');
      }
      this.render();
    }

    cancelRecording() {
      this.recorder.cancel();
      this.render();
      this.focusComposer();
    }

    // The recording goes as a message of its own as soon as it is uploaded.
    async sendRecording() {
      const file = await this.recorder.finish();
      if (file) {
        this.startUpload(file, (entry) => {
          this.files = this.files.filter((candidate) => candidate !== entry);
          this.sendText('', [entry]);
        });
      }
      this.render();
      this.focusComposer();
    }

    sizeText(bytes) {
      const size = Number(bytes) || 0;
      if (size >= 1024 * 1024) return this.t('mb', { n: (size / (1024 * 1024)).toFixed(1) });
      return this.t('kb', { n: Math.max(1, Math.ceil(size / 1024)) });
    }

    async flushOutbox() {
      if (this.flushing || this.browserOffline) return;
      this.flushing = true;
      clearTimeout(this.flushTimer);
      try {
        let item = this.outbox.first();
        while (item && !this.browserOffline) {
          if (!(await this.deliver(item))) {
            this.scheduleFlush();
            break;
          }
          item = this.outbox.first();
        }
      } finally {
        this.flushing = false;
      }
    }

    scheduleFlush() {
      clearTimeout(this.flushTimer);
      this.flushTimer = setTimeout(() => this.flushOutbox(), this.backoff.next());
    }

    flushNow() {
      this.backoff.reset();
      this.flushOutbox();
    }

    // Resolves true when the item is settled (sent, or dropped with an error on its bubble),
    // false when it should be tried again later.
    async deliver(item) {
      const clientMessageId = item.client_message_id;
      this.setPending(clientMessageId, 'sending');
      this.render();
      try {
        const conversation = await this.ensureConversation();
        const message = await this.api.postMessage(
          conversation.id,
          item.content,
          clientMessageId,
          item.attachment_ids
        );
        this.backoff.reset();
        this.outbox.remove(clientMessageId);
        this.acceptMessage(message, false, true);
        this.clearProblem();
        return true;
      } catch (error) {
        return this.deliveryFailed(item, error);
      } finally {
        this.render();
      }
    }

    deliveryFailed(item, error) {
      const clientMessageId = item.client_message_id;
      if (error.retryable) {
        this.setPending(clientMessageId, 'queued');
        if (!error.network) this.problem = { text: this.errorText(error), retry: () => this.flushNow() };
        return false;
      }
      if (this.isGone(error) && this.conversation) {
        this.startOver(this.t('gone'));
        this.setPending(clientMessageId, 'queued');
        return false;
      }
      this.outbox.remove(clientMessageId);
      this.setPending(clientMessageId, 'failed', this.errorText(error));
      if (error.code === 'conversation_closed' && this.conversation) this.conversation.status = 'closed';
      return true;
    }

    // --- actions --------------------------------------------------------------------------

    async runAction(name, action) {
      if (this.busy.has(name)) return;
      this.busy.add(name);
      this.render();
      try {
        await action();
        this.clearProblem();
      } catch (error) {
        this.reportFailure(error, () => this.runAction(name, action));
      } finally {
        this.busy.delete(name);
        this.render();
      }
    }

    escalate() {
      return this.runAction('escalate', async () => {
        const conversation = await this.ensureConversation();
        this.adopt(await this.api.escalate(conversation.id));
      });
    }

    // A hand-over outside operators' hours may come with the offer to reply by email: only a
    // signed-in user can have it, and the server says whether it stands.
    async refreshEmailReply() {
      if (!this.token || !this.conversation) return;
      const id = this.conversation.id;
      try {
        const detail = await this.api.getConversation(id);
        if (this.conversation && this.conversation.id === id && detail.email_reply) {
          this.emailReply = detail.email_reply;
          this.render();
        }
      } catch (error) {
        // The offer is a convenience: without it the answer still comes in the chat.
      }
    }

    setEmailReply(enabled) {
      return this.runAction('email', async () => {
        const id = this.conversation.id;
        const state = await this.api.emailReply(id, enabled);
        if (this.conversation && this.conversation.id === id) this.emailReply = state;
      });
    }

    onEndClick() {
      if (this.confirmingEnd) {
        this.endConversation();
      } else {
        this.confirmingEnd = true;
        this.render();
      }
    }

    cancelEnd() {
      this.confirmingEnd = false;
      this.render();
      this.el.end.focus();
    }

    async endConversation() {
      this.confirmingEnd = false;
      await this.runAction('close', async () => {
        this.adopt(await this.api.close(this.conversation.id));
      });
      if (this.isClosed() && this.isOpen) this.focusComposer();
    }

    chooseRating(value) {
      this.rating.value = value;
      this.render();
    }

    async submitRating() {
      await this.runAction('rate', async () => {
        const comment = this.el.ratingComment.value.trim();
        try {
          this.adopt(await this.api.rate(this.conversation.id, this.rating.value, comment || undefined));
          this.rating.state = 'done';
        } catch (error) {
          if (error.code === 'already_rated') this.rating.state = 'done';
          else if (error.code === 'nothing_to_rate') this.rating.state = 'unavailable';
          else throw error;
        }
      });
      if (this.rating.state !== 'idle') this.el.newConversation.focus();
    }

    // --- connectivity ---------------------------------------------------------------------

    listen() {
      this.handlers = { online: () => this.onOnline(), offline: () => this.onOffline() };
      window.addEventListener('online', this.handlers.online);
      window.addEventListener('offline', this.handlers.offline);
    }

    onOnline() {
      this.browserOffline = false;
      this.unreachable = false;
      this.resume();
      if (this.feed) this.feed.wake();
      this.render();
    }

    onOffline() {
      this.browserOffline = true;
      this.render();
    }

    // Called for every request: a network failure or any answer from the server.
    setReachable(reachable) {
      if (this.unreachable === !reachable) return;
      this.unreachable = !reachable;
      if (reachable) this.resume();
      this.render();
    }

    // The connection is back: retry what failed and send what waits.
    resume() {
      const problem = this.problem;
      if (problem && problem.retry) this.retryProblem();
      this.flushNow();
    }

    reportFailure(error, retry) {
      this.problem = { text: this.errorText(error), retry: error.retryable ? retry : null };
      this.render();
    }

    clearProblem() {
      this.problem = null;
    }

    retryProblem() {
      const retry = this.problem && this.problem.retry;
      this.problem = null;
      this.render();
      if (retry) retry();
    }

    // --- DOM ------------------------------------------------------------------------------

    mount() {
      this.el = {};
      this.host = h('div', { id: HOST_ID });
      this.root = this.host.attachShadow({ mode: 'open' });
      this.el.shell = h('div', { class: 'shell', lang: this.lang }, [this.buildLauncher(), this.buildPanel()]);
      // A constructed style sheet passes a host page's Content-Security-Policy that forbids
      // inline styles; a <style> element is the fallback for browsers without one.
      if (typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype && 'adoptedStyleSheets' in this.root) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(STYLES);
        this.root.adoptedStyleSheets = [sheet];
        this.root.append(this.el.shell);
      } else {
        const style = document.createElement('style');
        style.textContent = STYLES;
        this.root.append(style, this.el.shell);
      }
      this.root.addEventListener('keydown', (event) => {
        if (event.key === 'Escape' && this.isOpen) {
          event.stopPropagation();
          this.close();
        }
      });
      document.body.append(this.host);
    }

    button(label, testId, onClick, className) {
      const button = h('button', { type: 'button', class: className || 'button', 'data-testid': testId }, label);
      button.addEventListener('click', onClick);
      return button;
    }

    buildLauncher() {
      this.el.launcherOpenIcon = icon('chat');
      this.el.launcherCloseIcon = icon('close');
      this.el.unreadDot = h('span', { class: 'launcher__dot', hidden: true });
      this.el.launcher = this.button(
        [this.el.launcherOpenIcon, this.el.launcherCloseIcon, this.el.unreadDot],
        'launcher',
        () => this.toggle(),
        'launcher'
      );
      this.el.launcher.setAttribute('aria-controls', 'lc-panel');
      return this.el.launcher;
    }

    buildPanel() {
      this.el.panel = h(
        'section',
        {
          id: 'lc-panel',
          class: 'panel',
          role: 'dialog',
          'aria-labelledby': 'lc-title',
          'data-testid': 'panel',
          hidden: true,
        },
        [
          this.buildHeader(),
          this.buildToolbar(),
          this.buildEmailReply(),
          this.buildStatus(),
          this.buildBody(),
          this.buildComposer(),
        ]
      );
      this.el.panel.setAttribute('data-drop-label', this.t('dropHere'));
      this.listenForDrops();
      return this.el.panel;
    }

    buildHeader() {
      this.el.subtitle = h('p', { class: 'header__subtitle' });
      const minimize = this.button(icon('close'), 'minimize', () => this.close(), 'icon-button');
      minimize.setAttribute('aria-label', this.t('minimize'));
      return h('header', { class: 'header' }, [
        h('div', { class: 'header__text' }, [
          h('h2', { id: 'lc-title', class: 'header__title' }, this.t('title')),
          this.el.subtitle,
        ]),
        minimize,
      ]);
    }

    buildToolbar() {
      this.el.endPrompt = h('span', { class: 'toolbar__prompt' }, this.t('endPrompt'));
      this.el.escalate = this.button(this.t('escalate'), 'escalate', () => this.escalate());
      this.el.end = this.button(this.t('end'), 'close', () => this.onEndClick());
      this.el.endCancel = this.button(this.t('endCancel'), 'close-cancel', () => this.cancelEnd());
      this.el.toolbar = h('div', { class: 'toolbar' }, [
        this.el.endPrompt,
        this.el.escalate,
        this.el.end,
        this.el.endCancel,
      ]);
      return this.el.toolbar;
    }

    buildEmailReply() {
      this.el.emailReplyText = h('span', { class: 'email-reply__text' });
      this.el.emailReplyOn = this.button(
        this.t('emailOfferButton'),
        'email-reply-on',
        () => this.setEmailReply(true),
        'button button--primary'
      );
      this.el.emailReplyOff = this.button(this.t('emailCancel'), 'email-reply-off', () => this.setEmailReply(false));
      this.el.emailReply = h('div', { class: 'email-reply', 'data-testid': 'email-reply', hidden: true }, [
        this.el.emailReplyText,
        this.el.emailReplyOn,
        this.el.emailReplyOff,
      ]);
      return this.el.emailReply;
    }

    buildStatus() {
      this.el.statusText = h('span', { class: 'status__text' });
      this.el.retry = this.button(this.t('retry'), 'retry', () => this.retryProblem());
      this.el.status = h('div', { class: 'status', role: 'status', 'data-testid': 'status', hidden: true }, [
        this.el.statusText,
        this.el.retry,
      ]);
      return this.el.status;
    }

    buildBody() {
      this.el.greeting = h('p', { class: 'greeting' });
      this.el.log = h('div', {
        class: 'log',
        role: 'log',
        'aria-live': 'polite',
        'aria-label': this.t('logLabel'),
        'data-testid': 'messages',
      });
      this.el.typing = h('div', { class: 'typing', 'data-testid': 'typing', 'aria-live': 'polite', hidden: true }, [
        h('span', { class: 'typing__dot', 'aria-hidden': 'true' }),
        h('span', { class: 'typing__dot', 'aria-hidden': 'true' }),
        h('span', { class: 'typing__dot', 'aria-hidden': 'true' }),
        h('span', { class: 'sr-only', 'data-testid': 'typing-label' }, this.t('typing')),
      ]);
      this.el.newConversation = this.button(
        this.t('newConversation'),
        'new',
        () => this.startNew(),
        'button button--primary'
      );
      this.el.closed = h('div', { class: 'closed', hidden: true }, [this.buildRating(), this.el.newConversation]);
      this.el.body = h('div', { class: 'body' }, [this.el.greeting, this.el.log, this.el.typing, this.el.closed]);
      return this.el.body;
    }

    buildRating() {
      this.el.stars = [1, 2, 3, 4, 5].map((value) => {
        const star = this.button(icon('star'), `rate-${value}`, () => this.chooseRating(value), 'star');
        star.setAttribute('aria-label', this.t('rateStar', { n: value }));
        return star;
      });
      this.el.ratingComment = h('textarea', {
        id: 'lc-rating-comment',
        'data-testid': 'rating-comment',
        rows: 2,
        maxlength: MAX_COMMENT_CHARS,
      });
      this.el.ratingSubmit = this.button(
        this.t('rateSubmit'),
        'rating-submit',
        () => this.submitRating(),
        'button button--primary'
      );
      this.el.ratingForm = h('div', {}, [
        h('p', { id: 'lc-rating-title', class: 'rating__title' }, this.t('rateTitle')),
        h('div', { class: 'stars', role: 'group', 'aria-labelledby': 'lc-rating-title' }, this.el.stars),
        h('label', { class: 'field-label', for: 'lc-rating-comment' }, this.t('rateComment')),
        this.el.ratingComment,
        h('div', { class: 'rating__actions' }, this.el.ratingSubmit),
      ]);
      this.el.ratingResult = h('p', { class: 'rating__result', 'data-testid': 'rating-result' });
      this.el.rating = h('div', { class: 'rating', 'data-testid': 'rating' }, [
        this.el.ratingForm,
        this.el.ratingResult,
      ]);
      return this.el.rating;
    }

    buildComposer() {
      this.el.input = h('textarea', {
        id: 'lc-input',
        class: 'composer__input',
        'data-testid': 'input',
        rows: 1,
        'aria-describedby': 'lc-counter',
      });
      this.el.counter = h('span', { id: 'lc-counter', class: 'counter', 'aria-live': 'polite', hidden: true });
      this.el.send = h(
        'button',
        { type: 'submit', class: 'send', 'data-testid': 'send', 'aria-label': this.t('send') },
        icon('send')
      );
      this.el.fileInput = h('input', {
        type: 'file',
        multiple: true,
        accept: FILE_ACCEPT,
        hidden: true,
        'data-testid': 'file-input',
      });
      this.el.fileInput.addEventListener('change', () => {
        this.addFiles(this.el.fileInput.files);
        this.el.fileInput.value = '';
      });
      this.el.attach = this.button(icon('clip'), 'attach', () => this.el.fileInput.click(), 'tool');
      this.el.attach.setAttribute('aria-label', this.t('attach'));
      this.el.attach.setAttribute('title', this.t('attach'));
      this.el.record = this.button(icon('mic'), 'record', () => this.startRecording(), 'tool');
      this.el.record.setAttribute('aria-label', this.t('record'));
      this.el.record.setAttribute('title', this.t('record'));
      this.el.record.hidden = !voiceSupported();
      this.el.files = h('div', { class: 'composer__files', 'data-testid': 'files', 'aria-label': this.t('filesPending') });
      this.el.fileNotice = h('div', { class: 'composer__notice', role: 'alert', 'data-testid': 'file-notice', hidden: true });
      this.el.recorderTimer = h('span', { class: 'recorder__timer', 'data-testid': 'recorder-timer' });
      const cancel = this.button('×', 'record-cancel', () => this.cancelRecording(), 'file-chip__remove');
      cancel.setAttribute('aria-label', this.t('recordCancel'));
      cancel.setAttribute('title', this.t('recordCancel'));
      const sendRecording = this.button(this.t('recordSend'), 'record-send', () => this.sendRecording(), 'button button--primary');
      this.el.recorder = h('div', { class: 'recorder', 'data-testid': 'recorder', role: 'group', 'aria-label': this.t('recording'), hidden: true }, [
        h('span', { class: 'recorder__dot', 'aria-hidden': 'true' }),
        this.el.recorderTimer,
        cancel,
        sendRecording,
      ]);
      const form = h('form', { class: 'composer' }, [
        this.el.fileInput,
        this.el.attach,
        h('label', { class: 'sr-only', for: 'lc-input' }, this.t('inputLabel')),
        h('div', { class: 'composer__field' }, [
          this.el.fileNotice,
          this.el.files,
          this.el.recorder,
          this.el.input,
          this.el.counter,
        ]),
        this.el.record,
        this.el.send,
      ]);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        this.submitComposer();
      });
      this.el.input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.submitComposer();
        }
      });
      this.el.input.addEventListener('input', () => {
        this.autosize();
        this.renderComposer();
      });
      // A pasted screenshot (or file) is attached; pasted text is typed as usual.
      this.el.input.addEventListener('paste', (event) => {
        const files = event.clipboardData ? Array.from(event.clipboardData.files || []) : [];
        if (!files.length) return;
        event.preventDefault();
        this.addFiles(files);
      });
      return form;
    }

    // Files dropped anywhere on the panel are attached.
    listenForDrops() {
      const panel = this.el.panel;
      const carriesFiles = (event) =>
        Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes('Files');
      const over = (event) => {
        if (!carriesFiles(event) || this.isClosed()) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
        if (!this.dragging) {
          this.dragging = true;
          this.renderDragging();
        }
      };
      panel.addEventListener('dragenter', over);
      panel.addEventListener('dragover', over);
      panel.addEventListener('dragleave', (event) => {
        if (event.relatedTarget && panel.contains(event.relatedTarget)) return;
        this.dragging = false;
        this.renderDragging();
      });
      panel.addEventListener('drop', (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        this.dragging = false;
        this.renderDragging();
        this.addFiles(event.dataTransfer.files);
      });
    }

    autosize() {
      const input = this.el.input;
      input.style.height = 'auto';
      if (input.scrollHeight) input.style.height = `${Math.min(input.scrollHeight + 2, INPUT_MAX_HEIGHT_PX)}px`;
    }

    focusComposer() {
      if (!this.isClosed()) this.el.input.focus();
      else if (!this.el.rating.hidden && !this.el.ratingForm.hidden) this.el.stars[0].focus();
      else this.el.newConversation.focus();
    }

    isNearBottom() {
      const body = this.el.body;
      return body.scrollHeight - body.scrollTop - body.clientHeight < NEAR_BOTTOM_PX;
    }

    scrollToBottom() {
      this.el.body.scrollTop = this.el.body.scrollHeight;
    }

    // --- rendering ------------------------------------------------------------------------

    render() {
      const stick = this.forceScroll || this.isNearBottom();
      this.forceScroll = false;
      this.renderLauncher();
      this.renderHeader();
      this.renderToolbar();
      this.renderEmailReply();
      this.renderStatus();
      this.renderMessages();
      this.renderTyping();
      this.renderClosed();
      this.renderComposer();
      if (stick) this.scrollToBottom();
    }

    // Dots while the assistant writes (the words are for screen readers); "Anna is typing…"
    // in plain sight while an operator does, even if the assistant writes too.
    renderTyping() {
      const label = this.el.typing.querySelector('[data-testid=typing-label]');
      const operator = this.operatorTyping;
      const text = operator ? this.t('operatorTyping', { name: operator }) : this.t('typing');
      if (label.textContent !== text) label.textContent = text;
      label.className = operator ? 'typing__label' : 'sr-only';
      this.el.typing.hidden = this.typing.size === 0 && !operator;
    }

    renderLauncher() {
      const launcher = this.el.launcher;
      launcher.setAttribute('aria-expanded', String(this.isOpen));
      const label = this.isOpen ? 'launcherClose' : this.unread ? 'launcherOpenUnread' : 'launcherOpen';
      launcher.setAttribute('aria-label', this.t(label));
      this.el.launcherOpenIcon.style.display = this.isOpen ? 'none' : '';
      this.el.launcherCloseIcon.style.display = this.isOpen ? '' : 'none';
      this.el.unreadDot.hidden = !this.unread;
      this.el.panel.hidden = !this.isOpen;
      this.el.shell.classList.toggle('shell--open', this.isOpen);
    }

    renderHeader() {
      const conversation = this.conversation;
      let subtitle = 'subtitleAi';
      if (this.isClosed()) subtitle = 'subtitleClosed';
      else if (conversation && conversation.mode === 'human') subtitle = 'subtitleHuman';
      this.el.subtitle.textContent = this.t(subtitle);
    }

    renderToolbar() {
      const conversation = this.conversation;
      const open = !this.isClosed();
      const confirming = this.confirmingEnd && Boolean(conversation) && open;
      // Operators need a question to answer: the server refuses a hand-over before one.
      const wrote = Array.from(this.messages.values()).some((m) => m.role === 'user');
      this.el.escalate.hidden =
        !open || confirming || !wrote || Boolean(conversation && conversation.mode === 'human');
      this.el.escalate.disabled = this.busy.has('escalate');
      this.el.end.hidden = !conversation || !open;
      this.el.end.disabled = this.busy.has('close');
      this.el.end.textContent = this.t(confirming ? 'endConfirm' : 'end');
      this.el.end.className = confirming ? 'button button--danger' : 'button';
      this.el.endPrompt.hidden = !confirming;
      this.el.endCancel.hidden = !confirming;
      this.el.toolbar.hidden = this.el.escalate.hidden && this.el.end.hidden;
    }

    renderEmailReply() {
      const state = this.emailReply;
      const open = Boolean(this.conversation) && !this.isClosed();
      const enabled = Boolean(state && state.enabled);
      const shown = open && Boolean(state) && (enabled || state.available);
      this.el.emailReply.hidden = !shown;
      if (!shown) return;
      const address = state.address || '';
      this.el.emailReplyText.textContent = this.t(enabled ? 'emailEnabled' : 'emailOffer', { address });
      this.el.emailReplyOn.hidden = enabled;
      this.el.emailReplyOff.hidden = !enabled;
      this.el.emailReplyOn.disabled = this.busy.has('email');
      this.el.emailReplyOff.disabled = this.busy.has('email');
    }

    renderStatus() {
      const offline = this.browserOffline || this.unreachable;
      const problem = this.problem;
      const text = offline ? this.t('offline') : problem ? problem.text : '';
      this.el.status.hidden = !text;
      this.el.status.setAttribute('data-kind', offline ? 'offline' : 'error');
      this.el.statusText.textContent = text;
      this.el.retry.hidden = !(problem && problem.retry) || this.browserOffline;
    }

    renderClosed() {
      const closed = this.isClosed();
      const state = this.rating.state;
      const ask = closed && state === 'idle' && this.conversation.rating === null && this.hasAnswer();
      this.el.closed.hidden = !closed;
      this.el.rating.hidden = !(ask || (closed && state !== 'idle'));
      this.el.ratingForm.hidden = state !== 'idle';
      this.el.ratingResult.hidden = state === 'idle';
      this.el.ratingResult.textContent = state === 'done' ? this.t('rateThanks') : this.t('rateUnavailable');
      this.el.stars.forEach((star, index) => {
        star.classList.toggle('star--on', index < this.rating.value);
        star.setAttribute('aria-pressed', String(index + 1 === this.rating.value));
      });
      this.el.ratingSubmit.disabled = !this.rating.value || this.busy.has('rate');
    }

    renderComposer() {
      const closed = this.isClosed();
      const count = charCount(this.el.input.value.trim());
      const recording = this.recorder.active;
      this.el.input.disabled = closed;
      this.el.input.placeholder = this.t(closed ? 'placeholderClosed' : 'placeholder');
      this.el.input.hidden = recording;
      this.el.send.disabled =
        closed || recording || this.uploading() || !this.canSend(this.el.input.value, this.readyFiles());
      this.el.counter.hidden = closed || recording || count < COUNTER_FROM_CHARS;
      this.el.counter.textContent = `${count} / ${MAX_MESSAGE_CHARS}`;
      this.el.counter.classList.toggle('counter--over', count > MAX_MESSAGE_CHARS);
      this.el.attach.disabled = closed || this.files.length >= MAX_FILES;
      this.el.record.disabled = closed || recording;
      this.el.fileNotice.hidden = !this.fileNotice;
      this.el.fileNotice.textContent = this.fileNotice;
      this.renderFiles();
      this.renderRecorder();
    }

    // One chip per chosen file: its name and size, a progress bar while it uploads, the
    // server's reason when it was refused, and × to remove it.
    renderFiles() {
      const chips = this.files.map((entry) => {
        const failed = entry.state === 'failed';
        const remove = this.button('×', 'file-remove', () => this.removeFile(entry.key), 'file-chip__remove');
        remove.setAttribute('aria-label', this.t('removeFile', { name: entry.name }));
        remove.setAttribute('title', this.t('removeFile', { name: entry.name }));
        const chip = h(
          'div',
          {
            class: failed ? 'file-chip file-chip--failed' : 'file-chip',
            'data-testid': 'file-chip',
            'data-state': entry.state,
          },
          [
            h('span', { class: 'file-chip__name' }, entry.name),
            h('span', { class: 'file-chip__size' }, this.sizeText(entry.size)),
            remove,
            failed ? h('span', { class: 'file-chip__error' }, this.t('uploadFailed', { reason: entry.error })) : null,
          ]
        );
        if (entry.state === 'uploading') {
          const bar = h('progress', {
            class: 'file-chip__progress',
            max: 100,
            value: Math.round(entry.progress * 100),
            'aria-label': this.t('uploading'),
            'data-testid': 'file-progress',
          });
          chip.append(bar);
        }
        return chip;
      });
      this.el.files.replaceChildren(...chips);
    }

    renderRecorder() {
      const active = this.recorder.active;
      this.el.recorder.hidden = !active;
      this.el.recorderTimer.textContent = `${this.t('recording')} ${this.recorder.timerText()}`;
      this.el.input.hidden = active;
      if (this.el.record) this.el.record.disabled = this.isClosed() || active;
      if (this.el.send) this.el.send.disabled = this.el.send.disabled || active;
    }

    renderDragging() {
      this.el.panel.classList.toggle('panel--dragging', this.dragging);
    }

    hasAnswer() {
      return Array.from(this.messages.values()).some(
        (message) => message.role === 'assistant' || message.role === 'operator'
      );
    }

    // What the log shows, in order: stored messages by seq, replies being written, then
    // messages not yet stored. A pending message and its stored form share a key, so the
    // bubble is updated in place when the server confirms it.
    entries() {
      const stored = Array.from(this.messages.values()).sort((a, b) => a.seq - b.seq);
      const latest = stored[stored.length - 1];
      // A failed message will not be answered; only messages still to be sent make the
      // latest answer (and its suggestions) stale.
      const unsent = Array.from(this.pending.values()).some((entry) => entry.state !== 'failed');
      const entries = stored.map((message) => ({
        key: message.client_message_id ? `c:${message.client_message_id}` : `m:${message.id}`,
        data: message,
        stale: message !== latest || unsent || this.isClosed(),
        build: () => this.buildMessage(message),
      }));
      this.drafts.forEach((text, replyTo) => {
        entries.push({
          key: `d:${replyTo}`,
          data: text,
          stale: true,
          build: () => this.buildDraft(text),
          update: (node) => this.updateDraft(node, text),
        });
      });
      this.pending.forEach((entry, clientMessageId) => {
        entries.push({
          key: `c:${clientMessageId}`,
          data: entry,
          stale: true,
          build: () => this.buildPending(clientMessageId, entry),
        });
      });
      return entries;
    }

    // Keep one node per entry, rebuild (or update in place) only entries whose data changed,
    // move nodes only when out of order.
    renderMessages() {
      const log = this.el.log;
      const entries = this.entries();
      const keys = new Set();
      let cursor = log.firstChild;
      entries.forEach((entry) => {
        keys.add(entry.key);
        let cached = this.nodes.get(entry.key);
        if (cached && cached.data !== entry.data && entry.update) {
          entry.update(cached.node);
          cached.data = entry.data;
        }
        if (cached && cached.data !== entry.data) {
          if (cursor === cached.node) cursor = cursor.nextSibling;
          cached.node.remove();
          cached = null;
        }
        if (!cached) {
          cached = { node: entry.build(), data: entry.data };
          this.nodes.set(entry.key, cached);
        }
        cached.node.classList.toggle('msg--stale', entry.stale);
        if (cached.node === cursor) cursor = cursor.nextSibling;
        else log.insertBefore(cached.node, cursor);
      });
      this.nodes.forEach((cached, key) => {
        if (keys.has(key)) return;
        cached.node.remove();
        this.nodes.delete(key);
      });
      this.el.greeting.hidden = entries.length > 0;
      this.el.greeting.textContent = this.notice || this.t('greeting');
    }

    messageShell(role, attrs) {
      return h('div', Object.assign({ class: `msg msg--${role}`, 'data-testid': 'message', 'data-role': role }, attrs));
    }

    // The text of a message, after a label that only screen readers announce.
    appendText(node, role, content) {
      const speaker = { user: 'you', assistant: 'assistant' }[role];
      if (speaker) node.append(h('span', { class: 'sr-only' }, `${this.t(speaker)}: `));
      const bubble = h('div', { class: 'msg__bubble' });
      // renderMarkdown escapes every character of the content before adding its own markup.
      bubble.innerHTML = renderMarkdown(content);
      node.append(bubble);
    }

    buildMessage(message) {
      const role = ROLES.includes(message.role) ? message.role : 'system';
      const meta = message.metadata && typeof message.metadata === 'object' ? message.metadata : {};
      const node = this.messageShell(role, { 'data-seq': message.seq, 'data-id': message.id });
      if (role === 'operator') node.append(h('div', { class: 'msg__author' }, this.operatorLabel(meta)));
      const files = attachmentsOf(message);
      if (message.content.trim() || !files.length) this.appendText(node, role, message.content);
      this.appendAttachments(node, files);
      if (role === 'assistant' && Array.isArray(meta.sources)) this.appendSources(node, meta.sources);
      if (role === 'assistant' && Array.isArray(meta.suggestions)) this.appendChips(node, meta.suggestions);
      if (meta.edited_at) node.append(h('div', { class: 'msg__meta' }, this.t('edited')));
      return node;
    }

    operatorLabel(meta) {
      const name = meta.operator && typeof meta.operator.name === 'string' ? meta.operator.name.trim() : '';
      return name ? this.t('operatorNamed', { name }) : this.t('operator');
    }

    // Hidden from screen readers, so that the live log does not read out every partial
    // answer: the final message, which replaces the draft, is announced instead.
    buildDraft(text) {
      const node = this.messageShell('assistant', {
        'data-streaming': 'true',
        'aria-busy': 'true',
        'aria-hidden': 'true',
      });
      this.appendText(node, 'assistant', text);
      return node;
    }

    updateDraft(node, text) {
      // renderMarkdown escapes every character of the content before adding its own markup.
      node.querySelector('.msg__bubble').innerHTML = renderMarkdown(text);
    }

    buildPending(clientMessageId, entry) {
      const failed = entry.state === 'failed';
      const node = this.messageShell('user', { 'data-pending': 'true', 'data-client-id': clientMessageId });
      if (failed) node.classList.add('msg--failed');
      const status = failed
        ? this.t('failed', { reason: entry.error })
        : this.t(entry.state === 'sending' ? 'sending' : 'queued');
      const files = Array.isArray(entry.files) ? entry.files : [];
      if (entry.content || !files.length) this.appendText(node, 'user', entry.content);
      if (files.length) {
        const names = files.map((file) => `${file.name} (${this.sizeText(file.size)})`).join(', ');
        node.append(h('div', { class: 'pending-files', 'data-testid': 'pending-files' }, names));
      }
      const meta = h('div', { class: failed ? 'msg__meta msg__meta--error' : 'msg__meta' }, status);
      if (failed) {
        const dismiss = this.button('×', 'dismiss', () => this.dismissFailed(clientMessageId), 'msg__dismiss');
        dismiss.setAttribute('aria-label', this.t('dismiss'));
        dismiss.setAttribute('title', this.t('dismiss'));
        meta.append(' ', dismiss);
      }
      node.append(meta);
      return node;
    }

    // A message's files: images as thumbnails that open the file, voice as a player with its
    // transcript under it, other files as a link with their name and size.
    appendAttachments(node, files) {
      if (!files.length) return;
      const list = h('div', { class: 'files', 'data-testid': 'attachments' });
      files.forEach((file) => {
        const built = this.buildAttachment(file);
        if (built) list.append(built);
      });
      node.append(list);
    }

    // Links are signed paths from the site's root; only http(s) is ever put in a page.
    fileUrl(file) {
      try {
        const url = new URL(file.url, `${this.siteBase}/`);
        return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : '';
      } catch {
        return '';
      }
    }

    buildAttachment(file) {
      const url = this.fileUrl(file);
      if (!url) return null;
      const name = typeof file.file_name === 'string' ? file.file_name : '';
      const link = { href: url, target: '_blank', rel: 'noopener noreferrer' };
      if (file.kind === 'image') {
        const thumb = h('img', { class: 'file__thumb', src: url, alt: name, 'data-testid': 'attachment-image' });
        const label = this.t('openImage', { name });
        return h('a', Object.assign({ class: 'file file--image', title: label, 'aria-label': label }, link), thumb);
      }
      if (file.kind === 'voice') {
        const audio = h('audio', {
          controls: true,
          preload: 'metadata',
          src: url,
          'aria-label': this.t('voiceMessage'),
          'data-testid': 'attachment-voice',
        });
        const said = typeof file.transcript === 'string' ? file.transcript.trim() : '';
        const transcript = said
          ? h('p', { class: 'file__transcript', 'data-testid': 'transcript' }, [
              h('span', { class: 'sr-only' }, `${this.t('transcript')}: `),
              said,
            ])
          : null;
        return h('div', { class: 'file file--voice' }, [audio, transcript]);
      }
      return h('a', Object.assign({ class: 'file file--doc', 'data-testid': 'attachment-file' }, link), [
        h('span', { class: 'file__name' }, name),
        h('span', { class: 'file__size' }, this.sizeText(file.size_bytes)),
      ]);
    }

    kbUrl(path) {
      const segments = path.replace(/^\/+/, '').split('/').map(encodeURIComponent);
      return `${this.siteBase}/kb/${segments.join('/')}`;
    }

    appendSources(node, sources) {
      const seen = new Set();
      const links = [];
      sources.forEach((source) => {
        if (!source || typeof source.path !== 'string' || !source.path) return;
        const title = source.title || source.path;
        const label = source.heading && source.heading !== title ? `${title} — ${source.heading}` : title;
        const href = this.kbUrl(source.path);
        if (seen.has(href + label)) return;
        seen.add(href + label);
        links.push(h('li', {}, h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, label)));
      });
      if (!links.length) return;
      node.append(
        h('div', { class: 'sources' }, [h('span', { class: 'sources__title' }, this.t('sources')), h('ul', {}, links)])
      );
    }

    appendChips(node, suggestions) {
      const titles = suggestions
        .map((suggestion) => (suggestion && typeof suggestion.title === 'string' ? suggestion.title.trim() : ''))
        .filter((title, index, all) => title && all.indexOf(title) === index);
      if (!titles.length) return;
      const chips = titles.map((title) => this.button(title, 'suggestion', () => this.sendText(title), 'chip'));
      node.append(h('div', { class: 'chips', role: 'group', 'aria-label': this.t('suggestions') }, chips));
    }
  }

  // ---------------------------------------------------------------------------------------
  // window.LectioConcierge

  function createPublicApi() {
    let widget = null;
    let waiting = null; // options of an init waiting for <body>

    const startWaiting = () => {
      widget = new Widget(waiting);
      waiting = null;
    };

    return {
      init(options) {
        if (widget || waiting) return;
        const given = options || {};
        const settings = {
          api: given.api || scriptApiBase(SCRIPT),
          token: given.token || '',
          lang: given.lang || DEFAULT_LANG,
          transport: given.transport || 'auto',
        };
        if (document.body) {
          widget = new Widget(settings);
        } else {
          waiting = settings;
          document.addEventListener('DOMContentLoaded', startWaiting, { once: true });
        }
      },
      destroy() {
        if (waiting) document.removeEventListener('DOMContentLoaded', startWaiting);
        waiting = null;
        if (widget) widget.destroy();
        widget = null;
      },
      open() {
        if (widget) widget.open();
      },
      close() {
        if (widget) widget.close();
      },
      debug: {
        // Close the current EventSource and connect afresh: simulates a cut connection.
        dropStream() {
          if (widget) widget.dropStream();
        },
        // Skip the next stream token renewal, as a tab asleep past it would: the server then
        // ends the stream when the token expires, and the widget must resume after it.
        pauseTokenRenewal() {
          if (widget) widget.pauseTokenRenewal();
        },
        // How many streams the server has ended because their token expired.
        expiredStreams() {
          return widget ? widget.expiredStreams() : 0;
        },
      },
    };
  }

  function autoInit(api, script) {
    if (!script || !AUTO_INIT_ATTRIBUTES.some((name) => script.hasAttribute(name))) return;
    api.init({
      api: script.getAttribute('data-api') || scriptApiBase(script),
      token: script.getAttribute('data-token') || '',
      lang: script.getAttribute('data-lang') || DEFAULT_LANG,
      transport: script.getAttribute('data-transport') || 'auto',
    });
  }

  // A second copy of the script reuses the first one's widget.
  const existing = window.LectioConcierge;
  if (existing && typeof existing.init === 'function') {
    autoInit(existing, SCRIPT);
  } else {
    window.LectioConcierge = createPublicApi();
    autoInit(window.LectioConcierge, SCRIPT);
  }
})();
