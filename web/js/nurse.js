/**
 * The nurse's page, before the call: choose or register the patient, confirm who the patient
 * is, record the consent, then open the camera and start the consultation (nurse-call.js).
 */

import { ApiError, getJson, postJson } from './api.js';
import { openCamera } from './camera.js';
import { birthDateOf, byId, h } from './dom.js';
import { setText } from './i18n.js';
import { runCall } from './nurse-call.js';
import { startPage } from './page.js';

/** @typedef {{id: string, name?: string, nationalId?: string}} Patient */

const me = await startPage('nurse');

const patientSelect = /** @type {HTMLSelectElement} */ (byId('patient-select'));
const placeholder = patientSelect.options[0];
const registerForm = /** @type {HTMLFormElement} */ (byId('register-form'));
const registerToggle = byId('register-toggle');
const identity = byId('identity');
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
  try {
    const created = await postJson('/api/patients', {
      region: data.get('region'),
      nationalId: String(data.get('nationalId')).replace(/\s/g, ''),
      name: String(data.get('name')).trim(),
    });
    registerForm.reset();
    registerForm.hidden = true;
    registerToggle.setAttribute('aria-expanded', 'false');
    await loadPatients(created.id);
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
    await runCall({ consultation, patient, consents, stream });
  } catch {
    for (const track of stream.getTracks()) track.stop();
    setText(error, 'error.generic');
    updateStart();
  }
});

await loadPatients();
