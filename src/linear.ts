import { Act } from "./enums.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Ctx, Module, type Param, Resident, withScope } from "./module.js";
import { type Call, SCRATCH } from "./threads.js";
import { type Tensor, checkTensor, checkOptions, fmt } from "./tensor.js";

/** Activations the matrix-product kernel applies in its store, by name. */
export const ACT = { none: Act.None, relu: Act.Relu, gelu: Act.Gelu, "gelu-tanh": Act.GeluTanh, silu: Act.Silu } as const;
export type Activation = "relu" | "gelu" | "gelu-tanh";

export interface LinearOptions {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
}

/** torch.nn.Linear: y = x W^T + b, x [..., inFeatures] -> y [..., outFeatures]. State dict: weight, bias. */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: boolean;
  readonly #w = new Resident(this);

  constructor(options: LinearOptions) {
    super();
    checkOptions("Linear options", options, ["inFeatures", "outFeatures", "bias"]);
    this.inFeatures = positiveInt("Linear", "inFeatures", options.inFeatures);
    this.outFeatures = positiveInt("Linear", "outFeatures", options.outFeatures);
    this.bias = bool("Linear", "bias", options.bias, true);
  }

  params(): Param[] {
    const N = this.outFeatures;
    const K = this.inFeatures;
    const ps: Param[] = [{ key: "weight", shape: [N, K], load: (t) => this.setWeight(t.data) }];
    if (this.bias) ps.push({ key: "bias", shape: [N], load: (t) => this.setBias(t.data) });
    return ps;
  }

  /** @internal weight rows [outFeatures, inFeatures], as torch stores them */
  setWeight(data: Float32Array): void {
    this.#w.set("weight", data, { N: this.outFeatures, K: this.inFeatures });
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
    const [N, K] = [this.outFeatures, this.inFeatures];
    const work = ctx.K.gemm_f32_workspace();
    const scratch = ctx.scope.alloc(work * ctx.pool.size);
    const blocks = ctx.pool.size > 1 && M * N * K >= 1 << 20 ? 4 * ctx.pool.size : 1;
    const rows = Math.max(4, Math.ceil(M / blocks / 4) * 4);
    const tasks: Call[][] = [];
    for (let r0 = 0; r0 < M; r0 += rows) {
      const n = Math.min(rows, M - r0);
      tasks.push([["gemm_f32", out + 4 * r0 * N, a + 4 * r0 * K, this.#w.get("weight"), this.#w.get("bias"), residual && residual + 4 * r0 * N, SCRATCH, n, N, K, ACT[act]]]);
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

export function positiveInt(owner: string, name: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isInteger(x) || x < 1) {
    throw new ArgumentError(`${owner}: ${name} must be a positive integer, got ${typeof x === "number" ? x : typeof x}`);
  }
  return x;
}

export function bool(owner: string, name: string, x: unknown, fallback: boolean): boolean {
  if (x === undefined) return fallback;
  if (typeof x !== "boolean") throw new ArgumentError(`${owner}: ${name} must be a boolean, got ${typeof x}`);
  return x;
}
