/**
 * AdamW (Loshchilov & Hutter: Adam with decoupled weight decay, PyTorch's update order, in
 * float32) over float32 weights, and the learning-rate schedule: linear warm-up, then cosine decay
 * to zero. The update runs in the compute core (wasm SIMD, `crates/prune_core/src/optim.rs`),
 * which holds the weights, gradients and moments of every trained tensor in flat buffers; this
 * class copies gradients in and the updated weights back out to the caller's arrays.
 *
 * @module
 */
// @ts-types="../core/wasm/prune_core.d.ts"
import { AdamWCore } from "../core/wasm/prune_core.js";

/** Settings of {@link AdamW}. */
export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay, applied to the tensors marked for it. */
  weightDecay?: number;
}

/** Adam's moments for a list of weight tensors, updated in place by {@link AdamW.step}. */
export class AdamW {
  #core: AdamWCore | undefined;
  readonly #spans: [number, number][];

  /** `weights` are updated in place; `decay[i]` says whether tensor i is decayed. */
  constructor(
    readonly weights: Float32Array[],
    readonly decay: boolean[],
    options: AdamWOptions = {},
  ) {
    this.#core = new AdamWCore(
      Uint32Array.from(weights, (w) => w.length),
      Uint8Array.from(decay, (d) => d ? 1 : 0),
      options.beta1 ?? 0.9,
      options.beta2 ?? 0.999,
      options.eps ?? 1e-8,
      options.weightDecay ?? 0,
    );
    this.#spans = weights.map((_, k) => {
      const [start, end] = this.#core!.span(k);
      return [start, end];
    });
    // Views of wasm memory are taken after every other call into the core: a call may grow the
    // memory and detach an older view.
    const flat = this.#core.weights_view();
    weights.forEach((w, k) => flat.set(w, this.#spans[k][0]));
  }

  /**
   * One update with gradients in the order of the weights, at learning rate `lr`. Returns false,
   * leaving the weights as they were, when a gradient holds a value that is not finite.
   */
  step(grads: ArrayLike<number>[], lr: number): boolean {
    const core = this.#live();
    const flat = core.grads_view();
    grads.forEach((g, k) => {
      const [start, end] = this.#spans[k];
      if (g.length !== end - start) {
        throw new RangeError(
          `AdamW: gradient ${k} has ${g.length} values, its weight ${end - start}`,
        );
      }
      flat.set(g, start);
    });
    if (!core.step(lr)) return false;
    const w = core.weights_view();
    this.weights.forEach((out, k) => out.set(w.subarray(...this.#spans[k])));
    return true;
  }

  /** Frees the core's buffers (four float32 copies of the weights); the instance is unusable after. */
  dispose(): void {
    this.#core?.free();
    this.#core = undefined;
  }

  #live(): AdamWCore {
    if (!this.#core) throw new Error("AdamW: used after dispose()");
    return this.#core;
  }
}

/**
 * Learning rate at `step` (1-based) of `total`: rising linearly to `peak` over `warmup` steps,
 * then falling along half a cosine to 0 at `total`.
 */
export function learningRate(step: number, total: number, peak: number, warmup: number): number {
  if (step <= warmup) return peak * step / warmup;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return peak * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
}
