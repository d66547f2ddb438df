/**
 * The HTTP API as the pages use it: the HttpOnly session cookie goes along by itself, and every
 * state change carries the CSRF token that login and GET /api/session return. The token lives in
 * this module's memory only, never in storage or a URL. Every request goes through `send`, so a
 * 401 (the session expired or was revoked) is handled here for the whole page: see `onUnauthorized`.
 */

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status; 0 when the server could not be reached at all
   * @param {string} code the API's stable error code (`error.code`)
   * @param {string} message for people; not shown verbatim where a translation exists
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  /** The request never reached the server: worth retrying later. */
  get offline() {
    return this.status === 0;
  }
}

/** @type {string | null} */
let csrfToken = null;

/** Logging in and out answer 401 for a wrong password or no session: that is theirs to say. */
const SESSION_PATH = '/api/session';

/** @type {(() => Promise<void>) | null} */
let unauthorizedHandler = null;
/** The one re-login under way, which every request that met a 401 meanwhile waits for. @type {Promise<void> | null} */
let loggingInAgain = null;
/** How many re-logins have completed: a 401 to a request sent before the last one is stale. */
let reloginCount = 0;

/**
 * Who answers a lost session on this page: `handler` resolves once the same user has a session
 * again (login() or currentSession() has then renewed the CSRF token), and each request that
 * met the loss is sent again, so the caller never sees it.
 * @param {() => Promise<void>} handler
 */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * The session this page knew is gone: expired or revoked (401), or replaced by a login in another
 * tab, whose cookie this page now sends with the old session's CSRF token (403 `csrf_failed`).
 * @param {ApiError} error
 */
function lostSession(error) {
  return error.status === 401 || error.code === 'csrf_failed';
}

/**
 * @param {string} method
 * @param {string} path
 * @param {{json?: unknown, form?: FormData, blob?: Blob}} [body]
 * @param {Record<string, string>} [extra] more request headers
 * @param {boolean} [again] sent again after a re-login: a second loss is the caller's (a server
 *   that refuses this page's origin would otherwise be asked in a loop)
 * @returns {Promise<Response>}
 */
async function send(method, path, body = {}, extra = {}, again = false) {
  const sentAfter = reloginCount;
  try {
    return await sendOnce(method, path, body, extra);
  } catch (error) {
    if (!(error instanceof ApiError && lostSession(error)) || !unauthorizedHandler || path === SESSION_PATH || again) {
      throw error;
    }
    // Sent with the old session while the user logged in again: just send it again.
    if (sentAfter === reloginCount) {
      loggingInAgain ??= unauthorizedHandler().finally(() => {
        reloginCount += 1;
        loggingInAgain = null;
      });
      await loggingInAgain;
    }
    return send(method, path, body, extra, true);
  }
}

/**
 * @param {string} method
 * @param {string} path
 * @param {{json?: unknown, form?: FormData, blob?: Blob}} body
 * @param {Record<string, string>} extra
 * @returns {Promise<Response>}
 */
async function sendOnce(method, path, body, extra) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json', ...extra };
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  /** @type {BodyInit | undefined} */
  let payload;
  if (body.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body.json);
  } else if (body.form) {
    payload = body.form;
  } else if (body.blob) {
    headers['Content-Type'] = 'application/octet-stream';
    payload = body.blob;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'offline', 'the server could not be reached');
  }
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText;
    try {
      const { error } = await response.json();
      code = error.code;
      message = error.message;
    } catch {
      // Not the API's JSON error (a proxy's page, say): the status code is all there is.
    }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

/** @param {Response} response */
function jsonOrNull(response) {
  return response.status === 204 ? null : response.json();
}

/** @param {string} path */
export async function getJson(path) {
  return (await send('GET', path)).json();
}

/** @param {string} path @param {unknown} [json] */
export async function postJson(path, json = {}) {
  return jsonOrNull(await send('POST', path, { json }));
}

/** @param {string} path @param {unknown} json */
export async function putJson(path, json) {
  return jsonOrNull(await send('PUT', path, { json }));
}

/** @param {string} path */
export async function deleteJson(path) {
  return jsonOrNull(await send('DELETE', path));
}

/**
 * A JSON request on a versioned resource (the assessment): `If-Match` names the version last
 * read, and the new version (`ETag`) comes back with the body. A version someone else has
 * replaced meanwhile fails as ApiError `precondition_failed` (412).
 * @param {string} method
 * @param {string} path
 * @param {string | null} etag the version last read; null for none yet
 * @param {unknown} [json]
 * @returns {Promise<{body: any, etag: string | null}>}
 */
export async function versioned(method, path, etag, json) {
  const response = await send(method, path, json === undefined ? {} : { json }, etag ? { 'If-Match': etag } : {});
  return { body: await jsonOrNull(response), etag: response.headers.get('ETag') };
}

/** @param {string} path @param {FormData} form */
export async function postForm(path, form) {
  return jsonOrNull(await send('POST', path, { form }));
}

/** @param {string} path @param {Blob} blob sent as it is */
export async function postBlob(path, blob) {
  return jsonOrNull(await send('POST', path, { blob }));
}

/** @param {string} path */
export async function getBlob(path) {
  return (await send('GET', path)).blob();
}

/**
 * A file the API serves as an attachment: its content and the name the server gives it.
 * @param {string} path
 * @returns {Promise<{blob: Blob, name: string}>}
 */
export async function getFile(path) {
  const response = await send('GET', path);
  const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') ?? '')?.[1] ?? '';
  return { blob: await response.blob(), name };
}

/**
 * @typedef {{code: string, name: string, roles: string[]}} Region
 * @typedef {{user: {id: string, name: string}, regions: Region[], csrfToken: string | null, device: boolean}} Me
 */

/**
 * @param {string} username
 * @param {string} password
 * @param {string} [totp]
 * @returns {Promise<Me>}
 */
export async function login(username, password, totp) {
  const me = await postJson(SESSION_PATH, totp ? { username, password, totp } : { username, password });
  csrfToken = me.csrfToken;
  return me;
}

/** @returns {Promise<Me>} */
export async function currentSession() {
  const me = await getJson(SESSION_PATH);
  csrfToken = me.csrfToken;
  return me;
}

export async function logout() {
  await send('DELETE', SESSION_PATH);
  csrfToken = null;
}

/**
 * Whether single sign-on is configured. The server answers 404 `oidc_disabled` when it is not;
 * a configured server redirects to the provider, which `redirect: 'manual'` keeps us from
 * following (the provider is outside this origin and the CSP).
 */
export async function oidcEnabled() {
  try {
    const response = await fetch('/api/oidc/login', { method: 'HEAD', redirect: 'manual', cache: 'no-store' });
    return response.type === 'opaqueredirect' || response.status !== 404;
  } catch {
    return false;
  }
}
