/**
 * The nurse's call: the camera offered to every viewer, their voices played back, mute,
 * camera switch, torch, snapshots (asked for, after a 3-second countdown, or taken by hand,
 * kept in the outbox until uploaded), the earlier photo as an overlay to match the framing,
 * quality, chat (the others' messages shown over the picture with a tone and a vibration).
 * The picture with its status and controls fills the first screen, which is scrolled into view
 * at the start and after a turn of the device. The call survives the page: leaving or logging
 * out asks first, and a reload comes back into it.
 */

import { getBlob, getJson, postJson } from './api.js';
import { Microphones, renderConnection, renderQuality } from './call-status.js';
import { cameras, hasTorch, nextCamera, setTorch } from './camera.js';
import { capturePhoto, countDown } from './capture.js';
import { Chat, ChatToasts } from './chat.js';
import { birthDateOf, byId, h } from './dom.js';
import { IceConfig } from './ice.js';
import { setText, t } from './i18n.js';
import { askBeforeLogout } from './page.js';
import { CameraPeers } from './peer.js';
import { Participants } from './presence.js';
import { QualityMonitor } from './quality.js';
import { showRecording } from './recording-badge.js';
import { Signaling } from './signaling.js';
import { SnapshotOutbox } from './snapshots-queue.js';
import { SharedView } from './telestration.js';
import { VideoProfiles } from './video-profile.js';

/** How long the end button waits for the confirming second tap. */
const CONFIRM_MS = 4000;
const NOTICE_MS = 5000;
/** Seconds counted down before a photo the specialist asked for. */
const COUNTDOWN_SECONDS = 3;
/** Fetched as the page loads and kept fresh, so that joining never waits for it. */
const ice = new IceConfig();

/**
 * @param {{consultation: {id: string}, patient: import('./nurse.js').Patient,
 *   consents: {video: boolean, snapshots: boolean, recording: boolean}, stream: MediaStream,
 *   memory: import('./call-memory.js').CallMemory}} call
 */
