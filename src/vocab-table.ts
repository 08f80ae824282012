// The [vocab, hidden] table of a language model (and an Embedding's), held once in the layout of
// the matrix product, in blocks of rows: read as rows it is the token embedding, multiplied it is
// the LM head. A tied model keeps one table for both. Each block is held in a WeightFormat, as a
// Linear weight (W = the block's rows, one output channel per row): the gather dequantizes the
// rows it reads, the product runs on that format's kernel.
import { positiveInt } from "./check.js";
import { runtime } from "./init.js";
import { type Ctx, Module, type Param, Resident } from "./module.js";
import { packWeight, rowReader, unpackWeight } from "./packed-weight.js";
import type { BlockParam } from "./safetensors.js";
import { type Call, SCRATCH } from "./threads.js";
import { type WeightFormat, formatFor } from "./weights.js";

/**
 * @internal A vocabulary table [rows, dim] (state dict: weight), kept as blocks of `blockRows`
 * rows (about 4 MB of float32 each: a file's F16 / BF16 table is widened a block at a time), each
 * packed for its format's product as a Linear weight (blockRows, dim) is: f32 as pack_f32_w (row r
 * of a block at group r >> 5, lane r & 31, its element c at group * dim * 32 + c * 32 + lane), f16 as
 * pack_f16, q8 as pack_q8 then one float32 scale per row, q4 as pack_q4.
 */
export class VocabTable extends Module {
  readonly rows: number;
  readonly dim: number;
  readonly blockRows: number;
  readonly #w = new Resident(this);
  #format: WeightFormat = "f32";
  // the format each loaded block is held in (all the same, unless a load failed half way)
  readonly #held: WeightFormat[] = [];

  constructor(rows: number, dim: number) {
    super();
    this.rows = positiveInt("VocabTable", "rows", rows);
    this.dim = positiveInt("VocabTable", "dim", dim);
    this.blockRows = Math.max(8, Math.floor(2 ** 20 / dim / 8) * 8);
  }

