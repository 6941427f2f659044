/**
 * Tensor data access for ONNX `TensorProto`s, whatever their storage (raw_data or the typed
 * fields), and float16/bfloat16 conversion.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { DataType, dataTypeName, onnx, type TensorProto, toBigInt, toNumber } from "./proto.ts";

const LE = true;

function tensorLabel(t: TensorProto): string {
  return t.name ? `tensor '${t.name}'` : "unnamed tensor";
}

/**
 * The dims of a tensor as numbers (int64 Longs converted).
 *
 * @example tensorDims(initializer) // → [768, 3072]
 */
export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

/** Number of elements of a tensor (product of dims; 1 for a scalar). @example tensorNumel(t) */
export function tensorNumel(t: TensorProto): number {
  return tensorDims(t).reduce((a, b) => a * b, 1);
}

/**
 * Bytes per element of a data type; throws PruneError for STRING and sub-byte/unknown types.
 *
 * @example elementSize(DataType.FLOAT16) // → 2
 */
export function elementSize(dataType: number): number {
  switch (dataType) {
    case DataType.FLOAT:
    case DataType.INT32:
    case DataType.UINT32:
      return 4;
    case DataType.UINT8:
    case DataType.INT8:
    case DataType.BOOL:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ:
      return 1;
    case DataType.UINT16:
    case DataType.INT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return 2;
    case DataType.INT64:
    case DataType.UINT64:
    case DataType.DOUBLE:
    case DataType.COMPLEX64:
      return 8;
    case DataType.COMPLEX128:
      return 16;
    default:
      throw new PruneError(
        "unsupported-dtype",
        `data type ${
          dataTypeName(dataType)
        } has no fixed byte size (strings and 4-bit types are not supported)`,
      );
  }
}

/**
 * Whether a data type is a real floating-point type (float, float16, bfloat16, double).
 *
 * @example isFloatType(DataType.BFLOAT16) // → true
 */
export function isFloatType(dataType: number): boolean {
  return dataType === DataType.FLOAT || dataType === DataType.FLOAT16 ||
    dataType === DataType.BFLOAT16 || dataType === DataType.DOUBLE;
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/**
 * IEEE 754 binary16 bits → number (exact).
 *
 * @example f16BitsToF32(0x3c00) // → 1
 */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) {
    if (mant === 0) return sign * Infinity;
    // Keep the NaN payload and sign in the float32 result.
    u32buf[0] = ((bits & 0x8000) << 16) | 0x7f800000 | (mant << 13);
    return f32buf[0];
  }
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * number → IEEE 754 binary16 bits, rounding (via float32) to nearest, ties to even. Overflow gives
 * ±Infinity; NaN stays NaN (quiet, top payload bits kept).
 *
 * @example f32ToF16Bits(65504) // → 0x7bff
 */
export function f32ToF16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal (or float32 subnormal)
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 2 ** (shift - 1);
    let r = Math.floor(mant / 2 ** shift);
    const rem = mant - r * 2 ** shift;
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++; // may carry into exp / to Infinity
  return sign | r;
}

/** bfloat16 bits → number (exact). @example bf16BitsToF32(0x3f80) // → 1 */
export function bf16BitsToF32(bits: number): number {
  u32buf[0] = (bits & 0xffff) << 16;
  return f32buf[0];
}

/**
 * number → bfloat16 bits (via float32), round to nearest, ties to even; NaN stays a quiet NaN.
 *
 * @example f32ToBf16Bits(1) // → 0x3f80
 */
export function f32ToBf16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40;
  const lsb = (x >>> 16) & 1;
  return Math.floor((x + 0x7fff + lsb) / 65536) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// Raw bytes

function checkSize(t: TensorProto, bytes: Uint8Array, size: number): Uint8Array {
  const n = tensorNumel(t);
  if (bytes.length !== n * size) {
    throw new PruneError(
      "bad-tensor",
      `${tensorLabel(t)}: has ${bytes.length} data bytes, but dims [${
        tensorDims(t).join(", ")
      }] of ${dataTypeName(t.dataType ?? 0)} need ${n * size}`,
    );
  }
  return bytes;
}

/**
 * Little-endian element bytes of a tensor, whatever its storage: raw_data (returned as a view),
 * or float_data / int32_data (with ONNX's packing of int8/int16/uint8/uint16/bool/float16/bfloat16
 * and float8 into int32s) / int64_data / double_data / uint64_data (copied).
 * Throws PruneError for external data that has not been loaded, strings, or a size mismatch.
 *
 * @example const bytes = tensorRawBytes(initializer);
 */
