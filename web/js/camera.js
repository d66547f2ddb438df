/**
 * The nurse's camera: the back (outward-facing) camera at up to full HD by default, switching
 * between cameras, and the torch where the camera has one.
 */

const SIZE = { width: { ideal: 1920 }, height: { ideal: 1080 } };

/**
 * The camera and the microphone; the camera alone when the microphone is missing or refused (the
 * wound can still be seen, and both sides are told that the nurse cannot be heard).
 * @param {string} [deviceId] a particular camera instead of the back one
 */
export async function openCamera(deviceId) {
  const video = deviceId ? { deviceId: { exact: deviceId }, ...SIZE } : { facingMode: { ideal: 'environment' }, ...SIZE };
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio: { echoCancellation: true, noiseSuppression: true } });
  } catch {
    return navigator.mediaDevices.getUserMedia({ video });
  }
}

/** @returns {Promise<MediaDeviceInfo[]>} */
export async function cameras() {
  return (await navigator.mediaDevices.enumerateDevices()).filter((device) => device.kind === 'videoinput');
}

/**
 * Replace the stream's video with the next camera's. The old camera is released first: many
 * phones cannot run two cameras at once.
 * @param {MediaStream} stream changed in place
 * @returns {Promise<MediaStreamTrack>} the new video track
 */
export async function nextCamera(stream) {
  const all = await cameras();
  const old = stream.getVideoTracks()[0];
  const index = all.findIndex((camera) => camera.deviceId === old.getSettings().deviceId);
  const next = all[(index + 1) % all.length];
  old.stop();
  let fresh;
  try {
    fresh = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: next.deviceId }, ...SIZE } });
  } catch {
    fresh = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: old.getSettings().deviceId }, ...SIZE } });
  }
  const track = fresh.getVideoTracks()[0];
  stream.removeTrack(old);
  stream.addTrack(track);
  return track;
}

/** @param {MediaStreamTrack} track */
export function hasTorch(track) {
  const capabilities = /** @type {MediaTrackCapabilities & {torch?: boolean}} */ (track.getCapabilities?.() ?? {});
  return Boolean(capabilities.torch);
}

/** @param {MediaStreamTrack} track @param {boolean} on */
export function setTorch(track, on) {
  // `torch` is the Image Capture spec's, which TypeScript's DOM types leave out.
  const torch = /** @type {MediaTrackConstraintSet & {torch: boolean}} */ ({ torch: on });
  return track.applyConstraints({ advanced: [torch] });
}
