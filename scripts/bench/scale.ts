/**
 * The scale benchmark: wall time and peak resident memory, side by side in one run, of
 *   - cp of the model file(s)                               (the I/O floor)
 *   - Deno moving the bytes with no pruning: the file read whole into memory and half of it
 *     written, and the same streamed through one reused buffer (scripts/bench/io_floor.ts;
 *     one-file models only)
 *   - our parse + serialize with no change                  (scripts/bench/roundtrip.ts)
 *   - our magnitude pruning, CLI, end to end                (half the heads, half the MLP)
 *   - the same, its in-memory step alone (read first; scripts/bench/prune_step.ts)
 *   - Torch-Pruning 1.6.1: DependencyGraph + pruning, and end to end with model construction
 *     and ONNX export                                        (scripts/anchor/tp_scale.py)
 * on timm ViT exports with random weights (made by make_scale_models.py when missing), or on
 * Llama-style decoders made first with make_llama.py (llama_1b, llama_7b; Torch-Pruning builds
 * the same config in float16). Every command runs under /usr/bin/time; rounds are interleaved
 * and medians reported.
 *
 *   deno run -A scripts/bench/scale.ts [--models vit_base_patch16_224,...] [--rounds 3]
 *     [--dir bench/data/scale] [--no-tp] [--json OUT]
 */
import { parseArgs } from "node:util";

const args = parseArgs({
  options: {
    models: { type: "string", default: "vit_base_patch16_224" },
    rounds: { type: "string", default: "3" },
    dir: { type: "string", default: "bench/data/scale" },
    "no-tp": { type: "boolean", default: false },
    json: { type: "string" },
  },
}).values;
const PY = ".venv/bin/python";
const dir = args.dir!;
const rounds = Number(args.rounds);
const models = args.models!.split(",");

interface Sample {
  seconds: number;
  peakMiB: number;
  /** What the command printed on stdout (Torch-Pruning's own split of its time). */
  stdout: string;
  /** Why the command did not finish (e.g. killed when out of memory). */
  failed?: string;
}

