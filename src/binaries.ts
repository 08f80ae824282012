/// <reference path="./wasm.d.ts" />
// The kernel builds that init() loads when it is given no binary. Each is loaded only when asked
// for, through a dynamic import(): in dist/ (scripts/build.mjs) every build is a module of its own,
// dist/embedded/kernels*.js, whose default export is the binary gzipped and base64-encoded; every
// bundler (esbuild, Vite, webpack) follows a dynamic import() of a relative module without
// configuration, and those that split code put each build in a chunk fetched only by the init()
// that needs it. Under vitest and in the tests' own bundles the import gives the bytes themselves.
// The edge entries (binaries.workerd.ts, binaries.edge-light.ts) import the .wasm files as
// modules instead, and the core entry (binaries.core.ts) has none.

/** @internal a kernel build as init() receives it */
export type Binary = Uint8Array | WebAssembly.Module;

/** @internal the builds by name, each loaded on demand; a missing one is not in this entry */
export type Binaries = { [K in "baseline" | "relaxed" | "threads" | "relaxed-threads"]?: () => Promise<Binary> };

/** @internal */
export const binaries: Binaries = {
  baseline: () => import("../build/kernels.wasm").then(unpack),
  relaxed: () => import("../build/kernels-relaxed.wasm").then(unpack),
  threads: () => import("../build/kernels-threads.wasm").then(unpack),
  "relaxed-threads": () => import("../build/kernels-relaxed-threads.wasm").then(unpack),
};

/** @internal the name of this entry, for messages */
export const ENTRY = "wasm-attention";

// a build module's default export: bytes, or (in dist/) the gzipped bytes in base64
async function unpack(module: { default: unknown }): Promise<Binary> {
  const packed = module.default;
  if (typeof packed !== "string") return packed as Uint8Array;
  const gzipped = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  if (typeof DecompressionStream !== "function") {
    throw new Error(
      "this runtime has no DecompressionStream to unpack the embedded kernel binary; pass the binary to init() yourself (wasm-attention/kernels.wasm)",
    );
  }
  const stream = new Blob([gzipped]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
