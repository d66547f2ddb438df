/**
 * Drawing on a snapshot: arrows, free lines and text labels for the eye; the wound's outline
 * and a reference of known length for the measurement. Points are image pixels ([x, y]), the
 * form PUT /api/snapshots/{id}/annotations takes (woundcare/records/measurement.py). The
 * canvas has the image's own size and CSS scales it, so a pointer position needs one
 * conversion and the drawing never loses resolution. Events: `change`.
 */

/** @typedef {[number, number]} Point */
/**
 * @typedef {{kind: 'arrow', start: Point, end: Point} | {kind: 'text', at: Point, text: string}
 *   | {kind: 'outline', points: Point[]}} Item
 * @typedef {{start: Point, end: Point, lengthCm: number}} Reference
 * @typedef {{items: Item[], reference: Reference | null, outline: {points: Point[]} | null}} Annotations
 * @typedef {'arrow' | 'outline' | 'wound' | 'reference' | 'text'} Tool
 */

/** The server's limit per outline; freehand input is thinned to stay well inside it. */
const MAX_POINTS = 500;
const MIN_REFERENCE_PX = 10;
const COLOURS = { arrow: '#ffd400', outline: '#00e5ff', wound: '#ff4fd8', reference: '#ffffff', text: '#ffd400' };

/** @param {Point} a @param {Point} b */
const distance = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

/**
 * A freehand loop as a polygon: no repeated points, not closed by repeating its start, at most
 * MAX_POINTS points.
 * @param {Point[]} points
 */
function polygonOf(points) {
  const kept = points.filter((p, i) => i === 0 || distance(p, points[i - 1]) > 0);
  while (kept.length > 1 && distance(kept[0], kept[kept.length - 1]) === 0) kept.pop();
  const step = Math.ceil(kept.length / MAX_POINTS);
  return kept.filter((_, i) => i % step === 0);
}

export class Annotator extends EventTarget {
  /** @type {Tool} */
  tool = 'wound';
  /** @type {Item[]} */
  items = [];
  /** @type {Reference | null} */
  reference = null;
  /** @type {{points: Point[]} | null} */
  outline = null;
  /** The real length of the next (or current) reference line, in cm. */
  referenceCm = 1;
  /** The text the text tool places. */
  label = '';
  /** @type {HTMLImageElement | null} */
  image = null;
  /** @type {string[]} earlier states, for undo */
  #history = [];
  /** @type {{tool: Tool, points: Point[]} | null} */
  #stroke = null;

  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    super();
    this.canvas = canvas;
    canvas.addEventListener('pointerdown', (e) => this.#down(e));
    canvas.addEventListener('pointermove', (e) => this.#move(e));
    canvas.addEventListener('pointerup', () => this.#up());
    canvas.addEventListener('pointercancel', () => { this.#stroke = null; this.draw(); });
    canvas.addEventListener('keydown', (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 'z') {
        e.preventDefault();
        this.undo();
      }
    });
  }

  /**
   * @param {HTMLImageElement} image loaded
   * @param {Annotations | null} annotations what was saved before
   */
  load(image, annotations) {
    this.image = image;
    this.canvas.width = image.naturalWidth;
    this.canvas.height = image.naturalHeight;
    this.items = annotations?.items ?? [];
    this.reference = annotations?.reference ?? null;
    this.outline = annotations?.outline ?? null;
    if (this.reference) this.referenceCm = this.reference.lengthCm;
    this.#history = [];
    this.draw();
  }

  /** @returns {Annotations} */
  toJSON() {
    return { items: this.items, reference: this.reference, outline: this.outline };
  }

  /** @param {number} cm */
  setReferenceLength(cm) {
    if (!(cm > 0 && cm <= 100)) return;
    this.referenceCm = cm;
    const reference = this.reference;
    if (reference) this.#change(() => { this.reference = { ...reference, lengthCm: cm }; });
  }

  undo() {
    const previous = this.#history.pop();
    if (previous === undefined) return;
    Object.assign(this, JSON.parse(previous));
    this.draw();
    this.dispatchEvent(new Event('change'));
  }

  clear() {
    this.#change(() => {
      this.items = [];
      this.reference = null;
      this.outline = null;
    });
  }

  /** @param {() => void} edit */
  #change(edit) {
    this.#history.push(JSON.stringify(this.toJSON()));
    edit();
    this.draw();
    this.dispatchEvent(new Event('change'));
  }

