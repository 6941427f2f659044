/**
 * The files `deno publish` puts in the package, as its dry run lists them (the `publish`
 * include/exclude of deno.json applied by Deno itself, not by a copy of its rules).
 *
 * @module
 */
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** A file of the package: its path in the repository and its size in bytes. */
export interface PublishedFile {
  path: string;
  bytes: number;
}

/**
 * Runs `deno publish --dry-run` in `root` and returns the files it would publish, with their
 * sizes on disk. Throws with Deno's output when the dry run fails.
 *
 * @example const files = await publishedFiles("."); console.log(files.length);
 */
export async function publishedFiles(root: string): Promise<PublishedFile[]> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    // --allow-dirty: what is checked is the package, not whether every change is committed.
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`deno publish --dry-run failed:\n${text}`);
  const files: PublishedFile[] = [];
  for (const match of text.matchAll(/^\s+(file:\/\/\S+) \([^)]*\)$/gm)) {
    const file = fromFileUrl(match[1]);
    files.push({ path: relative(root, file), bytes: (await Deno.stat(file)).size });
  }
  if (files.length === 0) throw new Error(`deno publish --dry-run listed no files:\n${text}`);
  return files;
}
