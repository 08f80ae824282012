import { ThreadError } from "./errors.js";
import { type Call, type Kernels, POOL_KERNELS as NAMES } from "./kernels.js";
import { workerMain } from "./worker.js";

export type { Call };
const TASK_SLOTS = 1 << 17; // f64 slots for one dispatch's tasks (1 MiB)
const MAX_TASKS = 0xffff;
/**
 * @internal The control block's layout, which the workers receive with their first message: Int32
 * slots (the dispatch counter, then counters tagged with its low 16 bits in their high half) and
 * Float64 slots (the scratch of thread t is at base + t * stride).
 */
export const LAYOUT = {
  gen: 0, // bumped (and notified) to start a dispatch
  next: 1, // gen << 16 | next task to claim
  done: 2, // gen << 16 | tasks completed
  count: 3, // tasks in this dispatch
  stop: 4, // 1: workers return
  failed: 5, // the gen value of a dispatch in which a kernel threw on a worker
  scratchBase: 4, // Float64 slot
  scratchStride: 5, // Float64 slot
  scratch: Number.MIN_SAFE_INTEGER, // SCRATCH
} as const;
const { gen: GEN, next: NEXT, done: DONE, count: COUNT, stop: STOP, failed: FAILED } = LAYOUT;
/** @internal stands for the running thread's scratch in a call; never a real argument (-1 is one: an unbounded side of a band) */
export const SCRATCH = LAYOUT.scratch;

interface Thread {
  terminate(): unknown;
}
type Spawn = (id: number, seen: number) => Thread;

/** @internal Settings of a pool that only the tests change; the library always uses the defaults. */
export interface PoolOptions {
  /** How long a dispatch may make no progress before its worker counts as dead (default 10 s). */
  hangMs?: number;
  /** The script each worker runs, given the pool's own (the tests wrap it to make a worker die). */
  workerSource?: (source: string) => string;
}

/**
 * Runs lists of kernel calls on n threads sharing one WebAssembly memory: this thread and n - 1
 * workers, each with its own instance of the module. Tasks are claimed one at a time through a
 * counter tagged with the dispatch they belong to, so a slow or late worker can never take a task
 * of another dispatch. The caller takes part and blocks (or spins, where it may not block) until
 * every task is done, so the API stays synchronous. A worker that dies holding a task is noticed
 * when the dispatch stops making progress: the call throws a ThreadError, the workers are replaced,
 * and later calls work. A worker that dies idle costs nothing: the others take its share.
 */
export class Pool {
  /**
   * Multiply-adds below which run() keeps every task on the calling thread: a worker asleep
   * between the calls of a decoding step is slow to wake (2-core VM, q8 decoding on 2 threads:
   * attention over 1024 keys ran faster on one thread, over 4096 faster on two). The tests set 0,
   * so that every call that can be split is.
   */
  static dispatchMin = 2 ** 21;
  readonly size: number;
  readonly #kernels: Kernels;
  readonly #args: (number | boolean)[][] = []; // #call's argument arrays, by arity
  readonly #hangMs: number;
  #threads: Thread[] = [];
  readonly #spawn: Spawn | null;
  readonly #ctrl: Int32Array;
  readonly #slots: Float64Array;
  readonly #tasks: Float64Array;
  readonly #canBlock: boolean;

  private constructor(
    kernels: Kernels,
    size: number,
    spawn: Spawn | null,
    ctrl: SharedArrayBuffer | null,
    tasks: SharedArrayBuffer | null,
    hangMs = 10_000,
  ) {
    this.#kernels = kernels;
    this.size = size;
    this.#hangMs = hangMs;
    this.#spawn = spawn;
    this.#ctrl = new Int32Array(ctrl ?? new ArrayBuffer(64));
    this.#slots = new Float64Array(this.#ctrl.buffer);
    this.#tasks = new Float64Array(tasks ?? new ArrayBuffer(8));
    this.#canBlock = canBlockHere();
  }

  static single(kernels: Kernels): Pool {
    return new Pool(kernels, 1, null, null, null);
  }

