// Vercel's edge runtime: `?module` imports give a WebAssembly.Module, next to this entry in dist/.
// @ts-expect-error: resolved in dist/ by the platform's bundler, not at build time
import baseline from "./kernels.wasm?module";
// @ts-expect-error: as above
import relaxed from "./kernels-relaxed.wasm?module";
import type { Binaries } from "./binaries.js";

/** @internal */
export const binaries: Binaries = { baseline: async () => baseline, relaxed: async () => relaxed };

/** @internal */
export const ENTRY = "wasm-attention (edge-light)";
