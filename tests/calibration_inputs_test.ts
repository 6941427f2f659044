import assert from "node:assert/strict";
import { encode as encodePngRaw } from "fast-png";
import jpeg from "jpeg-js";
import { PruneError } from "../src/errors.ts";
import { readModelFile } from "../src/onnx/model_io.ts";
import { createSession } from "../src/runtime/ort.ts";
import { encodeNpy, type NpyArray, parseNpy } from "../src/calibration/npy.ts";
import {
  type DecodedImage,
  IMAGENET_MEAN,
  IMAGENET_STD,
  loadImage,
  preprocess,
} from "../src/calibration/images.ts";
import {
  type CalibrationInput,
  calibrationInputs,
  loadCalibration,
} from "../src/calibration/inputs.ts";
import { ProgressBar } from "../src/calibration/progress.ts";

const fixture = (p: string) => new URL(`./fixtures/${p}`, import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
const encodePng = (img: any): Uint8Array => encodePngRaw(img);

function encodeJpeg(width: number, height: number, rgb: (x: number, y: number) => number[]) {
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = rgb(x, y);
      data.set([r, g, b, 255], (y * width + x) * 4);
    }
  }
  return new Uint8Array(jpeg.encode({ width, height, data }, 95).data);
}

async function rejectsWith(
  fn: () => Promise<unknown> | unknown,
  code: string,
  ...parts: (string | RegExp)[]
): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof PruneError, `expected a PruneError, got ${err}`);
  assert.equal(err.code, code, err.message);
  for (const p of parts) {
    if (typeof p === "string") assert.ok(err.message.includes(p), `"${err.message}" lacks "${p}"`);
    else assert.match(err.message, p);
  }
}

async function tempDir(files: Record<string, Uint8Array> = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "calib_test_" });
  for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(`${dir}/${name}`, bytes);
  return dir;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `element ${i}: ${a[i]} vs ${b[i]}`);
  }
}

// ---------------------------------------------------------------- npy

/** Bytes as a string of char codes 0–255 (TextDecoder's "latin1" is windows-1252). */
const latin1 = (b: Uint8Array) => Array.from(b, (c) => String.fromCharCode(c)).join("");

Deno.test("npy: round trips of every dtype, versions 1–3, and shapes incl. scalars", () => {
  const cases: NpyArray[] = [
    { dtype: "float32", shape: [2, 3], data: new Float32Array([1, -2.5, 3, 4, 5e-8, 6]) },
    { dtype: "float64", shape: [3], data: new Float64Array([Math.PI, -1e300, 0]) },
    { dtype: "int64", shape: [1, 2, 2], data: new BigInt64Array([1n, -2n, 2n ** 62n, 0n]) },
    { dtype: "int32", shape: [], data: new Int32Array([-7]) },
    { dtype: "uint8", shape: [4, 1], data: new Uint8Array([0, 1, 128, 255]) },
    { dtype: "float16", shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
    { dtype: "float32", shape: [0, 5], data: new Float32Array(0) },
  ];
  for (const a of cases) {
    for (const version of [1, 2, 3] as const) {
      const bytes = encodeNpy(a, { version });
      assert.equal(bytes[6], version);
      const headerEnd = version === 1 ? 10 + (bytes[8] | (bytes[9] << 8)) : 12 + (bytes[8] |
        (bytes[9] << 8));
      assert.equal(headerEnd % 64, 0, "data aligned to 64 bytes");
      const b = parseNpy(bytes, "x.npy");
      assert.equal(b.dtype, a.dtype);
      assert.deepEqual(b.shape, a.shape);
      assert.deepEqual([...b.data], [...a.data]);
      assert.equal(b.data.constructor, a.data.constructor);
    }
  }
});

Deno.test("npy: parses a hand-written NumPy v1 header (1-d tuple, Python 2 long, '|u1')", () => {
  const dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (3L,), }";
  const header = dict.padEnd(128 - 10 - 1, " ") + "\n";
  const bytes = new Uint8Array(128 + 24);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  bytes.set(new TextEncoder().encode(header), 10);
  bytes.set(new Uint8Array(new BigInt64Array([5n, 6n, 7n]).buffer), 128);
  const a = parseNpy(bytes, "v1.npy");
  assert.deepEqual(a.shape, [3]);
  assert.deepEqual([...a.data], [5n, 6n, 7n]);
});

