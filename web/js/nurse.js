/**
 * The nurse's page, before the call: choose or register the patient, confirm who the patient
 * is, record the consent, then open the camera and start the consultation (nurse-call.js).
 * A consultation of hers that is still live is not started again: after a reload the page goes
 * straight back into it, otherwise (a new tab, after logging in again) it offers to rejoin.
 */

import { ApiError, getJson, postJson } from './api.js';
import { CallMemory } from './call-memory.js';
import { openCamera } from './camera.js';
import { birthDateOf, byId, h } from './dom.js';
import { setText } from './i18n.js';
import { runCall } from './nurse-call.js';
import { startPage } from './page.js';

/** @typedef {{id: string, name?: string, nationalId?: string}} Patient */

const me = await startPage('nurse');
const memory = new CallMemory(me.user.id);

const patientSelect = /** @type {HTMLSelectElement} */ (byId('patient-select'));
const placeholder = patientSelect.options[0];
const registerForm = /** @type {HTMLFormElement} */ (byId('register-form'));
const registerToggle = byId('register-toggle');
const identity = byId('identity');
const existing = byId('register-existing');
const confirmed = /** @type {HTMLInputElement} */ (byId('identity-confirmed'));
const consentForm = /** @type {HTMLFormElement} */ (byId('consent-form'));
const start = /** @type {HTMLButtonElement} */ (byId('start'));

/** @type {Patient | null} */
let patient = null;

/** @param {string} name */
function consentBox(name) {
  return /** @type {HTMLInputElement} */ (consentForm.elements.namedItem(name));
}

function updateStart() {
  start.disabled = !(patient && confirmed.checked && consentBox('video').checked);
}

/** @param {string} [select] the pseudonym to select afterwards */
async function loadPatients(select) {
  const { patients } = await getJson('/api/patients');
  patientSelect.replaceChildren(
    placeholder,
    ...patients.map((/** @type {Patient} */ p) => h('option', { value: p.id }, `${p.name ?? p.id} (${birthDateOf(p.nationalId)})`)),
  );
  if (select) {
    patientSelect.value = select;
    await choosePatient(select);
  }
}

/** @param {string} id */
async function choosePatient(id) {
  patient = id ? await getJson(`/api/patients/${encodeURIComponent(id)}`) : null;
  identity.hidden = consentForm.hidden = !patient;
  existing.hidden = true;
  confirmed.checked = false;
  if (patient) {
    byId('identity-name').textContent = patient.name ?? '';
    byId('identity-nid').textContent = patient.nationalId ?? '';
  }
  updateStart();
}

const regionSelect = /** @type {HTMLSelectElement} */ (byId('region-select'));
regionSelect.replaceChildren(
  ...me.regions.filter((r) => r.roles.includes('nurse')).map((r) => h('option', { value: r.code }, r.name)),
);

patientSelect.addEventListener('change', () => choosePatient(patientSelect.value));
confirmed.addEventListener('change', updateStart);
consentForm.addEventListener('change', updateStart);
registerToggle.addEventListener('click', () => {
  registerForm.hidden = !registerForm.hidden;
  registerToggle.setAttribute('aria-expanded', String(!registerForm.hidden));
  if (!registerForm.hidden) byId('national-id').focus();
});

registerForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = byId('register-error');
  error.textContent = '';
  const data = new FormData(registerForm);
  const region = data.get('region');
  const nationalId = String(data.get('nationalId')).replace(/\s/g, '');
  try {
    // A number the region knows is that patient (found by the number in the body, never a
    // URL): continue with it and register nothing. The registration answers alike
    // (`existed`) if another nurse registered the number in between.
    const { patient: known } = await postJson('/api/patients/lookup', { region, nationalId });
    /** @type {Patient & {existed?: boolean}} */
    const chosen = known ?? await postJson('/api/patients', { region, nationalId, name: String(data.get('name')).trim() });
    registerForm.reset();
    registerForm.hidden = true;
    registerToggle.setAttribute('aria-expanded', 'false');
    await loadPatients(chosen.id);
    if (known || chosen.existed) {
      setText(existing, 'nurse.register.existing');
      existing.hidden = false;
    }
    confirmed.focus();
  } catch (failure) {
    setText(error, failure instanceof ApiError && failure.code === 'bad_national_id' ? 'nurse.register.badNationalId' : 'error.generic');
  }
});

consentForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!patient || start.disabled) return;
  const error = byId('start-error');
  error.textContent = '';
  start.disabled = true;
  const consents = { video: true, snapshots: consentBox('snapshots').checked, recording: consentBox('recording').checked };
  let stream;
  try {
    stream = await openCamera();
  } catch {
    setText(error, 'nurse.error.camera');
    updateStart();
    return;
  }
  try {
    const consultation = await postJson('/api/consultations', { patient: patient.id });
    await postJson(`/api/consultations/${consultation.id}/consents`, consents);
    byId('setup').hidden = true;
    await runCall({ consultation, patient, consents, stream, memory });
  } catch (failure) {
    for (const track of stream.getTracks()) track.stop();
    updateStart();
    if (failure instanceof ApiError && failure.code === 'consultation_live') {
      // This patient's consultation is still open, the specialist perhaps in it: go back there.
      await liveConsultations().then(offerRejoin).then(
        () => byId('rejoin').focus(),
        () => setText(error, 'error.generic'),
      );
    } else {
      setText(error, 'error.generic');
    }
  }
});

// --- rejoin a live consultation ---------------------------------------------------------------

/** @typedef {{id: string, patient: string}} Consultation */

/** @returns {Promise<Consultation[]>} */
async function liveConsultations() {
  return (await getJson('/api/consultations/live')).consultations;
}

/**
 * Back into a live consultation: the camera opened again, the consents already recorded.
 * @param {Consultation} consultation
 */
async function rejoin(consultation) {
  const stream = await openCamera();
  try {
    const [found, { consents }] = await Promise.all([
      getJson(`/api/patients/${encodeURIComponent(consultation.patient)}`),
      getJson(`/api/consultations/${consultation.id}/consents`),
    ]);
    byId('setup').hidden = true;
    await runCall({ consultation, patient: found, consents, stream, memory });
  } catch (failure) {
    for (const track of stream.getTracks()) track.stop();
    throw failure;
  }
}

/**
 * Offer each live consultation, its patient shown as on the identity card.
 * @param {Consultation[]} live
 */
async function offerRejoin(live) {
  const section = byId('rejoin');
  const patients = await Promise.all(live.map((c) => getJson(`/api/patients/${encodeURIComponent(c.patient)}`)));
  byId('rejoin-list').replaceChildren(...live.map((consultation, i) => {
    const button = h('button', { type: 'button', class: 'big primary', 'data-consultation': consultation.id });
    setText(button, 'nurse.rejoin.button');
    button.addEventListener('click', async () => {
      byId('rejoin-error').textContent = '';
      button.disabled = true;
      try {
        await rejoin(consultation);
      } catch (failure) {
        setText(byId('rejoin-error'), failure instanceof ApiError ? 'error.generic' : 'nurse.error.camera');
        button.disabled = false;
      }
    });
    return h('li', { class: 'rejoin-item' }, identityCard(patients[i]), button);
  }));
  section.hidden = live.length === 0;
}

/** @param {Patient} shown */
function identityCard(shown) {
  const term = (/** @type {string} */ key) => {
    const dt = h('dt');
    setText(dt, key);
    return dt;
  };
  return h('dl', { class: 'identity' },
    term('patient.name'), h('dd', {}, shown.name ?? ''),
    term('patient.nationalId'), h('dd', {}, shown.nationalId ?? ''));
}

// Without the list (the server briefly unreachable) the page still serves a new consultation.
const live = await liveConsultations().catch(() => []);
const remembered = memory.get();
const current = live.find((c) => c.id === remembered?.consultation);
if (!current) memory.forget();
// Whatever goes wrong with the offer, the page must still let the nurse start a consultation.
if (current && !remembered?.paused) {
  // A reload (or a restored tab) in the middle of the call: straight back into it.
  await rejoin(current).catch(() => offerRejoin(live)).catch(() => {});
} else {
  await offerRejoin(live).catch(() => {});
}
await loadPatients();
