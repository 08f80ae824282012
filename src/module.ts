import { StateError } from "./errors.js";
import { runtime } from "./init.js";
import type { Ctx } from "./kernels.js";
import type { Heap, Scope } from "./memory.js";
import type { IntegerTensor } from "./safetensors.js";
import { type LoadStateDictOptions, loadParams } from "./state-dict.js";
import type { Tensor } from "./tensor.js";

/** One tensor of a state dict: its name (torch's), the shape it must have, and where it goes. */
export interface Param {
  key: string;
  shape: readonly number[];
  load(t: Tensor): void;
}

export type { Ctx };

/**
 * A module holding weights in WebAssembly memory. `loadStateDict(dict, prefix)` checks every
 * expected key (torch's names) before copying any, so a failed load changes nothing. `dispose()`
 * frees the weights; a module dropped without it is freed when garbage-collected.
 */
export abstract class Module {
  #disposed = false;
  #loaded = false;

  /** Every parameter of this module and its children, keys relative to this module. */
  abstract params(): Param[];

  /** The modules inside this one, for dispose(). */
  protected children(): Module[] {
    return [];
  }

  /**
   * Loads every parameter from `dict[prefix + key]` (torch's names) and returns the module. All
   * keys are checked before any is copied: missing and misshapen keys, integer tensors, and with
   * `strict` (the default, as torch) keys under the prefix that the module does not use.
   */
  loadStateDict(dict: Readonly<Record<string, Tensor | IntegerTensor>>, prefix = "", options: LoadStateDictOptions = {}): this {
    this.assertLive();
    loadParams(this.constructor.name, this.params(), dict, prefix, options);
    this.markLoaded();
    return this;
  }

  /**
   * Bytes of WebAssembly memory the parameters of this module and its children take, as held: a
   * "q8" Linear weight or embedding table about a quarter of its "f32" bytes (see `quantize`);
   * biases and norms in float32. 0 before loading and after dispose().
   */
  weightBytes(): number {
    let n = 0;
    for (const m of this.modules()) for (const r of residents.get(m) ?? []) n += r.bytes;
    return n;
  }

  /** @internal this module and every module inside it, each once */
  modules(): Module[] {
    const seen = new Set<Module>();
    const visit = (m: Module): void => {
      if (seen.has(m)) return;
      seen.add(m);
      for (const c of m.children()) visit(c);
    };
    visit(this);
    return [...seen];
  }

