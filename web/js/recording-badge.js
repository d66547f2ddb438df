/**
 * The mark over the picture while the call is recorded: the patient and the nurse must see
 * when it is, and so does everyone else in the call. The server tells every participant when
 * a recording starts and ends, and tells whoever joins while one is on right after its
 * `joined` (protocol §7.6).
 */

/**
 * Show ``badge`` while the room's last `recording` frame said `on`.
 * @param {EventTarget} signaling dispatches each server frame as an event named by its type
 * @param {HTMLElement} badge
 */
export function showRecording(signaling, badge) {
  signaling.addEventListener('recording', (event) => {
    badge.hidden = /** @type {CustomEvent<{state: string}>} */ (event).detail.state !== 'on';
  });
  // A fresh join hears of a recording only if one is on; a resumed one gets what it missed.
  signaling.addEventListener('joined', (event) => {
    if (!(/** @type {CustomEvent<{resumed: boolean}>} */ (event).detail.resumed)) badge.hidden = true;
  });
}
