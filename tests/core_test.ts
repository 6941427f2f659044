// Tests of the compute core (src/core/mod.ts): the CPU path against plain TS references, and the
// GPU path against the CPU path. Run: XDG_RUNTIME_DIR=/tmp deno test -A tests/core_test.ts
// With PRUNE_VIT_REQUIRE_GPU=1 a missing WebGPU adapter fails the GPU test instead of ignoring it.
import assert from "node:assert/strict";
import { type ComputeCore, createCore, Float32Bytes, gpuDispatchCount } from "../src/core/mod.ts";
import { mulberry32 } from "./seeded_random.ts";

// ---------- helpers and references ----------

const rng = mulberry32;

function randomF32(n: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * 4);
}

function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

function layout(dims: number[], axis: number) {
  const prod = (ds: number[]) => ds.reduce((a, b) => a * b, 1);
  return {
    outer: prod(dims.slice(0, axis)),
    channels: dims[axis],
    inner: prod(dims.slice(axis + 1)),
  };
}

function lpRef(values: ArrayLike<number>, dims: number[], axis: number, p: 1 | 2): Float32Array {
  const { outer, channels, inner } = layout(dims, axis);
  const sums = new Float64Array(channels);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < inner; i++) {
        const v = Math.abs(values[(o * channels + c) * inner + i]);
        sums[c] += p === 1 ? v : v * v;
      }
    }
  }
  return Float32Array.from(sums);
}

function reduceRef(values: number[], reduce: "sum" | "mean" | "max"): number {
  if (reduce === "max") return Math.max(...values);
  const sum = values.reduce((a, b) => a + b, 0);
  return reduce === "sum" ? sum : sum / values.length;
}

/** Stable ascending argsort (NaN last, -0 == +0); the first `drop` of each group are pruned. */
function selectRef(scores: Float32Array, groups: number, drop: number): Uint32Array {
  const size = scores.length / groups;
  const kept: number[] = [];
  for (let g = 0; g < groups; g++) {
    const idx = Array.from({ length: size }, (_, i) => g * size + i);
    const cmp = (a: number, b: number) => {
      const x = scores[a], y = scores[b];
      if (Number.isNaN(x) || Number.isNaN(y)) {
        return Number(Number.isNaN(x)) - Number(Number.isNaN(y));
      }
      return x < y ? -1 : x > y ? 1 : 0;
    };
    idx.sort(cmp); // Array.prototype.sort is stable
    kept.push(...idx.slice(drop));
  }
  return Uint32Array.from(kept.sort((a, b) => a - b));
}

function gatherRef(
  bytes: Uint8Array,
  dims: number[],
  size: number,
  axis: number,
  indices: Uint32Array,
): Uint8Array {
  const { outer, channels, inner } = layout(dims, axis);
  const block = inner * size;
  const out = new Uint8Array(outer * indices.length * block);
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const k of indices) {
      const from = (o * channels + k) * block;
      out.set(bytes.subarray(from, from + block), at);
      at += block;
    }
  }
  return out;
}

function assertClose(actual: Float32Array, expected: Float32Array, rel: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e))) continue;
    const ok = Math.abs(a - e) <= rel * Math.max(Math.abs(a), Math.abs(e));
    assert.ok(ok, `${what}[${i}]: ${a} vs ${e} (relative ${Math.abs(a - e) / Math.abs(e)})`);
  }
}

const SHAPES: number[][] = [[7], [5, 3], [4, 6, 3], [2, 3, 4, 5], [64, 48], [3, 1, 5], [0, 4]];

// ---------- CPU path ----------

const cpu = await createCore({ backend: "cpu" });

Deno.test("cpu: createCore({backend: 'cpu'}) gives the cpu backend", () => {
  assert.equal(cpu.backend, "cpu");
});

