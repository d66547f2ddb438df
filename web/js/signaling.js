/**
 * The /ws signaling socket (docs/protocol.md): join with a fresh join token, keep the latest
 * resume token, and when the socket drops, reconnect with backoff and resume the same
 * participant. Frames arrive as events named by their `type`; `state` events tell the page
 * whether it is connecting, joined, reconnecting or closed. A page that comes back into a call
 * (after a reload) starts with the resume token it kept.
 */

/** Close codes after which retrying with the same credentials cannot help (protocol §9). */
const FINAL_CLOSE_CODES = new Set([1000, 4001, 4003, 4008, 4009]);
const MAX_BACKOFF_MS = 8000;
/**
 * How long a spare socket is offered to a join. The server closes a socket that has not joined
 * within its join timeout (10 s by default, protocol §4); the rest is left for the join token.
 */
const SPARE_MS = 6000;

/** @param {string} path on this page's server @returns {string} its WebSocket URL */
function socketUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

/**
 * A /ws socket opened before the user asks to join (on the specialist's queue), so that the
 * click costs the `join` round trip only, not the socket's set-up as well. Not joined, it holds
 * nothing on the server but a socket; it is closed here after SPARE_MS unused (not left to run
 * into the server's join timeout), and opened again the next time it is wanted.
 */
export class SpareSocket {
  /** @type {WebSocket | null} */
  #ws = null;
  #openedAt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;

