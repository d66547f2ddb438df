/**
 * Recording the call, for the specialist: start and stop (offered only when the patient has
 * consented to recording, as the nurse recorded it), and this consultation's recordings to
 * play back. The recording is made here, in the browser of the specialist who started it:
 * `MediaRecorder` on what the page shows and plays (the camera's video and sound) with the
 * specialist's own microphone mixed in, so the record is what the assessment was based on.
 * A piece goes to the server every second, which seals it on arrival; a reloaded page goes
 * on with a new part of the same recording. The camera sends nothing more for it, and where
 * the browser can (Chromium, the camera's VP8) the page stores the frames it received as they
 * came, encoding no video of its own (`recorderOptions`). A finished
 * recording streams back through the API (never cached), in ranges, so the player can seek.
 */

import { ApiError, getJson, postBlob, postJson } from './api.js';
import { byId, h } from './dom.js';
import { setText } from './i18n.js';

/** A piece every second: what a reload or a closed tab can lose at most. */
const PIECE_MS = 1000;
/** Tries of one piece before the recording here is given up (the server keeps what it has). */
const PIECE_TRIES = 5;
const MIME = 'video/webm;codecs=vp8,opus';
/** How long a part waits for the camera's first packets, to learn their codec. */
const CODEC_WAIT_MS = 3000;
/** This tab's recording in progress, found again after a reload (sessionStorage). */
const MINE = 'woundcare.recording';

/**
 * @typedef {{id: string, status: 'recording' | 'complete' | 'failed', startedAt: string,
 *   endedAt: string | null, endReason: string | null, frames: number}} Recording
 */

/**
 * One part of a recording: a `MediaRecorder` over one remote stream, its pieces sent in order.
 * Another remote stream (the camera's new connection) or a reload begins the next part.
 */
