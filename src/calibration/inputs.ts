/**
 * Calibration data from files, as batches of onnxruntime feeds for a model's graph inputs.
 *
 * Layouts (`source.folder` is listed and sorted by name; `source.files` is taken in the order
 * given; hidden files and files of other extensions in a folder are skipped):
 *
 * - **Images** (`.png`, `.jpg`, `.jpeg`) for a model with one float input `[B, C, H, W]`: each
 *   image is one sample, decoded and {@link preprocess}ed. C, H and W come from the input's
 *   static dims, else from `options.preprocess` (channels/height/width).
 * - **Arrays** (`.npy`) not named after a graph input: they all feed one input — the only one,
 *   else `input_ids`, else the first — and are read one after another. A file whose rank equals
 *   the input's rank holds a batch `[N, ...]`; one of rank one less holds a single sample. For
 *   BERT-style models this is an int64 (or int32) `[N, S]` array of token ids.
 * - **Arrays named after graph inputs** (`input_ids.npy`, `attention_mask.npy`, … in one folder,
 *   or given as `files`): each holds a batch `[N, ...]` for its input; all have the same N.
 *   (No `.npz`: save one `.npy` per input.)
 *
 * Inputs no file gives are synthesised when they can be: `attention_mask` as ones,
 * `token_type_ids` as zeros, `position_ids` as 0…S−1 (shaped like the fed input of the same
 * rank); any other missing input is an error. Float arrays feed float inputs (float64 and
 * float16 arrays are converted), integer arrays feed integer inputs; mixing the two is an error.
 *
 * @module
 */
import { readInto } from "../onnx/file_io.ts";
import { f16BitsToF32, f32ToF16Bits } from "../onnx/tensor.ts";
import { PruneError } from "../errors.ts";
import { loadOrt, type Ort, ORT_ELEMENT_TYPES, type OrtTensor } from "../runtime/ort.ts";
import { toNumber } from "../onnx/proto.ts";
import type { ModelProto } from "../onnx/proto.ts";
import {
  type NpyArray,
  type NpyDtype,
  npyHeaderLength,
  npyItemSize,
  parseNpy,
  parseNpyHeader,
} from "./npy.ts";
import {
  IMAGENET_MEAN,
  IMAGENET_STD,
  loadImage,
  preprocess as preprocessImage,
  type PreprocessSpec,
} from "./images.ts";

/** One graph input of a model, as calibration data must match it. */
export interface CalibrationInput {
  name: string;
  /** onnxruntime element type ("float32", "int64", "float16", …). */
  type: string;
  /** Static sizes as numbers; symbolic or unknown dims as their `dim_param` name or null. */
  dims: (number | string | null)[];
}