Deno.test("npy: errors name the file", async () => {
  const good = encodeNpy({ dtype: "float32", shape: [2, 2], data: new Float32Array(4) });
  const text = latin1(good);
  const withHeader = (from: string, to: string) =>
    Uint8Array.from(text.replace(from, to.padEnd(from.length, " ")), (c) => c.charCodeAt(0));
  await rejectsWith(
    () => parseNpy(withHeader("False", "True"), "f.npy"),
    "bad-npy",
    "f.npy",
    "Fortran",
  );
  await rejectsWith(() => parseNpy(withHeader("'<f4'", "'>f4'"), "be.npy"), "bad-npy", "be.npy");
  await rejectsWith(
    () => parseNpy(withHeader("'<f4'", "'<c8'"), "c.npy"),
    "bad-npy",
    "c.npy",
    "<c8",
  );
  await rejectsWith(() => parseNpy(new Uint8Array(20), "zero.npy"), "bad-npy", "zero.npy", "magic");
  await rejectsWith(
    () => parseNpy(good.subarray(0, good.length - 1), "short.npy"),
    "bad-npy",
    "short.npy",
    "truncated",
  );
  const v9 = good.slice();
  v9[6] = 9;
  await rejectsWith(() => parseNpy(v9, "v9.npy"), "bad-npy", "v9.npy", "version 9");
});

// ---------------------------------------------------------------- images

