/**
 * The one answer to a 401 on a signed-in page: "You are logged out – log in again" as a dialog
 * over the page, which stays as it is underneath (a live call goes on: its signaling socket
 * keeps its resume token, media never needed the session). Logging in again as the same user
 * closes the dialog, and api.js sends the requests that met the 401 again; another user is
 * taken to their own page. A session opened elsewhere in this browser counts too: another tab,
 * or single sign-on, which runs in a window of its own since leaving this page would drop the
 * call; while the dialog is open the page looks for such a session every few seconds.
 */

import { currentSession, oidcEnabled, onUnauthorized } from './api.js';
import { h } from './dom.js';
import { setText } from './i18n.js';
import { landingOf, wireLoginForm } from './login-form.js';

/** How often an open dialog looks for a session opened in another tab or window. */
const LOOK_EVERY_MS = 2000;

/**
 * Answer every 401 on this page with the dialog, for the user signed in now.
 * @param {import('./api.js').Me} me
 */
export function watchSession(me) {
  onUnauthorized(() => logInAgain(me.user.id));
}

/**
 * @param {string} user the id of the user who must come back
 * @returns {Promise<void>} resolves once that user has a session again (and its CSRF token)
 */
async function logInAgain(user) {
  /** @param {import('./api.js').Me} me */
  const sameUser = (me) => {
    if (me.user.id !== user) location.assign(landingOf(me) ?? '/');
    return me.user.id === user;
  };
  // Another tab may have logged in already (our CSRF token was then refused): no need to ask.
  const current = await currentSession().catch(() => null);
  if (current) {
    if (sameUser(current)) return;
    return new Promise(() => {}); // the page is leaving
  }
  const { dialog, form, error, totpRow, oidc } = build();
  document.body.append(dialog);
  // Nothing to cancel to: the page cannot go on without a session.
  dialog.addEventListener('cancel', (event) => event.preventDefault());
  dialog.showModal();
  oidcEnabled().then((enabled) => { oidc.hidden = !enabled; });
  return new Promise((resolve) => {
    /** @type {Window | null} */
    let popup = null;
    /** @param {import('./api.js').Me} me */
    const loggedIn = (me) => {
      clearInterval(looking);
      popup?.close();
      if (!sameUser(me)) return;
      dialog.close();
      dialog.remove();
      resolve();
    };
    const looking = setInterval(() => currentSession().then(loggedIn, () => {}), LOOK_EVERY_MS);
    wireLoginForm(form, { error, totpRow }, loggedIn);
    oidc.addEventListener('click', (event) => {
      event.preventDefault();
      popup = window.open(oidc.href, 'woundcare-sso', 'popup');
    });
  });
}

function build() {
  /** @template {HTMLElement} E @param {string} key @param {E} element @returns {E} */
  const text = (key, element) => {
    setText(element, key);
    return element;
  };
  const input = (/** @type {Record<string, string>} */ attrs) => h('input', attrs);
  const error = h('p', { id: 'relogin-error', class: 'error', role: 'alert' });
  const totpRow = h('div', { hidden: '' },
    text('login.totp', h('label', { for: 'relogin-totp' })),
    input({ id: 'relogin-totp', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '10' }));
  const oidc = text('login.oidc', h('a', { class: 'big button secondary', href: '/api/oidc/login', hidden: '' }));
  const form = h('form', { novalidate: '' },
    text('relogin.heading', h('h2', { id: 'relogin-heading' })),
    text('relogin.hint', h('p', { class: 'hint' })),
    text('login.username', h('label', { for: 'relogin-username' })),
    input({ id: 'relogin-username', name: 'username', autocomplete: 'username', maxlength: '64', required: '' }),
    text('login.password', h('label', { for: 'relogin-password' })),
    input({ id: 'relogin-password', name: 'password', type: 'password', autocomplete: 'current-password', required: '' }),
    totpRow,
    error,
    text('login.submit', h('button', { type: 'submit', class: 'big primary' })),
    oidc);
  const dialog = h('dialog', { id: 'relogin', class: 'relogin card', 'aria-labelledby': 'relogin-heading' }, form);
  return { dialog, form, error, totpRow, oidc };
}