/** Options of {@link loadCalibration}. */
export interface CalibrationOptions {
  /** Samples per batch (the last batch may be smaller). A static batch dim overrides it. */
  batchSize: number;
  /** Most samples to use; the rest are dropped (`Infinity` for all). */
  samples: number;
  /**
   * Image preprocessing. channels/height/width default to the input's static dims; mean/std
   * default to ImageNet's for 3 channels and 0.5/0.5 for 1; resize defaults to max(height,
   * width), crop to "center", scale to 1/255.
   */
  preprocess?: Partial<PreprocessSpec>;
  /** Called after each batch has been consumed with the samples done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Batches of feeds from {@link loadCalibration}, with what was found. */
export interface CalibrationBatches extends AsyncIterableIterator<Record<string, OrtTensor>> {
  /** "images", or "npy" (arrays). */
  readonly kind: "images" | "npy";
  /** Samples the batches hold in all (after `options.samples`). */
  readonly total: number;
  /** Samples per batch actually used. */
  readonly batchSize: number;
  /** Files read, in order. */
  readonly files: readonly string[];
  /** Graph inputs given by files, and those synthesised. */
  readonly fed: readonly string[];
  readonly synthesised: readonly string[];
}

/**
 * The graph inputs of a model that are not initializers, with their onnxruntime types.
 *
 * @example calibrationInputs(await readModelFile("bert.onnx")).map((i) => i.name)
 */
export function calibrationInputs(model: ModelProto): CalibrationInput[] {
  const graph = model.graph;
  if (!graph) throw new PruneError("not-onnx", "model has no graph");
  const inits = new Set((graph.initializer ?? []).map((t) => t.name ?? ""));
  return (graph.input ?? []).filter((i) => !inits.has(i.name ?? "")).map((i) => {
    const tt = i.type?.tensorType;
    const dims = (tt?.shape?.dim ?? []).map((d) => {
      const v = d.dimValue == null ? 0 : toNumber(d.dimValue as number);
      return v > 0 ? v : (d.dimParam || null);
    });
    return {
      name: i.name ?? "",
      type: ORT_ELEMENT_TYPES[tt?.elemType ?? 0] ?? "unsupported",
      dims,
    };
  });
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;
const NPY_EXT = /\.npy$/i;

function baseName(path: string): string {
  return path.replace(/\\/g, "/").split("/").pop() ?? path;
}

function fmtDims(dims: readonly (number | string | null)[]): string {
  return `[${dims.map((d) => d ?? "?").join(", ")}]`;
}

function calErr(message: string): PruneError {
  return new PruneError("bad-calibration", message);
}

async function listFolder(folder: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(folder)) {
      if ((e.isFile || e.isSymlink) && !e.name.startsWith(".")) names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw calErr(`calibration folder ${folder} does not exist`);
    }
    if (e instanceof Deno.errors.NotADirectory) {
      throw calErr(`${folder} is not a folder (give files instead)`);
    }
    throw calErr(`cannot list calibration folder ${folder}: ${(e as Error).message}`);
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const sep = folder.endsWith("/") ? "" : "/";
  const npz = names.filter((n) => /\.npz$/i.test(n));
  const usable = names.filter((n) => IMAGE_EXT.test(n) || NPY_EXT.test(n));
  if (usable.length === 0) {
    throw calErr(
      npz.length
        ? `calibration folder ${folder} holds .npz files, which are not supported: save one .npy ` +
          `per input (named after the input) instead`
        : `calibration folder ${folder} holds no .png, .jpg, .jpeg or .npy files`,
    );
  }
  return usable.map((n) => folder + sep + n);
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw calErr(`calibration file ${path} does not exist`);
    throw calErr(`cannot read calibration file ${path}: ${(e as Error).message}`);
  }
}

/** Reads just the header of an .npy file. */
async function readNpyHeaderFile(path: string) {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw calErr(`calibration file ${path} does not exist`);
    throw calErr(`cannot read calibration file ${path}: ${(e as Error).message}`);
  }
  try {
    const readAll = async (n: number) => {
      const buf = new Uint8Array(n);
      return buf.subarray(0, await readInto(file, buf));
    };
    const prefix = await readAll(12);
    const len = npyHeaderLength(prefix, path);
    await file.seek(0, Deno.SeekMode.Start);
    const header = parseNpyHeader(await readAll(len), path);
    const size = (await file.stat()).size;
    return { ...header, fileSize: size };
  } finally {
    file.close();
  }
}

function isFloatType(t: string): boolean {
  return t === "float32" || t === "float64" || t === "float16";
}

function isIntType(t: string): boolean {
  return /^u?int\d+$/.test(t);
}

// ---------- batch assembly ----------

/** A growable typed buffer for one input's batch, in the input's ORT type. */
type Buf = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

function allocFor(type: string, n: number): Buf {
  switch (type) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "float16":
      return new Uint16Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "uint8":
      return new Uint8Array(n);
  }
  throw calErr(`graph input element type ${type} cannot be fed from calibration files`);
}

/** Copies `count` elements of `src` from `from` into `dst` at `at`, converting types. */
function copyConverted(
  dst: Buf,
  at: number,
  src: NpyArray["data"],
  srcType: NpyDtype,
  from: number,
  count: number,
  source: string,
): void {
  if (dst instanceof BigInt64Array) {
    if (src instanceof BigInt64Array) dst.set(src.subarray(from, from + count), at);
    else {
      for (let i = 0; i < count; i++) dst[at + i] = BigInt((src as Int32Array)[from + i]);
    }
    return;
  }
  if (dst instanceof Uint16Array) {
    // float16 input
    if (srcType === "float16") dst.set((src as Uint16Array).subarray(from, from + count), at);
    else {
      for (let i = 0; i < count; i++) dst[at + i] = f32ToF16Bits(Number(src[from + i]));
    }
    for (let i = 0; i < count; i++) {
      if ((dst[at + i] & 0x7c00) === 0x7c00) {
        throw calErr(
          `${source}: element ${from + i} is not finite as float16; calibration data must ` +
            `hold finite numbers`,
        );
      }
    }
    return;
  }
  if (src instanceof BigInt64Array) {
    for (let i = 0; i < count; i++) {
      const v = src[from + i];
      if (v > 2147483647n || v < -2147483648n) {
        throw calErr(`${source}: value ${v} does not fit the int32 model input`);
      }
      dst[at + i] = Number(v);
    }
    return;
  }
  if (srcType === "float16") {
    for (let i = 0; i < count; i++) dst[at + i] = f16BitsToF32((src as Uint16Array)[from + i]);
  } else {
    (dst as Float32Array).set((src as Float32Array).subarray(from, from + count), at);
  }
  for (let i = 0; i < count; i++) {
    if (!Number.isFinite(dst[at + i])) {
      throw calErr(
        `${source}: value ${dst[at + i]} (element ${from + i}) is not finite; calibration ` +
          `data must hold finite numbers`,
      );
    }
  }
}

