/**
 * What every signed-in page does first: translate itself, check the session (back to the login
 * page without one, or without the role the page is for), show who is signed in, wire logout,
 * and answer a session that ends later with the re-login dialog (relogin.js).
 */

import { ApiError, currentSession, logout } from './api.js';
import { byId } from './dom.js';
import { mountLanguageSwitch, translate } from './i18n.js';
import { watchSession } from './relogin.js';

/** @type {(() => boolean) | null} */
let logoutCheck = null;

/**
 * Let the page ask before the user logs out (a call screen: confirm, and keep the call to come
 * back to); `check` returns whether to go on. `null` removes it.
 * @param {(() => boolean) | null} check
 */
export function askBeforeLogout(check) {
  logoutCheck = check;
}

/**
 * @param {'nurse' | 'specialist'} role
 * @returns {Promise<import('./api.js').Me>}
 */
export async function startPage(role) {
  translate();
  mountLanguageSwitch(byId('language'));
  let me;
  try {
    me = await currentSession();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) location.replace('/');
    throw error;
  }
  if (!me.regions.some((region) => region.roles.includes(role))) {
    location.replace('/');
    throw new Error(`not a ${role}`);
  }
  byId('user-name').textContent = me.user.name;
  watchSession(me);
  byId('logout').addEventListener('click', async () => {
    if (logoutCheck && !logoutCheck()) return;
    await logout().catch(() => {});
    location.replace('/');
  });
  return me;
}

