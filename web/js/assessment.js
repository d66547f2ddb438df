/**
 * The structured assessment form ↔ the API's content (woundcare/records/assessments.py).
 * Empty fields are sent as null, so a cleared field clears the saved draft too.
 */

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
    outcome: data.get('outcome') || null,
  };
}

/**
 * @param {HTMLFormElement} form
 * @param {Record<string, any>} saved the assessment as GET returns it
 */
export function fillAssessment(form, saved) {
  for (const name of ['woundType', 'location', 'exudate', 'treatmentPlan', 'nextReview']) {
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
