/**
 * Calibration images: PNG and JPEG decoding to float pixels, and the usual classification
 * preprocessing (resize the shorter side, center crop, scale, normalise) into a CHW tensor.
 *
 * @module
 */
import { decode as decodePng } from "fast-png";
import jpeg from "jpeg-js";
import { jpegSize, MAX_IMAGE_PIXELS, pngSize } from "./image_size.ts";
import { PruneError } from "../errors.ts";

/** A decoded image: interleaved (HWC) pixels on the 0–255 scale (16-bit PNGs are rescaled). */
export interface DecodedImage {
  width: number;
  height: number;
  /** 1 (gray) or 3 (RGB); alpha is dropped. */
  channels: 1 | 3;
  /** height × width × channels values in [0, 255]. */
  data: Float32Array;
}

/** How an image becomes a model input. */
export interface PreprocessSpec {
  /** Channels of the model input: 1 (gray: RGB images go through luma) or 3 (RGB). */
  channels: 1 | 3;
  /** Output height. */
  height: number;
  /** Output width. */
  width: number;
  /** Size of the shorter side after resizing (default max(height, width)); ignored for crop "none". */
  resize?: number;
  /** "center" (default): resize the shorter side, then center crop; "none": resize to height × width. */
  crop?: "center" | "none";
  /** Per-channel mean subtracted after scaling (one value applies to every channel). */
  mean: number[];
  /** Per-channel std divided by after subtracting the mean (one value applies to every channel). */
  std: number[];
  /** Factor applied to 0–255 pixels before normalising (default 1/255). */
  scale?: number;
}

/** ImageNet channel means (RGB), as torchvision and timm use them. */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
/** ImageNet channel standard deviations (RGB). */
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];

function unreadable(source: string, why: string): PruneError {
  return new PruneError("bad-image", `${source}: cannot read the image (${why})`);
}

function isPng(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
}

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/** Unpacks rows of 1/2/4-bit samples (rows padded to whole bytes) to one value per byte. */
function unpackBits(data: ArrayLike<number>, width: number, height: number, depth: number) {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const byte = data[y * rowBytes + (bit >> 3)];
      out[y * width + x] = (byte >> (8 - depth - (bit & 7))) & mask;
    }
  }
  return out;
}