Deno.test("images: PNG gray, gray+alpha, RGB, RGBA, 16-bit, 1-bit and palette decode", () => {
  const gray = loadImage(
    encodePng({ width: 2, height: 1, channels: 1, data: new Uint8Array([0, 200]) }),
    "g.png",
  );
  assert.equal(gray.channels, 1);
  assert.deepEqual([...gray.data], [0, 200]);

  const ga = loadImage(
    encodePng({ width: 1, height: 1, channels: 2, data: new Uint8Array([77, 3]) }),
    "ga.png",
  );
  assert.equal(ga.channels, 1);
  assert.deepEqual([...ga.data], [77]);

  const rgb = loadImage(
    encodePng({ width: 1, height: 2, channels: 3, data: new Uint8Array([1, 2, 3, 4, 5, 6]) }),
    "rgb.png",
  );
  assert.deepEqual([rgb.width, rgb.height, rgb.channels], [1, 2, 3]);
  assert.deepEqual([...rgb.data], [1, 2, 3, 4, 5, 6]);

  const rgba = loadImage(
    encodePng({ width: 1, height: 1, channels: 4, data: new Uint8Array([10, 20, 30, 0]) }),
    "rgba.png",
  );
  assert.equal(rgba.channels, 3);
  assert.deepEqual([...rgba.data], [10, 20, 30]);

  const deep = loadImage(
    encodePng({
      width: 2,
      height: 1,
      channels: 3,
      depth: 16,
      data: new Uint16Array([65535, 0, 257, 32768, 65535, 0]),
    }),
    "deep.png",
  );
  close(deep.data, [255, 0, 1, 32768 * 255 / 65535, 255, 0]);

  // 1-bit gray, 3 px wide: rows padded to whole bytes. 0b101_00000, 0b010_00000
  const bits = loadImage(
    encodePng({ width: 3, height: 2, channels: 1, depth: 1, data: new Uint8Array([0xa0, 0x40]) }),
    "bits.png",
  );
  assert.deepEqual([...bits.data], [255, 0, 255, 0, 255, 0]);

  const pal = loadImage(
    encodePng({
      width: 3,
      height: 1,
      channels: 1,
      depth: 8,
      palette: [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
      data: new Uint8Array([2, 0, 1]),
    }),
    "pal.png",
  );
  assert.equal(pal.channels, 3);
  assert.deepEqual([...pal.data], [0, 0, 255, 255, 0, 0, 0, 255, 0]);
});

Deno.test("images: JPEG decodes to RGB (within JPEG loss)", () => {
  const bytes = encodeJpeg(16, 8, (x) => (x < 8 ? [200, 40, 40] : [30, 60, 220]));
  const img = loadImage(bytes, "a.jpg");
  assert.deepEqual([img.width, img.height, img.channels], [16, 8, 3]);
  const px = (
    x: number,
    y: number,
  ) => [...img.data.subarray((y * 16 + x) * 3, (y * 16 + x) * 3 + 3)];
  for (const [v, e] of px(2, 4).map((v, i) => [v, [200, 40, 40][i]])) {
    assert.ok(Math.abs(v - e) < 8);
  }
  for (const [v, e] of px(13, 4).map((v, i) => [v, [30, 60, 220][i]])) {
    assert.ok(Math.abs(v - e) < 8);
  }
});

Deno.test("images: unreadable files throw PruneError naming the file", async () => {
  await rejectsWith(
    () => loadImage(new TextEncoder().encode("hello"), "t.png"),
    "bad-image",
    "t.png",
  );
  const png = encodePng({ width: 4, height: 4, channels: 3, data: new Uint8Array(48) });
  const broken = png.slice();
  broken.fill(7, 40); // corrupt the IDAT stream and CRCs
  await rejectsWith(() => loadImage(broken, "broken.png"), "bad-image", "broken.png");
  const jpg = encodeJpeg(8, 8, () => [1, 2, 3]);
  await rejectsWith(() => loadImage(jpg.subarray(0, 20), "cut.jpg"), "bad-image", "cut.jpg");
});

Deno.test("preprocess: crop, scale and normalise match a hand computation", () => {
  // 4 wide × 2 high gray, resize 2 keeps the shorter side (no resampling), crop 2×2 at left 1.
  const img: DecodedImage = {
    width: 4,
    height: 2,
    channels: 1,
    data: new Float32Array([0, 51, 102, 153, 204, 255, 10, 20]),
  };
  const out = preprocess(img, { channels: 1, height: 2, width: 2, mean: [0.5], std: [0.25] });
  const f = (v: number) => (v / 255 - 0.5) / 0.25;
  close(out, [f(51), f(102), f(255), f(10)]);

  // Gray → RGB replicates, per-channel mean/std, scale 1.
  const rgb = preprocess(img, {
    channels: 3,
    height: 1,
    width: 1,
    resize: 2,
    mean: [0, 1, 2],
    std: [1, 2, 4],
    scale: 1,
  });
  // 4×2 stays 4×2 (shorter side is 2); crop 1×1 at top round(0.5)=0, left round(1.5)=2.
  close(rgb, [102, (102 - 1) / 2, (102 - 2) / 4]);

  // RGB → gray by luma.
  const color: DecodedImage = {
    width: 1,
    height: 1,
    channels: 3,
    data: new Float32Array([100, 50, 200]),
  };
  close(preprocess(color, { channels: 1, height: 1, width: 1, mean: [0], std: [1], scale: 1 }), [
    0.299 * 100 + 0.587 * 50 + 0.114 * 200,
  ], 1e-3);
});

Deno.test("preprocess: bilinear resize up and down, center crop, crop none", () => {
  // 2×2 → shorter side 4 (enlarge): half-pixel bilinear with clamped edges.
  const img: DecodedImage = {
    width: 2,
    height: 2,
    channels: 1,
    data: new Float32Array([0, 100, 200, 40]),
  };
  const up = preprocess(img, { channels: 1, height: 4, width: 4, mean: [0], std: [1], scale: 1 });
  // Row 0 (src y = -0.25 → clamped to row 0): x maps to -0.25, 0.25, 0.75, 1.25.
  close(up.subarray(0, 4), [0, 25, 75, 100]);
  // Row 1 (src y 0.25): 0.75·row0 + 0.25·row1, column 1 (src x 0.25).
  const r0 = 0.75 * 0 + 0.25 * 100, r1 = 0.75 * 200 + 0.25 * 40;
  close([up[5]], [0.75 * r0 + 0.25 * r1]);

  // 4×4 → 2×2 (shrink by 2): triangle filter of support 2 → weights 3/7, 3/7, 1/7 for output 0.
  const big: DecodedImage = {
    width: 4,
    height: 1,
    channels: 1,
    data: new Float32Array([10, 20, 30, 40]),
  };
  const down = preprocess(big, {
    channels: 1,
    height: 1,
    width: 2,
    crop: "none",
    mean: [0],
    std: [1],
    scale: 1,
  });
  close(down, [(3 * 10 + 3 * 20 + 30) / 7, (20 + 3 * 30 + 3 * 40) / 7], 1e-4);

  // 6×2 → shorter side 2 keeps 6 wide, center crop 2×2 at left round(2) = 2.
  const wide: DecodedImage = {
    width: 6,
    height: 2,
    channels: 1,
    data: new Float32Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
  };
  close(preprocess(wide, { channels: 1, height: 2, width: 2, mean: [0], std: [1], scale: 1 }), [
    2,
    3,
    8,
    9,
  ]);
  // Tall image resized so its shorter side is 4: 2×6 → 4×12, crop 4×4 keeps the middle rows.
  const tall: DecodedImage = {
    width: 2,
    height: 6,
    channels: 3,
    data: new Float32Array(36).fill(9),
  };
  const t = preprocess(tall, { channels: 3, height: 4, width: 4, mean: [1], std: [2], scale: 1 });
  assert.equal(t.length, 3 * 16);
  close(t, new Array(48).fill(4));
});

Deno.test("preprocess: bad specs throw bad-option", async () => {
  const img: DecodedImage = { width: 2, height: 2, channels: 1, data: new Float32Array(4) };
  const base = { channels: 1 as const, height: 2, width: 2, mean: [0], std: [1] };
  await rejectsWith(() => preprocess(img, { ...base, std: [0] }), "bad-option", "std");
  await rejectsWith(() => preprocess(img, { ...base, mean: [0, 0] }), "bad-option", "mean");
  await rejectsWith(() => preprocess(img, { ...base, resize: 1 }), "bad-option", "resize");
  await rejectsWith(() => preprocess(img, { ...base, height: 0 }), "bad-option", "height");
});

// ---------------------------------------------------------------- loadCalibration: images

const VIT: CalibrationInput[] = [{ name: "input", type: "float32", dims: ["batch", 3, 32, 32] }];

async function imageFolder(n: number): Promise<string> {
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < n; i++) {
    const w = 40 + i, h = 36;
    const data = new Uint8Array(w * h * 3).map((_, k) => (k * 7 + i * 31) % 256);
    // Names sort as img_0 … img_4; odd ones are JPEGs.
    files[`img_${i}.${i % 2 ? "jpg" : "png"}`] = i % 2
      ? encodeJpeg(w, h, (x, y) => [x * 5, y * 6, i * 40])
      : encodePng({ width: w, height: h, channels: 3, data });
  }
  files["labels.txt"] = new TextEncoder().encode("ignored");
  files[".hidden.png"] = new Uint8Array(3);
  return await tempDir(files);
}

