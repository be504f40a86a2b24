// One conversation: its page (transcript, reply box, runs, model calls, facts, notes), loaded
// when opened and reloaded on activity; and what an operator does there (reply, hand back to
// the assistant, close, add a note, "typing…").

import { api, report, upload } from './api.js';
import { LIST_DEBOUNCE_MS, TYPING_EVERY_MS } from './config.js';
import { renderInfo, renderLlmCalls, renderNotes } from './conversation-info.js';
import {
  loadList,
  markOpenRow,
  modeBadge,
  ownerTitle,
  ratingEl,
  statusBadge,
} from './conversations.js';
import { h, setBusy } from './dom.js';
import { t } from './i18n.js';
import { navigate } from './nav.js';
import { renderRunsTable } from './runs.js';
import { cancel, els, later, state } from './state.js';
import { fileSize, renderTranscript } from './transcript.js';

export function openDetail(id) {
  const detail = state.detail;
  els.listView.hidden = true;
  els.detailView.hidden = false;
  if (detail.id === id && detail.els) return;
  state.detail = { id, data: null, gen: detail.gen + 1, busy: new Set(), els: null };
  buildDetail();
  markOpenRow();
  loadDetail(true);
}

export function closeDetail(returnFocus) {
  const id = state.detail.id;
  cancel('detail');
  state.detail = { id: null, data: null, gen: state.detail.gen + 1, busy: new Set(), els: null };
  els.detailView.replaceChildren();
  els.detailView.hidden = true;
  els.listView.hidden = false;
  markOpenRow();
  if (returnFocus && id) {
    const row = Array.from(els.convRows.querySelectorAll('tr[data-id]')).find((r) => r.dataset.id === id);
    if (row) row.focus({ preventScroll: false });
  }
}

function buildDetail() {
  const d = {};
  d.title = h('h2', { class: 'detail-title', tabindex: '-1' }, t('loading'));
  d.badges = h('div', { class: 'badges' });
  d.handBack = h('button', { type: 'button', class: 'btn', 'data-testid': 'hand-back', disabled: true, onclick: handBack }, t('handBack'));
  d.close = h('button', { type: 'button', class: 'btn danger', 'data-testid': 'close-conversation', disabled: true, onclick: closeConversation }, t('closeConversation'));
  d.refresh = h('button', { type: 'button', class: 'btn ghost', onclick: () => loadDetail() }, t('refresh'));
  const head = h('div', { class: 'detail-head' },
    h('button', { type: 'button', class: 'btn ghost', 'data-testid': 'back-to-list', onclick: () => navigate('#/conversations') }, t('backToList')),
    d.title, d.badges,
    h('div', { class: 'controls' }, d.handBack, d.close, d.refresh));

  d.messages = new Map();
  d.transcript = h('div', { class: 'transcript', role: 'log', 'aria-label': t('transcriptTitle'), 'data-testid': 'transcript' });
  d.noMessages = h('p', { class: 'muted', hidden: true }, t('noMessages'));
  d.replyText = h('textarea', { id: 'reply-text', rows: '3', placeholder: t('replyPlaceholder'), 'data-testid': 'reply-input', disabled: true });
  d.replyText.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      d.replySend.click();
    }
  });
  d.typingSentAt = 0;
  d.replyText.addEventListener('input', () => announceTyping(d));
  d.replySend = h('button', { type: 'submit', class: 'btn primary', 'data-testid': 'reply-send', disabled: true }, t('send'));
  d.replyHint = h('span', { class: 'hint' });
  // Files for the reply, uploaded as soon as they are chosen: { key, name, size, state, id, error }.
  d.files = [];
  d.fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'data-testid': 'reply-file-input', accept: 'image/png,image/jpeg,image/webp,application/pdf,text/plain,audio/*' });
  d.fileInput.addEventListener('change', () => {
    addReplyFiles(d, Array.from(d.fileInput.files || []));
    d.fileInput.value = '';
  });
  d.attach = h('button', { type: 'button', class: 'btn ghost', 'data-testid': 'reply-attach', title: t('attachHint'), disabled: true, onclick: () => d.fileInput.click() }, t('attachFiles'));
  d.fileList = h('div', { class: 'reply-files', 'data-testid': 'reply-files' });
  d.replyForm = h('form', { class: 'composer', onsubmit: sendReply },
    h('label', { for: 'reply-text', class: 'sr-only' }, t('replyLabel')),
    d.replyText,
    d.fileList,
    h('div', { class: 'composer-bar' }, d.fileInput, d.attach, d.replyHint, d.replySend));
  d.runs = h('div');
  d.llm = h('div');
  const main = h('div', { class: 'detail-main' },
    h('div', { class: 'box' }, h('h3', null, t('transcriptTitle')), d.noMessages, d.transcript, d.replyForm),
    h('div', { class: 'box' }, h('h3', null, t('runsTitle')), d.runs),
    h('div', { class: 'box' }, h('h3', null, t('llmTitle')), d.llm));

  d.info = h('dl', { class: 'info' });
  d.notes = h('ul', { class: 'notes', 'data-testid': 'notes' });
  d.noteText = h('textarea', { id: 'note-text', rows: '2', placeholder: t('notePlaceholder'), 'data-testid': 'note-input' });
  d.noteSend = h('button', { type: 'submit', class: 'btn', 'data-testid': 'note-add', disabled: true }, t('addNote'));
  d.noteForm = h('form', { class: 'composer', onsubmit: addNote },
    h('label', { for: 'note-text', class: 'sr-only' }, t('noteLabel')),
    d.noteText,
    h('div', { class: 'composer-bar' }, h('span', { class: 'hint' }), d.noteSend));
  const side = h('div', { class: 'detail-side' },
    h('div', { class: 'box' }, h('h3', null, t('infoTitle')), d.info),
    h('div', { class: 'box' }, h('h3', null, t('notesTitle')), d.notes, d.noteForm));

  els.detailView.replaceChildren(head, h('div', { class: 'detail-body' }, main, side));
  state.detail.els = d;
}

