/**
 * The specialist's call: the camera's video large, talking back, snapshot requests, a frozen
 * frame, annotation and measurement (snapshot-panel.js), the patient's earlier snapshots, the
 * structured assessment, and ending the consultation.
 */

import { ApiError, getJson, postJson, putJson } from './api.js';
import { applyMeasurement, fillAssessment, lockAssessment, readAssessment } from './assessment.js';
import { renderConnection, renderQuality } from './call-status.js';
import { Chat } from './chat.js';
import { byId, randomId } from './dom.js';
import { IceConfig } from './ice.js';
import { setText } from './i18n.js';
import { ViewerPeer } from './peer.js';
import { Participants } from './presence.js';
import { QualityMonitor } from './quality.js';
import { RecordingPanel } from './recordings.js';
import { Signaling } from './signaling.js';
import { SnapshotPanel } from './snapshot-panel.js';
import { showTimeline } from './timeline.js';

const CONFIRM_MS = 4000;
const NOTICE_MS = 6000;
/** Fetched as the page loads and kept fresh, so that joining never waits for it. */
const ice = new IceConfig();

/** @param {import('./specialist.js').Consultation} consultation */
export async function runSpecialistCall(consultation) {
  const id = consultation.id;
  byId('call-view').hidden = false;
  const status = byId('status');
  const notice = byId('notice');
  const video = /** @type {HTMLVideoElement} */ (byId('remote-video'));

  const patient = await getJson(`/api/patients/${encodeURIComponent(consultation.patient)}`);
  byId('patient-name').textContent = patient.name ?? patient.id;
  byId('patient-nid').textContent = patient.nationalId ?? '';

  // Listening works without a microphone; talking back needs one.
  const microphone = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } }).catch(() => null);
  const signaling = new Signaling({
    consultation: id,
    role: 'specialist',
    joinToken: async () => (await postJson(`/api/consultations/${id}/join-token`)).token,
  });
  const viewer = new ViewerPeer(signaling, microphone, ice);
  const participants = new Participants(/** @type {HTMLUListElement} */ (byId('participants')));
  new Chat(/** @type {HTMLFormElement} */ (byId('chat-form')), /** @type {HTMLOListElement} */ (byId('chat-log')),
    signaling, (from) => participants.nameOf(from));
  const quality = new QualityMonitor({ consultation: id, direction: 'receive', connections: () => (viewer.pc ? [viewer.pc] : []) });
  const snapshots = new SnapshotPanel(id);
  const recordings = new RecordingPanel(id);

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let noticeTimer;
  /** @param {string} key */
  const tell = (key) => {
    setText(notice, key);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.textContent = ''; delete notice.dataset.i18n; }, NOTICE_MS);
  };
  const showState = () => renderConnection(status, signaling.state, viewer.connected());

  signaling.addEventListener('joined', (event) => participants.reset(/** @type {CustomEvent} */ (event).detail));
  signaling.addEventListener('presence', (event) => {
    const frame = /** @type {CustomEvent} */ (event).detail;
    participants.update(frame);
    if (frame.state === 'left') viewer.closeIfCamera(frame.participant.id);
    if (frame.participant.role === 'recorder') recordings.refresh().catch(() => {});
  });
  signaling.addEventListener('offer', (event) => viewer.offer(/** @type {CustomEvent} */ (event).detail));
  signaling.addEventListener('candidate', (event) => viewer.candidate(/** @type {CustomEvent} */ (event).detail));
  const videoMode = /** @type {HTMLSelectElement} */ (byId('video-mode'));
  const videoProfile = byId('video-profile');
  signaling.addEventListener('video_profile', (event) => {
    const { mode, active, reason } = /** @type {CustomEvent} */ (event).detail;
    videoMode.value = mode;
    setText(videoProfile, `specialist.video.active.${active}`, { reason: reason ?? '' });
  });
  videoMode.addEventListener('change', () => {
    const camera = participants.withRole('nurse')[0];
    if (!camera || !signaling.send({ type: 'video_profile', to: camera.id, mode: videoMode.value })) tell('specialist.video.notSent');
  });
  signaling.addEventListener('snapshot_stored', (event) => {
    tell('specialist.snapshot.stored');
    snapshots.refresh(/** @type {CustomEvent} */ (event).detail.request ?? null);
  });
  signaling.addEventListener('state', () => {
    participants.setOwnState(signaling.state === 'joined');
    showState();
    if (signaling.state === 'closed') finish(signaling.closeReason);
  });
  viewer.addEventListener('mediastate', showState);
  viewer.addEventListener('remotestream', (event) => { video.srcObject = /** @type {CustomEvent} */ (event).detail.stream; });
  quality.addEventListener('sample', (event) => {
    const { sample, level } = /** @type {CustomEvent} */ (event).detail;
    renderQuality(byId('quality'), sample, level);
  });

  // --- controls ----------------------------------------------------------------------------
  byId('request-snapshot').addEventListener('click', () => {
    const request = randomId('req-');
    snapshots.requested.add(request);
    tell(signaling.send({ type: 'snapshot_request', id: request }) ? 'specialist.snapshot.requested' : 'specialist.snapshot.notSent');
  });

  const freeze = byId('freeze');
  const frozen = /** @type {HTMLCanvasElement} */ (byId('freeze-canvas'));
  freeze.addEventListener('click', () => {
    const on = freeze.getAttribute('aria-pressed') !== 'true';
    if (on) {
      // A still of what the video shows now, to look at closely while the live picture moves on.
      frozen.width = video.videoWidth;
      frozen.height = video.videoHeight;
      frozen.getContext('2d')?.drawImage(video, 0, 0);
    }
    frozen.hidden = !on;
    freeze.setAttribute('aria-pressed', String(on));
    setText(freeze, on ? 'specialist.unfreeze' : 'specialist.freeze');
  });

  const mute = byId('mute');
  mute.hidden = !microphone;
  mute.addEventListener('click', () => {
    const muted = mute.getAttribute('aria-pressed') !== 'true';
    for (const track of microphone?.getAudioTracks() ?? []) track.enabled = !muted;
    mute.setAttribute('aria-pressed', String(muted));
    setText(mute, muted ? 'specialist.unmute' : 'specialist.mute');
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
      // The server closes the room with `ended`, which finishes the call here too.
      await postJson(`/api/consultations/${id}/end`);
    } catch {
      tell('error.generic');
    }
  });

  // --- assessment --------------------------------------------------------------------------
  const form = /** @type {HTMLFormElement} */ (byId('assessment-form'));
  const assessmentStatus = byId('assessment-status');
  /** @param {Record<string, any>} saved */
  const showSaved = (saved) => {
    if (saved.signedAt) {
      lockAssessment(form, true);
      setText(assessmentStatus, 'assessment.signed', { time: new Date(saved.signedAt).toLocaleTimeString() });
    } else {
      setText(assessmentStatus, 'assessment.saved', { time: new Date(saved.updatedAt).toLocaleTimeString() });
    }
  };
  getJson(`/api/consultations/${id}/assessment`).then((saved) => { fillAssessment(form, saved); showSaved(saved); }, () => {});
  const save = async () => {
    const saved = await putJson(`/api/consultations/${id}/assessment`, readAssessment(form));
    showSaved(saved);
    return saved;
  };
  /** @param {unknown} failure */
  const explain = (failure) => setText(assessmentStatus,
    failure instanceof ApiError && failure.code === 'bad_assessment' ? 'assessment.error.invalid' : 'error.generic');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    save().catch(explain);
  });
  byId('sign-assessment').addEventListener('click', async () => {
    if (!new FormData(form).get('outcome')) {
      setText(assessmentStatus, 'assessment.error.outcome');
      return;
    }
    try {
      await save();
      showSaved(await postJson(`/api/consultations/${id}/assessment/sign`));
    } catch (failure) {
      explain(failure);
    }
  });
  byId('use-measurement').addEventListener('click', () => {
    if (snapshots.measurement) applyMeasurement(form, snapshots.measurement);
  });

  // --- earlier snapshots -------------------------------------------------------------------
  showTimeline({
    patient: consultation.patient,
    consultation: id,
    list: byId('timeline-list'),
    empty: byId('timeline-empty'),
    onPick: (entry) => snapshots.compare(entry),
  }).catch(() => {});
  snapshots.refresh().catch(() => {});
  recordings.refresh().catch(() => {});

  let finished = false;
  /** @param {string} reason */
  function finish(reason) {
    if (finished) return;
    finished = true;
    quality.stop();
    viewer.close();
    for (const track of microphone?.getTracks() ?? []) track.stop();
    byId('call-view').hidden = true;
    byId('call-ended').hidden = false;
    setText(byId('ended-reason'), ['ended', 'left'].includes(reason) ? `specialist.ended.${reason}` : 'specialist.ended.error');
  }

  signaling.start();
  quality.start();
  showState();
}
