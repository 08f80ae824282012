// The kernel boundary's types, from the declarations AssemblyScript writes for the kernels
// (build/kernels.d.ts): a call with the wrong count, order or type of arguments does not compile.
import type { instantiate } from "../build/kernels.js";
import type { Heap, Scope } from "./memory.js";
import type { Pool } from "./threads.js";

/** @internal The kernel module's exports, typed from the AssemblyScript sources by the build. */
export type Kernels = Awaited<ReturnType<typeof instantiate>>;

/** @internal The kernels the thread pool runs; a task names one by its index in this list. */
export const POOL_KERNELS = [
  "gemm_f32",
  "attention_f32_prepare_kv",
  "attention_f32_flash",
  "quantize_rows_i8",
  "gemm_q8",
  "gemm_f16",
  "gemm_q4",
] as const;
/** @internal */
export type PoolKernel = (typeof POOL_KERNELS)[number];

/**
 * @internal A kernel call as the pool runs it: the export's name, then exactly its arguments (see
 * SCRATCH in threads.ts for the running thread's scratch).
 */
export type Call = { [N in PoolKernel]: [name: N, ...args: Parameters<Kernels[N]>] }[PoolKernel];

/** What a forward pass works with: the kernels, the heap, the call's scope and the thread pool. */
export interface Ctx {
  K: Kernels;
  heap: Heap;
  scope: Scope;
  pool: Pool;
}