export async function loadDetail(initial) {
  const detail = state.detail;
  const id = detail.id;
  if (!id) return;
  const gen = ++detail.gen;
  try {
    const data = await api('GET', `/admin/conversations/${encodeURIComponent(id)}/`);
    if (state.detail !== detail || gen !== detail.gen) return;
    detail.data = data;
    renderDetail(data, initial);
  } catch (error) {
    if (state.detail !== detail || gen !== detail.gen) return;
    if (initial && detail.els) {
      detail.els.title.textContent = error.status === 404 ? t('notFound') : t('loadFailed');
    }
    report(error);
  }
}

function renderDetail(data, initial) {
  const d = state.detail.els;
  d.title.textContent = ownerTitle(data);
  d.badges.replaceChildren(...[modeBadge(data.mode), statusBadge(data.status), data.rating ? ratingEl(data.rating, data.rating_comment) : null].filter(Boolean));
  renderInfo(data);
  renderTranscript(data, initial);
  renderNotes(data.notes);
  renderRunsTable(d.runs, data.action_runs, false);
  renderLlmCalls(data.llm_calls);
  updateDetailControls();
  if (initial) d.title.focus({ preventScroll: true });
}

function updateDetailControls() {
  const detail = state.detail;
  const d = detail.els;
  if (!d) return;
  const data = detail.data;
  const closed = !data || data.status === 'closed';
  d.replyText.disabled = closed;
  const uploading = d.files.some((file) => file.state === 'uploading');
  d.replySend.disabled = closed || uploading || detail.busy.has('reply');
  d.attach.disabled = closed || d.files.length >= MAX_REPLY_FILES;
  d.handBack.disabled = closed || data.mode === 'ai' || detail.busy.has('ai');
  d.close.disabled = closed || detail.busy.has('close');
  d.noteSend.disabled = !data || detail.busy.has('note');
  d.replyHint.textContent = !data ? '' : closed ? t('hintClosed') : data.mode === 'human' ? t('hintHuman') : t('hintAi');
}

async function detailAction(key, button, busyText, request) {
  const detail = state.detail;
  const id = detail.id;
  if (!id || detail.busy.has(key)) return false;
  detail.busy.add(key);
  setBusy(button, true, busyText);
  updateDetailControls();
  let ok = false;
  try {
    await request(id);
    ok = true;
  } catch (error) {
    report(error);
  } finally {
    detail.busy.delete(key);
    setBusy(button, false);
    if (state.detail === detail) {
      updateDetailControls();
      if (ok) loadDetail();
    }
    if (ok && state.list.loaded) later('list', LIST_DEBOUNCE_MS, () => loadList('refresh'));
  }
  return ok;
}

