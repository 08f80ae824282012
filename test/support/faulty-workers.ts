// Fault injection for the thread pool (test/threads.test.ts), kept out of the library: a pool started
// with `Pool.start(..., { workerSource })` runs the pool's own worker script behind one of these
// preludes (Node worker_threads), and with `faultyKernels` on this thread.
import type { Kernels } from "../../src/init.js";
import type { Call } from "../../src/threads.js";

/**
 * A call no real task makes (gemm_f32 with no arguments): a worker behind `diesInMarkedCall` exits
 * in it; on this thread (`faultyKernels`) it waits 20 ms, so that the workers get to claim some.
 */
export const MARKED = ["gemm_f32"] as unknown as Call; // deliberately no valid call: the type rightly refuses it

/** The worker exits inside the first MARKED call it claims: it dies holding a task. */
export const diesInMarkedCall = (source: string): string => `{
  const Instance = WebAssembly.Instance;
  WebAssembly.Instance = function (module, imports) {
    const exports = { ...new Instance(module, imports).exports };
    const gemm = exports.gemm_f32;
    exports.gemm_f32 = (...args) => (args.length === 0 ? process.exit(1) : gemm(...args));
    return { exports };
  };
}
${source}`;

/** The worker starts, says it is ready, and exits when it first waits for work: it dies idle. */
export const diesWhenIdle = (source: string): string => `Atomics.wait = () => process.exit(1);\n${source}`;

/** This thread's kernels, with MARKED calls counted (in `marked.calls`) and each taking 20 ms. */
export function faultyKernels(kernels: Kernels): { kernels: Kernels; marked: { calls: number } } {
  const marked = { calls: 0 };
  const gemm = kernels.gemm_f32;
  const wrapped = (...args: Parameters<typeof gemm>) => {
    if (args.length > 0) return gemm(...args);
    marked.calls++;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  };
  return { kernels: { ...kernels, gemm_f32: wrapped as typeof gemm }, marked };
}
