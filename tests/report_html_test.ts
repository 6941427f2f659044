/**
 * The HTML report: one renderer for `--report PATH.html`, the page and the service; names from
 * the model are escaped; the file is self-contained.
 */
import assert from "node:assert/strict";
import { reportHtml, reportPage } from "../src/report/html.ts";
import type { PruneReport } from "../src/report.ts";

const ROOT = new URL("../", import.meta.url);

function sample(): PruneReport {
  return {
    params: { before: 1_000_000, after: 600_000 },
    macs: { before: 2_000_000_000, after: 1_100_000_000 },
    backend: "cpu",
    blocks: [
      {
        kind: "attention",
        name: "blocks.0.attn.qkv<script>alert(1)</script>",
        heads: { before: 12, after: 6 },
        headDim: { before: 64, after: 64 },
        keptHeads: [0, 1, 2, 3, 4, 5],
      },
      {
        kind: "mlp",
        name: "blocks.0.mlp.fc1",
        channels: { before: 3072, after: 2048 },
        keptChannels: [],
      },
    ],
    skipped: [{ name: 'head & "tail"', reason: "ignored by option" }],
    notes: ["no head mode given: removing head dims"],
    groups: [],
  };
}

Deno.test("reportHtml: totals, blocks, chart, skipped and notes; names escaped", () => {
  const html = reportHtml(sample(), { title: "vit.pruned.onnx", output: "vit.pruned.onnx" });
  assert.ok(!html.includes("<script>"), "a node name cannot inject markup");
  assert.ok(html.includes("qkv&#60;script&#62;alert(1)&#60;/script&#62;"));
  assert.ok(html.includes("head &#38; &#34;tail&#34;"));
  assert.match(html, /<td>params<\/td><td class="num">1\.00 M<\/td><td class="num">600 K<\/td>/);
  assert.match(html, /<td>12 → 6<\/td><td>64<\/td>/);
  assert.match(html, /<td>3072 → 2048<\/td>/);
  assert.match(html, /<svg [^>]*>[\s\S]*block 0 MLP: 2048 of 3072/);
  assert.match(html, /no head mode given/);
  assert.match(html, /output vit\.pruned\.onnx/);
});

Deno.test("reportHtml: a speed-up target gives the measured speed-up and the run's warnings", () => {
  const report = sample();
  report.target = {
    metric: "latency",
    goal: 50,
    reached: 49.5,
    met: true,
    before: 100,
    steps: [{ params: 600_000, macs: 1_100_000_000, latencyMs: 49.5 }],
    speedup: 2,
    measured: {
      originalMs: 101,
      prunedMs: 49,
      speedup: 2.06,
      low: 1.98,
      high: 2.11,
      rounds: 7,
      corrections: 1,
    },
    warnings: ["MLP channels took the whole budget: head dims took no part"],
  };
  const html = reportHtml(report);
  assert.match(
    html,
    /measured against the original: ×2\.06 \(rounds ×1\.98–×2\.11, 7 interleaved\)/,
  );
  assert.match(html, /for ×2 asked; the last step corrected 1 time</);
  assert.match(html, /<li>MLP channels took the whole budget: head dims took no part<\/li>/);
});

Deno.test("reportPage is self-contained: no script, no external resource", () => {
  const page = reportPage(sample(), { input: "vit.onnx" });
  assert.match(page, /^<!doctype html>/);
  assert.match(page, /<title>Pruning report: vit\.onnx<\/title>/);
  assert.ok(!/<script|<link|src=|@import/i.test(page));
  const urls = page.match(/https?:\/\/[^\s"']+/g) ?? [];
  assert.deepEqual([...new Set(urls)], ["http://www.w3.org/2000/svg"], "only the SVG namespace");
});

Deno.test("the command line writes --report PATH.html of the run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_report_" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("mod.ts", ROOT).pathname,
        new URL("tests/fixtures/timm_vit.onnx", ROOT).pathname,
        "-o",
        `${dir}/p.onnx`,
        "--prune-num-heads",
        "--head-pruning-ratio",
        "0.5",
        "--pruning-ratio",
        "0.25",
        "--report",
        `${dir}/report.html`,
        "--json",
      ],
      env: { NO_COLOR: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const report = JSON.parse(new TextDecoder().decode(out.stdout)) as PruneReport;
    const html = await Deno.readTextFile(`${dir}/report.html`);
    assert.equal(
      html,
      reportPage(report, { title: "p.onnx", input: "timm_vit.onnx", output: `${dir}/p.onnx` }),
    );
    const first = report.blocks.find((b) => b.kind === "attention");
    assert.ok(first?.kind === "attention" && first.heads.after < first.heads.before);
    assert.ok(html.includes(`${first.heads.before} → ${first.heads.after}`));

    // The report's path is checked before any work.
    const bad = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("mod.ts", ROOT).pathname,
        `${dir}/p.onnx`,
        "-o",
        `${dir}/q.onnx`,
        "--report",
        `${dir}/q.onnx`,
      ],
      env: { NO_COLOR: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /--report: .*q\.onnx is the output model/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
