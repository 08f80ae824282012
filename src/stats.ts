import { runtime } from "./init.js";

export interface MemoryStats {
  /** Size of the WebAssembly memory (it grows on demand and never shrinks). */
  bufferBytes: number;
  /** Bytes allocated and not yet freed; 0 between calls. */
  liveBytes: number;
}

/** How much WebAssembly memory the library holds right now. */
export function memoryStats(): MemoryStats {
  const { heap } = runtime();
  return { bufferBytes: heap.memory.buffer.byteLength, liveBytes: heap.liveBytes };
}
