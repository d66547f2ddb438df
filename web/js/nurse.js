/**
 * The nurse's page, before the call: choose or register the patient, confirm who the patient
 * is, record the consent, then open the camera and start the consultation (nurse-call.js).
 * A consultation of hers that is still live is not started again: after a reload the page goes
 * straight back into it, otherwise (a new tab, after logging in again) it offers to rejoin.
 * The start screen also lists the specialists' signed plans she has not acknowledged, the
 * chosen patient's plans, her e-consults (econsult.js) and the form to send one; after the
 * call, her end screen waits for the plan (plan.js).
 */

import { ApiError, getJson, postJson } from './api.js';
import { CallMemory } from './call-memory.js';
import { openCamera } from './camera.js';
import { birthDateOf, byId, h } from './dom.js';
import { setText } from './i18n.js';
import { fillMunicipalities } from './municipalities.js';
import { runCall } from './nurse-call.js';
import { mountEconsultForm, showSentEconsults } from './econsult.js';
import { startPage } from './page.js';
import { planCard } from './plan.js';
import { signedPlans } from './timeline.js';

/** @typedef {{id: string, name?: string, nationalId?: string}} Patient */

const registerForm = /** @type {HTMLFormElement} */ (byId('register-form'));
const registerToggle = byId('register-toggle');
// Wired before the page's first await: a tap on the button while the page opens is not lost.
registerToggle.addEventListener('click', () => {
  registerForm.hidden = !registerForm.hidden;
  registerToggle.setAttribute('aria-expanded', String(!registerForm.hidden));
  if (!registerForm.hidden) byId('national-id').focus();
});

const me = await startPage('nurse');
const memory = new CallMemory(me.user.id);

const patientSelect = /** @type {HTMLSelectElement} */ (byId('patient-select'));
const placeholder = patientSelect.options[0];
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
  identity.hidden = consentForm.hidden = econsultForm.hidden = !patient;
  existing.hidden = true;
  confirmed.checked = false;
  if (patient) {
    byId('identity-name').textContent = patient.name ?? '';
    byId('identity-nid').textContent = patient.nationalId ?? '';
  }
  updateStart();
  await showPatientPlans(patient?.id ?? null).catch(() => {});
}

const regionSelect = /** @type {HTMLSelectElement} */ (byId('region-select'));
regionSelect.replaceChildren(
  ...me.regions.filter((r) => r.roles.includes('nurse')).map((r) => h('option', { value: r.code }, r.name)),
);

patientSelect.addEventListener('change', () => choosePatient(patientSelect.value));
confirmed.addEventListener('change', updateStart);
consentForm.addEventListener('change', updateStart);
// The municipality comes from the region's list (issue 18); it follows the region chosen.
const municipalitySelect = /** @type {HTMLSelectElement} */ (byId('municipality-select'));
regionSelect.addEventListener('change', () => fillMunicipalities(municipalitySelect, regionSelect.value));
fillMunicipalities(municipalitySelect, regionSelect.value);
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
    // The municipality comes from the region's list (issue 18); none chosen is none given.
    const municipality = data.get('municipality') || undefined;
    /** @type {Patient & {existed?: boolean}} */
    const chosen = known ?? await postJson('/api/patients', { region, nationalId, name: String(data.get('name')).trim(), municipality });
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
    const code = failure instanceof ApiError ? failure.code : null;
    setText(error, code === 'bad_national_id' ? 'nurse.register.badNationalId'
      : code === 'unknown_municipality' ? 'nurse.register.unknownMunicipality' : 'error.generic');
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
    awaitPlanAfterCall(consultation.id);
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
    awaitPlanAfterCall(consultation.id);
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

// --- the plans back and the e-consults ------------------------------------------------------

const econsultForm = /** @type {HTMLFormElement} */ (byId('econsult-form'));
/** Patient names by pseudonym, each fetched once. @type {Map<string, Promise<string>>} */
const names = new Map();

/** @param {string} pseudonym */
function nameOf(pseudonym) {
  if (!names.has(pseudonym)) {
    names.set(pseudonym, getJson(`/api/patients/${encodeURIComponent(pseudonym)}`).then(
      (/** @type {Patient} */ p) => `${p.name ?? p.id} (${birthDateOf(p.nationalId)})`, () => pseudonym));
  }
  return /** @type {Promise<string>} */ (names.get(pseudonym));
}

/** The signed plans of her regions that no nurse has acknowledged yet. */
async function showPendingPlans() {
  /** @type {{id: string, patient: string, channel: string, assessment: import('./plan.js').Plan}[]} */
  const plans = (await getJson('/api/plans/unacknowledged')).plans;
  const items = await Promise.all(plans.map(async (pending) => {
    const channel = h('span', { class: 'plan-channel' });
    setText(channel, `plan.channel.${pending.channel}`);
    const item = h('li', { class: 'plans-item', 'data-consultation': pending.id },
      h('p', {}, h('strong', {}, await nameOf(pending.patient)), ' · ', channel));
    item.append(planCard(pending.assessment, { consultation: pending.id, onAcknowledged: () => refreshLists() }));
    return item;
  }));
  byId('plans-list').replaceChildren(...items);
  byId('plans').hidden = plans.length === 0;
}

/**
 * The chosen patient's signed plans, newest first (the patient view of the timeline).
 * @param {string | null} pseudonym
 */
async function showPatientPlans(pseudonym) {
  const section = byId('patient-plans');
  section.hidden = !pseudonym;
  if (!pseudonym) return;
  const plans = await signedPlans(pseudonym);
  byId('patient-plans-list').replaceChildren(...plans.map((signed) => planCard(signed.plan, { consultation: signed.id, onAcknowledged: () => { refreshLists(); } })));
  byId('patient-plans-empty').hidden = plans.length > 0;
}

async function refreshLists() {
  await Promise.all([
    showPendingPlans().catch(() => {}),
    showSentEconsults(byId('econsults-list'), nameOf, () => { showPendingPlans().catch(() => {}); }).then((count) => { byId('econsults').hidden = count === 0; }, () => {}),
  ]);
}

mountEconsultForm({
  form: econsultForm,
  status: byId('econsult-status'),
  patient: () => (patient && confirmed.checked ? patient.id : null),
  onSent: () => { refreshLists(); },
});

/** How often the end screen asks whether the specialist has signed. */
const PLAN_POLL_MS = 4000;

/**
 * Once the call has ended, wait on the end screen for the signed plan, then show it to be
 * acknowledged. The call (nurse-call.js) only shows the end screen; this watches for it.
 * @param {string} consultation
 */
function awaitPlanAfterCall(consultation) {
  const ended = byId('ended');
  const watch = new MutationObserver(() => {
    if (ended.hidden) return;
    watch.disconnect();
    pollPlan(consultation);
  });
  watch.observe(ended, { attributes: true, attributeFilter: ['hidden'] });
}

/** @param {string} consultation */
async function pollPlan(consultation) {
  /** @type {any} */
  const found = await getJson(`/api/consultations/${encodeURIComponent(consultation)}/assessment`).catch(() => null);
  if (!found?.signedAt) {
    setTimeout(() => pollPlan(consultation), PLAN_POLL_MS);
    return;
  }
  byId('ended-plan').replaceChildren(planCard(found, { consultation }));
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
await refreshLists();
