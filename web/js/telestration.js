/**
 * Telestration (docs/protocol.md §6.11, §6.12; issue 17): the specialist draws free strokes,
 * arrows, circles and a pointer over the camera's picture, live or frozen, and the nurse sees
 * them on her own screen. Points are normalized to the video frame (0 to 1 from its top left),
 * so a mark lands on the same spot of the wound on both screens whatever their size: each side
 * maps them to the box its element shows the frame in (object-fit letterboxing or cropping).
 *
 * Marks travel twice (§6.11 "Two paths"): over the "telestration" data channel when it is
 * open, and as signaling frames always (a pointer: one or the other). Receivers apply the
 * first copy and drop the second by its `id`.
 *
 * The overlay canvas fires `painted` ({ids}: the strokes it has just drawn) after each frame it
 * draws, for whoever measures how long a mark takes to appear (bench/annotation_latency.py).
 */

/** Colours visible on skin and dressings, each drawn with a dark outline (protocol §6.11). */
export const PALETTE = Object.freeze({ cyan: '#00E5FF', yellow: '#FFEB3B', green: '#76FF03', magenta: '#FF00FF' });
const COLOURS = new Set(Object.values(PALETTE));
const SHAPES = new Set(['free', 'arrow', 'circle']);
const OPS = new Set(['stroke', 'pointer', 'undo', 'clear']);
const MARK_ID = /^[A-Za-z0-9_-]{1,40}$/;
/** A snapshot request id (protocol's id pattern). */
const STILL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const POINTER_MS = 2000;
const MAX_POINTS = 512;
/** At most this many pointer moves a second: well inside the server's frame rate limit. */
const POINTER_EVERY_MS = 50;
const LINE_PX = 4;
const OUTLINE_PX = 2;
/** Message ids remembered for de-duplication; the second copy comes within seconds. */
const SEEN_LIMIT = 1000;
/** How many of the nurse's captured stills are kept for a freeze that may name them. */
const CAPTURES_KEPT = 4;

/**
 * @typedef {[number, number]} Point
 * @typedef {'free' | 'arrow' | 'circle'} Shape
 * @typedef {Shape | 'pointer'} Tool
 * @typedef {{type: 'annotation', op: 'stroke' | 'pointer' | 'undo' | 'clear', id?: string, shape?: Shape,
 *   points?: Point[], color?: string, still?: string | null}} AnnotationMark
 * @typedef {{type: 'freeze', on: boolean, id: string, still?: string | null}} FreezeMark
 * @typedef {AnnotationMark | FreezeMark} Mark
 * @typedef {{id: string, shape: Shape, points: Point[], color: string, still: string | null, from: string}} Stroke
 * @typedef {{x: number, y: number, width: number, height: number}} Box
 * @typedef {{element: HTMLElement, width: number, height: number}} Media what the marks are drawn
 *   on: the element showing the picture, and the picture's own size
 */

/**
 * Where an element shows its media's frame, in the element's CSS pixels: object-fit `contain`
 * letterboxes it, `cover` crops it, `fill` stretches it (centred, the default object-position).
 * @param {HTMLElement} element
 * @param {number} mediaWidth
 * @param {number} mediaHeight
 * @returns {Box}
 */
export function contentBox(element, mediaWidth, mediaHeight) {
  const width = element.clientWidth;
  const height = element.clientHeight;
  const fit = getComputedStyle(element).objectFit;
  if (!mediaWidth || !mediaHeight || fit === 'fill') return { x: 0, y: 0, width, height };
  const scale = (fit === 'cover' ? Math.max : Math.min)(width / mediaWidth, height / mediaHeight);
  const w = mediaWidth * scale;
  const h = mediaHeight * scale;
  return { x: (width - w) / 2, y: (height - h) / 2, width: w, height: h };
}

/**
 * A mark from a data channel, which the server has not checked: the same rules as protocol §6.11.
 * @param {any} mark
 * @returns {mark is Mark}
 */
