import assert from "node:assert/strict";
import {
  countMacs,
  countParams,
  macsBreakdown,
  measureModel,
  tensorShapes,
} from "../src/metrics.ts";
import { PruneError } from "../src/errors.ts";
import { DataType, type ModelProto, onnx } from "../src/onnx/proto.ts";
import { makeTensor } from "../src/onnx/tensor.ts";
import { readModelFile } from "../src/onnx/model_io.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

// ---------------------------------------------------------------------------------------------
// Hand-built models

function floatInit(name: string, dims: number[]) {
  const n = dims.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: n }, (_, i) => ((i * 7) % 11) / 11 - 0.5);
  return makeTensor(name, DataType.FLOAT, dims, new Uint8Array(values.buffer));
}

function int64Init(name: string, values: number[]) {
  const b = BigInt64Array.from(values.map(BigInt));
  return makeTensor(name, DataType.INT64, [values.length], new Uint8Array(b.buffer));
}

function input(name: string, dims: (number | string)[], elemType: number = DataType.FLOAT) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }),
        },
      },
    },
  });
}

function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, number | number[]> = {},
) {
  const attribute = Object.entries(attrs).map(([name, v]) =>
    Array.isArray(v)
      ? onnx.AttributeProto.create({ name, type: 7, ints: v })
      : onnx.AttributeProto.create({ name, type: 2, i: v })
  );
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    attribute,
    name: outputs[0],
  });
}

function model(
  nodes: ReturnType<typeof node>[],
  inputs: ReturnType<typeof input>[],
  outputs: string[],
  inits: ReturnType<typeof floatInit>[],
): ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    producerName: "metrics_test",
    graph: {
      name: "g",
      node: nodes,
      input: inputs,
      output: outputs.map((name) => onnx.ValueInfoProto.create({ name })),
      initializer: inits,
    },
  });
}

/**
 * x[B,4,8] → MatMul W[8,16] (4·8·16 = 512 MACs) → Add bias → y.
 * att = MatMul(x, Transpose(x)) : [B,4,4], K = 8 → 128 MACs (activation × activation).
 * Gemm z = flat[B,32] · G[3,32]ᵀ (transB) → 96 MACs per batch item.
 * Conv c: X[1,4,5,5], W[6,2,3,3], group 2, pads 1 → out [1,6,5,5] = 150 × 18 = 2700 MACs.
 * ConvTranspose: ct[1,2,3,3], W[2,4,2,2], stride 2 → 18 input elements × 16 = 288 MACs.
 */
function tinyModel(): ModelProto {
  const nodes = [
    node("MatMul", ["x", "W"], ["xw"]),
    node("Add", ["xw", "b"], ["y"]),
    node("Transpose", ["x"], ["xt"], { perm: [0, 2, 1] }),
    node("MatMul", ["x", "xt"], ["att"]),
    node("Identity", ["b"], ["b_copy"]), // exporter-deduplicated parameter: counts again
    node("Add", ["y", "b_copy"], ["y2"]),
    node("Reshape", ["x", "shape"], ["flat"]),
    node("Gemm", ["flat", "G"], ["z"], { transB: 1 }),
    node("Conv", ["img", "CW"], ["c"], { group: 2, pads: [1, 1, 1, 1] }),
    node("ConvTranspose", ["ct", "TW"], ["d"], { strides: [2, 2] }),
    onnx.NodeProto.create({
      opType: "Constant",
      output: ["scale"],
      attribute: [{ name: "value", type: 4, t: floatInit("", []) }],
    }),
    onnx.NodeProto.create({
      opType: "Constant",
      output: ["table"],
      attribute: [{ name: "value", type: 4, t: floatInit("", [2, 3]) }],
    }),
    node("Mul", ["y2", "scale"], ["y3"]),
  ];
  return model(
    nodes,
    [input("x", ["batch", 4, 8]), input("img", [1, 4, 5, 5]), input("ct", [1, 2, 3, 3])],
    ["y3", "att", "z", "c", "d", "table"],
    [
      floatInit("W", [8, 16]),
      floatInit("b", [16]),
      floatInit("G", [3, 32]),
      floatInit("CW", [6, 2, 3, 3]),
      floatInit("TW", [2, 4, 2, 2]),
      int64Init("shape", [-1, 32]),
    ],
  );
}

