/**
 * Distillation's AdamW (`optim::AdamW`): weights, gradients and moments of every trained tensor
 * in wasm memory, one call per step.
 */
export class AdamWCore {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        AdamWCoreFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_adamwcore_free(ptr, 0);
    }
    /**
     * A view of the flat gradients, under the same terms as `weights_view`.
     * @returns {Float32Array}
     */
    grads_view() {
        const ret = wasm.adamwcore_grads_view(this.__wbg_ptr);
        return takeObject(ret);
    }
    /**
     * Tensors of `sizes` elements; `decay[i]` != 0 where tensor i takes weight decay.
     * @param {Uint32Array | number[]} sizes
     * @param {Uint8Array | number[]} decay
     * @param {number} beta1
     * @param {number} beta2
     * @param {number} eps
     * @param {number} weight_decay
     */
    constructor(sizes, decay, beta1, beta2, eps, weight_decay) {
        const val3 = +beta1;
        const val4 = +beta2;
        const val5 = +eps;
        const val6 = +weight_decay;
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passArray32ToWasm0(sizes, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray8ToWasm0(decay, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
            throw e;
        }
        const ret = wasm.adamwcore_new(ptr0, len0, ptr1, len1, val3, val4, val5, val6);
        if (ret[2]) {
            throw takeObject(ret[1]);
        }
        this.__wbg_ptr = ret[0];
        AdamWCoreFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * `[start, end)` of tensor `k` in the flat buffers.
     * @param {number} k
     * @returns {Uint32Array}
     */
    span(k) {
        const ret = wasm.adamwcore_span(this.__wbg_ptr, k);
        if (ret[3]) {
            throw takeObject(ret[2]);
        }
        var v1 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
    /**
     * One update from the gradients at learning rate `lr`; false (nothing changed) when a
     * gradient is not finite.
     * @param {number} lr
     * @returns {boolean}
     */
    step(lr) {
        const ret = wasm.adamwcore_step(this.__wbg_ptr, lr);
        return ret !== 0;
    }
    /**
     * A view of the flat weights: valid until the next call into the core (a call may grow
     * wasm memory, which detaches it). Copy in or out at once.
     * @returns {Float32Array}
     */
    weights_view() {
        const ret = wasm.adamwcore_weights_view(this.__wbg_ptr);
        return takeObject(ret);
    }
}
if (Symbol.dispose) AdamWCore.prototype[Symbol.dispose] = AdamWCore.prototype.free;

/**
 * WebGPU-backed ops. Methods return Promises; run one call at a time per instance (WebGPU error
 * scopes are per device). Score reductions and aggregation are O(channels) and use `cpu_*`.
 */
export class GpuCore {
    static __wrap(ptr) {
        const obj = Object.create(GpuCore.prototype);
        obj.__wbg_ptr = ptr;
        GpuCoreFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        GpuCoreFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_gpucore_free(ptr, 0);
    }
    /**
     * @returns {string}
     */
    get adapter_name() {
        let deferred1_0;
        let deferred1_1;
        try {
            const ret = wasm.gpucore_adapter_name(this.__wbg_ptr);
            deferred1_0 = ret[0];
            deferred1_1 = ret[1];
            return getStringFromWasm0(ret[0], ret[1]);
        } finally {
            wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
        }
    }
    /**
     * `data` holds IEEE binary16 bit patterns. Resolves to a Float32Array.
     * @param {Uint16Array | number[]} data
     * @param {Uint32Array | number[]} dims
     * @param {number} axis
     * @param {number} p
     * @returns {Promise<any>}
     */
    channel_lp_scores_f16(data, dims, axis, p) {
        const val3 = +axis;
        const val4 = +p;
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passArray16ToWasm0(data, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 2, 2); }
            throw e;
        }
        const ret = wasm.gpucore_channel_lp_scores_f16(this.__wbg_ptr, ptr0, len0, ptr1, len1, val3, val4);
        return takeObject(ret);
    }
    /**
     * Resolves to a Float32Array.
     * @param {Float32Array | number[]} data
     * @param {Uint32Array | number[]} dims
     * @param {number} axis
     * @param {number} p
     * @returns {Promise<any>}
     */
    channel_lp_scores_f32(data, dims, axis, p) {
        const val3 = +axis;
        const val4 = +p;
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passArrayF32ToWasm0(data, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
            throw e;
        }
        const ret = wasm.gpucore_channel_lp_scores_f32(this.__wbg_ptr, ptr0, len0, ptr1, len1, val3, val4);
        return takeObject(ret);
    }
    /**
     * Rejects when `navigator.gpu` gives no adapter or device. `max_chunk_bytes` caps the bytes
     * per storage binding below the device limit (for tests).
     * @param {number | null} [max_chunk_bytes]
     * @returns {Promise<GpuCore>}
     */
    static create(max_chunk_bytes) {
        const ret = wasm.gpucore_create(isLikeNone(max_chunk_bytes) ? Number.MAX_SAFE_INTEGER : (max_chunk_bytes) >>> 0);
        return takeObject(ret);
    }
    /**
     * Destroys the device (and with it every buffer). Call `free()` afterwards.
     */
    destroy() {
        wasm.gpucore_destroy(this.__wbg_ptr);
    }
    /**
     * Compute dispatches submitted so far (calls that fell back to the CPU add none).
     * @returns {number}
     */
    get dispatches() {
        const ret = wasm.gpucore_dispatches(this.__wbg_ptr);
        return ret >>> 0;
    }
    /**
     * Resolves to a Uint8Array.
     * @param {Uint8Array | number[]} bytes
     * @param {Uint32Array | number[]} dims
     * @param {number} element_size
     * @param {number} axis
     * @param {Uint32Array | number[]} indices
     * @returns {Promise<any>}
     */
    gather_axis(bytes, dims, element_size, axis, indices) {
        const val4 = +element_size;
        const val5 = +axis;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passArray32ToWasm0(indices, wasm.__wbindgen_malloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 4, 4); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.gpucore_gather_axis(this.__wbg_ptr, ptr0, len0, ptr1, len1, val4, val5, ptr2, len2);
        return takeObject(ret);
    }
    /**
     * Resolves to a Uint32Array.
     * @param {Float32Array | number[]} scores
     * @param {number} groups
     * @param {number} drop
     * @returns {Promise<any>}
     */
    select_keep_per_group(scores, groups, drop) {
        const val2 = +groups;
        const val3 = +drop;
        const ptr0 = passArrayF32ToWasm0(scores, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.gpucore_select_keep_per_group(this.__wbg_ptr, ptr0, len0, val2, val3);
        return takeObject(ret);
    }
}
if (Symbol.dispose) GpuCore.prototype[Symbol.dispose] = GpuCore.prototype.free;

/**
 * `flat` holds `count` equally long vectors back to back.
 * @param {Float32Array | number[]} flat
 * @param {number} count
 * @param {string} reduce
 * @returns {Float32Array}
 */
export function cpu_aggregate(flat, count, reduce) {
    const val3 = +count;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArrayF32ToWasm0(flat, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passStringToWasm0(reduce, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
        throw e;
    }
    const ret = wasm.cpu_aggregate(ptr0, len0, val3, ptr1, len1);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v4 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v4;
}

/**
 * `data` holds IEEE binary16 bit patterns.
 * @param {Uint16Array | number[]} data
 * @param {Uint32Array | number[]} dims
 * @param {number} axis
 * @param {number} p
 * @returns {Float32Array}
 */
export function cpu_channel_lp_scores_f16(data, dims, axis, p) {
    const val3 = +axis;
    const val4 = +p;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArray16ToWasm0(data, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 2, 2); }
        throw e;
    }
    const ret = wasm.cpu_channel_lp_scores_f16(ptr0, len0, ptr1, len1, val3, val4);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v5 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v5;
}