Deno.test("loadCalibration: 5 images, batch 2 → batches of 2, 2, 1 that timm_vit runs on", async () => {
  const dir = await imageFolder(5);
  const progress: [number, number][] = [];
  const batches = await loadCalibration({ folder: dir }, VIT, {
    batchSize: 2,
    samples: 100,
    onProgress: (d, t) => progress.push([d, t]),
  });
  assert.equal(batches.kind, "images");
  assert.equal(batches.total, 5);
  assert.deepEqual(batches.files.map((f) => f.split("/").pop()), [
    "img_0.png",
    "img_1.jpg",
    "img_2.png",
    "img_3.jpg",
    "img_4.png",
  ]);
  const all = await collect(batches);
  assert.deepEqual(all.map((b) => b.input.dims), [[2, 3, 32, 32], [2, 3, 32, 32], [1, 3, 32, 32]]);
  assert.ok(all.every((b) => b.input.type === "float32" && Object.keys(b).length === 1));
  assert.deepEqual(progress, [[2, 5], [4, 5], [5, 5]]);

  // The first sample equals preprocess(loadImage(...)) with ImageNet defaults.
  const first = preprocess(
    loadImage(await Deno.readFile(`${dir}/img_0.png`), "img_0.png"),
    { channels: 3, height: 32, width: 32, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] },
  );
  assert.deepEqual([...(all[0].input.data as Float32Array).subarray(0, 3072)], [...first]);

  const model = await readModelFile(fixture("timm_vit.onnx"));
  const session = await createSession(
    await Deno.readFile(fixture("timm_vit.onnx")),
  );
  assert.equal(calibrationInputs(model)[0].name, "input");
  for (const feeds of all) {
    const out = await session.run(feeds);
    assert.equal(Object.values(out)[0].dims[0], feeds.input.dims[0]);
  }
  await session.release?.();

  // samples caps, gray model input via luma, float16 input.
  const capped = await collect(
    await loadCalibration(
      { folder: dir },
      [{ name: "x", type: "float32", dims: [null, 1, 8, 8] }],
      {
        batchSize: 4,
        samples: 3,
      },
    ),
  );
  assert.deepEqual(capped.map((b) => b.x.dims), [[3, 1, 8, 8]]);
  const f16 = await collect(
    await loadCalibration({ files: [`${dir}/img_0.png`] }, [
      { name: "x", type: "float16", dims: ["b", 3, 4, 4] },
    ], { batchSize: 4, samples: 10, preprocess: { mean: [0], std: [1] } }),
  );
  assert.equal(f16[0].x.type, "float16");
  // onnxruntime shows float16 data as a Float16Array where the runtime has one.
  assert.equal((f16[0].x.data as ArrayLike<number>).length, 48);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadCalibration: symbolic image dims from options; static batch dim wins", async () => {
  const dir = await imageFolder(5);
  const b = await collect(
    await loadCalibration({ folder: dir }, [{
      name: "px",
      type: "float32",
      dims: ["n", "c", "h", "w"],
    }], {
      batchSize: 3,
      samples: Infinity,
      preprocess: { channels: 3, height: 8, width: 6, crop: "none" },
    }),
  );
  assert.deepEqual(b.map((x) => x.px.dims), [[3, 3, 8, 6], [2, 3, 8, 6]]);
  const fixed = await loadCalibration({ folder: dir }, [{
    name: "px",
    type: "float32",
    dims: [2, 3, 4, 4],
  }], {
    batchSize: 8,
    samples: 5,
  });
  assert.equal(fixed.batchSize, 2);
  assert.equal(fixed.total, 4, "a static batch of 2 drops the fifth sample");
  assert.deepEqual((await collect(fixed)).map((x) => x.px.dims[0]), [2, 2]);
  await rejectsWith(
    () =>
      loadCalibration({ folder: dir }, [{ name: "px", type: "float32", dims: ["n", 3, "h", 8] }], {
        batchSize: 2,
        samples: 5,
      }),
    "bad-option",
    "px",
    "height",
  );
  await rejectsWith(
    () =>
      loadCalibration({ folder: dir }, VIT, {
        batchSize: 2,
        samples: 5,
        preprocess: { height: 16 },
      }),
    "bad-option",
    "16",
    "[batch, 3, 32, 32]",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadCalibration: image error cases", async () => {
  const opts = { batchSize: 2, samples: 10 };
  const empty = await tempDir();
  await rejectsWith(
    () => loadCalibration({ folder: empty }, VIT, opts),
    "bad-calibration",
    empty,
    "no .png",
  );
  await rejectsWith(
    () => loadCalibration({ folder: `${empty}/nope` }, VIT, opts),
    "bad-calibration",
    "does not exist",
  );
  const onlyNpz = await tempDir({ "a.npz": new Uint8Array(4) });
  await rejectsWith(
    () => loadCalibration({ folder: onlyNpz }, VIT, opts),
    "bad-calibration",
    ".npz",
  );

  const png = encodePng({ width: 4, height: 4, channels: 3, data: new Uint8Array(48) });
  const bad = await tempDir({ "a.png": png, "b.png": new TextEncoder().encode("not an image") });
  const it = await loadCalibration({ folder: bad }, VIT, { batchSize: 1, samples: 10 });
  assert.ok((await it.next()).value);
  await rejectsWith(() => it.next(), "bad-image", "b.png");

  const mixed = await tempDir({
    "a.png": png,
    "b.npy": encodeNpy({ dtype: "float32", shape: [3, 32, 32], data: new Float32Array(3072) }),
  });
  await rejectsWith(
    () => loadCalibration({ folder: mixed }, VIT, opts),
    "bad-calibration",
    "mixes",
  );

  const bert = await readModelFile(fixture("more/bert.onnx"));
  await rejectsWith(
    () => loadCalibration({ folder: bad }, bert, opts),
    "bad-calibration",
    "one float input",
    "input_ids",
  );
  await rejectsWith(
    () => loadCalibration({ files: [`${bad}/a.png`, `${bad}/c.gif`] }, VIT, opts),
    "bad-calibration",
    "c.gif",
  );
  await rejectsWith(
    () => loadCalibration({ files: [`${bad}/zz.png`] }, VIT, opts).then((b) => b.next()),
    "bad-calibration",
    "zz.png",
    "does not exist",
  );
  await rejectsWith(
    () => loadCalibration({ folder: bad }, VIT, { batchSize: 0, samples: 1 }),
    "bad-option",
    "batch size",
  );
  await rejectsWith(
    () => loadCalibration({ folder: bad }, VIT, { batchSize: 1, samples: -1 }),
    "bad-option",
    "samples",
  );
  await rejectsWith(() => loadCalibration({}, VIT, opts), "bad-option", "folder or files");
  for (const d of [empty, onlyNpz, bad, mixed]) await Deno.remove(d, { recursive: true });
});