export async function runCall({ consultation, patient, consents, stream, memory }) {
  const id = consultation.id;
  const video = /** @type {HTMLVideoElement} */ (byId('local-video'));
  const status = byId('status');
  const notice = byId('notice');
  video.srcObject = stream;
  byId('call').hidden = false;
  document.body.classList.add('in-call');
  // The top bar and the setup cards were above: without this the status and the top of the
  // picture would start off screen. Again after a turn, which moves everything.
  const intoView = () => byId('call-screen').scrollIntoView({ block: 'start' });
  intoView();
  const landscape = matchMedia('(orientation: landscape)');
  landscape.addEventListener('change', intoView);
  byId('call-patient').textContent = `${patient.name ?? ''} (${birthDateOf(patient.nationalId)})`;

  const { resumeToken, firstGeneration } = memory.open(id);
  const signaling = new Signaling({
    consultation: id,
    role: 'nurse',
    joinToken: async () => (await postJson(`/api/consultations/${id}/join-token`)).token,
    resumeToken,
  });
  const peers = new CameraPeers(signaling, stream, ice, firstGeneration);
  const participants = new Participants(/** @type {HTMLUListElement} */ (byId('participants')));
  const toasts = new ChatToasts(/** @type {HTMLOListElement} */ (byId('chat-toasts')));
  toasts.unlock(); // after the tap on Start or Rejoin; after a reload it waits for a tap
  new Chat(/** @type {HTMLFormElement} */ (byId('chat-form')), /** @type {HTMLOListElement} */ (byId('chat-log')),
    signaling, (from) => participants.nameOf(from), toasts);
  const quality = new QualityMonitor({ consultation: id, direction: 'send', connections: () => peers.connections() });
  const outbox = await SnapshotOutbox.open();
  const viewers = () => [...participants.others.values()].filter((p) => p.role !== 'nurse').map((p) => p.id);
  const profiles = new VideoProfiles(signaling, () => peers.connections(), viewers);
  peers.videoEncoding = (track) => profiles.encoding(track);
  // The specialist's marks and shared freeze over the video (protocol §6.11, §6.12).
  const shared = new SharedView({
    video, still: /** @type {HTMLCanvasElement} */ (byId('frozen-still')),
    overlay: /** @type {HTMLCanvasElement} */ (byId('telestration')), badge: byId('frozen-badge'),
  });
  const mayDraw = (/** @type {string} */ viewer) => participants.others.get(viewer)?.role === 'specialist';
  for (const kind of ['annotation', 'freeze']) {
    signaling.addEventListener(kind, (event) => {
      const frame = /** @type {CustomEvent} */ (event).detail;
      shared.receive(frame, frame.from);
    });
  }
  peers.addEventListener('channel', (event) => {
    const { viewer, channel } = /** @type {CustomEvent} */ (event).detail;
    shared.listen(channel, viewer, () => mayDraw(viewer));
  });

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let noticeTimer;
  /** @param {string} key @param {Record<string, string | number>} [params] */
  const tell = (key, params) => {
    setText(notice, key, params);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.textContent = ''; delete notice.dataset.i18n; }, NOTICE_MS);
  };
  const showState = () => renderConnection(status, signaling.state, peers.connected(), byId('quality'));
  const microphones = new Microphones(byId('microphone'), stream.getAudioTracks().length > 0);

  /** @param {import('./signaling.js').Participant[]} list */
  const viewersIn = (list) => list.filter((p) => p.role !== 'nurse').map((p) => p.id);

  signaling.addEventListener('joined', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    memory.update({ resumeToken: frame.resumeToken });
    participants.reset(frame);
    const viewers = viewersIn(frame.peers);
    if (frame.resumed) {
      peers.resumed(viewers);
    } else {
      // A new participant id (first join, or the old place had expired): start every connection afresh.
      peers.closeAll();
      for (const viewer of viewers) peers.offerTo(viewer);
    }
    for (const viewer of viewers) profiles.tell(viewer);
  });
  showRecording(signaling, byId('recording-badge'));
  signaling.addEventListener('presence', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    participants.update(frame);
    if (frame.participant.role === 'nurse') return;
    if (['joined', 'rejoined'].includes(frame.state)) profiles.tell(frame.participant.id);
    if (frame.state === 'joined' && !peers.has(frame.participant.id)) peers.offerTo(frame.participant.id);
    else if (frame.state === 'left') {
      peers.close(frame.participant.id);
      microphones.gone(frame.participant.id);
      document.getElementById(`voice-${frame.participant.id}`)?.remove();
    }
  });
  signaling.addEventListener('answer', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    peers.answer(frame);
    microphones.heard(frame, participants.others.get(frame.from)?.role);
  });
  signaling.addEventListener('candidate', (event) => peers.candidate(/** @type {CustomEvent} */ (event).detail));
  signaling.addEventListener('ice_restart', (event) => peers.restart(/** @type {CustomEvent} */ (event).detail.from));
  /** Requests in a row wait their turn: one countdown and one photo at a time. */
  let requests = Promise.resolve();
  signaling.addEventListener('snapshot_request', (event) => {
    const request = /** @type {CustomEvent} */ (event).detail.id;
    requests = requests.then(async () => {
      if (finished) return;
      if (!consents.snapshots) {
        tell('nurse.snapshot.noConsent');
        return;
      }
      tell('nurse.snapshot.countdown');
      await countDown(byId('countdown'), byId('countdown-number'), COUNTDOWN_SECONDS);
      if (!finished) await takeSnapshot(request);
    });
  });
  signaling.addEventListener('snapshot_stored', () => tell('nurse.snapshot.stored'));
  signaling.addEventListener('video_profile', (event) => profiles.choose(/** @type {CustomEvent} */ (event).detail.mode));
  profiles.addEventListener('change', () => tell(`nurse.video.${profiles.active}`));
  signaling.addEventListener('state', () => {
    participants.setOwnState(signaling.state === 'joined');
    showState();
    if (signaling.state === 'closed') finish(signaling.closeReason);
  });
  peers.addEventListener('mediastate', () => {
    showState();
    profiles.apply(); // a restarted connection may lack the profile (a new one starts with it)
  });
  peers.addEventListener('remotestream', (event) => {
    const { viewer, stream: voice } = /** @type {CustomEvent} */ (event).detail;
    const audio = /** @type {HTMLAudioElement} */ (document.getElementById(`voice-${viewer}`)
      ?? byId('voices').appendChild(h('audio', { id: `voice-${viewer}`, autoplay: '' })));
    audio.srcObject = voice;
  });
  quality.addEventListener('sample', (event) => {
    const { sample, level } = /** @type {CustomEvent} */ (event).detail;
    renderQuality(byId('quality'), sample, level);
    profiles.observe(sample);
  });

  // --- snapshots ---------------------------------------------------------------------------
  const showOutbox = async () => {
    const waiting = await outbox.count();
    if (waiting) setText(byId('outbox'), 'nurse.outbox.waiting', { count: waiting });
    else byId('outbox').textContent = '';
  };
  outbox.addEventListener('change', showOutbox);
  outbox.addEventListener('rejected', () => tell('nurse.outbox.rejected'));
  showOutbox();
  outbox.flush();

  /** @param {string | null} request the specialist's request id, null when taken by hand */
  async function takeSnapshot(request) {
    if (!consents.snapshots) {
      tell('nurse.snapshot.noConsent');
      return;
    }
    const stage = byId('stage');
    stage.classList.add('shutter');
    setTimeout(() => stage.classList.remove('shutter'), 300);
    try {
      const blob = await capturePhoto(stream.getVideoTracks()[0], video);
      if (request) shared.captured(request, blob);
      await outbox.add({ consultation: id, request, blob, takenAt: Date.now() });
    } catch {
      tell('nurse.snapshot.failed');
    }
  }

  // --- controls ----------------------------------------------------------------------------
  const mute = byId('mute');
  mute.hidden = stream.getAudioTracks().length === 0;
  mute.addEventListener('click', () => {
    const muted = mute.getAttribute('aria-pressed') !== 'true';
    for (const track of stream.getAudioTracks()) track.enabled = !muted;
    mute.setAttribute('aria-pressed', String(muted));
    setText(mute, muted ? 'nurse.unmute' : 'nurse.mute');
  });

  const torch = byId('torch');
  const offerTorch = () => {
    torch.hidden = !hasTorch(stream.getVideoTracks()[0]);
    torch.setAttribute('aria-pressed', 'false');
  };
  offerTorch();
  torch.addEventListener('click', async () => {
    const on = torch.getAttribute('aria-pressed') !== 'true';
    await setTorch(stream.getVideoTracks()[0], on).catch(() => tell('nurse.torch.failed'));
    torch.setAttribute('aria-pressed', String(on));
  });

  const switcher = byId('switch-camera');
  switcher.hidden = (await cameras()).length < 2;
  switcher.addEventListener('click', async () => {
    try {
      const track = await nextCamera(stream);
      await peers.replaceVideoTrack(track);
      video.srcObject = stream;
      offerTorch();
    } catch {
      tell('nurse.error.camera');
    }
  });

  byId('snapshot').addEventListener('click', () => takeSnapshot(null));

  const overlay = /** @type {HTMLImageElement} */ (byId('overlay'));
  const overlayToggle = byId('overlay-toggle');
  overlayToggle.addEventListener('click', () => {
    overlay.hidden = !overlay.hidden;
    overlayToggle.setAttribute('aria-pressed', String(!overlay.hidden));
  });
  loadOverlay(patient.id, id, overlay).then((found) => { overlayToggle.hidden = !found; }, () => {});

  const end = byId('end');
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let confirmTimer;
  end.addEventListener('click', () => {
    // Two taps: a gloved hand brushing the screen must not end a consultation.
    if (end.dataset.armed !== 'true') {
      end.dataset.armed = 'true';
      setText(end, 'nurse.end.confirm');
      confirmTimer = setTimeout(() => { end.dataset.armed = 'false'; setText(end, 'nurse.end'); }, CONFIRM_MS);
      return;
    }
    clearTimeout(confirmTimer);
    signaling.leave();
  });

  // Leaving the page or logging out asks first. Whoever goes anyway leaves the consultation
  // open: the specialist sees the nurse reconnecting, and the nurse can come back into it.
  const stay = (/** @type {BeforeUnloadEvent} */ event) => {
    event.preventDefault();
    event.returnValue = '';
  };
  window.addEventListener('beforeunload', stay);
  askBeforeLogout(() => {
    if (!confirm(t('nurse.logout.confirm'))) return false;
    window.removeEventListener('beforeunload', stay);
    memory.update({ paused: true });
    return true;
  });

  let finished = false;
  /** @param {string} reason */
  function finish(reason) {
    if (finished) return;
    finished = true;
    document.body.classList.remove('in-call');
    landscape.removeEventListener('change', intoView);
    window.removeEventListener('beforeunload', stay);
    askBeforeLogout(null);
    memory.forget();
    quality.stop();
    peers.closeAll();
    for (const track of stream.getTracks()) track.stop();
    byId('call').hidden = true;
    byId('ended').hidden = false;
    setText(byId('ended-reason'), ['ended', 'left'].includes(reason) ? `nurse.ended.${reason}` : 'nurse.ended.error');
  }

  signaling.start();
  quality.start();
  showState();
}

/**
 * Show the patient's latest snapshot from an earlier consultation as the overlay.
 * @param {string} patient
 * @param {string} consultation this one, whose snapshots don't count
 * @param {HTMLImageElement} overlay
 * @returns {Promise<boolean>} whether there was one
 */
async function loadOverlay(patient, consultation, overlay) {
  const { entries } = await getJson(`/api/patients/${encodeURIComponent(patient)}/timeline`);
  const previous = entries.filter((/** @type {any} */ e) => e.kind === 'snapshot' && e.consultation !== consultation).at(-1);
  if (!previous) return false;
  overlay.src = URL.createObjectURL(await getBlob(`/api/snapshots/${previous.id}`));
  return true;
}
