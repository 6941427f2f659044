/**
 * Demo (`deno task demo`): prunes the Fashion-MNIST ViT of `tests/fixtures/` and compares it
 * with the original — params, MACs, onnxruntime latency (batch 1 and 64, median of interleaved
 * runs) and accuracy on 1000 embedded test images. Nothing is written unless `--out DIR`.
 *
 *   deno task demo [--runs N] [--out DIR]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { prune } from "../src/prune.ts";
import type { PruneOptions } from "../src/options.ts";
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
  bytes: Uint8Array;
  report?: PruneReport;
  session?: OrtSession;
  accuracy?: number;
  ms1: number[];
  ms64: number[];
}

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

  const configs: [string, PruneOptions][] = [
    ["heads ×0.5", { pruneNumHeads: true, headPruningRatio: 0.5 }],
    ["heads+MLP ×0.5", { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 }],
  ];
  const variants: Variant[] = [{ label: "original", bytes: modelBytes, ms1: [], ms64: [] }];
  for (const [label, options] of configs) {
    const t0 = performance.now();
    const { bytes, report } = await prune(modelBytes, options);
    const sec = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`pruned "${label}" (${JSON.stringify(options)}) in ${sec} s`);
    variants.push({ label, bytes, report, ms1: [], ms64: [] });
  }
  variants[0].report = {
    params: { before: 0, after: variants[1].report!.params.before },
    macs: { before: 0, after: variants[1].report!.macs.before },
    backend: variants[1].report!.backend,
    blocks: [],
    skipped: [],
  };

  const ort = await loadOrt();
  const all = batchTensor(ort, images, 0, images.count, mean, std);
  const x1 = batchTensor(ort, images, 0, 1, mean, std);
  const x64 = batchTensor(ort, images, 0, Math.min(64, images.count), mean, std);
  for (const v of variants) {
    v.session = await createSession(v.bytes);
    const name = v.session.inputNames[0];
    const out = await v.session.run({ [name]: all });
    const logits = out[v.session.outputNames[0]];
    const [n, classes] = logits.dims as number[];
    const pred = argmaxRows(logits.data as Float32Array, n, classes);
    v.accuracy = pred.filter((p, i) => p === images.labels[i]).length / n;
  }

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
  const header = ["model", "params", "MACs", `acc@${images.count}`, "b=1 ms", "b=64 ms"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");

  console.log(
    `\nFashion-MNIST ViT (${entry.file}: ${entry.config?.depth ?? "?"} blocks, ${heads} heads, ` +
      `embed ${entry.embed_dim ?? entry.config?.embed_dim}), onnxruntime-${ortBackendName()}, ` +
      `median of ${runs} interleaved runs\n`,
  );
  console.log(line(header));
  for (const r of rows) console.log(line(r));

  for (const v of variants.slice(1)) {
    const att = v.report!.blocks.find((b) => b.kind === "attention");
    console.log(`\n── ${v.label} ──`);
    if (att && att.kind === "attention") {
      const removed = att.heads.before - att.heads.after;
      console.log(
        `headPruningRatio 0.5 of ${att.heads.before} heads: the engine removes ${removed} ` +
          `and keeps ${att.heads.after} per block (head dim ${att.headDim.after})` +
          (removed === Math.ceil(att.heads.before * 0.5)
            ? ` — ceil(${att.heads.before} × 0.5) = ${removed}, as Torch-Pruning does`
            : ""),
      );
    }
    let out: string | undefined;
    if (values.out) {
      await Deno.mkdir(values.out, { recursive: true });
      const slug = v.label.replace(/[^a-z0-9]+/gi, "_").replace(/_+$/, "");
      out = `${values.out}/fmnist_vit.${slug}.onnx`;
      await Deno.writeFile(out, v.bytes);
    }
    console.log(formatReport(v.report!, { output: out ?? "(not written; --out DIR to save)" }));
  }
  for (const v of variants) await v.session?.release();
  return 0;
}

Deno.exit(await main());