export function validMark(mark) {
  if (typeof mark !== 'object' || mark === null) return false;
  // Not MARK_ID.test(mark.id) alone: a missing id would be tested as the string "undefined".
  const id = typeof mark.id === 'string' && MARK_ID.test(mark.id);
  const still = mark.still === undefined || mark.still === null || (typeof mark.still === 'string' && STILL_ID.test(mark.still));
  if (mark.type === 'freeze') return typeof mark.on === 'boolean' && id && still;
  if (mark.type !== 'annotation' || !OPS.has(mark.op) || !still) return false;
  if (mark.op !== 'pointer' && !id) return false;
  if (mark.op === 'stroke' && !(SHAPES.has(mark.shape) && COLOURS.has(mark.color))) return false;
  if (mark.op !== 'stroke' && mark.op !== 'pointer') return true;
  const most = mark.op === 'pointer' ? 1 : MAX_POINTS;
  return Array.isArray(mark.points) && mark.points.length >= 1 && mark.points.length <= most
    && mark.points.every((/** @type {unknown} */ p) => Array.isArray(p) && p.length === 2
      && p.every((v) => typeof v === 'number' && v >= 0 && v <= 1));
}

/**
 * The path of one stroke in canvas pixels.
 * @param {CanvasRenderingContext2D} ctx
 * @param {Shape} shape
 * @param {Point[]} points already mapped to the canvas
 * @param {number} scale device pixels per CSS pixel
 */
function trace(ctx, shape, points, scale) {
  ctx.beginPath();
  const [start] = points;
  const end = points[points.length - 1];
  if (shape === 'circle') {
    ctx.ellipse((start[0] + end[0]) / 2, (start[1] + end[1]) / 2,
      Math.abs(end[0] - start[0]) / 2, Math.abs(end[1] - start[1]) / 2, 0, 0, 2 * Math.PI);
  } else if (shape === 'arrow') {
    ctx.moveTo(...start);
    ctx.lineTo(...end);
    const angle = Math.atan2(end[1] - start[1], end[0] - start[0]);
    const head = 16 * scale;
    for (const side of [-0.45, 0.45]) {
      ctx.moveTo(...end);
      ctx.lineTo(end[0] - head * Math.cos(angle + side), end[1] - head * Math.sin(angle + side));
    }
  } else {
    ctx.moveTo(...start);
    // One point is a dot: a zero-length line with round caps.
    for (const point of points.length > 1 ? points.slice(1) : [start]) ctx.lineTo(...point);
  }
}

/**
 * The strokes of one screen and their drawing on an overlay canvas that covers the element
 * showing the picture. Strokes belong to the live video (`still` null) or to one frozen still;
 * the sketch shows those of `still`.
 */
export class Sketch {
  /** @type {Stroke[]} */
  strokes = [];
  /** @type {string | null} whose strokes are shown: a still's request id, or null for live video */
  still = null;
  /** The stroke being drawn here, not yet sent. @type {Stroke | null} */
  draft = null;
  /** @type {Set<string>} */
  #seen = new Set();
  /** @type {{at: Point, still: string | null, until: number} | null} */
  #pointer = null;
  #frame = 0;

  /**
   * @param {HTMLCanvasElement} canvas the overlay
   * @param {() => Media} media what the marks are on now
   */
  constructor(canvas, media) {
    this.canvas = canvas;
    this.media = media;
    new ResizeObserver(() => this.render()).observe(canvas);
  }

  /**
   * Whether this message id is new; remembers it. The second copy of a message is not.
   * @param {string | undefined} id
   */
  first(id) {
    if (id === undefined) return true;
    if (this.#seen.has(id)) return false;
    this.#seen.add(id);
    if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.values().next().value ?? '');
    return true;
  }

