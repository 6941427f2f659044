/**
 * Regression tests of failures found by probing the tool from outside: inputs that hung it, that
 * it read whole, that made it write a wrong model with exit code 0, or that left files behind.
 * Each case ends in a correct result or a clear error, quickly and in bounded memory.
 */
import assert from "node:assert/strict";
import { parseCliArgs, UsageError } from "../src/cli.ts";
import { readModelFile, writeModelFile } from "../src/onnx/model_io.ts";
import { DataType, type ModelProto, onnx } from "../src/onnx/proto.ts";
import { PruneError } from "../src/errors.ts";
import { buildMlpModel } from "./helpers/onnx_builders.ts";
import { loadCalibration } from "../src/calibration/inputs.ts";
import { encodeNpy } from "../src/calibration/npy.ts";
import { loadImage } from "../src/calibration/images.ts";
import { prune } from "../src/prune.ts";
import { createCore } from "../src/core/mod.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { loadOrt } from "../src/runtime/ort.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const core = await createCore({ backend: "cpu" });

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prune-vit-reliability-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function weights(m: ModelProto): Uint8Array {
  return m.graph!.initializer!.find((t) => t.name === "W")!.rawData!;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function rejectsWith(p: Promise<unknown>, code: string, ...parts: (string | RegExp)[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PruneError, `a PruneError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const part of parts) {
      if (typeof part === "string") assert.ok(e.message.includes(part), e.message);
      else assert.match(e.message, part);
    }
    return true;
  });
}

Deno.test("concurrent writes of one output with external data leave a model with its own data", async () => {
  await inTempDir(async (dir) => {
    // Writers of different sizes: their renames interleave.
    const models = [64, 128, 256, 64, 512, 128].map((n, i) => {
      const m = buildMlpModel(n, 64);
      weights(m).fill(i);
      return m;
    });
    const out = `${dir}/out.onnx`;
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        models.map((m) => writeModelFile(m, out, { externalData: { sizeThreshold: 100 } })),
      );
      const back = await readModelFile(out);
      const w = weights(back);
      assert.ok(
        models.some((m) => sameBytes(w, weights(m))),
        `round ${round}: the model's weights are no run's`,
      );
      // Only the data file of the model in place remains.
      const data = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".data"));
      assert.equal(data.length, 1, data.map((e) => e.name).join(", "));
    }
  });
});

Deno.test("a target share above 100% (or a fractional count) is a usage error", () => {
  for (const value of ["150%", "101%", "100%", "1.5", "1", "2.5"]) {
    for (const option of ["--target-params", "--target-macs"]) {
      assert.throws(
        () => parseCliArgs(["m.onnx", option, value]),
        (e: unknown) => e instanceof UsageError && e.message.includes(option),
        `${option} ${value}`,
      );
    }
  }
  // Shares below 100% and whole counts stay valid.
  for (const value of ["50%", "0.5", "25M", "1.2G", "300000"]) {
    const parsed = parseCliArgs(["m.onnx", "--target-params", value]);
    assert.ok(parsed !== "help" && parsed !== "version" && parsed.target?.params! > 0);
  }
});

Deno.test("NaN calibration data is refused, naming the file or the batch", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const images = new Float32Array(8 * 28 * 28).map((_, i) => (i % 17) / 17);
  images[3 * 784 + 100] = NaN;
  await inTempDir(async (dir) => {
    const file = `${dir}/calib.npy`;
    await Deno.writeFile(
      file,
      encodeNpy({ dtype: "float32", shape: [8, 1, 28, 28], data: images }),
    );
    const batches = await loadCalibration({ files: [file] }, decodeModel(bytes), {
      batchSize: 4,
      samples: 8,
    });
    await rejectsWith(
      (async () => {
        for await (const _ of batches) { /* read every batch */ }
      })(),
      "bad-calibration",
      file,
      /not finite/,
    );
  });
  // Batches handed over by a library caller: the statistics are checked, batch by batch.
  const ort = await loadOrt();
  const feeds = [0, 1].map((b) => ({
    input: new ort.Tensor("float32", images.slice(b * 4 * 784, (b + 1) * 4 * 784), [4, 1, 28, 28]),
  }));
  for (
    const options of [
      { compensation: "bias" as const },
      { compensation: "reweight" as const },
      { criterion: "wanda" as const },
      { criterion: "flap" as const },
    ]
  ) {
    await rejectsWith(
      prune(bytes, { pruningRatio: 0.5, ...options, calibration: feeds, core }),
      "bad-calibration",
      "calibration batch 1",
      /not finite/,
    );
  }
});

/** Settles `p`, or fails after `seconds` (a hang is a failure, not a stuck test). */
async function within<T>(seconds: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${seconds} s`)), seconds * 1000);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** A model whose zero-element initializer E has its (empty) data in `location`. */
function modelWithExternal(location: string): Uint8Array {
  const m = buildMlpModel();
  m.graph!.initializer!.push(onnx.TensorProto.create({
    name: "E",
    dataType: DataType.FLOAT,
    dims: [0],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [{ key: "location", value: location }, { key: "length", value: "0" }],
  }));
  return encodeModel(m);
}

