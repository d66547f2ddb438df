/**
 * Video profiles on the nurse's page (protocol §6.10): the same rule as the head camera
 * (woundcare/camera/profile.py), applied to the browser's senders with setParameters. In
 * `auto` mode the quality samples decide; a specialist may pin `standard` or `low`.
 * Photos are unaffected: they are taken from the camera track at full resolution.
 */

/** @typedef {'standard' | 'low'} Profile */
/** @typedef {'auto' | Profile} Mode */

/** @type {Record<Profile, {maxWidth: number, maxHeight: number, fps: number, maxBitrate: number}>} */
export const PROFILES = {
  standard: { maxWidth: 1280, maxHeight: 720, fps: 30, maxBitrate: 1_500_000 },
  low: { maxWidth: 640, maxHeight: 360, fps: 15, maxBitrate: 300_000 },
};

const BAD = { lossPct: 5, rttMs: 400 };
const GOOD = { lossPct: 2, rttMs: 250 };
const DOWN_AFTER = 2;
const UP_AFTER = 8;

/** Picks the profile in auto mode, with hysteresis so that it does not flap. */
export class Chooser {
  /** @type {Profile} */
  active = 'standard';
  #bad = 0;
  #good = 0;

  /**
   * @param {{lossPct: number | null, rttMs: number | null}} sample
   * @returns {Profile}
   */
  observe({ lossPct, rttMs }) {
    const loss = lossPct ?? 0;
    const rtt = rttMs ?? 0;
    if (loss >= BAD.lossPct || rtt >= BAD.rttMs) [this.#bad, this.#good] = [this.#bad + 1, 0];
    else if (loss < GOOD.lossPct && rtt < GOOD.rttMs) [this.#bad, this.#good] = [0, this.#good + 1];
    else [this.#bad, this.#good] = [0, 0];
    if (this.active === 'standard' && this.#bad >= DOWN_AFTER) [this.active, this.#bad] = ['low', 0];
    else if (this.active === 'low' && this.#good >= UP_AFTER) [this.active, this.#good] = ['standard', 0];
    return this.active;
  }
}

/**
 * Encoding limits for `profile` on a track of the given size.
 * @param {Profile} profile
 * @param {{width?: number, height?: number}} size
 */
export function encodingFor(profile, { width, height }) {
  const limits = PROFILES[profile];
  const factor = width && height ? Math.max(1, width / limits.maxWidth, height / limits.maxHeight) : 1;
  return { maxBitrate: limits.maxBitrate, maxFramerate: limits.fps, scaleResolutionDownBy: factor };
}

/**
 * @param {{lossPct: number | null, rttMs: number | null} | null} sample
 */
function reasonOf(sample) {
  if (!sample) return 'no receiver reports yet';
  const rtt = sample.rttMs == null ? 'unknown' : `${Math.round(sample.rttMs)} ms`;
  return `loss ${Math.round(sample.lossPct ?? 0)}%, rtt ${rtt}`;
}

/**
 * The nurse page's side: applies the profile to every sender and tells the viewers.
 * Event `change` ({mode, active}) after each change.
 */
export class VideoProfiles extends EventTarget {
  /** @type {Mode} */
  mode = 'auto';
  /** @type {Profile} */
  active = 'standard';
  chooser = new Chooser();
  /** @type {{lossPct: number | null, rttMs: number | null} | null} */
  #lastSample = null;

  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {() => RTCPeerConnection[]} connections
   * @param {() => string[]} viewers participant ids to tell
   */
  constructor(signaling, connections, viewers) {
    super();
    this.signaling = signaling;
    this.connections = connections;
    this.viewers = viewers;
  }

  /** @param {{lossPct: number | null, rttMs: number | null} | null} sample a quality sample */
  async observe(sample) {
    if (!sample) return;
    this.#lastSample = sample;
    this.chooser.observe(sample);
    await this.#update(false);
  }

  /** @param {Mode} mode a viewer's choice */
  async choose(mode) {
    if (!['auto', 'standard', 'low'].includes(mode)) return;
    this.mode = mode;
    await this.#update(true);
  }

  /** The encoding a new connection's video starts with (CameraPeers.videoEncoding). @param {MediaStreamTrack} track */
  encoding(track) {
    return encodingFor(this.active, track.getSettings());
  }

  /** Apply the current profile to every connection whose video does not have it yet. */
  async apply() {
    for (const pc of this.connections()) {
      for (const sender of pc.getSenders()) {
        if (sender.track?.kind !== 'video') continue;
        const parameters = sender.getParameters();
        if (!parameters.encodings?.length) continue; // not negotiated yet; applied on the next change
        const wanted = this.encoding(sender.track);
        const current = /** @type {Record<string, unknown>} */ (parameters.encodings[0]);
        // Setting what is set already would still restart the encoder (a new key frame, a stall).
        if (Object.entries(wanted).every(([key, value]) => current[key] === value)) continue;
        Object.assign(parameters.encodings[0], wanted);
        await sender.setParameters(parameters).catch((error) => console.warn('setParameters failed:', error.name));
      }
    }
  }

  /** @param {string} viewer */
  tell(viewer) {
    this.signaling.send({ type: 'video_profile', to: viewer, mode: this.mode, active: this.active, reason: reasonOf(this.#lastSample) });
  }

  /** @param {boolean} force tell the viewers even if nothing changed (they asked) */
  async #update(force) {
    const profile = this.mode === 'auto' ? this.chooser.active : this.mode;
    const changed = profile !== this.active;
    if (!changed && !force) return;
    this.active = profile;
    if (changed) await this.apply();
    for (const viewer of this.viewers()) this.tell(viewer);
    this.dispatchEvent(new CustomEvent('change', { detail: { mode: this.mode, active: this.active } }));
  }
}
