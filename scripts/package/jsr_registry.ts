/**
 * A local stand-in for JSR serving this package as `deno publish` would upload it: the files
 * of its dry run, bare specifiers rewritten through deno.json's import map (as publishing
 * does), a version manifest with every file's sha-256. Deno reads it through `JSR_URL`, so
 * `jsr:@prune/vit` resolves exactly as for a user of the published package: only the listed
 * files exist, and no import map of this repository applies.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { publishedFiles } from "./published_files.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A running registry: its URL (for JSR_URL), the package's name and version, and a stop. */
export interface Registry {
  url: string;
  name: string;
  version: string;
  files: Map<string, Uint8Array>;
  /** Bytes of package files served so far. */
  served(): number;
  close(): Promise<void>;
}

/** Rewrites bare specifiers of static and literal dynamic imports through the import map
 * (code lines only: examples in comments stay as written). */
export function unfurl(source: string, imports: Record<string, string>, file: string): string {
  return source.split("\n").map((line) =>
    /^\s*(\*|\/\/|\/\*)/.test(line) ? line : line.replace(
      /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])([^"'\n]+)\2/g,
      (all, lead: string, quote: string, spec: string) => {
        if (/^[./]/.test(spec) || /^[a-z]+:/.test(spec)) return all;
        const key = Object.keys(imports).find((k) =>
          k === spec || (k.endsWith("/") && spec.startsWith(k))
        );
        if (!key) throw new Error(`${file}: "${spec}" is not in deno.json's imports`);
        return `${lead}${quote}${imports[key]}${spec.slice(key.length)}${quote}`;
      },
    )
  ).join("\n");
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Stages the package from its dry run and serves it on a free local port. */
export async function startRegistry(): Promise<Registry> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const [scope, name] = (config.name as string).slice(1).split("/");
  const version = config.version as string;
  const files = new Map<string, Uint8Array>();
  for (const f of await publishedFiles(ROOT)) {
    let bytes = await Deno.readFile(join(ROOT, f.path));
    if (/\.(ts|js|mjs)$/.test(f.path)) {
      const text = unfurl(new TextDecoder().decode(bytes), config.imports, f.path);
      bytes = new TextEncoder().encode(text);
    }
    files.set(`/${f.path}`, bytes);
  }
  const manifest: Record<string, { size: number; checksum: string }> = {};
  for (const [path, bytes] of files) {
    manifest[path] = { size: bytes.length, checksum: `sha256-${await sha256(bytes)}` };
  }
  const base = `/@${scope}/${name}/`;
  let served = 0;
  const json = (value: unknown) =>
    new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path === `${base}meta.json`) {
      return json({ scope, name, latest: version, versions: { [version]: {} } });
    }
    if (path === `${base}${version}_meta.json`) {
      return json({ manifest, exports: config.exports });
    }
    const file = path.startsWith(`${base}${version}/`)
      ? files.get(path.slice(`${base}${version}`.length))
      : undefined;
    if (!file) return new Response("not found", { status: 404 });
    served += file.length;
    return new Response(new Uint8Array(file));
  });
  const { port } = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}/`,
    name: `@${scope}/${name}`,
    version,
    files,
    served: () => served,
    close: () => server.shutdown(),
  };
}
