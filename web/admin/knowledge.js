// The knowledge tab: the indexed documents, a reindex followed until it finishes, and a search
// tester that shows what the assistant would find.

import { api, report, showError } from './api.js';
import { REINDEX_POLL_MAX_FAILURES, REINDEX_POLL_MS, SEARCH_LIMIT } from './config.js';
import { badge, emptyRow, externalLink, h, jsonText, kbHref, setBusy } from './dom.js';
import { fmtDateTime, fmtMs, fmtNumber, fmtShare, parseDate, timeEl } from './format.js';
import { label, t } from './i18n.js';
import { els, later, state } from './state.js';

export async function loadDocuments() {
  const kb = state.knowledge;
  kb.loaded = true;
  const gen = ++kb.gen;
  if (!kb.docs.length) els.docsRows.replaceChildren(emptyRow(5, t('loading')));
  try {
    const docs = await api('GET', '/knowledge/documents/');
    if (state.knowledge !== kb || gen !== kb.gen) return;
    kb.docs = Array.isArray(docs) ? docs : [];
    renderDocuments();
  } catch (error) {
    if (state.knowledge !== kb || gen !== kb.gen) return;
    if (!kb.docs.length) els.docsRows.replaceChildren(emptyRow(5, t('loadFailed')));
    report(error);
  }
}

function renderDocuments() {
  const docs = state.knowledge.docs;
  const chunks = docs.reduce((sum, doc) => sum + (Number(doc.chunks) || 0), 0);
  els.docsCount.textContent = docs.length ? t('docsCount', { count: fmtNumber(docs.length), chunks: fmtNumber(chunks) }) : '';
  if (!docs.length) {
    els.docsRows.replaceChildren(emptyRow(5, t('docsEmpty')));
    return;
  }
  els.docsRows.replaceChildren(...docs.map((doc) => {
    const updated = doc.updated_at || doc.updated || null;
    const isMoment = /T\d/.test(String(updated || '')) && parseDate(updated);
    return h('tr', { 'data-testid': 'kb-document' },
      h('td', null, externalLink(kbHref(doc.path), doc.path, { class: 'mono' })),
      h('td', null, doc.title || t('dash')),
      h('td', null, doc.category || t('dash')),
      h('td', { class: 'num' }, fmtNumber(doc.chunks)),
      h('td', { class: 'nowrap' },
        isMoment ? timeEl(updated, true) : (updated || t('dash')),
        doc.indexed_at && doc.indexed_at !== updated ? h('div', { class: 'muted small' }, t('indexedAt'), ' ', timeEl(doc.indexed_at, true)) : null));
  }));
}

export async function startReindex() {
  const kb = state.knowledge;
  setBusy(els.reindex, true);
  try {
    const run = await api('POST', '/knowledge/reindex/');
    if (state.knowledge !== kb) return;
    kb.runId = run && run.id;
    kb.pollFailures = 0;
    renderReindex(run, run && run.joined);
    followReindex(run);
  } catch (error) {
    if (state.knowledge !== kb) return;
    setBusy(els.reindex, false);
    report(error);
  }
}

function reindexDone(run) {
  return run && (run.status === 'succeeded' || run.status === 'failed');
}

function followReindex(run) {
  const kb = state.knowledge;
  if (!run || !run.id || reindexDone(run)) {
    setBusy(els.reindex, false);
    if (run && run.status === 'succeeded') loadDocuments();
    return;
  }
  later('reindex', REINDEX_POLL_MS, async () => {
    if (state.knowledge !== kb || kb.runId !== run.id) return;
    try {
      const next = await api('GET', `/knowledge/reindex/${encodeURIComponent(run.id)}/`);
      if (state.knowledge !== kb || kb.runId !== run.id) return;
      kb.pollFailures = 0;
      renderReindex(next, run.joined);
      followReindex(Object.assign({}, next, { joined: run.joined }));
    } catch (error) {
      if (state.knowledge !== kb || error.auth) return;
      kb.pollFailures += 1;
      if (kb.pollFailures >= REINDEX_POLL_MAX_FAILURES) {
        setBusy(els.reindex, false);
        showError(`${t('reindexPollFailed')} ${error.message}`);
      } else {
        followReindex(run);
      }
    }
  });
}

function countOf(value) {
  if (Array.isArray(value)) return value.length;
  const number = Number(value);
  return Number.isFinite(number) ? number : null;
}

