/**
 * Weights used by several layers (a merged decoder's two branches, layers that share parameters):
 * the channels each use produces or reads along the same axis of the same stored tensor are the
 * same channels. Tying them makes one group, pruned once, instead of groups that could choose
 * differently and force a copy of the weight for each.
 *
 * @module
 */
import { Factor } from "./factors.ts";
import type { TensorTouch, Trace } from "./trace.ts";

/** A touch's axis as one plain factor, or undefined when it is refined, segmented or a product. */
function single(t: TensorTouch): Factor | undefined {
  const leaves = t.factors.flatMap((f) => f.leaves()).filter((f) => f.size !== 1);
  if (leaves.length !== 1) return undefined;
  const f = leaves[0].root();
  return f.children() || f.segments() ? undefined : f;
}

/** Unifies the channel factors of weight touches that share a tensor, an axis and a role. */
export function tieSharedWeights(trace: Trace): void {
  const first = new Map<string, Factor>();
  const ids = new WeakMap<object, number>();
  let next = 0;
  for (const t of trace.tensorTouches) {
    if (t.role === "operand") continue;
    const f = single(t);
    if (!f || !f.channel) continue;
    const id = ids.get(t.ref.tensor) ?? ids.set(t.ref.tensor, next++).get(t.ref.tensor)!;
    const key = `${id}:${t.axis}:${t.role}`;
    const seen = first.get(key);
    if (!seen) first.set(key, f);
    else if (seen.root() !== f.root() && seen.root().size === f.size) Factor.unify(seen, f);
  }
}