// While the reply box is being typed in, the user's widget shows "Anna is typing…": one
// notice every few seconds, best effort (a lost one only shortens the indicator). None while
// a reply is being sent: it could reach the widget after the reply and show a stale notice.
function announceTyping(d) {
  const id = state.detail.id;
  const now = Date.now();
  if (!id || state.detail.els !== d || state.detail.busy.has('reply')) return;
  if (!d.replyText.value.trim() || now - d.typingSentAt < TYPING_EVERY_MS) return;
  d.typingSentAt = now;
  api('POST', `/admin/conversations/${encodeURIComponent(id)}/typing/`).catch(() => {});
}

// How many files one reply carries (as the API takes them).
const MAX_REPLY_FILES = 5;

function addReplyFiles(d, chosen) {
  const id = state.detail.id;
  if (!id) return;
  for (const file of chosen) {
    if (d.files.length >= MAX_REPLY_FILES) break;
    const entry = { key: `${Date.now()}-${Math.random()}`, name: file.name || 'file', size: file.size, state: 'uploading', id: null, error: '' };
    d.files.push(entry);
    upload(`/admin/conversations/${encodeURIComponent(id)}/attachments/`, file).then(
      (stored) => {
        entry.state = 'done';
        entry.id = stored.id;
      },
      (error) => {
        entry.state = 'failed';
        entry.error = error.message || String(error);
      },
    ).finally(() => {
      if (state.detail.els === d) renderReplyFiles(d);
    });
  }
  renderReplyFiles(d);
}

function renderReplyFiles(d) {
  d.fileList.replaceChildren(...d.files.map((entry) => {
    const status = entry.state === 'uploading' ? t('uploadingFile') : entry.state === 'failed' ? t('uploadFailedFile', { reason: entry.error }) : fileSize(entry.size);
    const remove = h('button', { type: 'button', 'aria-label': t('removeFile', { name: entry.name }), title: t('removeFile', { name: entry.name }), onclick: () => {
      d.files = d.files.filter((other) => other !== entry);
      renderReplyFiles(d);
    } }, '×');
    return h('span', { class: entry.state === 'failed' ? 'reply-file failed' : 'reply-file', 'data-testid': 'reply-file', 'data-state': entry.state }, entry.name, ' ', h('span', { class: 'muted' }, status), remove);
  }));
  updateDetailControls();
}

async function sendReply(event) {
  event.preventDefault();
  const d = state.detail.els;
  const content = d.replyText.value.trim();
  const files = d.files.filter((file) => file.state === 'done');
  if (!content && !files.length) {
    d.replyText.focus();
    return;
  }
  const body = { content };
  if (files.length) body.attachment_ids = files.map((file) => file.id);
  const ok = await detailAction('reply', d.replySend, t('sending'), (id) =>
    api('POST', `/admin/conversations/${encodeURIComponent(id)}/reply/`, { body }));
  if (ok && state.detail.els === d) {
    d.files = d.files.filter((file) => !files.includes(file));
    renderReplyFiles(d);
    // The next keystroke announces typing again (the reply ended the previous notice).
    d.typingSentAt = 0;
    // Keep what the operator typed while the reply was on its way.
    if (d.replyText.value.trim() === content) {
      d.replyText.value = '';
      d.replyText.focus();
    }
  }
}

function handBack() {
  const d = state.detail.els;
  detailAction('ai', d.handBack, null, (id) => api('POST', `/admin/conversations/${encodeURIComponent(id)}/ai/`));
}

function closeConversation() {
  const d = state.detail.els;
  if (!window.confirm(t('confirmClose'))) return;
  detailAction('close', d.close, null, (id) => api('POST', `/admin/conversations/${encodeURIComponent(id)}/close/`));
}

async function addNote(event) {
  event.preventDefault();
  const detail = state.detail;
  const d = detail.els;
  const content = d.noteText.value.trim();
  if (!content) {
    d.noteText.focus();
    return;
  }
  let notes = null;
  const ok = await detailAction('note', d.noteSend, null, async (id) => {
    notes = await api('POST', `/admin/conversations/${encodeURIComponent(id)}/notes/`, { body: { content } });
  });
  if (ok && state.detail === detail) {
    d.noteText.value = '';
    if (Array.isArray(notes)) renderNotes(notes);
  }
}
