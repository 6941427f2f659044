/**
 * The distillation flags end to end: `deno run -A mod.ts … --distill-steps N` in a temporary
 * folder, on the timm ViT fixture with a .npy calibration file; and the usage errors.
 */
import assert from "node:assert/strict";
import { decodeModel } from "../src/onnx/model_io.ts";

const ROOT = new URL("../", import.meta.url);
const ENTRY = new URL("mod.ts", ROOT).pathname;
const FIXTURE = new URL("tests/fixtures/timm_vit.onnx", ROOT).pathname;

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ENTRY, ...args],
    cwd: ROOT.pathname,
    env: { ONNXRUNTIME_NODE_INSTALL: "skip", NO_COLOR: "1", PRUNE_VIT_DEBUG: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A float32 .npy file of `count` seeded 3×32×32 images. */
function npy(count: number): Uint8Array {
  const x = new Float32Array(count * 3 * 32 * 32).map((_, i) => Math.sin(i * 0.37) * 1.5);
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${count}, 3, 32, 32), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  const head = new TextEncoder().encode(header + " ".repeat(pad) + "\n");
  const out = new Uint8Array(10 + head.length + x.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, head.length & 255, head.length >> 8]);
  out.set(head, 10);
  out.set(new Uint8Array(x.buffer), 10 + head.length);
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_distill_" });
  try {
    await Deno.copyFile(FIXTURE, `${dir}/model.onnx`);
    await Deno.writeFile(`${dir}/cal.npy`, npy(40));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli: --distill-steps trains the pruned model, with a progress bar and a report line", async () => {
  await withDir(async (dir) => {
    const common = [
      `${dir}/model.onnx`,
      "--prune-num-heads",
      "--head-pruning-ratio",
      "0.5",
      "--pruning-ratio",
      "0.5",
      "--calibration",
      `${dir}/cal.npy`,
      "--samples",
      "40",
      "--no-search",
    ];
    const plain = await cli([...common, "-o", `${dir}/plain.onnx`, "--quiet"]);
    assert.equal(plain.code, 0, plain.stderr);
    const r = await cli([
      ...common,
      "-o",
      `${dir}/healed.onnx`,
      "--distill-steps",
      "6",
      "--distill-batch-size",
      "8",
      "--lr",
      "1e-3",
      "--seed",
      "2",
    ]);
    assert.equal(r.code, 0, r.stderr);
    // Block outputs matched, with their loss weighted 3 and (the default) 1.
    const withHidden = (out: string, ...flags: string[]) =>
      cli([
        ...common,
        "-o",
        `${dir}/${out}`,
        "--distill-steps",
        "4",
        "--distill-batch-size",
        "8",
        "--distill-hidden",
        ...flags,
      ]);
    const hidden = await withHidden("hidden.onnx", "--distill-hidden-weight", "3");
    assert.equal(hidden.code, 0, hidden.stderr);
    assert.match(
      hidden.stdout,
      /distilled: \d+ steps \(.*\) on 36 samples, \d+ block outputs matched, /,
    );
    // The weight reaches the loss: weight 1 trains other weights.
    const weightOne = await withHidden("hidden1.onnx");
    assert.equal(weightOne.code, 0, weightOne.stderr);
    assert.notDeepEqual(
      await Deno.readFile(`${dir}/hidden.onnx`),
      await Deno.readFile(`${dir}/hidden1.onnx`),
    );
    assert.match(r.stderr, /Processed 6\/6 distillation steps .* loss \d/);
    assert.match(r.stdout, /distilled: \d+ steps \(.*\) on 36 samples, held-out KL at T=2 /);
    const [a, b] = [
      decodeModel(await Deno.readFile(`${dir}/plain.onnx`)),
      decodeModel(await Deno.readFile(`${dir}/healed.onnx`)),
    ];
    // Same architecture, other weights.
    assert.deepEqual(
      a.graph!.initializer!.map((t) => [t.name, t.dims?.map(Number)]),
      b.graph!.initializer!.map((t) => [t.name, t.dims?.map(Number)]),
    );
    assert.notDeepEqual(a.graph!.initializer![0].rawData, b.graph!.initializer![0].rawData);
  });
});

Deno.test("cli: distillation flags are checked, naming the flag", async () => {
  await withDir(async (dir) => {
    const base = [`${dir}/model.onnx`, "-o", `${dir}/out.onnx`, "--pruning-ratio", "0.5"];
    const cal = ["--calibration", `${dir}/cal.npy`];
    const cases: [string[], RegExp][] = [
      [["--lr", "1e-3"], /--lr goes with --distill-steps/],
      [["--distill-hidden", ...cal], /--distill-hidden goes with --distill-steps/],
      [["--seed", "1", ...cal], /--seed goes with --distill-steps/],
      [
        ["--distill-steps", "5", "--distill-hidden-weight", "3", ...cal],
        /--distill-hidden-weight goes with --distill-hidden/,
      ],
      [
        ["--distill-steps", "5", "--distill-hidden", "--distill-hidden-weight", "0", ...cal],
        /--distill-hidden-weight: "0" is not a positive number/,
      ],
      [["--distill-steps", "5"], /--distill-steps needs --calibration/],
      [["--distill-steps", "0", ...cal], /--distill-steps: "0" is not a positive integer/],
      [["--distill-steps", "5", "--lr", "-1", ...cal], /--lr: "-1" is not a positive number/],
      [["--distill-steps", "5", "--seed", "x", ...cal], /--seed: "x" is not a whole number/],
      [["--distill-steps", "5", "--distill-loss", "l1", ...cal], /--distill-loss: "l1" is not/],
      [["--distill-steps", "5", "--dry-run", ...cal], /--distill-steps cannot go with --dry-run/],
    ];
    for (const [flags, pattern] of cases) {
      const r = await cli([...base, ...flags]);
      assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    }
  });
});
