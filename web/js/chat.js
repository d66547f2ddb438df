/**
 * Text chat with everyone in the call (`chat` frames), for when talking is not possible; on
 * the nurse's phone a message from the others also shows over the picture for a few seconds,
 * with a short tone and a vibration (ChatToasts), since her log is below the first screen.
 */

import { Chime } from './chime.js';
import { h } from './dom.js';
import { setText } from './i18n.js';

/** How long a message stays over the picture. */
const TOAST_MS = 6000;
/** More than this many at once: the oldest goes, so the picture stays visible. */
const MAX_TOASTS = 3;
/** A short buzz: felt through a glove or a pocket, without alarming the patient. */
const VIBRATION_MS = 200;

export class ChatToasts {
  #chime = new Chime([880]);

  /** @param {HTMLOListElement} list laid over the picture */
  constructor(list) {
    this.list = list;
    // A call entered without a tap (a reload) may sound from the nurse's first tap on.
    document.addEventListener('pointerdown', () => this.unlock(), { once: true });
  }

  /** Call from a user gesture (or once the page has had one): the tone may sound from then on. */
  unlock() {
    this.#chime.unlock();
  }

  /**
   * @param {string} who the sender's name
   * @param {string} text
   */
  show(who, text) {
    const item = h('li', {}, h('strong', {}, who), ': ', text);
    this.list.append(item);
    while (this.list.children.length > MAX_TOASTS) this.list.firstElementChild?.remove();
    setTimeout(() => item.remove(), TOAST_MS);
    this.#chime.play();
    // Not every browser vibrates (desktop, iOS), and none before the page has had a gesture.
    navigator.vibrate?.(VIBRATION_MS);
  }
}

export class Chat {
  /**
   * @param {HTMLFormElement} form with an input named `text`
   * @param {HTMLOListElement} log
   * @param {import('./signaling.js').Signaling} signaling
   * @param {(id: string) => string} nameOf
   * @param {ChatToasts} [toasts] where the others' messages also show for a moment
   */
  constructor(form, log, signaling, nameOf, toasts) {
    this.log = log;
    this.nameOf = nameOf;
    const input = /** @type {HTMLInputElement} */ (form.elements.namedItem('text'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const sent = signaling.send({ type: 'chat', text: text.slice(0, 2000) });
      this.#append(null, text, sent ? '' : 'chat.notSent');
      if (sent) input.value = '';
    });
    signaling.addEventListener('chat', (event) => {
      const frame = /** @type {CustomEvent} */ (event).detail;
      const who = this.nameOf(frame.from);
      this.#append(who, frame.text, '');
      toasts?.show(who, frame.text);
    });
  }

  /**
   * @param {string | null} who the sender's name; null for ourselves
   * @param {string} text
   * @param {string} noteKey a translation key for a remark, or ''
   */
  #append(who, text, noteKey) {
    const name = h('strong');
    if (who === null) setText(name, 'chat.me');
    else name.textContent = who;
    const item = h('li', {}, name, ': ', text);
    if (noteKey) {
      const note = h('em', { class: 'chat-note' });
      setText(note, noteKey);
      item.append(' ', note);
    }
    this.log.append(item);
    // Scroll the log only: moving the page would take the camera picture out of view.
    this.log.scrollTop = this.log.scrollHeight;
  }
}
