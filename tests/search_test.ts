/**
 * The search of criterion, compensation and allocation on held-out calibration data: every
 * candidate is scored and the most faithful one is the result; what the options fix is not
 * searched; the candidates share one pass of statistics without changing what each would
 * give alone; `--no-search` is the single run; the held-out split is a seeded partition.
 */
import assert from "node:assert/strict";
import { pruneModel } from "../src/prune.ts";
import { pruneToTarget } from "../src/target.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { tensorDims, tensorToFloat32 } from "../src/onnx/tensor.ts";
import { loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { splitBatches } from "../src/search/split.ts";
import { candidateFidelity, poolRows, reference } from "../src/search/score.ts";
import { createSession } from "../src/runtime/ort.ts";
import { candidateSettings } from "../src/search/mod.ts";
import { formatReport } from "../src/format_report.ts";
import { reportHtml } from "../src/report/html.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const ROOT = new URL("../", import.meta.url);
const ort = await loadOrt();
const MODEL = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
const DATA = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
const PX = 784;

/** `count` Fashion-MNIST test images from `first`, in batches of `size`. */
function images(first: number, count: number, size = 32): Record<string, OrtTensor>[] {
  const out = [];
  for (let s = first; s < first + count; s += size) {
    const e = Math.min(first + count, s + size);
    const x = Float32Array.from(
      DATA.subarray(16 + s * PX, 16 + e * PX),
      (p) => (p / 255 - 0.286) / 0.353,
    );
    out.push({ input: new ort.Tensor("float32", x, [e - s, 1, 28, 28]) });
  }
  return out;
}

const RATIOS = { pruneHeadDims: true, headPruningRatio: 0.5, pruningRatio: 0.6 };

/** The same graph and tensor shapes, every value within 1e-3 of its tensor's largest (a refit
 * alone may read held Gram rows where the candidates read the shared Gram matrix: the same least
 * squares, summed in another float32 order). */
function assertSameModel(actual: ModelProto, expected: ModelProto, what: string): void {
  const nodes = (m: ModelProto) =>
    m.graph!.node!.map((n) => [n.opType, n.input!.join(), n.output!.join()].join(" "));
  assert.deepEqual(nodes(actual), nodes(expected), what);
  const tensors = (m: ModelProto) => new Map(m.graph!.initializer!.map((t) => [t.name!, t]));
  const want = tensors(expected);
  assert.deepEqual([...tensors(actual).keys()], [...want.keys()], what);
  for (const [name, t] of tensors(actual)) {
    assert.deepEqual(tensorDims(t), tensorDims(want.get(name)!), `${what}: ${name}`);
    const a = tensorToFloat32(t), b = tensorToFloat32(want.get(name)!);
    let diff = 0, scale = 0;
    for (let i = 0; i < b.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    assert.ok(diff <= 1e-3 * scale, `${what}: ${name} differs by ${diff} (largest value ${scale})`);
  }
}

Deno.test("search: every candidate is scored on the held-out samples and the best is the result", async () => {
  const calibration = images(0, 96);
  const model = decodeModel(MODEL);
  const { report } = await pruneModel(model, { ...RATIOS, calibration, search: { seed: 3 } });
  const s = report.search!;
  assert.ok(s, "the report has the search");
  assert.equal(s.metric, "kl", "a classifier is scored by KL");
  assert.deepEqual(s.samples, { fit: 72, heldOut: 24 });
  assert.deepEqual(s.searched, ["criterion", "compensation", "allocation"]);
  assert.deepEqual(
    s.candidates.map((c) => [c.criterion, c.compensation, c.allocation]),
    candidateSettings({}, true, false).map((c) => [c.criterion, c.compensation, c.allocation]),
  );
  assert.equal(s.candidates.length, 6);
  assert.equal(s.passes, 1, "one pass of statistics for every candidate");
  const kls = s.candidates.map((c) => c.fidelity!.kl);
  assert.ok(new Set(kls).size > 1, "the candidates differ");
  assert.equal(s.chosen, kls.indexOf(Math.min(...kls)), "the lowest KL is chosen");
  // The model returned is the chosen candidate: its own held-out fidelity is the reported one.
  const split = await splitBatches(calibration, 0.25, 3);
  const ref = await reference(MODEL, split.heldOut);
  const own = await candidateFidelity(encodeModel(model), split.heldOut, ref);
  assert.ok(Math.abs(own.kl - kls[s.chosen]) < 1e-9, `${own.kl} vs ${kls[s.chosen]}`);
  assert.equal(report.macs.after, s.candidates[s.chosen].macs);
  // Shown in the text and HTML reports.
  const text = formatReport(report);
  assert.match(text, /search: 6 candidates pruned on 72 calibration samples, scored on 24/);
  assert.match(text, /chosen\s+\w+\s+reweight/);
  assert.match(reportHtml(report), /<h2>Search<\/h2>/);
});

Deno.test("search: what the options fix is not searched", async () => {
  const calibration = images(0, 64);
  const { report } = await pruneModel(decodeModel(MODEL), {
    ...RATIOS,
    calibration,
    criterion: "wanda",
    allocation: "global",
    search: true,
  });
  const s = report.search!;
  assert.deepEqual(s.searched, ["compensation"]);
  assert.ok(s.candidates.every((c) => c.criterion === "wanda" && c.allocation === "global"));
  // Everything fixed: one plain run, no search.
  const fixed = await pruneModel(decodeModel(MODEL), {
    ...RATIOS,
    calibration,
    criterion: "wanda",
    allocation: "global",
    compensation: "bias",
    search: true,
  });
  assert.equal(fixed.report.search, undefined);
});

Deno.test("search: shared statistics give each candidate what it would get alone", async () => {
  const calibration = images(100, 80);
  const candidates = [
    { criterion: "l2", compensation: "reweight", allocation: "local" },
    { criterion: "wanda", compensation: "reweight", allocation: "global" },
    { criterion: "flap", compensation: "bias", allocation: "local" },
  ] as const;
  const model = decodeModel(MODEL);
  const { report } = await pruneModel(model, {
    ...RATIOS,
    calibration,
    search: { candidates: [...candidates], holdout: 0.3, seed: 1 },
  });
  const s = report.search!;
  assert.equal(s.passes, 1);
  const split = await splitBatches(calibration, 0.3, 1);
  const c = candidates[s.chosen];
  const alone = decodeModel(MODEL);
  await pruneModel(alone, { ...RATIOS, ...c, calibration: split.fit });
  assertSameModel(model, alone, `${JSON.stringify(c)} alone`);
});

Deno.test("search: a target is searched in one step per candidate, ranked globally", async () => {
  const calibration = images(0, 64);
  const model = decodeModel(MODEL);
  const result = await pruneToTarget(model, { macs: 0.6 }, {
    pruneHeadDims: true,
    calibration,
    search: true,
  });
  const s = result.report.search!;
  assert.equal(s.steps, 1);
  // The floor is open, so each criterion is tried at the default floor and at none.
  assert.deepEqual(
    s.candidates.map((c) => [c.criterion, c.allocation, c.minKeep]),
    ["l2", "taylor", "fisher"].flatMap((c) => [[c, "global", 0.125], [c, "global", 0]]),
  );
  assert.deepEqual(s.searched, ["criterion", "compensation", "allocation", "minKeep"]);
  assert.ok(result.target.met);
  assert.equal(result.report.macs.after, s.candidates[s.chosen].macs);
  assert.equal(result.model, model, "the model given, pruned in place");
  // The chosen candidate is the run it names, alone, on the fitting samples.
  const c = s.candidates[s.chosen];
  const split = await splitBatches(calibration, 0.25, 0);
  const alone = decodeModel(MODEL);
  await pruneToTarget(alone, { macs: 0.6, steps: 1, minKeep: c.minKeep }, {
    pruneHeadDims: true,
    calibration: split.fit,
    criterion: c.criterion,
    compensation: c.compensation,
    allocation: c.allocation,
  });
  assertSameModel(model, alone, JSON.stringify(c));
});

Deno.test("search: a floor given under a target is not searched", async () => {
  const model = decodeModel(MODEL);
  const result = await pruneToTarget(model, { macs: 0.6, minKeep: 0.25 }, {
    pruneHeadDims: true,
    calibration: images(0, 64),
    criterion: "l2",
    search: true,
  });
  const s = result.report.search!;
  assert.deepEqual(s.searched, ["compensation", "allocation"]);
  assert.deepEqual(s.candidates.map((c) => c.minKeep), [undefined]);
});

Deno.test("search: a model that is not a classifier is scored by cosine, bias among the candidates", async () => {
  // Token ids for the small BERT (hidden states out): 4 batches of 8 sequences of 12 tokens.
  const [batch, seq] = [8, 12];
  let k = 1;
  const calibration = [0, 1, 2, 3].map(() => {
    const ids = BigInt64Array.from({ length: batch * seq }, () => BigInt(1 + (k++ * 37) % 97));
    return {
      input_ids: new ort.Tensor("int64", ids, [batch, seq]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(batch * seq).fill(1n), [
        batch,
        seq,
      ]),
      token_type_ids: new ort.Tensor("int64", new BigInt64Array(batch * seq), [batch, seq]),
    };
  });
  const bert = await Deno.readFile(new URL("more/bert.onnx", FIXTURES));
  const model = decodeModel(bert);
  const { report } = await pruneModel(model, {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    calibration,
    dimValues: { sequence: seq },
    search: { seed: 2 },
  });
  const s = report.search!;
  assert.equal(s.metric, "cosine");
  assert.deepEqual(s.samples, { fit: 24, heldOut: 8 });
  assert.deepEqual(
    s.candidates.map((c) => [c.criterion, c.compensation, c.allocation]),
    candidateSettings({}, false, false).map((c) => [c.criterion, c.compensation, c.allocation]),
  );
  assert.deepEqual(
    [...new Set(s.candidates.map((c) => c.compensation))].sort(),
    ["bias", "reweight"],
  );
  assert.equal(s.candidates.length, 12);
  assert.equal(s.passes, 1, "bias and reweight read the same pass");
  assert.ok(s.candidates.every((c) => c.fidelity), JSON.stringify(s.candidates));
  const cos = s.candidates.map((c) => c.fidelity!.cosine);
  assert.ok(new Set(cos).size > 1, "the candidates differ");
  assert.equal(s.chosen, cos.indexOf(Math.max(...cos)), "the highest cosine is chosen");
  const split = await splitBatches(calibration, 0.25, 2);
  const ref = await reference(bert, split.heldOut);
  const own = await candidateFidelity(encodeModel(model), split.heldOut, ref);
  assert.ok(Math.abs(own.cosine - cos[s.chosen]) < 1e-9, `${own.cosine} vs ${cos[s.chosen]}`);
  // The score is the cosine of the hidden states' mean over the positions the mask keeps (a
  // sentence embedding), computed here by hand on feeds whose last positions are masked.
  const feeds = split.heldOut.map((f) => {
    const [b, n] = f.input_ids.dims.map(Number);
    const mask = BigInt64Array.from(
      { length: b * n },
      (_, i) => i % n < n - 1 - (i / n) % 4 ? 1n : 0n,
    );
    return { ...f, attention_mask: new ort.Tensor("int64", mask, [b, n]) };
  });
  const pooled = async (bytes: Uint8Array) => {
    const session = await createSession(bytes);
    const rows: number[][] = [];
    for (const f of feeds) {
      const y = (await session.run(f))[session.outputNames[0]];
      const [b, n, h] = y.dims.map(Number);
      const data = y.data as Float32Array, mask = f.attention_mask.data as BigInt64Array;
      for (let r = 0; r < b; r++) {
        const e = new Array(h).fill(0);
        let count = 0;
        for (let t = 0; t < n; t++) {
          if (!mask[r * n + t]) continue;
          count++;
          for (let c = 0; c < h; c++) e[c] += data[(r * n + t) * h + c];
        }
        rows.push(e.map((v) => v / count));
      }
    }
    await session.release();
    return rows;
  };
  const [a, b] = [await pooled(bert), await pooled(encodeModel(model))];
  const cosine = (x: number[], y: number[]) =>
    x.reduce((t, v, i) => t + v * y[i], 0) /
    Math.sqrt(x.reduce((t, v) => t + v * v, 0) * y.reduce((t, v) => t + v * v, 0));
  const byHand = a.reduce((t, row, i) => t + cosine(row, b[i]), 0) / a.length;
  const scored = await candidateFidelity(encodeModel(model), feeds, await reference(bert, feeds));
  assert.ok(Math.abs(scored.cosine - byHand) < 1e-5, `${scored.cosine} vs ${byHand}`);
  // A classifier keeps reweighting alone; a fixed compensation is not searched.
  assert.ok(candidateSettings({}, true, false).every((c) => c.compensation === "reweight"));
  assert.deepEqual(
    candidateSettings({ compensation: "none" }, false, true).map((c) => c.compensation),
    ["none", "none", "none"],
  );
});

Deno.test("search: outputs with positions are pooled per sample, over the masked positions", () => {
  // [2 samples, 3 positions, 2 wide]
  const data = Float32Array.from([1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60]);
  assert.deepEqual([...poolRows(data, [2, 3, 2])], [3, 4, 30, 40]);
  assert.deepEqual([...poolRows(data, [2, 3, 2], [1n, 1n, 0n, 1n, 0n, 0n])], [2, 3, 10, 20]);
  // A mask of another shape is not applied; a [batch, width] output is left as it is.
  assert.deepEqual([...poolRows(data, [2, 3, 2], [1, 0])], [3, 4, 30, 40]);
  assert.equal(poolRows(data, [6, 2]), data);
});

Deno.test("search: the held-out split is a seeded partition of the samples", async () => {
  // Sample i of the data holds the value i everywhere.
  const batches = [5, 7, 4].map((n, b) => {
    const first = [0, 5, 12][b];
    const x = new Float32Array(n * 3).map((_, i) => first + Math.floor(i / 3));
    return { input: new ort.Tensor("float32", x, [n, 3]) };
  });
  const ids = (part: Record<string, OrtTensor>[]) =>
    part.flatMap((f) => {
      const d = f.input.data as Float32Array;
      return Array.from({ length: Number(f.input.dims[0]) }, (_, r) => d[r * 3]);
    });
  const a = await splitBatches(batches, 0.25, 7);
  const again = await splitBatches(batches, 0.25, 7);
  const other = await splitBatches(batches, 0.25, 8);
  assert.deepEqual(a.samples, { fit: 12, heldOut: 4 });
  assert.deepEqual(ids(a.heldOut), ids(again.heldOut), "the same seed, the same split");
  assert.deepEqual(ids(a.fit), ids(again.fit));
  assert.notDeepEqual(ids(a.heldOut), ids(other.heldOut), "another seed, another split");
  const held = new Set(ids(a.heldOut));
  assert.equal(held.size, 4);
  assert.ok(ids(a.fit).every((i) => !held.has(i)), "no held-out sample calibrates");
  assert.deepEqual([...ids(a.fit), ...held].sort((x, y) => x - y), [...Array(16).keys()]);
  // Rows keep their values and shapes.
  for (const f of [...a.fit, ...a.heldOut]) {
    const d = f.input.data as Float32Array;
    assert.equal(d.length, Number(f.input.dims[0]) * 3);
    for (let r = 0; r < d.length; r += 3) assert.ok(d[r] === d[r + 1] && d[r] === d[r + 2]);
  }
});

/** Fashion-MNIST images as a .npy file. */
function npy(count: number): Uint8Array {
  const x = Float32Array.from(DATA.subarray(16, 16 + count * PX), (p) => (p / 255 - 0.286) / 0.353);
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${count}, 1, 28, 28), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  const head = new TextEncoder().encode(header + " ".repeat(pad) + "\n");
  const out = new Uint8Array(10 + head.length + x.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, head.length & 255, head.length >> 8]);
  out.set(head, 10);
  out.set(new Uint8Array(x.buffer), 10 + head.length);
  return out;
}

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("mod.ts", ROOT).pathname, ...args],
    env: { ONNXRUNTIME_NODE_INSTALL: "skip", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("cli: calibration data searches by default; --no-search is the single run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_search_" });
  try {
    await Deno.writeFile(`${dir}/cal.npy`, npy(64));
    const common = [
      new URL("fmnist_vit.onnx", FIXTURES).pathname,
      "--prune-head-dims",
      "--head-pruning-ratio",
      "0.5",
      "--pruning-ratio",
      "0.5",
      "--calibration",
      `${dir}/cal.npy`,
      "--samples",
      "64",
    ];
    const searched = await cli([...common, "-o", `${dir}/s.onnx`, "--json", "--criterion", "l2"]);
    assert.equal(searched.code, 0, searched.stderr);
    const s = JSON.parse(searched.stdout).search;
    assert.deepEqual(s.searched, ["compensation", "allocation"]);
    assert.equal(s.candidates.length, 2);
    // --no-search: the run of the defaults, the same as every choice given.
    const single = await cli([...common, "-o", `${dir}/n.onnx`, "--no-search", "--json"]);
    assert.equal(single.code, 0, single.stderr);
    assert.equal(JSON.parse(single.stdout).search, undefined);
    const given = await cli([
      ...common,
      "-o",
      `${dir}/g.onnx`,
      "--criterion",
      "l2",
      "--compensation",
      "none",
      "--allocation",
      "local",
      "--quiet",
    ]);
    assert.equal(given.code, 0, given.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/n.onnx`), await Deno.readFile(`${dir}/g.onnx`));
    const text = await cli([...common, "-o", `${dir}/t.onnx`]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /search: 6 candidates pruned on 48 calibration samples/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
