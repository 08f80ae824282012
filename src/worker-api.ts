// wasm-attention/worker: the library in a dedicated Web Worker, for pages whose main thread must
// stay responsive (a BERT-sized forward takes hundreds of milliseconds, and with threads the main
// thread would spin). createWorker() starts the worker (src/worker-entry.ts), loads the kernels
// there, and returns the library's functions and classes as async functions; objects made in the
// worker stay there, and the page holds references to them. Calls run one at a time, in order.
import { ArgumentError, InitError, OutOfMemoryError, ShapeError, StateError, ThreadError, WasmAttentionError } from "./errors.js";
import type * as Lib from "./index.js";

export { ArgumentError, InitError, OutOfMemoryError, ShapeError, StateError, ThreadError, WasmAttentionError };

const REF = "__wasmAttentionRef"; // as src/worker-entry.ts

/** What createWorker() takes: init()'s options, and optionally the worker to use. */
export interface CreateWorkerOptions extends Omit<Lib.InitOptions, "wasm"> {
  /**
   * The kernel binary, as for init(); a Response or a promise is read here and its bytes sent.
   * Default: the build the worker's copy of the library selects.
   */
  wasm?: Lib.WasmSource | PromiseLike<Lib.WasmSource>;
  /**
   * The Worker to run the library in, or a function that makes it. It must run the module
   * `wasm-attention/worker-entry` (as a module worker). Default:
   * `new Worker(new URL("./worker-entry.js", import.meta.url), { type: "module" })`, which Vite
   * and webpack bundle as they find it; with esbuild, bundle `wasm-attention/worker-entry` as an
   * entry of its own and pass `new Worker(itsUrl, { type: "module" })`.
   */
  worker?: Worker | (() => Worker);
}

/** Settings of one call (see `with`). */
export interface CallOptions {
  /**
   * Cancels the call: one still waiting for its turn is never run; the call that is running
   * rejects at once, and its result, when the worker finishes, is thrown away (the worker cannot
   * stop a kernel midway: `terminate()` can, and ends every object with it).
   */
  signal?: AbortSignal;
  /**
   * Transfer the buffers of the arguments' typed arrays to the worker instead of copying them
   * (they are detached here afterwards). Results are always transferred, never copied.
   */
  transfer?: boolean;
}

type AnyFn = (...args: never[]) => unknown;
type LiveObject = Lib.Module | Lib.KVCache | Lib.DecoderCache | Lib.LinearAttentionState | Lib.ResidentTensor;

/** A state dict that lives in the worker (what `loadSafetensors` gives): pass it to `loadStateDict`. */
export interface RemoteStateDict {
  /** The tensor names. */
  keys(): Promise<string[]>;
  /** A copy of one tensor. */
  get(name: string): Promise<Lib.Tensor | Lib.IntegerTensor | undefined>;
}

/** What a call gives back: objects that live in the worker as references, the rest as data. */
export type Remoted<T> = T extends LiveObject ? Remote<T> : T extends Lib.StateDict ? RemoteStateDict : T;

/** What a call takes: the library's arguments, with references where it takes live objects. */
export type RemoteArg<T> = T extends LiveObject
  ? Remote<T>
  : T extends ArrayBufferView | ArrayBuffer | AnyFn
    ? T
    : T extends Lib.StateDict
      ? RemoteStateDict | T
      : T extends readonly (infer E)[]
        ? readonly RemoteArg<E>[]
        : T extends object
          ? { [K in keyof T]: RemoteArg<T[K]> }
          : T;

type RemoteArgs<P extends readonly unknown[]> = { [K in keyof P]: RemoteArg<P[K]> };
type RemoteMethod<F> = F extends (...args: infer A) => infer R ? (...args: RemoteArgs<A>) => Promise<Remoted<R>> : never;

/**
 * An object living in the worker: its methods return promises, its properties are promises of
 * their values, `with({ signal, transfer })` gives a view whose calls use those settings.
 */
export type Remote<T> = {
  readonly [K in keyof T as K extends symbol ? never : K]: T[K] extends AnyFn ? RemoteMethod<T[K]> : Promise<T[K]>;
} & {
  with(options: CallOptions): Remote<T>;
  /** Frees the object in the worker (its dispose(), where it has one) and forgets it. */
  [Symbol.dispose](): void;
};

