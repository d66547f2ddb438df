/**
 * What a call page tells its user about the connection: the signaling and media state in one
 * honest sentence, and the quality indicator (level plus the numbers behind it).
 */

import { h } from './dom.js';
import { formatNumber, setText } from './i18n.js';

/**
 * @param {HTMLElement} element a role="status" region
 * @param {import('./signaling.js').SignalingState} signaling
 * @param {boolean | null} media whether video is connected; null while no one is on the other end
 */
export function renderConnection(element, signaling, media) {
  let state;
  if (signaling === 'reconnecting') state = 'reconnecting';
  else if (signaling === 'closed') state = 'closed';
  else if (signaling !== 'joined') state = 'connecting';
  else if (media === null) state = 'waiting';
  else state = media ? 'live' : 'mediaReconnecting';
  if (element.dataset.state === state) return;
  element.dataset.state = state;
  setText(element, `status.${state}`);
}

/**
 * @param {HTMLElement} element
 * @param {import('./quality.js').Sample | null} sample
 * @param {import('./quality.js').Level} level
 */
export function renderQuality(element, sample, level) {
  element.dataset.level = level;
  const label = h('span', { class: 'quality-level' });
  setText(label, `quality.${level}`);
  if (!sample || level === 'none') {
    element.replaceChildren(label);
    return;
  }
  const number = (/** @type {number | null} */ value, /** @type {number} */ digits) =>
    value == null ? '–' : formatNumber(value, digits);
  const details = [
    `${number(sample.bitrateKbps == null ? null : sample.bitrateKbps / 1000, 2)} Mbit/s`,
    `${number(sample.lossPct, 1)} %`,
    `${number(sample.rttMs, 0)} ms`,
  ];
  element.replaceChildren(label, h('span', { class: 'quality-numbers' }, details.join(' · ')));
}