Deno.test("cpu: float32 bytes at any alignment score as their float32 values", async () => {
  const rand = rng(5);
  const dims = [6, 10, 7];
  const values = randomF32(6 * 10 * 7, rand);
  for (const offset of [0, 1, 2, 3]) {
    const buffer = new Uint8Array(values.byteLength + offset);
    buffer.set(new Uint8Array(values.buffer), offset);
    const bytes = new Float32Bytes(buffer.subarray(offset));
    for (let axis = 0; axis < dims.length; axis++) {
      assert.deepEqual(
        await cpu.channelLpScores(bytes, dims, axis, 2),
        await cpu.channelLpScores(values, dims, axis, 2),
      );
    }
    assert.deepEqual(bytes.values(), values);
  }
  assert.throws(() => new Float32Bytes(new Uint8Array(6)), /whole float32/);
});

Deno.test("cpu: channelLpScores on f32 matches the reference (all axes, p = 1 and 2)", async () => {
  const rand = rng(1);
  for (const dims of SHAPES) {
    const data = randomF32(dims.reduce((a, b) => a * b, 1), rand);
    for (let axis = 0; axis < dims.length; axis++) {
      for (const p of [1, 2] as const) {
        const got = await cpu.channelLpScores(data, dims, axis, p);
        assertClose(got, lpRef(data, dims, axis, p), 2e-7, `f32 ${dims} axis ${axis} p ${p}`);
      }
    }
  }
});

Deno.test("cpu: channelLpScores decodes f16 (subnormals, zeros, inf, NaN)", async () => {
  const rand = rng(2);
  const dims = [6, 40, 3];
  // Finite halves of every exponent, subnormals included (exponent 0).
  const bits = Uint16Array.from(
    { length: 720 },
    () => Math.floor(rand() * 0x7c00) | (rand() < 0.5 ? 0x8000 : 0),
  );
  bits.set([0x0001, 0x83ff, 0x0000, 0x8000, 0x03ff, 0x7bff], 0);
  const values = Array.from(bits, f16ToNumber);
  for (let axis = 0; axis < 3; axis++) {
    for (const p of [1, 2] as const) {
      const got = await cpu.channelLpScores(bits, dims, axis, p);
      assertClose(got, lpRef(values, dims, axis, p), 2e-7, `f16 axis ${axis} p ${p}`);
    }
  }
  const tiny = await cpu.channelLpScores(Uint16Array.of(0x0001, 0x8001, 0x0200), [3], 0, 1);
  assert.deepEqual(Array.from(tiny), [2 ** -24, 2 ** -24, 2 ** -15]);
  const special = await cpu.channelLpScores(
    Uint16Array.of(0x3c00, 0xfc00, 0x7e00, 0x4000),
    [2, 2],
    1,
    2,
  );
  assert.ok(Number.isNaN(special[0])); // 1 + NaN
  assert.equal(special[1], Infinity); // inf + 4
});

Deno.test("cpu: aggregate and groupScores match the reference", async () => {
  const rand = rng(3);
  const vectors = [0, 1, 2].map(() => randomF32(24, rand));
  for (const reduce of ["sum", "mean", "max"] as const) {
    const agg = await cpu.aggregate(vectors, reduce);
    const want = Float32Array.from(
      { length: 24 },
      (_, j) => reduceRef(vectors.map((v) => v[j]), reduce),
    );
    assertClose(agg, want, 2e-7, `aggregate ${reduce}`);
    for (const groups of [1, 2, 3, 4, 6, 24]) {
      const got = await cpu.groupScores(vectors[0], groups, reduce);
      const size = 24 / groups;
      const ref = Float32Array.from(
        { length: groups },
        (_, g) => reduceRef(Array.from(vectors[0].subarray(g * size, (g + 1) * size)), reduce),
      );
      assertClose(got, ref, 2e-7, `groupScores ${groups} ${reduce}`);
    }
  }
  assert.deepEqual(Array.from(await cpu.aggregate([Float32Array.of(1, NaN)], "max")), [1, NaN]);
});