type Constructor = abstract new (...args: never[]) => unknown;
type Statics<C> = { [K in keyof C as K extends "prototype" ? never : K]: C[K] extends AnyFn ? RemoteMethod<C[K]> : never };
/** A class of the library: called (without `new`) it makes an instance in the worker. */
export type RemoteClass<C extends Constructor> = ((...args: RemoteArgs<ConstructorParameters<C>>) => Promise<Remote<InstanceType<C>>>) & Statics<C>;

type LibKey = keyof typeof Lib;
type ClassKey = { [K in LibKey]: (typeof Lib)[K] extends Constructor ? (K extends "Module" | `${string}Error` ? never : K) : never }[LibKey];
type FunctionKey = {
  [K in LibKey]: (typeof Lib)[K] extends Constructor ? never : (typeof Lib)[K] extends AnyFn ? (K extends "init" | "shutdown" ? never : K) : never;
}[LibKey];

/** The library, run in a worker: the same names, every call a promise. */
export type WorkerLibrary = { readonly [K in ClassKey]: (typeof Lib)[K] extends Constructor ? RemoteClass<(typeof Lib)[K]> : never } & {
  readonly [K in Exclude<FunctionKey, "scaledDotProductAttention" | "tensor" | "linearAttention">]: RemoteMethod<(typeof Lib)[K]>;
} & {
  scaledDotProductAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options: Lib.AttentionOptions & { returnScores: "scaled" | "softcapped" | "masked" },
  ): Promise<Lib.AttentionResult & { scores: Lib.Tensor }>;
  scaledDotProductAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options: Lib.AttentionOptions & { returnWeights: true },
  ): Promise<Lib.AttentionResult & { weights: Lib.Tensor }>;
  scaledDotProductAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options?: Omit<Lib.AttentionOptions, "returnWeights" | "returnScores"> & { returnWeights?: false },
  ): Promise<Lib.Tensor>;
  scaledDotProductAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options?: Lib.AttentionOptions,
  ): Promise<Lib.Tensor | Lib.AttentionResult>;
  linearAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options: Lib.LinearAttentionCallOptions & { returnState: true },
  ): Promise<{ output: Lib.Tensor; state: Lib.Tensor }>;
  linearAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options?: Lib.LinearAttentionCallOptions & { returnState?: false },
  ): Promise<Lib.Tensor>;
  linearAttention(
    query: Lib.Tensor,
    key: Lib.Tensor,
    value: Lib.Tensor,
    options?: Lib.LinearAttentionCallOptions,
  ): Promise<Lib.Tensor | { output: Lib.Tensor; state: Lib.Tensor }>;
  tensor(data: Uint8Array | readonly boolean[], shape: readonly number[]): Promise<Lib.BoolTensor>;
  tensor(data: Float32Array | ArrayLike<number>, shape: readonly number[]): Promise<Lib.Tensor>;
  /** Parses a safetensors file in the worker (the bytes are transferred there); the dict stays there. */
  loadSafetensors(bytes: Uint8Array | ArrayBuffer, options?: Lib.SafetensorsOptions): Promise<RemoteStateDict>;
  /** What init() loaded in the worker. */
  readonly info: Lib.RuntimeInfo;
  /** A view of the library whose calls use these settings (a signal, transfer). */
  with(options: CallOptions): WorkerLibrary;
  /** Stops the worker at once, a running call with it; every pending call rejects with a StateError. */
  terminate(): void;
};

interface Manifest {
  functions: string[];
  classes: { name: string; statics: string[] }[];
  info: Lib.RuntimeInfo;
}

interface Pending {
  message: Record<string, unknown>;
  transfer: Transferable[];
  signal: AbortSignal | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  onAbort?: () => void;
}

const ERRORS: Record<string, new (message: string) => Error> = {
  WasmAttentionError,
  ArgumentError,
  ShapeError,
  InitError,
  OutOfMemoryError,
  StateError,
  ThreadError,
};