  get #blocks(): number {
    return Math.ceil(this.rows / this.blockRows);
  }

  // rows in block k
  #n(k: number): number {
    return Math.min(this.blockRows, this.rows - k * this.blockRows);
  }

  params(): Param[] {
    const [R, D] = [this.blockRows, this.dim];
    const loadBlock = (k: number, rows: Float32Array) => this.#setBlock(k, rows, formatFor(this.#format));
    const weight: BlockParam = {
      key: "weight",
      shape: [this.rows, D],
      load: (t) => {
        for (let k = 0; k < this.#blocks; k++) loadBlock(k, t.data.subarray(k * R * D, Math.min(this.rows, (k + 1) * R) * D));
      },
      blockRows: R,
      loadBlock,
    };
    return [weight];
  }

  // block k's rows (n(k), dim), float32 as torch stores them, held in `format`
  #setBlock(k: number, rows: Float32Array, format: WeightFormat): void {
    packWeight(this.#w, `rows.${k}`, rows, this.#n(k), this.dim, format);
    this.#held[k] = format;
    this.#format = format;
  }

  /**
   * How the table is held: "f32", "f16", "q8" (int8, one scale per row) or "q4" (llama.cpp's q4_0
   * blocks of 32 along a row), as a Linear weight: chosen by a load (`{ weights }`, pre-quantized
   * tensors) or `quantize()`; a load that does not say keeps the table's format.
   */
  get weights(): WeightFormat {
    return this.#format;
  }

  /** @internal whether the table is loaded */
  get hasWeight(): boolean {
    this.assertLive();
    return this.#w.get("rows.0") !== 0;
  }

  /**
   * @internal quantize()'s step: the loaded table (f32 or f16) re-held in `format` a block at a
   * time (never a float32 copy of the whole table); not loaded, the format later loads take
   */
  holdAs(format: WeightFormat): void {
    this.assertLive();
    if (this.hasWeight) {
      for (let k = 0; k < this.#blocks; k++) {
        const held = this.#held[k]!;
        if (held === format) continue;
        if (held !== "f32" && held !== "f16") throw new Error(`wasm-attention internal: a ${held} table block re-held as ${format}`);
        this.#setBlock(k, unpackWeight(this.#w.get(`rows.${k}`), held, this.#n(k), this.dim), format);
      }
    }
    this.#format = format;
  }

  /**
   * @internal out (n, dim) = rows ids (checked) of the table, dequantized (f16 widened, q8
   * q * scale, q4 q * d, each rounded once to float32), times `scale` (float32); with `add`,
   * out += them instead. `out` may be a view of WebAssembly memory: nothing is allocated.
   */
  gather(out: Float32Array, ids: Int32Array, { scale = 1, add = false }: { scale?: number; add?: boolean } = {}): void {
    const [R, D] = [this.blockRows, this.dim];
    // a reader for each block the ids touch
    const readers: ((r: number, row: Float32Array) => void)[] = [];
    const reader = (k: number) => (readers[k] ??= rowReader(this.#held[k]!, this.#w.get(`rows.${k}`), this.#n(k), D));
    const row = new Float32Array(D);
    ids.forEach((id, i) => {
      reader(Math.floor(id / R))(id % R, row);
      const o = i * D;
      if (scale !== 1) for (let c = 0; c < D; c++) row[c] = row[c]! * scale;
      if (add) for (let c = 0; c < D; c++) out[o + c]! += row[c]!;
      else out.set(row, o);
    });
  }

  /** @internal bytes of WebAssembly memory project() takes for M rows */
  projectBytes(M: number): number {
    const K4 = Math.ceil(this.dim / 4) * 4;
    return 4 * M * (this.#blocks * this.blockRows) + M * K4 + 4 * M + this.#workspace() * runtime().pool.size + 1024;
  }

  // bytes of scratch per thread: the most any block's kernel needs
  #workspace(): number {
    const { kernels: K } = runtime();
    const D = this.dim;
    const work = {
      f32: () => K.gemm_f32_workspace(),
      f16: () => K.gemm_f16_workspace(D),
      q8: () => K.gemm_q8_workspace(D),
      q4: () => K.gemm_q4_workspace(D),
    };
    return Math.max(0, ...[...new Set(this.#held)].map((f) => work[f]()));
  }

  /**
   * @internal into (M, rows) (a JavaScript array) = a (M, dim) . table^T: one product per block of
   * rows, on the kernel of its format (q8, q4: a quantized once to int8 per row, as a Linear's
   * activations), spread over the thread pool, each into its own [M, blockRows] region, then copied
   */
  project(ctx: Ctx, into: Float32Array, a: number, M: number): void {
    const { K, pool, scope, heap } = ctx;
    const [R, D, V] = [this.blockRows, this.dim, this.rows];
    const work = this.#workspace();
    const scratch = scope.alloc(work * pool.size);
    const out = scope.alloc(4 * M * V);
    const n = (k: number) => this.#n(k);
    // block k's [M, n(k)] region: at M * k * R floats, so that for one row the regions are the row itself
    const region = (k: number) => out + 4 * M * k * R;
    let aq = 0;
    let aScales = 0;
    if (this.#held.some((f) => f === "q8" || f === "q4")) {
      aq = scope.alloc(M * Math.ceil(D / 4) * 4);
      aScales = scope.alloc(4 * M);
      K.quantize_rows_i8(aq, aScales, a, M, D);
    }
    const tasks: Call[][] = [];
    for (let k = 0; k < this.#blocks; k++) {
      const w = this.#w.get(`rows.${k}`);
      const format = this.#held[k]!;
      if (format === "f32") tasks.push([["gemm_f32", region(k), a, w, 0, 0, SCRATCH, M, n(k), D, 0]]);
      else if (format === "f16") tasks.push([["gemm_f16", region(k), a, w, 0, 0, SCRATCH, M, n(k), D, 0]]);
      else if (format === "q8") tasks.push([["gemm_q8", region(k), aq, aScales, w, w + K.pack_q8_bytes(n(k), D), 0, 0, SCRATCH, M, n(k), D, 0]]);
      else tasks.push([["gemm_q4", region(k), aq, aScales, w, 0, 0, SCRATCH, M, n(k), D, 0]]);
    }
    pool.run(tasks, { base: scratch, stride: work });
    if (M === 1) into.set(heap.f32(out, V));
    else for (let k = 0; k < this.#blocks; k++) for (let m = 0; m < M; m++) into.set(heap.f32(region(k) + 4 * m * n(k), n(k)), m * V + k * R);
  }

  protected override freeOwn(): void {
    this.#w.free();
    this.#held.length = 0;
  }

  protected override get stale(): boolean {
    return this.#w.stale;
  }
}