function checkDtype(input: CalibrationInput, dtype: NpyDtype, source: string): void {
  const fits = isFloatType(input.type)
    ? dtype.startsWith("float")
    : input.type === "uint8"
    ? dtype === "uint8"
    : (input.type === "int64" || input.type === "int32") && !dtype.startsWith("float");
  if (!fits) {
    throw new PruneError(
      "bad-calibration",
      `${source}: dtype ${dtype} does not fit graph input "${input.name}" of type ${input.type}` +
        (isFloatType(input.type) ? " (give float values)" : " (give integer values)"),
    );
  }
}

function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Checks a file's sample shape against the input's dims after the batch axis. */
function checkSampleShape(
  input: CalibrationInput,
  fileShape: number[],
  sample: number[],
  source: string,
  known: Map<string, number>,
): void {
  const want = input.dims.slice(1);
  const mismatch = () =>
    calErr(
      `${source}: shape ${fmtDims(fileShape)} does not match graph input "${input.name}" ` +
        `${fmtDims(input.dims)}`,
    );
  if (sample.length !== want.length) throw mismatch();
  want.forEach((d, i) => {
    if (typeof d === "number") {
      if (sample[i] !== d) throw mismatch();
    } else if (typeof d === "string") {
      const prev = known.get(d);
      if (prev !== undefined && prev !== sample[i]) {
        throw calErr(
          `${source}: shape ${fmtDims(fileShape)} gives dim "${d}" of graph input ` +
            `"${input.name}" ${fmtDims(input.dims)} the size ${sample[i]}, but other ` +
            `calibration data gives it ${prev}`,
        );
      }
      known.set(d, sample[i]);
    }
  });
}

interface NpyFileInfo {
  path: string;
  dtype: NpyDtype;
  shape: number[];
  /** Samples in the file. */
  count: number;
  sample: number[];
}

/** One input fed from a sequence of .npy files. */
interface Stream {
  input: CalibrationInput;
  files: NpyFileInfo[];
  sample: number[];
}

async function describeNpy(
  path: string,
  input: CalibrationInput,
  allowSingle: boolean,
  known: Map<string, number>,
): Promise<NpyFileInfo> {
  const h = await readNpyHeaderFile(path);
  const need = h.dataOffset + numel(h.shape) * npyItemSize(h.dtype);
  if (h.fileSize < need) {
    throw new PruneError(
      "bad-npy",
      `${path}: truncated .npy data: shape ${fmtDims(h.shape)} needs ${need} bytes, the file ` +
        `has ${h.fileSize}`,
    );
  }
  checkDtype(input, h.dtype, path);
  const rank = input.dims.length;
  let count: number, sample: number[];
  if (h.shape.length === rank && rank > 0) {
    count = h.shape[0];
    sample = h.shape.slice(1);
  } else if (allowSingle && h.shape.length === rank - 1) {
    count = 1;
    sample = h.shape;
  } else {
    throw calErr(
      `${path}: shape ${fmtDims(h.shape)} does not match graph input "${input.name}" ` +
        `${fmtDims(input.dims)}` +
        (allowSingle ? ` (give a batch [N, ...] or one sample of rank ${rank - 1})` : ""),
    );
  }
  checkSampleShape(input, h.shape, sample, path, known);
  return { path, dtype: h.dtype, shape: h.shape, count, sample };
}