  /** The same as dispose(), for `using` (explicit resource management): freed at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Frees the weights. Using the module afterwards is a StateError. */
  dispose(): void {
    if (this.#disposed) return;
    for (const child of this.children()) child.dispose();
    this.freeOwn();
    this.#disposed = true;
  }

  protected markLoaded(): void {
    this.#loaded = true;
    for (const child of this.children()) child.markLoaded();
  }

  /** A leaf is ready once its weights are loaded; a composite once all its children are. */
  protected get ready(): boolean {
    const kids = this.children();
    return kids.length ? kids.every((c) => c.ready) : this.#loaded;
  }

  protected freeOwn(): void {}

  /** Whether weights of this module or a child were loaded before shutdown(): their memory is gone. */
  protected get stale(): boolean {
    return this.children().some((c) => c.stale);
  }

  protected assertLive(): void {
    if (this.#disposed) throw new StateError(`${this.constructor.name} was disposed: it can no longer be used`);
  }

  /** @internal throws a StateError unless the weights are loaded and not disposed */
  assertReady(): void {
    this.assertLive();
    if (!this.ready) throw new StateError(`${this.constructor.name} has no weights: call loadStateDict() first`);
    if (this.stale)
      throw new StateError(`${this.constructor.name} was loaded before shutdown(): its weights are gone; make and load it again after init()`);
  }
}

// the Residents of each module, for weightBytes()
const residents = new WeakMap<object, Resident[]>();

/** A leaf module's tensors in WebAssembly memory, by name. */
export class Resident {
  readonly #blocks = new Map<string, number>();
  readonly #sizes = new Map<string, number>();
  readonly #owner: object;
  #heap: Heap | null = null;

  /** `owner` is the module whose garbage collection frees these tensors if dispose() was never called. */
  constructor(owner: object) {
    this.#owner = owner;
    residents.set(owner, [...(residents.get(owner) ?? []), this]);
  }

  /** Copies `data` in as `name` (replacing what was there); `pack` lays out a Linear weight (N, K) for gemm_f32 (pack_f32_w). */
  set(name: string, data: Float32Array, pack?: { N: number; K: number }): void {
    const { kernels: K, heap } = runtime();
    this.#attach(heap);
    const bytes = pack ? 4 * pack.K * Math.ceil(pack.N / 32) * 32 : data.byteLength;
    heap.need(`loading "${name}"`, bytes + (pack ? data.byteLength : 0));
    const at = heap.alloc(bytes);
    try {
      if (!pack) heap.f32(at, data.length).set(data);
      else {
        const src = heap.alloc(data.byteLength);
        try {
          heap.f32(src, data.length).set(data);
          K.pack_f32_w(at, src, pack.K, pack.N, pack.K);
        } finally {
          heap.free(src);
        }
      }
    } catch (error) {
      heap.free(at); // nothing stays allocated when the copy fails
      throw error;
    }
    this.#replace(heap, name, at, bytes);
  }

  /**
   * Allocates `bytes` as `name` (replacing what was there) and has `write(at, scope)` fill them
   * (kernels that lay out a weight); what it allocates in `scope`, at most `scratch` bytes, is
   * freed afterwards. Nothing changes if `write` throws.
   */
  setWith(name: string, bytes: number, scratch: number, write: (at: number, scope: Scope) => void): void {
    const { heap } = runtime();
    this.#attach(heap);
    heap.need(`loading "${name}"`, bytes + scratch);
    const at = heap.alloc(bytes);
    const scope = heap.scope();
    try {
      write(at, scope);
    } catch (error) {
      heap.free(at);
      throw error;
    } finally {
      scope.release();
    }
    this.#replace(heap, name, at, bytes);
  }

  /** Bytes of WebAssembly memory these tensors take (0 once freed, or after shutdown()). */
  get bytes(): number {
    if (this.stale) return 0;
    let n = 0;
    for (const b of this.#sizes.values()) n += b;
    return n;
  }

  // first weights, or weights loaded again after shutdown() + init(): the old heap is gone
  #attach(heap: Heap): void {
    if (this.#heap === heap) return;
    this.#blocks.clear();
    this.#sizes.clear();
    this.#heap = heap;
    const blocks = this.#blocks; // not `this`: what the registry holds must not keep the owner alive
    heap.track(this.#owner, () => blocks.values());
  }

  #replace(heap: Heap, name: string, at: number, bytes: number): void {
    const old = this.#blocks.get(name);
    if (old !== undefined) heap.free(old);
    this.#blocks.set(name, at);
    this.#sizes.set(name, bytes);
  }

  /** The address of `name`; a StateError when its memory is gone (made before shutdown()). */
  get(name: string): number {
    this.#heap?.assertOpen("this module");
    return this.#blocks.get(name) ?? 0;
  }

  /** Whether this module's weights live in the current heap (false after shutdown() + init()). */
  get stale(): boolean {
    return this.#heap?.closed ?? false;
  }

  free(): void {
    if (!this.#heap) return;
    this.#heap.untrack(this.#owner);
    if (!this.#heap.closed) for (const at of this.#blocks.values()) this.#heap.free(at);
    this.#blocks.clear();
    this.#sizes.clear();
  }
}

/** Runs `body` with the kernels and a scope whose allocations are freed afterwards. */
export function withScope<T>(body: (ctx: Ctx) => T): T {
  const { kernels, heap, pool } = runtime();
  const scope = heap.scope();
  try {
    return body({ K: kernels, heap, scope, pool });
  } finally {
    scope.release();
  }
}

/** Runs `body` with a scope of its own inside `ctx`: its scratch is freed when it returns. */
export function nested<T>(ctx: Ctx, body: (ctx: Ctx) => T): T {
  const scope = ctx.heap.scope();
  try {
    return body({ ...ctx, scope });
  } finally {
    scope.release();
  }
}

/** Prefixes the keys of child params: prefixed("self_attn.", attn.params()). */
export function prefixed(prefix: string, params: Param[]): Param[] {
  return params.map((p) => ({ ...p, key: prefix + p.key }));
}