  /**
   * Apply a mark; false for a copy already applied.
   * @param {AnnotationMark} mark
   * @param {string} from who drew it (undo removes that sender's last stroke)
   */
  apply(mark, from) {
    if (!this.first(mark.id)) return false;
    const still = mark.still ?? null;
    if (mark.op === 'stroke' && mark.points && mark.shape && mark.color) {
      this.strokes.push({ id: mark.id ?? '', shape: mark.shape, points: mark.points, color: mark.color, still, from });
    } else if (mark.op === 'pointer' && mark.points) {
      this.#pointer = { at: mark.points[0], still, until: performance.now() + POINTER_MS };
    } else if (mark.op === 'undo') {
      for (let i = this.strokes.length - 1; i >= 0; i -= 1) {
        if (this.strokes[i].from === from && this.strokes[i].still === still) {
          this.strokes.splice(i, 1);
          break;
        }
      }
    } else if (mark.op === 'clear') {
      this.strokes = this.strokes.filter((s) => s.still !== still);
    }
    this.render();
    return true;
  }

  /** @param {string | null} still */
  show(still) {
    this.still = still;
    this.render();
  }

  /** @param {string | null} still @returns {Stroke[]} */
  of(still) {
    return this.strokes.filter((s) => s.still === still);
  }

  /**
   * From a pointer position to the picture's normalized coordinates (clamped to it).
   * @param {number} clientX @param {number} clientY
   * @returns {Point}
   */
  normalize(clientX, clientY) {
    const { element, width, height } = this.media();
    const box = contentBox(element, width, height);
    const rect = element.getBoundingClientRect();
    const clamp = (/** @type {number} */ v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    return [clamp((clientX - rect.left - box.x) / box.width), clamp((clientY - rect.top - box.y) / box.height)];
  }

  /** Draw at the next animation frame (once, however many changes came before it). */
  render() {
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#draw());
  }

  #draw() {
    this.#frame = 0;
    const canvas = this.canvas;
    const scale = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * scale);
    const height = Math.round(canvas.clientHeight * scale);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.clearRect(0, 0, width, height);
    const { element, width: w, height: h } = this.media();
    const box = contentBox(element, w, h);
    /** @param {Point} p @returns {Point} */
    const map = ([x, y]) => [(box.x + x * box.width) * scale, (box.y + y * box.height) * scale];
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    const shown = this.of(this.still);
    for (const stroke of this.draft ? [...shown, this.draft] : shown) {
      trace(ctx, stroke.shape, stroke.points.map(map), scale);
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.85)';
      ctx.lineWidth = (LINE_PX + 2 * OUTLINE_PX) * scale;
      ctx.stroke();
      ctx.strokeStyle = stroke.color;
      ctx.lineWidth = LINE_PX * scale;
      ctx.stroke();
    }
    const pointer = this.#pointer;
    const left = pointer ? pointer.until - performance.now() : 0;
    if (pointer && left > 0 && pointer.still === this.still) {
      // Fades out over its two seconds.
      const [x, y] = map(pointer.at);
      ctx.globalAlpha = Math.min(1, left / (POINTER_MS / 2));
      ctx.beginPath();
      ctx.arc(x, y, 10 * scale, 0, 2 * Math.PI);
      ctx.fillStyle = PALETTE.magenta;
      ctx.fill();
      ctx.lineWidth = OUTLINE_PX * scale;
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.85)';
      ctx.stroke();
      ctx.globalAlpha = 1;
      this.render();
    } else if (pointer && left <= 0) {
      this.#pointer = null;
    }
    canvas.dispatchEvent(new CustomEvent('painted', { detail: { ids: shown.map((s) => s.id) } }));
  }
}

/**
 * How the specialist's page sends a mark (protocol §6.11 "Two paths"): over the channel when it
 * is open, and as a signaling frame always; a pointer as a frame only when the channel is not open.
 * @param {import('./signaling.js').Signaling} signaling
 * @param {() => RTCDataChannel | null} channel
 * @param {() => string | null} nurse the nurse's participant id, if she is here
 * @returns {(mark: Mark) => boolean} whether it went out either way
 */
export function markSender(signaling, channel, nurse) {
  return (mark) => {
    const open = channel();
    let sent = false;
    if (open?.readyState === 'open') {
      open.send(JSON.stringify(mark));
      sent = true;
    }
    const to = nurse();
    if (to && !(sent && mark.type === 'annotation' && mark.op === 'pointer')) sent = signaling.send({ ...mark, to }) || sent;
    return sent;
  };
}

