/**
 * WebRTC between the nurse's camera and the viewers, as protocol §12 sets it out: the camera
 * offers, one RTCPeerConnection per viewer, and viewers answer. A connection is named by its
 * peer's participant id and its `pc` generation; frames of another generation are stale and
 * ignored. Media recovers by ICE restart on the same connection (`restart: true`, same `pc`);
 * a viewer also accepts an offer with a new `pc` (an aiortc camera's way) by starting afresh.
 */

import { IceConfig } from './ice.js';

/** How long `disconnected` may last before we restart ICE; it often heals by itself. */
const DISCONNECTED_GRACE_MS = 2500;

/**
 * @typedef {import('./signaling.js').Signaling} Signaling
 * @typedef {{type: string, from: string, to?: string, sdp?: string, pc?: number, restart?: boolean,
 *   candidate?: string, sdpMid?: string, sdpMLineIndex?: number}} Frame
 */

/**
 * Runs async steps one after another, so an answer is never applied while its offer is still
 * being made, whatever order the events came in.
 */
class Serial {
  #tail = Promise.resolve();

  /** @param {() => Promise<void>} step */
  run(step) {
    this.#tail = this.#tail.then(step).catch((error) => console.warn('negotiation step failed:', error.name));
    return this.#tail;
  }
}

/** Remote candidates that arrive before the description they belong to is applied. */
class PendingCandidates {
  /** @type {RTCIceCandidateInit[]} */
  #waiting = [];

  /** @param {RTCPeerConnection} pc */
  constructor(pc) {
    this.pc = pc;
  }

  /** @param {Frame} frame */
  async add(frame) {
    const init = { candidate: frame.candidate, sdpMid: frame.sdpMid ?? null, sdpMLineIndex: frame.sdpMLineIndex ?? null };
    if (this.pc.remoteDescription) await this.pc.addIceCandidate(init);
    else this.#waiting.push(init);
  }

  async flush() {
    for (const init of this.#waiting.splice(0)) await this.pc.addIceCandidate(init);
  }
}

/**
 * Trickle our candidates to `to` as `candidate` frames, and `end_of_candidates` when done.
 * @param {RTCPeerConnection} pc
 * @param {Signaling} signaling
 * @param {string} to
 * @param {number} generation
 */
function trickle(pc, signaling, to, generation) {
  pc.addEventListener('icecandidate', ({ candidate }) => {
    if (candidate) {
      signaling.send({
        type: 'candidate', to, pc: generation,
        candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex,
      });
    } else {
      signaling.send({ type: 'end_of_candidates', to, pc: generation });
    }
  });
}

/**
 * Calls `onTrouble` when the connection's media is lost: at once for `failed`, and after a
 * short grace for `disconnected`.
 * @param {RTCPeerConnection} pc
 * @param {() => void} onTrouble
 * @param {() => void} onChange
 */
function watchIce(pc, onTrouble, onChange) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  pc.addEventListener('iceconnectionstatechange', () => {
    clearTimeout(timer);
    onChange();
    if (pc.iceConnectionState === 'failed') onTrouble();
    else if (pc.iceConnectionState === 'disconnected') {
      timer = setTimeout(() => pc.iceConnectionState === 'disconnected' && onTrouble(), DISCONNECTED_GRACE_MS);
    }
  });
}

/**
 * @typedef {{pc: RTCPeerConnection, generation: number, candidates: PendingCandidates,
 *   serial: Serial, restartPending: boolean}} Link
 */

/**
 * The nurse's side: the camera stream offered to every viewer. Events: `remotestream`
 * ({viewer, stream}: a viewer's microphone), `mediastate` (any link's ICE state changed).
 */
export class CameraPeers extends EventTarget {
  /** @type {Map<string, Link>} */
  #links = new Map();

  /**
   * @param {Signaling} signaling
   * @param {MediaStream} stream the camera and microphone
   * @param {IceConfig} ice
   * @param {number} [firstGeneration] where this page's `pc` numbers start (call-memory.js)
   */
  constructor(signaling, stream, ice, firstGeneration = 0) {
    super();
    this.signaling = signaling;
    this.stream = stream;
    this.ice = ice;
    this.firstGeneration = firstGeneration;
  }

