/**
 * The plan back to the nurse: a signed assessment's treatment plan, next review and who is
 * responsible, shown as one card wherever she meets it (her end screen, the list of plans
 * not yet acknowledged, the patient's history, her e-consults' answers), with the button
 * that acknowledges it once (POST …/assessment/acknowledge; a second tap changes nothing).
 */

import { ApiError, postJson } from './api.js';
import { h } from './dom.js';
import { setText } from './i18n.js';
import { dateOf } from './timeline.js';

/**
 * @typedef {{treatmentPlan: string | null, nextReview: string | null, responsible: string | null,
 *   outcome: string | null, signedAt: string | null, acknowledgedAt: string | null}} Plan
 */

/**
 * A term and its value, the value's text translated when `key` is given.
 * @param {string} term
 * @param {string} value
 * @param {boolean} [translated]
 */
function row(term, value, translated = false) {
  const dt = h('dt');
  setText(dt, term);
  const dd = h('dd');
  if (translated) setText(dd, value);
  else dd.textContent = value;
  return [dt, dd];
}

/**
 * The plan as a card; with `consultation`, an acknowledge button until it is acknowledged.
 * @param {Plan} plan
 * @param {{consultation?: string, onAcknowledged?: (plan: Plan) => void}} [options]
 * @returns {HTMLElement}
 */
export function planCard(plan, { consultation, onAcknowledged } = {}) {
  const card = h('section', { class: 'plan', 'data-plan': consultation ?? '' });
  const heading = h('h3');
  setText(heading, 'plan.heading');
  const details = h('dl', { class: 'plan-details' },
    ...row('assessment.treatmentPlan', plan.treatmentPlan ?? '–'),
    ...row('assessment.nextReview', plan.nextReview ? dateOf(plan.nextReview) : '–'),
    ...row('plan.responsible', plan.responsible ? `responsible.${plan.responsible}` : 'plan.none', true),
    ...(plan.outcome ? row('assessment.outcome', `outcome.${plan.outcome}`, true) : []));
  const state = h('p', { class: 'plan-state', role: 'status' });
  card.append(heading, details, state);
  const acknowledged = (/** @type {Plan} */ shown) => setText(state, 'plan.acknowledged',
    { date: dateOf(/** @type {string} */ (shown.acknowledgedAt)) });
  if (plan.acknowledgedAt) {
    acknowledged(plan);
  } else if (consultation) {
    const button = h('button', { type: 'button', class: 'big primary plan-acknowledge' });
    setText(button, 'plan.acknowledge');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const done = await postJson(`/api/consultations/${encodeURIComponent(consultation)}/assessment/acknowledge`);
        button.remove();
        acknowledged(done);
        onAcknowledged?.(done);
      } catch (failure) {
        setText(state, failure instanceof ApiError && failure.code === 'not_signed' ? 'plan.notSigned' : 'error.generic');
        button.disabled = false;
      }
    });
    card.append(button);
  }
  return card;
}
