/**
 * Factors: the vocabulary of the dependency analysis.
 *
 * Every axis of a tracked tensor is a product of factors, major to minor. A factor is either a
 * *channel* factor, born at the output of a linear layer (its index is a channel of that layer),
 * or a *plain* one (batch, tokens). Reshapes split factors (refinement: the qkv output channel
 * factor of size 3·H·D becomes [3, H, D]) and merge axes (their factor lists are concatenated).
 * Ops that couple channels of two tensors unify their factors (union-find). A channel factor that
 * reaches an op the analysis cannot follow is blocked, with the reason.
 *
 * A factor can also be cut into *segments* laid side by side along its axis (a sum, where
 * refinement is a product): a fused q | k | v or gate | up projection whose output a Split or
 * Slice takes apart. Each segment is a factor of its own (q's channels are later refined into
 * heads × dims, v's may keep other dims); for the product structure of an axis the segmented
 * factor stays one opaque leaf, and `atoms()` reaches inside.
 *
 * @module
 */

let nextId = 1;

export class Factor {
  readonly id = nextId++;
  size: number;
  readonly channel: boolean;
  /** Node that created the factor (for reports). */
  readonly origin: string;
  #parent: Factor | null = null;
  #children: Factor[] | null = null;
  #segments: Factor[] | null = null;
  #blocked: string | null = null;

  constructor(size: number, channel: boolean, origin: string) {
    this.size = size;
    this.channel = channel;
    this.origin = origin;
  }

  /** Representative of this factor's equivalence class. */
  root(): Factor {
    return this.#parent ? this.#parent.root() : this;
  }

  /** Refinement of the class (major → minor), or null while it is a single factor. */
  children(): Factor[] | null {
    return this.root().#children;
  }

  /** The unrefined factors this one stands for, in order (a segmented factor is one leaf). */
  leaves(): Factor[] {
    const r = this.root();
    const kids = r.#children;
    return kids ? kids.flatMap((k) => k.leaves()) : [r];
  }

  /** Pieces of the class laid side by side along its axis (major first), or null. */
  segments(): Factor[] | null {
    return this.root().#segments;
  }

  /** Every factor this one is made of, inside segments too: the channels it touches. */
  atoms(): Factor[] {
    const r = this.root();
    const parts = r.#children ?? r.#segments;
    return parts ? parts.flatMap((k) => k.atoms()) : [r];
  }

  blockedReason(): string | null {
    return this.root().#blocked;
  }