  /** n - 1 workers running `module` on `memory` (shared); resolves when all have started. */
  static async start(kernels: Kernels, module: WebAssembly.Module, memory: WebAssembly.Memory, n: number, options: PoolOptions = {}): Promise<Pool> {
    const ctrl = new SharedArrayBuffer(64);
    const tasks = new SharedArrayBuffer(8 * TASK_SLOTS);
    const own = `(${workerMain.toString()})()`;
    const source = options.workerSource ? options.workerSource(own) : own;
    const node = await nodeWorkers();
    const started: Promise<void>[] = [];
    const spawn = (id: number, seen: number): Thread => {
      const message = { module, memory, ctrl, tasks, id, names: NAMES, layout: LAYOUT, seen };
      let ready: Promise<void>;
      let thread: Thread;
      if (node) {
        const w = new node.Worker(source, { eval: true });
        w.unref(); // an idle pool does not keep the process alive
        ready = new Promise((ok, fail) => {
          w.once("message", () => ok());
          w.once("error", fail);
        });
        w.postMessage(message);
        thread = w;
      } else {
        const w = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })), { type: "module" });
        ready = new Promise((ok, fail) => {
          w.addEventListener("message", () => ok(), { once: true });
          w.addEventListener("error", (e) => fail(new Error(e.message)), { once: true });
        });
        w.postMessage(message);
        thread = w;
      }
      started.push(ready);
      ready.catch(() => {}); // a replacement that fails to start only leaves the pool smaller
      return thread;
    };
    const pool = new Pool(kernels, n, spawn, ctrl, tasks, options.hangMs);
    pool.#threads = Array.from({ length: n - 1 }, (_, i) => spawn(i + 1, 0));
    try {
      await Promise.all(started);
    } catch (cause) {
      pool.close();
      throw new ThreadError(`a worker thread failed to start: ${String(cause)}`);
    }
    return pool;
  }

  /**
   * Runs every task; `scratch` is where thread t finds its scratch: base + t * stride. `work`: the
   * multiply-adds of all tasks together, when known; below Pool.dispatchMin they all run on this
   * thread, since waking a sleeping worker costs more than they do.
   */
  run(tasks: Call[][], scratch = { base: 0, stride: 0 }, work = Infinity): void {
    if (this.size === 1 || tasks.length === 1 || work < Pool.dispatchMin) {
      for (const task of tasks) for (const call of task) this.#call(call, scratch.base);
      return;
    }
    // as many tasks per dispatch as the task buffer holds (its index, then each task's calls)
    let first = 0;
    let slots = 0;
    for (let i = 0; i <= tasks.length; i++) {
      const need = i < tasks.length ? 2 + tasks[i]!.reduce((n, call) => n + 1 + call.length, 0) : 0;
      if (i === tasks.length || i - first === MAX_TASKS || slots + need > TASK_SLOTS) {
        if (i > first) this.#dispatch(tasks.slice(first, i), scratch);
        first = i;
        slots = 0;
      }
      // a task too big for the buffer on its own runs here, on this thread: the same calls, the same bits
      if (i < tasks.length && need > TASK_SLOTS) {
        for (const call of tasks[i]!) this.#call(call, scratch.base);
        first = i + 1;
        continue;
      }
      slots += need;
    }
  }

  #dispatch(tasks: Call[][], scratch: { base: number; stride: number }): void {
    const buf = this.#tasks;
    let at = tasks.length;
    tasks.forEach((task, i) => {
      buf[i] = at;
      buf[at++] = task.length;
      for (const [name, ...args] of task) {
        buf[at++] = NAMES.indexOf(name);
        buf[at++] = args.length;
        for (const a of args) buf[at++] = Number(a); // a boolean argument crosses as 0 or 1, as a wasm i32
      }
    });
    const ctrl = this.#ctrl;
    const seen = (Atomics.load(ctrl, GEN) + 1) | 0;
    const tag = (seen & 0xffff) << 16;
    const count = tasks.length;
    Atomics.store(ctrl, COUNT, count);
    Atomics.store(ctrl, NEXT, tag);
    Atomics.store(ctrl, DONE, tag);
    this.#slots[LAYOUT.scratchBase] = scratch.base;
    this.#slots[LAYOUT.scratchStride] = scratch.stride;
    Atomics.store(ctrl, GEN, seen);
    Atomics.notify(ctrl, GEN);
    // this thread claims tasks like any worker; a kernel that throws here still lets the others
    // finish before the call returns, since the caller frees the memory they write into
    let failure: unknown = null;
    for (;;) {
      const next = Atomics.load(ctrl, NEXT);
      if ((next & 0xffff) >= count) break;
      if (Atomics.compareExchange(ctrl, NEXT, next, next + 1) !== next) continue;
      try {
        for (const call of tasks[next & 0xffff]!) this.#call(call, scratch.base);
      } catch (error) {
        failure ??= error;
      }
      Atomics.add(ctrl, DONE, 1);
    }
    let done = Atomics.load(ctrl, DONE);
    let progress = performance.now();
    while ((done & 0xffff) < count) {
      if (this.#canBlock) Atomics.wait(ctrl, DONE, done, 50);
      const now = Atomics.load(ctrl, DONE);
      if (now !== done) {
        done = now;
        progress = performance.now();
      } else if (performance.now() - progress > this.#hangMs) {
        this.#replaceWorkers();
        throw new ThreadError(
          `a worker thread stopped before finishing its task (no progress for ${this.#hangMs} ms); the workers were replaced: call again`,
        );
      }
    }
    if (failure !== null) throw failure;
    if (Atomics.load(ctrl, FAILED) === seen) throw new ThreadError("a kernel failed on a worker thread");
  }

  // ends every worker and starts new ones; they join the dispatches that come after they have started
  #replaceWorkers(): void {
    const seen = Atomics.load(this.#ctrl, GEN);
    this.#threads.forEach((t) => t.terminate());
    this.#threads = this.#threads.map((_, i) => this.#spawn!(i + 1, seen));
  }

  /** Ends the workers. */
  close(): void {
    Atomics.store(this.#ctrl, STOP, 1);
    Atomics.add(this.#ctrl, GEN, 1);
    Atomics.notify(this.#ctrl, GEN);
    this.#threads.forEach((t) => t.terminate());
  }

  #call(call: Call, scratch: number): void {
    // the tuple's type matched the kernel's signature where the call was made; here its arguments
    // go through one array per arity, reused (a call per kernel: rest, map and spread made three)
    const n = call.length - 1;
    const args = this.#args[n] ?? new Array<number | boolean>(n);
    this.#args[n] = args;
    for (let i = 0; i < n; i++) {
      const a = call[i + 1] as number | boolean;
      args[i] = a === SCRATCH ? scratch : a;
    }
    (this.#kernels[call[0]] as unknown as (...a: (number | boolean)[]) => void).apply(undefined, args);
  }
}

type NodeWorker = Thread & { once(e: string, f: (x: unknown) => void): void; postMessage(x: unknown): void; unref(): void };

// Node's worker_threads, where there is no web Worker (Node 20); the specifier is a variable so bundlers leave it alone
async function nodeWorkers(): Promise<{ Worker: new (src: string, o: { eval: boolean }) => NodeWorker } | null> {
  if (typeof Worker === "function") return null;
  const name = "node:worker_threads";
  return (await import(/* @vite-ignore */ name)) as { Worker: new (src: string, o: { eval: boolean }) => NodeWorker };
}

// Atomics.wait throws on a browser's main thread: there the caller spins instead
function canBlockHere(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether this runtime can run a shared-memory pool at all, and why not. */
export function threadsUnavailable(): string | null {
  if (typeof SharedArrayBuffer !== "function")
    return "SharedArrayBuffer is not available (browsers need the page cross-origin isolated: COOP/COEP headers)";
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false)
    return "the page is not cross-origin isolated (COOP/COEP headers)";
  if (typeof Worker !== "function" && !(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node)
    return "this runtime has no Worker";
  return null;
}
