import { optionBool, positiveInt } from "./check.js";
import { Act } from "./enums.js";
import { ShapeError } from "./errors.js";
import { runtime } from "./init.js";
import { type Ctx, Module, type Param, Resident, withScope } from "./module.js";
import { type Call, SCRATCH } from "./threads.js";
import { type Tensor, checkTensor, checkOptions, fmt } from "./tensor.js";
import { packQ8, packWeight, packedBytes, unpackWeight } from "./packed-weight.js";
import { type HalfParam, type WeightFormat, formatFor } from "./weights.js";

/** Activations the matrix-product kernel applies in its store, by name. */
export const ACT = { none: Act.None, relu: Act.Relu, gelu: Act.Gelu, "gelu-tanh": Act.GeluTanh, silu: Act.Silu } as const;
export type Activation = "relu" | "gelu" | "gelu-tanh";

export interface LinearOptions {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
}

/**
 * torch.nn.Linear: y = x W^T + b, x [..., inFeatures] -> y [..., outFeatures]. State dict: weight,
 * bias. The weight is held as float32, half ("f16"), int8 ("q8") or 4-bit blocks ("q4"): see
 * `weights`; the bias stays float32.
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: boolean;
  readonly #w = new Resident(this);
  #format: WeightFormat = "f32";

  constructor(options: LinearOptions) {
    super();
    checkOptions("Linear options", options, ["inFeatures", "outFeatures", "bias"]);
    this.inFeatures = positiveInt("Linear", "inFeatures", options.inFeatures);
    this.outFeatures = positiveInt("Linear", "outFeatures", options.outFeatures);
    this.bias = optionBool("Linear", "bias", options.bias, true);
  }

  params(): Param[] {
    const N = this.outFeatures;
    const K = this.inFeatures;
    const weight: Param & HalfParam = {
      key: "weight",
      shape: [N, K],
      load: (t) => this.setWeight(t.data),
      loadHalf: (source) => this.#loadHalf(source),
    };
    const ps: Param[] = [weight];
    if (this.bias) ps.push({ key: "bias", shape: [N], load: (t) => this.setBias(t.data) });
    return ps;
  }

  /**
   * How the weight is held: "f32", "f16" (half), "q8" (int8, one scale per output channel) or "q4"
   * (4-bit blocks of 32 inputs with a half scale each, llama.cpp's q4_0). A load chooses
   * it (`loadStateDict(dict, prefix, { weights })`, pre-quantized tensors, `quantize()`); a load
   * that does not say keeps the format the layer has.
   */
  get weights(): WeightFormat {
    return this.#format;
  }

  /**
   * @internal weight rows [outFeatures, inFeatures], as torch stores them, held in `format`
   * (by default what the load in progress asks for, else the layer's own format)
   */
  setWeight(data: Float32Array, format: WeightFormat = formatFor(this.#format)): void {
    packWeight(this.#w, "weight", data, this.outFeatures, this.inFeatures, format);
    this.#format = format;
  }

  /** @internal int8 weight rows q [outFeatures, inFeatures] and their scales [outFeatures]: w = q * scale */
  setWeightQ8(q: Int8Array, scales: Float32Array): void {
    packQ8(this.#w, "weight", q, scales, this.outFeatures, this.inFeatures);
    this.#format = "q8";
  }

  /**
   * @internal the float32 weight rows [outFeatures, inFeatures] as held (f16: widened exactly), or
   * null (not loaded, or q8 / q4)
   */
  weightF32(): Float32Array | null {
    this.assertLive();
    const at = this.#w.get("weight");
    if (!at || (this.#format !== "f32" && this.#format !== "f16")) return null;
    return unpackWeight(at, this.#format, this.outFeatures, this.inFeatures);
  }

  /** @internal whether a weight is loaded */
  get hasWeight(): boolean {
    this.assertLive();
    return this.#w.get("weight") !== 0;
  }

  /**
   * @internal quantize()'s step: the loaded weight (f32 or f16) re-held in `format`; not loaded,
   * the format weights loaded later take, unless the load asks for another
   */
  holdAs(format: WeightFormat): void {
    const w = this.weightF32();
    if (w) this.setWeight(w, format);
    else this.#format = format;
  }

  // a file's F16 / BF16 weight (N, K), into f16 or q4: copied into WebAssembly memory and packed
  // 64 rows (whole panels) at a time, so no float32 copy of the whole weight is ever made; false
  // (nothing done) for the other formats and dtypes
  #loadHalf({ bytes, dtype }: { bytes: Uint8Array; dtype: string }): boolean {
    const format = formatFor(this.#format);
    if ((format !== "f16" && format !== "q4") || (dtype !== "F16" && dtype !== "BF16")) return false;
    const [N, K] = [this.outFeatures, this.inFeatures];
    const { kernels, heap } = runtime();
    const BLOCK = 64;
    const rows = Math.min(N, BLOCK);
    const total = packedBytes(format, N, K);
    const panel = format === "f16" ? 16 * K : 144 * Math.ceil(K / 32); // bytes per 8 rows
    this.#w.setWith("weight", total, rows * K * (format === "q4" ? 6 : 2) + 64, (at, scope) => {
      const half = scope.alloc(2 * rows * K);
      const wide = format === "q4" ? scope.alloc(4 * rows * K) : 0;
      for (let r0 = 0; r0 < N; r0 += BLOCK) {
        const n = Math.min(BLOCK, N - r0);
        new Uint8Array(heap.memory.buffer, half, 2 * n * K).set(bytes.subarray(2 * r0 * K, 2 * (r0 + n) * K));
        const dst = at + (r0 / 8) * panel;
        if (format === "f16") kernels.pack_f16(dst, half, K, n, K, dtype === "F16" ? 1 : 2);
        else {
          // widened exactly (bfloat16: the top half of a float32), then quantized
          if (dtype === "F16") kernels.f16_to_f32_n(wide, half, n * K);
          else {
            const [h, w] = [new Uint16Array(heap.memory.buffer, half, n * K), new Uint32Array(heap.memory.buffer, wide, n * K)];
            for (let i = 0; i < n * K; i++) w[i] = h[i]! << 16;
          }
          kernels.pack_q4(dst, wide, K, n, K);
        }
      }
    });
    this.#format = format;
    return true;
  }

  /** @internal */
  setBias(data: Float32Array): void {
    this.#w.set("bias", data);
  }

  forward(x: Tensor): Tensor {
    const t = checkTensor("x", x); // read first: its getters run before the state check
    this.assertReady();
    const K = this.inFeatures;
    if (t.shape.length < 1 || t.shape[t.shape.length - 1] !== K) {
      throw new ShapeError(`Linear.forward x: expected [..., ${K}], got ${fmt(t.shape)}`);
    }
    const M = t.data.length / K;
    return withScope((ctx) => {
      const a = ctx.scope.put(t.data);
      const out = ctx.scope.alloc(4 * M * this.outFeatures);
      this.run(ctx, out, a, M);
      return { data: ctx.heap.f32(out, M * this.outFeatures).slice(), shape: [...t.shape.slice(0, -1), this.outFeatures] };
    });
  }

  /**
   * @internal out (M, outFeatures) = act(a (M, inFeatures) W^T + b) + residual, in blocks of rows
   * spread over the thread pool when the product is large enough to pay for the hand-off
   */
  run(ctx: Ctx, out: number, a: number, M: number, residual = 0, act: keyof typeof ACT = "none"): void {
    if (this.#format === "q8" || this.#format === "q4") {
      this.#runInt8(ctx, out, a, M, residual, act);
      return;
    }
    const [N, K] = [this.outFeatures, this.inFeatures];
    // the float kernels take the same arguments; they differ in their packing: `unit` channels
    // together (f32: groups of 32, f16: panels of 8), `panel` bytes each
    const { kernel, work, panel, unit } = {
      f32: { kernel: "gemm_f32", work: ctx.K.gemm_f32_workspace(), panel: 128 * K, unit: 32 },
      f16: { kernel: "gemm_f16", work: ctx.K.gemm_f16_workspace(K), panel: 16 * K, unit: 8 },
    }[this.#format as "f32" | "f16"] as { kernel: "gemm_f32"; work: number; panel: number; unit: number }; // one signature: typed as gemm_f32's
    const scratch = ctx.scope.alloc(work * ctx.pool.size);
    const blocks = ctx.pool.size > 1 && M * N * K >= 1 << 20 ? 4 * ctx.pool.size : 1;
    const [w, bias] = [this.#w.get("weight"), this.#w.get("bias")];
    const tasks: Call[][] = [];
    if (M === 1 && blocks > 1) {
      // one row (a decoding step): blocks of columns instead, each a run of whole groups (panels)
      // of the packed weight; every element is computed as it would be whole, so the bits are the same
      const cols = Math.max(unit, Math.ceil(N / blocks / unit) * unit);
      for (let c = 0; c < N; c += cols) {
        tasks.push([
          [
            kernel,
            out + 4 * c,
            a,
            w + (c / unit) * panel,
            bias && bias + 4 * c,
            residual && residual + 4 * c,
            SCRATCH,
            1,
            Math.min(cols, N - c),
            K,
            ACT[act],
          ],
        ]);
      }
    } else {
      const rows = Math.max(4, Math.ceil(M / blocks / 4) * 4);
      for (let r0 = 0; r0 < M; r0 += rows) {
        const n = Math.min(rows, M - r0);
        tasks.push([[kernel, out + 4 * r0 * N, a + 4 * r0 * K, w, bias, residual && residual + 4 * r0 * N, SCRATCH, n, N, K, ACT[act]]]);
      }
    }
    ctx.pool.run(tasks, { base: scratch, stride: work });
  }

  // run() with int8 activations (q8 and q4 weights): each block of rows quantized
  // (quantize_rows_i8), then gemm_q8 or gemm_q4; one row's columns are split in whole panels
  // across the pool instead, each task quantizing the row itself (the same bits in every task)
  #runInt8(ctx: Ctx, out: number, a: number, M: number, residual: number, act: keyof typeof ACT): void {
    const [N, K] = [this.outFeatures, this.inFeatures];
    const K4 = Math.ceil(K / 4) * 4;
    const q4 = this.#format === "q4";
    const [w, bias] = [this.#w.get("weight"), this.#w.get("bias")];
    const scales = q4 ? 0 : w + ctx.K.pack_q8_bytes(N, K);
    const work = q4 ? ctx.K.gemm_q4_workspace(K) : ctx.K.gemm_q8_workspace(K);
    const scratch = ctx.scope.alloc(work * ctx.pool.size);
    const blocks = ctx.pool.size > 1 && M * N * K >= 1 << 20 ? 4 * ctx.pool.size : 1;
    const tasks: Call[][] = [];
    if (M === 1 && blocks > 1) {
      const panel = q4 ? 144 * Math.ceil(K / 32) : 8 * K4; // bytes of 8 output channels
      const cols = Math.max(8, Math.ceil(N / blocks / 8) * 8);
      const aq = ctx.scope.alloc(Math.ceil(N / cols) * (K4 + 16));
      const aScales = ctx.scope.alloc(4 * Math.ceil(N / cols));
      for (let c = 0, t = 0; c < N; c += cols, t++) {
        const [q, s] = [aq + t * (K4 + 16), aScales + 4 * t];
        const [wc, n, b, res] = [w + (c / 8) * panel, Math.min(cols, N - c), bias && bias + 4 * c, residual && residual + 4 * c];
        tasks.push([
          ["quantize_rows_i8", q, s, a, 1, K],
          q4
            ? ["gemm_q4", out + 4 * c, q, s, wc, b, res, SCRATCH, 1, n, K, ACT[act]]
            : ["gemm_q8", out + 4 * c, q, s, wc, scales + 4 * c, b, res, SCRATCH, 1, n, K, ACT[act]],
        ]);
      }
      ctx.pool.run(tasks, { base: scratch, stride: work });
      return;
    }
    const aq = ctx.scope.alloc(M * K4);
    const aScales = ctx.scope.alloc(4 * M);
    const rows = Math.max(4, Math.ceil(M / blocks / 4) * 4);
    for (let r0 = 0; r0 < M; r0 += rows) {
      const n = Math.min(rows, M - r0);
      const [q, s] = [aq + r0 * K4, aScales + 4 * r0];
      const res = residual && residual + 4 * r0 * N;
      tasks.push([
        ["quantize_rows_i8", q, s, a + 4 * r0 * K, n, K],
        q4
          ? ["gemm_q4", out + 4 * r0 * N, q, s, w, bias, res, SCRATCH, n, N, K, ACT[act]]
          : ["gemm_q8", out + 4 * r0 * N, q, s, w, scales, bias, res, SCRATCH, n, N, K, ACT[act]],
      ]);
    }
    ctx.pool.run(tasks, { base: scratch, stride: work });
  }

  protected override freeOwn(): void {
    this.#w.free();
  }

  protected override get stale(): boolean {
    return this.#w.stale;
  }
}
