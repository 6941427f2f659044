/**
 * The report as HTML: totals, the per-block table, the per-block chart (`chart.ts`), what was
 * skipped and why, and the notes. One renderer for the command line's `--report PATH.html` (a
 * self-contained page: no scripts, no external resources), the pruning page and the service.
 * Every name from the model is escaped.
 *
 * @module
 */
import { searchTable } from "../search/table.ts";
import type { PruneReport } from "../report.ts";
import { architectureChart } from "../chart.ts";
import { humanCount, ratio, row } from "../format_report.ts";

/** What the report is about. */
export interface ReportHtmlOptions {
  /** The chart's title (e.g. the output file's name). */
  title?: string;
  /** The model that was pruned, shown in the heading. */
  input?: string;
  /** Where the pruned model went; omitted: not written. */
  output?: string;
  /** Nothing was written (a dry run). */
  dryRun?: boolean;
}

/** The styles of the report's elements (a page embedding the fragment includes them). */
export const REPORT_CSS = `
.prune-report { font: 14px/1.45 system-ui, sans-serif; color: #1d232a; }
.prune-report h2 { font-size: 16px; margin: 18px 0 6px; }
.prune-report table { border-collapse: collapse; margin: 4px 0 10px; }
.prune-report th, .prune-report td { padding: 3px 10px; border-bottom: 1px solid #e3e6ea;
  text-align: left; vertical-align: top; }
.prune-report th { background: #f3f5f7; font-weight: 600; }
.prune-report td.num { text-align: right; font-variant-numeric: tabular-nums; }
.prune-report .chart { overflow-x: auto; max-width: 100%; }
.prune-report .chart svg { width: min(100%, 860px); height: auto; }
.prune-report ul { margin: 4px 0; padding-left: 20px; }
.prune-report .muted { color: #5f6b76; }
`;

/** Text as HTML (element content and quoted attribute values). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function table(header: string[], rows: string[][], numeric: number[] = []): string {
  const th = header.map((h) => `<th>${escapeHtml(h)}</th>`).join("");
  const body = rows.map((r) =>
    `<tr>${
      r.map((c, i) => `<td${numeric.includes(i) ? ' class="num"' : ""}>${escapeHtml(c)}</td>`)
        .join("")
    }</tr>`
  ).join("\n");
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function totals(report: PruneReport): string {
  const rows = ([["params", report.params], ["MACs", report.macs]] as const).map((
    [label, v],
  ) => [label, humanCount(v.before), humanCount(v.after), ratio(v.before, v.after)]);
  const at = Object.entries(report.macs.at ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return table(["", "before", "after", "after / before"], rows, [1, 2, 3]) +
    (at ? `\n<p class="muted">MACs counted at ${escapeHtml(at)}</p>` : "");
}

const METRIC_NAMES: Record<string, string> = {
  params: "parameters",
  macs: "MACs",
  latency: "estimated latency",
};

function list(items: string[]): string {
  return `<ul>${items.map((i) => `<li>${escapeHtml(i)}</li>`).join("")}</ul>`;
}

/**
 * The report as an HTML fragment (one `<section class="prune-report">`), for a page that adds
 * {@link REPORT_CSS}.
 *
 * @example document.querySelector("#report").innerHTML = reportHtml(report, { title: "vit" });
 */
