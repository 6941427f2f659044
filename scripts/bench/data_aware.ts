/**
 * The data-aware benchmark: wall time, CPU time and peak resident memory of the command line with
 * calibration data, side by side in one run with the plain onnxruntime pass over the same samples
 * (scripts/bench/ort_pass.ts) and `cp` of the model file (the I/O floor of the magnitude run), rounds
 * interleaved, medians reported.
 *
 *   deno run -A scripts/bench/data_aware.ts [--cases vit,bert] [--rounds 1] [--only RUN,...]
 *     [--json OUT]
 *
 * - vit: timm ViT-B/16 with random weights (scripts/bench/make_scale_models.py; batch 1 as
 *   exported), 64 random images as one .npy; half the heads and half the MLP channels with L2,
 *   wanda, taylor, apma, and wanda with the reweight compensation.
 * - bert: a BERT-base-shaped encoder with random weights (scripts/bench/make_bert.py), 512
 *   sequences × 128 random tokens, batches of 32; half the heads and half the MLP channels with
 *   wanda, and wanda with the reweight compensation.
 * Models and data are made under bench/data/ when missing.
 */
import { parseArgs } from "node:util";

const args = parseArgs({
  options: {
    cases: { type: "string", default: "vit,bert" },
    rounds: { type: "string", default: "1" },
    /** Only these runs (comma-separated names), besides the plain pass and wanda. */
    only: { type: "string" },
    json: { type: "string" },
  },
}).values;
const PY = ".venv/bin/python";
const DENO = Deno.execPath();
const rounds = Number(args.rounds);

interface Sample {
  seconds: number;
  cpuSeconds: number;
  peakMiB: number;
}

/** Runs a command under /usr/bin/time: wall seconds, user + system seconds, peak RSS. */
async function timed(cmd: string[]): Promise<Sample> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %U %S %M", ...cmd],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp", ONNXRUNTIME_NODE_INSTALL: "skip" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const m = /TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(stderr);
  if (!out.success || !m) throw new Error(`${cmd.join(" ")} failed:\n${stderr.slice(-2000)}`);
  return {
    seconds: Number(m[1]),
    cpuSeconds: Number(m[2]) + Number(m[3]),
    peakMiB: Number(m[4]) / 1024,
  };
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

interface Case {
  model: string;
  data: string;
  samples: number;
  batch: number;
  runs: Record<string, string[]>;
  make(): Promise<void>;
}

