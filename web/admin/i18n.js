// The console's language: `t(key, vars)` for a text, `label(group, value)` for a value's name.

import { DEFAULT_LANG, LANG_KEY } from './config.js';
import { STRINGS } from './strings.js';

export const LANG = pickLanguage();
export const S = STRINGS[LANG];

function pickLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(LANG_KEY);
  } catch (error) {
    stored = null;
  }
  if (stored && STRINGS[stored]) return stored;
  return DEFAULT_LANG;
}

/** A string of the current language, `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  const template = S[key] !== undefined ? S[key] : STRINGS[DEFAULT_LANG][key];
  if (typeof template !== 'string') return key;
  if (!vars) return template;
  return template.replace(/\{(\w+)\}/g, (match, name) => (vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : match));
}

/** A label from one of the tables (`modes`, `statuses`...), or the raw value. */
export function label(group, value) {
  if (value === null || value === undefined || value === '') return t('dash');
  const table = S[group] || STRINGS[DEFAULT_LANG][group] || {};
  return table[value] !== undefined ? table[value] : String(value);
}

/** Fill `data-i18n` texts and `data-i18n-attr` attributes ("attr:key;attr:key") under `root`. */
export function applyStrings(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':');
      if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}
