import { type Binary, binaries, ENTRY } from "./binaries.js";
import { ArgumentError, InitError } from "./errors.js";
import { Heap } from "./memory.js";
import { Pool, threadsUnavailable } from "./threads.js";
import { checkOptions, describe, tag } from "./tensor.js";

import type { Kernels } from "./kernels.js";

export type { Kernels };

/**
 * A compiled `WebAssembly.Module`. TypeScript declares `WebAssembly.Module` as an empty interface,
 * which any value but null and undefined fits (a number, a string, an options object with a typo);
 * this type takes a real module and refuses those.
 */
export type CompiledModule = { readonly [Symbol.toStringTag]?: "WebAssembly.Module" };

/**
 * Where the kernel binary comes from: a compiled `WebAssembly.Module`, its bytes (an `ArrayBuffer`,
 * `SharedArrayBuffer` or a view of one), a `Response` (from `fetch`), or a `URL` (`file:` URLs
 * are read from disk in Node).
 */
export type WasmSource = CompiledModule | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Response | URL;

export interface InitOptions {
  /**
   * The kernel binary, or a promise of one. Default: the build of this package that `simd` and
   * `threads` select, loaded when init() runs (the `wasm-attention/core` entry has none: there
   * this is required). Not together with `simd`.
   */
  wasm?: WasmSource | PromiseLike<WasmSource>;
  /**
   * Which embedded build: "baseline" (WASM SIMD: the same bits in every runtime), "relaxed"
   * (fused multiply-add where the CPU has it: faster, results may differ in the last bits between
   * machines), or "auto" (default): relaxed where the runtime supports it, unless `deterministic`.
   */
  simd?: "auto" | "baseline" | "relaxed";
  /** Ask for identical results in every runtime: "auto" then means the baseline build. Default false. */
  deterministic?: boolean;
  /**
   * Threads to compute on (default 1): this one and threads - 1 workers sharing one
   * WebAssembly.Memory. Results are bit-identical to one thread. Needs SharedArrayBuffer and
   * Worker (browsers: a cross-origin isolated page); without them the library warns once and runs
   * on one thread. The calling thread takes part and waits for the others.
   */
  threads?: number;
}

/** What `init()` loaded. */
export interface RuntimeInfo {
  /** The build running: "baseline" or "relaxed" SIMD. */
  simd: "baseline" | "relaxed";
  /** Threads computing: 1, or the number asked for where shared memory works. */
  threads: number;
}

/** @internal */
export interface Runtime {
  kernels: Kernels;
  heap: Heap;
  info: RuntimeInfo;
  pool: Pool;
}

// A module whose one function runs f32x4.relaxed_madd on three i8x16.splat(0): it validates only
// where relaxed SIMD is supported. (type () -> v128; body: 3 x (i32.const 0, i8x16.splat), fd 85 02, end)
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x13, 0x01, 0x11, 0x00,
  0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x85, 0x02, 0x0b,
]);

/** Whether this runtime runs relaxed SIMD (Node 20 only with --experimental-wasm-relaxed-simd). */
export function relaxedSimdSupported(): boolean {
  return WebAssembly.validate(RELAXED_PROBE);
}

let ready: Runtime | null = null;
let pending: Promise<void> | null = null;
// the options of the load that is pending or done, to compare a later init() with
let loaded: { source: unknown; options: InitOptions } | null = null;
// bumped by shutdown(): a load that finishes after it does not install itself
let epoch = 0;

/** Most threads `init({ threads })` takes: each is a worker with its own instance of the module. */
export const MAX_THREADS = 64;

/**
 * Loads the kernels. Call once and await it; every other function is synchronous afterwards.
 *
 * `init()` loads the build of this package that the options select (InitOptions.simd, threads):
 * each build is a module of its own, imported only when asked for (wasm-attention/core has none:
 * pass a binary there). `init(source)` or `init({ wasm: source })` takes a
 * `WebAssembly.Module` (the only form Cloudflare Workers and other edge runtimes allow), bytes,
 * a `Response`, a `URL`, or a promise of one of these. Concurrent calls share one load; after a
 * failure, calling again retries; after success, a call with the same options resolves at once,
 * and one with other options is an InitError (call shutdown() first to load another way).
 */
