/**
 * Demo (`deno task demo`): prunes the Fashion-MNIST ViT of `tests/fixtures/` on one budget three
 * ways — magnitude alone (Torch-Pruning's L2, every block alike), the same with calibration and
 * compensation (unlabeled images, least-squares reweighting of the layers that read the removed
 * channels), and with the budget spent by a global ranking — and compares each with the original:
 * params, MACs, onnxruntime latency (batch 1 and 64, median of interleaved runs) and accuracy on
 * the embedded test images the calibration does not use. Prints the command line of each.
 * Nothing is written unless `--out DIR` (the pruned models and the calibration file the
 * commands read).
 *
 *   deno task demo [--runs N] [--out DIR]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { prune } from "../src/prune.ts";
import type { PruneOptions } from "../src/options.ts";
import type { RunOptions } from "../src/prune.ts";
import { encodeNpy } from "../src/calibration/npy.ts";
import type { PruneReport } from "../src/report.ts";
import { formatReport, humanCount, ratio } from "../src/format_report.ts";
import { createSession, loadOrt, ortBackendName, type OrtSession } from "../src/runtime/ort.ts";

const FIXTURES = new URL("../tests/fixtures/", import.meta.url);

interface Images {
  count: number;
  rows: number;
  cols: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

/** Reads `FMNIST1K` + u32 count + u16 rows + u16 cols, pixels, labels (little endian). */
function readImages(bytes: Uint8Array): Images {
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== "FMNIST1K") throw new Error(`bad magic "${magic}" in fmnist_test_1000.bin`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(8, true);
  const rows = view.getUint16(12, true);
  const cols = view.getUint16(14, true);
  const n = count * rows * cols;
  if (bytes.length !== 16 + n + count) {
    throw new Error(`fmnist_test_1000.bin: expected ${16 + n + count} bytes, got ${bytes.length}`);
  }
  return {
    count,
    rows,
    cols,
    pixels: bytes.subarray(16, 16 + n),
    labels: bytes.subarray(16 + n, 16 + n + count),
  };
}

function batchTensor(
  ort: Awaited<ReturnType<typeof loadOrt>>,
  img: Images,
  start: number,
  n: number,
  mean: number,
  std: number,
) {
  const size = img.rows * img.cols;
  const data = new Float32Array(n * size);
  for (let i = 0; i < n * size; i++) data[i] = (img.pixels[start * size + i] / 255 - mean) / std;
  return new ort.Tensor("float32", data, [n, 1, img.rows, img.cols]);
}

function argmaxRows(data: Float32Array, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c] > data[r * cols + best]) best = c;
    out.push(best);
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Variant {
  label: string;
  /** The CLI flags of the same run (after the model and -o). */
  flags: string[];
  bytes: Uint8Array;
  report?: PruneReport;
  session?: OrtSession;
  accuracy?: number;
  ms1: number[];
  ms64: number[];
}

