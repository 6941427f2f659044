/* @ts-self-types="./prune_core.d.ts" */
import * as wasm from "./prune_core_bg.wasm";
import { __wbg_set_wasm } from "./prune_core_bg.js";

__wbg_set_wasm(wasm);

export {
    AdamWCore, GpuCore, cpu_aggregate, cpu_channel_lp_scores_f16, cpu_channel_lp_scores_f32, cpu_channel_lp_scores_f32_bytes, cpu_dissimilarity, cpu_gather_axis, cpu_gram, cpu_group_scores, cpu_ridge_refit, cpu_select_keep_per_group
} from "./prune_core_bg.js";
