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
/** How long media may take to connect after the camera applied an answer before it restarts ICE. */
const CAMERA_WATCHDOG_MS = 4000;
/** The viewer waits longer, so that it asks only when the camera's own watchdog did not act. */
const VIEWER_WATCHDOG_MS = 7000;
const WATCHDOG_MAX_MS = 30_000;

/**
 * The telestration data channel (protocol §6.11): negotiated, so both sides make it as soon as
 * the connection exists, before the camera's offer, which then carries its application section.
 * @param {RTCPeerConnection} pc
 */
function telestrationChannel(pc) {
  return pc.createDataChannel('telestration', { negotiated: true, id: 1, ordered: true });
}

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

/**
 * A connection's remote candidates, kept from the moment its offer arrives (or is made) until its
 * remote description is applied. The connection itself may not exist yet: it waits for the ICE
 * configuration, and the candidates that come meanwhile must not be lost (protocol §12.1).
 */
class PendingCandidates {
  /** @type {RTCIceCandidateInit[]} */
  #waiting = [];
  /** @type {RTCPeerConnection | null} */
  pc = null;

  /** @param {Frame} frame */
  async add(frame) {
    const init = { candidate: frame.candidate, sdpMid: frame.sdpMid ?? null, sdpMLineIndex: frame.sdpMLineIndex ?? null };
    if (this.pc?.remoteDescription) await this.pc.addIceCandidate(init);
    else this.#waiting.push(init);
  }

  /** After the remote description: add what waited. */
  async flush() {
    if (!this.pc) return;
    for (const init of this.#waiting.splice(0)) await this.pc.addIceCandidate(init);
  }
}

/** @param {RTCPeerConnection} pc */
function isConnected(pc) {
  return ['connected', 'completed'].includes(pc.iceConnectionState);
}

/**
 * Restarts ICE when media has not connected some time after an answer (protocol §12.6): lost
 * candidates or a path that does not work would otherwise leave the call without video until
 * ICE gives up, half a minute later. Each restart that did not help doubles the wait.
 */
class Watchdog {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
  #misses = 0;

  /**
   * @param {number} ms the first wait
   * @param {() => void} onStuck
   */
  constructor(ms, onStuck) {
    this.ms = ms;
    this.onStuck = onStuck;
  }

  /** @param {RTCPeerConnection} pc just answered */
  arm(pc) {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (pc.signalingState === 'closed') return;
      if (isConnected(pc)) {
        this.#misses = 0;
        return;
      }
      this.#misses += 1;
      this.onStuck();
    }, Math.min(this.ms * 2 ** this.#misses, WATCHDOG_MAX_MS));
  }

