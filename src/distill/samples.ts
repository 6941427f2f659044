/**
 * The calibration samples of a distillation run with the teacher's output for each, held as the
 * batches they came in; any list of samples is gathered into one batch of feeds.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { f16BitsToF32 } from "../onnx/tensor.ts";
import { type Ort, type OrtTensor, ortToFloat64Array } from "../runtime/ort.ts";

type Rows = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint16Array | Uint8Array;

interface Input {
  type: string;
  /** Dims of one sample (the batch axis left out). */
  row: number[];
  size: number;
  batches: Rows[];
}

/** Samples (inputs and teacher outputs) by index, in the order they were added. */
export class SamplePool {
  readonly inputs = new Map<string, Input>();
  /** Dims of one sample's teacher output (the batch axis left out). */
  outputRow: number[] = [];
  #outputs: Float32Array[] = [];
  /** Per sample: its batch and its row in that batch. */
  #where: [number, number][] = [];

  get size(): number {
    return this.#where.length;
  }

  /** Loss rows per sample: the teacher output's rows (1 for logits, tokens for embeddings). */
  get rowsPerSample(): number {
    return this.outputRow.slice(0, -1).reduce((a, b) => a * b, 1);
  }

  /** Adds a batch of feeds and the teacher's output on it. */
  add(feeds: Record<string, OrtTensor>, output: OrtTensor): void {
    const n = Number(output.dims[0]);
    const batch = this.#outputs.length;
    const row = output.dims.slice(1).map(Number);
    if (batch === 0) this.outputRow = row;
    else if (row.join() !== this.outputRow.join()) {
      throw new PruneError(
        "bad-calibration",
        `distillation needs every batch in one shape: the model's output is ` +
          `[${output.dims.join(", ")}] on batch ${batch + 1}, [?, ${this.outputRow.join(", ")}] ` +
          `before`,
      );
    }
    this.#outputs.push(Float32Array.from(ortToFloat64Array(output)));
    for (const [name, t] of Object.entries(feeds)) {
      const dims = t.dims.map(Number);
      let input = this.inputs.get(name);
      if (!input) {
        if (batch > 0) {
          throw new PruneError("bad-calibration", `input "${name}" is missing in batch 1`);
        }
        const row = dims.slice(1);
        input = { type: t.type, row, size: row.reduce((a, b) => a * b, 1), batches: [] };
        this.inputs.set(name, input);
      }
      if (dims[0] !== n || dims.slice(1).join() !== input.row.join()) {
        throw new PruneError(
          "bad-calibration",
          `distillation needs every batch in one shape: input "${name}" is [${dims.join(", ")}] ` +
            `in batch ${batch + 1}, [?, ${input.row.join(", ")}] before`,
        );
      }
      input.batches.push(t.data as Rows);
    }
    for (let r = 0; r < n; r++) this.#where.push([batch, r]);
  }

  /** Feeds of the samples `idx`, in the types `types` gives per input (ONNX element types):
   * float16 inputs are widened for a float32 graph. */
  feeds(ort: Ort, idx: number[], types: Map<string, number>): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    for (const [name, input] of this.inputs) {
      const rows = this.#gather(input.batches, input.size, idx);
      const widen = input.type === "float16" && types.get(name) === 1;
      const data = widen ? halfToFloat32(rows as Uint16Array) : rows;
      const type = widen ? "float32" : input.type;
      out[name] = new ort.Tensor(type as "float32", data as Float32Array, [
        idx.length,
        ...input.row,
      ]);
    }
    return out;
  }

  /** The teacher's output rows of the samples `idx`, one after the other. */
  teacher(idx: number[]): Float32Array {
    const size = this.outputRow.reduce((a, b) => a * b, 1);
    return this.#gather(this.#outputs, size, idx) as Float32Array;
  }

  #gather(batches: Rows[], size: number, idx: number[]): Rows {
    if (idx.length === 0) throw new PruneError("internal", "no samples to gather");
    const Kind = batches[0].constructor as new (n: number) => Rows;
    const out = new Kind(idx.length * size);
    idx.forEach((i, k) => {
      const [b, r] = this.#where[i];
      // deno-lint-ignore no-explicit-any
      (out as any).set((batches[b] as any).subarray(r * size, (r + 1) * size), k * size);
    });
    return out;
  }
}

/** float16 data as float32: raw bits (Uint16Array) or, where onnxruntime made one, values
 * (Float16Array). */
export function halfToFloat32(data: ArrayLike<number>): Float32Array {
  return data instanceof Uint16Array
    ? Float32Array.from(data, f16BitsToF32)
    : Float32Array.from(data);
}
