/**
 * End-to-end tests of the command line: every case spawns `deno run -A mod.ts …` in a fresh
 * temporary folder. `PRUNE_VIT_CLI` may point at another entry script (development only).
 */
import assert from "node:assert/strict";
import { DataType, onnx } from "../src/onnx/proto.ts";
import { makeTensor } from "../src/onnx/tensor.ts";
import { encodeNpy } from "../src/calibration/npy.ts";

const ROOT = new URL("../", import.meta.url);
const ENTRY = Deno.env.get("PRUNE_VIT_CLI") ?? new URL("mod.ts", ROOT).pathname;
const FIXTURE = new URL("tests/fixtures/timm_vit.onnx", ROOT).pathname;

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

const HAVE_CLI = exists(ENTRY);
const HAVE_ENGINE = exists(new URL("src/prune.ts", ROOT).pathname);
const HAVE_FIXTURE = exists(FIXTURE);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ENTRY, ...args],
    cwd: opts.cwd ?? ROOT.pathname,
    env: { ONNXRUNTIME_NODE_INSTALL: "skip", NO_COLOR: "1", PRUNE_VIT_DEBUG: "", ...opts.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) } as Run;
}

/** A small valid ONNX model (x[1,64] · W[64,64]) whose bytes are mostly tensor data. */
function tinyModelBytes(): Uint8Array {
  const w = new Float32Array(64 * 64).map((_, i) => (i % 13) / 13);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "tiny",
      node: [{ opType: "MatMul", input: ["x", "W"], output: ["y"], name: "mm" }],
      input: [{
        name: "x",
        type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }, { dimValue: 64 }] } } },
      }],
      output: [{ name: "y" }],
      initializer: [makeTensor("W", DataType.FLOAT, [64, 64], new Uint8Array(w.buffer))],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A temp folder holding `model.onnx` (fixture or tiny model); removed after `fn`. */
