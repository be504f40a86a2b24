// Action runs as a table: in a conversation, and in the action log with a conversation column.

import { badge, emptyRow, h, jsonDetails, shortId } from './dom.js';
import { fmtMs, timeEl } from './format.js';
import { label, t } from './i18n.js';
import { conversationHash } from './nav.js';
import { state } from './state.js';

function runStatusBadge(status) {
  const tone = status === 'succeeded' ? 'ok' : status === 'failed' ? 'bad' : 'warn';
  return badge(label('runStatuses', status), tone);
}

function runResult(run) {
  if (run.error) return h('span', { class: 'pre-wrap', style: 'color: var(--bad)' }, run.error);
  if (run.result_summary) return h('span', { class: 'pre-wrap' }, run.result_summary);
  return h('span', { class: 'muted' }, t('dash'));
}

export function actionName(name) {
  const def = state.actions.defs.find((a) => a.name === name);
  return def && def.display_name ? h('span', { title: name }, def.display_name, h('div', { class: 'muted small mono' }, name)) : h('span', { class: 'mono' }, name);
}

/** The action-run table, in a conversation (`withConversation` false) or the log. */
export function renderRunsTable(container, runs, withConversation) {
  const list = Array.isArray(runs) ? runs : [];
  const head = [t('colTime'), t('colAction')];
  if (withConversation) head.push(t('colConversation'));
  head.push(t('colRequestedBy'), t('colStatus'), t('colDuration'), t('colResult'), t('colParams'));
  const rows = list.map((run) => h('tr', { 'data-testid': 'action-run', 'data-id': run.id },
    h('td', null, timeEl(run.created_at)),
    h('td', null, actionName(run.action)),
    withConversation
      ? h('td', null, run.conversation_id
        ? h('a', { href: conversationHash(run.conversation_id), class: 'mono', title: run.conversation_id }, shortId(run.conversation_id))
        : t('dash'))
      : null,
    h('td', null, label('requesters', run.requested_by)),
    h('td', null, runStatusBadge(run.status)),
    h('td', { class: 'num' }, fmtMs(run.duration_ms)),
    h('td', null, runResult(run)),
    h('td', null, jsonDetails(t('showJson'), run.params))));
  if (container.tagName === 'TBODY') {
    container.replaceChildren(...(rows.length ? rows : [emptyRow(head.length, t(withConversation ? 'runLogEmpty' : 'runsEmpty'))]));
    return;
  }
  if (!rows.length) {
    container.replaceChildren(h('p', { class: 'muted' }, t('runsEmpty')));
    return;
  }
  container.replaceChildren(h('div', { class: 'table-wrap' },
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null, head.map((text, index) => h('th', { scope: 'col', class: index === head.length - 3 ? 'num' : null }, text)))),
      h('tbody', null, rows))));
}
