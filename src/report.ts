/** What a pruning run did, as printed by the CLI and returned by `prune()`. */
export interface PruneReport {
  params: { before: number; after: number };
  macs: { before: number; after: number };
  backend: "gpu" | "cpu";
  blocks: BlockReport[];
  /** Groups found but left alone, each with the reason. */
  skipped: { name: string; reason: string }[];
}

export type BlockReport = AttentionBlockReport | MlpBlockReport;

export interface AttentionBlockReport {
  kind: "attention";
  /** Name of the node that produces Q (the fused qkv / in_proj / query MatMul or Gemm). */
  name: string;
  heads: { before: number; after: number };
  headDim: { before: number; after: number };
  /** Indices (in the original model) of the heads kept. */
  keptHeads: number[];
  /** Per kept head, the indices of its dims kept (absent when dims were not pruned). */
  keptDims?: number[][];
}

export interface MlpBlockReport {
  kind: "mlp";
  /** Name of the node that produces the hidden channels (fc1). */
  name: string;
  channels: { before: number; after: number };
  keptChannels: number[];
}
