/**
 * CI check of the JSR package: `deno publish --dry-run` passes, the package holds what users
 * need (mod.ts, the sources, the wasm build, README, LICENSE) and nothing of the tests, and its
 * size stays under a budget well below JSR's 20 MiB limit (the dry run does not check it).
 *
 * Run: `deno run -A scripts/package/check.ts [--budget-mib N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath as fromFileUrl } from "node:url";
import { publishedFiles } from "./published_files.ts";

/** JSR's limit on a package's total size. */
const JSR_LIMIT = 20 * 1024 * 1024;
const REQUIRED = [
  "mod.ts",
  "README.md",
  "LICENSE",
  "deno.json",
  "src/prune.ts",
  "src/cli.ts",
  "src/core/wasm/prune_core.js",
  "src/core/wasm/prune_core_bg.js",
  "src/core/wasm/prune_core_bg.wasm",
];
const FORBIDDEN = /^(tests|bench|scripts|crates|\.ci|\.git)(\/|$)/;

const { values } = parseArgs({ options: { "budget-mib": { type: "string", default: "4" } } });
const budget = Number(values["budget-mib"]) * 1024 * 1024;
const root = fromFileUrl(new URL("../../", import.meta.url));
const files = await publishedFiles(root);
const total = files.reduce((s, f) => s + f.bytes, 0);
const paths = new Set(files.map((f) => f.path));
const problems = [
  ...REQUIRED.filter((p) => !paths.has(p)).map((p) => `missing from the package: ${p}`),
  ...files.filter((f) => FORBIDDEN.test(f.path)).map((f) => `not for users: ${f.path}`),
  ...(total > budget ? [`${mib(total)} is over the budget of ${mib(budget)}`] : []),
  ...(total > JSR_LIMIT ? [`${mib(total)} is over JSR's limit of ${mib(JSR_LIMIT)}`] : []),
];
const largest = [...files].sort((a, b) => b.bytes - a.bytes).slice(0, 3);
console.log(
  `package: ${files.length} files, ${mib(total)} (budget ${mib(budget)}, JSR limit ` +
    `${mib(JSR_LIMIT)}); largest: ${largest.map((f) => `${f.path} ${kib(f.bytes)}`).join(", ")}`,
);
for (const p of problems) console.error(`error: ${p}`);
Deno.exit(problems.length ? 1 : 0);

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}
function kib(n: number): string {
  return `${(n / 1024).toFixed(0)} KiB`;
}
