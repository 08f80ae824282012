/** Base class of every error this library throws on purpose. */
export class WasmAttentionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An argument of the wrong type or value: not a Float32Array, an unknown option, a bad scale. */
export class ArgumentError extends WasmAttentionError {}

/** Tensors whose shapes do not fit together, or whose data length does not match the shape. */
export class ShapeError extends WasmAttentionError {}

/** A function was called before `await init()` finished, or loading the module failed. */
export class InitError extends WasmAttentionError {}

/** A request that does not fit in WebAssembly memory (wasm32: at most 4 GiB). */
export class OutOfMemoryError extends WasmAttentionError {}

/** A module used before `loadStateDict()` or after `dispose()`. */
export class StateError extends WasmAttentionError {}

/** A worker thread of the pool failed or stopped; the pool replaces its workers. */
export class ThreadError extends WasmAttentionError {}
