/**
 * The specialist's snapshots of this consultation: the strip of thumbnails, the annotator with
 * its tools, saving (PUT annotations, which answers with the measurement), and an earlier
 * snapshot beside the current one for comparison.
 */

import { ApiError, getBlob, getJson, putJson } from './api.js';
import { Annotator } from './annotate.js';
import { byId, h } from './dom.js';
import { formatNumber as n, setText } from './i18n.js';
import { dateOf } from './timeline.js';

/**
 * @typedef {{lengthCm: number, widthCm: number, areaCm2: number, perimeterCm: number}} Measurement
 * @typedef {{id: string, request: string | null, takenAt: string,
 *   annotations: import('./annotate.js').Annotations | null, measurement: Measurement | null}} Snapshot
 */

/** @param {string} path */
async function loadImage(path) {
  const image = new Image();
  image.src = URL.createObjectURL(await getBlob(path));
  await image.decode();
  return image;
}

export class SnapshotPanel extends EventTarget {
  /** Request ids we asked for: their snapshot opens by itself when stored. @type {Set<string>} */
  requested = new Set();
  /** @type {Snapshot | null} */
  current = null;
  /** @type {Measurement | null} */
  measurement = null;

  /** @param {string} consultation */
  constructor(consultation) {
    super();
    this.consultation = consultation;
    this.annotator = new Annotator(/** @type {HTMLCanvasElement} */ (byId('annotate-canvas')));
    this.strip = byId('snapshot-strip');
    this.#wireTools();
  }

  /**
   * Reload the list; open the snapshot that answers one of our requests.
   * @param {string | null} [answered] the request id a `snapshot_stored` frame named
   */
  async refresh(answered = null) {
    const { snapshots } = await getJson(`/api/consultations/${this.consultation}/snapshots`);
    this.strip.replaceChildren(...snapshots.map((/** @type {Snapshot} */ snapshot, /** @type {number} */ i) => {
      const label = h('span', { class: 'thumb-caption' });
      setText(label, 'annotate.snapshotNumber', { number: i + 1 });
      const button = h('button', { type: 'button', class: 'thumb', 'data-snapshot': snapshot.id },
        h('img', { src: `/api/snapshots/${snapshot.id}/thumbnail`, alt: '' }), label);
      button.addEventListener('click', () => this.open(snapshot));
      return h('li', {}, button);
    }));
    const wanted = answered && this.requested.has(answered) ? snapshots.find((/** @type {Snapshot} */ s) => s.request === answered) : null;
    if (wanted) {
      this.requested.delete(/** @type {string} */ (answered));
      await this.open(wanted);
    }
  }

  /** @param {Snapshot} snapshot */
  async open(snapshot) {
    const image = await loadImage(`/api/snapshots/${snapshot.id}`);
    this.current = snapshot;
    this.annotator.load(image, snapshot.annotations);
    /** @type {HTMLInputElement} */ (byId('reference-cm')).value = String(this.annotator.referenceCm);
    byId('annotate-view').hidden = false;
    setText(byId('annotate-caption'), 'annotate.caption', { date: dateOf(snapshot.takenAt), width: image.naturalWidth, height: image.naturalHeight });
    for (const thumb of this.strip.querySelectorAll('.thumb')) {
      thumb.setAttribute('aria-current', String(/** @type {HTMLElement} */ (thumb).dataset.snapshot === snapshot.id));
    }
    this.#showMeasurement(snapshot.measurement);
    byId('annotate-error').textContent = '';
  }

  /** @param {import('./timeline.js').SnapshotEntry} entry an earlier snapshot, shown beside */
  async compare(entry) {
    const image = /** @type {HTMLImageElement} */ (byId('compare-image'));
    image.src = URL.createObjectURL(await getBlob(`/api/snapshots/${entry.id}`));
    byId('compare-figure').hidden = false;
    byId('annotate-view').hidden = false;
    const caption = byId('compare-caption');
    if (entry.measurement) setText(caption, 'annotate.compareCaptionMeasured', { date: dateOf(entry.takenAt), length: n(entry.measurement.lengthCm), width: n(entry.measurement.widthCm) });
    else setText(caption, 'annotate.compareCaption', { date: dateOf(entry.takenAt) });
  }

  async save() {
    if (!this.current) return;
    const error = byId('annotate-error');
    error.textContent = '';
    try {
      const saved = await putJson(`/api/snapshots/${this.current.id}/annotations`, this.annotator.toJSON());
      this.current = saved;
      this.#showMeasurement(saved.measurement);
      setText(byId('annotate-saved'), 'annotate.saved');
    } catch (failure) {
      const crosses = failure instanceof ApiError && /crosses itself/.test(failure.message);
      setText(error, crosses ? 'annotate.error.crosses' : failure instanceof ApiError && failure.code === 'bad_annotations' ? 'annotate.error.invalid' : 'error.generic');
    }
  }

  /** @param {Measurement | null} measurement */
  #showMeasurement(measurement) {
    this.measurement = measurement;
    const output = byId('measurement');
    if (measurement) setText(output, 'measure.full', { length: n(measurement.lengthCm), width: n(measurement.widthCm), area: n(measurement.areaCm2), perimeter: n(measurement.perimeterCm) });
    else setText(output, this.annotator.reference && this.annotator.outline ? 'measure.unsaved' : 'measure.howTo');
    byId('use-measurement').hidden = !measurement;
    this.dispatchEvent(new Event('measurement'));
  }

  #wireTools() {
    const tools = byId('annotate-tools').querySelectorAll('[data-tool]');
    for (const button of tools) {
      button.addEventListener('click', () => {
        this.annotator.tool = /** @type {import('./annotate.js').Tool} */ (/** @type {HTMLElement} */ (button).dataset.tool);
        for (const other of tools) other.setAttribute('aria-pressed', String(other === button));
        byId('annotate-canvas').focus();
      });
    }
    const label = /** @type {HTMLInputElement} */ (byId('annotate-label'));
    label.addEventListener('input', () => { this.annotator.label = label.value; });
    const length = /** @type {HTMLInputElement} */ (byId('reference-cm'));
    length.value = String(this.annotator.referenceCm);
    length.addEventListener('change', () => this.annotator.setReferenceLength(Number(length.value.replace(',', '.'))));
    byId('annotate-undo').addEventListener('click', () => this.annotator.undo());
    byId('annotate-clear').addEventListener('click', () => this.annotator.clear());
    byId('annotate-save').addEventListener('click', () => this.save());
    this.annotator.addEventListener('change', () => {
      byId('annotate-saved').textContent = '';
      if (this.current) this.#showMeasurement(null);
    });
  }
}
