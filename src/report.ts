import type { TargetReport } from "./target.ts";
import type { Fidelity } from "./evaluate.ts";
import type { InterfaceChange } from "./analysis/interfaces.ts";
import type { DistillReport } from "./distill/mod.ts";
import type { SearchReport } from "./search/mod.ts";

/** What a pruning run did, as printed by the CLI and returned by `prune()`. */
export interface PruneReport {
  /** Parameters (elements of the initializers and constants) before and after. */
  params: { before: number; after: number };
  /** `at`: the sizes of the symbolic input dims the MACs were counted at (absent when the
   * inputs have static shapes). */
  macs: { before: number; after: number; at?: Record<string, number> };
  /** Where the compute core ran. */
  backend: "gpu" | "cpu";
  /** Per attention block, MLP and embedding width: sizes before and after, indices kept. */
  blocks: BlockReport[];
  /** Groups found but left alone, each with the reason. */
  skipped: { name: string; reason: string }[];
  /** With held-out data: how close the pruned model stays to the original. */
  fidelity?: Fidelity;
  /** Decisions the tool made on the user's behalf, in words. */
  notes: string[];
  /** Every prunable group the analysis found, with the tensors coupled to it. */
  groups: GroupReport[];
  /** Graph inputs and outputs whose shapes change (a KV cache loses the removed heads): the
   * runtime that feeds and allocates them must use the new shapes. Absent when none change. */
  interfaces?: InterfaceChange[];
  /** MatMuls of two activations that no attention block accounts for, each naming the node and
   * the rule that stopped it (absent when there are none). */
  problems?: string[];
  /** Healing by distillation from the original (the `distill` option). */
  distill?: DistillReport;
  /** Pruning to a target: the goal, what was reached, and every step. */
  target?: TargetReport;
  /** The search of criterion, compensation and allocation: the candidates, their fidelity on
   * held-out calibration data, and the one chosen (the `search` option). */
  search?: SearchReport;
  /** With a latency model: estimated latency (ms) before and after, and the two models timed by
   * interleaved rounds (medians), with the rounds' speed-ups. */
  latency?: {
    estimated: { before: number; after: number };
    measured: { before: number; after: number };
    speedup?: { measured: number; low: number; high: number; rounds: number };
    /** What times were read on: elapsed wall time, or the process's CPU time. */
    clock?: "wall" | "cpu";
    batch: number;
    profileSeconds: number;
    /** How much a block costs inside the model against alone, and whether that was fitted
     * (from the original and a probe with every MLP halved) or assumed. */
    blockScale: number;
    fitted: boolean;
    /** What the check of the latency table against the machine found, when worth saying. */
    tableNote?: string;
  };
}

/** A group of coupled channels found in the graph. */
export interface GroupReport {
  /** Attention heads and dims, MLP hidden channels, or the embedding width. */
  kind: "attention" | "mlp" | "embedding";
  /** Name of the node that produces the group's channels. */
  name: string;
  /** Sizes of the group's dimensions: `{ heads, qkDim, vDim }` or `{ channels }`. */
  size: Record<string, number>;
  /** Constants sliced with the group: name, axis, and role (producer weight, consumer weight,
   * or other operand such as a bias). */
  tensors: { name: string; axis: number; role: "weight-out" | "weight-in" | "operand" }[];
  /** Why the group (its heads, for attention) cannot be pruned (absent when it can). */
  blocked?: string;
  /** Attention: why the per-head dims cannot be pruned (absent when they can). */
  dimsBlocked?: string;
  /** What pruning the group changes beyond removing channels. */
  note?: string;
}

/** One block of the report: attention, or MLP / embedding channels. */
export type BlockReport = AttentionBlockReport | MlpBlockReport;

/** An attention block: heads and head dims before and after, and which were kept. */
export interface AttentionBlockReport {
  /** Always "attention". */
  kind: "attention";
  /** Name of the node that produces Q (the fused qkv / in_proj / query MatMul or Gemm). */
  name: string;
  /** Query heads before/after. */
  heads: { before: number; after: number };
  /** Grouped-query attention: KV heads before/after. */
  kvHeads?: { before: number; after: number };
  /** Q/K head size before/after (also V's unless `vHeadDim` says otherwise). */
  headDim: { before: number; after: number };
  /** Indices (in the original model) of the heads kept. */
  keptHeads: number[];
  /** V head size before/after, when Q/K and V dims were pruned separately. */
  vHeadDim?: { before: number; after: number };
  /** Per kept head, its V dims kept (when V dims were pruned separately). */
  keptVDims?: number[][];
  /** Per kept head, the indices of its dims kept (absent when dims were not pruned). */
  keptDims?: number[][];
}

/** MLP hidden channels, or (kind "embedding") the model's embedding width. */
export interface MlpBlockReport {
  /** MLP hidden channels, or the embedding width. */
  kind: "mlp" | "embedding";
  /** Name of the node that produces the hidden channels (fc1). */
  name: string;
  /** Channels before/after. */
  channels: { before: number; after: number };
  /** Indices (in the original model) of the channels kept. */
  keptChannels: number[];
}
