/** The login page: password (with TOTP when enrolled) or single sign-on, then on to the page for the user's role. */

import { currentSession, oidcEnabled } from './api.js';
import { byId } from './dom.js';
import { mountLanguageSwitch, setText, translate } from './i18n.js';
import { landingOf, wireLoginForm } from './login-form.js';

/** @param {import('./api.js').Me} me */
function goOn(me) {
  const landing = landingOf(me);
  const roles = new Set(me.regions.flatMap((region) => region.roles));
  if (landing) {
    location.assign(landing);
  } else if (roles.has('nurse') && roles.has('specialist')) {
    byId('login-form').hidden = true;
    byId('choose-role').hidden = false;
  } else {
    setText(byId('login-error'), 'login.error.noRole');
  }
}

/**
 * Codes a refused single sign-on sends the browser back here with (`?login_error=`, see
 * woundcare/api/oidc.py LOGIN_ERRORS): each has its message, anything else the generic one.
 * Only a known code is shown; nothing from the address is ever put on the page as text.
 */
const SSO_ERRORS = new Set([
  'oidc_state', 'oidc_failed', 'oidc_provider_error', 'oidc_invalid_token', 'oidc_security_level',
  'unknown_user', 'hpr_number_taken',
]);

/** Say why single sign-on was refused, once: the code leaves the address, so a reload does not repeat it. */
function showSsoError() {
  const code = new URLSearchParams(location.search).get('login_error');
  if (code === null) return;
  setText(byId('login-error'), `login.error.${SSO_ERRORS.has(code) ? code : 'generic'}`);
  history.replaceState(history.state, '', location.pathname);
}

translate();
mountLanguageSwitch(byId('language'));
showSsoError();
oidcEnabled().then((enabled) => { byId('oidc-link').hidden = !enabled; });
// Already signed in (a reload, or back from single sign-on): no need to log in again.
currentSession().then(goOn, () => {});

wireLoginForm(/** @type {HTMLFormElement} */ (byId('login-form')), { error: byId('login-error'), totpRow: byId('totp-row') }, goOn);
