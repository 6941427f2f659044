/**
 * Quantized weights: how a stored integer tensor maps to the real values a layer computes with,
 * value = scale × (q − zero point), with one scale (and zero point) per tensor, per index of one
 * axis, or — for onnxruntime's MatMulNBits — per block of `blockSize` input channels of each
 * output row, the q values packed `bits` to a byte.
 *
 * Scores are taken from these real values (never the raw integers), and masking a channel sets
 * its q values to their zero point, which dequantizes to exactly 0.
 *
 * @module
 */
import type { ConstantRef, NodeProto, TensorProto } from "../graph/graph.ts";
import {
  numbersToTensorBytes,
  tensorDims,
  tensorRawBytes,
  tensorToFloat32,
  tensorToNumbers,
} from "../onnx/tensor.ts";

/** MatMulNBits' layout: weight [N, blocks, blob] of `bits`-bit values along K. */
export interface PackedLayout {
  node: NodeProto;
  bits: number;
  blockSize: number;
  /** Input channels (K) and output channels (N) of the layer. */
  k: number;
  n: number;
  scales: ConstantRef;
  /** Packed uint8 zero points, one per block; absent: the middle of the range. */
  zeroPoints?: ConstantRef;
}

/** How a quantized constant dequantizes. */
export interface Dequantization {
  /** One value, or one per index of `axis`; absent: 1. */
  scale?: ConstantRef;
  /** One value, or one per index of `axis`; absent: 0. */
  zeroPoint?: ConstantRef;
  /** Axis of the stored tensor the per-channel scale or zero point runs along (null: none). */
  axis: number | null;
  /** Block-wise packed weight (MatMulNBits). */
  packed?: PackedLayout;
}

function perIndex(ref: ConstantRef | undefined, fallback: number): (i: number) => number {
  if (!ref) return () => fallback;
  const values = tensorToNumbers(ref.tensor);
  return values.length === 1 ? () => values[0] : (i) => values[i];
}

/** Index along `axis` of each element, as a function of the flat index. */
function axisIndex(dims: number[], axis: number | null): (i: number) => number {
  if (axis === null) return () => 0;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  return (i) => Math.floor(i / inner) % dims[axis];
}

/** q values of a packed MatMulNBits weight as a dense [N, blocks·blockSize] array. */
export function unpack(tensor: TensorProto, layout: PackedLayout): Uint8Array {
  const [n, blocks, blob] = tensorDims(tensor);
  const bytes = tensorRawBytes(tensor);
  const { bits, blockSize } = layout;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(n * blocks * blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const base = (r * blocks + b) * blob;
      for (let j = 0; j < blockSize; j++) {
        const bit = j * bits;
        out[(r * blocks + b) * blockSize + j] = (bytes[base + (bit >> 3)] >> (bit & 7)) & mask;
      }
    }
  }
  return out;
}

/** Dense q values [N, blocks·blockSize] → packed [N, blocks, blob] bytes. */
export function pack(q: Uint8Array, n: number, blocks: number, layout: PackedLayout): Uint8Array {
  const { bits, blockSize } = layout;
  const blob = Math.ceil((blockSize * bits) / 8);
  const out = new Uint8Array(n * blocks * blob);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const base = (r * blocks + b) * blob;
      for (let j = 0; j < blockSize; j++) {
        const bit = j * bits;
        out[base + (bit >> 3)] |= q[(r * blocks + b) * blockSize + j] << (bit & 7);
      }
    }
  }
  return out;
}

/** Zero points of a packed layout, one per (row, block) — [N·blocks]. */
export function packedZeroPoints(layout: PackedLayout, blocks: number): Uint8Array {
  const out = new Uint8Array(layout.n * blocks).fill(1 << (layout.bits - 1));
  if (!layout.zeroPoints) return out;
  const bytes = tensorRawBytes(layout.zeroPoints.tensor);
  const perRow = Math.ceil((blocks * layout.bits) / 8);
  const mask = (1 << layout.bits) - 1;
  for (let r = 0; r < layout.n; r++) {
    for (let b = 0; b < blocks; b++) {
      const bit = b * layout.bits;
      out[r * blocks + b] = (bytes[r * perRow + (bit >> 3)] >> (bit & 7)) & mask;
    }
  }
  return out;
}

/** Packs zero points [N·blocks] the way MatMulNBits stores them (rows padded to bytes). */
export function packZeroPoints(zp: Uint8Array, n: number, blocks: number, bits: number) {
  const perRow = Math.ceil((blocks * bits) / 8);
  const out = new Uint8Array(n * perRow);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const bit = b * bits;
      out[r * perRow + (bit >> 3)] |= zp[r * blocks + b] << (bit & 7);
    }
  }
  return out;
}

/**
 * Real values of a quantized constant, with their dims: the stored dims, or [N, K] for a packed
 * MatMulNBits weight (its axis 0 indexes output, axis 1 input channels).
 */
export function dequantize(
  tensor: TensorProto,
  q: Dequantization,
): { data: Float32Array; dims: number[] } {
  const p = q.packed;
  if (p) {
    const [, blocks] = tensorDims(tensor);
    const values = unpack(tensor, p);
    const scales = tensorToFloat32(p.scales.tensor);
    const zp = packedZeroPoints(p, blocks);
    const data = new Float32Array(p.n * p.k);
    for (let r = 0; r < p.n; r++) {
      for (let k = 0; k < p.k; k++) {
        const b = Math.floor(k / p.blockSize);
        const v = values[(r * blocks) * p.blockSize + k];
        data[r * p.k + k] = scales[r * blocks + b] * (v - zp[r * blocks + b]);
      }
    }
    return { data, dims: [p.n, p.k] };
  }
  const dims = tensorDims(tensor);
  const values = tensorToNumbers(tensor);
  const scale = perIndex(q.scale, 1), zero = perIndex(q.zeroPoint, 0);
  const at = axisIndex(dims, q.axis);
  const data = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const c = at(i);
    data[i] = scale(c) * (values[i] - zero(c));
  }
  return { data, dims };
}

/**
 * Bytes of a tensor of the quantized constant's type and dims in which every element is its
 * zero point: what a masked element is set to (it dequantizes to 0).
 */
export function zeroPointBytes(tensor: TensorProto, q: Dequantization): Uint8Array {
  const dims = tensorDims(tensor);
  const n = dims.reduce((a, b) => a * b, 1);
  const zero = perIndex(q.zeroPoint, 0);
  const at = axisIndex(dims, q.axis);
  return numbersToTensorBytes(Array.from({ length: n }, (_, i) => zero(at(i))), tensor.dataType!);
}