/**
 * Starts the library in a dedicated Worker and resolves to its functions and classes once the
 * kernels are loaded there (`options` as init()'s: `simd`, `deterministic`, `threads`, `wasm`).
 * Every function returns a promise; classes are called without `new`
 * (`await lib.TransformerEncoderLayer({ dModel, nhead })`) and give a reference whose methods
 * return promises. Tensors cross by structured clone; results come back transferred.
 */
export async function createWorker(options: CreateWorkerOptions = {}): Promise<WorkerLibrary> {
  const { worker: given, wasm, ...init } = options;
  if (typeof Worker !== "function" && given === undefined)
    throw new InitError("createWorker: this runtime has no Worker (it is for browsers and runtimes with Web Workers)");
  const worker = typeof given === "function" ? given() : (given ?? new Worker(new URL("./worker-entry.js", import.meta.url), { type: "module" }));
  const channel = new Channel(worker);
  const source = wasm === undefined ? undefined : await sendable(await wasm);
  let manifest: Manifest;
  try {
    manifest = (await channel.request(
      { op: "init", options: { ...init, ...(source === undefined ? {} : { wasm: source }) } },
      [],
      undefined,
    )) as Manifest;
  } catch (error) {
    worker.terminate();
    throw error;
  }
  return library(channel, manifest, {});
}

