/**
 * Helpers shared by the rules: coupling two axes' factor lists, and aligning broadcast axes.
 *
 * @module
 */
import { Factor, unifyLists } from "../factors.ts";
import { blockList } from "../trace.ts";

/**
 * Declares that two axes of tracked tensors index the same channels: their factors are unified
 * (plain ones too, since either may join a channel class later in the pass).
 */
export function couple(a: Factor[], b: Factor[], reason: string): void {
  if (!unifyLists(a, b)) {
    blockList(a, `${reason}: channel layouts disagree`);
    blockList(b, `${reason}: channel layouts disagree`);
  }
}

/** A tracked axis meets an axis of a tensor the analysis does not follow: no channel may go. */
export function coupleUntracked(tracked: Factor[], reason: string): void {
  blockList(tracked, `${reason}: coupled with a tensor the analysis does not track`);
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
