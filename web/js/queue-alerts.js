/**
 * Telling a specialist that a nurse is waiting when the page is not watched: a short chime
 * (Web Audio, chime.js: no sound file, no network) and a desktop notification. Both can be
 * muted with a toggle whose state is remembered in this browser.
 *
 * The notification names the region only: a lock screen may show it, so no patient data.
 */

import { Chime } from './chime.js';
import { setText, t } from './i18n.js';

const MUTED_KEY = 'woundcare.queue.muted';

export class QueueAlerts {
  /** Two rising tones. */
  #chime = new Chime([660, 880]);

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
    this.#chime.play();
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
    this.#chime.unlock();
    if ('Notification' in window && Notification.permission === 'default') {
      Notification.requestPermission().catch(() => {});
    }
  }
}