  /** @returns {RTCPeerConnection[]} */
  connections() {
    return [...this.#links.values()].map((link) => link.pc);
  }

  /** Whether any viewer's media is connected; null when nobody is watching. */
  connected() {
    if (this.#links.size === 0) return null;
    return this.connections().some((pc) => ['connected', 'completed'].includes(pc.iceConnectionState));
  }

  /** @param {string} viewer */
  has(viewer) {
    return this.#links.has(viewer);
  }

  /**
   * A fresh connection to `viewer` with the next generation, replacing any older one.
   * @param {string} viewer
   */
  async offerTo(viewer) {
    const previous = this.#links.get(viewer);
    previous?.pc.close();
    const pc = new RTCPeerConnection(await this.ice.get());
    const generation = previous ? previous.generation + 1 : this.firstGeneration;
    /** @type {Link} */
    const link = { pc, generation, candidates: new PendingCandidates(pc), serial: new Serial(), restartPending: false };
    this.#links.set(viewer, link);
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    trickle(pc, this.signaling, viewer, generation);
    watchIce(pc, () => this.restart(viewer), () => this.dispatchEvent(new Event('mediastate')));
    pc.addEventListener('track', ({ streams }) => {
      if (streams[0]) this.dispatchEvent(new CustomEvent('remotestream', { detail: { viewer, stream: streams[0] } }));
    });
    await link.serial.run(async () => {
      await pc.setLocalDescription(await pc.createOffer());
      this.signaling.send({ type: 'offer', to: viewer, sdp: pc.localDescription?.sdp, pc: generation, restart: false });
    });
  }

  /**
   * ICE restart on the existing connection (protocol §12.2). While an offer is outstanding,
   * the restart waits for its answer, so two offers never cross.
   * @param {string} viewer
   */
  restart(viewer) {
    const link = this.#links.get(viewer);
    if (!link) return Promise.resolve();
    return link.serial.run(async () => {
      if (link.pc.signalingState !== 'stable') {
        link.restartPending = true;
        return;
      }
      link.pc.setConfiguration(await this.ice.get());
      await link.pc.setLocalDescription(await link.pc.createOffer({ iceRestart: true }));
      const sent = this.signaling.send({
        type: 'offer', to: viewer, sdp: link.pc.localDescription?.sdp, pc: link.generation, restart: true,
      });
      // Offline: nobody will answer. Roll back so the restart after the resume starts clean.
      if (!sent) await link.pc.setLocalDescription({ type: 'rollback' });
    });
  }

  /**
   * After our signaling socket came back: media may have survived, but offers, answers or
   * candidates may have been lost, so restart ICE with everyone and offer to new viewers.
   * @param {string[]} viewers everyone watching now
   */
  async resumed(viewers) {
    for (const [viewer, link] of this.#links) {
      if (!viewers.includes(viewer)) this.close(viewer);
      else link.restartPending = false;
    }
    await Promise.all(viewers.map((viewer) => (this.#links.has(viewer) ? this.restart(viewer) : this.offerTo(viewer))));
  }

  /** @param {Frame} frame */
  answer(frame) {
    const link = this.#links.get(frame.from);
    if (!link || frame.pc !== link.generation) return;
    link.serial.run(async () => {
      if (link.pc.signalingState !== 'have-local-offer') return;
      await link.pc.setRemoteDescription({ type: 'answer', sdp: frame.sdp });
      await link.candidates.flush();
      if (link.restartPending) {
        link.restartPending = false;
        this.restart(frame.from);
      }
    });
  }

  /** @param {Frame} frame */
  candidate(frame) {
    const link = this.#links.get(frame.from);
    if (link && frame.pc === link.generation) link.serial.run(() => link.candidates.add(frame));
  }

  /** @param {MediaStreamTrack} track the new camera track, sent to every viewer */
  async replaceVideoTrack(track) {
    for (const pc of this.connections()) {
      const sender = pc.getSenders().find((s) => s.track?.kind === 'video');
      await sender?.replaceTrack(track);
    }
  }

  /** @param {string} viewer */
  close(viewer) {
    this.#links.get(viewer)?.pc.close();
    this.#links.delete(viewer);
    this.dispatchEvent(new Event('mediastate'));
  }

  closeAll() {
    for (const viewer of [...this.#links.keys()]) this.close(viewer);
  }
}

/**
 * A viewer's side: answers the camera's offers and sends its microphone back. Events:
 * `remotestream` ({stream}: the camera's video and the nurse's voice), `mediastate`.
 */
export class ViewerPeer extends EventTarget {
  /** @type {RTCPeerConnection | null} */
  pc = null;
  #generation = -1;
  /** @type {string | null} */
  #camera = null;
  /** @type {PendingCandidates | null} */
  #candidates = null;
  #serial = new Serial();
  #lastRestartRequest = 0;

  /**
   * @param {Signaling} signaling
   * @param {MediaStream | null} microphone null when the viewer has no microphone (listen only)
   * @param {IceConfig} ice
   */
  constructor(signaling, microphone, ice) {
    super();
    this.signaling = signaling;
    this.microphone = microphone;
    this.ice = ice;
  }

  /** @param {Frame} frame */
  offer(frame) {
    this.#serial.run(async () => {
      const fresh = !this.pc || frame.from !== this.#camera || frame.pc !== this.#generation;
      if (fresh) await this.#replace(frame.from, frame.pc ?? 0);
      const pc = /** @type {RTCPeerConnection} */ (this.pc);
      await pc.setRemoteDescription({ type: 'offer', sdp: frame.sdp });
      if (fresh && this.microphone) {
        // After the offer, so addTrack reuses the offered audio transceiver (sendrecv) instead of adding one.
        for (const track of this.microphone.getAudioTracks()) pc.addTrack(track, this.microphone);
      }
      await pc.setLocalDescription(await pc.createAnswer());
      this.signaling.send({ type: 'answer', to: frame.from, sdp: pc.localDescription?.sdp, pc: this.#generation });
      await this.#candidates?.flush();
    });
  }

  /** @param {Frame} frame */
  candidate(frame) {
    if (frame.from !== this.#camera || frame.pc !== this.#generation) return;
    const pending = this.#candidates;
    this.#serial.run(async () => pending?.add(frame));
  }

  /** Whether the camera's media is connected; null before any offer. */
  connected() {
    if (!this.pc) return null;
    return ['connected', 'completed'].includes(this.pc.iceConnectionState);
  }

  /** Ask the camera to restart ICE (protocol §12.2); at most every few seconds. */
  requestRestart() {
    if (!this.#camera || Date.now() - this.#lastRestartRequest < 5000) return;
    if (this.signaling.send({ type: 'ice_restart', to: this.#camera })) this.#lastRestartRequest = Date.now();
  }

  /** @param {string} participant the camera that left, or any participant */
  closeIfCamera(participant) {
    if (participant !== this.#camera) return;
    this.pc?.close();
    this.pc = null;
    this.#camera = null;
    this.dispatchEvent(new Event('mediastate'));
  }

  close() {
    this.pc?.close();
    this.pc = null;
  }

  /**
   * @param {string} camera
   * @param {number} generation
   */
  async #replace(camera, generation) {
    this.pc?.close();
    const pc = new RTCPeerConnection(await this.ice.get());
    this.pc = pc;
    this.#camera = camera;
    this.#generation = generation;
    this.#candidates = new PendingCandidates(pc);
    trickle(pc, this.signaling, camera, generation);
    watchIce(pc, () => this.requestRestart(), () => this.dispatchEvent(new Event('mediastate')));
    pc.addEventListener('track', ({ streams }) => {
      if (streams[0]) this.dispatchEvent(new CustomEvent('remotestream', { detail: { stream: streams[0] } }));
    });
  }
}
