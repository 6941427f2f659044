/**
 * The pixel size of a PNG or JPEG, read from its header before it is decoded: a small file can
 * declare a huge image (a decompression bomb — 30000 × 30000 pixels in under 1 MB), and decoding
 * it would take gigabytes before anything could object.
 *
 * @module
 */

/** Most pixels a calibration image may have (50 megapixels: large photos pass). */
export const MAX_IMAGE_PIXELS = 50_000_000;

/** Width and height from a PNG's IHDR chunk, or undefined when it has none. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  // Signature (8 bytes), chunk length (4), "IHDR" (4), width (4), height (4), big-endian.
  if (bytes.length < 24) return undefined;
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** Width and height from a JPEG's first start-of-frame marker, or undefined when none is found. */
export function jpegSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  let at = 2; // after SOI
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2; // markers without a length
      continue;
    }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return {
        height: (bytes[at + 5] << 8) | bytes[at + 6],
        width: (bytes[at + 7] << 8) | bytes[at + 8],
      };
    }
    if (marker === 0xda || length < 2) return undefined; // scan data before any frame header
    at += 2 + length;
  }
  return undefined;
}
