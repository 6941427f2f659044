/**
 * The zoo check: every export of tests/fixtures/zoo/index.json (or the files given) × every
 * mode (heads, head dims, Q/K≠V, MLP, embedding), pruned and compared with the masked original
 * on every floating-point output.
 *
 *   deno run -A scripts/verify/zoo_check.ts                    # the whole zoo
 *   deno run -A scripts/verify/zoo_check.ts a.onnx b.onnx      # these files
 *   deno run -A scripts/verify/zoo_check.ts --only hf_bert     # exports whose name starts so
 *   … --mode heads --dim past_sequence_length=4               # some modes; a symbolic dim's size
 *   … --json out/zoo.json --markdown out/zoo.md               # results, the table
 *   … --write-expected                                        # tests/fixtures/zoo/expected.json
 *   … --readme                                                # the table into README.md
 *
 * An export whose module's metadata (index.json) has "dimValues" ({ name: size }) is checked with
 * those symbolic dim sizes; --write-expected keeps them in expected.json for the tests.
 *
 * Prints one line per cell and the markdown table; exits 1 if any cell is wrong, vacuous,
 * unpruned without a word, an error, or a refusal that names no node (a refusal that names one
 * is not a failure). --write-expected leaves failed cells out.
 */
import { parseArgs } from "node:util";
import { encodeModel, readModelFile } from "../../src/onnx/model_io.ts";
import { createCore } from "../../src/core/mod.ts";
import { type Cell, checkCell, formatCell, MODE_TITLES, MODES } from "./zoo_modes.ts";

const ROOT = new URL("../../", import.meta.url);
const ZOO = new URL("tests/fixtures/zoo/", ROOT);
const EXPECTED = new URL("expected.json", ZOO);
const README = new URL("README.md", ROOT);
const BEGIN = "<!-- zoo table: begin (scripts/verify/zoo_check.ts --readme) -->";
const END = "<!-- zoo table: end -->";

interface Entry {
  file?: string;
  /** Sizes of symbolic dims the export needs (e.g. a static KV buffer's length), from its
   * module's metadata; kept in expected.json for the tests. */
  dimValues?: Record<string, number>;
  family?: string;
  exporter?: string;
  failed?: string;
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    only: { type: "string", multiple: true },
    mode: { type: "string", multiple: true },
    dim: { type: "string", multiple: true },
    json: { type: "string" },
    markdown: { type: "string" },
    "write-expected": { type: "boolean" },
    readme: { type: "boolean" },
  },
});

/** --dim NAME=N: a symbolic dim's size, for the tool's probe and the oracle's inputs alike. */
const dimValues: Record<string, number> = {};
for (const d of values.dim ?? []) {
  const m = /^(.+)=(\d+)$/.exec(d);
  if (!m) {
    console.error(`--dim ${d}: expected NAME=N (e.g. --dim past_sequence_length=4)`);
    Deno.exit(2);
  }
  dimValues[m[1]] = Number(m[2]);
}

const modes = values.mode?.length ? values.mode : Object.keys(MODES);
for (const m of modes) {
  if (!MODES[m]) {
    console.error(`--mode ${m}: unknown mode (one of ${Object.keys(MODES).join(", ")})`);
    Deno.exit(2);
  }
}

/** Exports to check: name → file URL (and the index's description). */
const exports = new Map<string, { url: URL; entry: Entry }>();
if (positionals.length) {
  for (const f of positionals) {
    const name = f.split("/").pop()!.replace(/\.onnx$/, "");
    exports.set(name, { url: new URL(f, `file://${Deno.cwd()}/`), entry: {} });
  }
} else {
  let index: Record<string, Entry>;
  try {
    index = JSON.parse(await Deno.readTextFile(new URL("index.json", ZOO)));
  } catch (e) {
    console.error(
      `tests/fixtures/zoo/index.json: ${e instanceof Error ? e.message : e} ` +
        `(build it with scripts/fixtures/make_zoo.py, or give files)`,
    );
    Deno.exit(2);
  }
  for (const [name, entry] of Object.entries(index)) {
    if (values.only?.length && !values.only.some((o) => name.startsWith(o))) continue;
    if (entry.failed || !entry.file) {
      console.log(`skip ${name}: the export failed (${entry.failed ?? "no file"})`);
      continue;
    }
    exports.set(name, { url: new URL(entry.file, ZOO), entry });
  }
}