  stop() {
    clearTimeout(this.#timer);
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
 * A connection to one viewer. It is registered, with its generation, the moment it is decided
 * on; `pc` follows once the ICE configuration is at hand.
 * @typedef {{pc: RTCPeerConnection | null, generation: number, candidates: PendingCandidates,
 *   serial: Serial, restartPending: boolean, watchdog: Watchdog, channel: RTCDataChannel | null}} Link
 */

/**
 * The offerer's side: the nurse's camera stream offered to every viewer, or a specialist's
 * microphone offered to each guest (protocol §12.8). Events: `remotestream` ({viewer, stream}: a
 * viewer's microphone, a guest's camera too), `mediastate` (any link's ICE state changed),
 * `channel` ({viewer, channel}: the telestration channel of a new connection to that viewer).
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
    /**
     * The video encoding a new connection starts with (video-profile.js sets it): given at
     * the offer, not by setParameters once media flows, which made the encoder start again at
     * another size and the viewer wait 100-200 ms more for its first frame.
     * @type {(track: MediaStreamTrack) => RTCRtpEncodingParameters}
     */
    this.videoEncoding = () => ({});
  }

  /** @returns {RTCPeerConnection[]} */
  connections() {
    return [...this.#links.values()].flatMap((link) => (link.pc ? [link.pc] : []));
  }

  /** Whether any viewer's media is connected; null when nobody is watching. */
  connected() {
    if (this.#links.size === 0) return null;
    return this.connections().some(isConnected);
  }

  /** @param {string} viewer */
  has(viewer) {
    return this.#links.has(viewer);
  }

  /**
   * A fresh connection to `viewer` with the next generation, replacing any older one. The
   * generation is taken at once, so two calls in a row never offer the same one.
   * @param {string} viewer
   */
  offerTo(viewer) {
    const previous = this.#links.get(viewer);
    if (previous) this.#drop(previous);
    /** @type {Link} */
    const link = {
      pc: null, generation: previous ? previous.generation + 1 : this.firstGeneration, candidates: new PendingCandidates(),
      serial: new Serial(), restartPending: false, watchdog: new Watchdog(CAMERA_WATCHDOG_MS, () => this.restart(viewer)),
      channel: null,
    };
    this.#links.set(viewer, link);
    return link.serial.run(async () => {
      const pc = new RTCPeerConnection(await this.ice.get());
      if (this.#links.get(viewer) !== link) {
        pc.close(); // replaced or closed while we waited
        return;
      }
      link.pc = link.candidates.pc = pc;
      for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
      for (const track of this.stream.getVideoTracks()) {
        pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.stream], sendEncodings: [this.videoEncoding(track)] });
      }
      // No microphone here: still offer to hear the viewer, whose answer cannot add an audio section.
      if (this.stream.getAudioTracks().length === 0) pc.addTransceiver('audio', { direction: 'recvonly' });
      // No camera (a specialist offering to a guest, protocol §12.8): still offer to see the guest's.
      if (this.stream.getVideoTracks().length === 0) pc.addTransceiver('video', { direction: 'recvonly' });
      link.channel = telestrationChannel(pc);
      this.dispatchEvent(new CustomEvent('channel', { detail: { viewer, channel: link.channel } }));
      trickle(pc, this.signaling, viewer, link.generation);
      watchIce(pc, () => this.restart(viewer), () => this.dispatchEvent(new Event('mediastate')));
      pc.addEventListener('track', ({ streams }) => {
        if (streams[0]) this.dispatchEvent(new CustomEvent('remotestream', { detail: { viewer, stream: streams[0] } }));
      });
      await pc.setLocalDescription(await pc.createOffer());
      this.signaling.send({ type: 'offer', to: viewer, sdp: pc.localDescription?.sdp, pc: link.generation, restart: false });
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
      const pc = link.pc;
      if (!pc || pc.signalingState === 'closed') return;
      if (pc.signalingState !== 'stable') {
        link.restartPending = true;
        return;
      }
      pc.setConfiguration(await this.ice.get());
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      const sent = this.signaling.send({
        type: 'offer', to: viewer, sdp: pc.localDescription?.sdp, pc: link.generation, restart: true,
      });
      // Offline: nobody will answer. Roll back so the restart after the resume starts clean.
      if (!sent) await pc.setLocalDescription({ type: 'rollback' });
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
      const pc = link.pc;
      if (pc?.signalingState !== 'have-local-offer') return;
      await pc.setRemoteDescription({ type: 'answer', sdp: frame.sdp });
      await link.candidates.flush();
      link.watchdog.arm(pc);
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
    const link = this.#links.get(viewer);
    if (link) this.#drop(link);
    this.#links.delete(viewer);
    this.dispatchEvent(new Event('mediastate'));
  }

  closeAll() {
    for (const viewer of [...this.#links.keys()]) this.close(viewer);
  }

  /** @param {Link} link */
  #drop(link) {
    link.watchdog.stop();
    link.pc?.close();
  }
}

/**
 * The connection a viewer answers: recorded the moment the camera's offer arrives, before
 * anything is awaited, so that the candidates right behind the offer find it.
 * @typedef {{camera: string, generation: number, candidates: PendingCandidates}} Offered
 */

/**
 * A viewer's side: answers the camera's offers (a guest's page: each specialist's too, one
 * ViewerPeer per offerer) and sends its microphone back (a guest, its camera as well). Events:
 * `remotestream` ({stream}: the camera's video and the nurse's voice), `mediastate`.
 */
export class ViewerPeer extends EventTarget {
  /** @type {RTCPeerConnection | null} */
  pc = null;
  /** The telestration channel of the current connection (a new connection makes a new one). @type {RTCDataChannel | null} */
  channel = null;
  /** @type {Offered | null} */
  #current = null;
  #serial = new Serial();
  #lastRestartRequest = 0;
  #watchdog = new Watchdog(VIEWER_WATCHDOG_MS, () => this.requestRestart());

  /**
   * @param {Signaling} signaling
   * @param {Promise<MediaStream | null>} microphone what is sent back, every track of it: the
   *   microphone (a guest's camera too); null when there is nothing (listen only); a promise, so
   *   that the join need not wait for it, only the first answer does
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
    const generation = frame.pc ?? 0;
    let offered = this.#current;
    if (!offered || offered.camera !== frame.from || offered.generation !== generation) {
      // A new connection (§12.3): the old one is done with, whatever is still queued for it.
      this.close();
      offered = this.#current = { camera: frame.from, generation, candidates: new PendingCandidates() };
    }
    const current = offered;
    this.#serial.run(async () => {
      if (this.#current !== current) return; // replaced while queued
      let pc = current.candidates.pc;
      const fresh = !pc;
      if (!pc) {
        pc = new RTCPeerConnection(await this.ice.get());
        if (this.#current !== current) {
          pc.close();
          return;
        }
        this.#open(pc, current);
      }
      const [microphone] = await Promise.all([
        fresh ? this.microphone : null, pc.setRemoteDescription({ type: 'offer', sdp: frame.sdp }),
      ]);
      // After the offer, so addTrack reuses the offered transceivers (sendrecv) instead of adding some.
      if (microphone) for (const track of microphone.getTracks()) pc.addTrack(track, microphone);
      await pc.setLocalDescription(await pc.createAnswer());
      this.signaling.send({ type: 'answer', to: frame.from, sdp: pc.localDescription?.sdp, pc: generation });
      await current.candidates.flush();
      this.#watchdog.arm(pc);
    });
  }

  /** @param {Frame} frame */
  candidate(frame) {
    const current = this.#current;
    if (!current || frame.from !== current.camera || (frame.pc ?? 0) !== current.generation) return;
    this.#serial.run(() => current.candidates.add(frame));
  }

  /** Whether the camera's media is connected; null before any offer. */
  connected() {
    return this.pc ? isConnected(this.pc) : null;
  }

  /** Ask the camera to restart ICE (protocol §12.2); at most every few seconds. */
  requestRestart() {
    const camera = this.#current?.camera;
    if (!camera || Date.now() - this.#lastRestartRequest < 5000) return;
    if (this.signaling.send({ type: 'ice_restart', to: camera })) this.#lastRestartRequest = Date.now();
  }

  /** @param {string} participant the camera that left, or any participant */
  closeIfCamera(participant) {
    if (participant !== this.#current?.camera) return;
    this.close();
    this.dispatchEvent(new Event('mediastate'));
  }

  close() {
    this.#watchdog.stop();
    this.pc?.close();
    this.pc = null;
    this.channel = null;
    this.#current = null;
  }

  /**
   * @param {RTCPeerConnection} pc
   * @param {Offered} offered
   */
  #open(pc, offered) {
    this.pc = offered.candidates.pc = pc;
    this.channel = telestrationChannel(pc);
    trickle(pc, this.signaling, offered.camera, offered.generation);
    watchIce(pc, () => this.requestRestart(), () => this.dispatchEvent(new Event('mediastate')));
    pc.addEventListener('track', ({ streams }) => {
      if (streams[0]) this.dispatchEvent(new CustomEvent('remotestream', { detail: { stream: streams[0] } }));
    });
  }
}
