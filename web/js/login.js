/** The login page: password (with TOTP when enrolled) or single sign-on, then on to the page for the user's role. */

import { ApiError, currentSession, login, oidcEnabled } from './api.js';
import { byId } from './dom.js';
import { mountLanguageSwitch, setText, translate } from './i18n.js';

/** API error codes with their own message; anything else gets the generic one. */
const MESSAGES = new Set(['invalid_credentials', 'totp_required', 'invalid_totp', 'account_locked', 'throttled', 'offline']);

/** @param {import('./api.js').Me} me */
function goOn(me) {
  const roles = new Set(me.regions.flatMap((region) => region.roles));
  if (roles.has('nurse') && roles.has('specialist')) {
    byId('login-form').hidden = true;
    byId('choose-role').hidden = false;
  } else if (roles.has('nurse')) {
    location.assign('/nurse');
  } else if (roles.has('specialist')) {
    location.assign('/specialist');
  } else if (roles.has('pilot_lead')) {
    location.assign('/lead');
  } else {
    setText(byId('login-error'), 'login.error.noRole');
  }
}

translate();
mountLanguageSwitch(byId('language'));
oidcEnabled().then((enabled) => { byId('oidc-link').hidden = !enabled; });
// Already signed in (a reload, or back from single sign-on): no need to log in again.
currentSession().then(goOn, () => {});

const form = /** @type {HTMLFormElement} */ (byId('login-form'));
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = byId('login-error');
  error.textContent = '';
  const value = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (form.elements.namedItem(name)).value;
  if (!value('username') || !value('password')) {
    setText(error, 'login.error.missing');
    return;
  }
  const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
  submit.disabled = true;
  try {
    const me = await login(value('username').trim(), value('password'), value('totp').trim() || undefined);
    form.reset();
    goOn(me);
  } catch (failure) {
    const code = failure instanceof ApiError && MESSAGES.has(failure.code) ? failure.code : 'generic';
    if (code === 'totp_required' || code === 'invalid_totp') {
      byId('totp-row').hidden = false;
      byId('totp').focus();
    }
    setText(error, `login.error.${code}`);
  } finally {
    submit.disabled = false;
  }
});
