/**
 * Ridge refits on several threads: a few workers, each with its own instance of the compute
 * core, take one layer's problem at a time. Workers are started on first use and stopped as soon
 * as no problem is waiting, so an idle pool never keeps the process alive. Where workers cannot
 * start (no Worker, no permission to load the module), problems are solved on the calling thread.
 *
 * @module
 */
import type { RefitProblem, RefitResult } from "./mod.ts";

interface Job {
  id: number;
  problem: RefitProblem;
  transfer: Transferable[];
  resolve(result: RefitResult): void;
  reject(error: Error): void;
}

/** A worker that does not say it is ready within this time is given up (ms). */
const START_TIMEOUT = 30_000;

/** Problems a pool of `size` workers solves at once; `solveHere` runs one on this thread. */
export class RefitPool {
  #starting = 0;
  #workers: Worker[] = [];
  #idle: Worker[] = [];
  #queue: Job[] = [];
  #busy = new Map<number, Job>();
  #next = 0;
  #broken = false;
  #holds = 0;

  constructor(
    readonly size: number,
    private readonly solveHere: (problem: RefitProblem) => RefitResult,
  ) {}

  /**
   * Solves `problem` on a worker. Its arrays are copied to the worker, except the Gram matrix's
   * buffer when `giveGram` is set: it is handed over (transferred, then unusable here).
   */
  solve(problem: RefitProblem, giveGram = false): Promise<RefitResult> {
    if (this.size <= 1 || this.#broken || typeof Worker === "undefined") {
      return Promise.resolve().then(() => this.solveHere(problem));
    }
    // Views are copied compactly: cloning a view would clone its whole buffer (the model's).
    const gram = giveGram && isWhole(problem.gram) ? problem.gram : problem.gram.slice();
    const sent: RefitProblem = {
      ...problem,
      gram,
      weight: problem.weight.slice(),
      kept: problem.kept.slice(),
      bias: problem.bias && {
        values: problem.bias.values.slice(),
        mean: problem.bias.mean.slice(),
      },
      removed: problem.removed && {
        cross: problem.removed.cross.slice(),
        mean: problem.removed.mean?.slice(),
      },
    };
    const arrays = [
      sent.gram,
      sent.weight,
      sent.kept,
      sent.bias?.values,
      sent.bias?.mean,
      sent.removed?.cross,
      sent.removed?.mean,
    ];
    const transfer = arrays.flatMap((a) => a ? [a.buffer as ArrayBuffer] : []);
    return new Promise<RefitResult>((resolve, reject) => {
      this.#queue.push({ id: this.#next++, problem: sent, transfer, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#broken) return this.#solveQueueHere();
    while (this.#queue.length && this.#idle.length) {
      const worker = this.#idle.pop()!, job = this.#queue.shift()!;
      this.#busy.set(job.id, job);
      worker.postMessage({ id: job.id, problem: job.problem }, job.transfer);
    }
    const wanted = Math.min(this.size, this.#queue.length + this.#busy.size);
    while (this.#workers.length + this.#starting < wanted) this.#start();
    if (this.#queue.length === 0 && this.#busy.size === 0 && this.#holds === 0) this.#stop();
  }

  /** Keeps idle workers (instead of stopping them) until the returned function is called: for
   * bursts of problems with work in between, which would otherwise start workers anew each time. */
  hold(): () => void {
    this.#holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holds--;
      this.#pump();
    };
  }

  #start(): void {
    let worker: Worker;
    try {
      const url = new URL("./refit_worker.ts", import.meta.url);
      if (!mayLoad(url)) throw new Error("no permission to load the worker");
      worker = new Worker(url, { type: "module" });
    } catch {
      this.#broken = true;
      return;
    }
    this.#starting++;
    let ready = false;
    const timer = setTimeout(() => fail(), START_TIMEOUT);
    const fail = () => {
      clearTimeout(timer);
      worker.terminate();
      if (!ready) this.#starting--;
      // Jobs a worker held cannot be sent again (their buffers went with them).
      for (const job of this.#busy.values()) job.reject(new Error("a refit worker failed"));
      this.#busy.clear();
      this.#broken = true;
      this.#stop();
      this.#solveQueueHere();
    };
    worker.onmessage = (event: MessageEvent) => {
      const { id, error, weight, bias } = event.data;
      if (id === undefined) { // the worker's "ready"
        clearTimeout(timer);
        ready = true;
        this.#starting--;
        this.#workers.push(worker);
      } else {
        const job = this.#busy.get(id);
        this.#busy.delete(id);
        if (error !== undefined) job?.reject(new Error(error));
        else job?.resolve(bias ? { weight, bias } : { weight });
      }
      this.#idle.push(worker);
      this.#pump();
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      fail();
    };
  }

  #solveQueueHere(): void {
    const jobs = this.#queue.splice(0);
    for (const job of jobs) {
      try {
        job.resolve(this.solveHere(job.problem));
      } catch (error) {
        job.reject(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  #stop(): void {
    for (const worker of this.#workers) worker.terminate();
    this.#workers = [];
    this.#idle = [];
  }
}

function isWhole(a: Float32Array): boolean {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength &&
    a.buffer instanceof ArrayBuffer;
}

/** Whether a worker's module may load: a local file needs read permission (asked without a
 * prompt; a worker refused it would print an error even when the refusal is handled). */
function mayLoad(url: URL): boolean {
  if (url.protocol !== "file:") return true;
  try {
    return Deno.permissions.querySync({ name: "read", path: url }).state === "granted";
  } catch {
    return typeof Deno === "undefined"; // not Deno: the page's own rules apply
  }
}
