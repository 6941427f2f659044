/**
 * Starts the service (`src/serve.ts`) as `deno task serve` does — only `--allow-net` and
 * `--allow-env` — on a free port of 127.0.0.1, and stops it.
 */

export interface RunningService {
  url: string;
  pid: number;
  /** Peak resident memory of the server process so far (Linux), in bytes. */
  peakRss(): Promise<number>;
  stop(): Promise<void>;
}

export async function startService(env: Record<string, string> = {}): Promise<RunningService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net",
      "--allow-env",
      new URL("../../src/serve.ts", import.meta.url).pathname,
    ],
    env: {
      PORT: "0",
      PRUNE_VIT_HOST: "127.0.0.1",
      XDG_RUNTIME_DIR: "/tmp",
      NO_COLOR: "1",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    while (!/http:\/\/[\d.]+:\d+\//.test(seen)) {
      const { done, value } = await reader.read();
      if (done) {
        throw new Error(`the service did not start: ${seen}${await stderr}`);
      }
      seen += value;
    }
  } finally {
    clearTimeout(timer);
  }
  // Keep draining stdout so the server never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  const url = seen.match(/http:\/\/[\d.]+:\d+/)![0];
  return {
    url,
    pid: child.pid,
    async peakRss() {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      return Number(status.match(/VmHWM:\s+(\d+) kB/)![1]) * 1024;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await stderr;
    },
  };
}
