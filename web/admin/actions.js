// The actions tab: the declared actions (switched on and off here) and the log of their runs.

import { api, report } from './api.js';
import { RUNS_LIMIT } from './config.js';
import { badge, emptyRow, h, jsonDetails } from './dom.js';
import { t } from './i18n.js';
import { renderRunsTable } from './runs.js';
import { els, state } from './state.js';

export function loadActions() {
  state.actions.loaded = true;
  loadDefinitions();
  loadRuns();
}

export async function loadDefinitions() {
  const actions = state.actions;
  const gen = ++actions.defsGen;
  if (!actions.defs.length) els.actionsRows.replaceChildren(emptyRow(7, t('loading')));
  try {
    const defs = await api('GET', '/admin/actions/');
    if (state.actions !== actions || gen !== actions.defsGen) return;
    actions.defs = Array.isArray(defs) ? defs : [];
    renderDefinitions();
    renderRunsFilter();
    if (actions.runs.length) renderRunsTable(els.runsRows, actions.runs, true);
  } catch (error) {
    if (state.actions !== actions || gen !== actions.defsGen) return;
    if (!actions.defs.length) els.actionsRows.replaceChildren(emptyRow(7, t('loadFailed')));
    report(error);
  }
}

function renderDefinitions() {
  const actions = state.actions;
  if (!actions.defs.length) {
    els.actionsRows.replaceChildren(emptyRow(7, t('actionsEmpty')));
    return;
  }
  els.actionsRows.replaceChildren(...actions.defs.map((def) => {
    const toggle = h('input', {
      type: 'checkbox',
      class: 'switch',
      role: 'switch',
      'aria-label': t('toggleAction', { name: def.display_name || def.name }),
      'data-testid': 'action-toggle',
      'data-name': def.name,
      checked: !!def.active,
      disabled: actions.pending.has(def.name),
    });
    toggle.checked = !!def.active;
    toggle.addEventListener('change', () => toggleAction(def.name, toggle.checked, toggle));
    const keywords = Array.isArray(def.trigger_keywords) ? def.trigger_keywords : [];
    return h('tr', { 'data-testid': 'action-row', 'data-name': def.name },
      h('td', null, toggle),
      h('td', null, h('strong', null, def.display_name || def.name), h('div', { class: 'muted small mono' }, def.name)),
      h('td', { class: 'pre-wrap' }, def.description || ''),
      h('td', { class: 'mono small' }, def.handler || t('dash')),
      h('td', null, h('div', { class: 'badges' },
        badge(def.requires_user ? t('requiresUser') : t('forVisitors'), 'outline'),
        badge(def.read_only ? t('readOnly') : t('writes'), def.read_only ? 'outline' : 'warn'))),
      h('td', null, keywords.length ? h('div', { class: 'chips' }, keywords.map((word) => h('span', { class: 'chip' }, word))) : h('span', { class: 'muted' }, t('dash'))),
      h('td', null, jsonDetails(t('showJson'), def.parameters)));
  }));
}

async function toggleAction(name, active, toggle) {
  const actions = state.actions;
  if (actions.pending.has(name)) return;
  actions.pending.add(name);
  toggle.disabled = true;
  try {
    const updated = await api('PATCH', `/admin/actions/${encodeURIComponent(name)}/`, { body: { active } });
    if (state.actions !== actions) return;
    const index = actions.defs.findIndex((a) => a.name === name);
    if (index >= 0) actions.defs[index] = updated && updated.name ? updated : Object.assign({}, actions.defs[index], { active });
  } catch (error) {
    if (state.actions !== actions) return;
    report(error);
  } finally {
    actions.pending.delete(name);
    if (state.actions === actions) renderDefinitions();
  }
}

function renderRunsFilter() {
  const select = els.runsFilter;
  const current = select.value;
  const names = state.actions.defs.map((a) => a.name);
  if (current && !names.includes(current)) names.push(current);
  select.replaceChildren(
    h('option', { value: '' }, t('filterAll')),
    ...names.map((name) => {
      const def = state.actions.defs.find((a) => a.name === name);
      return h('option', { value: name }, def && def.display_name ? `${def.display_name} (${name})` : name);
    }));
  select.value = current;
}

export async function loadRuns() {
  const actions = state.actions;
  const gen = ++actions.runsGen;
  if (!actions.runs.length) els.runsRows.replaceChildren(emptyRow(8, t('loading')));
  try {
    const runs = await api('GET', '/admin/action-runs/', { query: { limit: RUNS_LIMIT, action: els.runsFilter.value } });
    if (state.actions !== actions || gen !== actions.runsGen) return;
    actions.runs = Array.isArray(runs) ? runs : [];
    renderRunsTable(els.runsRows, actions.runs, true);
  } catch (error) {
    if (state.actions !== actions || gen !== actions.runsGen) return;
    if (!actions.runs.length) els.runsRows.replaceChildren(emptyRow(8, t('loadFailed')));
    report(error);
  }
}
