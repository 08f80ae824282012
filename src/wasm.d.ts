// A .wasm import is the binary's bytes (esbuild's binary loader; a small plugin under vitest).
declare module "*.wasm" {
  const bytes: Uint8Array;
  export default bytes;
}
