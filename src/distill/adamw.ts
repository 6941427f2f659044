/**
 * AdamW (Loshchilov & Hutter: Adam with decoupled weight decay, PyTorch's update order) over
 * float32 weights, and the learning-rate schedule: linear warm-up, then cosine decay to zero.
 * Plain TypeScript loops: at the sizes distillation runs on a CPU the update costs a small part of
 * a step (onnxruntime's forward and backward pass is the rest; bench/RESULTS.md).
 *
 * @module
 */

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
  readonly #m: Float32Array[];
  readonly #v: Float32Array[];
  #t = 0;
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #eps: number;
  readonly #decay: number;

  /** `weights` are updated in place; `decay[i]` says whether tensor i is decayed. */
  constructor(
    readonly weights: Float32Array[],
    readonly decay: boolean[],
    options: AdamWOptions = {},
  ) {
    this.#m = weights.map((w) => new Float32Array(w.length));
    this.#v = weights.map((w) => new Float32Array(w.length));
    this.#beta1 = options.beta1 ?? 0.9;
    this.#beta2 = options.beta2 ?? 0.999;
    this.#eps = options.eps ?? 1e-8;
    this.#decay = options.weightDecay ?? 0;
  }

  /** One update with gradients in the order of the weights, at learning rate `lr`. */
  step(grads: ArrayLike<number>[], lr: number): void {
    this.#t++;
    const [b1, b2, eps] = [this.#beta1, this.#beta2, this.#eps];
    const c1 = 1 - b1 ** this.#t, c2 = 1 - b2 ** this.#t;
    const stepSize = lr / c1, root2 = Math.sqrt(c2);
    this.weights.forEach((w, k) => {
      const g = grads[k], m = this.#m[k], v = this.#v[k];
      const shrink = this.decay[k] ? 1 - lr * this.#decay : 1;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] = w[i] * shrink - stepSize * m[i] / (Math.sqrt(v[i]) / root2 + eps);
      }
    });
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