Deno.test("countParams: float initializers, Identity copies and float Constants; not ints or scalars", () => {
  // W 128 + b 16 + b_copy 16 + G 96 + CW 108 + TW 32 + table 6; not shape (int64), not scale.
  assert.equal(countParams(tinyModel()), 128 + 16 + 16 + 96 + 108 + 32 + 6);
});

Deno.test("tensorShapes: batch-1 shapes of every tensor from one onnxruntime run", async () => {
  const shapes = await tensorShapes(tinyModel());
  assert.deepEqual(shapes.get("x"), [1, 4, 8]);
  assert.deepEqual(shapes.get("W"), [8, 16]);
  assert.deepEqual(shapes.get("xw"), [1, 4, 16]);
  assert.deepEqual(shapes.get("att"), [1, 4, 4]);
  assert.deepEqual(shapes.get("z"), [1, 3]);
  assert.deepEqual(shapes.get("c"), [1, 6, 5, 5]);
  assert.deepEqual(shapes.get("d"), [1, 4, 6, 6]);
  assert.deepEqual(shapes.get("table"), [2, 3]);
});

Deno.test("countMacs: MatMul, activation MatMul, Gemm, grouped Conv, ConvTranspose", async () => {
  const m = tinyModel();
  const shapes = await tensorShapes(m);
  const b = macsBreakdown(m, shapes);
  assert.deepEqual(b, {
    matmul: 512,
    attention: 128,
    gemm: 96,
    conv: 2700,
    convTranspose: 288,
    total: 512 + 128 + 96 + 2700 + 288,
  });
  assert.equal(countMacs(m, shapes), b.total);
  assert.equal(countMacs(m, shapes, { attention: false }), b.total - 128);
});

Deno.test("tensorShapes: explicit batch / input shape", async () => {
  const m = tinyModel();
  const shapes = await tensorShapes(m, { batch: 3 });
  assert.deepEqual(shapes.get("att"), [3, 4, 4]);
  const macs = countMacs(m, shapes);
  // MatMuls and the Gemm scale with the batch of x; the conv inputs have a fixed batch of 1.
  assert.equal(macs, 3 * (512 + 128 + 96) + 2700 + 288);
});

Deno.test("tensorShapes: a symbolic non-batch dim defaults to 8 or takes the given size", async () => {
  const m = model(
    [node("MatMul", ["x", "W"], ["y"])],
    [input("x", ["batch", "seq", 8])],
    ["y"],
    [floatInit("W", [8, 2])],
  );
  assert.deepEqual((await tensorShapes(m)).get("y"), [1, 8, 2]);
  const shapes = await tensorShapes(m, { dimValues: { seq: 5 } });
  assert.deepEqual(shapes.get("y"), [1, 5, 2]);
  assert.equal(countMacs(m, shapes), 5 * 8 * 2);
  // A plain array is the shape of the first input.
  assert.deepEqual((await tensorShapes(m, [2, 3, 8])).get("y"), [2, 3, 2]);
  assert.deepEqual(await measureModel(m, { dimValues: { seq: 5 } }), { params: 16, macs: 80 });
});

Deno.test("tensorShapes: int64 inputs are fed zeros", async () => {
  const m = model(
    [node("Gather", ["E", "ids"], ["emb"]), node("MatMul", ["emb", "W"], ["y"])],
    [input("ids", ["batch", 6], DataType.INT64)],
    ["y"],
    [floatInit("E", [10, 4]), floatInit("W", [4, 3])],
  );
  const shapes = await tensorShapes(m);
  assert.deepEqual(shapes.get("y"), [1, 6, 3]);
  assert.equal(countMacs(m, shapes), 6 * 4 * 3);
  assert.equal(countParams(m), 40 + 12);
});

