// quantize(module, format): a loaded module's Linear weights re-held in another format.
import { oneOf } from "./check.js";
import { ArgumentError } from "./errors.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";
import { describe } from "./tensor.js";
import { WEIGHT_FORMATS, type WeightFormat } from "./weights.js";

/**
 * Holds the weight of every Linear layer inside `module` (itself included) in `format` and
 * returns the module. From float32 weights: "f16" rounds each to the nearest half; "q8" quantizes
 * with one scale per output channel (scale = max|w_row| / 127, q = w * 127 / max|w_row| rounded
 * to nearest); "q4" quantizes blocks of 32 inputs as llama.cpp's q4_0 (d = max / -8, see
 * `WeightFormat`); the float32 copy is freed. "f16" weights go to "q8" or "q4" too (the halves,
 * widened exactly, are quantized). A layer already in `format` is left as it is. Going to a
 * format that holds more than the layer has ("f32" from anything else, "f16" from "q8" or "q4",
 * between "q8" and "q4") is an error: the values are gone; load them again. On a module not
 * loaded yet, the format applies to the weights it loads later (unless the load asks for another).
 */
export function quantize<M extends Module>(module: M, format: WeightFormat): M {
  if (!(module instanceof Module)) throw new ArgumentError(`quantize: expected a Module, got ${describe(module)}`);
  oneOf("quantize: format", format, WEIGHT_FORMATS);
  const linears = module.modules().filter((m): m is Linear => m instanceof Linear);
  // the formats each format can be made from
  const from: Record<WeightFormat, readonly WeightFormat[]> = {
    f32: ["f32"],
    f16: ["f32", "f16"],
    q8: ["f32", "f16", "q8"],
    q4: ["f32", "f16", "q4"],
  };
  const held = linears.filter((l) => l.hasWeight && !from[format].includes(l.weights));
  if (held.length) {
    const formats = [...new Set(held.map((l) => l.weights))].join(" and ");
    const needs = format === "f32" ? "float32" : "float32 (or half)";
    throw new ArgumentError(
      `quantize: ${held.length} Linear layer${held.length > 1 ? "s hold" : " holds"} ${formats} weights; their ${needs} values are gone: load the float32 state dict again to go to "${format}"`,
    );
  }
  for (const l of linears) {
    if (l.weights === format) continue;
    const w = l.weightF32();
    if (w) l.setWeight(w, format);
    else l.preferWeights(format);
  }
  return module;
}
