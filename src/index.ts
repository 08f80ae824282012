export { init, type InitOptions, type WasmSource } from "./init.js";
export { scaledDotProductAttention, type AttentionOptions } from "./attention.js";
export { tensor, type Tensor, type BoolTensor } from "./tensor.js";
export { WasmAttentionError, ArgumentError, ShapeError, InitError, OutOfMemoryError } from "./errors.js";
export { memoryStats, type MemoryStats } from "./stats.js";
