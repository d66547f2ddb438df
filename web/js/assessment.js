/**
 * The structured assessment form ↔ the API's content (woundcare/records/assessments.py).
 * Empty fields are sent as null, so a cleared field clears the saved draft too. The plan back
 * to the nurse is part of it: treatment plan, next review and who is responsible.
 */

import { ApiError, versioned } from './api.js';
import { setText } from './i18n.js';

const SIZES = ['lengthCm', 'widthCm', 'depthCm'];
const TISSUES = ['granulation', 'slough', 'necrotic', 'epithelial'];

/**
 * @param {HTMLFormElement} form
 * @param {string} name
 */
function field(form, name) {
  return /** @type {HTMLInputElement} */ (form.elements.namedItem(name));
}

/** @param {HTMLFormElement} form @param {string} name */
function textOf(form, name) {
  const value = field(form, name).value.trim();
  return value === '' ? null : value;
}

/**
 * Named number fields as an object, or null when all are empty.
 * @param {HTMLFormElement} form
 * @param {string[]} names
 * @param {(text: string) => number} parse
 */
function numbersOf(form, names, parse) {
  /** @type {Record<string, number>} */
  const out = {};
  for (const name of names) {
    const text = field(form, name).value.trim();
    if (text !== '') out[name] = parse(text.replace(',', '.'));
  }
  return Object.keys(out).length ? out : null;
}

/**
 * @param {HTMLFormElement} form
 * @returns {Record<string, unknown>}
 */
export function readAssessment(form) {
  const data = new FormData(form);
  return {
    woundType: textOf(form, 'woundType'),
    location: textOf(form, 'location'),
    size: numbersOf(form, SIZES, Number),
    tissue: numbersOf(form, TISSUES, (text) => Number.parseInt(text, 10)),
    exudate: textOf(form, 'exudate'),
    infectionSigns: data.getAll('infectionSigns'),
    treatmentPlan: textOf(form, 'treatmentPlan'),
    nextReview: textOf(form, 'nextReview'),
    responsible: textOf(form, 'responsible'),
    outcome: data.get('outcome') || null,
  };
}

/**
 * @param {HTMLFormElement} form
 * @param {Record<string, any>} saved the assessment as GET returns it
 */
export function fillAssessment(form, saved) {
  for (const name of ['woundType', 'location', 'exudate', 'treatmentPlan', 'nextReview', 'responsible']) {
    field(form, name).value = saved[name] ?? '';
  }
  for (const name of SIZES) field(form, name).value = saved.size?.[name] ?? '';
  for (const name of TISSUES) field(form, name).value = saved.tissue?.[name] ?? '';
  for (const box of form.querySelectorAll('input[name="infectionSigns"]')) {
    const input = /** @type {HTMLInputElement} */ (box);
    input.checked = (saved.infectionSigns ?? []).includes(input.value);
  }
  for (const radio of form.querySelectorAll('input[name="outcome"]')) {
    const input = /** @type {HTMLInputElement} */ (radio);
    input.checked = saved.outcome === input.value;
  }
}

/**
 * Put a wound measurement into the size fields (the specialist can still correct them).
 * @param {HTMLFormElement} form
 * @param {{lengthCm: number, widthCm: number}} measurement
 */
export function applyMeasurement(form, measurement) {
  field(form, 'lengthCm').value = String(measurement.lengthCm);
  field(form, 'widthCm').value = String(measurement.widthCm);
}

/** @param {HTMLFormElement} form @param {boolean} locked */
export function lockAssessment(form, locked) {
  for (const element of form.elements) /** @type {HTMLInputElement} */ (element).disabled = locked;
}

/** What a refused save or signing tells the specialist, by the API's error code. */
const EXPLANATIONS = /** @type {Record<string, string>} */ ({
  bad_assessment: 'assessment.error.invalid',
  precondition_failed: 'assessment.error.stale',
});

/**
 * One consultation's assessment in its form: loads it, saves the draft and signs, each
 * write applied only to the version last read (`If-Match`), what happened told in `status`.
 */
export class AssessmentEditor {
  /** The version (ETag) last read or written. @type {string | null} */
  #version = null;

  /**
   * @param {HTMLFormElement} form
   * @param {HTMLElement} status
   * @param {string} consultation
   */
  constructor(form, status, consultation) {
    this.form = form;
    this.status = status;
    this.path = `/api/consultations/${encodeURIComponent(consultation)}/assessment`;
  }

  /** Fill the form with the saved assessment, if there is one. */
  async load() {
    const { body, etag } = await versioned('GET', this.path, null);
    this.#version = etag;
    fillAssessment(this.form, body);
    this.#show(body);
  }

  /** @param {Record<string, any>} saved */
  #show(saved) {
    lockAssessment(this.form, Boolean(saved.signedAt));
    const time = new Date(saved.signedAt ?? saved.updatedAt).toLocaleTimeString();
    setText(this.status, saved.signedAt ? 'assessment.signed' : 'assessment.saved', { time });
    this.#journalLinks(Boolean(saved.signedAt));
  }

  /**
   * Once signed, the assessment can go to the patient's journal: links to its PDF note and
   * FHIR document (woundcare/api/journal.py), shown beside the signed assessment only.
   * @param {boolean} signed
   */
  #journalLinks(signed) {
    const links = /** @type {HTMLElement | null} */ (this.form.querySelector('.journal-links'));
    if (!links) return;
    const base = this.path.replace(/\/assessment$/, '');
    /** @type {HTMLAnchorElement} */ (links.querySelector('.journal-note')).href = `${base}/journal-note.pdf`;
    /** @type {HTMLAnchorElement} */ (links.querySelector('.journal-document')).href = `${base}/journal-document`;
    links.hidden = !signed;
  }

  /** @param {string} method @param {string} path @param {unknown} json */
  async #write(method, path, json) {
    const { body, etag } = await versioned(method, path, this.#version, json);
    this.#version = etag;
    this.#show(body);
    return body;
  }

  /** Save the form as the draft; false (and why, in the status) if refused. */
  async save() {
    try {
      await this.#write('PUT', this.path, readAssessment(this.form));
      return true;
    } catch (failure) {
      setText(this.status, (failure instanceof ApiError && EXPLANATIONS[failure.code]) || 'error.generic');
      return false;
    }
  }

  /** Save, then sign what was saved: it is final, and the plan goes back to the nurse. */
  async sign() {
    if (!new FormData(this.form).get('outcome')) {
      setText(this.status, 'assessment.error.outcome');
      return false;
    }
    if (!(await this.save())) return false;
    try {
      await this.#write('POST', `${this.path}/sign`, {});
      return true;
    } catch (failure) {
      setText(this.status, (failure instanceof ApiError && EXPLANATIONS[failure.code]) || 'error.generic');
      return false;
    }
  }
}
