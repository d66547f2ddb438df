/**
 * The nurse's e-consults (store and forward): photos of the wound with a short question and
 * an urgency, sent to the specialists' queue without a call; and her list of those sent, with
 * their status and, once a specialist has signed it, the answer (its plan, to acknowledge).
 *
 * Sending is what the call does, in order: the consultation (channel `econsult`), the
 * patient's consent to storing photos, then each photo through the snapshots' upload (checked
 * and stripped of its metadata by the server like every snapshot).
 */

import { ApiError, getJson, postForm, postJson } from './api.js';
import { h } from './dom.js';
import { setText } from './i18n.js';
import { planCard } from './plan.js';
import { dateOf } from './timeline.js';

/** Photos per e-consult: enough for the wound and its surroundings, few enough for a slow line. */
export const MAX_PHOTOS = 6;
/** The upload's refusals of a file (woundcare/records/images.py RejectCode). */
const IMAGE_REFUSED = new Set(['too_large', 'not_an_image', 'unsupported_format', 'too_many_pixels', 'too_small',
  'truncated', 'decompression_bomb']);

/**
 * @typedef {{id: string, patient: string, status: string, urgency: string, question: string,
 *   createdAt: string, answer: import('./plan.js').Plan | null}} SentEconsult
 */

/**
 * Send one e-consult; resolves once every photo is stored.
 * @param {{patient: string, question: string, urgency: string, photos: File[]}} econsult
 * @returns {Promise<string>} the e-consult's id
 */
export async function sendEconsult({ patient, question, urgency, photos }) {
  const sent = await postJson('/api/consultations', { patient, channel: 'econsult', question, urgency });
  await postJson(`/api/consultations/${sent.id}/consents`, { video: false, snapshots: true, recording: false });
  for (const photo of photos) {
    const form = new FormData();
    form.append('image', photo, 'wound.jpg');
    await postForm(`/api/consultations/${sent.id}/snapshots`, form);
  }
  return sent.id;
}

/**
 * The form: question, urgency, photos (file input or the camera), consent; `patient` says
 * whom it is about at the moment of sending (null: none chosen and confirmed yet).
 * @param {{form: HTMLFormElement, status: HTMLElement, patient: () => string | null, onSent: () => void}} options
 */
export function mountEconsultForm({ form, status, patient, onSent }) {
  const photosInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('photos'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const about = patient();
    const question = String(data.get('question') ?? '').trim();
    const photos = [...(photosInput.files ?? [])];
    const problem = !about ? 'econsult.error.patient'
      : !question ? 'econsult.error.question'
        : photos.length === 0 || photos.length > MAX_PHOTOS ? 'econsult.error.photos'
          : !data.get('consent') ? 'econsult.error.consent' : null;
    if (problem || !about) {
      setText(status, problem ?? 'econsult.error.patient');
      return;
    }
    const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
    submit.disabled = true;
    setText(status, 'econsult.sending');
    try {
      await sendEconsult({ patient: about, question, urgency: String(data.get('urgency') ?? 'routine'), photos });
      form.reset();
      setText(status, 'econsult.sent');
      onSent();
    } catch (failure) {
      setText(status, failure instanceof ApiError && IMAGE_REFUSED.has(failure.code) ? 'econsult.error.image' : 'error.generic');
    } finally {
      submit.disabled = false;
    }
  });
}

/**
 * Her e-consults, newest first: patient, when, urgency, status, the question, and the answer.
 * @param {HTMLElement} list
 * @param {(patient: string) => Promise<string>} nameOf
 * @param {() => void} onAcknowledged after an answer's plan was acknowledged here
 * @returns {Promise<number>} how many
 */
export async function showSentEconsults(list, nameOf, onAcknowledged) {
  /** @type {SentEconsult[]} */
  const sent = (await getJson('/api/consultations/econsults')).consultations;
  const items = await Promise.all(sent.map(async (econsult) => {
    const urgency = h('span', { class: `urgency urgency-${econsult.urgency}` });
    setText(urgency, `urgency.${econsult.urgency}`);
    const state = h('span', { class: 'econsult-status' });
    setText(state, econsult.answer ? 'econsult.answered' : 'econsult.waiting');
    const item = h('li', { class: 'econsult-item', 'data-consultation': econsult.id },
      h('p', { class: 'econsult-head' }, h('strong', {}, await nameOf(econsult.patient)), ` · ${dateOf(econsult.createdAt)} · `,
        urgency, ' · ', state),
      h('p', { class: 'econsult-question' }, econsult.question));
    if (econsult.answer) item.append(planCard(econsult.answer, { consultation: econsult.id, onAcknowledged }));
    return item;
  }));
  list.replaceChildren(...items);
  return sent.length;
}
