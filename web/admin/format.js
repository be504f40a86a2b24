// Formatting: numbers in the console's language, dates in the browser's locale and time zone.

import { h } from './dom.js';
import { S, t } from './i18n.js';

const numberFormats = new Map();

export function fmtNumber(value, digits) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return t('dash');
  const key = digits || 0;
  if (!numberFormats.has(key)) {
    numberFormats.set(key, new Intl.NumberFormat(S.locale, { maximumFractionDigits: key, minimumFractionDigits: 0 }));
  }
  return numberFormats.get(key).format(Number(value));
}

const percentFormat = new Intl.NumberFormat(S.locale, { style: 'percent', maximumFractionDigits: 1 });

export function fmtShare(part, total) {
  if (!total) return t('dash');
  return percentFormat.format((Number(part) || 0) / total);
}

/** Milliseconds for people: "850 мс", "1,2 с", "3,5 мин", "1,1 ч". */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return t('dash');
  const value = Number(ms);
  if (value < 1000) return `${fmtNumber(Math.round(value), 0)} ${t('unitMs')}`;
  if (value < 60000) return `${fmtNumber(value / 1000, 1)} ${t('unitS')}`;
  if (value < 3600000) return `${fmtNumber(value / 60000, 1)} ${t('unitMin')}`;
  return `${fmtNumber(value / 3600000, 1)} ${t('unitH')}`;
}

/** How long ago `value` was, for a wait: "45 с", "12 мин", "1,5 ч". */
export function fmtWaited(value) {
  const date = parseDate(value);
  if (!date) return t('dash');
  const ms = Math.max(0, Date.now() - date.getTime());
  if (ms < 60000) return `${fmtNumber(Math.floor(ms / 1000), 0)} ${t('unitS')}`;
  if (ms < 3600000) return `${fmtNumber(Math.floor(ms / 60000), 0)} ${t('unitMin')}`;
  return fmtMs(ms);
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
const fullDateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
export const secondsFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const dayFormat = new Intl.DateTimeFormat(undefined, { day: '2-digit', month: '2-digit', timeZone: 'UTC' });
const longDayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

export function parseDate(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function isToday(date) {
  const now = new Date();
  return date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
}

/** A <time>: only the time for today, else date and time; the full moment as its tooltip. */
export function timeEl(value, always) {
  const date = parseDate(value);
  if (!date) return h('span', { class: 'muted' }, t('dash'));
  const text = !always && isToday(date) ? timeFormat.format(date) : dateTimeFormat.format(date);
  return h('time', { datetime: date.toISOString(), title: fullDateFormat.format(date), class: 'nowrap' }, text);
}

export function fmtDateTime(value) {
  const date = parseDate(value);
  return date ? dateTimeFormat.format(date) : t('dash');
}

// Days are UTC calendar days, "YYYY-MM-DD", as the metrics API counts them.
export function utcDay(date) {
  return date.toISOString().slice(0, 10);
}

export function addDays(day, count) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + count);
  return utcDay(date);
}

export function daysBetween(from, to) {
  const days = [];
  for (let day = from; day <= to && days.length < 1000; day = addDays(day, 1)) days.push(day);
  return days;
}

export function dayLabel(day, long) {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return day;
  return (long ? longDayFormat : dayFormat).format(date);
}
