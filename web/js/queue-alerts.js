/**
 * Telling a specialist that a nurse is waiting when the page is not watched: a short chime
 * (Web Audio, made here: no sound file, no network) and a desktop notification. Both can be
 * muted with a toggle whose state is remembered in this browser.
 *
 * The notification names the region only: a lock screen may show it, so no patient data.
 */

import { setText, t } from './i18n.js';

const MUTED_KEY = 'woundcare.queue.muted';
/** Two rising tones, in Hz, each this long. */
const CHIME = [660, 880];
const TONE_SECONDS = 0.18;

export class QueueAlerts {
  /** @type {AudioContext | undefined} */
  #audio;

  /** @param {HTMLButtonElement} toggle */
  constructor(toggle) {
    this.toggle = toggle;
    this.#show();
    toggle.addEventListener('click', () => {
      localStorage.setItem(MUTED_KEY, this.muted ? 'false' : 'true');
      this.#show();
      if (!this.muted) this.#unlock();
    });
    // Browsers let a page play sound and ask for notifications only after a user gesture.
    const unlock = () => { if (!this.muted) this.#unlock(); };
    document.addEventListener('pointerdown', unlock, { once: true });
    document.addEventListener('keydown', unlock, { once: true });
  }

  get muted() {
    return localStorage.getItem(MUTED_KEY) === 'true';
  }

  /**
   * A nurse has entered the queue.
   * @param {string} regionName
   * @param {string} consultation the notification's tag, so one entry shows once
   */
  notify(regionName, consultation) {
    if (this.muted) return;
    this.#chime();
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const shown = new Notification(t('specialist.alert.waiting', { region: regionName }), {
      body: t('specialist.alert.body'),
      tag: consultation,
      lang: document.documentElement.lang,
    });
    shown.addEventListener('click', () => { window.focus(); shown.close(); });
  }

  #show() {
    this.toggle.setAttribute('aria-pressed', String(this.muted));
    setText(this.toggle, this.muted ? 'specialist.alert.muted' : 'specialist.alert.on');
  }

  #unlock() {
    this.#audio ??= new AudioContext();
    this.#audio.resume().catch(() => {});
    if ('Notification' in window && Notification.permission === 'default') {
      Notification.requestPermission().catch(() => {});
    }
  }

  #chime() {
    const audio = this.#audio ??= new AudioContext();
    if (audio.state !== 'running') {
      // Not yet allowed (no gesture on this page): try, and chime from the next entry on.
      audio.resume().catch(() => {});
      return;
    }
    const start = audio.currentTime;
    CHIME.forEach((frequency, i) => {
      const at = start + i * TONE_SECONDS;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = frequency;
      // A short fade in and out, so the tone does not click.
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(0.25, at + 0.02);
      gain.gain.linearRampToValueAtTime(0, at + TONE_SECONDS);
      tone.connect(gain).connect(audio.destination);
      tone.start(at);
      tone.stop(at + TONE_SECONDS);
    });
  }
}
