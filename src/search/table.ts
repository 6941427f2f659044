/**
 * The search's part of the text and HTML reports (types only: the page renders it too).
 *
 * @module
 */
import type { SearchReport } from "./mod.ts";

function compact(n: number): string {
  const [d, u] = n >= 1e9 ? [1e9, "G"] : n >= 1e6 ? [1e6, "M"] : n >= 1e3 ? [1e3, "K"] : [1, ""];
  return `${(n / d).toPrecision(3)}${u ? ` ${u}` : ""}`;
}

/** The search as a heading line and a table (header first), for the text and HTML reports. */
export function searchTable(s: SearchReport): { heading: string; rows: string[][] } {
  const fixed = (["criterion", "compensation", "allocation"] as const).filter((k) =>
    !s.searched.includes(k)
  );
  const heading = `search: ${s.candidates.length} candidates pruned on ${s.samples.fit} ` +
    `calibration samples, scored on ${s.samples.heldOut} held out (seed ${s.seed}) by ` +
    `${s.metric === "kl" ? "lowest KL" : "highest cosine"}; ${s.passes} statistics ` +
    `pass${s.passes === 1 ? "" : "es"}` +
    (s.steps !== undefined ? `, ${s.steps} step${s.steps === 1 ? "" : "s"} to the target` : "") +
    (fixed.length ? `; fixed: ${fixed.join(", ")}` : "") + `; ${s.seconds.toFixed(1)} s`;
  const floors = s.searched.includes("minKeep");
  const rows = [[
    "",
    "criterion",
    "compensation",
    "allocation",
    ...(floors ? ["floor"] : []),
    "KL",
    "top-1 agree",
    "cosine",
    "MACs",
    "s",
  ]];
  s.candidates.forEach((c, i) => {
    const f = c.fidelity;
    rows.push([
      i === s.chosen ? "chosen" : "",
      c.criterion,
      c.compensation,
      c.allocation,
      ...(floors ? [c.minKeep === undefined ? "" : String(c.minKeep)] : []),
      f ? f.kl.toFixed(4) : "failed",
      f ? `${(f.top1Agreement * 100).toFixed(1)}%` : c.error?.slice(0, 60) ?? "",
      f ? f.cosine.toFixed(4) : "",
      c.macs === undefined ? "" : compact(c.macs),
      c.seconds.toFixed(1),
    ]);
  });
  return { heading, rows };
}
