/**
 * Call quality from WebRTC getStats: bitrate, packet loss and round-trip time of the video,
 * shown to the user and reported to the server (POST /api/consultations/{id}/quality) every
 * few seconds. The camera measures what it sends, viewers what they receive.
 */

import { postJson } from './api.js';

const QUALITY_INTERVAL_MS = 4000;

/**
 * @typedef {{direction: 'send' | 'receive', bitrateKbps: number | null, lossPct: number | null,
 *   rttMs: number | null, fps: number | null, width: number | null, height: number | null}} Sample
 * @typedef {'good' | 'fair' | 'poor' | 'none'} Level
 */

/** @param {number | null | undefined} value @param {number} digits */
function round(value, digits = 1) {
  return value == null || !Number.isFinite(value) ? null : Number(value.toFixed(digits));
}

/**
 * How the numbers feel in a call: thresholds from common video-call practice.
 * @param {Sample | null} sample
 * @returns {Level}
 */
function levelOf(sample) {
  if (!sample || sample.bitrateKbps == null) return 'none';
  const loss = sample.lossPct ?? 0;
  const rtt = sample.rttMs ?? 0;
  if (loss > 8 || rtt > 800 || sample.bitrateKbps < 100) return 'poor';
  if (loss > 2 || rtt > 300 || sample.bitrateKbps < 400) return 'fair';
  return 'good';
}

/**
 * The counters of one connection's video, summed over its RTP streams.
 * @param {RTCStatsReport} report
 * @param {'send' | 'receive'} direction
 */
function countersOf(report, direction) {
  const counters = { bytes: 0, packets: 0, lost: 0, fractionLost: /** @type {number | null} */ (null),
    rttMs: /** @type {number | null} */ (null), fps: /** @type {number | null} */ (null),
    width: /** @type {number | null} */ (null), height: /** @type {number | null} */ (null) };
  for (const stats of report.values()) {
    if (stats.kind !== 'video' && stats.type !== 'candidate-pair') continue;
    if (direction === 'receive' && stats.type === 'inbound-rtp') {
      counters.bytes += stats.bytesReceived ?? 0;
      counters.packets += stats.packetsReceived ?? 0;
      counters.lost += stats.packetsLost ?? 0;
      counters.fps = stats.framesPerSecond ?? counters.fps;
      counters.width = stats.frameWidth ?? counters.width;
      counters.height = stats.frameHeight ?? counters.height;
    } else if (direction === 'send' && stats.type === 'outbound-rtp') {
      counters.bytes += stats.bytesSent ?? 0;
      counters.fps = stats.framesPerSecond ?? counters.fps;
      counters.width = stats.frameWidth ?? counters.width;
      counters.height = stats.frameHeight ?? counters.height;
    } else if (direction === 'send' && stats.type === 'remote-inbound-rtp') {
      // The viewer's receiver reports, sent back over RTCP.
      counters.fractionLost = stats.fractionLost ?? counters.fractionLost;
      if (stats.roundTripTime != null) counters.rttMs = stats.roundTripTime * 1000;
    } else if (stats.type === 'candidate-pair' && stats.nominated && stats.state === 'succeeded') {
      if (counters.rttMs == null && stats.currentRoundTripTime != null) counters.rttMs = stats.currentRoundTripTime * 1000;
    }
  }
  return counters;
}

/** Samples every few seconds while started; `sample` events carry {sample, level}. */
export class QualityMonitor extends EventTarget {
  /** @type {WeakMap<RTCPeerConnection, {at: number, bytes: number, packets: number, lost: number}>} */
  #previous = new WeakMap();
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #timer;

  /**
   * @param {{consultation: string, direction: 'send' | 'receive', connections: () => RTCPeerConnection[]}} options
   */
  constructor({ consultation, direction, connections }) {
    super();
    this.consultation = consultation;
    this.direction = direction;
    this.connections = connections;
  }

  start() {
    this.#timer = setInterval(() => this.#tick(), QUALITY_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.#timer);
  }

  async #tick() {
    const sample = await this.measure();
    this.dispatchEvent(new CustomEvent('sample', { detail: { sample, level: levelOf(sample) } }));
    if (sample) {
      // A lost report is no loss: the next one comes in a few seconds.
      postJson(`/api/consultations/${this.consultation}/quality`, sample).catch(() => {});
    }
  }

  /**
   * One sample over all connections with live media: total bitrate, the worst loss and round
   * trip; null when none has (the level is then `none`, and no badge is shown).
   * @returns {Promise<Sample | null>}
   */
  async measure() {
    /** @type {Sample | null} */
    let total = null;
    for (const pc of this.connections()) {
      if (!['connected', 'completed'].includes(pc.iceConnectionState)) {
        // No video now: no sample from it (a cut is not a "fair" connection), and the first one
        // after it comes back is not averaged over the cut.
        this.#previous.delete(pc);
        continue;
      }
      const now = performance.now();
      const counters = countersOf(await pc.getStats(), this.direction);
      const before = this.#previous.get(pc);
      this.#previous.set(pc, { at: now, bytes: counters.bytes, packets: counters.packets, lost: counters.lost });
      if (!before || counters.bytes < before.bytes) continue;
      const seconds = (now - before.at) / 1000;
      const bitrateKbps = ((counters.bytes - before.bytes) * 8) / 1000 / seconds;
      const newPackets = counters.packets - before.packets;
      const newLost = Math.max(0, counters.lost - before.lost);
      const lossPct = this.direction === 'send'
        ? (counters.fractionLost == null ? null : counters.fractionLost * 100)
        : (newPackets + newLost > 0 ? (newLost / (newPackets + newLost)) * 100 : 0);
      total ??= { direction: this.direction, bitrateKbps: 0, lossPct: null, rttMs: null, fps: null, width: null, height: null };
      total.bitrateKbps = /** @type {number} */ (total.bitrateKbps) + bitrateKbps;
      total.lossPct = Math.max(total.lossPct ?? 0, lossPct ?? 0);
      total.rttMs = counters.rttMs == null ? total.rttMs : Math.max(total.rttMs ?? 0, counters.rttMs);
      total.fps = counters.fps ?? total.fps;
      total.width = counters.width ?? total.width;
      total.height = counters.height ?? total.height;
    }
    if (!total) return null;
    return {
      direction: total.direction,
      bitrateKbps: round(total.bitrateKbps),
      lossPct: round(Math.min(100, total.lossPct ?? 0), 2),
      rttMs: round(total.rttMs, 0),
      fps: round(total.fps),
      width: total.width,
      height: total.height,
    };
  }
}