class Part {
  /**
   * @param {string} recording
   * @param {number} part
   * @param {MediaStream} stream what is recorded
   * @param {MediaRecorderOptions} options
   * @param {() => void} failed called once if a piece cannot be sent
   */
  constructor(recording, part, stream, options, failed) {
    this.path = `/api/recordings/${encodeURIComponent(recording)}/pieces?part=${part}&n=`;
    this.recorder = new MediaRecorder(stream, options);
    this.number = 0;
    /** @type {Promise<void>} */
    this.sent = Promise.resolve();
    this.recorder.addEventListener('dataavailable', ({ data }) => {
      const n = this.number++;
      this.sent = this.sent.then(() => this.#send(n, data)).catch(failed);
    });
    this.recorder.start(PIECE_MS);
  }

  /**
   * @param {number} n
   * @param {Blob} data
   */
  async #send(n, data) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await postBlob(this.path + n, data);
        return;
      } catch (failure) {
        if (attempt >= PIECE_TRIES || (failure instanceof ApiError && failure.status !== 0 && failure.status < 500)) throw failure;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /** Stops, and resolves once the last piece has been sent. */
  async stop() {
    if (this.recorder.state !== 'inactive') {
      const stopped = new Promise((resolve) => this.recorder.addEventListener('stop', resolve, { once: true }));
      this.recorder.stop();
      await stopped;
    }
    await this.sent;
  }
}

/**
 * The `MediaRecorder` options for the camera's video as `receiver` gets it. Chromium's
 * `MediaRecorder`, asked for no type, passes a remote track's encoded frames through into its
 * WebM instead of decoding and encoding them again (its "passthrough"): the record is then the
 * very frames the specialist's page decoded, and the page spends no encoder on it (measured:
 * four 720p recordings 0.86 cores of the renderer with VP8 asked for, 0.04 passed through;
 * `docs/recording.md`). Only for VP8, which the stored WebM holds, and only in Chromium: other
 * browsers, asked for no type, choose their own (Safari MP4). Otherwise VP8 is asked for and
 * encoded here, as it always was.
 * @param {RTCRtpReceiver | undefined} receiver
 * @returns {Promise<MediaRecorderOptions>}
 */
async function recorderOptions(receiver) {
  const chromium = /** @type {{userAgentData?: {brands: {brand: string}[]}}} */ (navigator).userAgentData?.brands
    .some(({ brand }) => brand === 'Chromium');
  if (!chromium || !receiver) return { mimeType: MIME };
  // The codec the packets come in (a new connection has none for a moment).
  for (const deadline = Date.now() + CODEC_WAIT_MS; Date.now() < deadline; ) {
    const report = await receiver.getStats();
    for (const stats of report.values()) {
      if (stats.type === 'inbound-rtp' && stats.codecId) {
        return report.get(stats.codecId)?.mimeType === 'video/VP8' ? {} : { mimeType: MIME };
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { mimeType: MIME };
}

/**
 * The recording this page makes: the camera's stream and the microphone, mixed, in parts.
 */
class PageRecording {
  /**
   * @param {string} id
   * @param {Promise<MediaStream | null>} microphone
   * @param {() => void} failed
   */
  constructor(id, microphone, failed) {
    this.id = id;
    this.microphone = microphone;
    this.failed = failed;
    this.audio = new AudioContext();
    this.mix = this.audio.createMediaStreamDestination();
    /** @type {Part | null} */
    this.part = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.remoteSound = null;
    // The specialist's voice in the same mix as the camera's sound.
    this.ready = microphone.then((stream) => {
      if (stream) this.audio.createMediaStreamSource(stream).connect(this.mix);
    });
    /** @type {Promise<void>} */
    this.turn = Promise.resolve();
  }

  /**
   * Record `stream` (the camera's, as the page shows it) from now on, as a new part.
   * @param {MediaStream} stream
   * @param {RTCPeerConnection | null} pc the connection it comes on
   */
  follow(stream, pc) {
    if (stream === this.stream) return this.turn;
    this.stream = stream;
    this.turn = this.turn.then(() => this.#begin(stream, pc)).catch(this.failed);
    return this.turn;
  }

  /**
   * @param {MediaStream} stream
   * @param {RTCPeerConnection | null} pc
   */
  async #begin(stream, pc) {
    // Not awaited: after a reload, before the specialist's first click, the browser keeps the
    // mix suspended (silent) and resume() pending; the video must not wait for that.
    this.audio.resume().catch(() => {});
    await this.ready;
    await this.part?.stop();
    this.remoteSound?.disconnect();
    this.remoteSound = stream.getAudioTracks().length ? this.audio.createMediaStreamSource(stream) : null;
    this.remoteSound?.connect(this.mix);
    const { part } = await postJson(`/api/recordings/${encodeURIComponent(this.id)}/parts`);
    const [video] = stream.getVideoTracks();
    const options = await recorderOptions(pc?.getReceivers().find((receiver) => receiver.track === video));
    const tracks = [...stream.getVideoTracks(), ...this.mix.stream.getAudioTracks()];
    this.part = new Part(this.id, part, new MediaStream(tracks), options, this.failed);
  }

  /** Stops; resolves once every piece has been sent. */
  async stop() {
    await this.turn;
    await this.part?.stop();
    await this.audio.close();
  }
}

export class RecordingPanel {
  /**
   * @param {string} consultation
   * @param {Promise<MediaStream | null>} microphone the specialist's own, mixed into the recording
   */
  constructor(consultation, microphone) {
    this.consultation = consultation;
    this.microphone = microphone;
    this.toggle = byId('recording-toggle');
    this.status = byId('recording-status');
    this.list = byId('recording-list');
    this.player = /** @type {HTMLVideoElement} */ (byId('recording-player'));
    /** @type {Recording | null} */
    this.live = null;
    /** @type {PageRecording | null} */
    this.making = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    this.toggle.addEventListener('click', () => this.#toggle());
  }

  /**
   * The camera's stream as the page shows it; a recording made here goes on with it.
   * @param {MediaStream} stream
   * @param {RTCPeerConnection | null} pc the connection it comes on
   */
  show(stream, pc) {
    this.stream = stream;
    this.pc = pc;
    this.making?.follow(stream, pc);
  }

  /** Consent and recordings again; goes on with this tab's recording after a reload. */
  async refresh() {
    const base = `/api/consultations/${encodeURIComponent(this.consultation)}`;
    const [{ consents }, { recordings }] = await Promise.all([getJson(`${base}/consents`), getJson(`${base}/recordings`)]);
    /** @type {Recording[]} */
    const all = recordings;
    this.live = all.find((r) => r.status === 'recording') ?? null;
    if (this.live && !this.making && sessionStorage.getItem(MINE) === this.live.id) this.#make(this.live.id);
    if (!this.live && this.making) this.#lost();
    this.toggle.hidden = !consents.recording && !this.live;
    this.toggle.setAttribute('aria-pressed', String(Boolean(this.live)));
    setText(this.toggle, this.live ? 'recording.stop' : 'recording.start');
    setText(this.status, this.live ? 'recording.live' : consents.recording ? 'recording.idle' : 'recording.noConsent');
    this.list.replaceChildren(...all.filter((r) => r.status !== 'recording').map((r) => this.#item(r)));
  }

  /** The page's recording ends with the call; the server finishes it with what it has. */
  async close() {
    const making = this.making;
    this.making = null;
    await making?.stop();
  }

  /** @param {string} id */
  #make(id) {
    sessionStorage.setItem(MINE, id);
    this.making = new PageRecording(id, this.microphone, () => this.#lost());
    if (this.stream) this.making.follow(this.stream, this.pc);
  }

  /** Sending failed, or the recording was ended elsewhere: this page records no more. */
  #lost() {
    const making = this.making;
    this.making = null;
    sessionStorage.removeItem(MINE);
    making?.stop().catch(() => {});
    this.refresh().catch(() => {});
  }

  async #toggle() {
    this.toggle.setAttribute('disabled', '');
    try {
      if (this.live) {
        const making = this.making;
        this.making = null;
        sessionStorage.removeItem(MINE);
        await making?.stop().catch(() => {});
        await postJson(`/api/recordings/${encodeURIComponent(this.live.id)}/stop`);
      } else {
        const started = await postJson(`/api/consultations/${encodeURIComponent(this.consultation)}/recordings`);
        this.#make(started.id);
      }
    } catch (failure) {
      const code = failure instanceof ApiError ? failure.code : '';
      setText(this.status, code === 'no_consent' ? 'recording.noConsent' : 'error.generic');
    } finally {
      this.toggle.removeAttribute('disabled');
    }
    await this.refresh().catch(() => {});
  }

  /** @param {Recording} recording */
  #item(recording) {
    const when = new Date(recording.startedAt).toLocaleTimeString();
    if (recording.status !== 'complete') {
      const failed = h('li', { class: 'recording-failed' });
      setText(failed, 'recording.failed', { time: when });
      return failed;
    }
    const play = h('button', { type: 'button' });
    setText(play, 'recording.play', { time: when });
    play.addEventListener('click', () => {
      this.player.hidden = false;
      this.player.src = `/api/recordings/${encodeURIComponent(recording.id)}`;
      this.player.play().catch(() => {});
    });
    return h('li', {}, play);
  }
}
