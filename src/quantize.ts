// quantize(module, "q8"): a loaded module's Linear weights re-held as int8.
import { ArgumentError } from "./errors.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";
import { describe } from "./tensor.js";
import { WEIGHT_FORMATS, type WeightFormat } from "./weights.js";

/**
 * Holds the weight of every Linear layer inside `module` (itself included) in `format` and
 * returns the module. "q8": each float32 weight is quantized, one scale per output channel
 * (scale = max|w_row| / 127, q = w * 127 / max|w_row| rounded to nearest), and its float32 copy freed; a
 * layer already in q8 is left as it is. "f32" keeps float32 weights as they are and is an error
 * for q8 ones (the float32 values are gone: load them again). On a module not loaded yet, the
 * format applies to the weights it loads later (unless the load asks for another).
 */
export function quantize<M extends Module>(module: M, format: WeightFormat): M {
  if (!(module instanceof Module)) throw new ArgumentError(`quantize: expected a Module, got ${describe(module)}`);
  if (!WEIGHT_FORMATS.includes(format)) throw new ArgumentError(`quantize: format must be ${WEIGHT_FORMATS.map((f) => `"${f}"`).join(" or ")}, got ${describe(format)}`);
  const linears = module.modules().filter((m): m is Linear => m instanceof Linear);
  if (format === "f32") {
    const held = linears.filter((l) => l.weights === "q8");
    if (held.length) throw new ArgumentError(`quantize: ${held.length} Linear layer${held.length > 1 ? "s hold" : " holds"} q8 weights; their float32 values are gone: load the float32 state dict again to go back to "f32"`);
    return module;
  }
  for (const l of linears) {
    if (l.weights === "q8") continue;
    const w = l.weightF32();
    if (w) l.setWeight(w, "q8");
    else l.preferWeights("q8");
  }
  return module;
}
