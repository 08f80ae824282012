// Loading a module's parameters from a state dict: every key checked before any is copied.
import { oneOf } from "./check.js";
import { ArgumentError, ShapeError } from "./errors.js";
import type { Param } from "./module.js";
import { type IntegerTensor, fileSource, loadFromFile } from "./safetensors.js";
import { type Tensor, checkOptions, checkShape, checkTensor, describe, fmt, honest, typedKind } from "./tensor.js";
import { WEIGHT_FORMATS, type WeightFormat, dequantize, halfLoader, loadingPreQuantized, whileLoading } from "./weights.js";

export interface LoadStateDictOptions {
  /**
   * Like torch's `strict=True` (the default): keys under the prefix that the module does not use
   * are an error. `false` ignores them. Missing and misshapen keys are an error either way.
   */
  strict?: boolean;
  /**
   * How every Linear layer and embedding table inside holds its weight: "f32" (float32), "f16"
   * (half: half the memory), "q8" (int8, one scale per output channel, a table's per row; about a
   * quarter of the memory) or "q4" (llama.cpp's q4_0 blocks of 32; about a seventh). Default:
   * pre-quantized tensors load as "q8", others in the format each layer or table has ("f32"
   * unless `quantize()` said otherwise). Biases and norms stay float32.
   */
  weights?: WeightFormat;
}

const INTEGER = new Set(["I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"]);

/**
 * @internal Loads `params` from `dict[prefix + key]`. Checks every key first (integer tensors,
 * wrong types, missing and misshapen keys, and with `strict` unused keys under the prefix), so a
 * failed load changes nothing; then calls each `load` in order, with tensors from
 * `loadSafetensors` copied from the file's bytes straight into WebAssembly memory.
 */
export function loadParams(
  owner: string,
  params: Param[],
  dict: Readonly<Record<string, Tensor | IntegerTensor>>,
  prefix: string,
  options: LoadStateDictOptions,
): void {
  const fn = `${owner}.loadStateDict`;
  if (dict === null || typeof dict !== "object")
    throw new ArgumentError(`${fn} dict: expected a state dict (an object of tensors), got ${describe(dict)}`);
  if (typeof prefix !== "string") throw new ArgumentError(`${fn} prefix: expected a string, got ${describe(prefix)}`);
  const { strict = true, weights } = checkOptions(`${fn} options`, options, ["strict", "weights"]);
  if (typeof strict !== "boolean") throw new ArgumentError(`${fn} strict: expected a boolean, got ${describe(strict)}`);
  if (weights !== undefined) oneOf(`${fn} weights`, weights, WEIGHT_FORMATS);

  // 1. every expected key: present, float (or int8 with its scales), of the right shape
  const problems: string[] = [];
  const found: (() => void)[] = [];
  const scaleKeys: string[] = [];
  for (const p of params) {
    const key = prefix + p.key;
    // own keys only: "constructor" or "__proto__" never find Object.prototype's
    const t: unknown = Object.hasOwn(dict, key) ? dict[key] : undefined;
    if (t === undefined) {
      problems.push(`missing "${key}" ${fmt(p.shape)}`);
      continue;
    }
    if ((t as { dtype?: unknown } | null)?.dtype === "I8" && p.shape.length === 2) {
      const q8 = checkPreQuantized(fn, dict, key, t as IntegerTensor, p.shape, problems);
      if (q8) {
        scaleKeys.push(`${key}_scale`);
        found.push(() => loadingPreQuantized(() => p.load({ data: dequantize(q8.q, q8.scales, p.shape[1]!), shape: p.shape })));
      }
      continue;
    }
    const source = fileSource(t);
    // a file's bytes transferred (or otherwise detached) since loadSafetensors read its header
    if (source && source.bytes.byteLength === 0 && source.shape.every((d) => d > 0)) {
      throw new ArgumentError(
        `${fn} state dict "${key}": expected the bytes of its file, got a detached buffer (transferred after loadSafetensors?); keep the buffer until the load is done`,
      );
    }
    const dtype = source ? undefined : (t as { dtype?: unknown } | null)?.dtype;
    if (typeof dtype === "string" && INTEGER.has(dtype)) {
      throw new ArgumentError(
        `${fn} state dict "${key}": expected a float tensor (F32, F16, BF16 or F64 in a safetensors file), or for a weight matrix I8 with its scales "${key}_scale", got a tensor of dtype ${dtype}`,
      );
    }
    const checked = source ?? checkTensor(`state dict "${key}"`, t);
    if (checked.shape.length !== p.shape.length || checked.shape.some((d, i) => d !== p.shape[i])) {
      problems.push(`"${key}" has shape ${fmt(checked.shape)}, expected ${fmt(p.shape)}`);
    }
    found.push(source ? () => void (halfLoader(p)?.(source) || loadFromFile(source, p)) : () => p.load(checked as Tensor));
  }
  // 2. with strict, every key under the prefix must be one of them
  const expected = new Set([...params.map((p) => prefix + p.key), ...scaleKeys]);
  const unused = strict ? Object.keys(dict).filter((k) => k.startsWith(prefix) && !expected.has(k)) : [];
  if (unused.length)
    problems.push(`unexpected ${unused.map((k) => `"${k}"`).join(", ")} (pass { strict: false } to ignore keys the module does not use)`);
  if (problems.length) {
    const hint =
      prefix && !prefix.endsWith(".") && Object.keys(dict).some((k) => k.startsWith(`${prefix}.`))
        ? `; the prefix "${prefix}" does not end with "." but keys start with "${prefix}.": did you mean "${prefix}."?`
        : "";
    const Cls = problems.length > (unused.length ? 1 : 0) ? ShapeError : ArgumentError;
    throw new Cls(`${fn}: ${problems.join("; ")}${hint}`);
  }
  // 3. copy, in order
  whileLoading(weights, () => {
    for (const load of found) load();
  });
}

