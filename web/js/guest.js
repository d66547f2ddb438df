/**
 * A guest's page (protocol §3.4, §12.8): an interpreter, a relative or the patient's GP, with no
 * account, in one call as `observer`. The one-time link's code is in the URL's fragment; it is
 * taken out of the address bar at once and posted once, after the guest has read what the call
 * is and agreed (the answer sets the guest cookie, which a reload uses). The guest answers the
 * nurse's camera (its video and the patient's side; the guest's microphone goes back) and each
 * specialist (the specialist's voice; the guest's microphone and camera go back). No photos, no
 * record: the server refuses both to an observer.
 */

import { ApiError, postJson } from './api.js';
import { byId, h } from './dom.js';
import { mountLanguageSwitch, setText, translate } from './i18n.js';
import { IceConfig } from './ice.js';
import { ViewerPeer } from './peer.js';
import { Participants } from './presence.js';
import { showRecording } from './recording-badge.js';
import { Signaling } from './signaling.js';
import { renderConnection } from './call-status.js';

translate();
mountLanguageSwitch(byId('language'));

// A one-time credential: out of the address bar (and so of history and bookmarks) before anything else.
const code = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : null;
if (code) history.replaceState(null, '', location.pathname);

const join = /** @type {HTMLButtonElement} */ (byId('join'));
const consent = /** @type {HTMLInputElement} */ (byId('guest-consent'));
consent.addEventListener('change', () => { join.disabled = !consent.checked; });

/** The errors the join can meet, each with its own sentence. */
const KNOWN = new Set(['invitation_used', 'invitation_expired', 'invitation_revoked', 'invitation_invalid', 'ended', 'unauthorized']);

/** @param {unknown} error */
function refusal(error) {
  const known = error instanceof ApiError && KNOWN.has(error.code);
  return `guest.error.${known ? /** @type {ApiError} */ (error).code : 'generic'}`;
}

join.addEventListener('click', async () => {
  join.disabled = true;
  let first;
  try {
    first = await postJson('/api/guest/join', code ? { code } : {});
  } catch (error) {
    setText(byId('intro-error'), refusal(error));
    return;
  }
  /** @type {MediaStream} */
  let local;
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true }, video: { width: 640, height: 480 } });
  } catch {
    local = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } }).catch(() => new MediaStream());
  }
  runCall(first, local);
});

/**
 * @param {{consultation: string, token: string}} first the redemption's answer
 * @param {MediaStream} local the guest's microphone and camera (either may be missing)
 */
function runCall(first, local) {
  byId('intro').hidden = true;
  byId('call').hidden = false;
  const video = /** @type {HTMLVideoElement} */ (byId('remote-video'));
  /** @type {HTMLVideoElement} */ (byId('self-video')).srcObject = local;
  const ice = new IceConfig();
  let token = /** @type {string | null} */ (first.token);
  const signaling = new Signaling({
    consultation: first.consultation,
    role: 'observer',
    // The redemption's token first; every later join asks again with the guest cookie.
    joinToken: async () => {
      const held = token;
      token = null;
      return held ?? (await postJson('/api/guest/join', {})).token;
    },
  });
  const participants = new Participants(/** @type {HTMLUListElement} */ (byId('participants')));
  /** One connection per offerer: the nurse's camera and each specialist. @type {Map<string, ViewerPeer>} */
  const peers = new Map();
  // The nurse's phone gets the guest's voice only; a specialist sees the guest as well.
  const voiceOnly = new MediaStream(local.getAudioTracks());
  const status = byId('status');
  const showState = () => {
    const nurse = participants.withRole('nurse')[0];
    renderConnection(status, signaling.state, nurse ? peers.get(nurse.id)?.connected() ?? null : null, byId('quality'));
  };

  signaling.addEventListener('joined', (event) => participants.reset(/** @type {CustomEvent} */ (event).detail));
  showRecording(signaling, byId('recording-badge'));
  signaling.addEventListener('presence', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    participants.update(frame);
    if (frame.state === 'left') {
      peers.get(frame.participant.id)?.close();
      peers.delete(frame.participant.id);
      document.getElementById(`voice-${frame.participant.id}`)?.remove();
      showState();
    }
  });
  signaling.addEventListener('offer', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    let peer = peers.get(frame.from);
    if (!peer) {
      const nurse = participants.others.get(frame.from)?.role === 'nurse';
      peer = new ViewerPeer(signaling, Promise.resolve(nurse ? voiceOnly : local), ice);
      peer.addEventListener('mediastate', showState);
      peer.addEventListener('remotestream', (streamed) => {
        const { stream } = /** @type {CustomEvent} */ (streamed).detail;
        if (nurse) video.srcObject = stream;
        else hear(frame.from, stream);
      });
      peers.set(frame.from, peer);
    }
    peer.offer(frame);
  });
  signaling.addEventListener('candidate', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    peers.get(frame.from)?.candidate(frame);
  });
  signaling.addEventListener('state', () => {
    participants.setOwnState(signaling.state === 'joined');
    showState();
    if (signaling.state === 'closed') finish(signaling.closeReason);
  });

  const mute = byId('mute');
  mute.addEventListener('click', () => {
    const muted = mute.getAttribute('aria-pressed') !== 'true';
    mute.setAttribute('aria-pressed', String(muted));
    setText(mute, muted ? 'guest.unmute' : 'guest.mute');
    for (const track of local.getAudioTracks()) track.enabled = !muted;
  });
  byId('leave').addEventListener('click', () => signaling.leave());

  /** @param {string} reason */
  function finish(reason) {
    for (const peer of peers.values()) peer.close();
    peers.clear();
    for (const track of local.getTracks()) track.stop();
    byId('call').hidden = true;
    byId('ended').hidden = false;
    setText(byId('ended-reason'), ['ended', 'left', 'revoked'].includes(reason) ? `guest.ended.${reason}` : 'guest.ended.error');
  }

  signaling.start();
  showState();
}

/**
 * A specialist's voice.
 * @param {string} from
 * @param {MediaStream} stream
 */
function hear(from, stream) {
  const audio = /** @type {HTMLAudioElement} */ (document.getElementById(`voice-${from}`)
    ?? byId('voices').appendChild(h('audio', { id: `voice-${from}`, autoplay: '' })));
  audio.srcObject = stream;
}