function staticBatch(inputs: readonly CalibrationInput[]): number | undefined {
  for (const i of inputs) {
    const d = i.dims[0];
    if (typeof d === "number") return d;
  }
  return undefined;
}

function checkOptions(options: CalibrationOptions): void {
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new PruneError(
      "bad-option",
      `calibration batch size must be a positive integer, not ${options.batchSize}`,
    );
  }
  const s = options.samples;
  if (!(s === Infinity || (Number.isInteger(s) && s >= 1))) {
    throw new PruneError(
      "bad-option",
      `calibration samples must be a positive integer, not ${options.samples}`,
    );
  }
}

const SYNTH = new Set(["attention_mask", "token_type_ids", "position_ids"]);

/**
 * Opens calibration data for a model and returns its batches of onnxruntime feeds (one tensor
 * per graph input, batch axis first), reading files lazily as batches are taken. The module doc
 * describes the layouts. Checks done before returning (PruneError naming the file): empty or
 * missing folder, unknown file types, a mix of images and arrays, .npy headers (dtype against
 * the input type, shape against the input dims: both shapes named), missing inputs; images are
 * decoded when their batch is taken (an unreadable image throws then). `inputs` is a model or
 * its {@link calibrationInputs}.
 *
 * @example
 * const batches = await loadCalibration({ folder: "calib/" }, model, { batchSize: 8, samples: 256 });
 * for await (const feeds of batches) await session.run(feeds);
 */
export async function loadCalibration(
  source: { folder?: string; files?: string[] },
  inputs: ModelProto | readonly CalibrationInput[],
  options: CalibrationOptions,
): Promise<CalibrationBatches> {
  checkOptions(options);
  const specs = Array.isArray(inputs)
    ? inputs as readonly CalibrationInput[]
    : calibrationInputs(inputs as ModelProto);
  if (specs.length === 0) throw calErr("the model has no graph inputs to calibrate");
  let files: string[] = [];
  if (source.folder !== undefined) files.push(...await listFolder(source.folder));
  if (source.files) files.push(...source.files);
  if (source.folder === undefined && !source.files) {
    throw new PruneError("bad-option", "calibration: give a folder or files");
  }
  files = [...files];
  if (files.length === 0) throw calErr("no calibration files given");
  for (const f of files) {
    if (/\.npz$/i.test(f)) {
      throw calErr(`${f}: .npz files are not supported; save one .npy per input instead`);
    }
    if (!IMAGE_EXT.test(f) && !NPY_EXT.test(f)) {
      throw calErr(`${f}: not a calibration file (expected .png, .jpg, .jpeg or .npy)`);
    }
  }
  const images = files.filter((f) => IMAGE_EXT.test(f));
  if (images.length && images.length !== files.length) {
    const npy = files.find((f) => NPY_EXT.test(f));
    throw calErr(
      `calibration data mixes images (${images[0]}) and arrays (${npy}); use one kind`,
    );
  }
  const fixedBatch = staticBatch(specs);
  const batchSize = fixedBatch ?? options.batchSize;
  const ort = await loadOrt("calibration");
  return images.length
    ? imageBatches(ort, images, specs, options, batchSize, fixedBatch !== undefined)
    : await npyBatches(ort, files, specs, options, batchSize, fixedBatch !== undefined);
}

function limitTotal(
  available: number,
  options: CalibrationOptions,
  batchSize: number,
  fixed: boolean,
): number {
  let total = Math.min(available, options.samples);
  if (fixed) {
    total -= total % batchSize;
    if (total === 0) {
      throw calErr(
        `the model has a static batch size of ${batchSize} but only ${
          Math.min(available, options.samples)
        } calibration samples are available`,
      );
    }
  }
  return total;
}

function wrap(
  gen: AsyncGenerator<Record<string, OrtTensor>>,
  info: Omit<CalibrationBatches, keyof AsyncIterableIterator<unknown>>,
): CalibrationBatches {
  return Object.assign(gen, info) as unknown as CalibrationBatches;
}

