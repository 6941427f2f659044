/**
 * The package as a JSR user gets it: `deno publish`'s files served by a local stand-in for JSR
 * (scripts/package/jsr_registry.ts), used from a folder outside the repository with no import
 * map of ours — the library with no permission flags, the CLI (`mod.ts` as main) with read and
 * write only — and its module graph free of onnxruntime and of the benchmarks' packages.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startRegistry } from "../scripts/package/jsr_registry.ts";
import { decodeModel } from "../src/onnx/model_io.ts";

const MODEL = new URL("./fixtures/timm_vit.onnx", import.meta.url);
const NETWORK_ENV =
  /^(DENO_CERT|DENO_TLS_CA_STORE|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|NO_PROXY)$/i;

/** Runs deno in `cwd` against the registry, in a cache of its own that shares npm packages. */
async function deno(
  env: Record<string, string>,
  cwd: string,
  args: string[],
  stdin?: Uint8Array,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { ...env, NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" },
    clearEnv: true,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const { code, stdout, stderr } = await child.output();
  return { code, stdout, stderr: new TextDecoder().decode(stderr) };
}

Deno.test("the published package works from outside the repository: library and CLI", async () => {
  const registry = await startRegistry();
  const user = await Deno.makeTempDir({ prefix: "prune-vit-user-" });
  try {
    const info = JSON.parse(
      new TextDecoder().decode(
        (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
          .output()).stdout,
      ),
    );
    // A cache of its own (nothing of this repository's modules), npm packages shared.
    await Deno.mkdir(join(user, "deno_dir"));
    await Deno.symlink(info.npmCache, join(user, "deno_dir", "npm"));
    const env = {
      // How this machine reaches the npm registry (certificates, proxies) carries over.
      ...Object.fromEntries(
        Object.entries(Deno.env.toObject()).filter(([name]) => NETWORK_ENV.test(name)),
      ),
      JSR_URL: registry.url,
      DENO_DIR: join(user, "deno_dir"),
      PATH: Deno.env.get("PATH") ?? "",
      HOME: user,
    };
    const spec = `jsr:${registry.name}@${registry.version}`;
    const model = await Deno.readFile(MODEL);

    // The library, with no permission flags at all.
    await Deno.writeTextFile(
      join(user, "main.ts"),
      `import { prune } from "${spec}";
const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
const { bytes, report } = await prune(input, { pruneNumHeads: true, headPruningRatio: 0.5 });
console.error(JSON.stringify(report.params));
await Deno.stdout.write(bytes);
`,
    );
    const lib = await deno(env, user, ["run", "--no-prompt", "main.ts"], model);
    assert.equal(lib.code, 0, lib.stderr);
    assert.ok(decodeModel(lib.stdout, "stdout").graph!.node!.length > 0);
    assert.ok(lib.stdout.length < model.length, "the pruned model is smaller");
    assert.doesNotMatch(lib.stderr, /onnxruntime/, "no onnxruntime fetched or loaded");

    // The CLI: mod.ts as main, reading and writing files, nothing else.
    await Deno.writeFile(join(user, "vit.onnx"), model);
    const args = ["vit.onnx", "-o", "vit.pruned.onnx", "--prune-num-heads"];
    const cli = await deno(env, user, [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      spec,
      ...args,
      "--head-pruning-ratio",
      "0.5",
      "--json",
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    const report = JSON.parse(new TextDecoder().decode(cli.stdout));
    assert.ok(
      report.blocks.some((b: { heads?: { before: number; after: number } }) =>
        b.heads && b.heads.after < b.heads.before
      ),
    );
    const written = await Deno.readFile(join(user, "vit.pruned.onnx"));
    assert.equal(written.length, lib.stdout.length, "the CLI and the library agree");

    // Without --allow-read the CLI says which feature needs which flag.
    const denied = await deno(env, user, ["run", "--no-prompt", spec, ...args]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /^error: reading the model vit\.onnx needs --allow-read/m);

    // What the package's graph pulls in: onnx-proto, the image decoders, not onnxruntime.
    const graph = await deno(env, user, ["info", "--json", spec]);
    assert.equal(graph.code, 0, graph.stderr);
    const npm = Object.keys(JSON.parse(new TextDecoder().decode(graph.stdout)).npmPackages);
    assert.ok(npm.some((p) => p.startsWith("onnx-proto@")), npm.join(", "));
    for (const heavy of ["onnxruntime-node", "onnxruntime-web", "@stdlib/"]) {
      assert.ok(!npm.some((p) => p.startsWith(heavy)), `${heavy} in ${npm.join(", ")}`);
    }
  } finally {
    await registry.close();
    await Deno.remove(user, { recursive: true });
  }
});
