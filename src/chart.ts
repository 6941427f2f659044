/**
 * A picture of the pruned architecture in the style of NViT's Figure 4: for every transformer
 * block, the share of heads, per-head Q/K and V dims and MLP channels that remain, as bars over
 * the original size (outlined), with the counts written above; the embedding width in the title.
 * A self-contained SVG (no scripts, no external resources), written next to the output model.
 *
 * @module
 */
import type { AttentionBlockReport, MlpBlockReport, PruneReport } from "./report.ts";

const KINDS = [
  { key: "heads", label: "H", color: "#4e79a7" },
  { key: "qk", label: "QK", color: "#f28e2b" },
  { key: "v", label: "V", color: "#e15759" },
  { key: "mlp", label: "MLP", color: "#59a14f" },
] as const;

type Kind = (typeof KINDS)[number]["key"];

interface Column {
  block: number;
  values: Partial<Record<Kind, { before: number; after: number }>>;
}

function escape(text: string): string {
  return text.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** The k-th attention block and the k-th MLP block form transformer block k. */
function columns(report: PruneReport): Column[] {
  const attention = report.blocks.filter((b): b is AttentionBlockReport => b.kind === "attention");
  const mlp = report.blocks.filter((b): b is MlpBlockReport => b.kind === "mlp");
  const n = Math.max(attention.length, mlp.length);
  return Array.from({ length: n }, (_, i) => {
    const a = attention[i], m = mlp[i];
    const values: Column["values"] = {};
    if (a) {
      values.heads = a.heads;
      values.qk = a.headDim;
      values.v = a.vHeadDim ?? a.headDim;
    }
    if (m) values.mlp = m.channels;
    return { block: i, values };
  });
}

/** An upper bound of a line's width in a sans-serif font: no glyph of the text drawn here
 * (digits, Latin letters, arrows) is wider than 1 em; digits and most letters are under 0.65 em
 * (DejaVu Sans, the usual sans-serif: 0.636). */
function textWidth(text: string, size: number, bold = false): number {
  let em = 0;
  for (const c of text) em += /[MWmw@%→×]/.test(c) ? 1 : /[A-Z]/.test(c) ? 0.8 : 0.65;
  return em * size * (bold ? 1.1 : 1);
}

/** The SVG chart of a pruning report. */
export function architectureChart(report: PruneReport, title = "pruned architecture"): string {
  const cols = columns(report);
  const bar = 14, gap = 3, groupGap = 18;
  const groupWidth = KINDS.length * (bar + gap) - gap;
  const left = 48, top = 70, plot = 200, bottom = 46;
  const emb = report.blocks.find((b): b is MlpBlockReport => b.kind === "embedding");
  const subtitle = `params ${compact(report.params.before)} → ${compact(report.params.after)}` +
    ` · MACs ${compact(report.macs.before)} → ${compact(report.macs.after)}` +
    (emb ? ` · embedding width ${emb.channels.before} → ${emb.channels.after}` : "");
  // Wide enough for the bars and for the title and subtitle, which SVG does not wrap.
  const width = Math.ceil(Math.max(
    420,
    left + cols.length * (groupWidth + groupGap) + 20,
    left + textWidth(title, 14, true) + 20,
    left + textWidth(subtitle, 10) + 20,
  ));
  const height = top + plot + bottom;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<text x="${left}" y="36">${escape(subtitle)}</text>`,
  );
  // Legend.
  KINDS.forEach((k, i) => {
    const x = left + i * 70;
    out.push(
      `<rect x="${x}" y="46" width="10" height="10" fill="${k.color}"/>`,
      `<text x="${x + 14}" y="55">${k.label}</text>`,
    );
  });
  // Axis: share of the original size.
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = top + plot * (1 - f);
    out.push(
      `<line x1="${left - 4}" x2="${width - 10}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y + 3}" text-anchor="end">${f * 100}%</text>`,
    );
  }
  cols.forEach((col, c) => {
    const x0 = left + 6 + c * (groupWidth + groupGap);
    KINDS.forEach((k, i) => {
      const v = col.values[k.key];
      if (!v || v.before <= 0) return;
      const x = x0 + i * (bar + gap);
      const h = plot * (v.after / v.before);
      out.push(
        `<rect x="${x}" y="${top}" width="${bar}" height="${plot}" fill="none" stroke="${k.color}" ` +
          `stroke-opacity="0.5"/>`,
        `<rect x="${x}" y="${top + plot - h}" width="${bar}" height="${h}" fill="${k.color}">` +
          `<title>block ${col.block} ${k.label}: ${v.after} of ${v.before}</title></rect>`,
        `<text x="${x + bar / 2}" y="${top + plot - h - 3}" text-anchor="middle" ` +
          `font-size="8">${v.after}</text>`,
      );
    });
    out.push(
      `<text x="${x0 + groupWidth / 2}" y="${
        top + plot + 16
      }" text-anchor="middle">${col.block}</text>`,
    );
  });
  out.push(
    `<text x="${left + (width - left) / 2}" y="${height - 10}" text-anchor="middle">` +
      `transformer block (bars: remaining share; outlines: original)</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}
