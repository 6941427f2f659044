/**
 * What a first run of the published package downloads, measured: each case starts from an
 * empty Deno cache, gets `jsr:@prune/vit` from the local stand-in for JSR (the files
 * `deno publish` would upload) and its npm packages through a counting proxy of the npm
 * registry (`NPM_CONFIG_REGISTRY`). Prints a table (package files, npm tarballs, npm metadata,
 * the cache on disk afterwards) for the README.
 *
 * Run: `deno run -A scripts/package/first_run.ts [--model tests/fixtures/timm_vit.onnx]`
 * (needs the npm registry).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { startRegistry } from "./jsr_registry.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "tests/fixtures/timm_vit.onnx" },
    upstream: { type: "string", default: "https://registry.npmjs.org" },
  },
});
const upstream = values.upstream!.replace(/\/$/, "");

/** A proxy of the npm registry that counts what it serves (tarball URLs point back to it). */
function countingProxy() {
  const counts = { tarballs: 0, metadata: 0, packages: [] as string[] };
  let self = "";
  const server: Deno.HttpServer = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, async (req): Promise<Response> => {
    const path = new URL(req.url).pathname;
    const res = await fetch(upstream + path, {
      headers: { accept: req.headers.get("accept") ?? "application/json" },
    });
    if (!res.ok) return new Response(res.body, { status: res.status });
    if (path.endsWith(".tgz")) {
      const body = new Uint8Array(await res.arrayBuffer());
      counts.tarballs += body.length;
      counts.packages.push(decodeURIComponent(path.split("/-/")[1]).replace(/\.tgz$/, ""));
      return new Response(body);
    }
    const text: string = (await res.text()).replaceAll(`${upstream}/`, `${self}/`);
    counts.metadata += new TextEncoder().encode(text).length;
    return new Response(text, { headers: { "content-type": "application/json" } });
  });
  self = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  return { url: `${self}/`, counts, close: () => server.shutdown() };
}

async function duBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) n += await duBytes(p);
    else if (e.isFile) n += (await Deno.stat(p)).size;
  }
  return n;
}

const model = await Deno.readFile(resolve(values.model!));
const cases: { name: string; flags: string[]; args?: string[]; library?: boolean }[] = [
  { name: "library: prune(bytes), magnitude", flags: [], library: true },
  {
    name: "CLI: magnitude prune (-R -W)",
    flags: ["--allow-read", "--allow-write"],
    args: ["vit.onnx", "--prune-num-heads", "--head-pruning-ratio", "0.5"],
  },
  {
    name: "CLI: --verify-run (onnxruntime-node, -A)",
    flags: ["-A"],
    args: ["vit.onnx", "--pruning-ratio", "0.5", "--verify-run"],
  },
];
const registry = await startRegistry();
const spec = `jsr:${registry.name}@${registry.version}`;
const rows: string[][] = [];
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
try {
  for (const c of cases) {
    const dir = await Deno.makeTempDir({ prefix: "prune-vit-first-run-" });
    const proxy = countingProxy();
    const jsrBefore = registry.served();
    try {
      await Deno.writeFile(join(dir, "vit.onnx"), model);
      await Deno.writeTextFile(
        join(dir, "main.ts"),
        `import { prune } from "${spec}";\n` +
          `const { bytes } = await prune(new Uint8Array(await new Response(Deno.stdin.readable)` +
          `.arrayBuffer()), { pruneNumHeads: true, headPruningRatio: 0.5 });\n` +
          `await Deno.stdout.write(bytes);\n`,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", ...c.flags, ...(c.library ? ["main.ts"] : [spec, ...c.args!])],
        cwd: dir,
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "",
          HOME: dir,
          DENO_DIR: join(dir, "deno_dir"),
          JSR_URL: registry.url,
          NPM_CONFIG_REGISTRY: proxy.url,
          NO_COLOR: "1",
          XDG_RUNTIME_DIR: "/tmp",
        },
        stdin: c.library ? "piped" : "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      if (c.library) {
        const w = child.stdin.getWriter();
        await w.write(model);
        await w.close();
      }
      const { code, stderr } = await child.output();
      if (code !== 0) {
        throw new Error(`${c.name}: exit ${code}\n${new TextDecoder().decode(stderr)}`);
      }
      rows.push([
        c.name,
        mb(registry.served() - jsrBefore),
        mb(proxy.counts.tarballs),
        mb(proxy.counts.metadata),
        mb(await duBytes(join(dir, "deno_dir"))),
        String(proxy.counts.packages.length),
      ]);
      console.error(`${c.name}: ${proxy.counts.packages.sort().join(", ")}`);
    } finally {
      await proxy.close();
      await Deno.remove(dir, { recursive: true });
    }
  }
} finally {
  await registry.close();
}
const head = [
  "first run",
  "package files",
  "npm tarballs",
  "npm metadata",
  "cache on disk",
  "npm packages",
];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log([line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n"));