/**
 * The specialist's pen: pointer input on the overlay becomes strokes (sent at pointer-up) or
 * pointer marks (while pressed), drawn here at once and sent with `send`.
 */
export class Pen {
  /** @type {Tool} */
  tool = 'free';
  /** @type {string} */
  color = PALETTE.cyan;
  #lastPointer = 0;

  /**
   * @param {Sketch} sketch
   * @param {(mark: Mark) => boolean} send
   * @param {(prefix: string) => string} newId
   */
  constructor(sketch, send, newId) {
    this.sketch = sketch;
    this.send = send;
    this.newId = newId;
    const canvas = sketch.canvas;
    canvas.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      canvas.setPointerCapture(event.pointerId);
      const at = sketch.normalize(event.clientX, event.clientY);
      if (this.tool === 'pointer') this.#point(at, true);
      else sketch.draft = { id: '', shape: this.tool, points: [at], color: this.color, still: sketch.still, from: '' };
    });
    canvas.addEventListener('pointermove', (event) => {
      const draft = sketch.draft;
      const at = sketch.normalize(event.clientX, event.clientY);
      if (this.tool === 'pointer' && canvas.hasPointerCapture(event.pointerId)) this.#point(at, false);
      if (!draft) return;
      if (draft.shape === 'free') draft.points.push(at);
      else draft.points[1] = at;
      sketch.render();
    });
    canvas.addEventListener('pointerup', () => this.#finish());
    canvas.addEventListener('pointercancel', () => { sketch.draft = null; sketch.render(); });
  }

  /** Remove this page's last stroke on the picture shown, here and on the nurse's screen. */
  undo() {
    this.#mark({ type: 'annotation', op: 'undo', id: this.newId('u-'), still: this.sketch.still });
  }

  /** Remove every stroke on the picture shown. */
  clear() {
    this.#mark({ type: 'annotation', op: 'clear', id: this.newId('c-'), still: this.sketch.still });
  }

  /** @param {Point} at @param {boolean} now */
  #point(at, now) {
    if (!now && performance.now() - this.#lastPointer < POINTER_EVERY_MS) return;
    this.#lastPointer = performance.now();
    this.#mark({ type: 'annotation', op: 'pointer', points: [at], still: this.sketch.still });
  }

  #finish() {
    const draft = this.sketch.draft;
    this.sketch.draft = null;
    if (!draft) return;
    let points = draft.points;
    if (draft.shape !== 'free') points = [points[0], points[points.length - 1]];
    else if (points.length > MAX_POINTS) points = points.filter((_, i) => i % Math.ceil(points.length / MAX_POINTS) === 0);
    const moved = points.some(([x, y]) => x !== points[0][0] || y !== points[0][1]);
    if (draft.shape !== 'free' && !moved) {
      this.sketch.render();
      return;
    }
    this.#mark({ type: 'annotation', op: 'stroke', id: this.newId('s-'), shape: draft.shape, points, color: draft.color, still: draft.still });
  }

  /** @param {AnnotationMark} mark */
  #mark(mark) {
    this.sketch.apply(mark, '');
    this.send(mark);
  }
}

/**
 * A still's strokes as the snapshot annotations the record keeps (woundcare/records/measurement.py):
 * image pixels; an arrow as an arrow, a free stroke and a circle as outlines.
 * @param {Stroke[]} strokes
 * @param {number} width the stored still's size
 * @param {number} height
 * @returns {import('./annotate.js').Item[]}
 */
