/**
 * The pruning service: `deno task serve` (`deno run --allow-net --allow-env src/serve.ts`).
 *
 * - `POST /prune?<options>`: the model is the request body, the command line's option names are
 *   the query parameters (`/prune?prune-num-heads&head-pruning-ratio=0.5`); the answer is the
 *   pruned model (`application/octet-stream`) with a summary of the report in the
 *   `X-Prune-Summary` header (JSON), or, with `Accept: multipart/form-data`, a form of two parts:
 *   `report` (the full JSON report) and `model`.
 * - `POST /report?<options>`: the JSON report of the same run, without the model (a dry run).
 * - `GET /`: the pruning page (the model is pruned inside the browser, never sent here).
 * - `GET /health`: jobs running and waiting, and the limits.
 *
 * Nothing touches the disk: the body is read into memory (at most `PRUNE_VIT_MAX_MODEL_MB`),
 * pruned in a worker and sent back. At most `PRUNE_VIT_MAX_JOBS` jobs run at once, each in its
 * own worker (ended at `PRUNE_VIT_TIME_LIMIT_S` seconds; the body must arrive within
 * `PRUNE_VIT_BODY_TIME_LIMIT_S`), and `PRUNE_VIT_MAX_QUEUE` more wait;
 * a request beyond that is answered 503 at once. Errors are JSON: `{"error": message, "code"}`.
 * Listens on `PRUNE_VIT_HOST` (default 127.0.0.1) at `PORT` (default 8000).
 *
 * @module
 */
import assets from "./serve/web_assets.json" with { type: "json" };
import { composePage } from "./serve/page.ts";
import { valuesFromParams } from "./option_values.ts";
import { UsageError } from "./option_values.ts";
import { requestOptions } from "./prune_request.ts";
import type { OptionValues } from "./option_table.ts";
import type { JobError, JobReply, JobRequest } from "./job.ts";
import type { PruneReport } from "./report.ts";

/** What the service allows. */
export interface ServiceLimits {
  /** Largest model accepted, in bytes. */
  maxModelBytes: number;
  /** Longest a job may prune, in seconds (its worker is ended then). */
  timeLimitSeconds: number;
  /** Longest the model may take to arrive once its job has a slot, in seconds. */
  bodyTimeLimitSeconds: number;
  /** Jobs pruning at once (each in its own worker). */
  maxJobs: number;
  /** Requests waiting for a job slot; more are refused with 503. */
  maxQueue: number;
}

/** Defaults: small models, as sandboxes hold them. */
export const DEFAULT_LIMITS: ServiceLimits = {
  maxModelBytes: 512 * 2 ** 20,
  timeLimitSeconds: 120,
  bodyTimeLimitSeconds: 60,
  maxJobs: 2,
  maxQueue: 32,
};

/** An answer other than success: its status and message. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function errorResponse(e: HttpError): Response {
  return json({ error: e.message, code: e.code }, e.status, e.headers);
}

const STATUS_OF_JOB_ERROR: Record<JobError["kind"], number> = {
  usage: 400,
  model: 422,
  internal: 500,
};

/** A job slot: at most `size` holders, at most `queue` waiting. */
class Slots {
  running = 0;
  private waiting: { grant: () => void; signal: AbortSignal }[] = [];
  constructor(private size: number, private queue: number) {}

  get queued(): number {
    return this.waiting.length;
  }

  /** Waits for a slot; refused at once when the queue is full. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.running >= this.size) {
      if (this.waiting.length >= this.queue) {
        throw new HttpError(
          503,
          `busy: ${this.running} jobs running and ${this.waiting.length} waiting (the limits, ` +
            `PRUNE_VIT_MAX_JOBS and PRUNE_VIT_MAX_QUEUE); try again shortly`,
          "busy",
          { "retry-after": "5" },
        );
      }
      await new Promise<void>((resolve, reject) => {
        const entry = { grant: resolve, signal };
        this.waiting.push(entry);
        signal.addEventListener("abort", () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new HttpError(499, "the client went away", "aborted"));
        }, { once: true });
      });
    } else {
      this.running++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.grant(); // the slot passes on: `running` stays
      else this.running--;
    };
  }
}

/** Workers that prune, one job each at a time; a worker past its time is ended and replaced. */
class Workers {
  private idle: Worker[] = [];
  private url: string;
  private nextId = 1;
  constructor(source: string) {
    this.url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  }

