// quantize(module, format): a loaded module's Linear weights and embedding tables re-held in another format.
import { oneOf } from "./check.js";
import { ArgumentError } from "./errors.js";
import { Linear } from "./linear.js";
import { Module } from "./module.js";
import { describe } from "./tensor.js";
import { VocabTable } from "./vocab-table.js";
import { WEIGHT_FORMATS, type WeightFormat } from "./weights.js";

/**
 * Holds the weight of every Linear layer inside `module` (itself included), and every embedding
 * table (`Embedding`, `EncoderModel`'s three, `CausalLM`'s embedding and untied LM head), in
 * `format` and returns the module. From float32 weights: "f16" rounds each to the nearest half;
 * "q8" quantizes with one scale per output channel (a table: per row) (scale = max|w_row| / 127,
 * q = w * 127 / max|w_row| rounded to nearest); "q4" quantizes blocks of 32 inputs as llama.cpp's
 * q4_0 (d = max / -8, see `WeightFormat`); the float32 copy is freed (a table's a block of rows at
 * a time). "f16" weights go to "q8" or "q4" too (the halves, widened exactly, are quantized). A
 * weight already in `format` is left as it is. Going to a format that holds more than the weight
 * has ("f32" from anything else, "f16" from "q8" or "q4", between "q8" and "q4") is an error: the
 * values are gone; load them again. On a module not loaded yet, the format applies to the weights
 * it loads later (unless the load asks for another).
 */
export function quantize<M extends Module>(module: M, format: WeightFormat): M {
  if (!(module instanceof Module)) throw new ArgumentError(`quantize module: expected a Module, got ${describe(module)}`);
  oneOf("quantize format", format, WEIGHT_FORMATS);
  const holders = module.modules().filter((m): m is Linear | VocabTable => m instanceof Linear || m instanceof VocabTable);
  // the formats each format can be made from
  const from: Record<WeightFormat, readonly WeightFormat[]> = {
    f32: ["f32"],
    f16: ["f32", "f16"],
    q8: ["f32", "f16", "q8"],
    q4: ["f32", "f16", "q4"],
  };
  const held = holders.filter((h) => h.hasWeight && !from[format].includes(h.weights));
  if (held.length) {
    const formats = [...new Set(held.map((h) => h.weights))].join(" and ");
    const needs = format === "f32" ? "float32" : "float32 (or half)";
    const count = (n: number, what: string) => (n ? [`${n} ${what}${n > 1 ? "s" : ""}`] : []);
    const linears = held.filter((h) => h instanceof Linear).length;
    const who = [...count(linears, "Linear layer"), ...count(held.length - linears, "embedding table")].join(" and ");
    throw new ArgumentError(
      `quantize format: expected one the weights held can go to, got ${describe(format)}: ${who} ${held.length > 1 ? "hold" : "holds"} ${formats} weights; their ${needs} values are gone: load the float32 state dict again to go to "${format}"`,
    );
  }
  for (const h of holders) if (h.weights !== format) h.holdAs(format);
  return module;
}