/** Exact, pruned under a LayerNorm, or refused with a node named: what the tests may expect. */
function passes(cell: Cell): boolean {
  return cell.outcome === "exact" || cell.outcome === "runs" ||
    (cell.outcome === "refused" && !!cell.namesNode);
}

const core = await createCore({ backend: "cpu" });
const results: Record<string, Record<string, Cell>> = {};
let failures = 0;
for (const [name, { url, entry }] of exports) {
  let bytes: Uint8Array;
  try {
    bytes = encodeModel(await readModelFile(url.pathname));
  } catch (e) {
    console.log(`FAIL ${name}: ${e instanceof Error ? e.message : e}`);
    failures++;
    continue;
  }
  results[name] = {};
  for (const mode of modes) {
    const dims = { ...entry.dimValues, ...dimValues };
    const cell = await checkCell(bytes, mode, {
      core,
      ...(Object.keys(dims).length ? { dimValues: dims } : {}),
    });
    results[name][mode] = cell;
    const bad = !passes(cell);
    if (bad) failures++;
    console.log(`${bad ? "FAIL" : "ok  "} ${name} ${mode}: ${formatCell(cell)}`);
  }
}

const table = [
  `| export | ${modes.map((m) => MODE_TITLES[m]).join(" | ")} |`,
  `| --- | ${modes.map(() => "---").join(" | ")} |`,
  ...Object.entries(results).map(([name, cells]) =>
    `| ${name} | ${modes.map((m) => formatCell(cells[m])).join(" | ")} |`
  ),
].join("\n");
const cells = Object.values(results).flatMap((r) => Object.values(r));
const count = (o: string) => cells.filter((c) => c.outcome === o).length;
// The measure: heads, head dims (unless refused for RoPE) and MLP all exact.
const full =
  Object.values(results).filter((r) =>
    r.heads?.outcome === "exact" && r.mlp?.outcome === "exact" &&
    (r.dims?.outcome === "exact" ||
      (r.dims?.outcome === "refused" && /RoPE|rotary/i.test(r.dims.message ?? "")))
  ).length;
const unnamed = cells.filter((c) => c.outcome === "refused" && !c.namesNode).length;
const summary = `${Object.keys(results).length} exports, ${cells.length} cells: ` +
  `${count("exact")} exact, ${count("runs")} pruned not mask-exact (LayerNorm, re-quantized), ` +
  `${count("refused")} refused, ${failures} failed (${unnamed} of them refusals naming no node)` +
  `; ${full} of ${Object.keys(results).length} prune fully (heads, MLP, head dims unless ` +
  `refused for RoPE, all exact)`;
console.log(`\n${table}\n\n${summary}`);

if (values.json) {
  await Deno.writeTextFile(values.json, JSON.stringify({ summary, results }, null, 2) + "\n");
}
if (values.markdown) await Deno.writeTextFile(values.markdown, `${table}\n\n${summary}\n`);
if (values["write-expected"]) {
  // Merged into the file: exports not checked in this run keep their expectations.
  let expected: Record<string, Record<string, unknown>> = {};
  try {
    expected = JSON.parse(await Deno.readTextFile(EXPECTED));
  } catch { /* first run */ }
  for (const [name, r] of Object.entries(results)) {
    const dims = exports.get(name)?.entry.dimValues;
    expected[name] = {
      ...(dims ? { dimValues: dims } : {}),
      ...Object.fromEntries(
        Object.entries(r).filter(([, c]) => passes(c)).map(([m, c]) => [m, c.outcome]),
      ),
    };
  }
  const sorted = Object.fromEntries(Object.entries(expected).sort(([a], [b]) => a < b ? -1 : 1));
  await Deno.writeTextFile(EXPECTED, JSON.stringify(sorted, null, 2) + "\n");
  console.log(`wrote ${EXPECTED.pathname.split("/").slice(-4).join("/")} (failed cells left out)`);
}
if (values.readme) {
  const readme = await Deno.readTextFile(README);
  const [at, end] = [readme.indexOf(BEGIN), readme.indexOf(END)];
  if (at < 0 || end < at) {
    console.error(`README.md: no "${BEGIN}" … "${END}" markers to put the table between`);
    Deno.exit(2);
  }
  await Deno.writeTextFile(
    README,
    `${readme.slice(0, at + BEGIN.length)}\n\n${table}\n\n${summary}\n\n${readme.slice(end)}`,
  );
}
Deno.exit(failures ? 1 : 0);
