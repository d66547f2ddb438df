/** Text chat with everyone in the call (`chat` frames), for when talking is not possible. */

import { h } from './dom.js';
import { setText } from './i18n.js';

export class Chat {
  /**
   * @param {HTMLFormElement} form with an input named `text`
   * @param {HTMLOListElement} log
   * @param {import('./signaling.js').Signaling} signaling
   * @param {(id: string) => string} nameOf
   */
  constructor(form, log, signaling, nameOf) {
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
      this.#append(this.nameOf(frame.from), frame.text, '');
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
