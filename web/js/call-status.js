/**
 * What a call page tells its user about the connection: the signaling and media state in one
 * honest sentence (the server out of reach is not the video lost), the quality indicator (level
 * plus the numbers behind it) only while video is live, and who cannot be heard for want of a
 * microphone.
 */

import { h } from './dom.js';
import { formatNumber, setText } from './i18n.js';

/**
 * @param {HTMLElement} element a role="status" region
 * @param {import('./signaling.js').SignalingState} signaling
 * @param {boolean | null} media whether video is connected; null while no one is on the other end
 * @param {HTMLElement} quality the quality badge, hidden at once when video is not live
 */
export function renderConnection(element, signaling, media, quality) {
  if (media !== true) hideQuality(quality);
  let state;
  let key;
  if (signaling === 'reconnecting') {
    state = 'reconnecting';
    // Media goes peer to peer through TURN, not through our server: it may well play on. A
    // device that is offline itself has lost both, whatever ICE has not noticed yet.
    key = media && navigator.onLine ? 'serverUnreachable' : 'reconnecting';
  } else if (signaling === 'closed') state = 'closed';
  else if (signaling !== 'joined') state = 'connecting';
  else if (media === null) state = 'waiting';
  else state = media ? 'live' : 'mediaReconnecting';
  key ??= state;
  if (element.dataset.state === state && element.dataset.i18n === `status.${key}`) return;
  element.dataset.state = state;
  setText(element, `status.${key}`);
}

/** @param {HTMLElement} element */
function hideQuality(element) {
  element.hidden = true;
  element.dataset.level = 'none';
  element.replaceChildren();
}

/**
 * @param {HTMLElement} element
 * @param {import('./quality.js').Sample | null} sample
 * @param {import('./quality.js').Level} level `none` when no video is live: no badge then
 */
export function renderQuality(element, sample, level) {
  if (!sample || level === 'none') {
    hideQuality(element);
    return;
  }
  element.hidden = false;
  element.dataset.level = level;
  const label = h('span', { class: 'quality-level' });
  setText(label, `quality.${level}`);
  const number = (/** @type {number | null} */ value, /** @type {number} */ digits) =>
    value == null ? '–' : formatNumber(value, digits);
  const details = [
    `${number(sample.bitrateKbps == null ? null : sample.bitrateKbps / 1000, 2)} Mbit/s`,
    `${number(sample.lossPct, 1)} %`,
    `${number(sample.rttMs, 0)} ms`,
  ];
  element.replaceChildren(label, h('span', { class: 'quality-numbers' }, details.join(' · ')));
}

/**
 * Whether the author of this SDP sends audio: an audio section that is sendrecv or sendonly
 * (sendrecv when it names no direction), not rejected (port 0). An answer without one is a
 * viewer without a microphone; an offer without one, a camera without a microphone. Read from
 * the offers and answers the pages exchange anyway, so the wire protocol needs nothing new.
 * @param {string} sdp
 */
export function sendsAudio(sdp) {
  return sdp.split(/\r?\nm=/).slice(1).some((section) => {
    if (!section.startsWith('audio ') || section.split(' ')[1] === '0') return false;
    const direction = section.match(/^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m)?.[1] ?? 'sendrecv';
    return direction === 'sendrecv' || direction === 'sendonly';
  });
}

/**
 * "No microphone", for this side and the other: each offer or answer from the other side says
 * whether it sends audio.
 */
export class Microphones {
  /** The roles of the others who send no audio, by participant id. @type {Map<string, string>} */
  #silent = new Map();

  /**
   * @param {HTMLElement} element a role="status" region
   * @param {boolean} own whether this side has a microphone
   */
  constructor(element, own) {
    this.element = element;
    this.own = own;
    this.#render();
  }

  /**
   * An offer or answer came from `from`.
   * @param {{from: string, sdp?: string}} frame
   * @param {string | undefined} role the sender's role; only nurses and specialists talk
   */
  heard(frame, role) {
    if (!frame.sdp || (role !== 'nurse' && role !== 'specialist')) return;
    if (sendsAudio(frame.sdp)) this.#silent.delete(frame.from);
    else this.#silent.set(frame.from, role);
    this.#render();
  }

  /** @param {string} participant who left */
  gone(participant) {
    if (this.#silent.delete(participant)) this.#render();
  }

  #render() {
    const keys = [...new Set(this.#silent.values())].map((role) => `microphone.${role}`);
    if (!this.own) keys.unshift('microphone.own');
    this.element.hidden = keys.length === 0;
    this.element.replaceChildren(...keys.map((key) => {
      const line = h('span', { class: 'microphone-line', 'data-microphone': key.split('.')[1] });
      setText(line, key);
      return line;
    }));
  }
}