Deno.test("a FIFO as external data is refused at open time, naming it (it would block)", async () => {
  await inTempDir(async (dir) => {
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/pipe`] }).output();
    assert.equal(made.code, 0);
    await Deno.writeFile(`${dir}/m.onnx`, modelWithExternal("pipe"));
    await rejectsWith(
      within(20, readModelFile(`${dir}/m.onnx`)),
      "bad-external-data",
      "'pipe'",
      "FIFO",
    );
  });
});

Deno.test("a directory as external data is refused at open time, naming it", async () => {
  await inTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeFile(`${dir}/m.onnx`, modelWithExternal("sub"));
    await rejectsWith(readModelFile(`${dir}/m.onnx`), "bad-external-data", "'sub'", "directory");
  });
});

Deno.test("a model file that cannot be one is refused from its size or first bytes", async () => {
  await inTempDir(async (dir) => {
    // 20 MB of text: refused from its first bytes.
    const text = `${dir}/notes.onnx`;
    await Deno.writeFile(text, new Uint8Array(20 << 20).fill(0x41));
    await rejectsWith(readModelFile(text), "not-onnx", text, "does not start like");
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/pipe.onnx`] }).output();
    assert.equal(made.code, 0);
    await rejectsWith(within(20, readModelFile(`${dir}/pipe.onnx`)), "not-onnx", "FIFO");
    // Sparse: no disk space and nothing read.
    const huge = `${dir}/huge.onnx`;
    const f = await Deno.open(huge, { write: true, create: true });
    await f.truncate(3 * 2 ** 30);
    f.close();
    await rejectsWith(within(20, readModelFile(huge)), "not-onnx", huge, "2 GiB");
  });
});

/** Starts a slow write of `output` and waits until its temp file exists. */
async function slowWrite(output: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./helpers/write_slowly.ts", import.meta.url).pathname, output],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const dir = output.slice(0, output.lastIndexOf("/"));
  await within(
    60,
    (async () => {
      while (![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".tmp"))) {
        await new Promise((r) => setTimeout(r, 20));
      }
    })(),
  );
  return child;
}

const temps = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp"));