/**
 * A pre-quantized weight: `key` an I8 tensor [N, K] and `key + "_scale"` a float tensor [N] (w =
 * q * scale, one scale per row, symmetric). Its int8 rows and scales, or null with the problems
 * recorded.
 */
function checkPreQuantized(
  fn: string,
  dict: Readonly<Record<string, Tensor | IntegerTensor>>,
  key: string,
  t: IntegerTensor,
  shape: readonly number[],
  problems: string[],
): { q: Int8Array; scales: Float32Array } | null {
  const before = problems.length;
  // the caller's tensor read once: its data through the typed array's own slots, its shape copied
  const given = t as { data?: unknown; shape?: unknown };
  const data = given.data;
  if (typedKind(data) !== "Int8Array")
    throw new ArgumentError(`${fn} state dict "${key}".data: expected an Int8Array (an I8 tensor), got ${describe(data)}`);
  const q = honest<Int8Array>(data);
  const qShape = checkShape(`state dict "${key}".shape`, given.shape);
  if (qShape.length !== 2 || qShape[0] !== shape[0] || qShape[1] !== shape[1] || q.length !== shape[0]! * shape[1]!) {
    problems.push(`"${key}" has shape ${fmt(qShape)} (I8, ${q.length} values), expected ${fmt(shape)}`);
  }
  const scaleKey = `${key}_scale`;
  const s: unknown = Object.hasOwn(dict, scaleKey) ? dict[scaleKey] : undefined;
  let scales: Float32Array | null = null;
  if (s === undefined) problems.push(`"${key}" is an I8 tensor (pre-quantized) without its scales "${scaleKey}" [${shape[0]}]`);
  else {
    const dtype = fileSource(s) ? undefined : (s as { dtype?: unknown } | null)?.dtype;
    if (typeof dtype === "string" && INTEGER.has(dtype))
      throw new ArgumentError(`${fn} state dict "${scaleKey}": expected a float tensor (scales are float), got a tensor of dtype ${dtype}`);
    const checked = fileSource(s) ?? checkTensor(`state dict "${scaleKey}"`, s);
    if (checked.shape.length !== 1 || checked.shape[0] !== shape[0])
      problems.push(`"${scaleKey}" has shape ${fmt(checked.shape)}, expected [${shape[0]}]`);
    else scales = Float32Array.from(fileSource(s) ? (s as Tensor).data : (checked as { data: Float32Array }).data);
  }
  if (problems.length > before || !scales) return null;
  return { q: q.slice(), scales };
}