/** Calibration images: the first of the embedded test images, never scored. */
const CALIBRATION = 256;
/** The CLI's default calibration batch size: the demo's batches are the command's. */
const BATCH = 32;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "30" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log("usage: deno task demo [--runs N] [--out DIR]");
    return 0;
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    console.error(`error: --runs: "${values.runs}" is not a positive integer`);
    return 2;
  }

  let fixtures;
  let modelBytes: Uint8Array;
  let images: Images;
  try {
    fixtures = JSON.parse(await Deno.readTextFile(new URL("fixtures.json", FIXTURES)));
    const entry = fixtures.fixtures.fmnist_vit;
    if (!entry) throw new Error("fixtures.json has no fmnist_vit entry");
    modelBytes = await Deno.readFile(new URL(entry.file, FIXTURES));
    images = readImages(await Deno.readFile(new URL(entry.test_data, FIXTURES)));
  } catch (e) {
    console.error(
      `error: the demo model is missing (${(e as Error).message}); ` +
        "create it with .venv/bin/python scripts/fixtures/train_fmnist_vit.py",
    );
    return 1;
  }
  const entry = fixtures.fixtures.fmnist_vit;
  const { mean, std } = entry.normalization;
  const heads = entry.blocks?.[0]?.num_heads ?? entry.config?.num_heads;
  const heldOut = images.count - CALIBRATION;

  const ort = await loadOrt();
  const calibrationTensor = batchTensor(ort, images, 0, CALIBRATION, mean, std);
  const calibration = () =>
    Array.from({ length: CALIBRATION / BATCH }, (_, i) => ({
      input: batchTensor(ort, images, i * BATCH, BATCH, mean, std),
    }));
  const out = values.out;
  const calibrationFile = `${out ?? "DIR"}/calibration.npy`;
  if (out) {
    await Deno.mkdir(out, { recursive: true });
    await Deno.writeFile(
      calibrationFile,
      encodeNpy({
        dtype: "float32",
        shape: calibrationTensor.dims as number[],
        data: calibrationTensor.data as Float32Array,
      }),
    );
  }

  // One budget: half of every head's dims and half of every MLP's channels.
  const budget: PruneOptions = { pruneHeadDims: true, headPruningRatio: 0.5, pruningRatio: 0.5 };
  const budgetFlags = [
    "--prune-head-dims",
    "--head-pruning-ratio",
    "0.5",
    "--pruning-ratio",
    "0.5",
  ];
  const calibrated = ["--calibration", calibrationFile, "--compensation", "reweight"];
  const configs: [string, RunOptions, string[]][] = [
    ["magnitude (as Torch-Pruning)", budget, budgetFlags],
    [
      "+ calibration, reweight",
      { ...budget, calibration, compensation: "reweight" },
      [...budgetFlags, ...calibrated],
    ],
    [
      "+ global ranking",
      { ...budget, calibration, compensation: "reweight", allocation: "global" },
      [...budgetFlags, ...calibrated, "--allocation", "global"],
    ],
  ];
  const variants: Variant[] = [
    { label: "original", flags: [], bytes: modelBytes, ms1: [], ms64: [] },
  ];
  for (const [label, options, flags] of configs) {
    const t0 = performance.now();
    const { bytes, report } = await prune(modelBytes, options);
    const sec = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`pruned "${label}" in ${sec} s`);
    variants.push({ label, flags, bytes, report, ms1: [], ms64: [] });
  }
  variants[0].report = {
    params: { before: 0, after: variants[1].report!.params.before },
    macs: { before: 0, after: variants[1].report!.macs.before },
    backend: variants[1].report!.backend,
    blocks: [],
    skipped: [],
    notes: [],
    groups: [],
  };

  // Accuracy on the test images the calibration did not see.
  const scored = batchTensor(ort, images, CALIBRATION, heldOut, mean, std);
  for (const v of variants) {
    v.session = await createSession(v.bytes);
    const name = v.session.inputNames[0];
    const result = await v.session.run({ [name]: scored });
    const logits = result[v.session.outputNames[0]];
    const [n, classes] = logits.dims as number[];
    const pred = argmaxRows(logits.data as Float32Array, n, classes);
    v.accuracy = pred.filter((p, i) => p === images.labels[CALIBRATION + i]).length / n;
  }

  const x1 = batchTensor(ort, images, 0, 1, mean, std);
  const x64 = batchTensor(ort, images, 0, Math.min(64, images.count), mean, std);
  // Latency, one batch size at a time: warm up, then interleave the variants run by run,
  // rotating which goes first, so that drift and cache effects hit all of them alike.
  const time = async (v: Variant, x: typeof x1) => {
    const t0 = performance.now();
    await v.session!.run({ [v.session!.inputNames[0]]: x });
    return performance.now() - t0;
  };
  for (const [x, key] of [[x1, "ms1"], [x64, "ms64"]] as const) {
    for (let i = 0; i < 3; i++) for (const v of variants) await time(v, x);
    for (let i = 0; i < runs; i++) {
      for (let j = 0; j < variants.length; j++) {
        const v = variants[(i + j) % variants.length];
        v[key].push(await time(v, x));
      }
    }
  }

  const base = variants[0];
  const rows = variants.map((v) => {
    const r = v.report!;
    const l1 = median(v.ms1);
    const l64 = median(v.ms64);
    const rel = (x: number, b: number) => v === base ? "" : ` ${ratio(b, x)}`;
    return [
      v.label,
      humanCount(r.params.after) + rel(r.params.after, base.report!.params.after),
      humanCount(r.macs.after) + rel(r.macs.after, base.report!.macs.after),
      `${(v.accuracy! * 100).toFixed(1)}%`,
      l1.toFixed(3) + rel(l1, median(base.ms1)),
      l64.toFixed(2) + rel(l64, median(base.ms64)),
    ];
  });
  const header = ["model", "params", "MACs", `acc@${heldOut}`, "b=1 ms", "b=64 ms"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");

  console.log(
    `\nFashion-MNIST ViT (${entry.file}: ${entry.config?.depth ?? "?"} blocks, ${heads} heads, ` +
      `embed ${entry.embed_dim ?? entry.config?.embed_dim}), onnxruntime-${ortBackendName()}, ` +
      `median of ${runs} interleaved runs; accuracy on ${heldOut} test images, calibration on ` +
      `${CALIBRATION} others (no labels)\n`,
  );
  console.log(line(header));
  for (const r of rows) console.log(line(r));

  console.log(
    `\nThe same runs from the command line${out ? "" : " (--out DIR writes DIR/calibration.npy)"}:`,
  );
  const model = `tests/fixtures/${entry.file}`;
  for (const v of variants.slice(1)) {
    const slug = v.label.replace(/[^a-z0-9]+/gi, "_").replace(/^_+|_+$/g, "");
    const target = `${out ?? "DIR"}/fmnist_vit.${slug}.onnx`;
    console.log(`  ${v.label}:\n    deno run -A mod.ts ${model} -o ${target} ${v.flags.join(" ")}`);
    if (out) await Deno.writeFile(target, v.bytes);
  }
  for (const v of variants.slice(1)) {
    console.log(`\n── ${v.label} ──`);
    console.log(
      formatReport(v.report!, {
        output: out ? "(written, see above)" : "(not written; --out DIR to save)",
      }),
    );
  }
  for (const v of variants) await v.session?.release();
  return 0;
}

Deno.exit(await main());