/**
 * @param {Float32Array | number[]} data
 * @param {Uint32Array | number[]} dims
 * @param {number} axis
 * @param {number} p
 * @returns {Float32Array}
 */
export function cpu_channel_lp_scores_f32(data, dims, axis, p) {
    const val3 = +axis;
    const val4 = +p;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArrayF32ToWasm0(data, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
        throw e;
    }
    const ret = wasm.cpu_channel_lp_scores_f32(ptr0, len0, ptr1, len1, val3, val4);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v5 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v5;
}

/**
 * `data` holds little-endian float32 bytes at any alignment (a weight's bytes as stored in the
 * model, not first copied into an aligned Float32Array).
 * @param {Uint8Array | number[]} data
 * @param {Uint32Array | number[]} dims
 * @param {number} axis
 * @param {number} p
 * @returns {Float32Array}
 */
export function cpu_channel_lp_scores_f32_bytes(data, dims, axis, p) {
    const val3 = +axis;
    const val4 = +p;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
        throw e;
    }
    const ret = wasm.cpu_channel_lp_scores_f32_bytes(ptr0, len0, ptr1, len1, val3, val4);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v5 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v5;
}

/**
 * APMA's dissimilarity per channel (`linalg::dissimilarity`).
 * @param {Float32Array | number[]} gram
 * @param {number} channels
 * @param {Int32Array | number[] | null} [heads]
 * @returns {Float64Array}
 */
export function cpu_dissimilarity(gram, channels, heads) {
    const val3 = +channels;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArrayF32ToWasm0(gram, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = isLikeNone(heads) ? 0 : passArray32ToWasm0(heads, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
        throw e;
    }
    const ret = wasm.cpu_dissimilarity(ptr0, len0, val3, ptr1, len1);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v4 = getArrayF64FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 8, 8);
    return v4;
}

/**
 * @param {Uint8Array | number[]} bytes
 * @param {Uint32Array | number[]} dims
 * @param {number} element_size
 * @param {number} axis
 * @param {Uint32Array | number[]} indices
 * @returns {Uint8Array}
 */
export function cpu_gather_axis(bytes, dims, element_size, axis, indices) {
    const val4 = +element_size;
    const val5 = +axis;
    let ptr0, len0, ptr1, len1, ptr2, len2;
    try {
        ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passArray32ToWasm0(dims, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
        ptr2 = passArray32ToWasm0(indices, wasm.__wbindgen_malloc);
        len2 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 4, 4); }
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
        throw e;
    }
    const ret = wasm.cpu_gather_axis(ptr0, len0, ptr1, len1, val4, val5, ptr2, len2);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v6 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
    return v6;
}

/**
 * Xᵀ·X of `rows` × `channels` values (row-major).
 * @param {Float32Array | number[]} x
 * @param {number} rows
 * @param {number} channels
 * @returns {Float32Array}
 */
export function cpu_gram(x, rows, channels) {
    const val2 = +rows;
    const val3 = +channels;
    const ptr0 = passArrayF32ToWasm0(x, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.cpu_gram(ptr0, len0, val2, val3);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v4 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v4;
}

/**
 * @param {Float32Array | number[]} scores
 * @param {number} groups
 * @param {string} reduce
 * @returns {Float32Array}
 */
export function cpu_group_scores(scores, groups, reduce) {
    const val3 = +groups;
    let ptr0, len0, ptr1, len1;
    try {
        ptr0 = passArrayF32ToWasm0(scores, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passStringToWasm0(reduce, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        len1 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
        throw e;
    }
    const ret = wasm.cpu_group_scores(ptr0, len0, val3, ptr1, len1);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v4 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v4;
}

/**
 * The reweight compensation's ridge least squares (`linalg::ridge_refit`): the kept rows of a
 * layer's weight refitted from the Gram matrix of its input. `bias` and `mean` (the input's mean
 * over the Gram's positions) come together. `precision`: 32 or 64 (bits of the solve). `removed`
 * (Σ x_Kᵀ·(x_R·W_R), kept × cout) and `removed_mean` (μ_Rᵀ·W_R, with a bias) give the removed
 * inputs' contribution when the Gram and weight hold the kept inputs only. Returns the new kept
 * rows (kept × cout), then with a bias the new bias.
 * @param {Float32Array | number[]} gram
 * @param {number} cin
 * @param {number} count
 * @param {Float32Array | number[]} weight
 * @param {number} cout
 * @param {Uint32Array | number[]} kept
 * @param {number} ridge
 * @param {Float32Array | number[] | null | undefined} bias
 * @param {Float64Array | number[] | null | undefined} mean
 * @param {number} precision
 * @param {Float32Array | number[] | null} [removed]
 * @param {Float64Array | number[] | null} [removed_mean]
 * @returns {Float32Array}
 */
export function cpu_ridge_refit(gram, cin, count, weight, cout, kept, ridge, bias, mean, precision, removed, removed_mean) {
    const val8 = +cin;
    const val9 = +count;
    const val10 = +cout;
    const val11 = +ridge;
    const val12 = +precision;
    let ptr0, len0, ptr1, len1, ptr2, len2, ptr3, len3, ptr4, len4, ptr5, len5, ptr6, len6;
    try {
        ptr0 = passArrayF32ToWasm0(gram, wasm.__wbindgen_malloc);
        len0 = WASM_VECTOR_LEN;
        ptr1 = passArrayF32ToWasm0(weight, wasm.__wbindgen_malloc);
        len1 = WASM_VECTOR_LEN;
        ptr2 = passArray32ToWasm0(kept, wasm.__wbindgen_malloc);
        len2 = WASM_VECTOR_LEN;
        ptr3 = isLikeNone(bias) ? 0 : passArrayF32ToWasm0(bias, wasm.__wbindgen_malloc);
        len3 = WASM_VECTOR_LEN;
        ptr4 = isLikeNone(mean) ? 0 : passArrayF64ToWasm0(mean, wasm.__wbindgen_malloc);
        len4 = WASM_VECTOR_LEN;
        ptr5 = isLikeNone(removed) ? 0 : passArrayF32ToWasm0(removed, wasm.__wbindgen_malloc);
        len5 = WASM_VECTOR_LEN;
        ptr6 = isLikeNone(removed_mean) ? 0 : passArrayF64ToWasm0(removed_mean, wasm.__wbindgen_malloc);
        len6 = WASM_VECTOR_LEN;
    } catch (e) {
        if (ptr6) { wasm.__wbindgen_free(ptr6, len6 * 8, 8); }
        if (ptr5) { wasm.__wbindgen_free(ptr5, len5 * 4, 4); }
        if (ptr4) { wasm.__wbindgen_free(ptr4, len4 * 8, 8); }
        if (ptr3) { wasm.__wbindgen_free(ptr3, len3 * 4, 4); }
        if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 4, 4); }
        if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 4, 4); }
        if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 4, 4); }
        throw e;
    }
    const ret = wasm.cpu_ridge_refit(ptr0, len0, val8, val9, ptr1, len1, val10, ptr2, len2, val11, ptr3, len3, ptr4, len4, val12, ptr5, len5, ptr6, len6);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v13 = getArrayF32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v13;
}

