/**
 * Human-readable rendering of a {@link PruneReport}: totals, a per-block table and the groups
 * that were left alone. Plain text in monospace columns, no colours.
 *
 * @module
 */
import { searchTable } from "./search/table.ts";
import type { BlockReport, PruneReport } from "./report.ts";

/** Where the pruned model went, shown under the table. */
export interface FormatReportOptions {
  /** Path of the written model; omitted → "(not written)". */
  output?: string;
  /** The run did not write a model (`--dry-run`). */
  dryRun?: boolean;
}

/** A count in K/M/G with three significant digits: 5_512_000 → "5.51 M", 980 → "980". */
export function humanCount(n: number): string {
  const abs = Math.abs(n);
  const units: [number, string][] = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]];
  for (const [scale, unit] of units) {
    if (abs >= scale * 0.9995) return `${threeDigits(n / scale)} ${unit}`;
  }
  return String(Math.round(n));
}

function threeDigits(x: number): string {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** `after / before` as "×0.55" ("×–" when before is 0). */
export function ratio(before: number, after: number): string {
  if (!(before > 0)) return "×–";
  return `×${(after / before).toFixed(2)}`;
}

function beforeAfter(b: { before: number; after: number }): string {
  return b.before === b.after ? `${b.before}` : `${b.before} → ${b.after}`;
}

/** The cells of one block in the report's table. */
export interface Row {
  block: string;
  heads: string;
  headDim: string;
  mlp: string;
}

/** One block's cells: name, heads, head dim, MLP channels (or embedding width). */
export function row(b: BlockReport): Row {
  if (b.kind === "attention") {
    const headDim = b.vHeadDim
      ? `QK ${beforeAfter(b.headDim)}, V ${beforeAfter(b.vHeadDim)}`
      : beforeAfter(b.headDim);
    const heads = b.kvHeads
      ? `${beforeAfter(b.heads)} (KV ${beforeAfter(b.kvHeads)})`
      : beforeAfter(b.heads);
    return { block: b.name, heads, headDim, mlp: "" };
  }
  if (b.kind === "embedding") {
    return {
      block: `embedding width (${b.name})`,
      heads: "",
      headDim: "",
      mlp: beforeAfter(b.channels),
    };
  }
  return { block: b.name, heads: "", headDim: "", mlp: beforeAfter(b.channels) };
}

/** Pads every column to its widest cell; the last column is not padded. */
function table(header: string[], rows: string[][], indent = "  "): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/**
 * Formats a report for a terminal, e.g.
 *
 * ```text
 * params   114 K → 72.3 K   (×0.63)
 * MACs    1.94 M → 1.10 M   (×0.57)
 * ```
 * followed by the block table, skipped groups, backend and output path.
 */
/** A speed-up with enough digits that it does not read as the goal when it is just under it. */
function speedupText(value: number, goal: number): string {
  let digits = 2;
  while (digits < 4 && value < goal && Number(value.toFixed(digits)) >= goal) digits++;
  return `×${value.toFixed(digits)}`;
}

export function formatReport(report: PruneReport, options: FormatReportOptions = {}): string {
  const out: string[] = [];
  const totals = [
    ["params", report.params],
    ["MACs", report.macs],
  ] as const;
  const cells = totals.map(([label, v]) => [
    label,
    humanCount(v.before),
    "→",
    humanCount(v.after),
    `(${ratio(v.before, v.after)})`,
  ]);
  const w = [0, 1, 2, 3].map((i) => Math.max(...cells.map((c) => c[i].length)));
  const at = Object.entries(report.macs.at ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  for (const c of cells) {
    out.push(
      `${c[0].padEnd(w[0])}  ${c[1].padStart(w[1])} ${c[2]} ${c[3].padStart(w[3])}  ${c[4]}` +
        (c[0] === "MACs" && at ? `  at ${at}` : ""),
    );
  }

  out.push("");
  if (report.blocks.length === 0) {
    out.push("no block pruned");
  } else {
    const rows = report.blocks.map(row).map((r) => [r.block, r.heads, r.headDim, r.mlp]);
    out.push(...table(["block", "heads", "head dim", "MLP"], rows, ""));
  }

  if (options.dryRun && report.groups.length > 0) {
    out.push("");
    out.push(`groups found (${report.groups.length}):`);
    const rows = report.groups.map((g) => [
      g.kind,
      g.name,
      Object.entries(g.size).map(([k, v]) => `${k} ${v}`).join(", "),
      g.tensors.map((t) => `${t.name}[${t.axis}]`).join(" "),
      [
        g.blocked ? `not prunable: ${g.blocked}` : "",
        g.dimsBlocked ? `dims not prunable: ${g.dimsBlocked}` : "",
      ].filter((x) => x).join("; "),
    ]);
    out.push(...table(["kind", "block", "size", "coupled tensors [axis]", ""], rows));
  }

  if (report.interfaces?.length) {
    out.push("");
    out.push(`graph inputs/outputs that change shape (${report.interfaces.length}):`);
    const dims = (d: (number | string)[]) => `[${d.join(", ")}]`;
    const rows = report.interfaces.map((
      c,
    ) => [c.kind, c.name, `${dims(c.before)} → ${dims(c.after)}`]);
    out.push(...table(["", "tensor", "shape"], rows).slice(1));
  }

  if (report.skipped.length > 0) {
    out.push("");
    out.push(`skipped (${report.skipped.length}):`);
    const rows = report.skipped.map((s) => [s.name, s.reason]);
    out.push(...table(["group", "reason"], rows).slice(1));
  }

  if (report.fidelity) {
    const f = report.fidelity;
    out.push("");
    out.push(
      `fidelity on ${f.samples} held-out samples: top-1 agreement ${
        (f.top1Agreement * 100).toFixed(1)
      }%, ` +
        `KL ${f.kl.toFixed(4)}, cosine ${f.cosine.toFixed(4)}` +
        (f.accuracy
          ? `, accuracy ${(f.accuracy.before * 100).toFixed(1)}% → ${
            (f.accuracy.after * 100).toFixed(1)
          }%`
          : ""),
    );
  }
  if (report.search) {
    const { heading, rows } = searchTable(report.search);
    out.push("", heading + ":");
    out.push(...table(rows[0], rows.slice(1)));
  }
  if (report.distill) out.push("", distillLine(report.distill));
  if (report.target) {
    const t = report.target;
    const unit = t.metric === "latency" ? (v: number) => `${v.toFixed(2)} ms` : humanCount;
    const m = t.measured;
    out.push("");
    out.push(
      t.metric === "latency"
        ? `target: ×${t.speedup} faster — estimated ${unit(t.reached)} from ${unit(t.before)} ` +
          `(×${(t.before / t.reached).toFixed(2)}) in ${t.steps.length} step` +
          `${t.steps.length === 1 ? "" : "s"}; ` +
          (m
            ? `measured ${speedupText(m.speedup, t.speedup!)} (rounds ×${m.low.toFixed(2)}–×${
              m.high.toFixed(2)
            }, ${m.rounds} interleaved) — ${t.met ? "met" : "not met"}`
            : "not measured — not met")
        : `target: ${t.metric} ≤ ${unit(t.goal)} — reached ${unit(t.reached)} from ${
          unit(t.before)
        } in ${t.steps.length} step${t.steps.length === 1 ? "" : "s"} (${
          t.met ? "met" : `not met: ${((t.reached / t.goal - 1) * 100).toFixed(1)}% above`
        })`,
    );
    for (const w of t.warnings ?? []) out.push(`warning: ${w}`);
  }
  if (report.latency) {
    const l = report.latency;
    const x = (a: number, b: number) => `×${(a / b).toFixed(2)}`;
    out.push(
      `latency at batch ${l.batch}: estimated ${l.estimated.before.toFixed(2)} → ` +
        `${l.estimated.after.toFixed(2)} ms (${x(l.estimated.before, l.estimated.after)}), ` +
        `measured ${l.measured.before.toFixed(2)} → ${l.measured.after.toFixed(2)} ms ` +
        `(medians of interleaved rounds${l.clock === "cpu" ? ", CPU time" : ""}); profiling ` +
        `${l.profileSeconds.toFixed(1)} s`,
    );
    out.push(
      `latency model: a block inside the model costs ×${l.blockScale.toFixed(2)} its time ` +
        (l.fitted
          ? "alone (fitted to the original and a probe with every MLP halved)"
          : "alone (not fitted: the probe gave no consistent fit; timed alone, capped at the model)"),
    );
    if (l.tableNote) out.push(`latency table: ${l.tableNote}`);
  }
  if (report.notes?.length) {
    out.push("");
    for (const note of report.notes) out.push(`note: ${note}`);
  }

  out.push("");
  out.push(`backend ${report.backend}`);
  if (options.dryRun) out.push("output  (dry run: nothing written)");
  else out.push(`output  ${options.output ?? "(not written)"}`);
  return out.join("\n");
}

/** One line on a distillation run. */
function distillLine(d: NonNullable<PruneReport["distill"]>): string {
  const why = { steps: "all steps", "early-stop": "stopped early", time: "time limit" }[d.stopped];
  const loss = d.loss === "kl" ? `KL at T=${d.temperature}` : d.loss;
  const heldOut = d.heldOut
    ? `held-out ${loss} ${d.heldOut.before.toFixed(4)} → ${d.heldOut.after.toFixed(4)} ` +
      `(weights of step ${d.bestStep})`
    : `training ${loss} ${d.train.first.toFixed(4)} → ${d.train.last.toFixed(4)}`;
  const frozen = d.frozen.length ? `, ${d.frozen.length} frozen` : "";
  return `distilled: ${d.steps} steps (${why}) on ${d.samples.train} samples, ${heldOut}; ` +
    `${humanCount(d.trained.params)} params trained${frozen}, ${d.seconds.toFixed(1)} s ` +
    `(${d.msPerStep.toFixed(0)} ms/step)`;
}