// ---------------------------------------------------------------- loadCalibration: arrays

Deno.test("loadCalibration: token ids for bert.onnx synthesise attention_mask and token_type_ids", async () => {
  const model = await readModelFile(fixture("more/bert.onnx"));
  assert.deepEqual(calibrationInputs(model).map((i) => [i.name, i.type, i.dims]), [
    ["input_ids", "int64", ["batch", "sequence"]],
    ["attention_mask", "int64", ["batch", "sequence"]],
    ["token_type_ids", "int64", ["batch", "sequence"]],
  ]);
  const ids = new BigInt64Array(5 * 6).map((_, i) => BigInt(1 + (i % 50)));
  const dir = await tempDir({
    "tokens.npy": encodeNpy({ dtype: "int64", shape: [5, 6], data: ids }),
  });
  const batches = await loadCalibration({ folder: dir }, model, { batchSize: 2, samples: 5 });
  assert.equal(batches.kind, "npy");
  assert.deepEqual(batches.fed, ["input_ids"]);
  assert.deepEqual(batches.synthesised, ["attention_mask", "token_type_ids"]);
  const all = await collect(batches);
  assert.deepEqual(all.map((b) => b.input_ids.dims), [[2, 6], [2, 6], [1, 6]]);
  assert.deepEqual([...(all[2].input_ids.data as BigInt64Array)], [...ids.subarray(24)]);
  for (const b of all) {
    assert.equal(b.attention_mask.type, "int64");
    assert.deepEqual(b.attention_mask.dims, b.input_ids.dims);
    assert.ok([...(b.attention_mask.data as BigInt64Array)].every((v) => v === 1n));
    assert.ok([...(b.token_type_ids.data as BigInt64Array)].every((v) => v === 0n));
  }
  const session = await createSession(await Deno.readFile(fixture("more/bert.onnx")));
  for (const feeds of all) await session.run(feeds);
  await session.release?.();

  // int32 ids are widened; several files (one a single sample) are read in order.
  const dir2 = await tempDir({
    "a.npy": encodeNpy({ dtype: "int32", shape: [2, 6], data: new Int32Array(12).fill(7) }),
    "b.npy": encodeNpy({ dtype: "int64", shape: [6], data: new BigInt64Array(6).fill(9n) }),
  });
  const b2 = await collect(
    await loadCalibration({ folder: dir2 }, model, { batchSize: 2, samples: 9 }),
  );
  assert.deepEqual(b2.map((b) => b.input_ids.dims), [[2, 6], [1, 6]]);
  assert.deepEqual([...(b2[1].input_ids.data as BigInt64Array)], new Array(6).fill(9n));

  // Files named after inputs: the given mask is used, token_type_ids synthesised.
  const mask = new BigInt64Array(12).map((_, i) => BigInt(i % 6 < 4 ? 1 : 0));
  const dir3 = await tempDir({
    "input_ids.npy": encodeNpy({ dtype: "int64", shape: [2, 6], data: ids.subarray(0, 12) }),
    "attention_mask.npy": encodeNpy({ dtype: "int64", shape: [2, 6], data: mask }),
  });
  const b3 = await loadCalibration({ folder: dir3 }, model, { batchSize: 4, samples: 9 });
  assert.deepEqual([...b3.fed].sort(), ["attention_mask", "input_ids"]);
  assert.deepEqual(b3.synthesised, ["token_type_ids"]);
  const [only] = await collect(b3);
  assert.deepEqual([...(only.attention_mask.data as BigInt64Array)], [...mask]);
  for (const d of [dir, dir2, dir3]) await Deno.remove(d, { recursive: true });
});