  /** @param {PointerEvent} event @returns {Point} */
  #point(event) {
    const box = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * this.canvas.width;
    const y = ((event.clientY - box.top) / box.height) * this.canvas.height;
    const clamp = (/** @type {number} */ v, /** @type {number} */ max) => Math.round(Math.min(max, Math.max(0, v)) * 10) / 10;
    return [clamp(x, this.canvas.width), clamp(y, this.canvas.height)];
  }

  /** @param {PointerEvent} event */
  #down(event) {
    if (!this.image || event.button !== 0) return;
    const at = this.#point(event);
    if (this.tool === 'text') {
      const text = this.label.trim().slice(0, 200);
      if (text) this.#change(() => this.items.push({ kind: 'text', at, text }));
      return;
    }
    this.canvas.setPointerCapture(event.pointerId);
    this.#stroke = { tool: this.tool, points: [at] };
  }

  /** @param {PointerEvent} event */
  #move(event) {
    if (!this.#stroke) return;
    const at = this.#point(event);
    const points = this.#stroke.points;
    if (this.#stroke.tool === 'arrow' || this.#stroke.tool === 'reference') points[1] = at;
    else if (distance(at, points[points.length - 1]) >= 2) points.push(at);
    this.draw();
  }

  #up() {
    const stroke = this.#stroke;
    this.#stroke = null;
    if (!stroke) return;
    const [start, end] = stroke.points;
    if (stroke.tool === 'arrow' && end && distance(start, end) >= 3) {
      this.#change(() => this.items.push({ kind: 'arrow', start, end }));
    } else if (stroke.tool === 'reference' && end && distance(start, end) >= MIN_REFERENCE_PX) {
      this.#change(() => { this.reference = { start, end, lengthCm: this.referenceCm }; });
    } else if (stroke.tool === 'outline' && stroke.points.length >= 2) {
      this.#change(() => this.items.push({ kind: 'outline', points: polygonOf(stroke.points) }));
    } else if (stroke.tool === 'wound' && polygonOf(stroke.points).length >= 3) {
      this.#change(() => { this.outline = { points: polygonOf(stroke.points) }; });
    } else {
      this.draw();
    }
  }

  draw() {
    const ctx = this.canvas.getContext('2d');
    if (!ctx || !this.image) return;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.drawImage(this.image, 0, 0);
    const line = Math.max(2, width / 300);
    ctx.lineWidth = line;
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    ctx.font = `bold ${Math.max(16, Math.round(width / 40))}px system-ui, sans-serif`;
    for (const item of this.items) {
      if (item.kind === 'arrow') this.#arrow(ctx, item.start, item.end, line);
      else if (item.kind === 'outline') this.#path(ctx, item.points, COLOURS.outline, false);
      else this.#label(ctx, item.at, item.text);
    }
    if (this.outline) this.#path(ctx, this.outline.points, COLOURS.wound, true);
    if (this.reference) this.#ruler(ctx, this.reference.start, this.reference.end, `${this.reference.lengthCm} cm`, line);
    const stroke = this.#stroke;
    if (stroke && stroke.points.length > 1) {
      if (stroke.tool === 'arrow') this.#arrow(ctx, stroke.points[0], stroke.points[1], line);
      else if (stroke.tool === 'reference') this.#ruler(ctx, stroke.points[0], stroke.points[1], `${this.referenceCm} cm`, line);
      else this.#path(ctx, stroke.points, COLOURS[stroke.tool], false);
    }
  }

  /** @param {CanvasRenderingContext2D} ctx @param {Point[]} points @param {string} colour @param {boolean} closed */
  #path(ctx, points, colour, closed) {
    ctx.strokeStyle = colour;
    ctx.beginPath();
    points.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
    if (closed) ctx.closePath();
    ctx.stroke();
  }

  /** @param {CanvasRenderingContext2D} ctx @param {Point} start @param {Point} end @param {number} line */
  #arrow(ctx, start, end, line) {
    this.#path(ctx, [start, end], COLOURS.arrow, false);
    const angle = Math.atan2(end[1] - start[1], end[0] - start[0]);
    const head = line * 6;
    ctx.fillStyle = COLOURS.arrow;
    ctx.beginPath();
    ctx.moveTo(end[0], end[1]);
    ctx.lineTo(end[0] - head * Math.cos(angle - 0.45), end[1] - head * Math.sin(angle - 0.45));
    ctx.lineTo(end[0] - head * Math.cos(angle + 0.45), end[1] - head * Math.sin(angle + 0.45));
    ctx.closePath();
    ctx.fill();
  }

  /** @param {CanvasRenderingContext2D} ctx @param {Point} start @param {Point} end @param {string} text @param {number} line */
  #ruler(ctx, start, end, text, line) {
    this.#path(ctx, [start, end], COLOURS.reference, false);
    const angle = Math.atan2(end[1] - start[1], end[0] - start[0]) + Math.PI / 2;
    const tick = line * 4;
    for (const [x, y] of [start, end]) {
      this.#path(ctx, [[x - tick * Math.cos(angle), y - tick * Math.sin(angle)], [x + tick * Math.cos(angle), y + tick * Math.sin(angle)]], COLOURS.reference, false);
    }
    this.#label(ctx, [(start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - tick * 2], text, COLOURS.reference);
  }

  /** @param {CanvasRenderingContext2D} ctx @param {Point} at @param {string} text @param {string} [colour] */
  #label(ctx, at, text, colour = COLOURS.text) {
    // A dark halo keeps the label readable on any skin tone or dressing.
    ctx.lineWidth = Math.max(3, this.canvas.width / 250);
    ctx.strokeStyle = 'rgba(0, 0, 0, 0.85)';
    ctx.strokeText(text, at[0], at[1]);
    ctx.fillStyle = colour;
    ctx.fillText(text, at[0], at[1]);
    ctx.lineWidth = Math.max(2, this.canvas.width / 300);
  }
}
