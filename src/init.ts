import type { instantiate } from "../build/kernels.js";
import embedded from "../build/kernels.wasm";
import { ArgumentError, InitError } from "./errors.js";
import { Heap } from "./memory.js";
import { checkOptions, describe, tag } from "./tensor.js";

/** @internal The kernel module's exports, typed from the AssemblyScript sources by the build. */
export type Kernels = Awaited<ReturnType<typeof instantiate>>;

/** Where the kernel binary comes from. */
export type WasmSource = WebAssembly.Module | BufferSource | Response | URL;

export interface InitOptions {
  /** The kernel binary; by default the one embedded in this package. */
  wasm?: WasmSource | PromiseLike<WasmSource>;
}

/** @internal */
export interface Runtime {
  kernels: Kernels;
  heap: Heap;
}

let ready: Runtime | null = null;
let pending: Promise<void> | null = null;

/**
 * Loads the kernels. Call once and await it; every other function is synchronous afterwards.
 *
 * `init()` uses the embedded binary. `init(source)` or `init({ wasm: source })` takes a
 * `WebAssembly.Module` (the only form Cloudflare Workers and other edge runtimes allow), bytes,
 * a `Response`, a `URL`, or a promise of one of these. Concurrent calls share one load; after a
 * failure, calling again retries; after success, further calls resolve at once and keep the
 * module already loaded.
 */
export function init(source?: WasmSource | PromiseLike<WasmSource> | InitOptions): Promise<void> {
  if (ready) return Promise.resolve();
  if (!pending) {
    pending = load(source).then(
      (runtime) => {
        ready = runtime;
      },
      (error: unknown) => {
        pending = null;
        throw error;
      },
    );
  }
  return pending;
}

/** @internal The loaded kernels and heap; throws if `init()` has not finished. */
export function runtime(): Runtime {
  if (ready) return ready;
  throw new InitError(
    pending
      ? "wasm-attention is still loading: await init() before calling this function"
      : "wasm-attention is not initialised: call (and await) init() first",
  );
}

async function load(arg: WasmSource | PromiseLike<WasmSource> | InitOptions | undefined): Promise<Runtime> {
  const source = isOptions(arg) ? optionsSource(arg) : arg;
  const module = await compile((await source) ?? embedded);
  const instance = await WebAssembly.instantiate(module, {});
  const kernels = instance.exports as unknown as Kernels;
  return { kernels, heap: new Heap(kernels.memory, kernels.heap_base()) };
}

function optionsSource(options: InitOptions): InitOptions["wasm"] {
  checkOptions("init options", options, ["wasm"]);
  return options.wasm;
}

async function compile(source: WasmSource): Promise<WebAssembly.Module> {
  if (isModule(source)) return source;
  if (tag(source) === "URL") return compile(await fetchUrl(source as URL));
  if (tag(source) === "Response") {
    const response = source as Response;
    if (!response.ok) throw new InitError(`cannot load the kernels: ${response.url || "response"} answered ${response.status}`);
    return compile(await response.arrayBuffer());
  }
  if (ArrayBuffer.isView(source) || tag(source) === "ArrayBuffer" || tag(source) === "SharedArrayBuffer") {
    try {
      return await WebAssembly.compile(source as BufferSource);
    } catch (cause) {
      if (/disallowed|code generation/i.test(String(cause))) {
        throw new InitError(
          "this runtime does not compile WebAssembly from bytes (" + String(cause) + "); " +
            'import the binary as a module (import wasm from "wasm-attention/kernels.wasm") and call init(wasm)',
        );
      }
      throw new InitError(`the kernel binary does not compile: ${String(cause)}`);
    }
  }
  throw new ArgumentError(
    `init: expected a WebAssembly.Module, bytes, a Response, a URL, a promise of one, or { wasm }; got ${describe(source)}`,
  );
}

async function fetchUrl(url: URL): Promise<Response | Uint8Array> {
  if (url.protocol === "file:") {
    // Node's fetch has no file: scheme; the specifier is a variable so bundlers leave it alone
    const fsName = "node:fs/promises";
    const fs = (await import(/* @vite-ignore */ fsName)) as { readFile(u: URL): Promise<Uint8Array> };
    return fs.readFile(url);
  }
  return fetch(url);
}

function isOptions(x: unknown): x is InitOptions {
  if (x === null || typeof x !== "object") return false;
  const proto = Object.getPrototypeOf(x);
  return (proto === Object.prototype || proto === null) && typeof (x as PromiseLike<unknown>).then !== "function";
}

// instanceof fails across realms (node:vm, edge sandboxes); the tag does not
function isModule(x: unknown): x is WebAssembly.Module {
  return tag(x) === "WebAssembly.Module";
}
