// DOM helpers: elements built from attributes and children, where strings always become text
// (never HTML), and the small widgets every view uses.

import { t } from './i18n.js';

function setAttributes(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element; children are nodes or strings (always inserted as text). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  appendChildren(el, children);
  return el;
}

export function byId(id) {
  return document.getElementById(id);
}

export function emptyRow(columns, text) {
  return h('tr', null, h('td', { class: 'empty', colspan: columns }, text));
}

export function badge(text, tone, title) {
  return h('span', { class: tone ? `badge ${tone}` : 'badge', title }, text);
}

export function jsonText(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch (error) {
    return String(value);
  }
}

export function isEmptyValue(value) {
  if (value === null || value === undefined) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === 'object') return Object.keys(value).length === 0;
  return false;
}

/** A collapsed block with `value` as indented JSON text. */
export function jsonDetails(summary, value) {
  if (isEmptyValue(value)) return h('span', { class: 'muted' }, t('dash'));
  return h('details', null, h('summary', null, summary), h('pre', null, jsonText(value)));
}

/** `url` as an href when it is http(s); anything else is not linked. */
export function webHref(url) {
  if (!url) return null;
  try {
    const parsed = new URL(String(url), location.href);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch (error) {
    return null;
  }
}

export function kbHref(path) {
  return '/kb/' + String(path).split('/').filter(Boolean).map(encodeURIComponent).join('/');
}

export function externalLink(href, text, attrs) {
  return h('a', Object.assign({ href, target: '_blank', rel: 'noopener noreferrer' }, attrs || {}), text);
}

export function setBusy(button, busy, busyText) {
  if (!button) return;
  if (busy) {
    if (button.dataset.idleText === undefined) button.dataset.idleText = button.textContent;
    button.disabled = true;
    if (busyText) button.textContent = busyText;
  } else {
    if (button.dataset.idleText !== undefined) {
      button.textContent = button.dataset.idleText;
      delete button.dataset.idleText;
    }
    button.disabled = false;
  }
}

export function shortId(id) {
  return String(id || '').slice(0, 8);
}

export function clamp(value, min, max) {
  return Math.min(max, Math.max(min, value));
}
