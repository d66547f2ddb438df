/**
 * The specialist's call: the camera's video large, talking back, snapshot requests, a shared
 * freeze and drawing on the nurse's screen (telestration.js), annotation and measurement
 * (snapshot-panel.js), the patient's earlier snapshots, the structured assessment, guests
 * (guest-invites.js), and ending the consultation.
 */

import { getBlob, getJson, postJson, putJson } from './api.js';
import { AssessmentEditor, applyMeasurement, lockAssessment } from './assessment.js';
import { Microphones, renderConnection, renderQuality } from './call-status.js';
import { Chat } from './chat.js';
import { byId, randomId } from './dom.js';
import { IceConfig } from './ice.js';
import { GuestPanel } from './guest-invites.js';
import { setText } from './i18n.js';
import { ViewerPeer } from './peer.js';
import { Participants } from './presence.js';
import { QualityMonitor } from './quality.js';
import { showRecording } from './recording-badge.js';
import { RecordingPanel } from './recordings.js';
import { Signaling } from './signaling.js';
import { SnapshotPanel } from './snapshot-panel.js';
import { Pen, Sketch, annotationItems, markSender } from './telestration.js';
import { showTimeline } from './timeline.js';

const CONFIRM_MS = 4000;
const NOTICE_MS = 6000;
/** The record and the panels wait for the camera's picture at most this long. */
const PANELS_LATEST_MS = 1500;
/** Strokes on a stored still are saved to its record this long after the last change. */
const SAVE_STILL_MS = 800;
/** Fetched as the page loads and kept fresh, so that joining never waits for it. */
const ice = new IceConfig();

/**
 * Resolves when `video` starts playing, or after `ms` if it has not by then.
 * @param {HTMLVideoElement} video
 * @param {number} ms
 * @returns {Promise<void>}
 */
