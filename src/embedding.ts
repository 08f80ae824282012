import { positiveInt } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import { type Ctx, Module, type Param, Resident } from "./module.js";
import type { BlockParam } from "./safetensors.js";
import { type Tensor, checkOptions, checkShape, describe, fmt, honest, size, typedKind } from "./tensor.js";

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
 * blocks of rows (a file's F16 / BF16 table is widened a block at a time). `paddingIdx` is kept and
 * checked only: at inference the weight is used as loaded (torch zeroes that row at init and
 * skips its gradient).
 */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly paddingIdx: number | null;
  readonly #w = new Resident(this);

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
  }

  params(): Param[] {
    const [num, D] = [this.numEmbeddings, this.embeddingDim];
    const R = this.#blockRows;
    const loadBlock = (k: number, rows: Float32Array) => this.#w.set(`rows.${k}`, rows);
    const weight: BlockParam = {
      key: "weight",
      shape: [num, D],
      load: (t) => {
        for (let k = 0; k * R < num; k++) loadBlock(k, t.data.subarray(k * R * D, Math.min(num, (k + 1) * R) * D));
      },
      blockRows: R,
      loadBlock,
    };
    return [weight];
  }

  /** ids [...shape] (integers in [0, numEmbeddings)) -> [...shape, embeddingDim], a new tensor. */
  forward(ids: TokenIds): Tensor {
    const { data, shape } = checkIds("Embedding.forward ids", ids, this.numEmbeddings);
    this.assertReady();
    const D = this.embeddingDim;
    const out = new Float32Array(data.length * D);
    const mem = new Float32Array(runtime().heap.memory.buffer);
    const rows = this.#rows();
    data.forEach((id, i) => out.set(mem.subarray(rows(id), rows(id) + D), i * D));
    return { data: out, shape: [...shape, D] };
  }

  /** @internal out (n, embeddingDim) = rows ids (checked) of the table, in WebAssembly memory */
  run(ctx: Ctx, out: number, ids: Int32Array): void {
    const D = this.embeddingDim;
    const mem = new Float32Array(ctx.heap.memory.buffer);
    const rows = this.#rows();
    ids.forEach((id, i) => mem.copyWithin(out / 4 + i * D, rows(id), rows(id) + D));
  }

  /** @internal out (n, embeddingDim) += rows ids (checked) of the table, in WebAssembly memory */
  add(ctx: Ctx, out: number, ids: Int32Array): void {
    const D = this.embeddingDim;
    const mem = new Float32Array(ctx.heap.memory.buffer);
    const rows = this.#rows();
    ids.forEach((id, i) => {
      const [o, w] = [out / 4 + i * D, rows(id)];
      for (let j = 0; j < D; j++) mem[o + j]! += mem[w + j]!;
    });
  }

  // the table is kept in blocks of rows (about 4 MB each), so that a file's F16 table widens a
  // block at a time; rows per block
  get #blockRows(): number {
    return Math.max(1, Math.floor(2 ** 20 / this.embeddingDim));
  }

  // id -> the float index of its row in WebAssembly memory
  #rows(): (id: number) => number {
    const R = this.#blockRows;
    const blocks = Array.from({ length: Math.ceil(this.numEmbeddings / R) }, (_, k) => this.#w.get(`rows.${k}`) / 4);
    return (id) => blocks[Math.floor(id / R)]! + (id % R) * this.embeddingDim;
  }

  protected override freeOwn(): void {
    this.#w.free();
  }

  protected override get stale(): boolean {
    return this.#w.stale;
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