  /** Have one open or opening, unless the one there is still young. */
  warm() {
    if (this.#ws && Date.now() - this.#openedAt < SPARE_MS / 2) return;
    this.#drop()?.close(1000);
    const ws = new WebSocket(socketUrl('/ws'));
    this.#ws = ws;
    this.#openedAt = Date.now();
    this.#timer = setTimeout(() => this.#drop()?.close(1000), SPARE_MS);
    ws.addEventListener('close', () => { if (ws === this.#ws) this.#drop(); });
  }

  /** @returns {WebSocket | null} the spare socket, handed over for a join; null if there is none usable */
  take() {
    const ws = this.#drop();
    if (ws && (Date.now() - this.#openedAt >= SPARE_MS || ws.readyState > WebSocket.OPEN)) {
      ws.close(1000);
      return null;
    }
    return ws;
  }

  /** @returns {WebSocket | null} the socket held, no longer held */
  #drop() {
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    return ws;
  }
}

/**
 * @typedef {'idle' | 'connecting' | 'joined' | 'reconnecting' | 'closed'} SignalingState
 * @typedef {{id: string, role: string, name: string, state: string}} Participant
 */

export class Signaling extends EventTarget {
  /** @type {SignalingState} */
  state = 'idle';
  /** Why the socket closed for good: an error code from the server, or `left`. */
  closeReason = '';
  /** @type {WebSocket | null} */
  #ws = null;
  /** @type {string | null} */
  #resumeToken = null;
  #graceMs = 60_000;
  /** When the socket was lost; the grace window is counted from about then. */
  #lostAt = 0;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  #leaving = false;
  /** A fatal error frame came before the close; its code decides whether to retry. */
  #fatal = '';
  /** When a nurse join was first refused with `role_taken`; 0 when it was not. */
  #placeHeldSince = 0;

  /** A socket opened ahead (SpareSocket), for the first join only. @type {WebSocket | null} */
  #spare;

  /**
   * @param {{
   *   consultation: string, role: string, joinToken: () => Promise<string>, resumeToken?: string | null,
   *   socket?: WebSocket | null,
   * }} options
   *   joinToken: a signaling token (POST /api/consultations/{id}/join-token), asked for at every join;
   *   resumeToken: the one an earlier page of this call kept, to come back as the same participant;
   *   socket: a /ws socket opened ahead and not joined (SpareSocket.take()), for the first join
   */
  constructor({ consultation, role, joinToken, resumeToken = null, socket = null }) {
    super();
    this.consultation = consultation;
    this.role = role;
    this.joinToken = joinToken;
    this.#resumeToken = resumeToken;
    this.#spare = socket;
    this.url = socketUrl('/ws');
    // A lost network leaves the socket looking open until the server's ping times out (~30 s);
    // drop it at once, so the page says "reconnecting" honestly and resumes when the network is back.
    window.addEventListener('offline', () => this.#lose());
    window.addEventListener('online', () => {
      if (this.state === 'reconnecting') this.#retryNow();
    });
  }

  start() {
    this.#connect();
  }

  /**
   * Send a frame if the socket is joined. Frames are not queued while reconnecting: the
   * protocol has no delivery guarantee anyway, and callers renegotiate after a resume.
   * @param {Record<string, unknown>} frame
   * @returns {boolean} whether it was sent
   */
  send(frame) {
    if (this.state !== 'joined' || this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  /** Leave the room for good (closing the socket alone would only count as a drop). */
  leave() {
    this.#leaving = true;
    clearTimeout(this.#retryTimer);
    if (!this.send({ type: 'leave' })) this.#ws?.close(1000);
    this.#finish('left');
  }

  /**
   * The socket opens while the join token is fetched: neither waits for the other (one after the
   * other they cost a join 30-40 ms more on the bench machine).
   */
  async #connect() {
    if (this.state === 'idle') this.#setState('connecting');
    const ws = this.#spare ?? new WebSocket(this.url);
    this.#spare = null;
    this.#ws = ws;
    let joinSent = false;
    ws.addEventListener('message', (event) => {
      if (ws === this.#ws) this.#receive(ws, JSON.parse(event.data));
    });
    ws.addEventListener('close', (event) => {
      if (ws === this.#ws) this.#closed(event.code, joinSent);
    });
    /** @type {Record<string, string>} */
    let credential;
    if (this.#resumeToken) {
      credential = { resume: this.#resumeToken };
    } else {
      try {
        credential = { token: await this.joinToken() };
      } catch (error) {
        if (ws !== this.#ws) return;
        this.#ws = null;
        ws.close(1000);
        if (/** @type {{status?: number}} */ (error).status === 409) return this.#finish('ended');
        return this.#scheduleRetry();
      }
    }
    if (this.#leaving || ws !== this.#ws) return;
    const join = () => {
      joinSent = true;
      ws.send(JSON.stringify({ type: 'join', v: 1, consultation: this.consultation, role: this.role, ...credential }));
    };
    if (ws.readyState === WebSocket.OPEN) join();
    else ws.addEventListener('open', join, { once: true });
  }

  /**
   * @param {WebSocket} ws
   * @param {{type: string, [key: string]: any}} frame
   */
  async #receive(ws, frame) {
    if (frame.type === 'joined') {
      this.#resumeToken = frame.resumeToken;
      this.#graceMs = frame.graceSeconds * 1000;
      this.#attempt = 0;
      this.#lostAt = 0;
      this.#placeHeldSince = 0;
      this.#setState('joined');
    } else if (frame.type === 'error') {
      if (frame.code === 'resume_invalid') {
        // The place is gone (grace window over, server restarted): join again as a new participant
        // on this same socket, which the server keeps open for exactly that.
        this.#resumeToken = null;
        try {
          const token = await this.joinToken();
          ws.send(JSON.stringify({ type: 'join', v: 1, consultation: this.consultation, role: this.role, token }));
        } catch {
          ws.close();
        }
        return;
      }
      if (!('ref' in frame)) this.#fatal = frame.code;
    }
    this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
  }

  /**
   * @param {number} code
   * @param {boolean} joinSent whether our join went out on it: a close before it refuses nothing
   *   of ours (a socket that never opened, a spare one past the server's join timeout) and is retried
   */
  #closed(code, joinSent) {
    this.#ws = null;
    if (this.#leaving) return;
    if (!joinSent) {
      this.#fatal = '';
      this.#lose();
      return;
    }
    if (this.#fatal === 'role_taken' && this.#placeHeld()) {
      // Our own earlier place (a closed tab's) is held for its grace window: join once it is free.
      this.#fatal = '';
      this.#lose();
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.#finish(this.#fatal || 'closed');
      return;
    }
    this.#fatal = '';
    this.#lose();
  }

  /**
   * A nurse coming back without her resume token is refused while her old participant waits
   * out its grace window (protocol §11, step 6); whether that window may still be running.
   */
  #placeHeld() {
    if (this.role !== 'nurse') return false;
    if (!this.#placeHeldSince) this.#placeHeldSince = Date.now();
    return Date.now() - this.#placeHeldSince < this.#graceMs + MAX_BACKOFF_MS;
  }

  /** The socket is gone without a leave: keep our place by resuming, within the grace window. */
  #lose() {
    if (this.#leaving || this.state === 'closed' || this.state === 'idle') return;
    const ws = this.#ws;
    this.#ws = null;
    ws?.close();
    if (!this.#lostAt) this.#lostAt = Date.now();
    if (this.#resumeToken && Date.now() - this.#lostAt > this.#graceMs) this.#resumeToken = null;
    this.#setState('reconnecting');
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    clearTimeout(this.#retryTimer);
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.#attempt) * (0.75 + Math.random() / 2);
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    clearTimeout(this.#retryTimer);
    this.#attempt = 0;
    if (!this.#ws) this.#connect();
  }

  /** @param {string} reason */
  #finish(reason) {
    clearTimeout(this.#retryTimer);
    this.closeReason = reason;
    this.#setState('closed');
  }

  /** @param {SignalingState} state */
  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }
}
