import { optionBool, positiveInt } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import { Linear } from "./linear.js";
import { type Ctx, Module, type Param, nested, prefixed, withScope } from "./module.js";
import { type Tensor, checkOptions, checkTensor, describe, fmt } from "./tensor.js";

export interface GatedMLPOptions {
  hiddenSize: number;
  intermediateSize: number;
  /** The gate's activation: "silu" (Llama, Mistral, Qwen) or "gelu-tanh" (Gemma's gelu_pytorch_tanh). Default "silu". */
  activation?: "silu" | "gelu-tanh";
  /** Biases on the three projections (Llama's mlp_bias). Default false. */
  bias?: boolean;
}

/**
 * The gated feed-forward block of Llama-style models (Hugging Face's LlamaMLP):
 * down_proj(act(gate_proj(x)) * up_proj(x)). The activation is applied in the gate product's
 * store, the residual (in a decoder layer) in the down product's. State dict:
 * gate_proj.weight [intermediate, hidden], up_proj.weight [intermediate, hidden],
 * down_proj.weight [hidden, intermediate] (and .bias of each with `bias`).
 */
export class GatedMLP extends Module {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly activation: "silu" | "gelu-tanh";
  readonly #gate: Linear;
  readonly #up: Linear;
  readonly #down: Linear;

  constructor(options: GatedMLPOptions) {
    super();
    const o = checkOptions("GatedMLP options", options, ["hiddenSize", "intermediateSize", "activation", "bias"]);
    this.hiddenSize = positiveInt("GatedMLP", "hiddenSize", o.hiddenSize);
    this.intermediateSize = positiveInt("GatedMLP", "intermediateSize", o.intermediateSize);
    const act = o.activation ?? "silu";
    if (act !== "silu" && act !== "gelu-tanh") throw new ArgumentError(`GatedMLP activation: expected "silu" or "gelu-tanh", got ${describe(act)}`);
    this.activation = act;
    const bias = optionBool("GatedMLP", "bias", o.bias, false);
    const [H, I] = [this.hiddenSize, this.intermediateSize];
    this.#gate = new Linear({ inFeatures: H, outFeatures: I, bias });
    this.#up = new Linear({ inFeatures: H, outFeatures: I, bias });
    this.#down = new Linear({ inFeatures: I, outFeatures: H, bias });
  }

  protected override children(): Module[] {
    return [this.#gate, this.#up, this.#down];
  }

  params(): Param[] {
    return [
      ...prefixed("gate_proj.", this.#gate.params()),
      ...prefixed("up_proj.", this.#up.params()),
      ...prefixed("down_proj.", this.#down.params()),
    ];
  }

  /** x [..., hiddenSize] -> [..., hiddenSize], a new tensor. */
  forward(x: Tensor): Tensor {
    const t = checkTensor("x", x); // read first: its getters run before the state check
    this.assertReady();
    const H = this.hiddenSize;
    if (t.shape.length < 1 || t.shape[t.shape.length - 1] !== H)
      throw new ShapeError(`GatedMLP.forward x: expected [..., ${H}], got ${fmt(t.shape)}`);
    const M = t.data.length / H;
    if (M === 0) return { data: new Float32Array(0), shape: [...t.shape] };
    return withScope((ctx) => {
      const a = ctx.scope.put(t.data);
      const out = ctx.scope.alloc(4 * M * H);
      this.run(ctx, out, a, M);
      return { data: ctx.heap.f32(out, M * H).slice(), shape: [...t.shape] };
    });
  }

  /** @internal bytes of scratch run() takes for M rows */
  scratchBytes(M: number): number {
    return 8 * M * this.intermediateSize;
  }

  /** @internal out (M, hidden) = MLP of x (M, hidden) + residual (0: none; may be out) */
  run(outer: Ctx, out: number, x: number, M: number, residual = 0): void {
    nested(outer, (ctx) => {
      const n = M * this.intermediateSize;
      const gate = ctx.scope.alloc(4 * n);
      const up = ctx.scope.alloc(4 * n);
      this.#gate.run(ctx, gate, x, M, 0, this.activation);
      this.#up.run(ctx, up, x, M);
      ctx.K.mul_f32(gate, gate, up, n);
      this.#down.run(ctx, out, gate, M, residual);
    });
  }
}
