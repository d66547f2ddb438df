/**
 * The patient's timeline (GET /api/patients/{id}/timeline): the earlier snapshots, newest
 * first, to set beside today's (is the wound healing?), and the signed plans the specialists
 * sent back (the nurse's patient view).
 */

import { getJson } from './api.js';
import { h } from './dom.js';
import { formatNumber as n, language, setText } from './i18n.js';

/**
 * @typedef {{id: string, consultation: string, takenAt: string, measurement: {lengthCm: number, widthCm: number, areaCm2: number} | null}} SnapshotEntry
 */

/**
 * @typedef {{id: string, channel: string, signedAt: string, plan: import('./plan.js').Plan}} SignedPlan
 */

/**
 * The signed plans among the timeline's consultations, newest first.
 * @param {string} patient
 * @returns {Promise<SignedPlan[]>}
 */
export async function signedPlans(patient) {
  const { entries } = await getJson(`/api/patients/${encodeURIComponent(patient)}/timeline`);
  return entries
    .filter((/** @type {any} */ e) => e.kind === 'consultation' && e.assessment?.signedAt)
    .map((/** @type {any} */ e) => ({ id: e.id, channel: e.channel, signedAt: e.assessment.signedAt, plan: e.assessment }))
    .sort((/** @type {SignedPlan} */ a, /** @type {SignedPlan} */ b) => b.signedAt.localeCompare(a.signedAt));
}

/** @param {string} iso */
export function dateOf(iso) {
  return new Date(iso).toLocaleDateString(language(), { year: 'numeric', month: 'short', day: 'numeric' });
}

/**
 * @param {{patient: string, consultation: string, list: HTMLElement, empty: HTMLElement,
 *   onPick: (entry: SnapshotEntry) => void}} options
 */
export async function showTimeline({ patient, consultation, list, empty, onPick }) {
  const { entries } = await getJson(`/api/patients/${encodeURIComponent(patient)}/timeline`);
  /** @type {SnapshotEntry[]} */
  const earlier = entries.filter((/** @type {any} */ e) => e.kind === 'snapshot' && e.consultation !== consultation).reverse();
  empty.hidden = earlier.length > 0;
  list.replaceChildren(...earlier.map((entry) => {
    const caption = h('span', { class: 'thumb-caption' }, dateOf(entry.takenAt));
    if (entry.measurement) {
      const size = h('span', { class: 'thumb-size' });
      setText(size, 'measure.short', { length: n(entry.measurement.lengthCm), width: n(entry.measurement.widthCm) });
      caption.append(' · ', size);
    }
    const button = h('button', { type: 'button', class: 'thumb' },
      h('img', { src: `/api/snapshots/${entry.id}/thumbnail`, alt: '' }), caption);
    button.addEventListener('click', () => onPick(entry));
    return h('li', {}, button);
  }));
}
