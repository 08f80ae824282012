import { positiveInt } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Ctx, Module, type Param } from "./module.js";
import { type Tensor, checkOptions, checkShape, describe, fmt, honest, size, typedKind } from "./tensor.js";
import { VocabTable } from "./vocab-table.js";
import type { WeightFormat } from "./weights.js";

export interface EmbeddingOptions {
  numEmbeddings: number;
  embeddingDim: number;
  /** As torch: -numEmbeddings <= paddingIdx < numEmbeddings (negative counts from the end). */
  paddingIdx?: number;
}

/** Token ids: one sequence (`Int32Array | number[]`, shape [L]) or `{ data: Int32Array, shape }`. */
export type TokenIds = Int32Array | readonly number[] | { data: Int32Array; shape: readonly number[] };

/**
 * torch.nn.Embedding: a table of numEmbeddings rows of embeddingDim; `forward(ids)` gathers the
 * rows of the ids. State dict: weight [numEmbeddings, embeddingDim], kept in WebAssembly memory in
 * blocks of rows (a file's F16 / BF16 table is widened a block at a time), held as float32 or, as
 * a Linear weight, half ("f16"), int8 with one scale per row ("q8") or 4-bit blocks ("q4"): see
 * `weights`. `paddingIdx` is kept and checked only: at inference the weight is used as loaded
 * (torch zeroes that row at init and skips its gradient).
 */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | null;
  readonly #table: VocabTable;

  constructor(options: EmbeddingOptions) {
    super();
    const { numEmbeddings, embeddingDim, paddingIdx } = checkOptions("Embedding options", options, ["numEmbeddings", "embeddingDim", "paddingIdx"]);
    this.numEmbeddings = positiveInt("Embedding", "numEmbeddings", numEmbeddings);
    this.embeddingDim = positiveInt("Embedding", "embeddingDim", embeddingDim);
    if (
      paddingIdx !== undefined &&
      (typeof paddingIdx !== "number" || !Number.isInteger(paddingIdx) || paddingIdx < -this.numEmbeddings || paddingIdx >= this.numEmbeddings)
    ) {
      throw new ArgumentError(
        `Embedding paddingIdx: expected an integer in [-${this.numEmbeddings}, ${this.numEmbeddings}), got ${describe(paddingIdx)}`,
      );
    }
    this.paddingIdx = paddingIdx === undefined ? null : paddingIdx < 0 ? paddingIdx + this.numEmbeddings : paddingIdx;
    this.#table = new VocabTable(this.numEmbeddings, this.embeddingDim);
  }

  protected override children(): Module[] {
    return [this.#table];
  }

  params(): Param[] {
    return this.#table.params();
  }

  /**
   * How the table is held: "f32", "f16", "q8" (int8, one scale per row: `scale = max|row| / 127`)
   * or "q4" (llama.cpp's q4_0, blocks of 32 along a row), by the rules of Linear's formats. A load
   * chooses it (`loadStateDict(dict, prefix, { weights })`, a pre-quantized I8 weight with its
   * scales), or `quantize()`; a load that does not say keeps the format the table has. `forward`
   * returns the rows dequantized (q * scale, rounded once to float32).
   */
  get weights(): WeightFormat {
    return this.#table.weights;
  }

  /** ids [...shape] (integers in [0, numEmbeddings)) -> [...shape, embeddingDim], a new tensor. */
  forward(ids: TokenIds): Tensor {
    const { data, shape } = checkIds("Embedding.forward ids", ids, this.numEmbeddings);
    this.assertReady();
    const out = new Float32Array(data.length * this.embeddingDim);
    this.#table.gather(out, data);
    return { data: out, shape: [...shape, this.embeddingDim] };
  }

  /** @internal out (n, embeddingDim) = rows ids (checked) of the table, in WebAssembly memory */
  run(ctx: Ctx, out: number, ids: Int32Array): void {
    this.#table.gather(ctx.heap.f32(out, ids.length * this.embeddingDim), ids);
  }

  /** @internal out (n, embeddingDim) += rows ids (checked) of the table, in WebAssembly memory */
  add(ctx: Ctx, out: number, ids: Int32Array): void {
    this.#table.gather(ctx.heap.f32(out, ids.length * this.embeddingDim), ids, { add: true });
  }
}

/**
 * @internal Reads token ids once: an `Int32Array` or `number[]` is one sequence [L]; `{ data:
 * Int32Array, shape }` any shape. Every id must be an integer in [0, limit): the first that is not
 * is an ArgumentError naming it and its position. `rank` asks for one shape rank ({ data, shape } only).
 */
export function checkIds(name: string, ids: unknown, limit: number, rank?: number): { data: Int32Array; shape: readonly number[]; batched: boolean } {
  if (Array.isArray(ids)) {
    const n = ids.length;
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const x: unknown = ids[i];
      if (typeof x !== "number" || !Number.isInteger(x) || x < 0 || x >= limit) throw badId(name, x, [i], limit);
      data[i] = x;
    }
    return { data, shape: [n], batched: false };
  }
  let data: Int32Array;
  let shape: readonly number[];
  let batched = false;
  if (typedKind(ids) === "Int32Array") {
    data = honest<Int32Array>(ids);
    shape = [data.length];
  } else if (ids !== null && typeof ids === "object" && "data" in ids && "shape" in ids) {
    const t = ids as { data: unknown; shape: unknown };
    const d = t.data;
    if (typedKind(d) !== "Int32Array") throw new ArgumentError(`${name}: expected data of type Int32Array, got ${describe(d)}`);
    [data, shape, batched] = [honest<Int32Array>(d), checkShape(`${name}.shape`, t.shape), true];
    if (data.length !== size(shape)) throw new ShapeError(`${name}.data: expected ${size(shape)} elements (shape ${fmt(shape)}), got ${data.length}`);
    if (rank !== undefined && shape.length !== rank) throw new ShapeError(`${name}: expected ${rank} dimensions ([B, L]), got ${fmt(shape)}`);
  } else {
    throw new ArgumentError(`${name}: expected an Int32Array, an array of numbers or { data: Int32Array, shape }, got ${describe(ids)}`);
  }
  for (let i = 0; i < data.length; i++) {
    const id = data[i]!;
    if (id < 0 || id >= limit) throw badId(name, id, unflat(i, shape), limit);
  }
  return { data, shape, batched };
}

function badId(name: string, id: unknown, at: number[], limit: number): ArgumentError {
  return new ArgumentError(`${name}[${at.join(", ")}]: expected an integer in [0, ${limit}), got ${describe(id)}`);
}

// flat index -> coordinates in shape
function unflat(i: number, shape: readonly number[]): number[] {
  const at = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    at[d] = i % n;
    i = Math.floor(i / n);
  }
  return at;
}
