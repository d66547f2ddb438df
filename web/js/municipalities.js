/**
 * The municipality select of the nurse's registration form: the region's list, as its pilot
 * lead keeps it in the travel table (GET /api/pilot/municipalities), never free text, so the
 * distance the lead entered applies to the patient's visits treated at home.
 */

import { getJson } from './api.js';
import { h } from './dom.js';

/**
 * Fill ``select`` with the municipalities of region ``code``, keeping its first option (none given).
 * A failed load leaves only that option: registration works without a municipality.
 * @param {HTMLSelectElement} select
 * @param {string} code
 */
export async function fillMunicipalities(select, code) {
  const none = select.options[0];
  /** @type {string[]} */
  let names = [];
  try {
    if (code) names = (await getJson(`/api/pilot/municipalities?region=${encodeURIComponent(code)}`)).municipalities;
  } catch {
    names = [];
  }
  select.replaceChildren(none, ...names.map((name) => h('option', { value: name }, name)));
}