// what can cross to the worker: a URL as its text (made a URL again there), a Response read
async function sendable(source: Lib.WasmSource): Promise<unknown> {
  const tag = Object.prototype.toString.call(source).slice(8, -1);
  if (tag === "URL") return { [`${REF}Url`]: (source as URL).href };
  if (tag === "Response") {
    const response = source as Response;
    if (!response.ok) throw new InitError(`createWorker: ${response.url || "the response"} answered ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }
  return source;
}

class Channel {
  readonly #worker: Worker;
  readonly #waiting: Pending[] = [];
  #running: (Pending & { id: number }) | null = null;
  #nextId = 1;
  #dead: Error | null = null;

  constructor(worker: Worker) {
    this.#worker = worker;
    worker.addEventListener("message", (e: MessageEvent) => this.#settle(e.data));
    worker.addEventListener("error", (e: ErrorEvent) =>
      this.#fail(new InitError(`wasm-attention worker failed: ${e.message ?? "could not start the worker script"}`)),
    );
    worker.addEventListener("messageerror", () => this.#fail(new InitError("wasm-attention worker: a message could not be read")));
  }

  request(message: Record<string, unknown>, transfer: Transferable[], signal: AbortSignal | undefined): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const p: Pending = { message, transfer, signal, resolve, reject };
      if (signal) {
        p.onAbort = () => {
          const at = this.#waiting.indexOf(p);
          if (at >= 0) this.#waiting.splice(at, 1); // never sent
          // the running one finishes in the worker; #settle drops its result
          reject(signal.reason);
        };
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.#waiting.push(p);
      this.#pump();
    });
  }

  post(message: Record<string, unknown>): void {
    if (!this.#dead) this.#worker.postMessage(message);
  }

  terminate(): void {
    this.#worker.terminate();
    this.#fail(new StateError("the wasm-attention worker was terminated"));
  }

  #pump(): void {
    if (this.#running || this.#dead) return;
    const next = this.#waiting.shift();
    if (!next) return;
    const id = this.#nextId++;
    this.#running = { ...next, id };
    try {
      this.#worker.postMessage({ ...next.message, id }, next.transfer);
    } catch (error) {
      this.#running = null;
      next.signal?.removeEventListener("abort", next.onAbort!);
      next.reject(
        new ArgumentError(
          `wasm-attention worker arguments: expected values that can be sent to a worker (functions and class instances other than the worker's own objects cannot cross), got ${String(error)}`,
        ),
      );
      this.#pump();
    }
  }

  #settle(data: { id: number; ok: boolean; value?: unknown; error?: { name: string; message: string } }): void {
    const running = this.#running;
    if (!running || data.id !== running.id) return;
    this.#running = null;
    running.signal?.removeEventListener("abort", running.onAbort!);
    if (data.ok) running.resolve(data.value);
    else {
      const E = ERRORS[data.error!.name];
      const error = E ? new E(data.error!.message) : Object.assign(new Error(data.error!.message), { name: data.error!.name });
      running.reject(error);
    }
    this.#pump();
  }

  #fail(error: Error): void {
    if (this.#dead) return;
    this.#dead = error;
    for (const p of [...(this.#running ? [this.#running] : []), ...this.#waiting.splice(0)]) p.reject(error);
    this.#running = null;
  }
}

// the arguments as sent: references for the worker's objects, and the buffers to transfer
function encodeArgs(args: unknown[], transfer: boolean): { args: unknown[]; transfer: Transferable[] } {
  const buffers = new Set<ArrayBuffer>();
  const walk = (v: unknown): unknown => {
    if (v === null || typeof v !== "object") {
      if (typeof v === "function")
        throw new ArgumentError(
          "wasm-attention worker arguments: expected values that can be sent to a worker, got a function (callbacks such as onToken are not supported there)",
        );
      return v;
    }
    const ref = refs.get(v);
    if (ref !== undefined) return { [REF]: ref };
    if (ArrayBuffer.isView(v)) {
      if (transfer && v.buffer instanceof ArrayBuffer) buffers.add(v.buffer);
      return v;
    }
    if (v instanceof ArrayBuffer) {
      if (transfer) buffers.add(v);
      return v;
    }
    if (Array.isArray(v)) return v.map(walk);
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x);
    return out;
  };
  return { args: args.map(walk), transfer: [...buffers] };
}

// the page's references: proxy -> the number of the object in the worker
const refs = new WeakMap<object, number>();

function decodeValue(channel: Channel, v: unknown): unknown {
  if (v === null || typeof v !== "object" || ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v)) return v.map((x) => decodeValue(channel, x));
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return v;
  if (REF in v) {
    const r = v as { [REF]: number; kind: string; methods: string[]; getters: string[] };
    return remoteObject(channel, r[REF], r.kind, r.methods, r.getters, {});
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = decodeValue(channel, x);
  return out;
}

function invoke(channel: Channel, target: number | null, name: string, args: unknown[], settings: CallOptions): Promise<unknown> {
  let message: { args: unknown[]; transfer: Transferable[] };
  try {
    message = encodeArgs(args, settings.transfer ?? name === "loadSafetensors");
  } catch (error) {
    return Promise.reject(error);
  }
  return channel.request({ op: "call", target, name, args: message.args }, message.transfer, settings.signal).then((v) => decodeValue(channel, v));
}

function remoteObject(channel: Channel, ref: number, kind: string, methods: string[], getters: string[], settings: CallOptions): object {
  const obj: Record<string | symbol, unknown> = Object.create(null);
  for (const m of methods) obj[m] = (...args: unknown[]) => invoke(channel, ref, m, args, settings);
  for (const g of getters)
    Object.defineProperty(obj, g, {
      enumerable: true,
      get: () => channel.request({ op: "get", target: ref, name: g }, [], settings.signal).then((v) => decodeValue(channel, v)),
    });
  obj.with = (s: CallOptions) => remoteObject(channel, ref, kind, methods, getters, { ...settings, ...s });
  const release = () => {
    if (methods.includes("dispose")) void invoke(channel, ref, "dispose", [], {}).catch(() => {});
    else channel.post({ op: "release", target: ref });
  };
  if (typeof Symbol.dispose === "symbol") obj[Symbol.dispose] = release;
  Object.defineProperty(obj, Symbol.toStringTag, { value: `Remote ${kind}` });
  refs.set(obj, ref);
  return Object.freeze(obj);
}

function library(channel: Channel, manifest: Manifest, settings: CallOptions): WorkerLibrary {
  const lib: Record<string, unknown> = Object.create(null);
  for (const name of manifest.functions) lib[name] = (...args: unknown[]) => invoke(channel, null, name, args, settings);
  for (const { name, statics } of manifest.classes) {
    const make = (...args: unknown[]) => invoke(channel, null, name, args, settings);
    for (const s of statics)
      (make as unknown as Record<string, unknown>)[s] = (...args: unknown[]) => invoke(channel, null, `${name}.${s}`, args, settings);
    lib[name] = make;
  }
  Object.assign(lib, ERRORS);
  lib.info = { ...manifest.info };
  lib.with = (s: CallOptions) => library(channel, manifest, { ...settings, ...s });
  lib.terminate = () => channel.terminate();
  return Object.freeze(lib) as unknown as WorkerLibrary;
}
