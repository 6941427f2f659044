/**
 * Runs fuzz cases in a child process under a watchdog: a case that runs past its time limit or
 * its memory limit, or a child that dies (a native crash, an abort), becomes a finding with the
 * seed and mutation that reproduce it, and a fresh child takes the next case.
 *
 * The child (tests/fuzz/child.ts) reads one request per line on stdin and answers two lines on
 * stdout: `start` with the mutation (before pruning, so a hang still names it), then the outcome.
 */
import type { CaseOutcome } from "./case.ts";

/** One case to run: the seed file (relative to tests/fixtures), the seed number and the case. */
export interface CaseRequest {
  file: string;
  seed: number;
  n: number;
}

/** A case's outcome with its wall time; hangs, memory and crashes are findings too. */
export interface WatchedOutcome extends CaseOutcome {
  ms: number;
  /** "hang", "memory", "crash" where the watchdog ended the case (twice: it is run again). */
  watchdog?: "hang" | "memory" | "crash";
  /** What ended the first try of a case whose second try finished (a machine too busy). */
  transient?: string;
}

/** Limits of one case. */
export interface WatchdogOptions {
  /** Wall time of one case (default 20 s). */
  caseSeconds?: number;
  /** Resident memory of the child (default 3 GiB), checked every 100 ms where /proc exists. */
  memoryBytes?: number;
  /** The child's entry point (default tests/fuzz/child.ts). */
  child?: URL;
}

const CHILD = new URL("./child.ts", import.meta.url);
/** What starts the child's protocol lines on stdout. */
export const PREFIX = "@fuzz ";
const READY_MS = 120_000;

/** Resident set size of a process in bytes, or undefined where /proc cannot tell. */
function rss(pid: number): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

class Child {
  readonly process: Deno.ChildProcess;
  readonly stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: string[] = [];
  #buffer = "";
  #waiting?: () => void;
  #closed = false;
  stderrTail = "";

  constructor(entry: URL) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--max-old-space-size=4096", entry.href],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.stdin = this.process.stdin.getWriter();
    this.#pump(this.process.stdout, (text) => {
      this.#buffer += text;
      const parts = this.#buffer.split("\n");
      this.#buffer = parts.pop()!;
      for (const l of parts) if (l.startsWith(PREFIX)) this.#lines.push(l.slice(PREFIX.length));
      this.#waiting?.();
    }).finally(() => {
      this.#closed = true;
      this.#waiting?.();
    });
    this.#pump(this.process.stderr, (text) => {
      this.stderrTail = (this.stderrTail + text).slice(-2000);
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>, on: (text: string) => void) {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) on(decoder.decode(chunk, { stream: true }));
    } catch {
      // the stream ends with the process
    }
  }

  /** The next line, or "timeout" / "closed" / "memory". */
  async next(ms: number, memoryBytes: number): Promise<string> {
    const until = performance.now() + ms;
    while (!this.#lines.length) {
      if (this.#closed) return "closed";
      const left = until - performance.now();
      if (left <= 0) return "timeout";
      const used = rss(this.process.pid);
      if (used !== undefined && used > memoryBytes) return "memory";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.#waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiting = undefined;
    }
    return this.#lines.shift()!;
  }

  async send(line: string) {
    await this.stdin.write(new TextEncoder().encode(line + "\n"));
  }

  async kill(): Promise<Deno.CommandStatus> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.stdin.close().catch(() => {});
    return await this.process.status;
  }
}

/** A child process that runs cases one at a time, replaced whenever the watchdog ends one. */
export class Watchdog {
  #child?: Child;
  readonly #caseMs: number;
  readonly #memory: number;
  readonly #entry: URL;
  /** Children started so far (1 + one per hang, memory overrun or crash). */
  started = 0;

  constructor(options: WatchdogOptions = {}) {
    this.#caseMs = (options.caseSeconds ?? 20) * 1000;
    this.#memory = options.memoryBytes ?? 3 * 2 ** 30;
    this.#entry = options.child ?? CHILD;
  }

  async #ready(): Promise<Child> {
    if (this.#child) return this.#child;
    const child = new Child(this.#entry);
    this.started++;
    const line = await child.next(READY_MS, this.#memory);
    if (line !== '"ready"') {
      const status = await child.kill();
      throw new Error(
        `the fuzz child did not start (${line}, exit ${status.code}): ${child.stderrTail}`,
      );
    }
    return this.#child = child;
  }

  /** Runs one case; never throws for what the case does. A case the watchdog ends is run once
   * more in a fresh child: only what happens twice is a finding. */
  async run(request: CaseRequest): Promise<WatchedOutcome> {
    const first = await this.#try(request);
    if (!first.watchdog) return first;
    const second = await this.#try(request);
    if (second.watchdog) return second;
    return { ...second, transient: `${first.watchdog}: ${first.message}` };
  }

  async #try(request: CaseRequest): Promise<WatchedOutcome> {
    const child = await this.#ready();
    const t = performance.now();
    await child.send(JSON.stringify(request));
    let mutation = "(before the mutation was reported)", mode = "?";
    for (;;) {
      const line = await child.next(this.#caseMs - (performance.now() - t), this.#memory);
      const ms = performance.now() - t;
      if (line === "timeout" || line === "memory" || line === "closed") {
        this.#child = undefined;
        const status = await child.kill();
        const watchdog = line === "timeout" ? "hang" : line === "memory" ? "memory" : "crash";
        const message = watchdog === "hang"
          ? `no answer after ${(ms / 1000).toFixed(1)} s (killed)`
          : watchdog === "memory"
          ? `resident memory over ${(this.#memory / 2 ** 30).toFixed(1)} GiB (killed)`
          : `the process died: exit code ${status.code}${
            status.signal ? `, signal ${status.signal}` : ""
          }; stderr: ${child.stderrTail.trim().split("\n").slice(-3).join(" | ")}`;
        return { kind: "finding", watchdog, mutation, mode, message, ms };
      }
      const msg = JSON.parse(line);
      if (msg.start) {
        [mutation, mode] = [msg.start, msg.mode];
        continue;
      }
      return { ...(msg as CaseOutcome), ms };
    }
  }

  /** Ends the child. */
  async close() {
    const child = this.#child;
    this.#child = undefined;
    if (child) {
      await child.stdin.close().catch(() => {});
      await child.process.status;
    }
  }
}