function imageBatches(
  ort: Ort,
  files: string[],
  specs: readonly CalibrationInput[],
  options: CalibrationOptions,
  batchSize: number,
  fixed: boolean,
): CalibrationBatches {
  const floats = specs.filter((s) => isFloatType(s.type));
  if (specs.length !== 1 || floats.length !== 1 || specs[0].dims.length !== 4) {
    throw calErr(
      `images need a model with one float input [B, C, H, W]; this one has ` +
        specs.map((s) => `"${s.name}" ${s.type} ${fmtDims(s.dims)}`).join(", "),
    );
  }
  const input = specs[0];
  const pre = options.preprocess ?? {};
  const pick = (axis: number, given: number | undefined, what: string): number => {
    const d = input.dims[axis];
    if (typeof d === "number") {
      if (given !== undefined && given !== d) {
        throw new PruneError(
          "bad-option",
          `preprocess ${what} ${given} does not match graph input "${input.name}" ` +
            `${fmtDims(input.dims)}`,
        );
      }
      return d;
    }
    if (given === undefined) {
      throw new PruneError(
        "bad-option",
        `graph input "${input.name}" ${fmtDims(input.dims)} has no static ${what}: give it ` +
          `(preprocess.${what})`,
      );
    }
    return given;
  };
  const channels = pick(1, pre.channels, "channels");
  if (channels !== 1 && channels !== 3) {
    throw calErr(
      `images give 1 or 3 channels, but graph input "${input.name}" ${fmtDims(input.dims)} ` +
        `has ${channels}`,
    );
  }
  const spec: PreprocessSpec = {
    ...pre,
    channels,
    height: pick(2, pre.height, "height"),
    width: pick(3, pre.width, "width"),
    mean: pre.mean ?? (channels === 3 ? [...IMAGENET_MEAN] : [0.5]),
    std: pre.std ?? (channels === 3 ? [...IMAGENET_STD] : [0.5]),
  };
  // Validate the spec now, not at the first image.
  preprocessImage({ width: 1, height: 1, channels, data: new Float32Array(channels) }, {
    ...spec,
    height: 1,
    width: 1,
    resize: undefined,
  });
  const total = limitTotal(files.length, options, batchSize, fixed);
  const used = files.slice(0, total);
  const per = channels * spec.height * spec.width;
  async function* gen(): AsyncGenerator<Record<string, OrtTensor>> {
    for (let start = 0; start < total; start += batchSize) {
      const n = Math.min(batchSize, total - start);
      const buf = allocFor(input.type, n * per);
      for (let i = 0; i < n; i++) {
        const path = used[start + i];
        const img = loadImage(await readBytes(path), path);
        const x = preprocessImage(img, spec);
        copyConverted(buf, i * per, x, "float32", 0, per, path);
      }
      const dims = [n, channels, spec.height, spec.width];
      yield { [input.name]: new ort.Tensor(input.type as "float32", buf as Float32Array, dims) };
      options.onProgress?.(start + n, total);
    }
  }
  return wrap(gen(), {
    kind: "images",
    total,
    batchSize,
    files: used,
    fed: [input.name],
    synthesised: [],
  });
}

