/**
 * Recording the call's video, for the specialist: start and stop (offered only when the
 * patient has consented to recording, as the nurse recorded it), and this consultation's
 * recordings to play back. The server does the recording, sealed as it writes; the page
 * only asks, and streams a finished recording back through the API (never cached).
 */

import { ApiError, getJson, postJson } from './api.js';
import { byId, h } from './dom.js';
import { setText } from './i18n.js';

/**
 * @typedef {{id: string, status: 'recording' | 'complete' | 'failed', startedAt: string,
 *   endedAt: string | null, endReason: string | null, frames: number}} Recording
 */

export class RecordingPanel {
  /** @param {string} consultation */
  constructor(consultation) {
    this.consultation = consultation;
    this.toggle = byId('recording-toggle');
    this.status = byId('recording-status');
    this.list = byId('recording-list');
    this.player = /** @type {HTMLVideoElement} */ (byId('recording-player'));
    /** @type {Recording | null} */
    this.live = null;
    this.toggle.addEventListener('click', () => this.#toggle());
  }

  /** Consent and recordings again, e.g. when the recorder joins or leaves the call. */
  async refresh() {
    const base = `/api/consultations/${encodeURIComponent(this.consultation)}`;
    const [{ consents }, { recordings }] = await Promise.all([getJson(`${base}/consents`), getJson(`${base}/recordings`)]);
    /** @type {Recording[]} */
    const all = recordings;
    this.live = all.find((r) => r.status === 'recording') ?? null;
    this.toggle.hidden = !consents.recording && !this.live;
    this.toggle.setAttribute('aria-pressed', String(Boolean(this.live)));
    setText(this.toggle, this.live ? 'recording.stop' : 'recording.start');
    setText(this.status, this.live ? 'recording.live' : consents.recording ? 'recording.idle' : 'recording.noConsent');
    this.list.replaceChildren(...all.filter((r) => r.status !== 'recording').map((r) => this.#item(r)));
  }

  async #toggle() {
    this.toggle.setAttribute('disabled', '');
    try {
      if (this.live) await postJson(`/api/recordings/${encodeURIComponent(this.live.id)}/stop`);
      else await postJson(`/api/consultations/${encodeURIComponent(this.consultation)}/recordings`);
    } catch (failure) {
      const code = failure instanceof ApiError ? failure.code : '';
      setText(this.status, code === 'no_consent' ? 'recording.noConsent' : 'error.generic');
    } finally {
      this.toggle.removeAttribute('disabled');
    }
    await this.refresh().catch(() => {});
  }

  /** @param {Recording} recording */
  #item(recording) {
    const when = new Date(recording.startedAt).toLocaleTimeString();
    if (recording.status !== 'complete') {
      const failed = h('li', { class: 'recording-failed' });
      setText(failed, 'recording.failed', { time: when });
      return failed;
    }
    const play = h('button', { type: 'button' });
    setText(play, 'recording.play', { time: when });
    play.addEventListener('click', () => {
      this.player.hidden = false;
      this.player.src = `/api/recordings/${encodeURIComponent(recording.id)}`;
      this.player.play().catch(() => {});
    });
    return h('li', {}, play);
  }
}