Deno.test("cpu: selectKeep is a stable ascending argsort with ties", async () => {
  assert.deepEqual(Array.from(await cpu.selectKeep(Float32Array.of(3, 1, 1, 0, -0, NaN), 3)), [
    0,
    2,
    5,
  ]);
  assert.deepEqual(Array.from(await cpu.selectKeep(Float32Array.of(2, 2, 2, 2), 2)), [2, 3]);
  const rand = rng(4);
  for (const n of [1, 5, 17, 100, 1000]) {
    const scores = Float32Array.from({ length: n }, () => Math.floor(rand() * 6) - 2); // many ties
    for (const drop of [0, 1, Math.floor(n / 2), n - 1, n]) {
      assert.deepEqual(
        await cpu.selectKeep(scores, drop),
        selectRef(scores, 1, drop),
        `n ${n} drop ${drop}`,
      );
    }
  }
});

Deno.test("cpu: selectKeepPerGroup drops the lowest in every group", async () => {
  assert.deepEqual(
    Array.from(await cpu.selectKeepPerGroup(Float32Array.of(3, 1, 1, 0, -0, 5), 2, 1)),
    [0, 2, 4, 5],
  );
  const rand = rng(5);
  const scores = Float32Array.from({ length: 12 * 64 }, () => Math.floor(rand() * 8));
  for (const groups of [1, 2, 12, 64]) {
    const size = scores.length / groups;
    for (const drop of [0, 1, Math.floor(size / 3), size]) {
      assert.deepEqual(
        await cpu.selectKeepPerGroup(scores, groups, drop),
        selectRef(scores, groups, drop),
      );
    }
  }
});

Deno.test("cpu: gatherAxis copies raw elements of 1, 2, 4 and 8 bytes", async () => {
  const rand = rng(6);
  for (const size of [1, 2, 4, 8]) {
    for (const dims of SHAPES) {
      const bytes = Uint8Array.from(
        { length: dims.reduce((a, b) => a * b, 1) * size },
        () => rand() * 256,
      );
      for (let axis = 0; axis < dims.length; axis++) {
        const n = dims[axis];
        const indices = n === 0
          ? new Uint32Array()
          : Uint32Array.from({ length: n + 2 }, () => Math.floor(rand() * n));
        const got = await cpu.gatherAxis(bytes, dims, size, axis, indices);
        assert.deepEqual(
          got,
          gatherRef(bytes, dims, size, axis, indices),
          `size ${size} ${dims} axis ${axis}`,
        );
      }
    }
  }
});

Deno.test("cpu: invalid arguments reject with clear errors", async () => {
  const v = new Float32Array(6);
  await assert.rejects(cpu.channelLpScores(v, [2, 3], 2, 1), /axis 2 out of range/);
  await assert.rejects(cpu.channelLpScores(v, [2, 4], 0, 1), /do not match 6 elements/);
  await assert.rejects(cpu.channelLpScores(v, [2, 3], 0, 3 as 1), /p must be 1 or 2/);
  await assert.rejects(cpu.aggregate([v, new Float32Array(5)], "sum"), /length 5, expected 6/);
  await assert.rejects(cpu.groupScores(v, 4, "sum"), /equal groups/);
  await assert.rejects(cpu.groupScores(v, 2, "median" as "sum"), /unknown reduce/);
  await assert.rejects(cpu.selectKeep(v, 7), /cannot drop 7 of 6/);
  await assert.rejects(cpu.selectKeep(v, -1), /dropPerGroup must be an integer/);
  await assert.rejects(
    cpu.gatherAxis(new Uint8Array(6), [2, 3], 1, 1, Uint32Array.of(3)),
    /index 3 out of range/,
  );
  await assert.rejects(
    cpu.gatherAxis(new Uint8Array(6), [2, 3], 4, 1, Uint32Array.of(0)),
    /whole elements/,
  );
});

// ---------- GPU path ----------

const requireGpu = Deno.env.get("PRUNE_VIT_REQUIRE_GPU") === "1";
let gpu: ComputeCore | Error;
try {
  gpu = await createCore({ backend: "gpu" });
} catch (error) {
  gpu = error as Error;
}
const noGpu = gpu instanceof Error ? gpu.message : null;

