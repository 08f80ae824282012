import { positiveInt } from "./check.js";
// The [vocab, hidden] table of a language model, held once in the layout of the matrix product
// (pack_f32_t panels), in blocks of rows: read as rows it is the token embedding, multiplied it is
// the LM head. A tied model keeps one table for both.
import { type Ctx, Module, type Param, Resident } from "./module.js";
import type { BlockParam } from "./safetensors.js";
import { type Call, SCRATCH } from "./threads.js";

/**
 * @internal A vocabulary table [rows, dim] (state dict: weight), kept as blocks of `blockRows`
 * rows (about 4 MB each: a file's F16 / BF16 table is widened a block at a time), each packed for
 * gemm_f32: row r of a block is at panel r >> 3, lane r & 7, its element c at
 * panel * dim * 8 + c * 8 + lane.
 */
export class VocabTable extends Module {
  readonly rows: number;
  readonly dim: number;
  readonly blockRows: number;
  readonly #w = new Resident(this);

  constructor(rows: number, dim: number) {
    super();
    this.rows = positiveInt("VocabTable", "rows", rows);
    this.dim = positiveInt("VocabTable", "dim", dim);
    this.blockRows = Math.max(8, Math.floor(2 ** 20 / dim / 8) * 8);
  }

  get #blocks(): number {
    return Math.ceil(this.rows / this.blockRows);
  }

  params(): Param[] {
    const [R, D] = [this.blockRows, this.dim];
    const loadBlock = (k: number, rows: Float32Array) => this.#w.set(`rows.${k}`, rows, { N: rows.length / D, K: D });
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

  /** @internal out (n, dim) = rows ids (checked) of the table, times `scale` (float32) */
  gather(ctx: Ctx, out: number, ids: Int32Array, scale = 1): void {
    const [R, D] = [this.blockRows, this.dim];
    const mem = new Float32Array(ctx.heap.memory.buffer);
    const bases = Array.from({ length: this.#blocks }, (_, k) => this.#w.get(`rows.${k}`) / 4);
    ids.forEach((id, i) => {
      const r = id % R;
      const src = bases[Math.floor(id / R)]! + (r >> 3) * D * 8 + (r & 7);
      const dst = out / 4 + i * D;
      if (scale === 1) for (let c = 0; c < D; c++) mem[dst + c] = mem[src + 8 * c]!;
      else for (let c = 0; c < D; c++) mem[dst + c] = mem[src + 8 * c]! * scale;
    });
  }

  /** @internal bytes of WebAssembly memory project() takes for M rows */
  projectBytes(M: number): number {
    return 4 * M * (this.#blocks * this.blockRows) + 1024;
  }

  /**
   * @internal into (M, rows) (a JavaScript array) = a (M, dim) . table^T: one product per block of
   * rows, spread over the thread pool, each into its own [M, blockRows] region, then copied
   */
  project(ctx: Ctx, into: Float32Array, a: number, M: number): void {
    const { K, pool, scope, heap } = ctx;
    const [R, D, V] = [this.blockRows, this.dim, this.rows];
    const work = K.gemm_f32_workspace();
    const scratch = scope.alloc(work * pool.size);
    const out = scope.alloc(4 * M * V);
    const n = (k: number) => Math.min(R, V - k * R);
    // block k's [M, n(k)] region: at M * k * R floats, so that for one row the regions are the row itself
    const region = (k: number) => out + 4 * M * k * R;
    const tasks: Call[][] = [];
    for (let k = 0; k < this.#blocks; k++) tasks.push([["gemm_f32", region(k), a, this.#w.get(`rows.${k}`), 0, 0, SCRATCH, M, n(k), D, 0]]);
    pool.run(tasks, { base: scratch, stride: work });
    if (M === 1) into.set(heap.f32(out, V));
    else for (let k = 0; k < this.#blocks; k++) for (let m = 0; m < M; m++) into.set(heap.f32(region(k) + 4 * m * n(k), n(k)), m * V + k * R);
  }

  protected override freeOwn(): void {
    this.#w.free();
  }

  protected override get stale(): boolean {
    return this.#w.stale;
  }
}
