/**
 * Translations: every visible string lives in web/i18n/<lang>.js, one table per language.
 * Elements name their string with `data-i18n="key"` (text) and
 * `data-i18n-attr="aria-label:key;placeholder:key"` (attributes), so switching the language
 * re-labels the live page without a reload, which would drop a call.
 */

import en from '../i18n/en.js';
import nb from '../i18n/nb.js';

/** @type {Record<string, Record<string, string>>} */
const TABLES = { nb, en };
const STORAGE_KEY = 'woundcare.lang';
/** Fired on window after a switch, for text the page builds itself. */
export const LANGUAGE_EVENT = 'woundcare:language';

/** @returns {string} */
function initialLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && saved in TABLES) return saved;
  // Norwegian staff are the users; English only when the browser clearly asks for it.
  return /^(nb|nn|no)\b/.test(navigator.language) || !navigator.language.startsWith('en') ? 'nb' : 'en';
}

let current = initialLanguage();

export function language() {
  return current;
}

/**
 * The string for `key` in the current language, with `{name}` placeholders filled.
 * @param {string} key
 * @param {Record<string, string | number>} [params]
 */
export function t(key, params = {}) {
  const template = TABLES[current][key] ?? TABLES.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

/**
 * Set an element's text to a translated string, remembering the key so a language switch redoes it.
 * @param {HTMLElement} element
 * @param {string} key
 * @param {Record<string, string | number>} [params]
 */
export function setText(element, key, params) {
  element.dataset.i18n = key;
  if (params) element.dataset.i18nParams = JSON.stringify(params);
  else delete element.dataset.i18nParams;
  element.textContent = t(key, params);
}

/** @param {ParentNode} [root] */
export function translate(root = document) {
  document.documentElement.lang = current;
  for (const element of root.querySelectorAll('[data-i18n]')) {
    const el = /** @type {HTMLElement} */ (element);
    const params = el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : undefined;
    el.textContent = t(/** @type {string} */ (el.dataset.i18n), params);
  }
  for (const element of root.querySelectorAll('[data-i18n-attr]')) {
    const el = /** @type {HTMLElement} */ (element);
    for (const pair of /** @type {string} */ (el.dataset.i18nAttr).split(';')) {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

/**
 * Wire a <select> to switch the language; the page re-labels itself and hears LANGUAGE_EVENT.
 * @param {HTMLSelectElement} select
 */
export function mountLanguageSwitch(select) {
  select.value = current;
  select.addEventListener('change', () => {
    current = select.value in TABLES ? select.value : 'nb';
    localStorage.setItem(STORAGE_KEY, current);
    translate();
    window.dispatchEvent(new Event(LANGUAGE_EVENT));
  });
}

/**
 * A number as the current language writes it (2,25 in Norwegian).
 * @param {number} value
 * @param {number} [digits] at most this many decimals
 */
export function formatNumber(value, digits = 2) {
  return value.toLocaleString(current, { maximumFractionDigits: digits });
}