async function npyBatches(
  ort: Ort,
  files: string[],
  specs: readonly CalibrationInput[],
  options: CalibrationOptions,
  batchSize: number,
  fixed: boolean,
): Promise<CalibrationBatches> {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const named = files.filter((f) => byName.has(baseName(f).replace(NPY_EXT, "")));
  const known = new Map<string, number>();
  const streams: Stream[] = [];
  if (named.length > 0) {
    if (named.length !== files.length) {
      const other = files.find((f) => !named.includes(f));
      throw calErr(
        `${other}: not named after a graph input (${specs.map((s) => s.name).join(", ")}); ` +
          `when some .npy files are named after inputs, all must be`,
      );
    }
    const seen = new Map<string, string>();
    for (const f of files) {
      const name = baseName(f).replace(NPY_EXT, "");
      if (seen.has(name)) throw calErr(`${seen.get(name)} and ${f} both give input "${name}"`);
      seen.set(name, f);
      const info = await describeNpy(f, byName.get(name)!, false, known);
      streams.push({ input: byName.get(name)!, files: [info], sample: info.sample });
    }
    const n0 = streams[0].files[0].count;
    for (const s of streams) {
      if (s.files[0].count !== n0) {
        throw calErr(
          `${s.files[0].path} holds ${s.files[0].count} samples but ` +
            `${streams[0].files[0].path} holds ${n0}; every input needs the same number`,
        );
      }
    }
  } else {
    const primary = specs.length === 1
      ? specs[0]
      : byName.get("input_ids") ?? specs.find((s) => !SYNTH.has(s.name)) ?? specs[0];
    const infos: NpyFileInfo[] = [];
    for (const f of files) infos.push(await describeNpy(f, primary, true, known));
    for (const info of infos) {
      if (info.sample.some((d, i) => d !== infos[0].sample[i])) {
        throw calErr(
          `${info.path}: sample shape ${fmtDims(info.sample)} differs from ` +
            `${fmtDims(infos[0].sample)} of ${infos[0].path}`,
        );
      }
    }
    streams.push({ input: primary, files: infos, sample: infos[0].sample });
  }
  const fedNames = new Set(streams.map((s) => s.input.name));
  const missing = specs.filter((s) => !fedNames.has(s.name));
  const unsupported = missing.filter((s) => !SYNTH.has(s.name) || !isIntType(s.type));
  if (unsupported.length) {
    throw calErr(
      `no calibration data for graph input${unsupported.length > 1 ? "s" : ""} ` +
        unsupported.map((s) => `"${s.name}" ${fmtDims(s.dims)}`).join(", ") +
        ` (only attention_mask, token_type_ids and position_ids are synthesised); give a ` +
        `folder with one .npy per input, named after it`,
    );
  }
  // Synthesised inputs take their shape from a fed input of the same rank.
  const synth = missing.map((s) => {
    const like = streams.find((t) => t.input.dims.length === s.dims.length);
    if (!like) {
      throw calErr(
        `cannot synthesise graph input "${s.name}" ${fmtDims(s.dims)}: no fed input has its rank`,
      );
    }
    const sample = s.dims.slice(1).map((d, i) =>
      typeof d === "number" ? d : (typeof d === "string" && known.get(d)) || like.sample[i]
    );
    return { input: s, sample };
  });

  const available = streams[0].files.reduce((a, f) => a + f.count, 0);
  const total = limitTotal(available, options, batchSize, fixed);
  if (total === 0) throw calErr(`the calibration arrays hold no samples (${files[0]})`);

  async function* gen(): AsyncGenerator<Record<string, OrtTensor>> {
    // Per stream: the file being read and the next sample in it.
    const cursor = streams.map(() => ({
      file: -1,
      at: 0,
      array: undefined as NpyArray | undefined,
    }));
    for (let start = 0; start < total; start += batchSize) {
      const n = Math.min(batchSize, total - start);
      const feeds: Record<string, OrtTensor> = {};
      for (let k = 0; k < streams.length; k++) {
        const s = streams[k];
        const c = cursor[k];
        const per = numel(s.sample);
        const buf = allocFor(s.input.type, n * per);
        for (let filled = 0; filled < n;) {
          if (!c.array || c.at >= s.files[c.file].count) {
            c.file++;
            const info = s.files[c.file];
            c.array = parseNpy(await readBytes(info.path), info.path);
            c.at = 0;
          }
          const info = s.files[c.file];
          const take = Math.min(n - filled, info.count - c.at);
          copyConverted(
            buf,
            filled * per,
            c.array.data,
            info.dtype,
            c.at * per,
            take * per,
            info.path,
          );
          filled += take;
          c.at += take;
        }
        feeds[s.input.name] = new ort.Tensor(
          s.input.type as "float32",
          buf as Float32Array,
          [n, ...s.sample],
        );
      }
      for (const { input, sample } of synth) {
        const count = n * numel(sample);
        const buf = allocFor(input.type, count);
        const last = sample[sample.length - 1] ?? 1;
        for (let i = 0; i < count; i++) {
          const v = input.name === "attention_mask"
            ? 1
            : input.name === "position_ids"
            ? i % last
            : 0;
          if (buf instanceof BigInt64Array) buf[i] = BigInt(v);
          else buf[i] = v;
        }
        feeds[input.name] = new ort.Tensor(input.type as "int64", buf as BigInt64Array, [
          n,
          ...sample,
        ]);
      }
      yield feeds;
      options.onProgress?.(start + n, total);
    }
  }
  const used = new Set<string>();
  let left = total;
  for (const s of streams) {
    left = total;
    for (const f of s.files) {
      if (left <= 0) break;
      used.add(f.path);
      left -= f.count;
    }
  }
  return wrap(gen(), {
    kind: "npy",
    total,
    batchSize,
    files: [...used],
    fed: streams.map((s) => s.input.name),
    synthesised: synth.map((s) => s.input.name),
  });
}
