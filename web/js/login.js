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

translate();
mountLanguageSwitch(byId('language'));
oidcEnabled().then((enabled) => { byId('oidc-link').hidden = !enabled; });
// Already signed in (a reload, or back from single sign-on): no need to log in again.
currentSession().then(goOn, () => {});

wireLoginForm(/** @type {HTMLFormElement} */ (byId('login-form')), { error: byId('login-error'), totpRow: byId('totp-row') }, goOn);
