import { optionBool, positiveInt } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { type Ctx, Module, type Param, Resident, withScope } from "./module.js";
import { type Tensor, checkOptions, checkTensor, describe, fmt } from "./tensor.js";

export interface RMSNormOptions {
  /** Size of the last dimension, normalised. */
  normalizedShape: number;
  /** Added to the mean of squares; default 1e-6 (Hugging Face's LlamaRMSNorm). */
  eps?: number;
  /** Gemma's form: the weight is stored zero-centred and used as (1 + weight). Default false. */
  unitOffset?: boolean;
}

/**
 * Root-mean-square normalisation (Hugging Face's LlamaRMSNorm, and GemmaRMSNorm with
 * `unitOffset`): y = x / sqrt(mean(x^2) + eps) * weight, or * (1 + weight), over the last
 * dimension, in float32. State dict: weight.
 */
export class RMSNorm extends Module {
  readonly size: number;
  readonly eps: number;
  readonly unitOffset: boolean;
  readonly #w = new Resident(this);

  constructor(options: RMSNormOptions) {
    super();
    const o = checkOptions("RMSNorm options", options, ["normalizedShape", "eps", "unitOffset"]);
    this.size = positiveInt("RMSNorm", "normalizedShape", o.normalizedShape);
    this.eps = o.eps ?? 1e-6;
    if (typeof this.eps !== "number" || !(this.eps >= 0) || !Number.isFinite(this.eps)) {
      throw new ArgumentError(`RMSNorm eps: expected a finite number >= 0, got ${describe(o.eps)}`);
    }
    this.unitOffset = optionBool("RMSNorm", "unitOffset", o.unitOffset, false);
  }

  params(): Param[] {
    return [{ key: "weight", shape: [this.size], load: (t) => this.#w.set("weight", t.data) }];
  }

  /** x [..., size] -> [..., size], a new tensor. */
  forward(x: Tensor): Tensor {
    const t = checkTensor("x", x); // read first: its getters run before the state check
    this.assertReady();
    if (t.shape.length < 1 || t.shape[t.shape.length - 1] !== this.size) {
      throw new ShapeError(`RMSNorm.forward x: expected [..., ${this.size}], got ${fmt(t.shape)}`);
    }
    if (t.data.length === 0) return { data: new Float32Array(0), shape: [...t.shape] };
    return withScope((ctx) => {
      const at = ctx.scope.put(t.data);
      this.run(ctx, at, at, t.data.length / this.size);
      return { data: ctx.heap.f32(at, t.data.length).slice(), shape: [...t.shape] };
    });
  }

  /** @internal out (M, size) = RMSNorm of x (M, size); out may be x */
  run(ctx: Ctx, out: number, x: number, M: number): void {
    ctx.K.rmsnorm_f32(out, x, this.#w.get("weight"), M, this.size, this.eps, this.unitOffset ? 1 : 0);
  }

  protected override freeOwn(): void {
    this.#w.free();
  }

  protected override get stale(): boolean {
    return this.#w.stale;
  }
}
