/**
 * A small progress bar on stderr: `Processed 128/512 samples [=====               ] 25% 3.1 s`,
 * redrawn in place when stderr is a terminal, one line per ~10% otherwise, nothing when quiet.
 *
 * @module
 */

/** Options of {@link ProgressBar}. */
export interface ProgressOptions {
  /** Print nothing. */
  quiet?: boolean;
  /** Word after the counts (default "samples"). */
  unit?: string;
  /** Characters of the bar (default 20). */
  width?: number;
  /** Redraw in place with `\r` (default: whether stderr is a terminal). */
  terminal?: boolean;
  /** Where text goes (default: stderr). */
  write?: (text: string) => void;
  /** Clock in milliseconds (default performance.now). */
  now?: () => number;
  /** Least milliseconds between two terminal redraws (default 100; the last one always shows). */
  minIntervalMs?: number;
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += Deno.stderr.writeSync(bytes.subarray(done));
}

/**
 * Progress of a known number of samples.
 *
 * @example
 * const bar = new ProgressBar(512, { quiet });
 * const batches = await loadCalibration(src, model, { ..., onProgress: bar.callback });
 * for await (const feeds of batches) await session.run(feeds);
 * bar.finish();
 */
export class ProgressBar {
  /** Samples expected; the loader's count replaces it (fewer files than `--samples`). */
  total: number;
  private readonly quiet: boolean;
  private readonly unit: string;
  private readonly width: number;
  private readonly terminal: boolean;
  private readonly write: (text: string) => void;
  private readonly now: () => number;
  private readonly minInterval: number;
  private readonly start: number;
  private done = 0;
  private detail = "";
  private lastDraw = -Infinity;
  private lastDecile = 0;
  private printed = -1;
  private finished = false;

  constructor(total: number, options: ProgressOptions = {}) {
    this.total = Math.max(0, total);
    this.quiet = options.quiet ?? false;
    this.unit = options.unit ?? "samples";
    this.width = Math.max(1, options.width ?? 20);
    this.terminal = options.terminal ?? (!this.quiet && stderrIsTerminal());
    this.write = options.write ?? writeStderr;
    this.now = options.now ?? (() => performance.now());
    this.minInterval = options.minIntervalMs ?? 100;
    this.start = this.now();
  }

  /** `(done, total) => void` for `loadCalibration`'s onProgress. */
  readonly callback = (done: number, total?: number): void => {
    if (total !== undefined && total >= 0) this.total = total;
    this.update(done);
  };

  /** The line for `done` samples, without `\r` or newline. */
  format(done: number): string {
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const filled = Math.round(frac * this.width);
    const bar = "=".repeat(filled) + " ".repeat(this.width - filled);
    const secs = (this.now() - this.start) / 1000;
    return `Processed ${done}/${this.total} ${this.unit} [${bar}] ${Math.floor(frac * 100)}% ${
      secs.toFixed(1)
    } s${this.detail ? ` ${this.detail}` : ""}`;
  }

  /** Records `done` samples and redraws (terminal) or prints a line at each new 10% (otherwise);
   * `detail` (e.g. a loss) is shown after the time. */
  update(done: number, detail?: string): void {
    this.done = done;
    if (detail !== undefined) this.detail = detail;
    if (this.quiet || this.finished) return;
    const complete = done >= this.total;
    if (this.terminal) {
      const t = this.now();
      if (!complete && t - this.lastDraw < this.minInterval) return;
      this.lastDraw = t;
      this.write(`\r${this.format(done)}`);
      this.printed = done;
    } else {
      const decile = this.total > 0
        ? Math.floor((Math.min(done, this.total) * 10) / this.total)
        : 10;
      if (decile <= this.lastDecile && !(complete && this.printed !== done)) return;
      this.lastDecile = decile;
      this.write(`${this.format(done)}\n`);
      this.printed = done;
    }
  }

  /** Shows the final state (once) and ends the terminal line. */
  finish(): void {
    if (this.quiet || this.finished) return;
    if (this.terminal) {
      this.write(`\r${this.format(this.done)}\n`);
    } else if (this.printed !== this.done) {
      this.write(`${this.format(this.done)}\n`);
    }
    this.finished = true;
  }
}