export function tensorRawBytes(t: TensorProto): Uint8Array {
  const dt = t.dataType ?? 0;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new PruneError(
      "external-data",
      `${tensorLabel(t)}: data is stored externally and was not loaded (use readModelFile)`,
    );
  }
  const size = elementSize(dt);
  const raw = t.rawData; // once: it may be read from a file when asked for
  if (raw && raw.length > 0) return checkSize(t, raw, size);
  const n = tensorNumel(t);
  const out = new Uint8Array(n * size);
  if (n === 0) return out;
  const view = new DataView(out.buffer);
  const need = (arr: ArrayLike<unknown> | null | undefined, field: string, count = n) => {
    if (!arr || arr.length !== count) {
      throw new PruneError(
        "bad-tensor",
        `${tensorLabel(t)}: expected ${count} values in ${field} for dims [${
          tensorDims(t).join(", ")
        }], found ${arr?.length ?? 0}`,
      );
    }
  };
  switch (dt) {
    case DataType.FLOAT:
    case DataType.COMPLEX64: {
      const src = t.floatData;
      need(src, "float_data", dt === DataType.COMPLEX64 ? 2 * n : n);
      for (let i = 0; i < src!.length; i++) view.setFloat32(4 * i, src![i], LE);
      return out;
    }
    case DataType.DOUBLE:
    case DataType.COMPLEX128: {
      const src = t.doubleData;
      need(src, "double_data", dt === DataType.COMPLEX128 ? 2 * n : n);
      for (let i = 0; i < src!.length; i++) view.setFloat64(8 * i, src![i], LE);
      return out;
    }
    case DataType.INT64: {
      const src = t.int64Data;
      need(src, "int64_data");
      for (let i = 0; i < n; i++) view.setBigInt64(8 * i, toBigInt(src![i]), LE);
      return out;
    }
    case DataType.UINT64:
    case DataType.UINT32: {
      const src = t.uint64Data;
      need(src, "uint64_data");
      for (let i = 0; i < n; i++) {
        const v = BigInt.asUintN(64, toBigInt(src![i]));
        if (dt === DataType.UINT64) view.setBigUint64(8 * i, v, LE);
        else view.setUint32(4 * i, Number(BigInt.asUintN(32, v)), LE);
      }
      return out;
    }
    case DataType.INT32:
    case DataType.INT16:
    case DataType.UINT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.BOOL:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ: {
      const src = t.int32Data;
      need(src, "int32_data");
      for (let i = 0; i < n; i++) {
        const v = src![i] | 0;
        if (size === 4) view.setInt32(4 * i, v, LE);
        else if (size === 2) view.setUint16(2 * i, v & 0xffff, LE);
        else out[i] = dt === DataType.BOOL ? (v !== 0 ? 1 : 0) : v & 0xff;
      }
      return out;
    }
    default:
      throw new PruneError(
        "unsupported-dtype",
        `${tensorLabel(t)}: cannot read data of type ${dataTypeName(dt)}`,
      );
  }
}

/**
 * Stores element bytes into raw_data, clears the typed data fields (and any external-data
 * reference), and sets dims. Keeps name, data_type, doc_string.
 *
 * @example setTensorRawBytes(t, float32ToTensorBytes(values, t.dataType!), [64, 768]);
 */
export function setTensorRawBytes(t: TensorProto, bytes: Uint8Array, dims: number[]): void {
  const dt = t.dataType ?? 0;
  const n = dims.reduce((a, b) => a * b, 1);
  const size = elementSize(dt);
  if (bytes.length !== n * size) {
    throw new PruneError(
      "bad-tensor",
      `${tensorLabel(t)}: ${bytes.length} bytes do not match dims [${dims.join(", ")}] of ${
        dataTypeName(dt)
      } (${n * size} bytes)`,
    );
  }
  t.dims = dims.slice();
  t.rawData = bytes;
  t.floatData = [];
  t.int32Data = [];
  t.int64Data = [];
  t.doubleData = [];
  t.uint64Data = [];
  t.stringData = [];
  t.externalData = [];
  delete t.dataLocation;
  delete t.segment;
}

/**
 * Float tensor (float, float16, bfloat16, double) → Float32Array of its values (a copy).
 *
 * @example const w = tensorToFloat32(weight); // Float32Array(768 * 3072)
 */
export function tensorToFloat32(t: TensorProto): Float32Array {
  const dt = t.dataType ?? 0;
  if (!isFloatType(dt)) {
    throw new PruneError(
      "unsupported-dtype",
      `${tensorLabel(t)}: expected a float tensor, got ${dataTypeName(dt)}`,
    );
  }
  const bytes = tensorRawBytes(t);
  const n = bytes.length / elementSize(dt);
  if (dt === DataType.FLOAT) return new Float32Array(new Uint8Array(bytes).buffer);
  const out = new Float32Array(n);
  if (dt === DataType.DOUBLE) {
    const src = new Float64Array(new Uint8Array(bytes).buffer);
    for (let i = 0; i < n; i++) out[i] = src[i];
    return out;
  }
  const src = new Uint16Array(new Uint8Array(bytes).buffer);
  if (dt === DataType.FLOAT16) {
    for (let i = 0; i < n; i++) out[i] = f16BitsToF32(src[i]);
  } else {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = src[i] << 16;
  }
  return out;
}

/**
 * Float32 values → element bytes of a float data type (float16/bfloat16 rounded to nearest even).
 *
 * @example makeTensor("w", DataType.FLOAT16, [2], float32ToTensorBytes(new Float32Array([1, 2]), DataType.FLOAT16))
 */
