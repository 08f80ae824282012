import { optionBool, positiveInt } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Ctx, Module, type Param, Resident, withScope } from "./module.js";
import { type Tensor, checkOptions, checkTensor, describe, fmt } from "./tensor.js";

export interface LayerNormOptions {
  normalizedShape: number;
  eps?: number;
  bias?: boolean;
}

/** torch.nn.LayerNorm over the last dimension. State dict: weight, bias. */
export class LayerNorm extends Module {
  readonly size: number;
  readonly eps: number;
  readonly bias: boolean;
  readonly #w = new Resident(this);

  constructor(options: LayerNormOptions) {
    super();
    checkOptions("LayerNorm options", options, ["normalizedShape", "eps", "bias"]);
    this.size = positiveInt("LayerNorm", "normalizedShape", options.normalizedShape);
    this.eps = options.eps ?? 1e-5;
    if (typeof this.eps !== "number" || !(this.eps >= 0) || !Number.isFinite(this.eps)) {
      throw new ArgumentError(`LayerNorm eps: expected a finite number >= 0, got ${describe(options.eps)}`);
    }
    this.bias = optionBool("LayerNorm", "bias", options.bias, true);
  }

  params(): Param[] {
    const ps: Param[] = [{ key: "weight", shape: [this.size], load: (t) => this.#w.set("weight", t.data) }];
    if (this.bias) ps.push({ key: "bias", shape: [this.size], load: (t) => this.#w.set("bias", t.data) });
    return ps;
  }

  forward(x: Tensor): Tensor {
    const t = checkTensor("x", x); // read first: its getters run before the state check
    this.assertReady();
    if (t.shape.length < 1 || t.shape[t.shape.length - 1] !== this.size) {
      throw new ShapeError(`LayerNorm.forward x: expected [..., ${this.size}], got ${fmt(t.shape)}`);
    }
    return withScope((ctx) => {
      const at = ctx.scope.put(t.data);
      this.run(ctx, at, at, t.data.length / this.size);
      return { data: ctx.heap.f32(at, t.data.length).slice(), shape: [...t.shape] };
    });
  }

  /** @internal out (M, size) = layer norm of x (M, size); out may be x */
  run(ctx: Ctx, out: number, x: number, M: number): void {
    ctx.K.layernorm_f32(out, x, this.#w.get("weight"), this.#w.get("bias"), M, this.size, this.eps);
  }

  protected override freeOwn(): void {
    this.#w.free();
  }

  protected override get stale(): boolean {
    return this.#w.stale;
  }
}