  /** Runs a job; past `ms` its worker is ended (`limit`: the configured seconds, for the
   * message). */
  async run(request: Omit<JobRequest, "id">, ms: number, limit: number): Promise<JobReply> {
    const worker = this.idle.pop() ?? new Worker(this.url, { type: "module" });
    const id = this.nextId++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let healthy = true;
    try {
      return await new Promise<JobReply>((resolve, reject) => {
        worker.onmessage = (e: MessageEvent<JobReply>) => {
          if (e.data.id === id) resolve(e.data);
        };
        worker.onerror = (e) => {
          e.preventDefault();
          healthy = false;
          reject(
            new HttpError(
              500,
              `internal error: the job's worker stopped (${e.message || "out of memory?"})`,
              "internal",
            ),
          );
        };
        timer = setTimeout(() => {
          healthy = false;
          reject(
            new HttpError(
              504,
              `the run took longer than the service's limit of ${limit} s ` +
                `(PRUNE_VIT_TIME_LIMIT_S); prune this model with the command line`,
              "time-limit",
            ),
          );
        }, ms);
        worker.postMessage(
          { ...request, id },
          request.bytes ? [request.bytes.buffer as ArrayBuffer] : [],
        );
      });
    } finally {
      clearTimeout(timer);
      worker.onmessage = worker.onerror = null;
      if (healthy) this.idle.push(worker);
      else worker.terminate();
    }
  }

  close() {
    for (const w of this.idle.splice(0)) w.terminate();
    URL.revokeObjectURL(this.url);
  }
}

function tooLarge(max: number): HttpError {
  return new HttpError(
    413,
    `the model is larger than the service's limit of ${mib(max)} (PRUNE_VIT_MAX_MODEL_MB); ` +
      `prune it with the command line`,
    "too-large",
  );
}

function bodyTooSlow(): HttpError {
  return new HttpError(
    408,
    "the model took too long to arrive (PRUNE_VIT_BODY_TIME_LIMIT_S)",
    "body-time-limit",
  );
}

/** The body's length as the client declares it (NaN when it does not). */
function declaredLength(req: Request): number {
  return Number(req.headers.get("content-length") ?? NaN);
}

/** Reads the body, refusing it once it passes `max` bytes or the deadline. */
async function readBody(req: Request, max: number, deadline: number): Promise<Uint8Array> {
  const declared = declaredLength(req);
  if (declared > max) throw tooLarge(max);
  if (!req.body) {
    throw new HttpError(400, "send the model (.onnx bytes) as the request body", "no-body");
  }
  // One buffer of the declared size; grown by doubling when the length is not given.
  let buf = new Uint8Array(Number.isFinite(declared) ? declared : 1 << 20);
  let length = 0;
  const reader = req.body.getReader();
  const late = setTimeout(
    () => reader.cancel().catch(() => {}),
    Math.max(0, deadline - Date.now()),
  );
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (length + value.length > max) {
        await reader.cancel().catch(() => {});
        throw tooLarge(max);
      }
      if (length + value.length > buf.length) {
        const grown = new Uint8Array(
          Math.min(max, Math.max(buf.length * 2, length + value.length)),
        );
        grown.set(buf.subarray(0, length));
        buf = grown;
      }
      buf.set(value, length);
      length += value.length;
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (Date.now() >= deadline) {
      throw bodyTooSlow();
    }
    throw new HttpError(400, `the request body could not be read: ${(e as Error).message}`, "body");
  } finally {
    clearTimeout(late);
  }
  if (Date.now() >= deadline) throw bodyTooSlow();
  if (length === 0) {
    throw new HttpError(400, "the request body is empty: send the model's .onnx bytes", "no-body");
  }
  // The exact length: the pruning works on a buffer of its own size.
  return length === buf.length ? buf : buf.slice(0, length);
}