/** Runs a command under /usr/bin/time: wall seconds and peak RSS. */
async function timed(cmd: string[], mayFail = false): Promise<Sample> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "TIME %e %M", ...cmd],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const m = /TIME ([\d.]+) (\d+)\s*$/.exec(stderr);
  if (!out.success && mayFail && m) {
    const why = /Command (terminated by signal \d+|exited with non-zero status \d+)/.exec(stderr);
    return {
      seconds: Number(m[1]),
      peakMiB: Number(m[2]) / 1024,
      stdout: "",
      failed: why?.[1] ?? "failed",
    };
  }
  if (!out.success || !m) {
    throw new Error(`${cmd.join(" ")} failed:\n${stderr.slice(-2000)}`);
  }
  return {
    seconds: Number(m[1]),
    peakMiB: Number(m[2]) / 1024,
    stdout: new TextDecoder().decode(out.stdout),
  };
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const work = await Deno.makeTempDir({ dir, prefix: "run_" }).catch(async () => {
  await Deno.mkdir(dir, { recursive: true });
  return await Deno.makeTempDir({ dir, prefix: "run_" });
});
const rows: Record<string, unknown>[] = [];
try {
  for (const name of models) {
    const model = `${dir}/${name}.onnx`;
    if (!(await exists(model))) {
      await timed([PY, "scripts/bench/make_scale_models.py", dir, name]);
    }
    const data = (await exists(`${model}.data`)) ? [`${model}.data`] : [];
    const bytes = (await Deno.stat(model)).size +
      (data.length ? (await Deno.stat(data[0])).size : 0);
    const commands: Record<string, string[]> = {
      cp: ["cp", model, ...data, `${work}/`],
      ...(data.length ? {} : {
        "Deno: read whole, write half": [
          Deno.execPath(),
          "run",
          "-A",
          "scripts/bench/io_floor.ts",
          "whole",
          model,
          `${work}/half.onnx`,
        ],
        "Deno: stream through one buffer, copy half": [
          Deno.execPath(),
          "run",
          "-A",
          "scripts/bench/io_floor.ts",
          "stream",
          model,
          `${work}/half.onnx`,
        ],
      }),
      "parse + serialize": [
        Deno.execPath(),
        "run",
        "-A",
        "scripts/bench/roundtrip.ts",
        model,
        `${work}/roundtrip.onnx`,
      ],
      "ours: prune (CLI)": [
        Deno.execPath(),
        "run",
        "-A",
        "mod.ts",
        model,
        "-o",
        `${work}/pruned.onnx`,
        "--prune-num-heads",
        "--head-pruning-ratio",
        "0.5",
        "--pruning-ratio",
        "0.5",
        "--quiet",
      ],
      "ours: read, then prune in memory": [
        Deno.execPath(),
        "run",
        "-A",
        "scripts/bench/prune_step.ts",
        model,
      ],
      ...(args["no-tp"] ? {} : {
        "Torch-Pruning: build + graph + prune + export": [
          PY,
          "scripts/anchor/tp_scale.py",
          name,
          "--export",
          `${work}/tp.onnx`,
        ],
      }),
    };
    const samples: Record<string, Sample[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [what, cmd] of Object.entries(commands)) {
        // Outputs of the last command go, so every command writes to an empty place.
        for await (const e of Deno.readDir(work)) await Deno.remove(`${work}/${e.name}`);
        const sample = await timed(cmd, what.startsWith("Torch-Pruning"));
        (samples[what] ??= []).push(sample);
        console.error(
          `${name} round ${r + 1}: ${what} ${sample.seconds} s${
            sample.failed ? ` (${sample.failed})` : ""
          }`,
        );
      }
    }
    const floor = median(samples["parse + serialize"].map((s) => s.seconds));
    const cp = median(samples["cp"].map((s) => s.seconds));
    const row: Record<string, unknown> = { model: name, bytes };
    for (const [what, s] of Object.entries(samples)) {
      const failed = s.find((x) => x.failed)?.failed;
      row[what] = {
        seconds: median(s.map((x) => x.seconds)),
        peakMiB: median(s.map((x) => x.peakMiB)),
        ofFloor: median(s.map((x) => x.seconds)) / floor,
        ofCp: median(s.map((x) => x.seconds)) / cp,
        ...(failed ? { failed } : {}),
      };
    }
    const step = samples["ours: read, then prune in memory"];
    row["ours: graph + prune (in memory)"] = {
      seconds: median(step.map((s) => JSON.parse(s.stdout.trim().split("\n").at(-1)!).prune_s)),
    };
    const tp = samples["Torch-Pruning: build + graph + prune + export"];
    if (tp && !tp.some((x) => x.failed)) {
      const parts = tp.map((s) => JSON.parse(s.stdout.trim().split("\n").at(-1)!));
      row["Torch-Pruning: graph + prune"] = {
        seconds: median(parts.map((p) => p.graph_and_prune_s)),
      };
      row["Torch-Pruning: decision"] = {
        heads: parts[0].heads,
        ...(parts[0].kv_heads ? { kvHeads: parts[0].kv_heads } : {}),
        mlp: parts[0].mlp,
        embedding: parts[0].embedding,
      };
    }
    rows.push(row);
  }
} finally {
  await Deno.remove(work, { recursive: true });
}

console.log(
  `\n${rounds} round(s), medians; × floor = time over our parse + serialize, × cp over cp\n`,
);
console.log("| model | size | step | seconds | × floor | × cp | peak RSS |");
console.log("| ----- | ---- | ---- | ------- | ------- | ---- | -------- |");
for (const row of rows) {
  for (const [what, v] of Object.entries(row)) {
    if (what === "model" || what === "bytes" || what.endsWith("decision")) continue;
    const x = v as {
      seconds: number;
      peakMiB?: number;
      ofFloor?: number;
      ofCp?: number;
      failed?: string;
    };
    console.log(
      `| ${row.model} | ${((row.bytes as number) / 2 ** 20).toFixed(0)} MiB | ${what} | ` +
        `${x.seconds.toFixed(2)}${x.failed ? ` (${x.failed})` : ""} | ` +
        `${x.ofFloor?.toFixed(2) ?? ""} | ${x.ofCp?.toFixed(2) ?? ""} | ` +
        `${x.peakMiB ? `${x.peakMiB.toFixed(0)} MiB` : ""} |`,
    );
  }
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(rows, null, 2) + "\n");
