/**
 * The specialist's view of an e-consult, opened from the queue (no call to join): the
 * nurse's question and urgency, her photos, and the assessment that answers it. The page's
 * one assessment form moves here; signing it closes the e-consult and sends the plan back.
 */

import { getJson } from './api.js';
import { AssessmentEditor } from './assessment.js';
import { byId, h } from './dom.js';
import { setText } from './i18n.js';
import { dateOf } from './timeline.js';

/** @param {{id: string, patient: string}} econsult */
export async function openEconsult(econsult) {
  const view = byId('econsult-view');
  const form = /** @type {HTMLFormElement} */ (byId('assessment-form'));
  byId('econsult-answer').append(form);
  view.hidden = false;
  const id = encodeURIComponent(econsult.id);
  const [found, patient, { snapshots }] = await Promise.all([
    getJson(`/api/consultations/${id}`),
    getJson(`/api/patients/${encodeURIComponent(econsult.patient)}`),
    getJson(`/api/consultations/${id}/snapshots`),
  ]);
  byId('econsult-patient').textContent = patient.name ?? patient.id;
  byId('econsult-nid').textContent = patient.nationalId ?? '';
  byId('econsult-question').textContent = found.question ?? '';
  setText(byId('econsult-urgency'), `urgency.${found.urgency}`);
  byId('econsult-sent').textContent = dateOf(found.createdAt);
  const large = /** @type {HTMLImageElement} */ (byId('econsult-photo'));
  byId('econsult-photos').replaceChildren(...snapshots.map((/** @type {{id: string}} */ photo) => {
    const button = h('button', { type: 'button', class: 'thumb' },
      h('img', { src: `/api/snapshots/${photo.id}/thumbnail`, alt: '' }));
    button.addEventListener('click', () => {
      large.src = `/api/snapshots/${photo.id}`;
      large.hidden = false;
    });
    return h('li', {}, button);
  }));
  if (snapshots[0]) {
    large.src = `/api/snapshots/${snapshots[0].id}`;
    large.hidden = false;
  }

  const editor = new AssessmentEditor(form, byId('assessment-status'), econsult.id);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    editor.save();
  });
  byId('sign-assessment').addEventListener('click', () => editor.sign());
  // No assessment yet is a 404: the form stays empty for a first draft.
  await editor.load().catch(() => {});
  byId('econsult-heading').focus();
}