export function init(source?: WasmSource | PromiseLike<WasmSource> | InitOptions): Promise<void> {
  let options: InitOptions;
  let wasm: unknown;
  try {
    options = isOptions(source) ? checkInitOptions(source) : {};
    wasm = isOptions(source) ? options.wasm : source;
    checkSource(wasm);
  } catch (error) {
    return Promise.reject(error);
  }
  if (loaded) {
    const same = loaded.source === wasm && sameOptions(loaded.options, options);
    if (!same) {
      const what = `${describeLoad(loaded.options, loaded.source)}${ready ? " is loaded" : " is loading"}`;
      return Promise.reject(
        new InitError(`init: ${what}; this call asks for ${describeLoad(options, wasm)}. Call shutdown() first to load it another way`),
      );
    }
    return ready ? Promise.resolve() : pending!;
  }
  loaded = { source: wasm, options };
  const mine = epoch;
  pending = load(wasm as WasmSource | PromiseLike<WasmSource> | undefined, options).then(
    (runtime) => {
      if (mine !== epoch) {
        runtime.pool.close();
        runtime.heap.close();
        throw new InitError("init: shutdown() was called while this init() was loading; call init() again");
      }
      ready = runtime;
    },
    (error: unknown) => {
      if (mine === epoch) {
        pending = null;
        loaded = null;
      }
      throw error;
    },
  );
  return pending;
}

/** Which build `init()` loaded. */
export function runtimeInfo(): RuntimeInfo {
  return { ...runtime().info };
}

/**
 * Stops the worker threads, if any, and forgets the loaded module; afterwards the library must be
 * initialised again. Modules, caches, states and resident tensors made before it are stale: using
 * them is a StateError. A pending init() rejects.
 */
export function shutdown(): void {
  ready?.pool.close();
  ready?.heap.close();
  ready = null;
  pending = null;
  loaded = null;
  epoch++;
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

// the exports the host calls: a binary without them is not ours
const REQUIRED = ["heap_base", "relaxed_simd", "gemm_f32", "attention_f32_flash", "attention_f32_prepare_kv"] as const;

async function load(source: WasmSource | PromiseLike<WasmSource> | undefined, options: InitOptions): Promise<Runtime> {
  const threads = threadCount(options.threads);
  const module = await compile((await source) ?? (await embedded(options, threads > 1)));
  const exports = WebAssembly.Module.exports(module).map((e) => e.name);
  const missing = REQUIRED.filter((name) => !exports.includes(name));
  if (missing.length) throw new InitError(`init: this WebAssembly module is not a wasm-attention kernel binary (it lacks ${missing.join(", ")})`);
  // the shared-memory builds import their memory: one for every thread
  const shared = WebAssembly.Module.imports(module).some((i) => i.kind === "memory");
  if (threads > 1 && !shared)
    throw new InitError(
      `init: threads need a shared-memory build (kernels-threads.wasm or kernels-relaxed-threads.wasm); this binary has its own memory`,
    );
  const memory = shared ? new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) : null;
  let instance: WebAssembly.Instance;
  try {
    instance = await WebAssembly.instantiate(module, memory ? { env: { memory } } : {});
  } catch (cause) {
    throw new InitError(`init: the kernel binary does not instantiate: ${String(cause)}`);
  }
  const kernels = instance.exports as unknown as Kernels;
  const mem = memory ?? kernels.memory;
  const pool = threads > 1 ? await Pool.start(kernels, module, mem, threads) : Pool.single(kernels);
  const info: RuntimeInfo = { simd: kernels.relaxed_simd() ? "relaxed" : "baseline", threads: pool.size };
  return { kernels, heap: new Heap(mem, kernels.heap_base()), info, pool };
}

let warned = false;

// the threads asked for, or 1 (with one warning) where this runtime cannot share memory
function threadCount(asked: number | undefined): number {
  if (asked === undefined) return 1;
  const reason = asked > 1 ? threadsUnavailable() : null;
  if (!reason) return asked;
  if (!warned) console.warn(`wasm-attention: running on one thread instead of ${asked}: ${reason}`);
  warned = true;
  return 1;
}

// the options read once and checked: unknown names, types, and combinations
function checkInitOptions(given: InitOptions): InitOptions {
  const options = checkOptions("init options", given, ["wasm", "simd", "deterministic", "threads"]);
  const { simd, deterministic, threads } = options;
  if (simd !== undefined && simd !== "auto" && simd !== "baseline" && simd !== "relaxed") {
    throw new ArgumentError(`init simd: expected "auto", "baseline" or "relaxed", got ${describe(simd)}`);
  }
  if (deterministic !== undefined && typeof deterministic !== "boolean") {
    throw new ArgumentError(`init deterministic: expected a boolean, got ${describe(deterministic)}`);
  }
  if (deterministic && simd === "relaxed")
    throw new ArgumentError('init simd: expected "baseline" or "auto" with deterministic (relaxed SIMD cannot be deterministic), got string relaxed');
  if (options.wasm !== undefined && simd !== undefined) {
    throw new ArgumentError("init simd: not together with wasm (simd picks an embedded build, wasm is your own binary)");
  }
  if (threads !== undefined && (typeof threads !== "number" || !Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS)) {
    throw new ArgumentError(`init threads: expected an integer from 1 to ${MAX_THREADS}, got ${describe(threads)}`);
  }
  return options;
}

