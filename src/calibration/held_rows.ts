/**
 * A refit from held Gram rows (`ChannelStats.rows`) instead of a whole Gram matrix. Once the plan
 * is known, a refit of y = x·W + b on the kept inputs K reads only X_KᵀX_K and X_KᵀX_R·W_R (R:
 * the removed inputs), so those are all that is multiplied: in onnxruntime's GEMM, X_KᵀX_K by
 * its blocks on and below the diagonal. The refit is then posed on the kept inputs alone, with
 * the removed ones' contribution given (`RefitProblem.removed`).
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { createSession, loadOrt, type OrtSession } from "../runtime/ort.ts";
import type { RefitProblem } from "../core/mod.ts";
import type { ChannelStats } from "./stats.ts";
import { columnBlocks, valueInfo } from "./gram.ts";

/** Inputs x [n, c], kept [k], removed [r] (int64), wr [r, o], sizes (column blocks of x_K, as
 * a Gram matrix's: gram.ts);
 * outputs the lower blocks g{i}_{j} of X_KᵀX_K and cross = X_Kᵀ·(X_R·W_R). */
function productsModel(blocks: number): { bytes: Uint8Array; outputs: string[] } {
  const ints = (name: string, i: number) => onnx.AttributeProto.create({ name, type: 2, i });
  const node = (opType: string, input: string[], output: string[], attribute = [] as unknown[]) =>
    onnx.NodeProto.create({ opType, input, output, attribute } as never);
  const parts = Array.from({ length: blocks }, (_, i) => blocks > 1 ? `x${i}` : "xk");
  const nodes = [
    node("Gather", ["x", "kept"], ["xk"], [ints("axis", 1)]),
    node("Gather", ["x", "removed"], ["xr"], [ints("axis", 1)]),
    node("MatMul", ["xr", "wr"], ["yr"]),
    node("Gemm", ["xk", "yr"], ["cross"], [ints("transA", 1)]),
  ];
  if (blocks > 1) nodes.push(node("Split", ["xk", "sizes"], parts, [ints("axis", 1)]));
  const outputs = ["cross"];
  for (let i = 0; i < blocks; i++) {
    for (let j = 0; j <= i; j++) {
      outputs.push(`g${i}_${j}`);
      nodes.push(node("Gemm", [parts[i], parts[j]], [`g${i}_${j}`], [ints("transA", 1)]));
    }
  }
  const bytes = encodeModel(onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 13 })],
    graph: onnx.GraphProto.create({
      name: "held_rows",
      node: nodes,
      input: [
        valueInfo("x", 1, ["n", "c"]),
        valueInfo("kept", 7, ["k"]),
        valueInfo("removed", 7, ["r"]),
        valueInfo("wr", 1, ["r", "o"]),
        ...(blocks > 1 ? [valueInfo("sizes", 7, ["b"])] : []),
      ],
      output: outputs.map((o) => valueInfo(o, 1, [`${o}_rows`, `${o}_columns`])),
    }),
  }));
  return { bytes, outputs };
}

/** Poses refits on held rows; one onnxruntime session per block count, released at the end. */
export class HeldRowsRefit {
  #sessions = new Map<number, Promise<{ session: OrtSession; outputs: string[] }>>();

  /**
   * The refit problem of y = x·W + b (W: cin × cout, row-major) on the `kept` inputs, from the
   * rows `stats` holds: the kept inputs' Gram matrix and weight rows, the removed inputs'
   * contribution given as it is (`RefitProblem.removed`).
   */
  async problem(
    stats: ChannelStats,
    weight: Float32Array,
    cout: number,
    kept: number[],
    ridge: number,
    bias?: Float32Array,
  ): Promise<RefitProblem> {
    const n = stats.gramCount, cin = stats.channels;
    if (!stats.rows?.length || n === 0) {
      throw new Error("refit: the Gram matrix covers no positions (no calibration rows held)");
    }
    const keep = new Set(kept);
    const removed = [...Array(cin).keys()].filter((j) => !keep.has(j));
    const k = kept.length;
    // With nothing removed, one zero column stands in for X_R (its weight row is zero).
    const r = Math.max(removed.length, 1);
    const wr = new Float32Array(r * cout);
    removed.forEach((j, row) => wr.set(weight.subarray(j * cout, (j + 1) * cout), row * cout));
    const sizes = columnBlocks(k);
    const ort = await loadOrt();
    let made = this.#sessions.get(sizes.length);
    if (!made) {
      const { bytes, outputs } = productsModel(sizes.length);
      made = createSession(bytes).then((session) => ({ session, outputs }));
      this.#sessions.set(sizes.length, made);
    }
    const { session, outputs } = await made;
    const int64 = (values: number[]) =>
      new ort.Tensor("int64", BigInt64Array.from(values, BigInt), [values.length]);
    const constant = {
      kept: int64(kept),
      removed: int64(removed.length ? removed : [kept[0] ?? 0]),
      wr: new ort.Tensor("float32", wr, [r, cout]),
      ...(sizes.length > 1 ? { sizes: int64(sizes) } : {}),
    };
    // The products summed over the blocks of rows.
    const sums = new Map<string, Float32Array>();
    for (const block of stats.rows!) {
      const x = new ort.Tensor("float32", block, [block.length / cin, cin]);
      const out = await session.run({ x, ...constant }, outputs);
      for (const name of outputs) {
        const values = out[name].data as Float32Array;
        const sum = sums.get(name);
        if (!sum) sums.set(name, values);
        else for (let i = 0; i < sum.length; i++) sum[i] += values[i];
      }
    }
    const out = Object.fromEntries([...sums].map(([name, data]) => [name, { data }]));

    // X_KᵀX_K whole (the solver reads its lower triangle), the kept rows of W, the means.
    const gram = new Float32Array(k * k);
    const starts = [0];
    for (const size of sizes) starts.push(starts.at(-1)! + size);
    for (const name of outputs.slice(1)) {
      const [i, j] = name.slice(1).split("_").map(Number);
      const block = out[name].data as Float32Array;
      const w = starts[j + 1] - starts[j];
      for (let row = starts[i]; row < starts[i + 1]; row++) {
        gram.set(
          block.subarray((row - starts[i]) * w, (row - starts[i] + 1) * w),
          row * k + starts[j],
        );
      }
    }
    const keptWeight = new Float32Array(k * cout);
    kept.forEach((j, row) => keptWeight.set(weight.subarray(j * cout, (j + 1) * cout), row * cout));
    let means: { kept: Float64Array; removed: Float64Array } | undefined;
    if (bias) {
      means = {
        kept: Float64Array.from(kept, (j) => stats.gramMean(j)),
        removed: new Float64Array(cout),
      };
      for (const j of removed) {
        const m = stats.gramMean(j);
        for (let o = 0; o < cout; o++) means.removed[o] += m * weight[j * cout + o];
      }
    }
    return {
      gram,
      giveGram: true,
      count: n,
      weight: keptWeight,
      cin: k,
      cout,
      kept: Uint32Array.from({ length: k }, (_, i) => i),
      ridge,
      bias: bias && means ? { values: bias, mean: means.kept } : undefined,
      removed: { cross: out.cross.data as Float32Array, mean: means?.removed },
    };
  }

  async release(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) await (await s.catch(() => undefined))?.session.release?.();
  }
}