/** Runs every op on both cores and asserts the same answers. */
async function compareCores(g: ComputeCore, c: ComputeCore, seed: number) {
  const rand = rng(seed);
  const dispatched = async (what: string, run: () => Promise<unknown>) => {
    const before = gpuDispatchCount(g)!;
    await run();
    assert.ok(gpuDispatchCount(g)! > before, `${what} ran no GPU dispatch`);
  };
  // Ops that must run on the GPU whatever the binding size (the rest may fall back).
  await dispatched("channelLpScores", () => g.channelLpScores(new Float32Array(96), [8, 12], 1, 2));
  await dispatched(
    "f16 channelLpScores",
    () => g.channelLpScores(new Uint16Array(96), [8, 12], 0, 1),
  );
  await dispatched("selectKeep", () => g.selectKeep(Float32Array.of(3, 1, 2), 1));
  await dispatched(
    "gatherAxis",
    () => g.gatherAxis(new Uint8Array(96), [8, 12], 1, 0, Uint32Array.of(1, 1)),
  );
  const shapes = [...SHAPES, [768, 64], [12, 64, 32], [3, 5000], [20000, 3]];
  for (const dims of shapes) {
    const n = dims.reduce((a, b) => a * b, 1);
    const f32 = randomF32(n, rand);
    const f16 = Uint16Array.from(
      { length: n },
      () => Math.floor(rand() * 0x7c00) | (rand() < 0.5 ? 0x8000 : 0),
    );
    for (let axis = 0; axis < dims.length; axis++) {
      for (const p of [1, 2] as const) {
        const what = `${dims} axis ${axis} p ${p}`;
        assertClose(
          await g.channelLpScores(f32, dims, axis, p),
          await c.channelLpScores(f32, dims, axis, p),
          1e-6,
          `f32 ${what}`,
        );
        assertClose(
          await g.channelLpScores(f16, dims, axis, p),
          await c.channelLpScores(f16, dims, axis, p),
          1e-6,
          `f16 ${what}`,
        );
        const unaligned = new Uint8Array(f32.byteLength + 1);
        unaligned.set(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength), 1);
        assertClose(
          await g.channelLpScores(new Float32Bytes(unaligned.subarray(1)), dims, axis, p),
          await c.channelLpScores(f32, dims, axis, p),
          1e-6,
          `f32 bytes ${what}`,
        );
      }
      const size = [1, 2, 4, 8][axis % 4];
      const bytes = Uint8Array.from({ length: n * 8 }, () => rand() * 256);
      const k = dims[axis];
      const indices = k === 0
        ? new Uint32Array()
        : Uint32Array.from({ length: k + 1 }, () => Math.floor(rand() * k));
      for (const s of [size, 4]) {
        const raw = bytes.subarray(0, n * s);
        assert.deepEqual(
          await g.gatherAxis(raw, dims, s, axis, indices),
          await c.gatherAxis(raw, dims, s, axis, indices),
          `gather ${s}B ${dims} axis ${axis}`,
        );
      }
    }
  }
  // Non-finite f16 values: the GPU path hands the call to the CPU.
  const special = Uint16Array.of(0x3c00, 0xfc00, 0x7e00, 0x4000);
  assertClose(
    await g.channelLpScores(special, [2, 2], 1, 2),
    await c.channelLpScores(special, [2, 2], 1, 2),
    0,
    "non-finite",
  );
  for (const n of [5, 100, 3072]) {
    const scores = Float32Array.from({ length: n }, () => Math.floor(rand() * 7) - 3);
    scores[0] = -0;
    scores[n - 1] = NaN;
    for (const drop of [1, Math.floor(n / 2), n - 1]) {
      assert.deepEqual(
        await g.selectKeep(scores, drop),
        await c.selectKeep(scores, drop),
        `selectKeep ${n} ${drop}`,
      );
    }
  }
  const heads = Float32Array.from({ length: 12 * 64 }, () => Math.floor(rand() * 5));
  assert.deepEqual(
    await g.selectKeepPerGroup(heads, 12, 16),
    await c.selectKeepPerGroup(heads, 12, 16),
  );
  assert.deepEqual(await g.groupScores(heads, 12, "mean"), await c.groupScores(heads, 12, "mean"));
  assert.deepEqual(
    await g.aggregate([heads, heads], "max"),
    await c.aggregate([heads, heads], "max"),
  );
}