function fromPng(bytes: Uint8Array, source: string): DecodedImage {
  let png;
  try {
    png = decodePng(bytes);
  } catch (e) {
    throw unreadable(source, `invalid PNG: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { width, height, depth } = png;
  const n = width * height;
  if (png.palette) {
    const idx = depth < 8 ? unpackBits(png.data, width, height, depth) : png.data;
    const out = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      const c = png.palette[idx[i]];
      if (!c) throw unreadable(source, `palette index ${idx[i]} out of range`);
      out[i * 3] = c[0];
      out[i * 3 + 1] = c[1];
      out[i * 3 + 2] = c[2];
    }
    return { width, height, channels: 3, data: out };
  }
  const inCh = png.channels; // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  const outCh: 1 | 3 = inCh <= 2 ? 1 : 3;
  const src = depth < 8 ? unpackBits(png.data, width, height, depth) : png.data;
  const max = (1 << depth) - 1;
  const k = 255 / max;
  const out = new Float32Array(n * outCh);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < outCh; c++) out[i * outCh + c] = src[i * inCh + c] * k;
  }
  return { width, height, channels: outCh, data: out };
}

function fromJpeg(bytes: Uint8Array, source: string): DecodedImage {
  let img;
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 2048 });
  } catch (e) {
    throw unreadable(source, `invalid JPEG: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { width, height } = img;
  const n = width * height;
  if (img.data.length < n * 3) throw unreadable(source, "JPEG data shorter than its size");
  return { width, height, channels: 3, data: Float32Array.from(img.data.subarray(0, n * 3)) };
}

/**
 * Decodes a PNG (1–16-bit gray, gray+alpha, RGB, RGBA or palette) or a JPEG into float pixels
 * on the 0–255 scale: gray stays gray, everything else becomes RGB, alpha is dropped. The format
 * is told by the file's signature. Throws PruneError("bad-image") naming `source`.
 *
 * @example const img = loadImage(await Deno.readFile("cat.jpg"), "cat.jpg"); img.channels // 3
 */
export function loadImage(bytes: Uint8Array, source: string): DecodedImage {
  const declared = isPng(bytes) ? pngSize(bytes) : isJpeg(bytes) ? jpegSize(bytes) : undefined;
  if (declared && declared.width * declared.height > MAX_IMAGE_PIXELS) {
    throw unreadable(
      source,
      `the image declares ${declared.width} × ${declared.height} pixels, more than the ` +
        `${MAX_IMAGE_PIXELS / 1e6} million a calibration image may have; resize it first`,
    );
  }
  let img: DecodedImage;
  if (isPng(bytes)) img = fromPng(bytes, source);
  else if (isJpeg(bytes)) img = fromJpeg(bytes, source);
  else throw unreadable(source, "neither a PNG nor a JPEG file");
  if (img.width <= 0 || img.height <= 0) throw unreadable(source, "the image is empty");
  return img;
}

/** Converts to 1 (luma, ITU-R 601: 0.299 R + 0.587 G + 0.114 B) or 3 (gray replicated) channels. */
function toChannels(img: DecodedImage, channels: 1 | 3): DecodedImage {
  if (img.channels === channels) return img;
  const n = img.width * img.height;
  const out = new Float32Array(n * channels);
  if (channels === 3) {
    for (let i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = img.data[i];
  } else {
    const d = img.data;
    for (let i = 0; i < n; i++) {
      out[i] = 0.299 * d[i * 3] + 0.587 * d[i * 3 + 1] + 0.114 * d[i * 3 + 2];
    }
  }
  return { ...img, channels, data: out };
}

/**
 * Per output index, the source indices and normalised weights of a bilinear (triangle) filter
 * whose support widens when shrinking, as PIL's `Image.resize(..., BILINEAR)` does (antialiased).
 * Sampling is half-pixel centred; for enlargements this is plain bilinear interpolation.
 */
function filterTaps(inSize: number, outSize: number): { start: number[]; weights: number[][] } {
  const scale = inSize / outSize;
  const support = Math.max(scale, 1);
  const start: number[] = [];
  const weights: number[][] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const w: number[] = [];
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const v = Math.max(0, 1 - Math.abs((i + 0.5 - center) / support));
      w.push(v);
      total += v;
    }
    start.push(lo);
    weights.push(total > 0 ? w.map((v) => v / total) : w);
  }
  return { start, weights };
}

/** Bilinear resize of interleaved pixels (separable: rows first, then columns). */
export function resizeBilinear(img: DecodedImage, width: number, height: number): DecodedImage {
  if (img.width === width && img.height === height) return img;
  const ch = img.channels;
  const xs = filterTaps(img.width, width);
  const ys = filterTaps(img.height, height);
  // Horizontal pass: img.height × width.
  const tmp = new Float32Array(img.height * width * ch);
  for (let y = 0; y < img.height; y++) {
    const row = y * img.width;
    for (let x = 0; x < width; x++) {
      const w = xs.weights[x], s = xs.start[x];
      for (let c = 0; c < ch; c++) {
        let acc = 0;
        for (let k = 0; k < w.length; k++) acc += w[k] * img.data[(row + s + k) * ch + c];
        tmp[(y * width + x) * ch + c] = acc;
      }
    }
  }
  const out = new Float32Array(height * width * ch);
  for (let y = 0; y < height; y++) {
    const w = ys.weights[y], s = ys.start[y];
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < ch; c++) {
        let acc = 0;
        for (let k = 0; k < w.length; k++) acc += w[k] * tmp[((s + k) * width + x) * ch + c];
        out[(y * width + x) * ch + c] = acc;
      }
    }
  }
  return { width, height, channels: ch, data: out };
}

