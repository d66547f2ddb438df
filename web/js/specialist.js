/**
 * The specialist's page: the live queue of waiting consultations in their regions (polled, so
 * it updates without a reload) with whether each nurse is connected now, a chime and a
 * notification when a nurse enters the queue (queue-alerts.js), and joining one
 * (specialist-call.js). What a join needs before its `join` frame, a join token and a socket, is
 * got ready for the first entry and for the one the specialist points at or tabs to, so that the
 * click costs one round trip to `joined`.
 */

import { getJson } from './api.js';
import { byId, h } from './dom.js';
import { openEconsult } from './econsult-view.js';
import { LANGUAGE_EVENT, setText } from './i18n.js';
import { JoinTokens } from './join-tokens.js';
import { startPage } from './page.js';
import { QueueAlerts } from './queue-alerts.js';
import { SpareSocket } from './signaling.js';
import { runSpecialistCall } from './specialist-call.js';

const POLL_MS = 3000;

/**
 * @typedef {{state: 'joined' | 'reconnecting' | 'absent', connected: boolean, lastSeenAt: string | null}} Nurse
 * @typedef {{
 *   id: string, region: string, regionName: string, patient: string, status: string, createdAt: string,
 *   waitedSeconds: number, nurse: Nurse, channel: 'video' | 'econsult', urgency: string | null,
 * }} Consultation
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
const alerts = new QueueAlerts(byId('queue-alerts'));
/** Whether each waiting entry's nurse was connected at the last refresh; none before the first,
 * so entries already there when the page opens do not alert. @type {Map<string, boolean> | undefined} */
let connected;
const tokens = new JoinTokens();
const spare = new SpareSocket();
/** The queue's first entry at the last refresh. @type {string | undefined} */
let first;

/**
 * Get a join of `consultation` ready: its token, and a socket.
 * @param {string} consultation
 */
function ready(consultation) {
  tokens.prefetch(consultation);
  spare.warm();
}

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
 * @param {HTMLElement} cell
 * @param {Nurse} nurse
 */
function showNurse(cell, nurse) {
  cell.dataset.nurse = nurse.state;
  if (nurse.state === 'absent' && nurse.lastSeenAt) {
    setText(cell, 'specialist.queue.nurse.absentFor', { minutes: minutesSince(nurse.lastSeenAt) });
  } else {
    setText(cell, `specialist.queue.nurse.${nurse.state}`);
  }
}

/**
 * Rows are updated in place, not rebuilt, so keyboard focus on a join button survives a refresh.
 * @param {Consultation} consultation
 */
function rowFor(consultation) {
  let row = rows.get(consultation.id);
  if (consultation.channel === 'econsult') return econsultRow(consultation);
  if (!row) {
    const join = h('button', { type: 'button', class: 'primary' });
    setText(join, 'specialist.queue.join');
    join.addEventListener('click', () => open(consultation));
    row = h('tr', { 'data-consultation': consultation.id },
      h('td', { class: 'queue-patient' }), h('td', { class: 'queue-region' }, consultation.regionName),
      h('td', { class: 'queue-status' }), h('td', { class: 'queue-nurse' }), h('td', { class: 'queue-waiting' }),
      h('td', {}, join));
    // The pointer crosses the row on its way to Join (a touch lands on it just before the click).
    row.addEventListener('pointerenter', () => ready(consultation.id));
    row.addEventListener('focusin', () => ready(consultation.id));
    nameOf(consultation.patient).then((name) => {
      /** @type {HTMLElement} */ (row?.querySelector('.queue-patient')).textContent = name;
      join.setAttribute('aria-label', `${join.textContent}: ${name}`);
    });
    rows.set(consultation.id, row);
  }
  setText(/** @type {HTMLElement} */ (row.querySelector('.queue-status')), `consultation.status.${consultation.status}`);
  showNurse(/** @type {HTMLElement} */ (row.querySelector('.queue-nurse')), consultation.nurse);
  setText(/** @type {HTMLElement} */ (row.querySelector('.queue-waiting')), 'specialist.queue.minutes', { minutes: Math.round(consultation.waitedSeconds / 60) });
  return row;
}

