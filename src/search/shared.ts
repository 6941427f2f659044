/**
 * Calibration statistics shared by the candidates of a search: the first run that needs
 * statistics collects what any candidate may need — gate gradients when gradient criteria are
 * among the candidates, Gram matrices of every pruned layer's input — in one pass of
 * onnxruntime; every other run on the same model reads them. Each run gets its own view: a
 * Gram matrix it did not ask for is not in it, and one it releases stays in the shared copy.
 *
 * @module
 */
import type { ChannelStats } from "../calibration/stats.ts";
import type { GateStats } from "../calibration/gradients.ts";

/** What one run's criterion and compensation need from the calibration data. */
export interface StatsNeed {
  /** The tensors whose channels are scored or compensated (inputs of the pruned layers). */
  tensors: string[];
  /** The tensors that need a Gram matrix. */
  gram: Set<string>;
  /** Of those, the ones read only by a refit of this run's plan: their rows may be held
   * instead (`ChannelStats.rows`; never for statistics shared among candidates). */
  holdRows?: Set<string>;
  /** Whether gate gradients are needed (gradient criteria). */
  gradient: boolean;
}

/** Statistics as a run reads them. */
export interface CollectedStats {
  stats?: Map<string, ChannelStats>;
  gates?: Map<string, GateStats>;
  /** The segments the model ran in for them (runtime/segmented.ts), when it was segmented:
   * how many, and the weight bytes each held at most. */
  segments?: { count: number; bytes: number };
}

/** The statistics of one model, collected once for several runs (see the module). */
export class SharedStatistics {
  /** Gate gradients are collected with the first pass (a gradient criterion is among the
   * candidates). */
  gradient: boolean;
  /** Passes over the calibration data made so far (each candidate adds none once the first
   * has collected). */
  passes = 0;
  #entry?: { key: string; need: StatsNeed; value: CollectedStats };

  constructor(options: { gradient: boolean }) {
    this.gradient = options.gradient;
  }

  /**
   * The statistics `need` asks for, of the model `key` identifies (its pruned layers and their
   * widths): from the shared pass when it covers them, otherwise from `collect`. The shared
   * pass is made by the first call, for everything any candidate may ask.
   */
  async get(
    key: string,
    need: StatsNeed,
    collect: (need: StatsNeed) => Promise<CollectedStats>,
  ): Promise<CollectedStats> {
    if (!this.#entry) {
      const wide: StatsNeed = {
        tensors: need.tensors,
        gram: new Set(need.tensors),
        gradient: need.gradient || this.gradient,
      };
      let value: CollectedStats;
      try {
        this.passes++;
        value = await collect(wide);
      } catch (e) {
        // The model has no gradients to give (an op without a backward rule): the candidates
        // that need none share a forward pass.
        if (!wide.gradient || need.gradient) throw e;
        this.gradient = false;
        this.passes++;
        value = await collect({ ...wide, gradient: false });
        wide.gradient = false;
      }
      this.#entry = { key, need: wide, value };
    }
    const entry = this.#entry;
    const covered = entry.key === key && (!need.gradient || entry.need.gradient) &&
      need.tensors.every((t) => entry.value.stats?.has(t)) &&
      [...need.gram].every((t) => entry.need.gram.has(t));
    if (!covered) {
      this.passes++;
      return await collect(need);
    }
    const { gates, segments } = entry.value;
    return { stats: view(entry.value.stats!, need.gram), gates, segments };
  }
}

/** Per-run copies of the statistics: the same sums, a Gram matrix only where asked for. */
function view(stats: Map<string, ChannelStats>, gram: Set<string>): Map<string, ChannelStats> {
  const out = new Map<string, ChannelStats>();
  for (const [name, s] of stats) {
    // Reads go to the shared statistics; `releaseGram` and this field stay on the copy.
    const copy = Object.create(s) as ChannelStats;
    copy.gram = gram.has(name) ? s.gram : undefined;
    copy.gramShared = copy.gram !== undefined;
    out.set(name, copy);
  }
  return out;
}
