/**
 * Temporary files of a write in progress: named so that a later run can tell them apart from
 * anything else (`.<output name>.prune-<pid>-<random>.tmp`), removed when the process is stopped
 * by SIGINT or SIGTERM, and, when a run was killed outright, removed by the next run that writes
 * into the same folder once the process that made them is gone.
 *
 * @module
 */

const LEFTOVER = /^\.(.+)\.prune-(\d+)-[0-9a-f]{16}\.tmp$/;
const live = new Set<string>();
const SIGNALS = [["SIGINT", 130], ["SIGTERM", 143]] as const;
const handlers: [Deno.Signal, () => void][] = [];

function dirname(path: string) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function basename(path: string) {
  return path.slice(path.lastIndexOf("/") + 1);
}

function hex(n: number): string {
  return [...crypto.getRandomValues(new Uint8Array(n))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function pid(): number {
  try {
    return Deno.pid;
  } catch {
    return 0;
  }
}

/** A fresh temporary path beside `path`, recognisable as this tool's. */
export function tempPath(path: string): string {
  return `${dirname(path)}/.${basename(path)}.prune-${pid()}-${hex(8)}.tmp`;
}

function removeLive(): void {
  for (const p of live) {
    try {
      Deno.removeSync(p, { recursive: true });
    } catch { /* never created or already renamed */ }
  }
  live.clear();
}

/**
 * Registers a temporary file (or folder): while any is registered, SIGINT and SIGTERM remove them all and
 * end the process (exit code 130 / 143), as the signal would have.
 */
export function trackTemp(path: string): void {
  live.add(path);
  if (handlers.length) return;
  for (const [signal, code] of SIGNALS) {
    const handler = () => {
      removeLive();
      Deno.exit(code);
    };
    try {
      Deno.addSignalListener(signal, handler);
      handlers.push([signal, handler]);
    } catch { /* no signals here (sandbox, or not on this OS) */ }
  }
}

/** Forgets a temporary file (renamed into place or removed); the last one drops the handlers. */
export function untrackTemp(path: string): void {
  live.delete(path);
  if (live.size) return;
  for (const [signal, handler] of handlers.splice(0)) {
    try {
      Deno.removeSignalListener(signal, handler);
    } catch { /* already gone */ }
  }
}

function alive(processId: number): boolean | undefined {
  if (processId === pid()) return true;
  try {
    Deno.statSync(`/proc/${processId}`);
    return true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return undefined;
  }
  try {
    Deno.statSync("/proc/self");
    return false;
  } catch {
    return undefined; // no /proc: cannot tell
  }
}

/**
 * Temporary files that runs writing `output` left in its folder when they were killed. Those of
 * processes that are gone are removed; those whose process cannot be checked are only listed.
 */
export async function cleanLeftovers(
  output: string,
): Promise<{ removed: string[]; kept: string[] }> {
  const dir = dirname(output);
  const removed: string[] = [], kept: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = LEFTOVER.exec(e.name);
      if (!m || !e.isFile) continue;
      const state = alive(Number(m[2]));
      if (state === true) continue; // a run still writing
      const file = `${dir}/${e.name}`;
      if (state === false) {
        try {
          await Deno.remove(file);
          removed.push(file);
        } catch { /* removed by another run meanwhile */ }
      } else {
        kept.push(file);
      }
    }
  } catch { /* folder not listable: nothing to say */ }
  return { removed, kept };
}