/**
 * An e-consult waits in the queue beside the calls, marked with its urgency; it has no call
 * to join, so no token or socket is got ready: Open shows it (econsult-view.js).
 * @param {Consultation} consultation
 */
function econsultRow(consultation) {
  let row = rows.get(consultation.id);
  if (!row) {
    const openButton = h('button', { type: 'button', class: 'primary' });
    setText(openButton, 'specialist.queue.open');
    openButton.addEventListener('click', () => {
      clearTimeout(timer);
      byId('queue-view').hidden = true;
      openEconsult(consultation);
    });
    const kind = h('td', { class: 'queue-status' });
    setText(kind, `specialist.queue.econsult.${consultation.urgency}`);
    row = h('tr', { 'data-consultation': consultation.id, 'data-channel': 'econsult' },
      h('td', { class: 'queue-patient' }), h('td', { class: 'queue-region' }, consultation.regionName), kind,
      h('td', { class: 'queue-nurse' }), h('td', { class: 'queue-waiting' }), h('td', {}, openButton));
    const named = row;
    nameOf(consultation.patient).then((name) => {
      /** @type {HTMLElement} */ (named.querySelector('.queue-patient')).textContent = name;
      openButton.setAttribute('aria-label', `${openButton.textContent}: ${name}`);
    });
    rows.set(consultation.id, row);
  }
  setText(/** @type {HTMLElement} */ (row.querySelector('.queue-waiting')), 'specialist.queue.minutes', { minutes: Math.round(consultation.waitedSeconds / 60) });
  return row;
}

async function refresh() {
  try {
    const { consultations } = await getJson('/api/consultations/queue');
    const current = new Set(consultations.map((/** @type {Consultation} */ c) => c.id));
    for (const [id, row] of rows) if (!current.has(id)) { row.remove(); rows.delete(id); }
    tokens.keepOnly(current);
    body.append(...consultations.map(rowFor));
    // Only a call is joined: an e-consult's first place gets nothing ready.
    readyFirst(consultations.find((/** @type {Consultation} */ c) => c.channel === 'video')?.id);
    alertArrivals(consultations);
    setText(status, consultations.length ? 'specialist.queue.count' : 'specialist.queue.empty', { count: consultations.length });
  } catch {
    setText(status, 'specialist.queue.offline');
  }
  timer = setTimeout(refresh, POLL_MS);
}

/**
 * Alert once per arrival: a new waiting entry whose nurse is connected, or one whose nurse
 * has just connected.
 * @param {Consultation[]} consultations
 */
function alertArrivals(consultations) {
  const waiting = consultations.filter((c) => c.status === 'waiting');
  if (connected) {
    for (const c of waiting) if (c.nurse.connected && !connected.get(c.id)) alerts.notify(c.regionName, c.id);
  }
  connected = new Map(waiting.map((c) => [c.id, c.nurse.connected]));
}

/**
 * The first entry is the likeliest join: its token is kept fresh (fetched again once it is old,
 * at the refresh after), and a socket is opened when it first comes first, not at every refresh.
 * @param {string | undefined} consultation
 */
function readyFirst(consultation) {
  if (consultation === undefined) return;
  if (consultation === first) tokens.prefetch(consultation);
  else ready(consultation);
  first = consultation;
}

/** @param {Consultation} consultation */
async function open(consultation) {
  clearTimeout(timer);
  byId('queue-view').hidden = true;
  await runSpecialistCall(consultation, { joinToken: () => tokens.get(consultation.id), socket: spare.take() });
}

window.addEventListener(LANGUAGE_EVENT, () => {
  for (const row of rows.values()) {
    const join = row.querySelector('button');
    const name = row.querySelector('.queue-patient')?.textContent;
    if (join && name) join.setAttribute('aria-label', `${join.textContent}: ${name}`);
  }
});

refresh();
