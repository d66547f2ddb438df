/**
 * The nurse's snapshot outbox in IndexedDB: every still is stored here first and uploaded from
 * here, so one taken without network is not lost and goes up when the network is back. A
 * photo leaves the device's storage as soon as the server has it (or has refused it for good).
 * Events: `change` (the number waiting changed), `rejected` ({code}: the server refused one).
 */

import { ApiError, postForm } from './api.js';

const DATABASE = 'woundcare';
const STORE = 'snapshot-outbox';

/**
 * @typedef {{consultation: string, request: string | null, blob: Blob, takenAt: number}} Snapshot
 */

/** @returns {Promise<IDBDatabase>} */
function openDatabase() {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(DATABASE, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { autoIncrement: true });
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
}

/**
 * @template T
 * @param {IDBRequest<T>} request
 * @returns {Promise<T>}
 */
function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** @param {Blob} blob */
function fileNameOf(blob) {
  return { 'image/png': 'snapshot.png', 'image/webp': 'snapshot.webp' }[blob.type] ?? 'snapshot.jpg';
}

export class SnapshotOutbox extends EventTarget {
  #flushing = false;

  /** @param {IDBDatabase} db */
  constructor(db) {
    super();
    this.db = db;
    window.addEventListener('online', () => this.flush());
  }

  static async open() {
    return new SnapshotOutbox(await openDatabase());
  }

  /** @param {IDBTransactionMode} mode */
  #store(mode) {
    return this.db.transaction(STORE, mode).objectStore(STORE);
  }

  /** @returns {Promise<number>} */
  count() {
    return done(this.#store('readonly').count());
  }

  /** Keep a still, then try to upload everything waiting. @param {Snapshot} snapshot */
  async add(snapshot) {
    await done(this.#store('readwrite').add(snapshot));
    this.dispatchEvent(new Event('change'));
    await this.flush();
  }

  /** Upload what is waiting, oldest first; stops at the first network failure. */
  async flush() {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (;;) {
        const cursor = await done(this.#store('readonly').openCursor());
        if (!cursor) return;
        const key = cursor.primaryKey;
        const snapshot = /** @type {Snapshot} */ (cursor.value);
        try {
          await postForm(`/api/consultations/${snapshot.consultation}/snapshots`, this.#form(snapshot));
        } catch (error) {
          // Kept for later: no network, an expired login (the nurse logs in again), a server hiccup.
          if (error instanceof ApiError && (error.offline || error.status === 401 || error.status >= 500)) return;
          this.dispatchEvent(new CustomEvent('rejected', { detail: { code: error instanceof ApiError ? error.code : 'error' } }));
        }
        await done(this.#store('readwrite').delete(key));
        this.dispatchEvent(new Event('change'));
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** @param {Snapshot} snapshot */
  #form(snapshot) {
    const form = new FormData();
    form.append('image', snapshot.blob, fileNameOf(snapshot.blob));
    if (snapshot.request) form.append('request', snapshot.request);
    return form;
  }
}