async function withDir(fn: (dir: string, model: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_cli_" });
  try {
    const model = `${dir}/model.onnx`;
    await Deno.writeFile(model, HAVE_FIXTURE ? await Deno.readFile(FIXTURE) : tinyModelBytes());
    await fn(dir, model);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function listing(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** The common contract of every failing run. */
function assertFailed(r: Run, code: 1 | 2, pattern: RegExp, label: string) {
  assert.equal(r.code, code, `${label}: exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^error: /m, `${label}: stderr starts with "error: "`);
  assert.match(r.stderr, pattern, `${label}: message names the problem`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${label}: no stack trace`);
  assert.equal(r.stdout, "", `${label}: nothing on stdout`);
}

function cliTest(name: string, fn: () => Promise<void>, needs: { engine?: boolean } = {}) {
  const missing = !HAVE_CLI
    ? "mod.ts missing"
    : needs.engine && !HAVE_ENGINE
    ? "src/prune.ts missing"
    : needs.engine && !HAVE_FIXTURE
    ? "tests/fixtures/timm_vit.onnx missing"
    : "";
  Deno.test({
    name: missing ? `cli: ${name} — SKIPPED (${missing})` : `cli: ${name}`,
    ignore: missing !== "",
    fn,
  });
}

cliTest("--help prints usage and exits 0", async () => {
  for (const flag of ["--help", "-h"]) {
    const r = await cli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /usage:/);
    for (const opt of ["--output", "--pruning-ratio", "--head-pruning-ratio", "--dry-run"]) {
      assert.ok(r.stdout.includes(opt), `help mentions ${opt}`);
    }
  }
});

cliTest("--version prints the version of deno.json", async () => {
  const { version } = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const r = await cli(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
});

cliTest("missing input argument is a usage error", async () => {
  await withDir(async (dir) => {
    const before = listing(dir);
    assertFailed(await cli([], { cwd: dir }), 2, /missing input/, "no input");
    assertFailed(
      await cli(["--pruning-ratio", "0.3"], { cwd: dir }),
      2,
      /missing input/,
      "opts only",
    );
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("a file that does not exist", async () => {
  await withDir(async (dir) => {
    const before = listing(dir);
    const r = await cli([`${dir}/nope.onnx`, "--pruning-ratio", "0.5"]);
    assertFailed(r, 1, /nope\.onnx/, "missing file");
    assert.match(r.stderr, /no such file|not found|does not exist/i);
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("a file that is not ONNX (random bytes)", async () => {
  await withDir(async (dir) => {
    const bad = `${dir}/random.onnx`;
    await Deno.writeFile(bad, crypto.getRandomValues(new Uint8Array(4096)));
    const before = listing(dir);
    const r = await cli([bad, "--pruning-ratio", "0.5"]);
    assertFailed(r, 1, /random\.onnx/, "random bytes");
    assert.match(r.stderr, /onnx/i);
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("a truncated ONNX file (first half)", async () => {
  await withDir(async (dir, model) => {
    const bytes = await Deno.readFile(model);
    const cut = `${dir}/half.onnx`;
    await Deno.writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const before = listing(dir);
    const r = await cli([cut, "--pruning-ratio", "0.5"]);
    assertFailed(r, 1, /half\.onnx/, "truncated");
    assert.match(r.stderr, /truncat|incomplete|cut short|not an onnx/i);
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("bad ratios name the option and the value", async () => {
  await withDir(async (dir, model) => {
    const before = listing(dir);
    const cases: [string[], RegExp][] = [
      [["--pruning-ratio", "1.5"], /--pruning-ratio.*1\.5/],
      [["--pruning-ratio", "-0.1"], /--pruning-ratio.*-0\.1/],
      [["--pruning-ratio=-0.1"], /--pruning-ratio.*-0\.1/],
      [["--pruning-ratio", "abc"], /--pruning-ratio.*abc/],
      [["--pruning-ratio", "1"], /--pruning-ratio.*1/],
      [["--pruning-ratio", ""], /--pruning-ratio/],
      [["--head-pruning-ratio", "2"], /--head-pruning-ratio.*2/],
      [["--head-pruning-ratio", "0.5x"], /--head-pruning-ratio.*0\.5x/],
      [["--layer-ratio", "blocks.0=1.2"], /--layer-ratio.*1\.2/],
      [["--pruning-ratio"], /--pruning-ratio needs a value/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli([model, ...args], { cwd: dir })));
    runs.forEach((r, i) => assertFailed(r, 2, cases[i][1], cases[i][0].join(" ")));
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("other bad option values", async () => {
  await withDir(async (dir, model) => {
    const before = listing(dir);
    const cases: [string[], RegExp][] = [
      [["--round-to", "0"], /--round-to.*0/],
      [["--round-to", "1.5"], /--round-to.*1\.5/],
      [["--round-to", "-8"], /--round-to.*-8/],
      [["--num-heads", "qkv"], /--num-heads.*qkv.*NODE=H/],
      [["--num-heads", "qkv=0"], /--num-heads.*0/],
      [["--num-heads", "qkv=three"], /--num-heads.*three/],
      [["--num-heads", "=4"], /--num-heads.*=4/],
      [["--layer-ratio", "fc1"], /--layer-ratio.*fc1.*NODE=R/],
      [["--criterion", "l3"], /--criterion.*l3/],
      [["--keep-heads", " "], /--keep-heads: empty name/],
      [["--target-speedup", "2", "--latency-runtime", "tpu"], /--latency-runtime.*tpu/],
      [["--latency-runtime", "wasm"], /--latency-runtime goes with a --target/],
      [["--dim", "seq"], /--dim.*seq.*NAME=N/],
      [["--dim", "seq=-1"], /--dim.*-1/],
      [["--backend", "tpu"], /--backend.*tpu/],
      [["--prune-num-heads", "--prune-head-dims"], /--prune-num-heads.*--prune-head-dims/],
      [["--frobnicate"], /unknown option --frobnicate/],
      [["-z"], /unknown option -z/],
      [["--json=yes"], /--json takes no value/],
      [[`${dir}/second.onnx`], /one input model/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli([model, ...args], { cwd: dir })));
    runs.forEach((r, i) => assertFailed(r, 2, cases[i][1], cases[i][0].join(" ")));
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("output == input is refused", async () => {
  await withDir(async (dir, model) => {
    const original = await Deno.readFile(model);
    const before = listing(dir);
    const runs = await Promise.all([
      cli([model, "-o", model, "--pruning-ratio", "0.5"]),
      cli(["model.onnx", "--output", "./model.onnx", "--pruning-ratio", "0.5"], { cwd: dir }),
      cli(["model.onnx", "--output", `${dir}/model.onnx`], { cwd: dir }),
    ]);
    for (const r of runs) assertFailed(r, 2, /model\.onnx.*input|input.*model\.onnx/, "out==in");
    assert.deepEqual(listing(dir), before);
    assert.deepEqual(await Deno.readFile(model), original, "input untouched");
  });
});

cliTest("output == input through a symlink is refused", async () => {
  await withDir(async (dir, model) => {
    await Deno.symlink(model, `${dir}/link.onnx`);
    const before = listing(dir);
    const r = await cli([model, "-o", `${dir}/link.onnx`, "--pruning-ratio", "0.5"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^error: .*refusing/m);
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("output in a missing folder", async () => {
  await withDir(async (dir, model) => {
    const before = listing(dir);
    const r = await cli([model, "-o", `${dir}/no/such/dir/out.onnx`, "--pruning-ratio", "0.5"]);
    assertFailed(r, 1, /no\/such\/dir/, "missing folder");
    assert.match(r.stderr, /does not exist/);
    assert.deepEqual(listing(dir), before);
  });
});

cliTest("PRUNE_VIT_DEBUG=1 adds the stack trace", async () => {
  await withDir(async (dir) => {
    const r = await cli([`${dir}/nope.onnx`], { env: { PRUNE_VIT_DEBUG: "1" } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: /m);
    assert.match(r.stderr, /^\s+at /m);
  });
});

// ---------------------------------------------------------------------------------------------
// Successful runs (need the engine and the timm fixture)

async function runsInOrt(path: string): Promise<number[]> {
  const { createSession, loadOrt } = await import("../src/runtime/ort.ts");
  const ort = await loadOrt();
  const session = await createSession(await Deno.readFile(path));
  const name = session.inputNames[0];
  const x = new ort.Tensor("float32", new Float32Array(3 * 32 * 32).fill(0.1), [1, 3, 32, 32]);
  const out = await session.run({ [name]: x });
  const dims = [...out[session.outputNames[0]].dims];
  await session.release();
  return dims;
}

cliTest("prunes timm_vit: writes a model onnxruntime runs, prints the report", async () => {
  await withDir(async (dir, model) => {
    const r = await cli([
      "model.onnx",
      "--pruning-ratio",
      "0.5",
      "--prune-num-heads",
      "--head-pruning-ratio",
      "0.5",
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const out = `${dir}/model.pruned.onnx`;
    assert.ok(exists(out), "default output <input>.pruned.onnx");
    assert.match(r.stdout, /params .*→/);
    assert.match(r.stdout, /MACs .*→/);
    assert.match(r.stdout, /model\.pruned\.onnx/);
    assert.ok((await Deno.stat(out)).size < (await Deno.stat(model)).size, "smaller file");
    assert.deepEqual(await runsInOrt(out), [1, 10]);
    assert.deepEqual(listing(dir), ["model.onnx", "model.pruned.onnx"], "no temp files left");
    // The same with the onnxruntime check of the result: the same bytes written.
    const checked = await cli([
      "model.onnx",
      "-o",
      "checked.onnx",
      "--pruning-ratio",
      "0.5",
      "--prune-num-heads",
      "--head-pruning-ratio",
      "0.5",
      "--verify-run",
    ], { cwd: dir });
    assert.equal(checked.code, 0, checked.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/checked.onnx`), await Deno.readFile(out));
  });
}, { engine: true });

cliTest(
  "--external-data / --inline-data choose where tensors go; the same run gives the same bytes",
  async () => {
    await withDir(async (dir) => {
      const prune = (input: string, output: string, ...flags: string[]) =>
        cli([input, "-o", output, "--pruning-ratio", "0.5", "--quiet", ...flags], { cwd: dir });
      for (const name of ["a.onnx", "b.onnx"]) {
        const r = await prune("model.onnx", name, "--external-data");
        assert.equal(r.code, 0, r.stderr);
      }
      // Each model's data file is named after its content: the same data, the same name.
      const data = (m: string) => listing(dir).filter((n) => n.startsWith(`${m}.`))[0];
      const hash = data("a.onnx").slice("a.onnx.".length);
      assert.match(hash, /^[0-9a-f]{16}\.data$/);
      assert.deepEqual(listing(dir), [
        "a.onnx",
        `a.onnx.${hash}`,
        "b.onnx",
        `b.onnx.${hash}`,
        "model.onnx",
      ]);
      assert.deepEqual(
        await Deno.readFile(`${dir}/${data("a.onnx")}`),
        await Deno.readFile(`${dir}/${data("b.onnx")}`),
      );
      // The model files differ only in the data file's name they refer to.
      const text = (f: string) =>
        new TextDecoder("latin1").decode(Deno.readFileSync(`${dir}/${f}`));
      assert.equal(text("a.onnx").replaceAll(data("a.onnx"), data("b.onnx")), text("b.onnx"));
      assert.ok((await Deno.stat(`${dir}/a.onnx`)).size < 64 * 1024, "tensors are outside");
      // External in, inline out: one file that onnxruntime runs.
      const inline = await prune("a.onnx", "c.onnx", "--pruning-ratio", "0", "--inline-data");
      assert.equal(inline.code, 0, inline.stderr);
      assert.ok(!listing(dir).some((n) => n.startsWith("c.onnx.")));
      assert.deepEqual(await runsInOrt(`${dir}/c.onnx`), [1, 10]);
      // Read lazily from a data file or from one inline model, the same pruning gives the same bytes.
      const copy = await prune("model.onnx", "x.onnx", "--pruning-ratio", "0", "--external-data");
      const lazy = await prune("x.onnx", "e.onnx", "--inline-data");
      const eager = await prune("model.onnx", "f.onnx", "--inline-data");
      assert.equal(copy.code + lazy.code + eager.code, 0, copy.stderr + lazy.stderr + eager.stderr);
      const [e, f] = [`${dir}/e.onnx`, `${dir}/f.onnx`].map((p) => Deno.readFileSync(p));
      assert.ok(e.length === f.length && e.every((b, i) => b === f[i]), "same bytes");
      const both = await prune("model.onnx", "d.onnx", "--external-data", "--inline-data");
      assertFailed(both, 2, /choose one of --external-data and --inline-data/, "both");
    });
  },
  { engine: true },
);

cliTest("--json prints only the report as JSON; -o chooses the output", async () => {
  await withDir(async (dir, model) => {
    const out = `${dir}/small.onnx`;
    const r = await cli([model, "--json", "--pruning-ratio", "0.25", "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(typeof report.params.before, "number");
    assert.ok(report.params.after < report.params.before);
    assert.ok(report.macs.after < report.macs.before);
    assert.ok(Array.isArray(report.blocks) && report.blocks.length > 0);
    assert.ok(["gpu", "cpu"].includes(report.backend));
    assert.deepEqual(await runsInOrt(out), [1, 10]);
  });
}, { engine: true });

cliTest("--dry-run writes nothing; --quiet prints nothing", async () => {
  await withDir(async (dir, model) => {
    const before = listing(dir);
    const dry = await cli([model, "--dry-run", "--pruning-ratio", "0.5"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /params/);
    assert.match(dry.stdout, /dry run/);
    assert.deepEqual(listing(dir), before);
    const quiet = await cli([model, "--quiet", "--pruning-ratio", "0.5", "-o", `${dir}/q.onnx`]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, "");
    assert.ok(exists(`${dir}/q.onnx`));
  });
}, { engine: true });

cliTest(
  "--chart writes an SVG of the remaining heads, dims and MLP channels per block",
  async () => {
    await withDir(async (dir, model) => {
      const r = await cli([
        model,
        "-o",
        `${dir}/out.onnx`,
        "--prune-num-heads",
        "--head-pruning-ratio",
        "0.5",
        "--pruning-ratio",
        "0.5",
        "--chart",
        `${dir}/arch.svg`,
        "--quiet",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(listing(dir), ["arch.svg", "model.onnx", "out.onnx"]);
      const svg = await Deno.readTextFile(`${dir}/arch.svg`);
      assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.match(svg, /<\/svg>\n$/);
      // One titled bar per block and kind; heads and MLP channels say what remains of what.
      const bars = [...svg.matchAll(/<title>block (\d+) (H|QK|V|MLP): (\d+) of (\d+)<\/title>/g)];
      const blocks = new Set(bars.map((m) => m[1]));
      assert.ok(blocks.size >= 2, svg);
      assert.equal(bars.length, blocks.size * 4);
      for (const m of bars.filter((m) => m[2] === "H" || m[2] === "MLP")) {
        assert.ok(Number(m[3]) < Number(m[4]), m[0]);
      }
    });
  },
  { engine: true },
);

cliTest("--chart: refusing the input as the chart path", async () => {
  await withDir(async (dir, model) => {
    const r = await cli([model, "-o", `${dir}/o.onnx`, "--pruning-ratio", "0.5", "--chart", model]);
    assertFailed(r, 2, /--chart: .* is the input model/, "chart = input");
    assert.deepEqual(listing(dir), ["model.onnx"]);
  });
});

cliTest("--target-macs prunes in steps to the target and says how close it got", async () => {
  await withDir(async (dir, model) => {
    const r = await cli([model, "-o", `${dir}/out.onnx`, "--target-macs", "60%", "--steps", "2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /target: macs ≤ [\d.]+ [KMG]? ?— reached [\d.]+ [KMG]? ?from [\d.]+ [KMG]? ?in \d steps? \(met\)/,
    );
    const json = await cli([model, "-o", `${dir}/out2.onnx`, "--target-params", "0.7", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.target.metric, "params");
    assert.ok(report.target.met && report.params.after <= 0.7 * report.params.before);
  });
}, { engine: true });

cliTest(
  "--target-speedup: planned on estimates, judged by interleaved timing, every block above its floor",
  async () => {
    await withDir(async (dir) => {
      const model = `${dir}/vit.onnx`;
      await Deno.copyFile(new URL("tests/fixtures/fmnist_vit.onnx", ROOT).pathname, model);
      const run = (budget: string) =>
        cli([
          model,
          "-o",
          `${dir}/out.onnx`,
          "--target-speedup",
          "2",
          "--prune-head-dims",
          "--round-to",
          "8",
          "--steps",
          "2",
          "--latency-batch",
          "32",
          "--profile-budget",
          budget,
          "--check-rounds",
          "3",
          "--latency-cache",
          `${dir}/cache`,
          "--json",
        ]);
      // What is asserted is the report's structure and its consistency, never a speed: this
      // machine's load moves every timing (how close estimates come is the benchmark's job).
      const check = async (budget: string) => {
        await Deno.remove(`${dir}/cache`, { recursive: true }).catch(() => {});
        const r = await run(budget);
        assert.equal(r.code, 0, r.stderr);
        const { latency, target, blocks } = JSON.parse(r.stdout);
        assert.equal(latency.estimated.after, target.reached);
        assert.ok(target.reached < target.before, JSON.stringify(target));
        // The measured figures are the final check's: medians of 3 interleaved rounds.
        const m = target.measured;
        assert.equal(m.rounds, 3);
        assert.deepEqual(latency.measured, { before: m.originalMs, after: m.prunedMs });
        assert.ok(m.low <= m.speedup && m.speedup <= m.high, JSON.stringify(m));
        assert.deepEqual(latency.speedup, {
          measured: m.speedup,
          low: m.low,
          high: m.high,
          rounds: 3,
        });
        // "met" is the measurement's verdict.
        assert.equal(target.met, m.speedup >= 2);
        // No block below its floor: an eighth of its 384 MLP channels, rounded to 8.
        for (const b of blocks) {
          if (b.kind === "mlp") assert.ok(b.channels.after >= 48, JSON.stringify(b));
          if (b.kind === "attention") assert.ok(b.headDim.after >= 8, JSON.stringify(b));
        }
      };
      // A 5 s table of blocks this small, timed while other tests load the machine, can be too
      // noisy to plan on (the run refuses and says so): then the check must hold with 20 s.
      try {
        await check("5");
      } catch (e) {
        console.error(`timed with a 5 s table: ${e instanceof Error ? e.message : e}; again`);
        await check("20");
      }
    });
  },
  { engine: true },
);

cliTest("target options: usage errors name the conflict", async () => {
  await withDir(async (dir, model) => {
    const cases: [string[], RegExp][] = [
      [["--target-params", "0.5", "--target-macs", "0.5"], /give one target/],
      [["--target-params", "0.5", "--pruning-ratio", "0.3"], /decides how much to prune/],
      [["--steps", "3", "--pruning-ratio", "0.3"], /--steps goes with a --target/],
      [["--target-params", "lots"], /--target-params: "lots" is not a count/],
      [["--target-speedup", "1"], /--target-speedup: must be above 1/],
      [
        ["--target-params", "0.5", "--latency-eta", "1"],
        /--latency-eta goes with --target-speedup/,
      ],
      [["--min-keep", "0.2", "--pruning-ratio", "0.3"], /--min-keep goes with a --target/],
      [["--target-params", "0.5", "--min-keep", "1"], /--min-keep.*out of range/],
      [
        ["--target-params", "0.5", "--check-rounds", "3"],
        /--check-rounds goes with --target-speedup/,
      ],
      [
        ["--target-speedup", "2", "--latency-clock", "cpu"],
        /--latency-clock cpu goes with --latency-threads 1/,
      ],
      [["--target-speedup", "2", "--latency-clock", "tsc"], /--latency-clock.*tsc/],
    ];
    for (const [args, pattern] of cases) {
      const r = await cli([model, "-o", `${dir}/o.onnx`, ...args]);
      assertFailed(r, 2, pattern, args.join(" "));
    }
    assert.deepEqual(listing(dir), ["model.onnx"]);
  });
});

cliTest("--session-memory takes mebibytes; a model above them runs in segments", async () => {
  await withDir(async (dir, model) => {
    for (const value of ["-1", "abc", ""]) {
      const bad = await cli([model, "-o", `${dir}/o.onnx`, "--session-memory", value]);
      assertFailed(bad, 2, /--session-memory takes mebibytes/, `value "${value}"`);
    }
    const x = new Float32Array(8 * 3 * 32 * 32).map((_, i) => Math.cos(i * 0.003));
    await Deno.writeFile(
      `${dir}/cal.npy`,
      encodeNpy({ dtype: "float32", shape: [8, 3, 32, 32], data: x }),
    );
    const args = ["--pruning-ratio", "0.5", "--criterion", "wanda", "--compensation", "reweight"];
    const r = await cli([
      model,
      "-o",
      `${dir}/seg.onnx`,
      ...args,
      "--no-search",
      "--calibration",
      `${dir}/cal.npy`,
      "--session-memory",
      "0.05",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ran the model in \d+ segments of at most 0.025 MiB of weights each/);
  });
}, { engine: true });

cliTest("--gram-stride takes a positive integer and changes the reweighting", async () => {
  await withDir(async (dir, model) => {
    const bad = await cli([model, "-o", `${dir}/o.onnx`, "--gram-stride", "0"]);
    assertFailed(bad, 2, /--gram-stride: "0" is not a positive integer/, "stride 0");
    const x = new Float32Array(16 * 3 * 32 * 32).map((_, i) => Math.sin(i * 0.01));
    const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (16, 3, 32, 32), }`;
    const pad = 64 - ((10 + header.length + 1) % 64);
    const head = new TextEncoder().encode(header + " ".repeat(pad) + "\n");
    const npy = new Uint8Array(10 + head.length + x.byteLength);
    npy.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, head.length & 255, head.length >> 8]);
    npy.set(head, 10);
    npy.set(new Uint8Array(x.buffer), 10 + head.length);
    await Deno.writeFile(`${dir}/cal.npy`, npy);
    const outputs: Uint8Array[] = [];
    for (const stride of ["1", "4"]) {
      const r = await cli([
        model,
        "-o",
        `${dir}/s${stride}.onnx`,
        "--pruning-ratio",
        "0.5",
        "--compensation",
        "reweight",
        "--no-search",
        "--calibration",
        `${dir}/cal.npy`,
        "--gram-stride",
        stride,
        "--quiet",
      ]);
      assert.equal(r.code, 0, r.stderr);
      outputs.push(await Deno.readFile(`${dir}/s${stride}.onnx`));
    }
    assert.notDeepEqual(outputs[0], outputs[1], "the stride changes the refitted weights");
  });
}, { engine: true });
