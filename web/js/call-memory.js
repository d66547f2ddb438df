/**
 * The nurse's live call as this tab remembers it, so that a reload, or a tab the phone killed
 * and restored, comes back into the same consultation as the same participant (protocol §11).
 *
 * sessionStorage lives as long as the tab (it survives reloads and a restored tab, and no other
 * tab sees it) and holds ids only: the consultation, the latest resume token, the user it
 * belongs to. Never patient data. When it is gone (a new tab), GET /api/consultations/live
 * still finds the consultation, and the page joins it afresh.
 */

const KEY = 'woundcare.call';
/**
 * Each page life of a call numbers its peer connections from its own block, so a viewer never
 * takes the new page's offer for the old page's connection (protocol §12.3: a new `pc` means a
 * fresh RTCPeerConnection).
 */
const GENERATIONS_PER_PAGE = 1000;

/**
 * @typedef {{user: string, consultation: string, resumeToken: string | null, lives: number, paused: boolean}} Remembered
 *   paused: the nurse logged out mid-call; she is offered the call again rather than taken back into it
 */

export class CallMemory {
  /** @param {string} user whose call it is: another user signing in on this tab never sees it */
  constructor(user) {
    this.user = user;
  }

  /** @returns {Remembered | null} */
  get() {
    try {
      const found = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
      if (found?.user === this.user) return found;
      // Another user's call in this tab: its resume token must not outlive the user's session.
      if (found) this.forget();
      return null;
    } catch {
      return null;
    }
  }

  /**
   * Start remembering `consultation` on this page.
   * @param {string} consultation
   * @returns {{resumeToken: string | null, firstGeneration: number}} the resume token an earlier
   *   page of this call kept, and the first peer-connection generation for this page
   */
  open(consultation) {
    const earlier = this.get();
    const same = earlier?.consultation === consultation;
    const lives = same ? earlier.lives + 1 : 0;
    const resumeToken = same ? earlier.resumeToken : null;
    this.#write({ user: this.user, consultation, resumeToken, lives, paused: false });
    return { resumeToken, firstGeneration: lives * GENERATIONS_PER_PAGE };
  }

  /** @param {Partial<Remembered>} changes */
  update(changes) {
    const current = this.get();
    if (current) this.#write({ ...current, ...changes });
  }

  forget() {
    sessionStorage.removeItem(KEY);
  }

  /** @param {Remembered} value */
  #write(value) {
    sessionStorage.setItem(KEY, JSON.stringify(value));
  }
}