/**
 * @param {Float32Array | number[]} scores
 * @param {number} groups
 * @param {number} drop
 * @returns {Uint32Array}
 */
export function cpu_select_keep_per_group(scores, groups, drop) {
    const val2 = +groups;
    const val3 = +drop;
    const ptr0 = passArrayF32ToWasm0(scores, wasm.__wbindgen_malloc);
    const len0 = WASM_VECTOR_LEN;
    const ret = wasm.cpu_select_keep_per_group(ptr0, len0, val2, val3);
    if (ret[3]) {
        throw takeObject(ret[2]);
    }
    var v4 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v4;
}
export function __wbg_Error_208446807d0d1e30(arg0, arg1) {
    const ret = Error(getStringFromWasm0(arg0, arg1));
    return addHeapObject(ret);
}
export function __wbg_Window_2805651c516cb7aa(arg0) {
    const ret = getObject(arg0).Window;
    return addHeapObject(ret);
}
export function __wbg_WorkerGlobalScope_174390815d0a4893(arg0) {
    const ret = getObject(arg0).WorkerGlobalScope;
    return addHeapObject(ret);
}
export function __wbg___wbindgen_debug_string_f249a2a76caa9a55(arg0, arg1) {
    const ret = debugString(getObject(arg1));
    const ptr1 = passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
    const len1 = WASM_VECTOR_LEN;
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
}
export function __wbg___wbindgen_is_function_741ff2bb612836f5(arg0) {
    const ret = typeof(getObject(arg0)) === 'function';
    return ret;
}
export function __wbg___wbindgen_is_null_c22311b1cc228e3a(arg0) {
    const ret = getObject(arg0) === null;
    return ret;
}
export function __wbg___wbindgen_is_string_fc456fee5d3317de(arg0) {
    const ret = typeof(getObject(arg0)) === 'string';
    return ret;
}
export function __wbg___wbindgen_is_undefined_be5b34249ff1fc15(arg0) {
    const ret = getObject(arg0) === undefined;
    return ret;
}
export function __wbg___wbindgen_throw_4c88d8bf264fd984(arg0, arg1) {
    throw new Error(getStringFromWasm0(arg0, arg1));
}
export function __wbg__wbg_cb_unref_09736879a3f67559(arg0) {
    getObject(arg0)._wbg_cb_unref();
}
export function __wbg_beginComputePass_b9a325184985e6ff(arg0, arg1) {
    const ret = getObject(arg0).beginComputePass(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_call_40b008ba32f73991() { return handleError(function (arg0, arg1) {
    const ret = getObject(arg0).call(getObject(arg1));
    return addHeapObject(ret);
}, arguments); }
export function __wbg_call_a410eb4b59ed5965() { return handleError(function (arg0, arg1, arg2) {
    const ret = getObject(arg0).call(getObject(arg1), getObject(arg2));
    return addHeapObject(ret);
}, arguments); }
export function __wbg_configure_8e04ab1a867d31e1() { return handleError(function (arg0, arg1) {
    getObject(arg0).configure(getObject(arg1));
}, arguments); }
export function __wbg_copyBufferToBuffer_0c93ff5b22a585e9() { return handleError(function (arg0, arg1, arg2, arg3, arg4, arg5) {
    getObject(arg0).copyBufferToBuffer(getObject(arg1), arg2, getObject(arg3), arg4, arg5);
}, arguments); }
export function __wbg_copyBufferToBuffer_d04fe4341d6e0f6a() { return handleError(function (arg0, arg1, arg2, arg3, arg4) {
    getObject(arg0).copyBufferToBuffer(getObject(arg1), arg2, getObject(arg3), arg4);
}, arguments); }
export function __wbg_createBindGroup_f539b26ca341308f(arg0, arg1) {
    const ret = getObject(arg0).createBindGroup(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_createBuffer_b8c5b520d2c822b8() { return handleError(function (arg0, arg1) {
    const ret = getObject(arg0).createBuffer(getObject(arg1));
    return addHeapObject(ret);
}, arguments); }
export function __wbg_createCommandEncoder_3352d1ffc36c6fc0(arg0, arg1) {
    const ret = getObject(arg0).createCommandEncoder(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_createComputePipeline_224fa2618d9948a0(arg0, arg1) {
    const ret = getObject(arg0).createComputePipeline(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_createShaderModule_cefa51336cb288ae(arg0, arg1) {
    const ret = getObject(arg0).createShaderModule(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_description_7a568e202a00293f(arg0, arg1) {
    const ret = getObject(arg1).description;
    const ptr1 = passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
    const len1 = WASM_VECTOR_LEN;
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
}
export function __wbg_destroy_275564a0a8b8d071(arg0) {
    getObject(arg0).destroy();
}
export function __wbg_dispatchWorkgroups_56b943172790add0(arg0, arg1, arg2, arg3) {
    getObject(arg0).dispatchWorkgroups(arg1 >>> 0, arg2 >>> 0, arg3 >>> 0);
}
export function __wbg_end_82fd0c12ba185009(arg0) {
    getObject(arg0).end();
}
export function __wbg_finish_09ec094c10f41e7b(arg0) {
    const ret = getObject(arg0).finish();
    return addHeapObject(ret);
}
export function __wbg_finish_ec1c191f66a895b1(arg0, arg1) {
    const ret = getObject(arg0).finish(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_getBindGroupLayout_349f9101ad6d4d76(arg0, arg1) {
    const ret = getObject(arg0).getBindGroupLayout(arg1 >>> 0);
    return addHeapObject(ret);
}
export function __wbg_getContext_1938edb9a972f63d() { return handleError(function (arg0, arg1, arg2) {
    const ret = getObject(arg0).getContext(getStringFromWasm0(arg1, arg2));
    return isLikeNone(ret) ? 0 : addHeapObject(ret);
}, arguments); }
export function __wbg_getMappedRange_28e816a763520e01() { return handleError(function (arg0, arg1, arg2) {
    const ret = getObject(arg0).getMappedRange(arg1, arg2);
    return addHeapObject(ret);
}, arguments); }
export function __wbg_gpu_514705c6dd1f0dab(arg0) {
    const ret = getObject(arg0).gpu;
    return addHeapObject(ret);
}
export function __wbg_gpucore_new(arg0) {
    const ret = GpuCore.__wrap(arg0);
    return addHeapObject(ret);
}
export function __wbg_info_8554cb7af37427b6(arg0) {
    const ret = getObject(arg0).info;
    return addHeapObject(ret);
}
export function __wbg_instanceof_GpuOutOfMemoryError_7126123117d274a4(arg0) {
    let result;
    try {
        result = getObject(arg0) instanceof GPUOutOfMemoryError;
    } catch (_) {
        result = false;
    }
    const ret = result;
    return ret;
}
export function __wbg_instanceof_GpuValidationError_f18d09609dc737d7(arg0) {
    let result;
    try {
        result = getObject(arg0) instanceof GPUValidationError;
    } catch (_) {
        result = false;
    }
    const ret = result;
    return ret;
}
export function __wbg_isFallbackAdapter_6a4fa7356d18310b(arg0) {
    const ret = getObject(arg0).isFallbackAdapter;
    return ret;
}
export function __wbg_label_fceb40a43a358e62(arg0, arg1) {
    const ret = getObject(arg1).label;
    const ptr1 = passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
    const len1 = WASM_VECTOR_LEN;
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
}
export function __wbg_length_186163212ffe79c3(arg0) {
    const ret = getObject(arg0).length;
    return ret;
}
export function __wbg_limits_4e444eb8c2e61c45(arg0) {
    const ret = getObject(arg0).limits;
    return addHeapObject(ret);
}
export function __wbg_mapAsync_b0597127f5037286(arg0, arg1, arg2, arg3) {
    const ret = getObject(arg0).mapAsync(arg1 >>> 0, arg2, arg3);
    return addHeapObject(ret);
}
export function __wbg_maxBindGroupsPlusVertexBuffers_1face4afb5363937(arg0) {
    const ret = getObject(arg0).maxBindGroupsPlusVertexBuffers;
    return ret;
}
export function __wbg_maxBindGroups_a0b7e55762f095b9(arg0) {
    const ret = getObject(arg0).maxBindGroups;
    return ret;
}
export function __wbg_maxBindingsPerBindGroup_ec9067be38d6ec72(arg0) {
    const ret = getObject(arg0).maxBindingsPerBindGroup;
    return ret;
}
export function __wbg_maxBufferSize_a9ce15e541c64cd2(arg0) {
    const ret = getObject(arg0).maxBufferSize;
    return ret;
}
export function __wbg_maxColorAttachmentBytesPerSample_44089e129e1a2a1d(arg0) {
    const ret = getObject(arg0).maxColorAttachmentBytesPerSample;
    return ret;
}
export function __wbg_maxColorAttachments_6bd8156394ba618c(arg0) {
    const ret = getObject(arg0).maxColorAttachments;
    return ret;
}
export function __wbg_maxComputeInvocationsPerWorkgroup_7b086f15ef868934(arg0) {
    const ret = getObject(arg0).maxComputeInvocationsPerWorkgroup;
    return ret;
}
export function __wbg_maxComputeWorkgroupSizeX_8bbe505e0ac8dc18(arg0) {
    const ret = getObject(arg0).maxComputeWorkgroupSizeX;
    return ret;
}
export function __wbg_maxComputeWorkgroupSizeY_7228ed3935eecc31(arg0) {
    const ret = getObject(arg0).maxComputeWorkgroupSizeY;
    return ret;
}
export function __wbg_maxComputeWorkgroupSizeZ_6092b56a967f6f8d(arg0) {
    const ret = getObject(arg0).maxComputeWorkgroupSizeZ;
    return ret;
}
export function __wbg_maxComputeWorkgroupStorageSize_4773e3bd3936df36(arg0) {
    const ret = getObject(arg0).maxComputeWorkgroupStorageSize;
    return ret;
}
export function __wbg_maxComputeWorkgroupsPerDimension_79222bf8e8a90fbd(arg0) {
    const ret = getObject(arg0).maxComputeWorkgroupsPerDimension;
    return ret;
}
export function __wbg_maxDynamicStorageBuffersPerPipelineLayout_3ab5762b1b2c7fc2(arg0) {
    const ret = getObject(arg0).maxDynamicStorageBuffersPerPipelineLayout;
    return ret;
}
export function __wbg_maxDynamicUniformBuffersPerPipelineLayout_722da31d0de1c256(arg0) {
    const ret = getObject(arg0).maxDynamicUniformBuffersPerPipelineLayout;
    return ret;
}
export function __wbg_maxInterStageShaderVariables_821096d4b3020715(arg0) {
    const ret = getObject(arg0).maxInterStageShaderVariables;
    return ret;
}
export function __wbg_maxSampledTexturesPerShaderStage_c6aea9e05c0a02ca(arg0) {
    const ret = getObject(arg0).maxSampledTexturesPerShaderStage;
    return ret;
}
export function __wbg_maxSamplersPerShaderStage_3aa30f6c002d3a99(arg0) {
    const ret = getObject(arg0).maxSamplersPerShaderStage;
    return ret;
}
export function __wbg_maxStorageBufferBindingSize_84a2c2433627fca2(arg0) {
    const ret = getObject(arg0).maxStorageBufferBindingSize;
    return ret;
}
export function __wbg_maxStorageBuffersPerShaderStage_25b96748df28dc20(arg0) {
    const ret = getObject(arg0).maxStorageBuffersPerShaderStage;
    return ret;
}
export function __wbg_maxStorageTexturesPerShaderStage_53ed734f26e6c1ad(arg0) {
    const ret = getObject(arg0).maxStorageTexturesPerShaderStage;
    return ret;
}
export function __wbg_maxTextureArrayLayers_9ec487f1ce102992(arg0) {
    const ret = getObject(arg0).maxTextureArrayLayers;
    return ret;
}
export function __wbg_maxTextureDimension1D_faef91b2e9fa6740(arg0) {
    const ret = getObject(arg0).maxTextureDimension1D;
    return ret;
}
export function __wbg_maxTextureDimension2D_3a923eb2df4d9124(arg0) {
    const ret = getObject(arg0).maxTextureDimension2D;
    return ret;
}
export function __wbg_maxTextureDimension3D_943321fe5945464e(arg0) {
    const ret = getObject(arg0).maxTextureDimension3D;
    return ret;
}
export function __wbg_maxUniformBufferBindingSize_21e89ff761d576db(arg0) {
    const ret = getObject(arg0).maxUniformBufferBindingSize;
    return ret;
}
export function __wbg_maxUniformBuffersPerShaderStage_19a0bfb0189f7254(arg0) {
    const ret = getObject(arg0).maxUniformBuffersPerShaderStage;
    return ret;
}
export function __wbg_maxVertexAttributes_49aef6c51d07a280(arg0) {
    const ret = getObject(arg0).maxVertexAttributes;
    return ret;
}
export function __wbg_maxVertexBufferArrayStride_f68c4029e6f047ec(arg0) {
    const ret = getObject(arg0).maxVertexBufferArrayStride;
    return ret;
}
export function __wbg_maxVertexBuffers_ce9f15a623f9aac7(arg0) {
    const ret = getObject(arg0).maxVertexBuffers;
    return ret;
}
export function __wbg_message_408f555d03641e84(arg0, arg1) {
    const ret = getObject(arg1).message;
    const ptr1 = passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
    const len1 = WASM_VECTOR_LEN;
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
    getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
}
export function __wbg_minStorageBufferOffsetAlignment_529f1f52e61188fc(arg0) {
    const ret = getObject(arg0).minStorageBufferOffsetAlignment;
    return ret;
}
export function __wbg_minUniformBufferOffsetAlignment_519e26287e1996a3(arg0) {
    const ret = getObject(arg0).minUniformBufferOffsetAlignment;
    return ret;
}
export function __wbg_navigator_9641ab32fa612dd1(arg0) {
    const ret = getObject(arg0).navigator;
    return addHeapObject(ret);
}
export function __wbg_navigator_c17f443a6fe5d38d(arg0) {
    const ret = getObject(arg0).navigator;
    return addHeapObject(ret);
}
export function __wbg_new_2bfd0f45e60518b1() { return handleError(function (arg0, arg1) {
    const ret = new OffscreenCanvas(arg0 >>> 0, arg1 >>> 0);
    return addHeapObject(ret);
}, arguments); }
export function __wbg_new_ba40181b3f24ac80(arg0, arg1) {
    try {
        var state0 = {a: arg0, b: arg1};
        var cb0 = (arg0, arg1) => {
            const a = state0.a;
            state0.a = 0;
            try {
                return wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined_______true_(a, state0.b, arg0, arg1);
            } finally {
                state0.a = a;
            }
        };
        const ret = new Promise(cb0);
        return addHeapObject(ret);
    } finally {
        state0.a = 0;
    }
}
export function __wbg_new_cd4348290afae586() {
    const ret = new Object();
    return addHeapObject(ret);
}
export function __wbg_new_from_slice_3512352010266e02(arg0, arg1) {
    const ret = new Uint32Array(getArrayU32FromWasm0(arg0, arg1));
    return addHeapObject(ret);
}
export function __wbg_new_from_slice_355c10c5d8f2addb(arg0, arg1) {
    const ret = new Float32Array(getArrayF32FromWasm0(arg0, arg1));
    return addHeapObject(ret);
}
export function __wbg_new_from_slice_b8daf545a41c6aa0(arg0, arg1) {
    const ret = new Uint8Array(getArrayU8FromWasm0(arg0, arg1));
    return addHeapObject(ret);
}
export function __wbg_new_typed_6b60b99917da27d6() {
    const ret = new Object();
    return addHeapObject(ret);
}
export function __wbg_new_typed_e09da9dae6ee5935(arg0, arg1) {
    try {
        var state0 = {a: arg0, b: arg1};
        var cb0 = (arg0, arg1) => {
            const a = state0.a;
            state0.a = 0;
            try {
                return wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined_______true_(a, state0.b, arg0, arg1);
            } finally {
                state0.a = a;
            }
        };
        const ret = new Promise(cb0);
        return addHeapObject(ret);
    } finally {
        state0.a = 0;
    }
}
export function __wbg_new_with_byte_offset_and_length_3cd32055a417f095(arg0, arg1, arg2) {
    const ret = new Uint8Array(getObject(arg0), arg1 >>> 0, arg2 >>> 0);
    return addHeapObject(ret);
}
export function __wbg_onSubmittedWorkDone_1190213cee1ecf7e(arg0) {
    const ret = getObject(arg0).onSubmittedWorkDone();
    return addHeapObject(ret);
}
export function __wbg_popErrorScope_182b8e03671d81ef(arg0) {
    const ret = getObject(arg0).popErrorScope();
    return addHeapObject(ret);
}
export function __wbg_prototypesetcall_13162965d1fe7aa3(arg0, arg1, arg2) {
    Uint8Array.prototype.set.call(getArrayU8FromWasm0(arg0, arg1), getObject(arg2));
}
export function __wbg_pushErrorScope_fa7df784c43bdb51(arg0, arg1) {
    getObject(arg0).pushErrorScope(__wbindgen_enum_GpuErrorFilter[arg1]);
}
export function __wbg_queueMicrotask_1e8503a8a690f0a3(arg0) {
    const ret = getObject(arg0).queueMicrotask;
    return addHeapObject(ret);
}
export function __wbg_queueMicrotask_4a1a4d8dd332373b(arg0) {
    queueMicrotask(getObject(arg0));
}
export function __wbg_queue_e250e2ebc49b39e0(arg0) {
    const ret = getObject(arg0).queue;
    return addHeapObject(ret);
}
export function __wbg_requestAdapter_a539af006419f2e9(arg0, arg1) {
    const ret = getObject(arg0).requestAdapter(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_requestDevice_5cb8a582e55d08cb(arg0, arg1) {
    const ret = getObject(arg0).requestDevice(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_resolve_dbf78ab4942478b0(arg0) {
    const ret = Promise.resolve(getObject(arg0));
    return addHeapObject(ret);
}
export function __wbg_setBindGroup_4aa88516c8ab99c4() { return handleError(function (arg0, arg1, arg2, arg3, arg4, arg5, arg6) {
    getObject(arg0).setBindGroup(arg1 >>> 0, getObject(arg2), getArrayU32FromWasm0(arg3, arg4), arg5, arg6 >>> 0);
}, arguments); }
export function __wbg_setBindGroup_c83391351ce68826(arg0, arg1, arg2) {
    getObject(arg0).setBindGroup(arg1 >>> 0, getObject(arg2));
}
export function __wbg_setPipeline_5146f7b8d2b4af5c(arg0, arg1) {
    getObject(arg0).setPipeline(getObject(arg1));
}
export function __wbg_set_118fefd528ab0a79(arg0, arg1, arg2) {
    getObject(arg0).set(getObject(arg1), arg2 >>> 0);
}
export function __wbg_set_2793479888329cb6() { return handleError(function (arg0, arg1, arg2) {
    const ret = Reflect.set(getObject(arg0), getObject(arg1), getObject(arg2));
    return ret;
}, arguments); }
export function __wbg_set_beginning_of_pass_write_index_c49071ff9c074e31(arg0, arg1) {
    getObject(arg0).beginningOfPassWriteIndex = arg1 >>> 0;
}
export function __wbg_set_binding_bd7d6b01bb08823a(arg0, arg1) {
    getObject(arg0).binding = arg1 >>> 0;
}
export function __wbg_set_buffer_91f4e8e05066c37a(arg0, arg1) {
    getObject(arg0).buffer = getObject(arg1);
}
export function __wbg_set_code_130aebc49c4cadd3(arg0, arg1, arg2) {
    getObject(arg0).code = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_compute_800b1231f347606b(arg0, arg1) {
    getObject(arg0).compute = getObject(arg1);
}
export function __wbg_set_device_1940fd5f9e2a7fee(arg0, arg1) {
    getObject(arg0).device = getObject(arg1);
}
export function __wbg_set_end_of_pass_write_index_891ac71cf6a560c5(arg0, arg1) {
    getObject(arg0).endOfPassWriteIndex = arg1 >>> 0;
}
export function __wbg_set_entries_d9929dbfa2aaa9a7(arg0, arg1, arg2) {
    getObject(arg0).entries = getArrayJsValueViewFromWasm0(arg1, arg2);
}
export function __wbg_set_entry_point_6c86140cb6e5243a(arg0, arg1, arg2) {
    getObject(arg0).entryPoint = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_format_46b1c6b3acc10b24(arg0, arg1) {
    getObject(arg0).format = __wbindgen_enum_GpuTextureFormat[arg1];
}
export function __wbg_set_label_08745022b1ec7b66(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_5347fc976d15e94c(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_644bc1b32c7917b0(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_73c99dab6708c962(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_891876dd0e225368(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_89d2ffaf598df6a4(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_a7095396911c5801(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_label_cba03ffef7ae90a3(arg0, arg1, arg2) {
    getObject(arg0).label = getStringFromWasm0(arg1, arg2);
}
export function __wbg_set_layout_200fc3b143da0a9e(arg0, arg1) {
    getObject(arg0).layout = getObject(arg1);
}
export function __wbg_set_layout_599d761209e4b03f(arg0, arg1) {
    getObject(arg0).layout = getObject(arg1);
}
export function __wbg_set_layout_gpu_auto_layout_mode_eb40dfd1eca5b9d3(arg0, arg1) {
    getObject(arg0).layout = __wbindgen_enum_GpuAutoLayoutMode[arg1];
}
export function __wbg_set_mapped_at_creation_8af5b87ccb898bbe(arg0, arg1) {
    getObject(arg0).mappedAtCreation = arg1 !== 0;
}
export function __wbg_set_module_05c14f520e88acaa(arg0, arg1) {
    getObject(arg0).module = getObject(arg1);
}
export function __wbg_set_offset_f64_9374d9e912985773(arg0, arg1) {
    getObject(arg0).offset = arg1;
}
export function __wbg_set_power_preference_6bc1d2697a0e7374(arg0, arg1) {
    getObject(arg0).powerPreference = __wbindgen_enum_GpuPowerPreference[arg1];
}
export function __wbg_set_query_set_6acda8912691b8d6(arg0, arg1) {
    getObject(arg0).querySet = getObject(arg1);
}
export function __wbg_set_required_features_5bda1420e19461b2(arg0, arg1, arg2) {
    getObject(arg0).requiredFeatures = getArrayJsValueViewFromWasm0(arg1, arg2);
}
export function __wbg_set_required_limits_e78b923d73f9b596(arg0, arg1) {
    getObject(arg0).requiredLimits = getObject(arg1);
}
export function __wbg_set_resource_0f960a4279e7e400(arg0, arg1) {
    getObject(arg0).resource = getObject(arg1);
}
export function __wbg_set_resource_gpu_buffer_binding_53a2189a77dd38be(arg0, arg1) {
    getObject(arg0).resource = getObject(arg1);
}
export function __wbg_set_resource_gpu_texture_view_9153a2356b958667(arg0, arg1) {
    getObject(arg0).resource = getObject(arg1);
}
export function __wbg_set_size_f64_3ff72c0d736c42a1(arg0, arg1) {
    getObject(arg0).size = arg1;
}
export function __wbg_set_size_f64_9b65e4916b2eb111(arg0, arg1) {
    getObject(arg0).size = arg1;
}
export function __wbg_set_timestamp_writes_78a9445dbac5c902(arg0, arg1) {
    getObject(arg0).timestampWrites = getObject(arg1);
}
export function __wbg_set_usage_bac3cabe90090275(arg0, arg1) {
    getObject(arg0).usage = arg1 >>> 0;
}
export function __wbg_static_accessor_GLOBAL_THIS_003ee833af9699fc() {
    const ret = typeof globalThis === 'undefined' ? undefined : globalThis;
    return isLikeNone(ret) ? 0 : addHeapObject(ret);
}
export function __wbg_static_accessor_GLOBAL_e4293fb22cbe77da() {
    const ret = typeof global === 'undefined' ? undefined : global;
    return isLikeNone(ret) ? 0 : addHeapObject(ret);
}
export function __wbg_static_accessor_SELF_53bb20457401453d() {
    const ret = typeof self === 'undefined' ? undefined : self;
    return isLikeNone(ret) ? 0 : addHeapObject(ret);
}
export function __wbg_static_accessor_WINDOW_b5e0810bfecb7feb() {
    const ret = typeof window === 'undefined' ? undefined : window;
    return isLikeNone(ret) ? 0 : addHeapObject(ret);
}
export function __wbg_subgroupMaxSize_3586e822dc3603f6(arg0) {
    const ret = getObject(arg0).subgroupMaxSize;
    return ret;
}
export function __wbg_subgroupMinSize_17f758985cdd1dab(arg0) {
    const ret = getObject(arg0).subgroupMinSize;
    return ret;
}
export function __wbg_submit_077c85cc28e36892(arg0, arg1, arg2) {
    getObject(arg0).submit(getArrayJsValueViewFromWasm0(arg1, arg2));
}
export function __wbg_then_656f253a5dd7d8ea(arg0, arg1, arg2) {
    const ret = getObject(arg0).then(getObject(arg1), getObject(arg2));
    return addHeapObject(ret);
}
export function __wbg_then_e3f7f2d365708be8(arg0, arg1) {
    const ret = getObject(arg0).then(getObject(arg1));
    return addHeapObject(ret);
}
export function __wbg_unconfigure_835307f58dc68d80(arg0) {
    getObject(arg0).unconfigure();
}
export function __wbg_unmap_6a96b14c9ef5f7f5(arg0) {
    getObject(arg0).unmap();
}
export function __wbg_writeBuffer_d7640e64ceb69371() { return handleError(function (arg0, arg1, arg2, arg3, arg4, arg5, arg6) {
    getObject(arg0).writeBuffer(getObject(arg1), arg2, getArrayU8FromWasm0(arg3, arg4), arg5, arg6);
}, arguments); }
export function __wbindgen_generic_0000000000000001(arg0, arg1) {
    // Cast intrinsic for `Closure(Closure { owned: true, function: Function { arguments: [Externref], shim_idx: 106, ret: Result(Unit), inner_ret: Some(Result(Unit)) }, mutable: true }) -> Externref`.
    const ret = makeMutClosure(arg0, arg1, wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___JsValue__core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000002(arg0, arg1) {
    // Cast intrinsic for `Closure(Closure { owned: true, function: Function { arguments: [NamedExternref("GPUDevice")], shim_idx: 56, ret: Result(Unit), inner_ret: Some(Result(Unit)) }, mutable: true }) -> Externref`.
    const ret = makeMutClosure(arg0, arg1, wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000003(arg0, arg1) {
    // Cast intrinsic for `Closure(Closure { owned: true, function: Function { arguments: [NamedExternref("any")], shim_idx: 56, ret: Result(Unit), inner_ret: Some(Result(Unit)) }, mutable: true }) -> Externref`.
    const ret = makeMutClosure(arg0, arg1, wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__26);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000004(arg0, arg1) {
    // Cast intrinsic for `Closure(Closure { owned: true, function: Function { arguments: [NamedExternref("undefined")], shim_idx: 56, ret: Result(Unit), inner_ret: Some(Result(Unit)) }, mutable: true }) -> Externref`.
    const ret = makeMutClosure(arg0, arg1, wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__27);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000005(arg0) {
    // Cast intrinsic for `F64 -> Externref`.
    const ret = arg0;
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000006(arg0, arg1) {
    // Cast intrinsic for `Ref(Slice(F32)) -> NamedExternref("Float32Array")`.
    const ret = getArrayF32FromWasm0(arg0, arg1);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000007(arg0, arg1) {
    // Cast intrinsic for `Ref(Slice(U8)) -> NamedExternref("Uint8Array")`.
    const ret = getArrayU8FromWasm0(arg0, arg1);
    return addHeapObject(ret);
}
export function __wbindgen_generic_0000000000000008(arg0, arg1) {
    // Cast intrinsic for `Ref(String) -> Externref`.
    const ret = getStringFromWasm0(arg0, arg1);
    return addHeapObject(ret);
}
export function __wbindgen_object_clone_ref(arg0) {
    const ret = getObject(arg0);
    return addHeapObject(ret);
}
export function __wbindgen_object_drop_ref(arg0) {
    takeObject(arg0);
}
function wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___JsValue__core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_(arg0, arg1, arg2) {
    const ret = wasm.wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___JsValue__core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_(arg0, arg1, addHeapObject(arg2));
    if (ret[1]) {
        throw takeObject(ret[0]);
    }
}

function wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_(arg0, arg1, arg2) {
    const ret = wasm.wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_(arg0, arg1, addHeapObject(arg2));
    if (ret[1]) {
        throw takeObject(ret[0]);
    }
}

function wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__26(arg0, arg1, arg2) {
    const ret = wasm.wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__26(arg0, arg1, addHeapObject(arg2));
    if (ret[1]) {
        throw takeObject(ret[0]);
    }
}

function wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__27(arg0, arg1, arg2) {
    const ret = wasm.wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__27(arg0, arg1, addHeapObject(arg2));
    if (ret[1]) {
        throw takeObject(ret[0]);
    }
}

function wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined_______true_(arg0, arg1, arg2, arg3) {
    wasm.wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined_______true_(arg0, arg1, addHeapObject(arg2), addHeapObject(arg3));
}


const __wbindgen_enum_GpuAutoLayoutMode = ["auto"];


const __wbindgen_enum_GpuErrorFilter = ["validation", "out-of-memory", "internal"];


const __wbindgen_enum_GpuPowerPreference = ["low-power", "high-performance"];


const __wbindgen_enum_GpuTextureFormat = ["r8unorm", "r8snorm", "r8uint", "r8sint", "r16unorm", "r16snorm", "r16uint", "r16sint", "r16float", "rg8unorm", "rg8snorm", "rg8uint", "rg8sint", "r32uint", "r32sint", "r32float", "rg16unorm", "rg16snorm", "rg16uint", "rg16sint", "rg16float", "rgba8unorm", "rgba8unorm-srgb", "rgba8snorm", "rgba8uint", "rgba8sint", "bgra8unorm", "bgra8unorm-srgb", "rgb9e5ufloat", "rgb10a2uint", "rgb10a2unorm", "rg11b10ufloat", "rg32uint", "rg32sint", "rg32float", "rgba16unorm", "rgba16snorm", "rgba16uint", "rgba16sint", "rgba16float", "rgba32uint", "rgba32sint", "rgba32float", "stencil8", "depth16unorm", "depth24plus", "depth24plus-stencil8", "depth32float", "depth32float-stencil8", "bc1-rgba-unorm", "bc1-rgba-unorm-srgb", "bc2-rgba-unorm", "bc2-rgba-unorm-srgb", "bc3-rgba-unorm", "bc3-rgba-unorm-srgb", "bc4-r-unorm", "bc4-r-snorm", "bc5-rg-unorm", "bc5-rg-snorm", "bc6h-rgb-ufloat", "bc6h-rgb-float", "bc7-rgba-unorm", "bc7-rgba-unorm-srgb", "etc2-rgb8unorm", "etc2-rgb8unorm-srgb", "etc2-rgb8a1unorm", "etc2-rgb8a1unorm-srgb", "etc2-rgba8unorm", "etc2-rgba8unorm-srgb", "eac-r11unorm", "eac-r11snorm", "eac-rg11unorm", "eac-rg11snorm", "astc-4x4-unorm", "astc-4x4-unorm-srgb", "astc-5x4-unorm", "astc-5x4-unorm-srgb", "astc-5x5-unorm", "astc-5x5-unorm-srgb", "astc-6x5-unorm", "astc-6x5-unorm-srgb", "astc-6x6-unorm", "astc-6x6-unorm-srgb", "astc-8x5-unorm", "astc-8x5-unorm-srgb", "astc-8x6-unorm", "astc-8x6-unorm-srgb", "astc-8x8-unorm", "astc-8x8-unorm-srgb", "astc-10x5-unorm", "astc-10x5-unorm-srgb", "astc-10x6-unorm", "astc-10x6-unorm-srgb", "astc-10x8-unorm", "astc-10x8-unorm-srgb", "astc-10x10-unorm", "astc-10x10-unorm-srgb", "astc-12x10-unorm", "astc-12x10-unorm-srgb", "astc-12x12-unorm", "astc-12x12-unorm-srgb"];
const AdamWCoreFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_adamwcore_free(ptr, 1));
const GpuCoreFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_gpucore_free(ptr, 1));

function addHeapObject(obj) {
    if (heap_next === heap.length) heap.push(heap.length + 1);
    const idx = heap_next;
    heap_next = heap[idx];

    heap[idx] = obj;
    return idx;
}

const CLOSURE_DTORS = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(state => wasm.__wbindgen_destroy_closure(state.a, state.b));

function debugString(val) {
    switch (typeof val) {
        // primitive types
        case 'number':
        case 'boolean':
        case 'undefined':
        return `${val}`;
        case 'string':
        return JSON.stringify(val);
        case 'bigint':
        return `${val}n`;
        case 'symbol':
        return val.description !== undefined
            ? `Symbol(${val.description})`
            : 'Symbol';
        case 'function':
        return typeof val.name === 'string' && val.name !== ''
            ? `Function(${val.name})`
            : 'Function';
        case 'object': {
            if (val === null) {
                return 'null';
            }
            // objects
            if (Array.isArray(val)) {
                return '[' + Array.from(val, debugString).join(', ') + ']';
            }
            // errors
            if (val instanceof Error) {
                return `${val.name}: ${val.message}\n${val.stack}`;
            }

            const toStringOutput = toString.call(val);
            // Test for built-in
            const className = /\[object ([^\]]+)\]/.exec(toStringOutput)?.[1];

            // Failed to match the standard '[object ClassName]'
            if (className === undefined) {
                return toStringOutput;
            }
            if (className === 'Object') {
                // we're a user defined class or Object
                // JSON.stringify avoids problems with cycles, and is generally much
                // easier than looping through ownProperties of `val`.
                try {
                    return 'Object(' + JSON.stringify(val) + ')';
                } catch (_) {
                    return 'Object';
                }
            }
            // TODO we could test for more things here, like `Set`s and `Map`s.
            return className;
        }
        // Per MDN: 'This list of values is exhaustive.'
        // https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Operators/typeof#description
    }
}

function dropObject(idx) {
    if (idx < 1028) return;
    heap[idx] = heap_next;
    heap_next = idx;
}

function getArrayF32FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getFloat32ArrayMemory0().subarray(ptr / 4, ptr / 4 + len);
}

function getArrayF64FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getFloat64ArrayMemory0().subarray(ptr / 8, ptr / 8 + len);
}

function getArrayJsValueViewFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    const mem = getDataViewMemory0();
    const result = [];
    for (let i = ptr; i < ptr + 4 * len; i += 4) {
        result.push(getObject(mem.getUint32(i, true)));
    }
    return result;
}

function getArrayU32FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint32ArrayMemory0().subarray(ptr / 4, ptr / 4 + len);
}

function getArrayU8FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint8ArrayMemory0().subarray(ptr / 1, ptr / 1 + len);
}

let cachedDataViewMemory0 = null;
function getDataViewMemory0() {
    if (cachedDataViewMemory0 === null || cachedDataViewMemory0.buffer.detached === true || (cachedDataViewMemory0.buffer.detached === undefined && cachedDataViewMemory0.buffer !== wasm.memory.buffer)) {
        cachedDataViewMemory0 = new DataView(wasm.memory.buffer);
    }
    return cachedDataViewMemory0;
}

let cachedFloat32ArrayMemory0 = null;
function getFloat32ArrayMemory0() {
    if (cachedFloat32ArrayMemory0 === null || cachedFloat32ArrayMemory0.byteLength === 0) {
        cachedFloat32ArrayMemory0 = new Float32Array(wasm.memory.buffer);
    }
    return cachedFloat32ArrayMemory0;
}

let cachedFloat64ArrayMemory0 = null;
function getFloat64ArrayMemory0() {
    if (cachedFloat64ArrayMemory0 === null || cachedFloat64ArrayMemory0.byteLength === 0) {
        cachedFloat64ArrayMemory0 = new Float64Array(wasm.memory.buffer);
    }
    return cachedFloat64ArrayMemory0;
}

function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
}

let cachedUint16ArrayMemory0 = null;
function getUint16ArrayMemory0() {
    if (cachedUint16ArrayMemory0 === null || cachedUint16ArrayMemory0.byteLength === 0) {
        cachedUint16ArrayMemory0 = new Uint16Array(wasm.memory.buffer);
    }
    return cachedUint16ArrayMemory0;
}

let cachedUint32ArrayMemory0 = null;
function getUint32ArrayMemory0() {
    if (cachedUint32ArrayMemory0 === null || cachedUint32ArrayMemory0.byteLength === 0) {
        cachedUint32ArrayMemory0 = new Uint32Array(wasm.memory.buffer);
    }
    return cachedUint32ArrayMemory0;
}

let cachedUint8ArrayMemory0 = null;
function getUint8ArrayMemory0() {
    if (cachedUint8ArrayMemory0 === null || cachedUint8ArrayMemory0.byteLength === 0) {
        cachedUint8ArrayMemory0 = new Uint8Array(wasm.memory.buffer);
    }
    return cachedUint8ArrayMemory0;
}

function getObject(idx) { return heap[idx]; }

function handleError(f, args) {
    try {
        return f.apply(this, args);
    } catch (e) {
        wasm.__wbindgen_exn_store(addHeapObject(e));
    }
}

let heap = new Array(1024).fill(undefined);
heap.push(undefined, null, true, false);

let heap_next = heap.length;

function isLikeNone(x) {
    return x === undefined || x === null;
}

function makeMutClosure(arg0, arg1, f) {
    const state = { a: arg0, b: arg1, cnt: 1 };
    const real = (...args) => {

        // First up with a closure we increment the internal reference
        // count. This ensures that the Rust closure environment won't
        // be deallocated while we're invoking it.
        state.cnt++;
        const a = state.a;
        state.a = 0;
        try {
            return f(a, state.b, ...args);
        } finally {
            state.a = a;
            real._wbg_cb_unref();
        }
    };
    real._wbg_cb_unref = () => {
        if (--state.cnt === 0) {
            wasm.__wbindgen_destroy_closure(state.a, state.b);
            state.a = 0;
            CLOSURE_DTORS.unregister(state);
        }
    };
    CLOSURE_DTORS.register(real, state, state);
    return real;
}

function passArray16ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 2, 2) >>> 0;
    getUint16ArrayMemory0().set(arg, ptr / 2);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArray32ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 4, 4) >>> 0;
    getUint32ArrayMemory0().set(arg, ptr / 4);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArray8ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 1, 1) >>> 0;
    getUint8ArrayMemory0().set(arg, ptr / 1);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArrayF32ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 4, 4) >>> 0;
    getFloat32ArrayMemory0().set(arg, ptr / 4);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArrayF64ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 8, 8) >>> 0;
    getFloat64ArrayMemory0().set(arg, ptr / 8);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passStringToWasm0(arg, malloc, realloc) {
    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
        WASM_VECTOR_LEN = buf.length;
        return ptr;
    }

    let len = arg.length;
    let ptr = malloc(len, 1) >>> 0;

    const mem = getUint8ArrayMemory0();

    let offset = 0;

    for (; offset < len; offset++) {
        const code = arg.charCodeAt(offset);
        if (code > 0x7F) break;
        mem[ptr + offset] = code;
    }
    if (offset !== len) {
        if (offset !== 0) {
            arg = arg.slice(offset);
        }
        ptr = realloc(ptr, len, len = offset + arg.length * 3, 1) >>> 0;
        const view = getUint8ArrayMemory0().subarray(ptr + offset, ptr + len);
        const ret = cachedTextEncoder.encodeInto(arg, view);

        offset += ret.written;
        ptr = realloc(ptr, len, offset, 1) >>> 0;
    }

    WASM_VECTOR_LEN = offset;
    return ptr;
}

function takeObject(idx) {
    const ret = getObject(idx);
    dropObject(idx);
    return ret;
}

let cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
cachedTextDecoder.decode();
const MAX_SAFARI_DECODE_BYTES = 2146435072;
let numBytesDecoded = 0;
function decodeText(bytes) {
    numBytesDecoded += bytes.length;
    if (numBytesDecoded >= MAX_SAFARI_DECODE_BYTES) {
        cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
        cachedTextDecoder.decode();
        numBytesDecoded = bytes.length;
    }
    return cachedTextDecoder.decode(bytes);
}

const cachedTextEncoder = new TextEncoder();

if (!('encodeInto' in cachedTextEncoder)) {
    cachedTextEncoder.encodeInto = function (arg, view) {
        const buf = cachedTextEncoder.encode(arg);
        view.set(buf);
        return {
            read: arg.length,
            written: buf.length
        };
    };
}

let WASM_VECTOR_LEN = 0;


let wasm;
export function __wbg_set_wasm(val) {
    wasm = val;
}