Deno.test("tensorShapes: a model onnxruntime cannot run is a PruneError", async () => {
  const m = model(
    [node("MatMul", ["x", "W"], ["y"])],
    [input("x", [1, 3])],
    ["y"],
    [floatInit("W", [4, 2])], // K mismatch
  );
  await assert.rejects(() => tensorShapes(m), PruneError);
});

// ---------------------------------------------------------------------------------------------
// Fixtures exported from PyTorch (tests/fixtures/fixtures.json)

interface FixtureEntry {
  file: string;
  params: number;
  macs?: number;
  config?: Record<string, number>;
  embed_dim?: number;
  blocks?: { num_heads: number; head_dim: number; mlp_dim: number }[];
}

let fixtures: Record<string, FixtureEntry> | undefined;
try {
  fixtures = JSON.parse(Deno.readTextFileSync(new URL("fixtures.json", FIXTURES))).fixtures;
} catch {
  fixtures = undefined;
}

/**
 * MACs of a plain ViT in our convention (matrix products only, attention products included):
 * patch conv + per block qkv, Q·Kᵀ, attn·V, proj, fc1, fc2 over T tokens + head on the cls token.
 */
function analyticVitMacs(f: FixtureEntry): number | undefined {
  const c = f.config ?? {};
  const img = c.img_size ?? c.image_size;
  const patch = c.patch_size;
  const dim = f.embed_dim ?? c.embed_dim ?? c.hidden_dim ?? c.hidden_size;
  const classes = c.num_classes ?? c.num_labels;
  const chans = c.in_chans ?? c.num_channels ?? 3;
  if (!img || !patch || !dim || !classes || !f.blocks) return undefined;
  const p = (img / patch) ** 2;
  const t = p + 1; // + cls token
  let macs = p * dim * chans * patch * patch + dim * classes;
  for (const b of f.blocks) {
    const inner = b.num_heads * b.head_dim;
    macs += t * dim * 3 * inner; // qkv
    macs += 2 * b.num_heads * t * t * b.head_dim; // Q·Kᵀ and attn·V
    macs += t * inner * dim; // proj
    macs += 2 * t * dim * b.mlp_dim; // fc1, fc2
  }
  return macs;
}

const PLAIN_VITS = ["timm_vit", "timm_vit_dynamo", "torchvision_vit", "hf_vit", "fmnist_vit"];

for (const name of PLAIN_VITS) {
  const entry = fixtures?.[name];
  let present = false;
  try {
    present = !!entry && Deno.statSync(new URL(entry.file, FIXTURES)).isFile;
  } catch { /* missing */ }
  Deno.test({
    name: present
      ? `fixture ${name}: params = torch sum(p.numel()), MACs ≈ torch_pruning count_ops`
      : `fixture ${name}: SKIPPED — tests/fixtures/fixtures.json or ${name}.onnx missing`,
    ignore: !present,
    fn: async () => {
      const f = entry!;
      const m = await readModelFile(new URL(f.file, FIXTURES).pathname);
      assert.equal(countParams(m), f.params, "params must equal PyTorch's sum(p.numel())");
      const shapes = await tensorShapes(m);
      const macs = countMacs(m, shapes);
      const expected = analyticVitMacs(f);
      if (expected !== undefined) assert.equal(macs, expected, "MACs vs the closed-form count");
      if (f.macs) {
        // Torch-Pruning also counts bias adds, norms, activations, softmax (see metrics.ts).
        const rel = Math.abs(macs - f.macs) / f.macs;
        assert.ok(
          rel < 0.05,
          `MACs ${macs} vs torch_pruning ${f.macs}: ${(rel * 100).toFixed(1)}%`,
        );
      }
    },
  });
}
