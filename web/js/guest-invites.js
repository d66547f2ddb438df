/**
 * Guests in the specialist's call (protocol §3.4, §12.8): invite an interpreter, a relative or the
 * patient's GP by a one-time link to copy and pass on, see the guests and withdraw one; and the
 * media with each guest who joins: this page offers its microphone to the guest (CameraPeers, as
 * the camera does to viewers), hears the guest and sees the guest's camera in a tile.
 */

import { deleteJson, getJson, postJson } from './api.js';
import { byId, h } from './dom.js';
import { setText } from './i18n.js';
import { CameraPeers } from './peer.js';

/**
 * @typedef {{id: string, kind: string, subject: string, expiresAt: string, redeemed: boolean, revoked: boolean}} Guest
 * @typedef {import('./signaling.js').Signaling} Signaling
 * @typedef {import('./signaling.js').Participant} Participant
 */

export class GuestPanel {
  /** @type {CameraPeers | null} */
  #peers = null;
  /** Guests in the room to offer to once the microphone has settled. @type {Set<string>} */
  #waiting = new Set();
  /**
   * What the specialist typed to tell guests apart ("Arabic interpreter"), by invitation id: it may
   * name a person, so it stays in this page and is never sent or stored. @type {Map<string, string>}
   */
  #labels = new Map();

  /**
   * @param {string} consultation
   * @param {Signaling} signaling
   * @param {Promise<MediaStream | null>} microphone the specialist's, offered to each guest
   * @param {import('./ice.js').IceConfig} ice
   */
  constructor(consultation, signaling, microphone, ice) {
    this.consultation = consultation;
    this.list = /** @type {HTMLUListElement} */ (byId('guest-list'));
    this.tiles = byId('guest-tiles');
    this.status = byId('guest-status');
    this.link = /** @type {HTMLInputElement} */ (byId('guest-link'));
    microphone.then((stream) => {
      const peers = new CameraPeers(signaling, stream ?? new MediaStream(), ice);
      peers.addEventListener('remotestream', (event) => this.#show(/** @type {CustomEvent} */ (event).detail));
      this.#peers = peers;
      for (const guest of this.#waiting) peers.offerTo(guest);
      this.#waiting.clear();
    });
    for (const kind of ['answer', 'candidate']) {
      signaling.addEventListener(kind, (event) => {
        const frame = /** @type {CustomEvent} */ (event).detail;
        if (kind === 'answer') this.#peers?.answer(frame);
        else this.#peers?.candidate(frame);
      });
    }
    signaling.addEventListener('ice_restart', (event) => this.#peers?.restart(/** @type {CustomEvent} */ (event).detail.from));
    signaling.addEventListener('joined', (event) => {
      const frame = /** @type {CustomEvent} */ (event).detail;
      const guests = frame.peers.filter((/** @type {Participant} */ p) => p.role === 'observer').map((/** @type {Participant} */ p) => p.id);
      if (frame.resumed) this.#peers?.resumed(guests);
      else {
        this.#peers?.closeAll();
        for (const guest of guests) this.#offer(guest);
      }
    });
    signaling.addEventListener('presence', (event) => {
      const { participant, state } = /** @type {CustomEvent} */ (event).detail;
      if (participant.role !== 'observer') return;
      if (state === 'joined') this.#offer(participant.id);
      else if (state === 'left') {
        this.#waiting.delete(participant.id);
        this.#peers?.close(participant.id);
        document.getElementById(`guest-${participant.id}`)?.remove();
        this.refresh().catch(() => {});
      }
    });
    byId('guest-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const kind = /** @type {HTMLSelectElement} */ (byId('guest-kind')).value;
      const label = /** @type {HTMLInputElement} */ (byId('guest-label'));
      this.invite(kind, label.value.trim()).then(() => { label.value = ''; }, () => setText(this.status, 'guest.invite.failed'));
    });
    byId('guest-copy').addEventListener('click', () => {
      navigator.clipboard?.writeText(this.link.value).then(() => setText(this.status, 'guest.invite.copied'), () => this.link.select());
    });
  }

  /**
   * @param {string} kind interpreter, relative or gp
   * @param {string} label the specialist's own note, kept in this page only
   */
  async invite(kind, label) {
    const made = await postJson(`/api/consultations/${this.consultation}/invitations`, { kind });
    if (label) this.#labels.set(made.id, label);
    // Shown once, here only: the code in the fragment never reaches a server's log.
    this.link.value = new URL(made.link, location.origin).href;
    this.link.hidden = byId('guest-copy').hidden = false;
    setText(this.status, 'guest.invite.made');
    await this.refresh();
  }

  async refresh() {
    const { guests } = await getJson(`/api/consultations/${this.consultation}/invitations`);
    this.list.replaceChildren(...guests.filter((/** @type {Guest} */ g) => !g.revoked).map((/** @type {Guest} */ g) => this.#item(g)));
  }

  /** @param {Guest} guest */
  #item(guest) {
    const name = h('span', { class: 'guest-kind' });
    setText(name, `guest.kind.${guest.kind}`);
    const state = h('span', { class: 'guest-state' });
    setText(state, guest.redeemed ? 'guest.state.redeemed' : 'guest.state.waiting');
    const revoke = h('button', { type: 'button', class: 'guest-revoke', 'data-guest': guest.id });
    setText(revoke, 'guest.revoke');
    revoke.addEventListener('click', async () => {
      try {
        await deleteJson(`/api/consultations/${this.consultation}/invitations/${guest.id}`);
        setText(this.status, 'guest.revoked');
        await this.refresh();
      } catch {
        setText(this.status, 'guest.invite.failed');
      }
    });
    const label = this.#labels.get(guest.id);
    return h('li', { class: 'guest' }, name, label ? ` (${label})` : '', ' ', state, ' ', revoke);
  }

  /** @param {string} guest a participant id */
  #offer(guest) {
    if (this.#peers) {
      if (!this.#peers.has(guest)) this.#peers.offerTo(guest);
    } else {
      this.#waiting.add(guest);
    }
    this.refresh().catch(() => {});
  }

  /** @param {{viewer: string, stream: MediaStream}} detail */
  #show({ viewer, stream }) {
    let tile = /** @type {HTMLVideoElement | null} */ (document.getElementById(`guest-${viewer}`));
    if (!tile) {
      tile = /** @type {HTMLVideoElement} */ (h('video', { id: `guest-${viewer}`, class: 'guest-video', autoplay: '', playsinline: '' }));
      this.tiles.append(tile);
    }
    tile.srcObject = stream;
  }

  close() {
    this.#peers?.closeAll();
  }
}
