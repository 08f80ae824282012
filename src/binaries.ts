// The kernel binaries init() uses by default: embedded as bytes (the default entry). The edge
// entries (binaries.workerd.ts, binaries.edge-light.ts) swap this file for imports of the .wasm
// files as modules, since those runtimes refuse to compile bytes.
import baseline from "../build/kernels.wasm";
import relaxed from "../build/kernels-relaxed.wasm";
import relaxedThreads from "../build/kernels-relaxed-threads.wasm";
import threads from "../build/kernels-threads.wasm";

/** @internal */
export type Binary = Uint8Array | WebAssembly.Module;

/** @internal the builds by name; the shared-memory ones may be absent */
export const binaries: { baseline: Binary; relaxed: Binary; threads?: Binary; "relaxed-threads"?: Binary } = {
  baseline,
  relaxed,
  threads,
  "relaxed-threads": relaxedThreads,
};
