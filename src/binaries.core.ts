// wasm-attention/core: no kernel binary embedded, for those who pass their own to init() (a
// bundler's URL of wasm-attention/kernels.wasm, a WebAssembly.Module, bytes) and want no copy of
// the builds they do not use in their bundle, whatever the bundler.
import type { Binaries } from "./binaries.js";

/** @internal */
export const binaries: Binaries = {};

/** @internal */
export const ENTRY = "wasm-attention/core";