export function reportHtml(report: PruneReport, options: ReportHtmlOptions = {}): string {
  const out: string[] = ['<section class="prune-report">'];
  out.push("<h2>Size</h2>", totals(report));
  out.push("<h2>Blocks</h2>");
  if (report.blocks.length === 0) {
    out.push("<p>no block pruned</p>");
  } else {
    const rows = report.blocks.map(row).map((r) => [r.block, r.heads, r.headDim, r.mlp]);
    out.push(table(["block", "heads", "head dim", "MLP / width"], rows));
  }
  if (report.blocks.some((b) => b.kind === "attention" || b.kind === "mlp")) {
    out.push(
      '<h2>Per block</h2>\n<div class="chart">',
      architectureChart(report, options.title ?? "pruned architecture").trim(),
      "</div>",
    );
  }
  if (report.interfaces?.length) {
    const dims = (d: (number | string)[]) => `[${d.join(", ")}]`;
    out.push(
      "<h2>Graph inputs and outputs that change shape</h2>",
      table(
        ["", "tensor", "before", "after"],
        report.interfaces.map((c) => [c.kind, c.name, dims(c.before), dims(c.after)]),
      ),
    );
  }
  if (report.skipped.length) {
    out.push(
      "<h2>Skipped</h2>",
      table(["group", "reason"], report.skipped.map((s) => [s.name, s.reason])),
    );
  }
  if (report.target) {
    const t = report.target;
    const unit = t.metric === "latency" ? (v: number) => `${v.toFixed(2)} ms` : humanCount;
    out.push(
      "<h2>Target</h2>",
      `<p>${METRIC_NAMES[t.metric] ?? escapeHtml(t.metric)} ≤ ${
        escapeHtml(unit(t.goal))
      }: reached ${escapeHtml(unit(t.reached))} from ${
        escapeHtml(unit(t.before))
      } in ${t.steps.length} step${t.steps.length === 1 ? "" : "s"} (${
        t.met ? "met" : "not met"
      })</p>`,
    );
    const m = t.measured;
    if (m) {
      out.push(
        `<p>${
          escapeHtml(
            `measured against the original: ×${m.speedup.toFixed(2)} (rounds ` +
              `×${m.low.toFixed(2)}–×${m.high.toFixed(2)}, ${m.rounds} interleaved) for ` +
              `×${t.speedup} asked` +
              (m.corrections
                ? `; the last step corrected ${m.corrections} time${m.corrections > 1 ? "s" : ""}`
                : ""),
          )
        }</p>`,
      );
    }
    if (t.warnings?.length) out.push(list(t.warnings));
  }
  if (report.search) {
    const { heading, rows } = searchTable(report.search);
    out.push(
      "<h2>Search</h2>",
      `<p>${escapeHtml(heading)}</p>`,
      table(rows[0], rows.slice(1), [4, 5, 6, 7, 8]),
    );
  }
  if (report.fidelity) {
    const f = report.fidelity;
    out.push(
      "<h2>Fidelity</h2>",
      `<p>on ${f.samples} held-out samples: top-1 agreement ${
        (f.top1Agreement * 100).toFixed(1)
      }%, KL ${f.kl.toFixed(4)}, cosine ${f.cosine.toFixed(4)}${
        f.accuracy
          ? `, accuracy ${(f.accuracy.before * 100).toFixed(1)}% → ${
            (f.accuracy.after * 100).toFixed(1)
          }%`
          : ""
      }</p>`,
    );
  }
  if (report.notes.length) out.push("<h2>Notes</h2>", list(report.notes));
  const where = options.dryRun
    ? "dry run: nothing written"
    : options.output
    ? `output ${options.output}`
    : "";
  out.push(
    `<p class="muted">backend ${escapeHtml(report.backend)}${
      where ? ` · ${escapeHtml(where)}` : ""
    }</p>`,
    "</section>",
  );
  return out.join("\n");
}

/**
 * The report as a self-contained HTML page (`--report PATH.html`): no scripts, no external
 * resources.
 *
 * @example await Deno.writeTextFile("report.html", reportPage(report, { input: "vit.onnx" }));
 */
export function reportPage(report: PruneReport, options: ReportHtmlOptions = {}): string {
  const heading = options.input ? `Pruning report: ${options.input}` : "Pruning report";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(heading)}</title>
<style>
body { margin: 24px; max-width: 1100px; }
h1 { font: 600 20px system-ui, sans-serif; }
${REPORT_CSS.trim()}
</style>
</head>
<body>
<h1>${escapeHtml(heading)}</h1>
${reportHtml(report, options)}
</body>
</html>
`;
}
