/**
 * The specialist's page: the live queue of waiting consultations in their regions (polled, so
 * it updates without a reload), and joining one (specialist-call.js).
 */

import { getJson } from './api.js';
import { byId, h } from './dom.js';
import { LANGUAGE_EVENT, setText } from './i18n.js';
import { startPage } from './page.js';
import { runSpecialistCall } from './specialist-call.js';

const POLL_MS = 3000;

/**
 * @typedef {{id: string, region: string, patient: string, status: string, createdAt: string}} Consultation
 */

await startPage('specialist');

const body = byId('queue-body');
const status = byId('queue-status');
/** Patient names by pseudonym: they do not change, so each is fetched once. @type {Map<string, Promise<string>>} */
const names = new Map();
/** @type {Map<string, HTMLTableRowElement>} */
const rows = new Map();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;

/** @param {string} patient */
function nameOf(patient) {
  if (!names.has(patient)) {
    names.set(patient, getJson(`/api/patients/${encodeURIComponent(patient)}`).then((p) => p.name ?? patient, () => patient));
  }
  return /** @type {Promise<string>} */ (names.get(patient));
}

/** @param {string} since ISO time */
function minutesSince(since) {
  return Math.max(0, Math.round((Date.now() - Date.parse(since)) / 60000));
}

/**
 * Rows are updated in place, not rebuilt, so keyboard focus on a join button survives a refresh.
 * @param {Consultation} consultation
 */
function rowFor(consultation) {
  let row = rows.get(consultation.id);
  if (!row) {
    const join = h('button', { type: 'button', class: 'primary' });
    setText(join, 'specialist.queue.join');
    join.addEventListener('click', () => open(consultation));
    row = /** @type {HTMLTableRowElement} */ (h('tr', { 'data-consultation': consultation.id },
      h('td', { class: 'queue-patient' }), h('td', {}, consultation.region), h('td', { class: 'queue-status' }),
      h('td', { class: 'queue-waiting' }), h('td', {}, join)));
    nameOf(consultation.patient).then((name) => {
      /** @type {HTMLElement} */ (row?.querySelector('.queue-patient')).textContent = name;
      join.setAttribute('aria-label', `${join.textContent}: ${name}`);
    });
    rows.set(consultation.id, row);
  }
  setText(/** @type {HTMLElement} */ (row.querySelector('.queue-status')), `consultation.status.${consultation.status}`);
  setText(/** @type {HTMLElement} */ (row.querySelector('.queue-waiting')), 'specialist.queue.minutes', { minutes: minutesSince(consultation.createdAt) });
  return row;
}

async function refresh() {
  try {
    const { consultations } = await getJson('/api/consultations/queue');
    const current = new Set(consultations.map((/** @type {Consultation} */ c) => c.id));
    for (const [id, row] of rows) if (!current.has(id)) { row.remove(); rows.delete(id); }
    body.append(...consultations.map(rowFor));
    setText(status, consultations.length ? 'specialist.queue.count' : 'specialist.queue.empty', { count: consultations.length });
  } catch {
    setText(status, 'specialist.queue.offline');
  }
  timer = setTimeout(refresh, POLL_MS);
}

/** @param {Consultation} consultation */
async function open(consultation) {
  clearTimeout(timer);
  byId('queue-view').hidden = true;
  await runSpecialistCall(consultation);
}

window.addEventListener(LANGUAGE_EVENT, () => {
  for (const row of rows.values()) {
    const join = row.querySelector('button');
    const name = row.querySelector('.queue-patient')?.textContent;
    if (join && name) join.setAttribute('aria-label', `${join.textContent}: ${name}`);
  }
});

refresh();
