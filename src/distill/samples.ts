/**
 * The calibration samples of a distillation run with the teacher's output for each, held as the
 * batches they came in; any list of samples is gathered into one batch of feeds.
 *
 * Text models take batches of any sequence length when they have an attention-mask input (named
 * `attention_mask` or `input_mask`): every sample is cut after its last unmasked token and every
 * gathered batch is padded, at the end of the sequence axis (axis 1), to one length — the longest
 * sample's — with zeros: token id 0 (BERT's `[PAD]`), mask 0, type 0. One length for every batch
 * keeps one training graph (its backward pass is built for the probed sequence length). Where
 * the output has the sequence axis too ([batch, tokens, width]), the loss reads the mask as row
 * weights ({@link SamplePool.rowWeights}): padding tokens count for nothing.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { f16BitsToF32 } from "../onnx/tensor.ts";
import { type Ort, type OrtTensor, ortToFloat64Array } from "../runtime/ort.ts";

type Rows = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint16Array | Uint8Array;

/** Names of attention-mask inputs (Hugging Face's `attention_mask`, TensorFlow BERT's
 * `input_mask`). */
const MASK_NAME = /(^|[^a-z0-9])(attention|input)_mask$/i;

/** Whether an input name reads as an attention mask. */
export function isMaskInput(name: string): boolean {
  return MASK_NAME.test(name);
}

interface Input {
  type: string;
  /** Whether axis 1 is the sequence axis (padded); else every sample has the same dims. */
  sequence: boolean;
  /** Dims after the batch axis, or after the sequence axis for sequence inputs. */
  inner: number[];
  innerSize: number;
  batches: Rows[];
}

/** Samples (inputs and teacher outputs) by index, in the order they were added. */
export class SamplePool {
  readonly #inputs = new Map<string, Input>();
  /** The attention-mask input, where the model has one. */
  #mask: string | undefined;
  /** The teacher's outputs: the distilled output first, then the block outputs matched; for
   * each, whether axis 1 is the sequence axis, the dims after it (or after the batch axis), and
   * the data per batch. */
  #outs: { sequence: boolean; inner: number[]; batches: Float32Array[] }[] = [];
  /** Per batch: its sequence length (0 without a mask). */
  #lengths: number[] = [];
  /** Per sample: its batch, its row in that batch and its length (up to its last unmasked
   * token; 0 without a mask). */
  #where: [number, number, number][] = [];
  /** The padded length: the longest sample's. */
  #length = 0;

  get size(): number {
    return this.#where.length;
  }

  /** The attention-mask input read to cut and pad the samples, if any. */
  get mask(): string | undefined {
    return this.#mask;
  }

  /** Whether the loss weighs the output's rows by the attention mask (padded token outputs). */
  get masked(): boolean {
    return this.isMasked(0);
  }

  /** Whether the loss on teacher output `k` (0: the distilled output) weighs its rows by the
   * attention mask. */
  isMasked(k: number): boolean {
    return this.#outs[k].sequence;
  }

  /** Dims of one sample's teacher output (the batch axis left out), padded. */
  get outputRow(): number[] {
    return this.rowOf(0);
  }

