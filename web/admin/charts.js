// The metrics charts, drawn by uPlot (web/vendor/uplot). The x axis is the index of a UTC day
// in the chosen period; a day without a computed row has no bar or point. Each chart follows
// the width of its box; its legend shows the values of the day under the pointer.

import uPlot from './vendor/uplot/uPlot.esm.js';
import { COLORS } from './config.js';
import { dayLabel, fmtMs, fmtNumber } from './format.js';
import { t } from './i18n.js';

const HEIGHT = 220;
const MIN_WIDTH = 240;
// Whole steps for counts: 1, 2, 5, 10, 20, 50…
const COUNT_INCRS = [1, 2, 5].flatMap((n) => [1, 10, 100, 1000, 10000, 100000].map((scale) => n * scale)).sort((a, b) => a - b);

const charts = new Map();

const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const plot = charts.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (plot && width > 0 && width !== plot.width) plot.setSize({ width: Math.max(MIN_WIDTH, width), height: HEIGHT });
  }
});

/** Replace the chart in `container` (a hidden box gets a default width until it is shown). */
function draw(container, title, options, data) {
  const previous = charts.get(container);
  if (previous) previous.destroy();
  container.replaceChildren();
  container.setAttribute('role', 'img');
  container.setAttribute('aria-label', title);
  const width = Math.max(MIN_WIDTH, container.clientWidth || 600);
  charts.set(container, new uPlot({ ...options, width, height: HEIGHT }, data, container));
  resizer.observe(container);
}

/** Remove every chart (on sign-out). */
export function clearCharts() {
  for (const [container, plot] of charts) {
    plot.destroy();
    resizer.unobserve(container);
    container.replaceChildren();
  }
  charts.clear();
}

function dayAxis(days) {
  return {
    x: { time: false, range: () => [-0.5, days.length - 0.5] },
    axis: {
      space: 44,
      incrs: [1, 2, 3, 7, 14, 28, 56, 91, 182, 364],
      values: (u, splits) => splits.map((index) => (days[index] ? dayLabel(days[index].day) : '')),
      grid: { show: false },
    },
    series: { label: t('seriesDay'), value: (u, index) => (days[index] ? dayLabel(days[index].day, true) : '') },
  };
}

function chartOptions(days, series, y) {
  const x = dayAxis(days);
  return {
    scales: { x: x.x, y: { range: y.range } },
    axes: [x.axis, { values: (u, splits) => splits.map(y.tick), incrs: y.incrs, size: 56 }],
    series: [x.series, ...series],
    cursor: { points: { show: false } },
  };
}

/** A legend value: a dash while no day is pointed at, "no data" for a day without a row. */
const legendValue = (index, value, format) => {
  if (index === null || index === undefined) return t('dash');
  return value === null || value === undefined ? t('noData') : format(value);
};

const valueOf = (day, key) => {
  const value = day.data ? day.data[key] : null;
  return value === null || value === undefined || !Number.isFinite(Number(value)) ? null : Number(value);
};

/** Conversations by outcome per day, stacked: each series is drawn as the running sum. */
export function outcomesChart(container, days, title) {
  const outcomes = [
    { key: 'ai_resolved', label: t('seriesAi'), color: COLORS.ai },
    { key: 'escalated', label: t('seriesEscalated'), color: COLORS.escalated },
    { key: 'closed_unresolved', label: t('seriesUnresolved'), color: COLORS.unresolved },
  ];
  const raw = outcomes.map((o) => days.map((d) => (d.data ? valueOf(d, o.key) || 0 : null)));
  const stacked = raw.map((values, level) =>
    values.map((value, index) => (value === null ? null : raw.slice(0, level + 1).reduce((sum, r) => sum + r[index], 0))));
  // The tallest sum first, so that each lower one is drawn over it.
  const order = outcomes.map((o, level) => level).reverse();
  const bars = uPlot.paths.bars({ size: [0.68, Infinity] });
  const series = order.map((level) => ({
    label: outcomes[level].label,
    stroke: outcomes[level].color,
    fill: outcomes[level].color,
    paths: bars,
    points: { show: false },
    value: (u, v, s, index) => legendValue(index, index === null ? null : raw[level][index], fmtNumber),
  }));
  const top = (u, min, max) => [0, Math.max(4, (max || 0) * 1.1)];
  draw(container, title, chartOptions(days, series, { range: top, tick: (v) => fmtNumber(v), incrs: COUNT_INCRS }), [
    days.map((d, index) => index),
    ...order.map((level) => stacked[level]),
  ]);
}

/** Average rating per day, 0–5, as a line with a point per rated day. */
export function ratingChart(container, days, title) {
  const ratings = days.map((d) => valueOf(d, 'avg_rating'));
  const series = [{
    label: t('cardRating'),
    stroke: COLORS.rating,
    width: 2,
    spanGaps: false,
    points: { show: true, size: 7, fill: '#fff', stroke: COLORS.rating },
    value: (u, v, s, index) =>
      legendValue(index, v, (rating) => t('ratingValue', { value: fmtNumber(rating, 2), n: fmtNumber(valueOf(days[index], 'rated')) })),
  }];
  draw(container, title, chartOptions(days, series, { range: () => [0, 5], tick: (v) => fmtNumber(v), incrs: [1] }), [
    days.map((d, index) => index),
    ratings,
  ]);
}

/** First-reply time per day, p50 and p90 side by side. */
export function replyChart(container, days, title) {
  const keys = [
    { key: 'first_reply_p50_ms', label: t('seriesP50'), color: COLORS.p50, align: -1 },
    { key: 'first_reply_p90_ms', label: t('seriesP90'), color: COLORS.p90, align: 1 },
  ];
  const series = keys.map((k) => ({
    label: k.label,
    stroke: k.color,
    fill: k.color,
    paths: uPlot.paths.bars({ size: [0.38, Infinity], align: k.align }),
    points: { show: false },
    value: (u, v, s, index) => legendValue(index, v, fmtMs),
  }));
  const top = (u, min, max) => [0, Math.max(1000, (max || 0) * 1.1)];
  draw(container, title, chartOptions(days, series, { range: top, tick: (v) => (v === 0 ? '0' : fmtMs(v)) }), [
    days.map((d, index) => index),
    ...keys.map((k) => days.map((d) => valueOf(d, k.key))),
  ]);
}
