/**
 * The RTCConfiguration the server hands out (GET /api/ice-servers). It is fetched as soon as the
 * page loads and renewed in the background at half the TURN credentials' lifetime, so that
 * joining a call never waits for it: a join that did lost the candidates that came meanwhile.
 */

import { ApiError, getJson } from './api.js';

/** After a failed fetch (offline), try again this soon. */
const RETRY_MS = 10_000;

export class IceConfig {
  /** @type {RTCConfiguration | null} */
  #config = null;
  /** When the credentials of `#config` expire (ms since the epoch). */
  #expiresAt = 0;
  /** @type {Promise<RTCConfiguration> | null} */
  #fetching = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;

  /** Starts fetching at once. */
  constructor() {
    this.#renew().catch(() => {});
  }

  /**
   * The configuration for a new connection or an ICE restart: the cached one, without a network
   * round trip, unless there is none yet or it has expired (a suspended laptop's timers stop).
   * @returns {Promise<RTCConfiguration>}
   */
  async get() {
    if (this.#config && Date.now() < this.#expiresAt) return this.#config;
    try {
      return await this.#renew();
    } catch (error) {
      // Offline during a restart: the last credentials may still work, and are better than none.
      if (this.#config) return this.#config;
      throw error;
    }
  }

  /** One fetch at a time; on success the next renewal is due at half the lifetime. */
  #renew() {
    this.#fetching ??= getJson('/api/ice-servers').then(
      (answer) => {
        this.#fetching = null;
        this.#config = { iceServers: answer.iceServers, iceTransportPolicy: answer.iceTransportPolicy };
        this.#expiresAt = Date.now() + answer.ttlSeconds * 1000;
        this.#schedule(answer.ttlSeconds * 500);
        return this.#config;
      },
      (error) => {
        this.#fetching = null;
        // Logged out: retrying would only fail again; the next get() asks once more.
        if (!(error instanceof ApiError && [401, 403].includes(error.status))) this.#schedule(RETRY_MS);
        throw error;
      },
    );
    return this.#fetching;
  }

  /** @param {number} ms */
  #schedule(ms) {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#renew().catch(() => {}), ms);
  }
}
