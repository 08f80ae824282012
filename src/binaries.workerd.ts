// Cloudflare Workers (workerd): the .wasm files are imported as WebAssembly.Module (wrangler's
// CompiledWasm rule), next to this entry in dist/. No shared-memory builds: Workers have no threads.
import baseline from "./kernels.wasm";
import relaxed from "./kernels-relaxed.wasm";
import type { Binary } from "./binaries.js";

/** @internal */
export const binaries: { baseline: Binary; relaxed: Binary; threads?: Binary; "relaxed-threads"?: Binary } = {
  baseline: baseline as unknown as WebAssembly.Module,
  relaxed: relaxed as unknown as WebAssembly.Module,
};