Deno.test("loadCalibration: float npy batches and samples for an image model", async () => {
  const x = new Float64Array(3 * 3 * 32 * 32).map((_, i) => i / 1000);
  const dir = await tempDir({
    "a_batch.npy": encodeNpy({ dtype: "float64", shape: [3, 3, 32, 32], data: x }),
    "b_one.npy": encodeNpy({
      dtype: "float32",
      shape: [3, 32, 32],
      data: new Float32Array(3072).fill(0.5),
    }),
  });
  const b = await collect(
    await loadCalibration({ folder: dir }, VIT, { batchSize: 2, samples: 100 }),
  );
  assert.deepEqual(b.map((t) => t.input.dims), [[2, 3, 32, 32], [2, 3, 32, 32]]);
  assert.ok(b[0].input.data instanceof Float32Array);
  close(
    (b[1].input.data as Float32Array).subarray(0, 4),
    Float32Array.from(x.subarray(6144, 6148)),
  );
  assert.equal((b[1].input.data as Float32Array)[3072], 0.5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadCalibration: npy error cases name the file and both shapes", async () => {
  const model = await readModelFile(fixture("more/bert.onnx"));
  const opts = { batchSize: 2, samples: 10 };
  const dir = await tempDir({
    "wrong_shape.npy": encodeNpy({
      dtype: "float32",
      shape: [2, 3, 16, 16],
      data: new Float32Array(1536),
    }),
    "wrong_rank.npy": encodeNpy({ dtype: "float32", shape: [5], data: new Float32Array(5) }),
    "ints.npy": encodeNpy({ dtype: "int64", shape: [1, 3, 32, 32], data: new BigInt64Array(3072) }),
    "floats.npy": encodeNpy({ dtype: "float32", shape: [2, 6], data: new Float32Array(12) }),
    "ids8.npy": encodeNpy({ dtype: "int64", shape: [2, 8], data: new BigInt64Array(16) }),
    "ids6.npy": encodeNpy({ dtype: "int64", shape: [2, 6], data: new BigInt64Array(12) }),
    "empty.npy": encodeNpy({ dtype: "int64", shape: [0, 6], data: new BigInt64Array(0) }),
    "fortran.npy": Uint8Array.from(
      latin1(
        encodeNpy({ dtype: "float32", shape: [3, 32, 32], data: new Float32Array(3072) }),
      ).replace("False", "True "),
      (c) => c.charCodeAt(0),
    ),
    "trunc.npy": encodeNpy({ dtype: "float32", shape: [3, 32, 32], data: new Float32Array(3072) })
      .subarray(0, 500),
  });
  const f = (n: string) => `${dir}/${n}`;
  await rejectsWith(
    () => loadCalibration({ files: [f("wrong_shape.npy")] }, VIT, opts),
    "bad-calibration",
    "wrong_shape.npy",
    "[2, 3, 16, 16]",
    "[batch, 3, 32, 32]",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("wrong_rank.npy")] }, VIT, opts),
    "bad-calibration",
    "wrong_rank.npy",
    "[5]",
    "[batch, 3, 32, 32]",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("ints.npy")] }, VIT, opts),
    "bad-calibration",
    "ints.npy",
    "dtype int64",
    "float32",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("floats.npy")] }, model, opts),
    "bad-calibration",
    "floats.npy",
    "dtype float32",
    "int64",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("ids6.npy"), f("ids8.npy")] }, model, opts),
    "bad-calibration",
    "ids8.npy",
    "[2, 8]",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("empty.npy")] }, model, opts),
    "bad-calibration",
    "no samples",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("fortran.npy")] }, VIT, opts),
    "bad-npy",
    "fortran.npy",
    "Fortran",
  );
  await rejectsWith(
    () => loadCalibration({ files: [f("trunc.npy")] }, VIT, opts),
    "bad-npy",
    "trunc.npy",
    "truncated",
  );
  // A model input that cannot be synthesised.
  const two: CalibrationInput[] = [
    { name: "input_ids", type: "int64", dims: ["b", "s"] },
    { name: "pixel_values", type: "float32", dims: ["b", 3, 8, 8] },
  ];
  await rejectsWith(
    () => loadCalibration({ files: [f("ids6.npy")] }, two, opts),
    "bad-calibration",
    "pixel_values",
  );
  // Named files must agree on N, and all be named after inputs.
  const named = await tempDir({
    "input_ids.npy": encodeNpy({ dtype: "int64", shape: [2, 6], data: new BigInt64Array(12) }),
    "attention_mask.npy": encodeNpy({ dtype: "int64", shape: [3, 6], data: new BigInt64Array(18) }),
  });
  await rejectsWith(
    () => loadCalibration({ folder: named }, model, opts),
    "bad-calibration",
    "every input needs the same number",
  );
  await rejectsWith(
    () => loadCalibration({ files: [`${named}/input_ids.npy`, f("ids6.npy")] }, model, opts),
    "bad-calibration",
    "ids6.npy",
    "not named after a graph input",
  );
  // Seq length disagreement between named inputs.
  const seq = await tempDir({
    "input_ids.npy": encodeNpy({ dtype: "int64", shape: [2, 6], data: new BigInt64Array(12) }),
    "attention_mask.npy": encodeNpy({ dtype: "int64", shape: [2, 5], data: new BigInt64Array(10) }),
  });
  await rejectsWith(
    () => loadCalibration({ folder: seq }, model, opts),
    "bad-calibration",
    "sequence",
  );
  for (const d of [dir, named, seq]) await Deno.remove(d, { recursive: true });
});