Deno.test({
  name: noGpu === null
    ? "gpu: WebGPU path gives the CPU answers (gather bit-exact, scores within 1e-6)"
    : requireGpu
    ? `gpu: FAILS, PRUNE_VIT_REQUIRE_GPU=1 but no WebGPU adapter (${noGpu})`
    : `gpu: IGNORED, no WebGPU adapter (${noGpu}); PRUNE_VIT_REQUIRE_GPU=1 makes this fail`,
  ignore: noGpu !== null && !requireGpu,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    if (gpu instanceof Error) throw new Error(`PRUNE_VIT_REQUIRE_GPU=1 but no GPU: ${gpu.message}`);
    const g = gpu;
    await t.step(
      "createCore() picks the gpu for a hardware adapter, cpu for a software one",
      async () => {
        // deno-lint-ignore no-explicit-any
        const adapter = await (navigator as any).gpu.requestAdapter();
        const software = !!(adapter?.info?.isFallbackAdapter ?? adapter?.isFallbackAdapter);
        const auto = await createCore();
        assert.equal(auto.backend, software ? "cpu" : "gpu");
        auto.dispose();
        assert.equal(g.backend, "gpu");
      },
    );
    await t.step("device-sized bindings", () => compareCores(g, cpu, 7));
    await t.step("4 KiB bindings: chunked rows, chunked channels and CPU fallbacks", async () => {
      const small = await createCore({ backend: "gpu", gpuChunkBytes: 4096 });
      try {
        await compareCores(small, cpu, 8);
      } finally {
        small.dispose();
      }
    });
    await t.step(
      "by size: large scores on the GPU, small ones and gathers on the CPU",
      async () => {
        const bySize = await createCore({ backend: "gpu", gpuCalls: "by-size" });
        try {
          const calls = async (run: () => Promise<unknown>) => {
            const before = gpuDispatchCount(bySize)!;
            const answer = await run();
            return { answer, dispatched: gpuDispatchCount(bySize)! > before };
          };
          const small = new Uint16Array(64 * 64).fill(0x3c00);
          const large = new Uint16Array(8 * 2 ** 20).fill(0x3c00); // 16 MiB of float16 ones
          const s = await calls(() => bySize.channelLpScores(small, [64, 64], 1, 2));
          assert.deepEqual([s.dispatched, (s.answer as Float32Array)[0]], [false, 64]);
          const l = await calls(() => bySize.channelLpScores(large, [2048, 4096], 1, 2));
          assert.deepEqual([l.dispatched, (l.answer as Float32Array)[0]], [true, 2048]);
          const bytes = new Uint8Array(large.buffer);
          const gathered = await calls(() =>
            bySize.gatherAxis(bytes, [2048, 4096], 2, 1, Uint32Array.of(3))
          );
          assert.deepEqual([gathered.dispatched, (gathered.answer as Uint8Array).length], [
            false,
            2048 * 2,
          ]);
        } finally {
          bySize.dispose();
        }
      },
    );
    g.dispose();
    await assert.rejects(g.selectKeep(Float32Array.of(1, 2), 1), /after dispose/);
  },
});

Deno.test("createCore: auto asks for no adapter when every tensor is below the GPU's sizes", async () => {
  let asked = 0;
  const own = Object.getOwnPropertyDescriptor(navigator, "gpu");
  Object.defineProperty(navigator, "gpu", {
    configurable: true,
    value: {
      requestAdapter() {
        asked++;
        return Promise.resolve(null);
      },
    },
  });
  try {
    const small = await createCore({ largestBytes: 9 << 20 });
    assert.equal(small.backend, "cpu");
    small.dispose();
    assert.equal(asked, 0);
    const large = await createCore({ largestBytes: 64 << 20 });
    assert.equal(large.backend, "cpu"); // no adapter
    large.dispose();
    assert.equal(asked, 1);
  } finally {
    if (own) Object.defineProperty(navigator, "gpu", own);
    else delete (navigator as { gpu?: unknown }).gpu;
  }
});