function renderReindex(run, joined) {
  const box = els.reindexBox;
  box.hidden = false;
  if (!run) {
    box.replaceChildren();
    return;
  }
  const done = reindexDone(run);
  const tone = run.status === 'succeeded' ? 'ok' : run.status === 'failed' ? 'bad' : 'warn';
  const parts = [
    h('div', { class: 'reindex-status' },
      done ? null : h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('strong', null, t('reindexTitle')),
      badge(label('runStatuses', run.status), tone),
      run.requested_at ? h('span', { class: 'muted small' }, t('reindexRequested', { time: fmtDateTime(run.requested_at) })) : null,
      run.finished_at ? h('span', { class: 'muted small' }, t('reindexFinished', { time: fmtDateTime(run.finished_at) })) : null),
  ];
  if (joined) parts.push(h('p', { class: 'muted small', style: 'margin: 4px 0 0' }, t('reindexJoined')));
  if (run.failure) parts.push(h('p', { class: 'pre-wrap', style: 'margin: 6px 0 0; color: var(--bad)' }, t('reindexFailure', { text: run.failure })));
  const report = run.report && typeof run.report === 'object' ? run.report : null;
  if (report) {
    const cell = (key, value) => h('div', null, h('div', { class: 'k' }, t(key)), h('div', { class: 'v' }, value));
    parts.push(h('div', { class: 'report', 'data-testid': 'reindex-report' },
      cell('repVersion', fmtNumber(report.version)),
      cell('repAdded', fmtNumber(countOf(report.added))),
      cell('repUpdated', fmtNumber(countOf(report.updated))),
      cell('repRemoved', fmtNumber(countOf(report.removed))),
      cell('repUnchanged', fmtNumber(countOf(report.unchanged))),
      cell('repDocuments', fmtNumber(countOf(report.documents))),
      cell('repChunks', fmtNumber(countOf(report.chunks))),
      cell('repErrors', fmtNumber(countOf(report.errors))),
      cell('repDuration', fmtMs(report.duration_ms))));
    const changed = [];
    for (const [key, mark] of [['added', '+'], ['updated', '~'], ['removed', '−']]) {
      if (Array.isArray(report[key])) for (const path of report[key]) changed.push(`${mark} ${typeof path === 'string' ? path : jsonText(path)}`);
    }
    if (changed.length) parts.push(h('details', { style: 'margin-top: 6px' }, h('summary', null, t('repChangedPaths')), h('pre', null, changed.join('\n'))));
    if (Array.isArray(report.errors) && report.errors.length) {
      const lines = report.errors.map((e) => (e && typeof e === 'object' ? `${e.path || ''}: ${e.error || jsonText(e)}` : String(e)));
      parts.push(h('details', { open: true, style: 'margin-top: 6px' }, h('summary', null, t('repErrorList')), h('pre', null, lines.join('\n'))));
    }
  }
  box.replaceChildren(...parts);
}

export async function searchKnowledge(event) {
  event.preventDefault();
  const kb = state.knowledge;
  const q = els.kbQuery.value.trim();
  if (!q) {
    els.kbQuery.focus();
    return;
  }
  const gen = ++kb.searchGen;
  const button = els.kbSearch.querySelector('button[type="submit"]');
  setBusy(button, true);
  els.kbResults.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  try {
    const result = await api('GET', '/knowledge/search/', { query: { q, limit: SEARCH_LIMIT } });
    if (state.knowledge !== kb || gen !== kb.searchGen) return;
    renderSearch(result);
  } catch (error) {
    if (state.knowledge !== kb || gen !== kb.searchGen) return;
    els.kbResults.replaceChildren();
    report(error);
  } finally {
    if (state.knowledge === kb && gen === kb.searchGen) setBusy(button, false);
  }
}

function renderSearch(result) {
  const hits = result && Array.isArray(result.hits) ? result.hits : [];
  const summary = h('p', { class: 'muted small', style: 'margin: 8px 0 0' },
    t('searchSummary', { version: fmtNumber(result && result.version), terms: fmtNumber(result && result.query_terms), count: fmtNumber(hits.length) }));
  if (!hits.length) {
    els.kbResults.replaceChildren(summary, h('p', { class: 'muted' }, t('searchEmpty')));
    return;
  }
  els.kbResults.replaceChildren(summary, h('ol', { class: 'hits' }, hits.map((hit, index) => {
    const title = hit.heading && hit.heading !== hit.title ? `${hit.title} — ${hit.heading}` : (hit.title || hit.path);
    const text = h('p', { class: 'hit-text' }, hit.text || '');
    const toggle = h('button', { type: 'button', class: 'linkish small', 'aria-expanded': 'false' }, t('showMore'));
    toggle.addEventListener('click', () => {
      const open = text.classList.toggle('open');
      toggle.textContent = open ? t('showLess') : t('showMore');
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    });
    return h('li', { class: 'hit', 'data-testid': 'kb-hit' },
      h('div', { class: 'hit-head' },
        h('span', { class: 'hit-rank' }, `${index + 1}.`),
        externalLink(kbHref(hit.path), title),
        badge(`score ${fmtNumber(hit.score, 3)}`, 'accent'),
        badge(t('coverage', { value: fmtShare(hit.coverage, 1) }), 'outline')),
      h('div', { class: 'muted small mono' }, hit.path, hit.chunk_id ? ` · ${hit.chunk_id}` : ''),
      text,
      (hit.text || '').length > 240 ? toggle : null);
  })));
}