const halve = ["--prune-num-heads", "--head-pruning-ratio", "0.5", "--pruning-ratio", "0.5"];
const CASES: Record<string, Case> = {
  vit: {
    model: "bench/data/scale/vit_base_patch16_224.onnx",
    data: "bench/data/data_aware/vit_images",
    samples: 64,
    batch: 32,
    runs: {
      "L2 magnitude": [],
      "wanda": ["--criterion", "wanda"],
      "taylor": ["--criterion", "taylor"],
      "apma": ["--criterion", "apma"],
      "wanda + reweight": ["--criterion", "wanda", "--compensation", "reweight"],
    },
    async make() {
      if (!(await exists(this.model))) {
        await timed([
          PY,
          "scripts/bench/make_scale_models.py",
          "bench/data/scale",
          "vit_base_patch16_224",
        ]);
      }
      if (!(await exists(`${this.data}/images.npy`))) {
        await Deno.mkdir(this.data, { recursive: true });
        await timed([
          PY,
          "-c",
          "import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(0)" +
          ".standard_normal((64, 3, 224, 224)).astype(np.float32))",
          `${this.data}/images.npy`,
        ]);
      }
    },
  },
  bert: {
    model: "bench/data/data_aware/bert_base.onnx",
    data: "bench/data/data_aware/bert_tokens",
    samples: 512,
    batch: 32,
    runs: {
      "wanda": ["--criterion", "wanda"],
      "wanda + reweight": ["--criterion", "wanda", "--compensation", "reweight"],
    },
    async make() {
      if (!(await exists(this.model)) || !(await exists(`${this.data}/input_ids.npy`))) {
        await timed([PY, "scripts/bench/make_bert.py", "bench/data/data_aware", "512", "128"]);
      }
    },
  },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await Deno.mkdir("bench/data/data_aware", { recursive: true });
const work = await Deno.makeTempDir({ dir: "bench/data/data_aware", prefix: "run_" });
const rows: Record<string, unknown>[] = [];
try {
  for (const name of args.cases!.split(",")) {
    const c = CASES[name];
    await c.make();
    const calibration = [
      "--calibration",
      c.data,
      "--samples",
      String(c.samples),
      "--batch-size",
      String(c.batch),
    ];
    const commands: Record<string, string[]> = {
      "cp of the model": ["cp", c.model, `${work}/copy.onnx`],
      "onnxruntime: plain pass": [
        DENO,
        "run",
        "-A",
        "scripts/bench/ort_pass.ts",
        c.model,
        c.data,
        String(c.samples),
        String(c.batch),
      ],
    };
    const only = args.only?.split(",");
    for (const [what, extra] of Object.entries(c.runs)) {
      if (only && what !== "wanda" && !only.includes(what)) continue;
      commands[what] = [
        DENO,
        "run",
        "-A",
        "mod.ts",
        c.model,
        "-o",
        `${work}/pruned.onnx`,
        ...halve,
        // One run with the criterion and compensation asked for, not a search among candidates.
        ...(extra.length ? [...calibration, "--no-search"] : []),
        ...extra,
        "--quiet",
      ];
    }
    const samples: Record<string, Sample[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [what, cmd] of Object.entries(commands)) {
        for await (const e of Deno.readDir(work)) await Deno.remove(`${work}/${e.name}`);
        const s = await timed(cmd);
        (samples[what] ??= []).push(s);
        console.error(`${name} round ${r + 1}: ${what} ${s.seconds} s, cpu ${s.cpuSeconds} s`);
      }
    }
    const plain = median(samples["onnxruntime: plain pass"].map((s) => s.seconds));
    const plainCpu = median(samples["onnxruntime: plain pass"].map((s) => s.cpuSeconds));
    const wanda = median(samples["wanda"].map((s) => s.seconds));
    const wandaCpu = median(samples["wanda"].map((s) => s.cpuSeconds));
    const cp = median(samples["cp of the model"].map((s) => s.seconds));
    const fileMiB = (await Deno.stat(c.model)).size / 2 ** 20;
    for (const [what, s] of Object.entries(samples)) {
      const seconds = median(s.map((x) => x.seconds));
      const cpuSeconds = median(s.map((x) => x.cpuSeconds));
      rows.push({
        case: name,
        run: what,
        seconds,
        cpuSeconds,
        peakMiB: median(s.map((x) => x.peakMiB)),
        peakOfFile: median(s.map((x) => x.peakMiB)) / fileMiB,
        ofCp: seconds / cp,
        ofPlain: seconds / plain,
        cpuOfPlain: cpuSeconds / plainCpu,
        ofWanda: seconds / wanda,
        cpuOfWanda: cpuSeconds / wandaCpu,
      });
    }
  }
} finally {
  await Deno.remove(work, { recursive: true });
}

const f = (x: number, d = 2) => x.toFixed(d);
console.log(`\n${rounds} round(s), medians; cpu = user + system seconds\n`);
console.log(
  "| case | run | seconds | cpu s | × plain pass | × wanda | cpu × wanda | × cp | peak RSS | × file |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows as Record<string, number & string>[]) {
  console.log(
    `| ${r.case} | ${r.run} | ${f(r.seconds, 1)} | ${f(r.cpuSeconds, 1)} | ${f(r.ofPlain)} | ` +
      `${f(r.ofWanda)} | ${f(r.cpuOfWanda)} | ${f(r.ofCp, 1)} | ${f(r.peakMiB, 0)} MiB | ` +
      `${f(r.peakOfFile)} |`,
  );
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(rows, null, 2) + "\n");