// ---------------------------------------------------------------- progress

Deno.test("progress: in place on a terminal, every 10% otherwise, nothing when quiet", () => {
  let t = 0;
  const now = () => t;
  const out: string[] = [];
  const bar = new ProgressBar(512, { terminal: false, now, write: (s) => out.push(s) });
  for (let done = 32; done <= 512; done += 32) {
    t += 200;
    bar.callback(done, 512);
  }
  bar.finish();
  assert.equal(out.length, 10, out.join(""));
  assert.ok(out.every((l) => l.endsWith("\n") && !l.includes("\r")));
  assert.equal(out.at(-1), `Processed 512/512 samples [====================] 100% 3.2 s\n`);
  assert.ok(out.some((l) => l.startsWith("Processed 128/512 samples [=====               ] 25%")));

  // Fewer samples than asked for: the loader's count is the bar's total.
  const short: string[] = [];
  const sb = new ProgressBar(256, { terminal: false, now, write: (s) => short.push(s) });
  sb.callback(64, 128);
  sb.callback(128, 128);
  sb.finish();
  assert.equal(short.at(-1)?.split(" [")[0], "Processed 128/128 samples");

  const term: string[] = [];
  t = 0;
  const tb = new ProgressBar(4, { terminal: true, now, write: (s) => term.push(s) });
  t = 50;
  tb.update(1); // first draw
  t = 60;
  tb.update(2); // throttled
  t = 3100;
  tb.update(4);
  tb.finish();
  assert.deepEqual(term, [
    "\rProcessed 1/4 samples [=====               ] 25% 0.1 s",
    "\rProcessed 4/4 samples [====================] 100% 3.1 s",
    "\rProcessed 4/4 samples [====================] 100% 3.1 s\n",
  ]);

  const quiet: string[] = [];
  const q = new ProgressBar(4, { quiet: true, write: (s) => quiet.push(s) });
  q.update(4);
  q.finish();
  assert.deepEqual(quiet, []);
});