  /** Dims of one sample of teacher output `k` (0: the distilled output), padded. */
  rowOf(k: number): number[] {
    const out = this.#outs[k];
    return out.sequence ? [this.#length, ...out.inner] : out.inner;
  }

  /** Dims of one sample of every input (the batch axis left out), padded. */
  get inputRows(): Map<string, number[]> {
    return new Map(
      [...this.#inputs].map((
        [name, input],
      ) => [name, input.sequence ? [this.#length, ...input.inner] : input.inner]),
    );
  }

  /** Loss rows per sample: the teacher output's rows (1 for logits, tokens for embeddings). */
  get rowsPerSample(): number {
    return this.outputRow.slice(0, -1).reduce((a, b) => a * b, 1);
  }

  /** Adds a batch of feeds and the teacher's outputs on it (the distilled output first). */
  add(feeds: Record<string, OrtTensor>, outputs: OrtTensor | OrtTensor[]): void {
    const list = Array.isArray(outputs) ? outputs : [outputs];
    const n = Number(list[0].dims[0]);
    const batch = this.#lengths.length;
    if (batch === 0) {
      this.#mask = Object.keys(feeds).find((name) =>
        isMaskInput(name) && feeds[name].dims.length === 2
      );
    }
    const mask = this.#mask ? feeds[this.#mask] : undefined;
    if (this.#mask && !mask) {
      throw new PruneError(
        "bad-calibration",
        `input "${this.#mask}" is missing in batch ${batch + 1}`,
      );
    }
    const length = mask ? Number(mask.dims[1]) : 0;
    const shapeError = (what: string, dims: number[], before: number[], seq: boolean) =>
      new PruneError(
        "bad-calibration",
        `distillation needs every batch in one shape${seq ? " but the sequence length" : ""}: ` +
          `${what} is [${dims.join(", ")}] in batch ${batch + 1}, ` +
          `[?, ${seq ? "tokens, " : ""}${before.join(", ")}] before` +
          (this.#mask ? "" : " (batches of other lengths need an attention_mask input)"),
      );
    const split = (dims: number[], sequence: boolean) => sequence ? dims.slice(2) : dims.slice(1);
    list.forEach((output, k) => {
      const outDims = output.dims.map(Number);
      if (batch === 0) {
        const sequence = !!mask && outDims.length >= 3 && outDims[1] === length;
        this.#outs.push({ sequence, inner: split(outDims, sequence), batches: [] });
      }
      const out = this.#outs[k];
      if (
        outDims[0] !== n || (out.sequence && outDims[1] !== length) ||
        split(outDims, out.sequence).join() !== out.inner.join()
      ) {
        throw shapeError(
          k ? `the model's tensor ${k}` : "the model's output",
          outDims,
          out.inner,
          out.sequence,
        );
      }
    });
    const inputs: [Input, Rows][] = [];
    for (const [name, t] of Object.entries(feeds)) {
      const dims = t.dims.map(Number);
      let input = this.#inputs.get(name);
      if (!input) {
        if (batch > 0) {
          throw new PruneError("bad-calibration", `input "${name}" is missing in batch 1`);
        }
        const sequence = !!mask && dims.length >= 2 && dims[1] === length;
        const inner = split(dims, sequence);
        input = {
          type: t.type,
          sequence,
          inner,
          innerSize: inner.reduce((a, b) => a * b, 1),
          batches: [],
        };
        this.#inputs.set(name, input);
      }
      if (
        dims[0] !== n || (input.sequence && dims[1] !== length) ||
        split(dims, input.sequence).join() !== input.inner.join()
      ) {
        throw shapeError(`input "${name}"`, dims, input.inner, input.sequence);
      }
      inputs.push([input, t.data as Rows]);
    }
    for (const [input, data] of inputs) input.batches.push(data);
    list.forEach((output, k) =>
      this.#outs[k].batches.push(Float32Array.from(ortToFloat64Array(output)))
    );
    this.#lengths.push(length);
    const flags = mask ? ortToFloat64Array(mask) : undefined;
    for (let r = 0; r < n; r++) {
      let used = 0;
      if (flags) {
        for (let k = length - 1; k >= 0; k--) {
          if (flags[r * length + k] !== 0) {
            used = k + 1;
            break;
          }
        }
        used = Math.max(used, 1);
        this.#length = Math.max(this.#length, used);
      }
      this.#where.push([batch, r, used]);
    }
  }

  /** Feeds of the samples `idx`, in the types `types` gives per input (ONNX element types):
   * float16 inputs are widened for a float32 graph. */
  feeds(ort: Ort, idx: number[], types: Map<string, number>): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    const rows = this.inputRows;
    for (const [name, input] of this.#inputs) {
      const data0 = this.#gather(input.batches, input.innerSize, input.sequence, idx);
      const widen = input.type === "float16" && types.get(name) === 1;
      const data = widen ? halfToFloat32(data0 as Uint16Array) : data0;
      const type = widen ? "float32" : input.type;
      out[name] = new ort.Tensor(type as "float32", data as Float32Array, [
        idx.length,
        ...rows.get(name)!,
      ]);
    }
    return out;
  }

  /** The teacher's rows of output `k` (0: the distilled output) for the samples `idx`, one
   * after the other (padded rows 0). */
  teacher(idx: number[], k = 0): Float32Array {
    const out = this.#outs[k];
    const size = out.inner.reduce((a, b) => a * b, 1);
    return this.#gather(out.batches, size, out.sequence, idx) as Float32Array;
  }

  /** Per token of the samples `idx` ([samples, tokens]): 1 for a token the mask keeps, 0 for
   * padding (the row weights of a masked output). */
  rowWeights(idx: number[]): Float32Array {
    if (!this.#mask) throw new PruneError("internal", "row weights without an attention mask");
    const mask = this.#inputs.get(this.#mask)!;
    const flags = this.#gather(mask.batches, 1, true, idx);
    return Float32Array.from(flags as ArrayLike<number | bigint>, (v) => v ? 1 : 0);
  }

  #gather(batches: Rows[], inner: number, sequence: boolean, idx: number[]): Rows {
    if (idx.length === 0) throw new PruneError("internal", "no samples to gather");
    const Kind = batches[0].constructor as new (n: number) => Rows;
    const L = this.#length;
    const size = sequence ? L * inner : inner;
    const out = new Kind(idx.length * size);
    idx.forEach((i, k) => {
      const [b, r, used] = this.#where[i];
      const from = sequence ? this.#lengths[b] * inner : inner;
      const count = sequence ? used * inner : inner;
      // deno-lint-ignore no-explicit-any
      (out as any).set((batches[b] as any).subarray(r * from, r * from + count), k * size);
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
