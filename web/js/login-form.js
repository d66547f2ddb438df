/**
 * A login form, on the login page and in the re-login dialog alike: username and password, the
 * TOTP field when the account asks for it, errors in the page's language. Credentials go from the
 * form to POST /api/session and nowhere else (no storage, no URL).
 */

import { ApiError, login } from './api.js';
import { setText } from './i18n.js';

/** API error codes with their own message; anything else gets the generic one. */
const MESSAGES = new Set(['invalid_credentials', 'totp_required', 'invalid_totp', 'account_locked', 'throttled', 'offline']);

/**
 * Where a user's role takes them after login; null when there is a choice to make (nurse and
 * specialist) or no page for them.
 * @param {import('./api.js').Me} me
 * @returns {string | null}
 */
export function landingOf(me) {
  const roles = new Set(me.regions.flatMap((region) => region.roles));
  if (roles.has('nurse') && roles.has('specialist')) return null;
  if (roles.has('nurse')) return '/nurse';
  if (roles.has('specialist')) return '/specialist';
  if (roles.has('pilot_lead')) return '/lead';
  return null;
}

/**
 * @param {HTMLFormElement} form with inputs named username, password and totp
 * @param {{error: HTMLElement, totpRow: HTMLElement}} parts where errors go; the TOTP field's row, shown when asked for
 * @param {(me: import('./api.js').Me) => void} loggedIn
 */
export function wireLoginForm(form, { error, totpRow }, loggedIn) {
  const field = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (form.elements.namedItem(name));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (!field('username').value || !field('password').value) {
      setText(error, 'login.error.missing');
      return;
    }
    const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
    submit.disabled = true;
    try {
      const me = await login(field('username').value.trim(), field('password').value, field('totp').value.trim() || undefined);
      form.reset();
      loggedIn(me);
    } catch (failure) {
      const code = failure instanceof ApiError && MESSAGES.has(failure.code) ? failure.code : 'generic';
      if (code === 'totp_required' || code === 'invalid_totp') {
        totpRow.hidden = false;
        field('totp').focus();
      }
      setText(error, `login.error.${code}`);
    } finally {
      submit.disabled = false;
    }
  });
}