// ---------------------------------------------------------------- files written by NumPy/Pillow

const calFixture = (name: string) => fixture(`calibration/${name}`);
const readCal = (name: string) => Deno.readFile(calFixture(name));

Deno.test("npy: files written by NumPy (v1, v2, v3, scalar, float16, int32, Fortran order)", async () => {
  const v1 = parseNpy(await readCal("np_v1_f4.npy"), "np_v1_f4.npy");
  assert.deepEqual([v1.dtype, v1.shape, [...v1.data]], ["float32", [2, 3], [
    0,
    0.25,
    0.5,
    0.75,
    1,
    1.25,
  ]]);
  const v2 = parseNpy(await readCal("np_v2_i8.npy"), "np_v2_i8.npy");
  assert.deepEqual([v2.dtype, v2.shape, [...v2.data]], ["int64", [2, 2], [
    101n,
    -2n,
    3n,
    2n ** 40n,
  ]]);
  const v3 = parseNpy(await readCal("np_v3_u1.npy"), "np_v3_u1.npy");
  assert.deepEqual([v3.dtype, v3.shape, [...v3.data]], ["uint8", [3], [0, 7, 255]]);
  const sc = parseNpy(await readCal("np_scalar_f8.npy"), "np_scalar_f8.npy");
  assert.deepEqual([sc.dtype, sc.shape, [...sc.data]], ["float64", [], [3.25]]);
  const h = parseNpy(await readCal("np_f2.npy"), "np_f2.npy");
  assert.deepEqual([h.dtype, h.shape, [...h.data]], ["float16", [2], [0x3e00, 0xb400]]);
  const i4 = parseNpy(await readCal("np_i4.npy"), "np_i4.npy");
  assert.deepEqual([i4.dtype, i4.shape, [...i4.data]], ["int32", [1, 3], [1, 2, 3]]);
  await rejectsWith(
    async () => parseNpy(await readCal("np_fortran.npy"), "np_fortran.npy"),
    "bad-npy",
    "np_fortran.npy",
    "Fortran",
  );
  // encodeNpy writes what NumPy writes (v1 header padded to 64 bytes).
  assert.deepEqual(encodeNpy(v1), await readCal("np_v1_f4.npy"));
});

Deno.test("images: files written by Pillow (16-bit gray, 2-bit palette, gray JPEG)", async () => {
  const g16 = loadImage(await readCal("gray16_3x2.png"), "gray16_3x2.png");
  assert.deepEqual([g16.width, g16.height, g16.channels], [3, 2, 1]);
  close(g16.data, [0, 51, 102, 153, 204, 255], 1e-3);
  const pal = loadImage(await readCal("palette4_4x1.png"), "palette4_4x1.png");
  assert.deepEqual([...pal.data], [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7]);
  const gj = loadImage(await readCal("gray_8x8.jpg"), "gray_8x8.jpg");
  assert.equal(gj.channels, 3);
  assert.ok(gj.data.every((v) => Math.abs(v - 100) <= 1));
});

Deno.test("preprocess: matches Pillow's BILINEAR resize + center crop + ImageNet normalisation", async () => {
  const img = loadImage(await readCal("rgb_13x9.png"), "rgb_13x9.png");
  const got = preprocess(img, {
    channels: 3,
    height: 8,
    width: 8,
    resize: 12,
    mean: [...IMAGENET_MEAN],
    std: [...IMAGENET_STD],
  });
  const want = parseNpy(await readCal("rgb_13x9_pre.npy"), "rgb_13x9_pre.npy");
  assert.deepEqual(want.shape, [3, 8, 8]);
  close(got, want.data as Float32Array, 1e-4);
});
