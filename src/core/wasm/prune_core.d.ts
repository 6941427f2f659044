/* tslint:disable */
/* eslint-disable */

/**
 * Distillation's AdamW (`optim::AdamW`): weights, gradients and moments of every trained tensor
 * in wasm memory, one call per step.
 */
export class AdamWCore {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * A view of the flat gradients, under the same terms as `weights_view`.
     */
    grads_view(): Float32Array;
    /**
     * Tensors of `sizes` elements; `decay[i]` != 0 where tensor i takes weight decay.
     */
    constructor(sizes: Uint32Array | number[], decay: Uint8Array | number[], beta1: number, beta2: number, eps: number, weight_decay: number);
    /**
     * `[start, end)` of tensor `k` in the flat buffers.
     */
    span(k: number): Uint32Array;
    /**
     * One update from the gradients at learning rate `lr`; false (nothing changed) when a
     * gradient is not finite.
     */
    step(lr: number): boolean;
    /**
     * A view of the flat weights: valid until the next call into the core (a call may grow
     * wasm memory, which detaches it). Copy in or out at once.
     */
    weights_view(): Float32Array;
}

/**
 * WebGPU-backed ops. Methods return Promises; run one call at a time per instance (WebGPU error
 * scopes are per device). Score reductions and aggregation are O(channels) and use `cpu_*`.
 */
export class GpuCore {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * `data` holds IEEE binary16 bit patterns. Resolves to a Float32Array.
     */
    channel_lp_scores_f16(data: Uint16Array | number[], dims: Uint32Array | number[], axis: number, p: number): Promise<any>;
    /**
     * Resolves to a Float32Array.
     */
    channel_lp_scores_f32(data: Float32Array | number[], dims: Uint32Array | number[], axis: number, p: number): Promise<any>;
    /**
     * Rejects when `navigator.gpu` gives no adapter or device. `max_chunk_bytes` caps the bytes
     * per storage binding below the device limit (for tests).
     */
    static create(max_chunk_bytes?: number | null): Promise<GpuCore>;
    /**
     * Destroys the device (and with it every buffer). Call `free()` afterwards.
     */
    destroy(): void;
    /**
     * Resolves to a Uint8Array.
     */
    gather_axis(bytes: Uint8Array | number[], dims: Uint32Array | number[], element_size: number, axis: number, indices: Uint32Array | number[]): Promise<any>;
    /**
     * Resolves to a Uint32Array.
     */
    select_keep_per_group(scores: Float32Array | number[], groups: number, drop: number): Promise<any>;
    readonly adapter_name: string;
    /**
     * Compute dispatches submitted so far (calls that fell back to the CPU add none).
     */
    readonly dispatches: number;
}

/**
 * `flat` holds `count` equally long vectors back to back.
 */
export function cpu_aggregate(flat: Float32Array | number[], count: number, reduce: string): Float32Array;

/**
 * `data` holds IEEE binary16 bit patterns.
 */
export function cpu_channel_lp_scores_f16(data: Uint16Array | number[], dims: Uint32Array | number[], axis: number, p: number): Float32Array;

export function cpu_channel_lp_scores_f32(data: Float32Array | number[], dims: Uint32Array | number[], axis: number, p: number): Float32Array;

/**
 * `data` holds little-endian float32 bytes at any alignment (a weight's bytes as stored in the
 * model, not first copied into an aligned Float32Array).
 */
export function cpu_channel_lp_scores_f32_bytes(data: Uint8Array | number[], dims: Uint32Array | number[], axis: number, p: number): Float32Array;

/**
 * APMA's dissimilarity per channel (`linalg::dissimilarity`).
 */
export function cpu_dissimilarity(gram: Float32Array | number[], channels: number, heads?: Int32Array | number[] | null): Float64Array;

export function cpu_gather_axis(bytes: Uint8Array | number[], dims: Uint32Array | number[], element_size: number, axis: number, indices: Uint32Array | number[]): Uint8Array;

/**
 * Xᵀ·X of `rows` × `channels` values (row-major).
 */
export function cpu_gram(x: Float32Array | number[], rows: number, channels: number): Float32Array;

export function cpu_group_scores(scores: Float32Array | number[], groups: number, reduce: string): Float32Array;

/**
 * The reweight compensation's ridge least squares (`linalg::ridge_refit`): the kept rows of a
 * layer's weight refitted from the Gram matrix of its input. `bias` and `mean` (the input's mean
 * over the Gram's positions) come together. `precision`: 32 or 64 (bits of the solve). `removed`
 * (Σ x_Kᵀ·(x_R·W_R), kept × cout) and `removed_mean` (μ_Rᵀ·W_R, with a bias) give the removed
 * inputs' contribution when the Gram and weight hold the kept inputs only. Returns the new kept
 * rows (kept × cout), then with a bias the new bias.
 */
export function cpu_ridge_refit(gram: Float32Array | number[], cin: number, count: number, weight: Float32Array | number[], cout: number, kept: Uint32Array | number[], ridge: number, bias: Float32Array | number[] | null | undefined, mean: Float64Array | number[] | null | undefined, precision: number, removed?: Float32Array | number[] | null, removed_mean?: Float64Array | number[] | null): Float32Array;

export function cpu_select_keep_per_group(scores: Float32Array | number[], groups: number, drop: number): Uint32Array;