function playingOrAfter(video, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    video.addEventListener('playing', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Nothing is awaited before the join: the join token and the socket (both usually got ready on
 * the queue, `ahead`), the join and the camera's offer come first; the microphone runs beside
 * them, and the patient's record and the panels follow the first picture (each awaited in turn
 * had made every join 150-400 ms slower).
 * @param {import('./specialist.js').Consultation} consultation
 * @param {{joinToken: () => Promise<string>, socket: WebSocket | null}} ahead the join's token
 *   (fetched ahead when it could be) and a /ws socket opened ahead, if there is one
 */
export function runSpecialistCall(consultation, ahead) {
  const id = consultation.id;
  byId('call-view').hidden = false;
  const status = byId('status');
  const notice = byId('notice');
  const video = /** @type {HTMLVideoElement} */ (byId('remote-video'));

  // Listening works without a microphone; talking back needs one. Only the answer to the
  // camera's offer waits for it (it carries the microphone's track), and only if it is not at hand yet.
  /** @type {Promise<MediaStream | null>} */
  const microphone = navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } }).catch(() => null);
  const signaling = new Signaling({ consultation: id, role: 'specialist', ...ahead });
  const viewer = new ViewerPeer(signaling, microphone, ice);
  const participants = new Participants(/** @type {HTMLUListElement} */ (byId('participants')));
  new Chat(/** @type {HTMLFormElement} */ (byId('chat-form')), /** @type {HTMLOListElement} */ (byId('chat-log')),
    signaling, (from) => participants.nameOf(from));
  const quality = new QualityMonitor({ consultation: id, direction: 'receive', connections: () => (viewer.pc ? [viewer.pc] : []) });
  const snapshots = new SnapshotPanel(id);
  // Before the join: it offers to the guests the `joined` frame names.
  const guests = new GuestPanel(id, signaling, microphone, ice);
  const recordings = new RecordingPanel(id, microphone);

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let noticeTimer;
  /** @param {string} key */
  const tell = (key) => {
    setText(notice, key);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.textContent = ''; delete notice.dataset.i18n; }, NOTICE_MS);
  };
  const showState = () => renderConnection(status, signaling.state, viewer.connected(), byId('quality'));
  // Says "no microphone" only once that is known; offers and departures before then wait for it, in order.
  const microphones = microphone.then((stream) => new Microphones(byId('microphone'), Boolean(stream)));

  signaling.addEventListener('joined', (event) => participants.reset(/** @type {CustomEvent} */ (event).detail));
  showRecording(signaling, byId('recording-badge'));
  signaling.addEventListener('presence', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    participants.update(frame);
    if (frame.state === 'left') {
      viewer.closeIfCamera(frame.participant.id);
      microphones.then((shown) => shown.gone(frame.participant.id));
    }
  });
  signaling.addEventListener('offer', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    viewer.offer(frame);
    const role = participants.others.get(frame.from)?.role;
    microphones.then((shown) => shown.heard(frame, role));
  });
  signaling.addEventListener('candidate', (event) => viewer.candidate(/** @type {CustomEvent} */ (event).detail));
  const videoMode = /** @type {HTMLSelectElement} */ (byId('video-mode'));
  const videoProfile = byId('video-profile');
  signaling.addEventListener('video_profile', (event) => {
    // Not the camera's `reason`: English figures, which the quality badge shows translated.
    const { mode, active } = /** @type {CustomEvent} */ (event).detail;
    videoMode.value = mode;
    setText(videoProfile, `specialist.video.active.${active}`);
  });
  videoMode.addEventListener('change', () => {
    const camera = participants.withRole('nurse')[0];
    if (!camera || !signaling.send({ type: 'video_profile', to: camera.id, mode: videoMode.value })) tell('specialist.video.notSent');
  });
  signaling.addEventListener('snapshot_stored', (event) => {
    const { id: snapshot, request } = /** @type {CustomEvent} */ (event).detail;
    tell('specialist.snapshot.stored');
    snapshots.refresh(request ?? null).catch(() => {});
    if (request) stillStored(request, snapshot).catch(() => tell('telestration.notSaved'));
  });
  signaling.addEventListener('state', () => {
    participants.setOwnState(signaling.state === 'joined');
    showState();
    if (signaling.state === 'closed') finish(signaling.closeReason);
  });
  viewer.addEventListener('mediastate', showState);
  viewer.addEventListener('remotestream', (event) => {
    const { stream } = /** @type {CustomEvent} */ (event).detail;
    video.srcObject = stream;
    recordings.show(stream, viewer.pc);
  });
  quality.addEventListener('sample', (event) => {
    const { sample, level } = /** @type {CustomEvent} */ (event).detail;
    renderQuality(byId('quality'), sample, level);
  });

  let finished = false;
  /** @param {string} reason */
  function finish(reason) {
    if (finished) return;
    finished = true;
    quality.stop();
    recordings.close().catch(() => {});
    viewer.close();
    guests.close();
    // Also when the call ends before the microphone came: it is released as it arrives.
    microphone.then((stream) => { for (const track of stream?.getTracks() ?? []) track.stop(); });
    byId('call-view').hidden = true;
    byId('call-ended').hidden = false;
    setText(byId('ended-reason'), ['ended', 'left'].includes(reason) ? `specialist.ended.${reason}` : 'specialist.ended.error');
  }

  // The join goes out first, ahead of the record and panels below (a token still to fetch goes
  // first in the browser's connection queue and at the server).
  signaling.start();

  // --- controls ----------------------------------------------------------------------------
  byId('request-snapshot').addEventListener('click', () => {
    const request = randomId('req-');
    snapshots.requested.add(request);
    tell(signaling.send({ type: 'snapshot_request', id: request }) ? 'specialist.snapshot.requested' : 'specialist.snapshot.notSent');
  });

  // --- shared freeze and telestration (protocol §6.11, §6.12) ------------------------------
  const freeze = byId('freeze');
  const frozen = /** @type {HTMLCanvasElement} */ (byId('freeze-canvas'));
  const badge = byId('frozen-badge');
  const sketch = new Sketch(/** @type {HTMLCanvasElement} */ (byId('telestration')), () => (sketch.still === null
    ? { element: video, width: video.videoWidth, height: video.videoHeight }
    : { element: frozen, width: frozen.width, height: frozen.height }));
  const sendMark = markSender(signaling, () => viewer.channel, () => participants.withRole('nurse')[0]?.id ?? null);
  const pen = new Pen(sketch, (mark) => {
    const sent = sendMark(mark);
    if (!sent && mark.type === 'annotation' && mark.op !== 'pointer') tell('telestration.notSent');
    if (mark.type === 'annotation' && mark.op !== 'pointer' && mark.still) saveStill(mark.still);
    return sent;
  }, randomId);
  const drawTools = byId('draw-tools');
  for (const button of drawTools.querySelectorAll('[data-draw-tool]')) {
    button.addEventListener('click', () => {
      pen.tool = /** @type {import('./telestration.js').Tool} */ (/** @type {HTMLElement} */ (button).dataset.drawTool);
      for (const other of drawTools.querySelectorAll('[data-draw-tool]')) other.setAttribute('aria-pressed', String(other === button));
    });
  }
  for (const swatch of drawTools.querySelectorAll('[data-color]')) {
    swatch.addEventListener('click', () => {
      pen.color = /** @type {string} */ (/** @type {HTMLElement} */ (swatch).dataset.color);
      for (const other of drawTools.querySelectorAll('[data-color]')) other.setAttribute('aria-pressed', String(other === swatch));
    });
  }
  byId('draw-undo').addEventListener('click', () => pen.undo());
  byId('draw-clear').addEventListener('click', () => pen.clear());

  freeze.addEventListener('click', () => {
    const on = sketch.still === null;
    if (on) {
      // Both screens freeze on the full-resolution still the camera takes for this request;
      // here the frame of the moment stands in until that still is stored.
      const still = randomId('req-');
      frozen.width = video.videoWidth;
      frozen.height = video.videoHeight;
      frozen.getContext('2d')?.drawImage(video, 0, 0);
      if (!signaling.send({ type: 'snapshot_request', id: still })) tell('specialist.snapshot.notSent');
      sendMark({ type: 'freeze', on: true, still, id: randomId('f-') });
      sketch.show(still);
    } else {
      sendMark({ type: 'freeze', on: false, id: randomId('f-') });
      sketch.show(null);
    }
    frozen.hidden = badge.hidden = !on;
    freeze.setAttribute('aria-pressed', String(on));
    setText(freeze, on ? 'specialist.unfreeze' : 'specialist.freeze');
  });

  /**
   * Frozen stills in the record, by request id, and what the record held before our strokes.
   * @type {Map<string, {snapshot: string, width: number, height: number, base: import('./annotate.js').Annotations}>}
   */
  const stills = new Map();
  /** @type {Map<string, ReturnType<typeof setTimeout>>} */
  const saveTimers = new Map();
  /**
   * A still that was frozen on is stored: show it (the full-resolution picture the nurse sees
   * too) and save the strokes drawn on it so far.
   * @param {string} request
   * @param {string} snapshot
   */
  async function stillStored(request, snapshot) {
    if (sketch.still !== request && sketch.of(request).length === 0) return;
    const { snapshots: list } = await getJson(`/api/consultations/${id}/snapshots`);
    const stored = list.find((/** @type {import('./snapshot-panel.js').Snapshot} */ s) => s.id === snapshot);
    const bitmap = await createImageBitmap(await getBlob(`/api/snapshots/${snapshot}`));
    stills.set(request, {
      snapshot, width: bitmap.width, height: bitmap.height, base: stored?.annotations ?? { items: [], reference: null, outline: null },
    });
    if (sketch.still === request) {
      frozen.width = bitmap.width;
      frozen.height = bitmap.height;
      frozen.getContext('2d')?.drawImage(bitmap, 0, 0);
      sketch.render();
    }
    bitmap.close();
    if (sketch.of(request).length) saveStill(request);
  }

  /** @param {string} request a still's request id: its strokes go to its record, once it is stored */
  function saveStill(request) {
    if (!stills.has(request)) return; // stillStored saves what was drawn before
    clearTimeout(saveTimers.get(request));
    saveTimers.set(request, setTimeout(async () => {
      const still = stills.get(request);
      if (!still) return;
      const items = [...still.base.items, ...annotationItems(sketch.of(request), still.width, still.height)];
      try {
        await putJson(`/api/snapshots/${still.snapshot}/annotations`, { ...still.base, items });
        tell('telestration.saved');
      } catch {
        tell('telestration.notSaved');
      }
    }, SAVE_STILL_MS));
  }

  const mute = byId('mute');
  mute.hidden = true; // until there is a microphone to mute
  microphone.then((stream) => { mute.hidden = !stream; });
  mute.addEventListener('click', async () => {
    const muted = mute.getAttribute('aria-pressed') !== 'true';
    mute.setAttribute('aria-pressed', String(muted));
    setText(mute, muted ? 'specialist.unmute' : 'specialist.mute');
    for (const track of (await microphone)?.getAudioTracks() ?? []) track.enabled = !muted;
  });

  byId('leave').addEventListener('click', () => signaling.leave());

  const end = byId('end');
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let confirmTimer;
  end.addEventListener('click', async () => {
    if (end.dataset.armed !== 'true') {
      end.dataset.armed = 'true';
      setText(end, 'specialist.end.confirm');
      confirmTimer = setTimeout(() => { end.dataset.armed = 'false'; setText(end, 'specialist.end'); }, CONFIRM_MS);
      return;
    }
    clearTimeout(confirmTimer);
    try {
      // The recording made here sends its last piece first: ending finishes it with what it has.
      await recordings.close().catch(() => {});
      // The server closes the room with `ended`, which finishes the call here too.
      await postJson(`/api/consultations/${id}/end`);
    } catch {
      tell('error.generic');
    }
  });

  // --- assessment --------------------------------------------------------------------------
  const form = /** @type {HTMLFormElement} */ (byId('assessment-form'));
  const assessment = new AssessmentEditor(form, byId('assessment-status'), id);
  // Until the saved assessment is read (after the picture, below): a save meanwhile would
  // carry no version and overwrite the draft, which the late read would then hide.
  lockAssessment(form, true);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    assessment.save();
  });
  byId('sign-assessment').addEventListener('click', () => assessment.sign());
  byId('use-measurement').addEventListener('click', () => {
    if (snapshots.measurement) applyMeasurement(form, snapshots.measurement);
  });

  // --- the record and the panels ------------------------------------------------------------
  // The video first: the record and the panels load once the camera's picture plays (or
  // after PANELS_LATEST_MS without it). Each of their requests is read, decrypted and audited
  // by the server, the timeline's thumbnails too; sent at the click they queued ahead of the
  // join and the camera's offer (`joined` came 45-100 ms later, measured on the wire).
  playingOrAfter(video, PANELS_LATEST_MS).then(() => {
    getJson(`/api/patients/${encodeURIComponent(consultation.patient)}`).then((patient) => {
      byId('patient-name').textContent = patient.name ?? patient.id;
      byId('patient-nid').textContent = patient.nationalId ?? '';
    }, () => {});
    assessment.load().catch(() => lockAssessment(form, false));
    showTimeline({
      patient: consultation.patient,
      consultation: id,
      list: byId('timeline-list'),
      empty: byId('timeline-empty'),
      onPick: (entry) => snapshots.compare(entry),
    }).catch(() => {});
    snapshots.refresh().catch(() => {});
    recordings.refresh().catch(() => {});
    guests.refresh().catch(() => {});
  });

  quality.start();
  showState();
}
