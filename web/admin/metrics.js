// The metrics tab: a period of UTC days, totals as cards, daily charts (charts.js), actions by
// outcome; and a recompute of the period's daily rows.

import { api, report, showError } from './api.js';
import { outcomesChart, ratingChart, replyChart } from './charts.js';
import { METRICS_RELOAD_DELAY_MS } from './config.js';
import { h, setBusy } from './dom.js';
import {
  addDays,
  daysBetween,
  fmtMs,
  fmtNumber,
  fmtShare,
  secondsFormat,
  utcDay,
} from './format.js';
import { label, t } from './i18n.js';
import { actionName } from './runs.js';
import { els, later, state } from './state.js';

export function setMetricsRange(days) {
  const to = utcDay(new Date());
  els.mTo.value = to;
  els.mFrom.value = addDays(to, -(days - 1));
}

function metricsRange() {
  const from = els.mFrom.value;
  const to = els.mTo.value;
  if (!from || !to) {
    showError(t('rangeRequired'));
    return null;
  }
  if (from > to) {
    showError(t('rangeInvalid'));
    return null;
  }
  return { from, to };
}

export async function loadMetrics() {
  const metrics = state.metrics;
  const range = metricsRange();
  if (!range) return;
  metrics.loaded = true;
  const gen = ++metrics.gen;
  els.mCards.setAttribute('aria-busy', 'true');
  if (!metrics.data) els.mStatus.textContent = t('loading');
  try {
    const data = await api('GET', '/admin/metrics/', { query: range });
    if (state.metrics !== metrics || gen !== metrics.gen) return;
    metrics.data = data;
    renderMetrics(data);
    els.mStatus.textContent = t('metricsUpdated', { time: secondsFormat.format(new Date()) });
  } catch (error) {
    if (state.metrics !== metrics || gen !== metrics.gen) return;
    els.mStatus.textContent = '';
    report(error);
  } finally {
    if (state.metrics === metrics && gen === metrics.gen) els.mCards.removeAttribute('aria-busy');
  }
}

export async function recomputeMetrics() {
  const metrics = state.metrics;
  const range = metricsRange();
  if (!range) return;
  setBusy(els.mRecompute, true);
  try {
    const result = await api('POST', '/admin/metrics/recompute/', { body: range });
    if (state.metrics !== metrics) return;
    els.mStatus.textContent = t('recomputeQueued', { n: fmtNumber(result && result.queued_days) });
    later('metrics-reload', METRICS_RELOAD_DELAY_MS, loadMetrics);
  } catch (error) {
    report(error);
  } finally {
    setBusy(els.mRecompute, false);
  }
}

function metricCard(title, value, sub) {
  return h('div', { class: 'card', 'data-testid': 'metric-card' },
    h('div', { class: 'label' }, title),
    h('div', { class: 'value' }, value),
    sub ? h('div', { class: 'sub' }, sub) : null);
}

function renderMetrics(data) {
  const totals = (data && data.totals) || {};
  const conversations = Number(totals.conversations) || 0;
  els.mCards.replaceChildren(
    metricCard(t('cardConversations'), fmtNumber(conversations), t('cardConversationsSub', { n: fmtNumber(totals.messages) })),
    metricCard(t('cardAiShare'), fmtShare(totals.ai_resolved, conversations), t('cardAiShareSub', { n: fmtNumber(totals.ai_resolved), total: fmtNumber(conversations) })),
    metricCard(t('cardEscalated'), fmtNumber(totals.escalated), t('cardEscalatedSub', { share: fmtShare(totals.escalated, conversations) })),
    metricCard(t('cardUnresolved'), fmtNumber(totals.closed_unresolved), t('cardEscalatedSub', { share: fmtShare(totals.closed_unresolved, conversations) })),
    metricCard(t('cardRating'), totals.avg_rating === null || totals.avg_rating === undefined ? t('dash') : fmtNumber(totals.avg_rating, 2), t('cardRatingSub', { n: fmtNumber(totals.rated) })),
    metricCard(t('cardFirstReply'), fmtMs(totals.first_reply_p50_ms), t('cardP90', { value: fmtMs(totals.first_reply_p90_ms) })),
    metricCard(t('cardFirstHumanReply'), fmtMs(totals.first_human_reply_p50_ms), t('cardP90', { value: fmtMs(totals.first_human_reply_p90_ms) })),
    metricCard(t('cardSlaBreaches'), fmtNumber(totals.sla_breaches), t('cardSlaBreachesSub')),
    metricCard(t('cardTokens'), fmtNumber(totals.llm_tokens), t('cardTokensSub', { n: fmtNumber(totals.llm_calls) })),
    metricCard(t('cardFallbacks'), fmtNumber(totals.llm_fallbacks), t('cardFallbacksSub')));

  const from = (data && data.from) || els.mFrom.value;
  const to = (data && data.to) || els.mTo.value;
  const stored = new Map(((data && data.days) || []).map((day) => [String(day.day).slice(0, 10), day]));
  const days = daysBetween(from, to).map((day) => ({ day, data: stored.get(day) || null }));
  const missing = days.filter((d) => !d.data).length;
  els.mMissing.hidden = !missing;
  els.mMissing.textContent = missing ? t('missingDays', { n: fmtNumber(missing), total: fmtNumber(days.length) }) : '';

  outcomesChart(els.chartOutcomes, days, t('chartOutcomes'));
  ratingChart(els.chartRating, days, t('chartRating'));
  replyChart(els.chartReply, days, t('chartReply'));
  renderActionOutcomes(totals.actions);
}

function renderActionOutcomes(actions) {
  const byAction = actions && typeof actions === 'object' ? actions : {};
  const names = Object.keys(byAction).sort();
  if (!names.length) {
    els.mActions.replaceChildren(h('p', { class: 'muted' }, t('metricsActionsEmpty')));
    return;
  }
  const preferred = ['succeeded', 'failed', 'running', 'queued'];
  const outcomes = new Set();
  for (const name of names) for (const outcome of Object.keys(byAction[name] || {})) outcomes.add(outcome);
  const columns = Array.from(outcomes).sort((a, b) => {
    const ia = preferred.indexOf(a);
    const ib = preferred.indexOf(b);
    if (ia !== ib) return (ia < 0 ? preferred.length : ia) - (ib < 0 ? preferred.length : ib);
    return a.localeCompare(b);
  });
  const rows = names.map((name) => {
    const counts = byAction[name] || {};
    const total = Object.values(counts).reduce((sum, n) => sum + (Number(n) || 0), 0);
    return h('tr', { 'data-testid': 'metric-action' },
      h('td', null, actionName(name)),
      columns.map((outcome) => h('td', { class: 'num' }, counts[outcome] ? fmtNumber(counts[outcome]) : h('span', { class: 'muted' }, '0'))),
      h('td', { class: 'num' }, h('strong', null, fmtNumber(total))));
  });
  els.mActions.replaceChildren(h('div', { class: 'table-wrap' },
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('colAction')),
        columns.map((outcome) => h('th', { scope: 'col', class: 'num' }, label('runStatuses', outcome))),
        h('th', { scope: 'col', class: 'num' }, t('colTotal')))),
      h('tbody', null, rows))));
}
