// The evaluations tab: recorded `concierge eval decisions` runs, newest first. A plain run is one
// row; a prompt comparison is one row with sides A and B, McNemar's p-value and the
// conversations where the two decided differently.

import { api, report } from './api.js';
import { EVALS_LIMIT } from './config.js';
import { badge, emptyRow, h } from './dom.js';
import { fmtNumber, timeEl } from './format.js';
import { t } from './i18n.js';
import { els, state } from './state.js';

const COLUMNS = 6;
/** The level the command's report judges significance at. */
const SIGNIFICANCE = 0.05;

export async function loadEvals() {
  const evals = state.evals;
  evals.loaded = true;
  const gen = ++evals.gen;
  if (!evals.entries.length) els.evalsRows.replaceChildren(emptyRow(COLUMNS, t('loading')));
  try {
    const entries = await api('GET', '/admin/eval-runs/', { query: { limit: EVALS_LIMIT } });
    if (state.evals !== evals || gen !== evals.gen) return;
    evals.entries = Array.isArray(entries) ? entries : [];
    renderEvals();
  } catch (error) {
    if (state.evals !== evals || gen !== evals.gen) return;
    if (!evals.entries.length) els.evalsRows.replaceChildren(emptyRow(COLUMNS, t('loadFailed')));
    report(error);
  }
}

function accuracy(run) {
  return fmtNumber(run.accuracy, 3);
}

function engine(run) {
  return h('div', null, run.engine, run.model ? h('div', { class: 'muted small mono' }, run.model) : null);
}

function prompt(run) {
  if (!run.prompt_version) return h('span', { class: 'muted' }, t('dash'));
  return h('div', null,
    h('span', { class: 'mono' }, run.prompt_version),
    run.prompts_dir ? h('div', { class: 'muted small mono' }, run.prompts_dir) : null);
}

/** Two lines, A's and B's, in one cell. */
function sides(runs, cell) {
  return runs.map((run, index) => h('div', { class: 'eval-side' },
    h('span', { class: 'badge' }, index === 0 ? 'A' : 'B'), ' ', cell(run)));
}

function differingList(differing) {
  if (!Array.isArray(differing) || !differing.length) return null;
  const mark = (right) => badge(right ? t('evalRight') : t('evalWrong'), right ? 'ok' : 'bad');
  return h('details', null,
    h('summary', null, t('evalDiffering', { count: fmtNumber(differing.length) })),
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('colConversationId')),
        h('th', { scope: 'col' }, t('colExpected')),
        h('th', { scope: 'col' }, 'A'),
        h('th', { scope: 'col' }, 'B'))),
      h('tbody', null, differing.map((d) => h('tr', { 'data-testid': 'eval-difference' },
        h('td', { class: 'mono' }, d.id),
        h('td', null, d.expected),
        h('td', null, d.a, ' ', mark(d.a_right)),
        h('td', null, d.b, ' ', mark(d.b_right)))))));
}

function comparisonCell(comparison) {
  if (!comparison) return h('span', { class: 'muted' }, t('dash'));
  const discordant = comparison.a_only_right + comparison.b_only_right;
  const significant = discordant > 0 && comparison.p_value < SIGNIFICANCE;
  return h('div', null,
    h('div', null,
      discordant
        ? `p = ${fmtNumber(comparison.p_value, 4)} `
        : `${t('evalNoDiscordant')} `,
      badge(t(significant ? 'evalSignificant' : 'evalNotSignificant'), significant ? 'ok' : 'warn')),
    h('div', { class: 'muted small' }, t('evalDiscordant', { b: comparison.a_only_right, c: comparison.b_only_right })),
    differingList(comparison.differing));
}

function renderEvals() {
  const entries = state.evals.entries;
  if (!entries.length) {
    els.evalsRows.replaceChildren(emptyRow(COLUMNS, t('evalsEmpty')));
    return;
  }
  els.evalsRows.replaceChildren(...entries.map((entry) => {
    const runs = Array.isArray(entry.runs) ? entry.runs : [];
    const first = runs[0] || {};
    const compare = entry.kind === 'compare';
    const cell = (render) => (compare ? sides(runs, render) : render(first));
    return h('tr', { 'data-testid': 'eval-run', 'data-kind': entry.kind, 'data-id': entry.id },
      h('td', null, timeEl(entry.started_at, true)),
      h('td', null, h('span', { class: 'mono' }, first.set_file || t('dash')),
        h('div', { class: 'muted small' }, t('evalCases', { count: fmtNumber(first.cases) }))),
      h('td', null, cell(engine)),
      h('td', null, cell(prompt)),
      h('td', { class: 'num' }, cell(accuracy)),
      h('td', null, comparisonCell(entry.comparison)));
  }));
}
