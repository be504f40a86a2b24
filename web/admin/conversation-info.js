// The side boxes of an open conversation: its facts, internal notes and the model calls made
// for it, rendered into the open conversation's page.

import { ownerLine, ownerTitle, pageLink, ratingEl } from './conversations.js';
import { badge, externalLink, h } from './dom.js';
import { fmtMs, fmtNumber, fmtWaited, timeEl } from './format.js';
import { label, t } from './i18n.js';
import { state } from './state.js';

function infoRow(term, ...value) {
  return [h('dt', null, term), h('dd', null, ...value)];
}

function copyButton(text) {
  const button = h('button', { type: 'button', class: 'btn ghost small', onclick: () => {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(text).then(() => {
      button.textContent = t('copied');
      setTimeout(() => { button.textContent = t('copy'); }, 1500);
    }, () => {});
  } }, t('copy'));
  return button;
}

/** A t.me link to a forum topic of a supergroup (chat ids "-100…"). */
function telegramTopicHref(topic) {
  const chat = String(topic.chat_id || '');
  if (!chat.startsWith('-100') || topic.thread_id === null || topic.thread_id === undefined) return null;
  return `https://t.me/c/${encodeURIComponent(chat.slice(4))}/${encodeURIComponent(topic.thread_id)}`;
}

export function renderInfo(data) {
  const d = state.detail.els;
  const rows = [];
  rows.push(infoRow(t('infoId'), h('code', null, data.id), ' ', copyButton(data.id)));
  rows.push(infoRow(t('infoUser'), ownerTitle(data), ownerLine(data) ? h('div', { class: 'muted small' }, ownerLine(data)) : null));
  rows.push(infoRow(t('infoMessages'), fmtNumber(data.last_seq)));
  rows.push(infoRow(t('infoCreated'), timeEl(data.created_at, true)));
  rows.push(infoRow(t('infoUpdated'), timeEl(data.updated_at, true)));
  if (data.closed_at) rows.push(infoRow(t('infoClosed'), timeEl(data.closed_at, true)));
  if (data.page_url || data.page_title) {
    rows.push(infoRow(t('infoPage'), pageLink(data), data.page_title && data.page_url ? h('div', { class: 'muted small pre-wrap' }, data.page_url) : null));
  }
  if (data.escalated_at) {
    rows.push(infoRow(t('infoEscalated'), timeEl(data.escalated_at, true), h('div', { class: 'muted small' }, label('reasons', data.escalation_reason))));
  }
  if (data.waiting_since) {
    rows.push(infoRow(t('infoWaiting'), h('span', { class: 'waiting', 'data-testid': 'info-waiting' }, fmtWaited(data.waiting_since)), h('div', { class: 'muted small' }, timeEl(data.waiting_since, true))));
  }
  if (data.assignee) rows.push(infoRow(t('infoAssignee'), h('span', { 'data-testid': 'info-assignee' }, data.assignee)));
  if (data.rating !== null && data.rating !== undefined) {
    rows.push(infoRow(t('infoRating'), ratingEl(data.rating, data.rating_comment), data.rating_comment ? h('div', { class: 'pre-wrap' }, data.rating_comment) : null));
  }
  const topic = data.telegram_topic;
  if (topic && typeof topic === 'object') {
    const href = telegramTopicHref(topic);
    rows.push(infoRow(t('infoTopic'),
      topic.name || t('dash'),
      href ? [' ', externalLink(href, t('openInTelegram'))] : null,
      h('div', { class: 'muted small' }, t('topicIds', { chat: topic.chat_id, thread: topic.thread_id === null || topic.thread_id === undefined ? t('dash') : topic.thread_id }))));
  }
  d.info.replaceChildren(...rows.flat());
}

export function renderNotes(notes) {
  const d = state.detail.els;
  const list = Array.isArray(notes) ? notes : [];
  if (!list.length) {
    d.notes.replaceChildren(h('li', { class: 'muted', style: 'background: none; border: 0; padding: 0' }, t('notesEmpty')));
    return;
  }
  d.notes.replaceChildren(...list.map((note) => h('li', { 'data-testid': 'note' },
    h('div', { class: 'note-head' }, h('strong', null, note.author || t('dash')), h('span', null, label('noteSources', note.source)), timeEl(note.created_at)),
    h('div', { class: 'pre-wrap' }, note.content || ''))));
}

export function renderLlmCalls(calls) {
  const d = state.detail.els;
  const list = Array.isArray(calls) ? calls : [];
  if (!list.length) {
    d.llm.replaceChildren(h('p', { class: 'muted' }, t('llmEmpty')));
    return;
  }
  const rows = list.map((call) => {
    const ok = call.outcome === 'ok' || call.outcome === 'success' || call.outcome === 'succeeded';
    const prompt = Number(call.prompt_tokens) || 0;
    const completion = Number(call.completion_tokens) || 0;
    return h('tr', { 'data-testid': 'llm-call' },
      h('td', null, timeEl(call.created_at)),
      h('td', null, call.purpose || t('dash')),
      h('td', null, h('span', { class: 'mono' }, call.model || t('dash')), call.provider ? h('div', { class: 'muted small' }, call.provider) : null),
      h('td', { class: 'mono small' }, call.prompt_version || t('dash')),
      h('td', { class: 'num', title: t('tokensTitle', { prompt: fmtNumber(prompt), completion: fmtNumber(completion) }) }, fmtNumber(prompt + completion)),
      h('td', { class: 'num' }, fmtMs(call.latency_ms)),
      h('td', null, badge(call.outcome || t('dash'), ok ? 'ok' : 'bad'), call.error ? h('div', { class: 'small pre-wrap', style: 'color: var(--bad)' }, call.error) : null));
  });
  d.llm.replaceChildren(h('div', { class: 'table-wrap' },
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('colTime')),
        h('th', { scope: 'col' }, t('colPurpose')),
        h('th', { scope: 'col' }, t('colModel')),
        h('th', { scope: 'col' }, t('colPrompt')),
        h('th', { scope: 'col', class: 'num' }, t('colTokens')),
        h('th', { scope: 'col', class: 'num' }, t('colLatency')),
        h('th', { scope: 'col' }, t('colOutcome')))),
      h('tbody', null, rows))));
}

/** Run one operator action on the open conversation, then reload it. */
