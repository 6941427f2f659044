/* tslint:disable */
/* eslint-disable */
export const memory: WebAssembly.Memory;
export const __wbg_gpucore_free: (a: number, b: number) => void;
export const cpu_aggregate: (a: number, b: number, c: number, d: number, e: number) => [number, number, number, number];
export const cpu_channel_lp_scores_f16: (a: number, b: number, c: number, d: number, e: number, f: number) => [number, number, number, number];
export const cpu_channel_lp_scores_f32: (a: number, b: number, c: number, d: number, e: number, f: number) => [number, number, number, number];
export const cpu_channel_lp_scores_f32_bytes: (a: number, b: number, c: number, d: number, e: number, f: number) => [number, number, number, number];
export const cpu_gather_axis: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
export const cpu_group_scores: (a: number, b: number, c: number, d: number, e: number) => [number, number, number, number];
export const cpu_select_keep_per_group: (a: number, b: number, c: number, d: number) => [number, number, number, number];
export const gpucore_adapter_name: (a: number) => [number, number];
export const gpucore_channel_lp_scores_f16: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => number;
export const gpucore_channel_lp_scores_f32: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => number;
export const gpucore_create: (a: number) => number;
export const gpucore_destroy: (a: number) => void;
export const gpucore_dispatches: (a: number) => number;
export const gpucore_gather_axis: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number) => number;
export const gpucore_select_keep_per_group: (a: number, b: number, c: number, d: number, e: number) => number;
export const wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined___js_sys_2a078680e11cace7___Function_fn_wasm_bindgen_da820ccd4815c6fd___JsValue_____wasm_bindgen_da820ccd4815c6fd___sys__Undefined_______true_: (a: number, b: number, c: number, d: number) => void;
export const wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___JsValue__core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_: (a: number, b: number, c: number) => [number, number];
export const wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true_: (a: number, b: number, c: number) => [number, number];
export const wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__18: (a: number, b: number, c: number) => [number, number];
export const wasm_bindgen_da820ccd4815c6fd___convert__closures_____invoke___wasm_bindgen_da820ccd4815c6fd___sys__JsNullable_wgpu_64d0ffaed2d414b9___backend__webgpu__webgpu_sys__gen_GpuError__GpuError___core_c4124321cdeb024c___result__Result_____wasm_bindgen_da820ccd4815c6fd___JsError___true__19: (a: number, b: number, c: number) => [number, number];
export const __wbindgen_malloc: (a: number, b: number) => number;
export const __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
export const __wbindgen_free: (a: number, b: number, c: number) => void;
export const __wbindgen_exn_store: (a: number) => void;
export const __wbindgen_destroy_closure: (a: number, b: number) => void;
