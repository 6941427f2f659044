/**
 * Helpers shared by the rules: coupling two axes' factor lists, and aligning broadcast axes.
 *
 * @module
 */
import { Factor, hasChannel, unifyLists } from "../factors.ts";
import { blockList } from "../trace.ts";

/**
 * Declares that two axes index the same channels. When only one side carries channels the other
 * side cannot follow a pruning of them, so the channels are blocked.
 */
export function couple(a: Factor[], b: Factor[], reason: string): void {
  const ca = hasChannel(a), cb = hasChannel(b);
  if (!ca && !cb) return;
  if (ca && cb) {
    if (!unifyLists(a, b)) {
      blockList(a, `${reason}: channel layouts disagree`);
      blockList(b, `${reason}: channel layouts disagree`);
    }
    return;
  }
  blockList(ca ? a : b, `${reason}: coupled with a tensor the analysis does not track`);
}

/** Index of `outAxis` (of an output of rank `outRank`) in an input of rank `inRank`, or -1. */
export function alignedAxis(outAxis: number, outRank: number, inRank: number): number {
  const i = outAxis - (outRank - inRank);
  return i >= 0 ? i : -1;
}

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

export function plain(size: number, origin: string): Factor[] {
  return [new Factor(size, false, origin)];
}
