import { InitError } from "./errors.js";
import type { Kernels } from "./init.js";
import { workerMain } from "./worker.js";

/** A kernel call: the export's name and its arguments; SCRATCH stands for the running thread's scratch. */
export type Call = [name: KernelName, ...args: number[]];
export type KernelName = "gemm_f32" | "attention_f32_prepare_kv" | "attention_f32_flash";
/** @internal */
export const SCRATCH = -1;

const NAMES: KernelName[] = ["gemm_f32", "attention_f32_prepare_kv", "attention_f32_flash"];
const TASK_SLOTS = 1 << 17; // f64 slots for one dispatch's tasks (1 MiB)

interface Thread {
  terminate(): unknown;
}

/**
 * Runs lists of kernel calls on n threads sharing one WebAssembly memory: this thread and n - 1
 * workers, each with its own instance of the module. Each task (a list of calls, run in order)
 * goes to whichever thread takes it next; the caller takes part and blocks until all are done,
 * so the API stays synchronous. With n = 1 everything runs here, in the same order.
 */
export class Pool {
  readonly size: number;
  readonly #kernels: Kernels;
  readonly #threads: Thread[];
  readonly #ctrl: Int32Array;
  readonly #slots: Float64Array;
  readonly #tasks: Float64Array;
  readonly #canBlock: boolean;

  private constructor(kernels: Kernels, threads: Thread[], ctrl: SharedArrayBuffer | null, tasks: SharedArrayBuffer | null, canBlock: boolean) {
    this.#kernels = kernels;
    this.#threads = threads;
    this.size = threads.length + 1;
    this.#ctrl = new Int32Array(ctrl ?? new ArrayBuffer(64));
    this.#slots = new Float64Array(this.#ctrl.buffer);
    this.#tasks = new Float64Array(tasks ?? new ArrayBuffer(8));
    this.#canBlock = canBlock;
  }

  static single(kernels: Kernels): Pool {
    return new Pool(kernels, [], null, null, false);
  }

  /** n - 1 workers running `module` on `memory` (shared); resolves when all have started. */
  static async start(kernels: Kernels, module: WebAssembly.Module, memory: WebAssembly.Memory, n: number): Promise<Pool> {
    const ctrl = new SharedArrayBuffer(64);
    const tasks = new SharedArrayBuffer(8 * TASK_SLOTS);
    const source = `(${workerMain.toString()})()`;
    const threads: Thread[] = [];
    const started: Promise<void>[] = [];
    const node = await nodeWorkers();
    for (let id = 1; id < n; id++) {
      const message = { module, memory, ctrl, tasks, id, names: NAMES };
      if (node) {
        const w = new node.Worker(source, { eval: true });
        w.unref(); // an idle pool does not keep the process alive
        threads.push(w);
        started.push(new Promise((ok, fail) => {
          w.once("message", () => ok());
          w.once("error", fail);
        }));
        w.postMessage(message);
      } else {
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        const w = new Worker(url, { type: "module" });
        threads.push(w);
        started.push(new Promise((ok, fail) => {
          w.addEventListener("message", () => ok(), { once: true });
          w.addEventListener("error", (e) => fail(new InitError(`a worker failed to start: ${e.message}`)), { once: true });
        }));
        w.postMessage(message);
      }
    }
    try {
      await Promise.all(started);
    } catch (cause) {
      threads.forEach((t) => t.terminate());
      throw cause instanceof InitError ? cause : new InitError(`a worker failed to start: ${String(cause)}`);
    }
    return new Pool(kernels, threads, ctrl, tasks, canBlockHere());
  }

  /** Runs every task; `scratch` is where thread t finds its scratch: base + t * stride. */
  run(tasks: Call[][], scratch = { base: 0, stride: 0 }): void {
    if (this.size === 1 || tasks.length === 1) {
      for (const task of tasks) for (const call of task) this.#call(call, scratch.base);
      return;
    }
    const buf = this.#tasks;
    let at = tasks.length;
    tasks.forEach((task, i) => {
      buf[i] = at;
      buf[at++] = task.length;
      for (const [name, ...args] of task) {
        buf[at++] = NAMES.indexOf(name);
        buf[at++] = args.length;
        for (const a of args) buf[at++] = a;
      }
    });
    if (at > buf.length) throw new InitError("wasm-attention internal: too many tasks for one dispatch");
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, 1, 0);
    Atomics.store(ctrl, 2, 0);
    Atomics.store(ctrl, 3, tasks.length);
    Atomics.store(ctrl, 5, 0);
    this.#slots[4] = scratch.base;
    this.#slots[5] = scratch.stride;
    Atomics.add(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    for (let i = Atomics.add(ctrl, 1, 1); i < tasks.length; i = Atomics.add(ctrl, 1, 1)) {
      for (const call of tasks[i]) this.#call(call, scratch.base);
    }
    const workers = this.size - 1;
    for (let done = Atomics.load(ctrl, 2); done < workers; done = Atomics.load(ctrl, 2)) {
      if (this.#canBlock) Atomics.wait(ctrl, 2, done, 50);
    }
    if (Atomics.load(ctrl, 5)) throw new InitError("a kernel failed on a worker thread");
  }

  /** Ends the workers. */
  close(): void {
    Atomics.store(this.#ctrl, 4, 1);
    Atomics.add(this.#ctrl, 0, 1);
    Atomics.notify(this.#ctrl, 0);
    this.#threads.forEach((t) => t.terminate());
  }

  #call([name, ...args]: Call, scratch: number): void {
    const fn = this.#kernels[name] as unknown as (...a: number[]) => void;
    fn(...args.map((a) => (a === SCRATCH ? scratch : a)));
  }
}

type NodeWorker = { once(e: string, f: (x: unknown) => void): void; postMessage(x: unknown): void; terminate(): unknown; unref(): void };

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
  if (typeof SharedArrayBuffer !== "function") return "SharedArrayBuffer is not available (browsers need the page cross-origin isolated: COOP/COEP headers)";
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) return "the page is not cross-origin isolated (COOP/COEP headers)";
  if (typeof Worker !== "function" && !(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node) return "this runtime has no Worker";
  return null;
}