// what init() can load: checked before anything is compared or loaded
function checkSource(x: unknown): void {
  if (x === undefined || isModule(x) || ArrayBuffer.isView(x) || ["ArrayBuffer", "SharedArrayBuffer", "Response", "URL"].includes(tag(x))) return;
  if (x !== null && (typeof x === "object" || typeof x === "function") && typeof (x as PromiseLike<unknown>).then === "function") return;
  throw new ArgumentError(`init: expected a WebAssembly.Module, bytes, a Response, a URL, a promise of one, or { wasm }, got ${describe(x)}`);
}

function sameOptions(a: InitOptions, b: InitOptions): boolean {
  return (
    (a.simd ?? "auto") === (b.simd ?? "auto") && (a.deterministic ?? false) === (b.deterministic ?? false) && (a.threads ?? 1) === (b.threads ?? 1)
  );
}

function describeLoad(o: InitOptions, source: unknown): string {
  const parts = [source === undefined ? `the embedded ${o.simd ?? "auto"} build` : "a binary of your own"];
  if (o.deterministic) parts.push("deterministic");
  parts.push(`${o.threads ?? 1} thread${(o.threads ?? 1) > 1 ? "s" : ""}`);
  return parts.join(", ");
}

// the packaged binary the options ask for, loaded now (each build is a module of its own)
async function embedded({ simd = "auto", deterministic = false }: InitOptions, shared: boolean): Promise<Binary> {
  if (!binaries.baseline) {
    throw new InitError(
      `init: ${ENTRY} embeds no kernel binary: pass one to init(): a WebAssembly.Module, bytes, a Response or a URL of ` +
        'wasm-attention/kernels.wasm (in Node: new URL(import.meta.resolve("wasm-attention/kernels.wasm")); with a bundler, its URL of the file), ' +
        'or import from "wasm-attention", which loads its own',
    );
  }
  const relaxed = relaxedSimdSupported();
  if (simd === "relaxed" && !relaxed) {
    throw new InitError(
      'init: simd "relaxed" is not supported by this runtime (Node 20 needs --experimental-wasm-relaxed-simd); use "auto" or "baseline"',
    );
  }
  const useRelaxed = simd === "relaxed" || (simd === "auto" && relaxed && !deterministic);
  const name = shared ? (useRelaxed ? "relaxed-threads" : "threads") : useRelaxed ? "relaxed" : "baseline";
  const chosen = binaries[name];
  if (!chosen) throw new InitError(`init: ${ENTRY} has no shared-memory build: threads are not available here`);
  try {
    return await chosen();
  } catch (cause) {
    throw new InitError(`init: cannot load the embedded ${name} build: ${String(cause)}`);
  }
}

async function compile(source: WasmSource | Binary): Promise<WebAssembly.Module> {
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
      // a page whose Content-Security-Policy does not allow WebAssembly (Chromium names
      // 'wasm-unsafe-eval' or 'unsafe-eval', Firefox and Safari say "Content Security Policy")
      if (/content.security.policy|wasm-unsafe-eval|unsafe-eval|\bCSP\b/i.test(String(cause))) {
        throw new InitError(
          "the page's Content-Security-Policy forbids compiling WebAssembly (" +
            String(cause) +
            "); " +
            "allow it with the 'wasm-unsafe-eval' source in script-src, e.g. Content-Security-Policy: script-src 'self' 'wasm-unsafe-eval'",
        );
      }
      if (/disallowed|code generation/i.test(String(cause))) {
        throw new InitError(
          "this runtime does not compile WebAssembly from bytes (" +
            String(cause) +
            "); " +
            'import the binary as a module (import wasm from "wasm-attention/kernels.wasm") and call init(wasm)',
        );
      }
      throw new InitError(`the kernel binary does not compile: ${String(cause)}`);
    }
  }
  throw new ArgumentError(`init: expected a WebAssembly.Module, bytes, a Response, a URL, a promise of one, or { wasm }, got ${describe(source)}`);
}

async function fetchUrl(url: URL): Promise<Response | Uint8Array> {
  try {
    if (url.protocol !== "file:") return await fetch(url);
    // Node's fetch has no file: scheme; the specifier is a variable so bundlers leave it alone
    const fsName = "node:fs/promises";
    const fs = (await import(/* @vite-ignore */ fsName)) as { readFile(u: URL): Promise<Uint8Array> };
    return await fs.readFile(url);
  } catch (cause) {
    throw new InitError(`init: cannot read the kernel binary at ${url.href}: ${String(cause)}`);
  }
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