  /** Marks the class (and its refinement) unprunable; the first reason wins. */
  block(reason: string): void {
    const r = this.root();
    if (!r.#blocked) r.#blocked = reason;
    for (const k of r.#children ?? r.#segments ?? []) k.block(reason);
  }

  /** Splits this (leaf) class into factors of the given sizes, major to minor. */
  refine(sizes: number[]): Factor[] {
    const r = this.root();
    if (r.#children) throw new Error("refine() of a refined factor");
    if (r.#segments) throw new Error("refine() of a segmented factor");
    const product = sizes.reduce((a, b) => a * b, 1);
    if (product !== r.size) throw new Error(`refine ${r.size} into ${sizes}`);
    r.#children = sizes.map((s) => new Factor(s, r.channel, r.origin));
    if (r.#blocked) { for (const k of r.#children) k.block(r.#blocked); }
    return r.#children;
  }

  /** Cuts this (unrefined, unsegmented) class into consecutive segments of the given sizes. */
  segment(sizes: number[]): Factor[] {
    const r = this.root();
    if (r.#children || r.#segments) throw new Error("segment() of a refined or segmented factor");
    if (sizes.reduce((a, b) => a + b, 0) !== r.size) {
      throw new Error(`segment ${r.size} into ${sizes}`);
    }
    r.#segments = sizes.map((s) => new Factor(s, r.channel, r.origin));
    if (r.#blocked) { for (const k of r.#segments) k.block(r.#blocked); }
    return r.#segments;
  }

  /** Joins two classes; false when their structure cannot agree. */
  static unify(a: Factor, b: Factor): boolean {
    const ra = a.root(), rb = b.root();
    if (ra === rb) return true;
    if (ra.size !== rb.size) return false;
    const sa = ra.#segments, sb = rb.#segments;
    if (sa || sb) {
      // A product and a sum of the same channels cannot both describe them.
      if (ra.#children || rb.#children) return false;
      if (sa && sb) {
        if (sa.length !== sb.length) return false;
        if (sa.some((s, i) => s.root().size !== sb[i].root().size)) return false;
        if (!sa.every((s, i) => Factor.unify(s, sb[i]))) return false;
      }
    } else if (ra.#children && rb.#children && !unifyLists(ra.#children, rb.#children)) {
      return false;
    }
    // Keep the refined (or segmented) one as representative so its parts stay reachable.
    const [keep, drop] = ra.#children || sa ? [ra, rb] : [rb, ra];
    if (!keep.channel && drop.channel) {
      // A channel factor must not lose its channel nature by joining a plain one.
      (keep as { channel: boolean }).channel = true;
    }
    drop.#parent = keep;
    const reason = drop.#blocked ?? keep.#blocked;
    if (reason) keep.block(reason);
    return true;
  }
}

/** Leaves of a factor list. */
export function leavesOf(list: Factor[]): Factor[] {
  return list.flatMap((f) => f.leaves());
}

export function sizeOf(list: Factor[]): number {
  return list.reduce((a, f) => a * f.root().size, 1);
}

export function hasChannel(list: Factor[]): boolean {
  return leavesOf(list).some((f) => f.channel);
}

/**
 * Makes two factor lists of equal total size agree leaf by leaf, refining where one side's
 * boundary falls inside a factor of the other. False when they cannot be matched.
 */
export function unifyLists(a: Factor[], b: Factor[]): boolean {
  const x = leavesOf(a).filter((f) => f.size !== 1);
  const y = leavesOf(b).filter((f) => f.size !== 1);
  let i = 0, j = 0;
  while (i < x.length && j < y.length) {
    const fa = x[i].root(), fb = y[j].root();
    if (fa === fb) {
      i++, j++;
      continue;
    }
    if (fa.size === fb.size) {
      if (!Factor.unify(fa, fb)) return false;
      i++, j++;
    } else if (fa.segments() || fb.segments() || fa.children() || fb.children()) {
      // A factor that is a sum, or was refined by an earlier step of this walk (the same
      // channels twice in one list): no leaf-by-leaf match.
      return false;
    } else if (fa.size > fb.size) {
      if (fa.size % fb.size !== 0) return false;
      const parts = fa.refine([fb.size, fa.size / fb.size]);
      x.splice(i, 1, ...parts);
    } else {
      if (fb.size % fa.size !== 0) return false;
      const parts = fb.refine([fa.size, fb.size / fa.size]);
      y.splice(j, 1, ...parts);
    }
  }
  return i === x.length && j === y.length;
}

/**
 * Regroups the factors of an input shape into the axes of an output shape of the same element
 * count (a reshape), refining factors whose boundary falls inside an output axis. Returns null
 * when a factor would have to be split in a way that is not a clean factorisation.
 */
export function regroup(axes: Factor[][], outDims: number[], origin: string): Factor[][] | null {
  const queue = axes.flatMap((a) => leavesOf(a));
  const out: Factor[][] = [];
  let q = 0;
  for (const dim of outDims) {
    const axis: Factor[] = [];
    let size = 1;
    while (size < dim) {
      // Skip size-1 factors that would pad an axis that is already complete.
      if (q >= queue.length) return null;
      const f = queue[q].root();
      if (size * f.size <= dim && dim % (size * f.size) === 0) {
        axis.push(f);
        size *= f.size;
        q++;
      } else {
        const need = dim / size;
        if (!Number.isInteger(need) || f.size % need !== 0 || f.segments()) return null;
        const [head, tail] = f.refine([need, f.size / need]);
        axis.push(head);
        size *= need;
        queue.splice(q, 1, head, tail);
        q++;
      }
    }
    // Absorb size-1 factors that follow so that they are not orphaned.
    while (dim !== 1 && q < queue.length && queue[q].root().size === 1) {
      axis.push(queue[q].root());
      q++;
    }
    if (dim === 1 && q < queue.length && queue[q].root().size === 1) axis.push(queue[q++].root());
    if (axis.length === 0) axis.push(new Factor(1, false, origin));
    out.push(axis);
  }
  while (q < queue.length && queue[q].root().size === 1) q++;
  return q === queue.length ? out : null;
}
