/** The RTCConfiguration the server hands out (GET /api/ice-servers), renewed before its TURN
 * credentials expire. */

import { getJson } from './api.js';

export class IceConfig {
  /** @type {RTCConfiguration | null} */
  #config = null;
  #renewAt = 0;

  /** @returns {Promise<RTCConfiguration>} */
  async get() {
    if (this.#config && Date.now() < this.#renewAt) return this.#config;
    try {
      const answer = await getJson('/api/ice-servers');
      this.#config = { iceServers: answer.iceServers, iceTransportPolicy: answer.iceTransportPolicy };
      // Half the lifetime: an ICE restart late in a long call still gets valid credentials.
      this.#renewAt = Date.now() + answer.ttlSeconds * 500;
    } catch (error) {
      // Offline during a restart: the last credentials are likely still valid, and better than none.
      if (!this.#config) throw error;
    }
    return this.#config;
  }
}
