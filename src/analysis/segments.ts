/**
 * Ranges of a segmented channel factor: a Split or Slice that takes a fused projection's output
 * apart (q | k | v, gate | up) cuts the factor's segment tree at the range's bounds and selects
 * the segment that covers the range exactly.
 *
 * @module
 */
import type { Factor } from "./factors.ts";

/** Makes `at` (0 < at < size) a segment boundary of `factor`; false where a refinement (a
 * product of factors) already describes those channels. */
function cutAt(factor: Factor, at: number): boolean {
  const r = factor.root();
  if (at <= 0 || at >= r.size) return true;
  if (r.children()) return false;
  const segments = r.segments();
  if (!segments) {
    r.segment([at, r.size - at]);
    return true;
  }
  let offset = 0;
  for (const s of segments) {
    const size = s.root().size;
    if (at === offset) return true;
    if (at < offset + size) return cutAt(s, at - offset);
    offset += size;
  }
  return true;
}

/** The segment spanning exactly [start, end) of `factor`, or null. */
function spanning(factor: Factor, start: number, end: number): Factor | null {
  const r = factor.root();
  if (start === 0 && end === r.size) return r;
  let offset = 0;
  for (const s of r.segments() ?? []) {
    const size = s.root().size;
    if (start >= offset && end <= offset + size) return spanning(s, start - offset, end - offset);
    offset += size;
  }
  return null;
}

/**
 * The segment of `factor` holding the channels [start, start + length), cut out of it where
 * needed; null where the range cannot be one segment (it crosses a refined part, or several
 * segments made by earlier cuts).
 */
export function selectSegment(factor: Factor, start: number, length: number): Factor | null {
  const end = start + length;
  if (!cutAt(factor, start) || !cutAt(factor, end)) return null;
  return spanning(factor, start, end);
}