for (const [signal, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
  Deno.test(`${signal} during a write removes its temp files`, async () => {
    await inTempDir(async (dir) => {
      const child = await slowWrite(`${dir}/out.onnx`);
      child.kill(signal);
      const status = await within(60, child.status);
      await child.stderr.cancel();
      assert.equal(status.code, code);
      assert.deepEqual(temps(dir), []);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
    });
  });
}

Deno.test("temp files of a killed run are removed by the next write into the folder", async () => {
  await inTempDir(async (dir) => {
    const child = await slowWrite(`${dir}/out.onnx`);
    child.kill("SIGKILL");
    await within(60, child.status);
    await child.stderr.cancel();
    const left = temps(dir);
    assert.ok(left.length > 0, "SIGKILL leaves the temp file");
    const result = await writeModelFile(buildMlpModel(), `${dir}/other.onnx`);
    assert.deepEqual(
      result.leftovers.removed.map((p) => p.slice(dir.length + 1)).sort(),
      left.sort(),
    );
    assert.deepEqual(temps(dir), []);
  });
});

Deno.test("attributes of the wrong type or out of range are refused naming the node", async () => {
  const bytes = await Deno.readFile(new URL("timm_vit.onnx", FIXTURES));
  const cases: [string, (m: ModelProto) => string][] = [
    ["Softmax axis -4294967297", (m) => {
      const n = m.graph!.node!.find((n) => n.opType === "Softmax")!;
      n.attribute!.find((a) => a.name === "axis")!.i = -4294967297;
      return n.name!;
    }],
    ["Transpose perm as FLOATS", (m) => {
      const n = m.graph!.node!.filter((n) => n.opType === "Transpose").at(-1)!;
      const a = n.attribute!.find((a) => a.name === "perm")!;
      a.type = 6;
      a.floats = (a.ints ?? []).map(Number);
      a.ints = [];
      return n.name!;
    }],
    ["Transpose perm not a permutation", (m) => {
      const n = m.graph!.node!.find((n) => n.opType === "Transpose")!;
      n.attribute!.find((a) => a.name === "perm")!.ints = [0, 0, 1];
      return n.name!;
    }],
  ];
  for (const [what, edit] of cases) {
    const model = decodeModel(bytes);
    const node = edit(model);
    await rejectsWith(
      prune(encodeModel(model), { pruningRatio: 0.5, pruneNumHeads: true, core }),
      "bad-attribute",
      `"${node}"`,
    ).catch((e) => {
      throw new Error(`${what}: ${e.message}`);
    });
  }
});

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A real gray PNG of `side` × `side` black pixels (it compresses to almost nothing). */
async function blackPng(side: number): Promise<Uint8Array> {
  const row = new Uint8Array(1 + side); // filter byte 0, then black pixels
  const rows = ReadableStream.from((function* () {
    for (let y = 0; y < side; y++) yield row;
  })());
  const idat = new Uint8Array(
    await new Response(rows.pipeThrough(new CompressionStream("deflate"))).arrayBuffer(),
  );
  const chunk = (type: string, data: Uint8Array) => {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    out.set(new TextEncoder().encode(type), 4);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, side);
  new DataView(ihdr.buffer).setUint32(4, side);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit gray
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

Deno.test("an image that declares too many pixels is refused before it is decoded", async () => {
  const small = loadImage(await blackPng(64), "small.png");
  assert.equal(small.width * small.height, 64 * 64);
  const bomb = await blackPng(10_000); // 100 megapixels in about 100 kB
  assert.ok(bomb.length < 1_000_000, `${bomb.length} bytes`);
  assert.throws(
    () => loadImage(bomb, "bomb.png"),
    (e: unknown) =>
      e instanceof PruneError && e.code === "bad-image" && e.message.includes("bomb.png") &&
      e.message.includes("10000 × 10000"),
  );
  // A JPEG's frame header says the same.
  const jpeg = new Uint8Array([
    0xff,
    0xd8,
    0xff,
    0xe0,
    0x00,
    0x04,
    0x00,
    0x00, // SOI, APP0 of 2 bytes
    0xff,
    0xc0,
    0x00,
    0x0b,
    0x08,
    0x75,
    0x30,
    0x75,
    0x30,
    0x01,
    0x01,
    0x11,
    0x00, // SOF0 30000²
    0xff,
    0xd9,
  ]);
  assert.throws(
    () => loadImage(jpeg, "bomb.jpg"),
    (e: unknown) => e instanceof PruneError && e.message.includes("30000 × 30000"),
  );
});

/** The fixture ViT with a chain of `n` `op` nodes (Add: of a shared zero) in block 0's MLP. */
async function vitWithChain(n: number, op: "Identity" | "Add"): Promise<Uint8Array> {
  const m = decodeModel(await Deno.readFile(new URL("timm_vit.onnx", FIXTURES)));
  const g = m.graph!;
  const at = g.node!.findIndex((x) => x.name === "/blocks/blocks.0/mlp/fc1/Add");
  const x = g.node![at].output![0];
  g.initializer!.push(onnx.TensorProto.create({ name: "zero", dataType: 1, floatData: [0] }));
  const chain = Array.from({ length: n }, (_, i) =>
    onnx.NodeProto.create({
      name: `chain_${i}`,
      opType: op,
      input: [i ? `chain_${i - 1}` : x, ...(op === "Add" ? ["zero"] : [])],
      output: [`chain_${i}`],
    }));
  for (const node of g.node!) node.input = node.input!.map((s) => (s === x ? `chain_${n - 1}` : s));
  g.node = [...g.node!.slice(0, at + 1), ...chain, ...g.node!.slice(at + 1)];
  return encodeModel(m);
}

Deno.test("a 20k-node chain inside an MLP prunes (no recursion, no slow load check)", async () => {
  await loadOrt(); // the load check is made where onnxruntime is loaded: here it must be left out
  for (const op of ["Identity", "Add"] as const) {
    const { report } = await within(
      120,
      prune(await vitWithChain(20_000, op), { pruningRatio: 0.5, core }),
    );
    assert.ok(report.params.after < report.params.before, op);
    assert.ok(report.notes.some((n) => n.includes("load check left out")), op);
  }
});

Deno.test("a model with 100k tiny initializers prunes, its load check left out with a note", async () => {
  await loadOrt();
  const m = decodeModel(await Deno.readFile(new URL("timm_vit.onnx", FIXTURES)));
  m.graph!.initializer = [
    ...m.graph!.initializer!,
    ...Array.from(
      { length: 100_000 },
      (_, i) =>
        onnx.TensorProto.create({ name: `tiny_${i}`, dataType: 1, dims: [1], floatData: [i] }),
    ),
  ];
  const { report } = await within(120, prune(encodeModel(m), { pruningRatio: 0.5, core }));
  assert.ok(report.notes.some((n) => n.includes("load check left out")), report.notes.join("; "));
});

export { rejectsWith };