function mib(bytes: number): string {
  return `${+(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Non-ASCII characters as JSON escapes: a header value must be ASCII. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** What fits in a header: totals, and the blocks' sizes before and after (not their indices). */
export function reportSummary(report: PruneReport): string {
  const blocks = report.blocks.map((b) =>
    b.kind === "attention"
      ? {
        kind: b.kind,
        name: b.name,
        heads: b.heads,
        headDim: b.headDim,
        ...(b.vHeadDim ? { vHeadDim: b.vHeadDim } : {}),
      }
      : { kind: b.kind, name: b.name, channels: b.channels }
  );
  const full = { params: report.params, macs: report.macs, blocks, notes: report.notes };
  const text = asciiJson(full);
  if (text.length <= 6000) return text;
  return asciiJson({ params: report.params, macs: report.macs, truncated: true });
}

/** The service's request handler, and a way to end its workers. */
export interface Service {
  handler: (req: Request) => Promise<Response>;
  close(): void;
}

/** Creates the service with the given limits. */
export function createService(limits: ServiceLimits = DEFAULT_LIMITS): Service {
  const slots = new Slots(limits.maxJobs, limits.maxQueue);
  const workers = new Workers(assets.worker);
  const page = composePage(assets.shell, assets.worker);

  async function prune(req: Request, dryRun: boolean): Promise<Response> {
    const url = new URL(req.url);
    let values: OptionValues;
    try {
      values = valuesFromParams(url.searchParams, "service");
      requestOptions(values, "service"); // refused before the body is read
    } catch (e) {
      if (e instanceof UsageError) throw new HttpError(400, e.message, "bad-option");
      throw e;
    }
    // Refused before waiting for a slot, from the declared length alone.
    if (declaredLength(req) > limits.maxModelBytes) throw tooLarge(limits.maxModelBytes);
    const release = await slots.acquire(req.signal);
    try {
      const bytes = await readBody(
        req,
        limits.maxModelBytes,
        Date.now() + limits.bodyTimeLimitSeconds * 1000,
      );
      const reply = await workers.run(
        { bytes, values, surface: "service", dryRun },
        limits.timeLimitSeconds * 1000,
        limits.timeLimitSeconds,
      );
      if (!reply.ok) {
        const e = reply.error;
        throw new HttpError(STATUS_OF_JOB_ERROR[e.kind], e.message, e.code);
      }
      if (dryRun) return json(reply.report);
      const model = reply.bytes!;
      const headers = {
        "x-prune-summary": reportSummary(reply.report),
        "x-prune-ms": reply.ms.toFixed(0),
      };
      if ((req.headers.get("accept") ?? "").includes("multipart/form-data")) {
        const form = new FormData();
        form.set(
          "report",
          new Blob([JSON.stringify(reply.report)], { type: "application/json" }),
          "report.json",
        );
        form.set(
          "model",
          new Blob([model as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }),
          "pruned.onnx",
        );
        return new Response(form, { headers });
      }
      return new Response(model as Uint8Array<ArrayBuffer>, {
        headers: {
          "content-type": "application/octet-stream",
          "content-disposition": 'attachment; filename="pruned.onnx"',
          ...headers,
        },
      });
    } finally {
      release();
    }
  }

  async function handler(req: Request): Promise<Response> {
    const { pathname } = new URL(req.url);
    const routes: Record<string, { method: string; run: () => Promise<Response> | Response }> = {
      "/": {
        method: "GET",
        run: () => new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } }),
      },
      "/index.html": {
        method: "GET",
        run: () => new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } }),
      },
      "/health": {
        method: "GET",
        run: () =>
          json({
            status: "ok",
            jobs: { running: slots.running, waiting: slots.queued },
            limits,
          }),
      },
      "/prune": { method: "POST", run: () => prune(req, false) },
      "/report": { method: "POST", run: () => prune(req, true) },
    };
    try {
      const route = routes[pathname];
      if (!route) {
        throw new HttpError(
          404,
          `no ${pathname} here: POST /prune or /report with the model as the body, GET / for ` +
            `the page`,
          "not-found",
        );
      }
      const method = req.method === "HEAD" ? "GET" : req.method;
      if (method !== route.method) {
        throw new HttpError(405, `${pathname} takes ${route.method}`, "method", {
          allow: route.method,
        });
      }
      return await route.run();
    } catch (e) {
      if (e instanceof HttpError) return errorResponse(e);
      const message = e instanceof Error ? e.message : String(e);
      return errorResponse(new HttpError(500, `internal error: ${message}`, "internal"));
    }
  }

  return { handler, close: () => workers.close() };
}

/** Limits from the environment (`PRUNE_VIT_MAX_MODEL_MB`, `PRUNE_VIT_TIME_LIMIT_S`,
 * `PRUNE_VIT_BODY_TIME_LIMIT_S`, `PRUNE_VIT_MAX_JOBS`, `PRUNE_VIT_MAX_QUEUE`); a bad value is an
 * error naming the variable. */
export function limitsFromEnv(env: (name: string) => string | undefined): ServiceLimits {
  const read = (name: string, fallback: number, kind: "number" | "count" | "count or 0") => {
    const text = env(name)?.trim();
    if (text === undefined || text === "") return fallback;
    const n = Number(text);
    const ok = kind === "number"
      ? /^\d+(\.\d+)?$/.test(text) && n > 0
      : /^\d+$/.test(text) && (n > 0 || kind === "count or 0");
    if (!ok) {
      throw new UsageError(
        `${name}: "${text}" is not ${
          kind === "number"
            ? "a positive number"
            : kind === "count"
            ? "a positive integer"
            : "an integer ≥ 0"
        }`,
      );
    }
    return n;
  };
  return {
    maxModelBytes: Math.round(
      read("PRUNE_VIT_MAX_MODEL_MB", DEFAULT_LIMITS.maxModelBytes / 2 ** 20, "number") * 2 ** 20,
    ),
    timeLimitSeconds: read("PRUNE_VIT_TIME_LIMIT_S", DEFAULT_LIMITS.timeLimitSeconds, "number"),
    bodyTimeLimitSeconds: read(
      "PRUNE_VIT_BODY_TIME_LIMIT_S",
      DEFAULT_LIMITS.bodyTimeLimitSeconds,
      "number",
    ),
    maxJobs: read("PRUNE_VIT_MAX_JOBS", DEFAULT_LIMITS.maxJobs, "count"),
    maxQueue: read("PRUNE_VIT_MAX_QUEUE", DEFAULT_LIMITS.maxQueue, "count or 0"),
  };
}

if (import.meta.main) {
  const env = (name: string) => Deno.env.get(name);
  let limits: ServiceLimits, port: number;
  try {
    limits = limitsFromEnv(env);
    const p = env("PORT") ?? "8000";
    port = Number(p);
    if (!/^\d+$/.test(p) || port > 65535) throw new UsageError(`PORT: "${p}" is not a port`);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const hostname = env("PRUNE_VIT_HOST") || "127.0.0.1";
  const service = createService(limits);
  const server = Deno.serve({
    hostname,
    port,
    onListen: ({ hostname, port }) => {
      console.log(
        `prune-vit service on http://${hostname}:${port}/ (models up to ` +
          `${mib(limits.maxModelBytes)}, ${limits.maxJobs} jobs at once and ${limits.maxQueue} ` +
          `waiting, ${limits.timeLimitSeconds} s each)`,
      );
    },
  }, service.handler);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      service.close();
      server.shutdown().then(() => Deno.exit(0));
    });
  }
}
