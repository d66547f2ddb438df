/**
 * Join tokens (POST /api/consultations/{id}/join-token) fetched before the click on Join, so that
 * joining does not wait for one: on a busy server that request was the largest step between the
 * click and `joined` (130-220 ms at the median on the bench machine).
 *
 * Fetching ahead is the same request earlier: the server mints a token only for a consultation
 * the user may join, and audits each request (`consultation.join`). So tokens are fetched for the
 * consultations a join is likely for, the queue's first entry and the one pointed at or focused,
 * not for every entry: the audit then names only those, and the page holds few credentials.
 * They stay in this module's memory, never in storage or a URL.
 */

import { postJson } from './api.js';

/**
 * How long a token is handed out after it was asked for: half its lifetime (JOIN_TOKEN_SECONDS,
 * 600 s, in woundcare/api/consultations.py), so that one handed to a join never expires on the
 * way and the queue's first entry gets a new one well before.
 */
const REUSE_MS = 300_000;

export class JoinTokens {
  /** @type {Map<string, {token: Promise<string>, askedAt: number}>} */
  #held = new Map();

  /**
   * A token for `consultation`: the one fetched ahead while it is fresh (or still on its way),
   * otherwise a new one.
   * @param {string} consultation
   * @returns {Promise<string>}
   */
  get(consultation) {
    const held = this.#held.get(consultation);
    if (held && Date.now() - held.askedAt < REUSE_MS) return held.token;
    const entry = {
      token: postJson(`/api/consultations/${consultation}/join-token`).then((answer) => String(answer.token)),
      askedAt: Date.now(),
    };
    this.#held.set(consultation, entry);
    // A refusal is not kept: the join itself asks again and meets the error.
    entry.token.catch(() => {
      if (this.#held.get(consultation) === entry) this.#held.delete(consultation);
    });
    return entry.token;
  }

  /**
   * Fetch ahead; a failure is left for the join itself to meet.
   * @param {string} consultation
   */
  prefetch(consultation) {
    this.get(consultation).catch(() => {});
  }

  /**
   * Forget the tokens of consultations that have left the queue.
   * @param {Set<string>} queued
   */
  keepOnly(queued) {
    for (const consultation of this.#held.keys()) if (!queued.has(consultation)) this.#held.delete(consultation);
  }
}
