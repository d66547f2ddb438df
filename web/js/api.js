/**
 * The HTTP API as the pages use it: the HttpOnly session cookie goes along by itself, and every
 * state change carries the CSRF token that login and GET /api/session return. The token lives in
 * this module's memory only, never in storage or a URL.
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

/**
 * @param {string} method
 * @param {string} path
 * @param {{json?: unknown, form?: FormData}} [body]
 * @param {Record<string, string>} [extra] more request headers
 * @returns {Promise<Response>}
 */
async function send(method, path, body = {}, extra = {}) {
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

/** @param {string} path */
export async function getBlob(path) {
  return (await send('GET', path)).blob();
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
  const me = await postJson('/api/session', totp ? { username, password, totp } : { username, password });
  csrfToken = me.csrfToken;
  return me;
}

/** @returns {Promise<Me>} */
export async function currentSession() {
  const me = await getJson('/api/session');
  csrfToken = me.csrfToken;
  return me;
}

export async function logout() {
  await send('DELETE', '/api/session');
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