export function float32ToTensorBytes(values: Float32Array, dataType: number): Uint8Array {
  const n = values.length;
  switch (dataType) {
    case DataType.FLOAT:
      return new Uint8Array(values.slice().buffer);
    case DataType.DOUBLE:
      return new Uint8Array(Float64Array.from(values).buffer);
    case DataType.FLOAT16: {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(values[i]);
      return new Uint8Array(out.buffer);
    }
    case DataType.BFLOAT16: {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToBf16Bits(values[i]);
      return new Uint8Array(out.buffer);
    }
    default:
      throw new PruneError(
        "unsupported-dtype",
        `cannot store float values as ${dataTypeName(dataType)}`,
      );
  }
}

/**
 * Integer (or bool/float) tensor → plain numbers, e.g. for shape constants. int64 values beyond
 * ±2^53 throw.
 *
 * @example tensorToNumbers(shapeConst) // → [1, 197, 12, 64]
 */
export function tensorToNumbers(t: TensorProto): number[] {
  const dt = t.dataType ?? 0;
  const bytes = tensorRawBytes(t);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / elementSize(dt);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    switch (dt) {
      case DataType.INT64:
        out[i] = toNumber(view.getBigInt64(8 * i, LE));
        break;
      case DataType.UINT64:
        out[i] = toNumber(view.getBigUint64(8 * i, LE));
        break;
      case DataType.INT32:
        out[i] = view.getInt32(4 * i, LE);
        break;
      case DataType.UINT32:
        out[i] = view.getUint32(4 * i, LE);
        break;
      case DataType.INT16:
        out[i] = view.getInt16(2 * i, LE);
        break;
      case DataType.UINT16:
        out[i] = view.getUint16(2 * i, LE);
        break;
      case DataType.INT8:
        out[i] = view.getInt8(i);
        break;
      case DataType.UINT8:
      case DataType.BOOL:
        out[i] = view.getUint8(i);
        break;
      case DataType.FLOAT:
        out[i] = view.getFloat32(4 * i, LE);
        break;
      case DataType.DOUBLE:
        out[i] = view.getFloat64(8 * i, LE);
        break;
      case DataType.FLOAT16:
        out[i] = f16BitsToF32(view.getUint16(2 * i, LE));
        break;
      case DataType.BFLOAT16:
        out[i] = bf16BitsToF32(view.getUint16(2 * i, LE));
        break;
      default:
        throw new PruneError(
          "unsupported-dtype",
          `${tensorLabel(t)}: cannot convert ${dataTypeName(dt)} to numbers`,
        );
    }
  }
  return out;
}

/**
 * Numbers → element bytes of an integer (or float/bool) data type, e.g. for int64 shape tensors.
 *
 * @example makeTensor("shape", DataType.INT64, [2], numbersToTensorBytes([1, -1], DataType.INT64))
 */
export function numbersToTensorBytes(values: number[], dataType: number): Uint8Array {
  const size = elementSize(dataType);
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    const int = () => {
      if (!Number.isInteger(v)) {
        throw new PruneError(
          "bad-value",
          `value ${v} is not an integer (data type ${dataTypeName(dataType)})`,
        );
      }
      return v;
    };
    switch (dataType) {
      case DataType.INT64:
        view.setBigInt64(8 * i, BigInt(int()), LE);
        break;
      case DataType.UINT64:
        view.setBigUint64(8 * i, BigInt.asUintN(64, BigInt(int())), LE);
        break;
      case DataType.INT32:
      case DataType.UINT32:
        view.setInt32(4 * i, int() | 0, LE);
        break;
      case DataType.INT16:
      case DataType.UINT16:
        view.setUint16(2 * i, int() & 0xffff, LE);
        break;
      case DataType.INT8:
      case DataType.UINT8:
        out[i] = int() & 0xff;
        break;
      case DataType.BOOL:
        out[i] = v ? 1 : 0;
        break;
      case DataType.FLOAT:
        view.setFloat32(4 * i, v, LE);
        break;
      case DataType.DOUBLE:
        view.setFloat64(8 * i, v, LE);
        break;
      case DataType.FLOAT16:
        view.setUint16(2 * i, f32ToF16Bits(v), LE);
        break;
      case DataType.BFLOAT16:
        view.setUint16(2 * i, f32ToBf16Bits(v), LE);
        break;
      default:
        throw new PruneError(
          "unsupported-dtype",
          `cannot store numbers as ${dataTypeName(dataType)}`,
        );
    }
  });
  return out;
}

/**
 * Creates a TensorProto with raw_data storage (the bytes are used as-is, not copied).
 *
 * @example makeTensor("axes", DataType.INT64, [1], numbersToTensorBytes([0], DataType.INT64))
 */
export function makeTensor(
  name: string,
  dataType: number,
  dims: number[],
  bytes: Uint8Array,
): TensorProto {
  const t = onnx.TensorProto.create({ name, dataType });
  setTensorRawBytes(t, bytes, dims);
  return t;
}
