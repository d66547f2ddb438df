/**
 * A full-resolution still from the camera: ImageCapture.takePhoto where the browser has it
 * (the sensor's photo resolution, not the video's), otherwise the current video frame drawn
 * on a canvas and encoded as JPEG; and the countdown before a photo the specialist asked for.
 */

const TAKE_PHOTO_TIMEOUT_MS = 4000;

/**
 * @param {MediaStreamTrack} track the live camera track
 * @param {HTMLVideoElement} video showing that track, for the fallback
 * @returns {Promise<Blob>}
 */
export async function capturePhoto(track, video) {
  if ('ImageCapture' in window) {
    try {
      // @ts-ignore ImageCapture is not in every DOM typing yet
      const capture = new ImageCapture(track);
      // Some cameras never settle on a photo; the video frame is better than waiting forever.
      return await Promise.race([
        capture.takePhoto(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('takePhoto timed out')), TAKE_PHOTO_TIMEOUT_MS)),
      ]);
    } catch {
      // fall through to the video frame
    }
  }
  return frameOf(video);
}

/**
 * The frame a video shows now, as JPEG.
 * @param {HTMLVideoElement} video
 * @returns {Promise<Blob>}
 */
function frameOf(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d')?.drawImage(video, 0, 0);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('no frame to capture'))), 'image/jpeg', 0.92);
  });
}

/**
 * The seconds before a photo someone else asked for: the nurse sees 3, 2, 1 and "hold still",
 * so the still is not taken while she is moving the camera or looking away.
 * @param {HTMLElement} box shown during the count (it carries the "hold still" text)
 * @param {HTMLElement} number shows the seconds left
 * @param {number} seconds
 */
export async function countDown(box, number, seconds) {
  box.hidden = false;
  try {
    for (let left = seconds; left > 0; left -= 1) {
      number.textContent = String(left);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  } finally {
    box.hidden = true;
    number.textContent = '';
  }
}
