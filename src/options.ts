/** Options of one pruning run, named after Torch-Pruning's arguments. */
export interface PruneOptions {
  /** Fraction of MLP hidden channels to remove per block (0 ≤ r < 1). Default 0. */
  pruningRatio?: number;
  /** Fraction of the embedding (residual) width to remove: patch/token embedding, class and
   * position embeddings, every LayerNorm, every block's inputs and outputs, the classifier's
   * input. Default 0. */
  embeddingPruningRatio?: number;
  /** Fraction of heads (with `pruneNumHeads`) or of dims per head (with `pruneHeadDims`) to
   * remove per attention block. Defaults to `pruningRatio`. */
  headPruningRatio?: number;
  /** With `pruneHeadDims`: fractions of each head's Q/K dims and of its V dims, pruned
   * separately (NViT). Unset: both follow `headPruningRatio` and Q, K and V lose the same dims. */
  qkPruningRatio?: number;
  /** With `pruneHeadDims`: fraction of each head's V dims to remove (see `qkPruningRatio`). */
  vPruningRatio?: number;
  /** Remove whole attention heads. */
  pruneNumHeads?: boolean;
  /** Remove the same number of dims from every head. */
  pruneHeadDims?: boolean;
  /** Kept channel counts are rounded to a multiple of this (MLP channels, head dims). */
  roundTo?: number;
  /** Node or initializer names (or name prefixes) whose channels must not be pruned. */
  ignore?: string[];
  /** Head count per attention block, keyed by a node name of that block (qkv / query MatMul). */
  numHeads?: Record<string, number>;
  /** Attention blocks (a node name or prefix inside the block) whose heads all stay; their
   * head dims may still be pruned. */
  keepHeads?: string[];
  /** Verify the pruned model by running it once in onnxruntime (default: its shapes worked out
   * from the graph again, which costs nothing; the run costs a model load and an inference). */
  verifyRun?: boolean;
  /** Per-layer ratio overrides, keyed by a node name (or prefix) inside the block. */
  layerRatios?: Record<string, number>;
  /** Grouped-query attention: remove query heads inside every KV group ("query-heads", the
   * default, as Torch-Pruning does) or whole KV heads with their query heads ("kv-groups", as
   * LLM-Pruner does). */
  gqaPolicy?: "query-heads" | "kv-groups";
  /** Channel importance: L1 or L2 group magnitude (default "l2"), or, with calibration data,
   * Wanda-sp ("wanda"), FLAP's fluctuation ("flap"), Wanda-sp weighted by each channel's
   * dissimilarity to the rest of its head (APMA's similarity weight, "apma"), or from gradients
   * of the loss (cross-entropy
   * on the model's own predictions) computed by onnxruntime: first-order Taylor ("taylor"),
   * diagonal Fisher ("fisher"), Michel et al.'s head-gate importance ("michel"). */
  criterion?: "l1" | "l2" | "wanda" | "flap" | "apma" | "taylor" | "fisher" | "michel";
  /** How the ratios are spent: "local" (default) — every block loses its ratio; "global" — the
   * same number of parameters, removed where scores are lowest across all blocks and kinds (MLP
   * channels against heads or head dims); "flap" — the same with scores standardised per kind
   * across blocks first (FLAP's adaptive structure search); "isomorphic" — each kind ranked
   * across blocks only against itself, with its own share (Torch-Pruning's isomorphic ranking). */
  allocation?: "local" | "global" | "flap" | "isomorphic";
  /** Compute backend of the core. Default "auto" (GPU when an adapter exists). */
  backend?: "auto" | "gpu" | "cpu";
}
