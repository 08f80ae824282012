// The script of the dedicated Worker that createWorker() (src/worker-api.ts) starts: the whole
// library, answering the page's messages one at a time. Objects that live here (modules, caches,
// states, resident tensors, state dicts) stay here and are named by a number; everything else
// travels by structured clone, results with their buffers transferred (they are new arrays that
// nothing here keeps). The protocol:
//   page -> worker  { id, op: "init", options }                      -> the manifest of the library
//                   { id, op: "call", target, name, args }           target: an object's number or null (the library)
//                   { id, op: "get", target, name }                  a property
//                   { op: "release", target }                        forget an object
//   worker -> page  { id, ok: true, value } | { id, ok: false, error: { name, message } }
// In a value, { [REF]: n, kind, methods, getters } stands for the object n that lives here.
import * as lib from "./index.js";

/** @internal the key of a reference to an object in the worker */
export const REF = "__wasmAttentionRef";

interface Request {
  id: number;
  op: "init" | "call" | "get" | "release";
  target?: number | null;
  name?: string;
  args?: unknown[];
  options?: lib.InitOptions;
}

/** A state dict made by loadSafetensors in the worker, handed to the page as a reference. */
class StateDictHandle {
  constructor(readonly dict: lib.StateDict) {}
  keys(): string[] {
    return Object.keys(this.dict);
  }
  get(name: string): lib.Tensor | lib.IntegerTensor | undefined {
    return Object.hasOwn(this.dict, name) ? this.dict[name] : undefined;
  }
}

const objects = new Map<number, object>();
let nextRef = 1;
const LIVE = [lib.Module, lib.KVCache, lib.DecoderCache, lib.LinearAttentionState, lib.ResidentTensor, StateDictHandle] as const;
// what the page may call on the library: its functions, and its classes as constructors
const FUNCTIONS = new Set(
  Object.keys(lib).filter((k) => typeof (lib as Record<string, unknown>)[k] === "function" && !/^[A-Z]/.test(k) && k !== "init" && k !== "shutdown"),
);
const CLASSES = new Set(
  Object.keys(lib).filter(
    (k) => /^[A-Z]/.test(k) && typeof (lib as Record<string, unknown>)[k] === "function" && k !== "Module" && !k.endsWith("Error"),
  ),
);

function describe(obj: object): { methods: string[]; getters: string[] } {
  const methods = new Set<string>();
  const getters = new Set<string>();
  for (let p = Object.getPrototypeOf(obj); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (name === "constructor" || methods.has(name) || getters.has(name)) continue;
      if (d.get) getters.add(name);
      else if (typeof d.value === "function") methods.add(name);
    }
  }
  for (const name of Object.keys(obj)) if (typeof (obj as Record<string, unknown>)[name] !== "function") getters.add(name);
  return { methods: [...methods], getters: [...getters] };
}

// a value on its way to the page: live objects by reference, fresh arrays transferred
function encode(value: unknown, transfer: Set<ArrayBuffer> | null, seen = new Map<object, unknown>()): unknown {
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return seen.get(value);
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer;
    if (transfer && buffer instanceof ArrayBuffer && buffer.byteLength === value.byteLength) transfer.add(buffer);
    return value;
  }
  if (LIVE.some((C) => value instanceof C)) {
    let ref = [...objects].find(([, o]) => o === value)?.[0];
    if (ref === undefined) {
      ref = nextRef++;
      objects.set(ref, value);
    }
    return { [REF]: ref, kind: value.constructor.name, ...describe(value) };
  }
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(encode(v, transfer, seen));
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  seen.set(value, out);
  // functions cannot cross (a Param's load): the page gets the data around them
  for (const [k, v] of Object.entries(value)) if (typeof v !== "function") out[k] = encode(v, transfer, seen);
  return out;
}

// a value from the page: references replaced by the objects they name
function decode(value: unknown): unknown {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) return value.map(decode);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  if (`${REF}Url` in value) return new URL((value as Record<string, string>)[`${REF}Url`]!);
  if (REF in value) {
    const obj = objects.get((value as Record<string, number>)[REF]!);
    if (!obj) throw new lib.StateError("this object was released (dispose()) or belongs to another worker");
    return obj instanceof StateDictHandle ? obj.dict : obj;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = decode(v);
  return out;
}

function call(target: number | null | undefined, name: string, args: unknown[]): unknown {
  const lb = lib as unknown as Record<string, (...a: unknown[]) => unknown>;
  if (target === null || target === undefined) {
    if (name === "loadSafetensors") return new StateDictHandle(lib.loadSafetensors(...(args as [Uint8Array])));
    if (FUNCTIONS.has(name)) return lb[name]!(...args);
    const [cls, stat] = name.split(".");
    if (cls && CLASSES.has(cls)) {
      const C = lb[cls] as unknown as (new (...a: unknown[]) => object) & Record<string, (...a: unknown[]) => unknown>;
      if (stat === undefined) return new C(...args);
      if (typeof C[stat] === "function" && stat !== "prototype") return C[stat](...args);
    }
    throw new lib.ArgumentError(`wasm-attention worker call: expected a function or class of the library, got ${name}`);
  }
  const obj = objects.get(target) as Record<string, (...a: unknown[]) => unknown> | undefined;
  if (!obj) throw new lib.StateError("this object was released (dispose()) or belongs to another worker");
  if (typeof obj[name] !== "function")
    throw new lib.ArgumentError(`wasm-attention worker call: expected a method of ${obj.constructor.name}, got ${name}`);
  return obj[name]!(...args);
}

const scope = globalThis as unknown as {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: "message", listener: (e: MessageEvent<Request>) => void): void;
};

async function handle(req: Request): Promise<unknown> {
  switch (req.op) {
    case "init":
      await lib.init(decode(req.options) as lib.InitOptions);
      return {
        functions: [...FUNCTIONS],
        classes: [...CLASSES].map((name) => ({
          name,
          statics: Object.getOwnPropertyNames((lib as Record<string, unknown>)[name]).filter(
            (s) => typeof ((lib as Record<string, unknown>)[name] as Record<string, unknown>)[s] === "function",
          ),
        })),
        info: lib.runtimeInfo(),
      };
    case "call":
      return call(req.target, req.name!, decode(req.args ?? []) as unknown[]);
    case "get": {
      const obj = objects.get(req.target!);
      if (!obj) throw new lib.StateError("this object was released (dispose()) or belongs to another worker");
      return (obj as Record<string, unknown>)[req.name!];
    }
    default:
      return undefined;
  }
}

scope.addEventListener("message", async (e) => {
  const req = e.data;
  if (req.op === "release") {
    objects.delete(req.target!);
    return;
  }
  try {
    const value = await handle(req);
    // a state dict's tensors stay in the worker: what get() gives is copied
    const keeps = req.target != null && objects.get(req.target) instanceof StateDictHandle;
    const transfer = req.op === "call" && !keeps ? new Set<ArrayBuffer>() : null;
    const encoded = encode(value, transfer);
    // dispose() ends an object's life here too
    if (req.op === "call" && req.name === "dispose" && req.target != null) objects.delete(req.target);
    scope.postMessage({ id: req.id, ok: true, value: encoded }, transfer ? [...transfer] : []);
  } catch (error) {
    const err = error as Error;
    scope.postMessage({ id: req.id, ok: false, error: { name: err?.name ?? "Error", message: String(err?.message ?? err) } });
  }
});