export function annotationItems(strokes, width, height) {
  /** @param {Point} p @returns {Point} */
  const px = ([x, y]) => [Math.round(x * width * 10) / 10, Math.round(y * height * 10) / 10];
  /** @type {import('./annotate.js').Item[]} */
  const items = [];
  for (const stroke of strokes) {
    const points = stroke.points.map(px);
    const [start] = points;
    const end = points[points.length - 1];
    if (stroke.shape === 'arrow') {
      if (start[0] !== end[0] || start[1] !== end[1]) items.push({ kind: 'arrow', start, end });
    } else if (stroke.shape === 'circle') {
      const [cx, cy, rx, ry] = [(start[0] + end[0]) / 2, (start[1] + end[1]) / 2, Math.abs(end[0] - start[0]) / 2, Math.abs(end[1] - start[1]) / 2];
      /** @type {Point[]} */
      const ring = Array.from({ length: 49 }, (_, k) => [
        Math.round((cx + rx * Math.cos((k * Math.PI) / 24)) * 10) / 10, Math.round((cy + ry * Math.sin((k * Math.PI) / 24)) * 10) / 10]);
      items.push({ kind: 'outline', points: ring });
    } else {
      items.push({ kind: 'outline', points: points.length > 1 ? points : [start, start] });
    }
  }
  return items;
}

/**
 * The nurse's side: the specialist's marks over her video, and a shared freeze on the still her
 * device captured for the named request (the one it uploads), with a "frozen" badge. Until that
 * still is captured, the frozen picture is the video frame of the moment.
 */
export class SharedView {
  /** @type {string | null} */
  frozen = null;
  /** @type {Map<string, Blob>} */
  #captures = new Map();

  /**
   * @param {{video: HTMLVideoElement, still: HTMLCanvasElement, overlay: HTMLCanvasElement, badge: HTMLElement}} parts
   *   the still, the overlay and the badge lie over the video, the same size
   */
  constructor(parts) {
    this.parts = parts;
    this.sketch = new Sketch(parts.overlay, () => (this.frozen === null
      ? { element: parts.video, width: parts.video.videoWidth, height: parts.video.videoHeight }
      : { element: parts.still, width: parts.still.width, height: parts.still.height }));
  }

  /**
   * A mark from the specialist, by signaling or by a channel.
   * @param {Mark} mark
   * @param {string} from the sender's participant id
   */
  receive(mark, from) {
    if (mark.type === 'annotation') {
      this.sketch.apply(mark, from);
    } else if (this.sketch.first(mark.id)) {
      if (mark.on && mark.still) this.#freeze(mark.still);
      else this.#live();
    }
  }

  /**
   * Marks over one viewer's data channel, from a specialist only (the server checks the
   * signaling copy; this channel is checked here).
   * @param {RTCDataChannel} channel
   * @param {string} viewer
   * @param {() => boolean} mayDraw whether that viewer is a specialist
   */
  listen(channel, viewer, mayDraw) {
    channel.addEventListener('message', ({ data }) => {
      let mark;
      try {
        mark = JSON.parse(data);
      } catch {
        return;
      }
      if (mayDraw() && validMark(mark)) this.receive(mark, viewer);
    });
  }

  /**
   * The still the device captured for a snapshot request: shown at once if it is the frozen one.
   * @param {string} request
   * @param {Blob} blob
   */
  captured(request, blob) {
    this.#captures.set(request, blob);
    for (const old of [...this.#captures.keys()].slice(0, -CAPTURES_KEPT)) this.#captures.delete(old);
    if (this.frozen === request) this.#showCapture(request, blob);
  }

  /** @param {string} still */
  #freeze(still) {
    const { video, still: canvas, badge } = this.parts;
    if (this.frozen !== still) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext('2d')?.drawImage(video, 0, 0);
    }
    this.frozen = still;
    canvas.hidden = false;
    badge.hidden = false;
    this.sketch.show(still);
    const blob = this.#captures.get(still);
    if (blob) this.#showCapture(still, blob);
  }

  /** @param {string} request @param {Blob} blob */
  async #showCapture(request, blob) {
    const bitmap = await createImageBitmap(blob);
    if (this.frozen !== request) {
      bitmap.close();
      return;
    }
    const canvas = this.parts.still;
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext('2d')?.drawImage(bitmap, 0, 0);
    bitmap.close();
    this.sketch.render();
  }

  #live() {
    this.frozen = null;
    this.parts.still.hidden = true;
    this.parts.badge.hidden = true;
    this.sketch.show(null);
  }
}
