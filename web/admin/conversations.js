// The conversation list: filters, pages ("more"), refresh on activity with changed rows
// highlighted; and how a conversation's owner, mode, status and rating are shown. Above it,
// Telegram's alerts: a support group the bot was kicked from, or one upgraded to a supergroup.

import { api, report } from './api.js';
import { MAX_PAGE_SIZE, PAGE_SIZE } from './config.js';
import { badge, clamp, emptyRow, externalLink, h, setBusy, webHref } from './dom.js';
import { fmtDateTime, fmtNumber, fmtWaited, timeEl } from './format.js';
import { label, t } from './i18n.js';
import { conversationHash, navigate } from './nav.js';
import { els, state } from './state.js';

function listQuery(extra) {
  return Object.assign({
    mode: els.fMode.value,
    status: els.fStatus.value,
    rating: els.fRating.value,
    from: els.fFrom.value,
    to: els.fTo.value,
  }, extra);
}

/** `reset`: the first page anew; `more`: the next page; `refresh`: what is shown, reloaded. */
export async function loadList(mode) {
  const list = state.list;
  if (mode === 'more' && !list.next) return;
  const gen = ++list.gen;
  list.loaded = true;
  let query;
  if (mode === 'more') {
    query = listQuery({ limit: PAGE_SIZE, cursor: list.next });
    setBusy(els.convMore, true, t('loading'));
  } else {
    const limit = mode === 'refresh' ? clamp(list.items.length, PAGE_SIZE, MAX_PAGE_SIZE) : PAGE_SIZE;
    query = listQuery({ limit });
  }
  if (mode === 'reset') {
    list.items = [];
    list.next = null;
    list.seen = new Map();
    els.convRows.replaceChildren(emptyRow(6, t('loading')));
    els.convMore.hidden = true;
    els.convCount.textContent = '';
  }
  if (mode !== 'more') loadTelegramAlerts();
  try {
    const page = await api('GET', '/admin/conversations/', { query });
    if (gen !== list.gen) return;
    const items = page && Array.isArray(page.items) ? page.items : [];
    if (mode === 'more') {
      const known = new Set(list.items.map((item) => item.id));
      list.items = list.items.concat(items.filter((item) => !known.has(item.id)));
    } else {
      list.items = items;
    }
    list.next = (page && page.next_cursor) || null;
    list.error = null;
    renderList(mode === 'refresh');
  } catch (error) {
    if (gen !== list.gen) return;
    list.error = error;
    renderList(false);
    report(error);
  } finally {
    if (gen === list.gen) setBusy(els.convMore, false);
  }
}

/** How long an upgrade of the support group stays on show (the setting may still name the old id). */
const MIGRATION_SHOWN_MS = 7 * 24 * 3600 * 1000;

/** The chats the bot cannot post to, as a banner over the list; nothing when all is well. */
export async function loadTelegramAlerts() {
  let stops = [];
  try {
    stops = await api('GET', '/admin/telegram/alerts/');
  } catch (error) {
    // The list's own request reports a failure; the banner just stays as it was.
    return;
  }
  const now = Date.now();
  const lines = (Array.isArray(stops) ? stops : []).flatMap((stop) => {
    if (stop.reason === 'kicked' && !stop.resumed_at) {
      return [t('tgKicked', { chat: stop.chat_id, since: fmtDateTime(stop.stopped_at) })];
    }
    if (stop.reason === 'migrated' && now - Date.parse(stop.stopped_at) < MIGRATION_SHOWN_MS) {
      return [t('tgMigrated', { from: stop.chat_id, to: stop.migrate_to_chat_id })];
    }
    return [];
  });
  els.tgAlerts.replaceChildren(...lines.map((line) => h('p', { class: 'tg-alert' }, line)));
  els.tgAlerts.hidden = lines.length === 0;
}

export function ownerTitle(c) {
  if (c.owner_name) return c.owner_name;
  if (c.owner_email) return c.owner_email;
  return c.owner_kind === 'visitor' ? t('visitor') : t('unknownUser');
}

