/**
 * Everyone in the call, with name, role and connection state, from the `joined` and
 * `presence` frames; rendered as a list every participant sees.
 */

import { h } from './dom.js';
import { setText } from './i18n.js';

/** @typedef {import('./signaling.js').Participant} Participant */

/** The kinds of guest, which are a guest's name on the wire (woundcare/db/models.py GuestKind). */
const GUEST_KINDS = ['interpreter', 'relative', 'gp'];

export class Participants extends EventTarget {
  /** @type {Participant | null} */
  you = null;
  /** @type {Map<string, Participant>} */
  others = new Map();

  /** @param {HTMLUListElement} list */
  constructor(list) {
    super();
    this.list = list;
  }

  /** @param {{you: Participant, peers: Participant[]}} joined */
  reset(joined) {
    this.you = joined.you;
    this.others = new Map(joined.peers.map((p) => [p.id, p]));
    this.render();
  }

  /** @param {{state: string, participant: Participant}} presence */
  update(presence) {
    if (presence.state === 'left') this.others.delete(presence.participant.id);
    else this.others.set(presence.participant.id, { ...presence.participant, state: presence.state === 'rejoined' ? 'joined' : presence.state });
    this.render();
  }

  /** @param {string} id */
  nameOf(id) {
    return this.others.get(id)?.name ?? '?';
  }

  /** @param {string} role */
  withRole(role) {
    return [...this.others.values()].filter((p) => p.role === role);
  }

  /** Marks us as offline while our own socket is down. @param {boolean} online */
  setOwnState(online) {
    if (this.you) this.you = { ...this.you, state: online ? 'joined' : 'reconnecting' };
    this.render();
  }

  render() {
    const everyone = this.you ? [this.you, ...this.others.values()] : [...this.others.values()];
    this.list.replaceChildren(...everyone.map((p) => this.#item(p)));
    this.dispatchEvent(new Event('change'));
  }

  /** @param {Participant} participant */
  #item(participant) {
    const name = h('span', { class: 'who-name' }, participant.name);
    // A guest has no name in the call, only its kind (protocol §3.4), shown in the reader's language.
    if (participant.role === 'observer' && GUEST_KINDS.includes(participant.name)) setText(name, `guest.kind.${participant.name}`);
    const role = h('span', { class: `who-role role-${participant.role}` });
    setText(role, `role.${participant.role}`);
    const state = h('span', { class: `who-state state-${participant.state}` });
    setText(state, `presence.${participant.state}`);
    const item = h('li', { class: 'who' }, name, role, state);
    if (participant === this.you) {
      const you = h('span', { class: 'who-you' });
      setText(you, 'presence.you');
      name.append(' ', you);
    }
    return item;
  }
}
