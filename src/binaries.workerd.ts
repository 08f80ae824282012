// Cloudflare Workers (workerd): the .wasm files are imported as WebAssembly.Module (wrangler's
// CompiledWasm rule), next to this entry in dist/. No shared-memory builds: Workers have no threads.
import baseline from "./kernels.wasm";
import relaxed from "./kernels-relaxed.wasm";
import type { Binaries } from "./binaries.js";

/** @internal */
export const binaries: Binaries = {
  baseline: async () => baseline as unknown as WebAssembly.Module,
  relaxed: async () => relaxed as unknown as WebAssembly.Module,
};

/** @internal */
export const ENTRY = "wasm-attention (workerd)";