/** Python's round(): halves go to the even neighbour (torchvision's center crop uses it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkSpec(spec: PreprocessSpec): void {
  const positive = (v: number | undefined) => v === undefined || (Number.isInteger(v) && v > 0);
  if (spec.channels !== 1 && spec.channels !== 3) {
    throw new PruneError("bad-option", `preprocess: channels must be 1 or 3, not ${spec.channels}`);
  }
  if (!positive(spec.height) || !positive(spec.width) || !positive(spec.resize)) {
    throw new PruneError(
      "bad-option",
      `preprocess: height, width and resize must be positive integers (got ${spec.height}, ` +
        `${spec.width}, ${spec.resize})`,
    );
  }
  for (const [name, v] of [["mean", spec.mean], ["std", spec.std]] as const) {
    if (!Array.isArray(v) || (v.length !== 1 && v.length !== spec.channels)) {
      throw new PruneError(
        "bad-option",
        `preprocess: ${name} needs 1 or ${spec.channels} values, got [${v?.join(", ")}]`,
      );
    }
  }
  if (spec.std.some((s) => !(s !== 0 && Number.isFinite(s)))) {
    throw new PruneError("bad-option", `preprocess: std must be finite and non-zero`);
  }
  if (spec.crop !== undefined && spec.crop !== "center" && spec.crop !== "none") {
    throw new PruneError("bad-option", `preprocess: crop must be "center" or "none"`);
  }
  if ((spec.crop ?? "center") === "center" && spec.resize !== undefined) {
    if (spec.resize < Math.min(spec.height, spec.width)) {
      throw new PruneError(
        "bad-option",
        `preprocess: resize ${spec.resize} is smaller than the crop ${spec.height}×${spec.width}`,
      );
    }
  }
}

/**
 * Turns a decoded image into a model input in CHW order: channel conversion (gray → RGB
 * replicates, RGB → gray by luma), then for crop "center" (default) a bilinear resize that makes
 * the shorter side `resize` (default max(height, width); the longer side is truncated like
 * torchvision's `Resize(int)`) and a center crop to height × width; for crop "none" a resize to
 * height × width. Each value becomes (x·scale − mean[c]) / std[c], scale defaulting to 1/255.
 *
 * @example preprocess(img, { channels: 3, height: 224, width: 224, resize: 256, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] })
 */
export function preprocess(image: DecodedImage, spec: PreprocessSpec): Float32Array {
  checkSpec(spec);
  const { channels, height, width } = spec;
  let img = toChannels(image, channels);
  let top = 0, left = 0;
  if ((spec.crop ?? "center") === "none") {
    img = resizeBilinear(img, width, height);
  } else {
    const size = spec.resize ?? Math.max(height, width);
    const short = Math.min(img.width, img.height), long = Math.max(img.width, img.height);
    const newLong = Math.max(size, Math.floor((size * long) / short));
    const [w, h] = img.width <= img.height ? [size, newLong] : [newLong, size];
    img = resizeBilinear(img, w, h);
    if (img.width < width || img.height < height) {
      throw new PruneError(
        "bad-option",
        `preprocess: the resized image (${img.width}×${img.height}) is smaller than the crop ` +
          `${width}×${height}; raise resize`,
      );
    }
    top = roundHalfEven((img.height - height) / 2);
    left = roundHalfEven((img.width - width) / 2);
  }
  const scale = spec.scale ?? 1 / 255;
  const out = new Float32Array(channels * height * width);
  for (let c = 0; c < channels; c++) {
    const mean = spec.mean.length === 1 ? spec.mean[0] : spec.mean[c];
    const std = spec.std.length === 1 ? spec.std[0] : spec.std[c];
    const plane = c * height * width;
    for (let y = 0; y < height; y++) {
      const srcRow = (top + y) * img.width + left;
      for (let x = 0; x < width; x++) {
        out[plane + y * width + x] = (img.data[(srcRow + x) * channels + c] * scale - mean) / std;
      }
    }
  }
  return out;
}