export function ownerLine(c) {
  const parts = [];
  if (c.owner_name && c.owner_email) parts.push(c.owner_email);
  if (c.owner_kind === 'visitor') parts.push(label('ownerRoles', 'visitor'));
  else if (c.owner_role) parts.push(label('ownerRoles', c.owner_role));
  return parts.join(' · ');
}

export function modeBadge(mode) {
  return badge(label('modes', mode), mode === 'human' ? 'operator' : 'accent');
}

export function statusBadge(status) {
  return badge(label('statuses', status), status === 'closed' ? 'outline' : 'ok');
}

export function ratingEl(rating, comment) {
  if (rating === null || rating === undefined) return h('span', { class: 'muted' }, t('dash'));
  const value = clamp(Math.round(Number(rating)) || 0, 0, 5);
  return h('span', { class: 'stars', title: comment ? `${t('ratingTitle', { rating: value })}: ${comment}` : t('ratingTitle', { rating: value }), 'aria-label': t('ratingTitle', { rating: value }) },
    '★'.repeat(value) + '☆'.repeat(5 - value));
}

export function pageLink(c, className) {
  const text = c.page_title || c.page_url;
  if (!text) return h('span', { class: 'muted' }, t('dash'));
  const href = webHref(c.page_url);
  if (!href) return h('span', { class: className, title: c.page_url || text }, text);
  return externalLink(href, text, { class: className, title: c.page_url, onclick: (event) => event.stopPropagation() });
}

function renderList(highlight) {
  const list = state.list;
  const openId = state.detail.id;
  const rows = list.items.map((c) => {
    const previous = list.seen.get(c.id);
    const fresh = highlight && previous !== c.updated_at;
    const open = () => navigate(conversationHash(c.id));
    const row = h('tr', {
      class: fresh ? 'clickable fresh' : 'clickable',
      tabindex: '0',
      'data-testid': 'conversation-row',
      'data-id': c.id,
      'aria-current': c.id === openId ? 'true' : null,
      onclick: open,
      onkeydown: (event) => {
        if (event.target !== row) return;
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          open();
        }
      },
    },
    h('td', { class: 'who' }, h('strong', null, ownerTitle(c)), h('span', { class: 'muted small' }, ownerLine(c))),
    h('td', null,
      h('div', { class: 'badges' }, modeBadge(c.mode), statusBadge(c.status)),
      c.escalated_at ? h('div', { class: 'muted small', title: fmtDateTime(c.escalated_at) }, t('escalatedBecause', { reason: label('reasons', c.escalation_reason) })) : null,
      c.waiting_since ? h('div', { class: 'small waiting', 'data-testid': 'waiting', title: fmtDateTime(c.waiting_since) }, t('waitingFor', { wait: fmtWaited(c.waiting_since) })) : null,
      c.assignee ? h('div', { class: 'muted small', 'data-testid': 'assignee' }, t('assignedTo', { name: c.assignee })) : null),
    h('td', null, ratingEl(c.rating, c.rating_comment), c.rating_comment ? h('span', { class: 'comment', title: c.rating_comment }, c.rating_comment) : null),
    h('td', { class: 'num col-messages' }, fmtNumber(c.last_seq)),
    h('td', null, timeEl(c.updated_at)),
    h('td', { class: 'col-page' }, pageLink(c, 'ellipsis')));
    return row;
  });
  list.seen = new Map(list.items.map((c) => [c.id, c.updated_at]));
  if (rows.length) els.convRows.replaceChildren(...rows);
  else els.convRows.replaceChildren(emptyRow(6, list.error ? t('loadFailed') : t('noConversations')));
  els.convMore.hidden = !list.next;
  els.convCount.textContent = list.items.length
    ? t(list.next ? 'shownMore' : 'shown', { count: fmtNumber(list.items.length) })
    : '';
}

export function markOpenRow() {
  for (const row of els.convRows.querySelectorAll('tr[data-id]')) {
    if (row.dataset.id === state.detail.id) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
  }
}
