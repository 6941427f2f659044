/**
 * The `--chart` SVG: its title and subtitle fit (SVG text does not wrap; measured with the
 * advance widths of DejaVu Sans, the sans-serif Debian's browsers draw), and a chart that
 * cannot be written stops the run before the model is written.
 */
import assert from "node:assert/strict";
import { architectureChart } from "../src/chart.ts";
import type { PruneReport } from "../src/report.ts";

/** DejaVu Sans (Book) advance widths in em, read from DejaVuSans.ttf's hmtx table. */
const DEJAVU: Record<string, number> = {
  ...Object.fromEntries([..."0123456789"].map((d) => [d, 0.636])),
  " ": 0.318,
  ".": 0.318,
  "·": 0.318,
  "→": 0.838,
  a: 0.613,
  b: 0.635,
  d: 0.635,
  e: 0.615,
  g: 0.635,
  h: 0.634,
  i: 0.278,
  m: 0.974,
  n: 0.634,
  p: 0.635,
  r: 0.411,
  s: 0.521,
  t: 0.392,
  w: 0.818,
  A: 0.684,
  C: 0.698,
  G: 0.775,
  K: 0.656,
  M: 0.863,
};

function dejaVuWidth(text: string, size: number): number {
  let em = 0;
  for (const c of text) {
    assert.ok(c in DEJAVU, `no width for "${c}"`);
    em += DEJAVU[c];
  }
  return em * size;
}

function report(blocks: number): PruneReport {
  const attention = Array.from({ length: blocks }, (_, i) => ({
    kind: "attention" as const,
    name: `a${i}`,
    heads: { before: 12, after: 6 },
    headDim: { before: 64, after: 64 },
    keptHeads: [0, 1, 2, 3, 4, 5],
  }));
  const mlp = Array.from({ length: blocks }, (_, i) => ({
    kind: "mlp" as const,
    name: `m${i}`,
    channels: { before: 3072, after: 1536 },
    keptChannels: [],
  }));
  return {
    params: { before: 114_250_000, after: 81_200_000 },
    macs: { before: 1_940_000_000, after: 1_390_000_000 },
    backend: "cpu",
    blocks: [
      { kind: "embedding", name: "e", channels: { before: 768, after: 576 }, keptChannels: [] },
      ...attention,
      ...mlp,
    ],
    skipped: [],
    notes: [],
    groups: [],
  };
}

Deno.test("the chart is wide enough for its subtitle, also with few blocks", () => {
  for (const blocks of [1, 2, 12]) {
    const svg = architectureChart(report(blocks), "vit.pruned.onnx");
    const width = Number(svg.match(/^<svg [^>]*width="(\d+(?:\.\d+)?)"/)![1]);
    const subtitle = svg.match(/<text x="(\d+)" y="36">([^<]*)<\/text>/)!;
    const text = subtitle[2].replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)));
    assert.match(text, /embedding width 768 → 576/);
    const right = Number(subtitle[1]) + dejaVuWidth(text, 10);
    assert.ok(right <= width, `${blocks} blocks: subtitle ends at ${right}, chart is ${width}`);
  }
});

async function cli(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../mod.ts", import.meta.url).pathname, ...args],
    cwd,
    env: { ONNXRUNTIME_NODE_INSTALL: "skip", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("a chart that cannot be written leaves no model behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(new URL("./fixtures/timm_vit.onnx", import.meta.url), `${dir}/m.onnx`);
    await Deno.mkdir(`${dir}/folder`);
    const run = (chart: string) =>
      cli(["m.onnx", "-o", "out.onnx", "--pruning-ratio", "0.5", "--chart", chart], dir);
    for (
      const [chart, why] of [
        ["missing/arch.svg", /chart folder missing does not exist/],
        ["folder", /chart folder is a folder/],
      ] as const
    ) {
      const r = await run(chart);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, why);
      const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(left, ["folder", "m.onnx"], `${chart}: ${left}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
