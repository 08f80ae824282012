// Vercel's edge runtime: `?module` imports give a WebAssembly.Module, next to this entry in dist/.
// @ts-expect-error: resolved in dist/ by the platform's bundler, not at build time
import baseline from "./kernels.wasm?module";
// @ts-expect-error: as above
import relaxed from "./kernels-relaxed.wasm?module";
import type { Binary } from "./binaries.js";

/** @internal */
export const binaries: { baseline: Binary; relaxed: Binary; threads?: Binary; "relaxed-threads"?: Binary } = { baseline, relaxed };
