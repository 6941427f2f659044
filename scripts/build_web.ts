/**
 * Builds the pruning page and the service's worker from web/src/ and the library:
 *   deno task build:web   writes web/index.html (the page, one self-contained file) and
 *                         src/serve/web_assets.json (the same page and worker, for the service)
 *   deno task check:web   builds into memory and fails if either differs from what is committed
 * The bundles are made by `deno bundle` (esbuild inside Deno), so the output is the same only
 * with the same Deno: with another version the check says so and passes.
 *
 * @module
 */
import { composePage, WORKER_SLOT } from "../src/serve/page.ts";

const BUNDLE_DENO = "2.9.6";
const ROOT = new URL("../", import.meta.url);
const at = (p: string) => new URL(p, ROOT).pathname;
const PAGE_SLOT = "<!-- page-script -->";
const OUTPUTS = { page: "web/index.html", assets: "src/serve/web_assets.json" };

async function bundle(entry: string, dir: string, format: "esm" | "iife"): Promise<string> {
  const out = `${dir}/${entry.replace(/\W/g, "_")}.js`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--format",
      format,
      "--minify",
      // onnxruntime is loaded only on demand, and never by the page or the service's jobs.
      "--external",
      "onnxruntime-node",
      "--external",
      "onnxruntime-web",
      "-o",
      out,
      at(entry),
    ],
    cwd: at("."),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`deno bundle ${entry} failed:\n${new TextDecoder().decode(result.stderr)}`);
  }
  return await Deno.readTextFile(out);
}

/** The page's shell (the page script inline) and the worker's source. */
export async function build(): Promise<{ shell: string; worker: string }> {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_web_" });
  try {
    const [worker, page] = await Promise.all([
      // The page starts its worker as a classic script (a module worker from a Blob does not start
      // in a page opened as a file), where `import.meta` does not parse: as an IIFE, code that
      // locates files beside its module (the refit pool's workers) finds none and stays in-thread.
      bundle("web/src/worker.ts", dir, "iife"),
      bundle("web/src/page.ts", dir, "esm"),
    ]);
    if (/<\/script|<!--/i.test(page)) {
      throw new Error("the page's script holds </script or <!--, which would end it inline");
    }
    const template = await Deno.readTextFile(at("web/src/index.html"));
    if (!template.includes(PAGE_SLOT) || !template.includes(WORKER_SLOT)) {
      throw new Error(`web/src/index.html must hold ${PAGE_SLOT} and ${WORKER_SLOT}`);
    }
    const shell = template.replace(
      PAGE_SLOT,
      () => `<script type="module">${page.trim()}</script>`,
    );
    return { shell, worker: worker.trim() + "\n" };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The files the build writes, by path. */
export async function outputs(): Promise<Record<string, string>> {
  const { shell, worker } = await build();
  return {
    [OUTPUTS.page]: composePage(shell, worker),
    [OUTPUTS.assets]: JSON.stringify({ shell, worker }) + "\n",
  };
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  const files = await outputs();
  if (check) {
    if (Deno.version.deno !== BUNDLE_DENO) {
      console.log(
        `web bundle check skipped: the committed bundle is made with Deno ${BUNDLE_DENO}, this ` +
          `is ${Deno.version.deno}`,
      );
      Deno.exit(0);
    }
    const stale = [];
    for (const [path, text] of Object.entries(files)) {
      const committed = await Deno.readTextFile(at(path)).catch(() => undefined);
      if (committed !== text) stale.push(path);
    }
    if (stale.length) {
      console.error(
        `error: ${stale.join(", ")} ${stale.length === 1 ? "is" : "are"} not current with ` +
          `web/src and src: run \`deno task build:web\` and commit the result`,
      );
      Deno.exit(1);
    }
    console.log(`web bundle is current (${Object.keys(files).join(", ")})`);
  } else {
    for (const [path, text] of Object.entries(files)) {
      await Deno.writeTextFile(at(path), text);
      console.log(`wrote ${path} (${(text.length / 1024).toFixed(0)} KiB)`);
    }
  }
}
