/** Small DOM helpers shared by the pages. */

/**
 * The element with this id; a missing one is a bug in the page, so it throws.
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
export function byId(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing #${id}`);
  return /** @type {T} */ (found);
}

/**
 * A new element with attributes and children, typed by its tag (a button has `disabled`).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string>} [attrs]
 * @param {...(Node | string)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) made.setAttribute(name, value);
  made.append(...children);
  return made;
}

/**
 * A random id of the signaling protocol's id alphabet (A-Z a-z 0-9 _ -).
 * @param {string} prefix
 */
export function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  const b64 = btoa(String.fromCharCode(...bytes));
  return prefix + b64.replaceAll('+', '-').replaceAll('/', '_');
}

/**
 * The national identity number with its personal digits hidden: lists show only the birth date.
 * @param {string | undefined} nationalId
 */
export function birthDateOf(nationalId) {
  return nationalId ? `${nationalId.slice(0, 6)}-•••••` : '';
}
