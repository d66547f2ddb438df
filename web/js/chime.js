/**
 * Short tones made with Web Audio: no sound file, nothing fetched. Browsers let a page play
 * sound only after a user gesture, so the context is created (or resumed) from one where the
 * page can, and a chime before that is silently skipped.
 */

/** Each tone this long, in seconds. */
const TONE_SECONDS = 0.18;

export class Chime {
  /** @type {AudioContext | undefined} */
  #audio;

  /** @param {number[]} tones frequencies in Hz, played one after the other */
  constructor(tones) {
    this.tones = tones;
  }

  /** Call from a user gesture (or once the page has had one): sound is allowed from then on. */
  unlock() {
    this.#audio ??= new AudioContext();
    this.#audio.resume().catch(() => {});
  }

  /** @returns {boolean} whether it sounded (false until the browser allows sound) */
  play() {
    const audio = this.#audio ??= new AudioContext();
    if (audio.state !== 'running') {
      // Not yet allowed: try, and sound from the next time on.
      audio.resume().catch(() => {});
      return false;
    }
    const start = audio.currentTime;
    this.tones.forEach((frequency, i) => {
      const at = start + i * TONE_SECONDS;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = frequency;
      // A short fade in and out, so the tone does not click.
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(0.25, at + 0.02);
      gain.gain.linearRampToValueAtTime(0, at + TONE_SECONDS);
      tone.connect(gain).connect(audio.destination);
      tone.start(at);
      tone.stop(at + TONE_SECONDS);
    });
    return true;
  }
}
