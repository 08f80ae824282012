export {
  init,
  shutdown,
  runtimeInfo,
  relaxedSimdSupported,
  type InitOptions,
  type RuntimeInfo,
  type WasmSource,
  type CompiledModule,
} from "./init.js";
export { scaledDotProductAttention, type AttentionResult } from "./attention.js";
export { alibiSlopes, type AttentionOptions, type AttentionVariant, type RopeOptions } from "./features.js";
export { sinusoidalPositions } from "./positions.js";
export { blockSparseLayout, type BlockSparsePattern } from "./sparse.js";
export { tensor, type Tensor, type BoolTensor } from "./tensor.js";
export { loadSafetensors } from "./safetensors.js";
export { Module, type Param } from "./module.js";
export { Linear, type LinearOptions, type Activation } from "./linear.js";
export { quantize } from "./quantize.js";
export type { WeightFormat } from "./weights.js";
export { LayerNorm, type LayerNormOptions } from "./layernorm.js";
export { MultiHeadAttention, type MultiHeadAttentionOptions, type MultiHeadAttentionForwardOptions } from "./multihead.js";
export {
  TransformerEncoderLayer,
  TransformerDecoderLayer,
  TransformerEncoder,
  TransformerDecoder,
  type TransformerLayerOptions,
  type StackOptions,
  type EncoderForwardOptions,
  type StackEncoderForwardOptions,
  type DecoderForwardOptions,
  type Mask,
} from "./transformer.js";
export { KVCache } from "./cache.js";
export { ResidentTensor, residentTensor } from "./resident.js";
export {
  linearAttention,
  LinearAttentionState,
  type LinearAttentionOptions,
  type LinearAttentionCallOptions,
  type LinearAttentionStepOptions,
  type LinearAttentionRule,
} from "./linear-attention.js";
export { WasmAttentionError, ArgumentError, ShapeError, InitError, OutOfMemoryError, StateError, ThreadError } from "./errors.js";
export { memoryStats, type MemoryStats } from "./stats.js";
export type { IntegerTensor, IntegerDType, FloatDType, StateDict, SafetensorsOptions } from "./safetensors.js";
export type { LoadStateDictOptions } from "./state-dict.js";
export { Embedding, type EmbeddingOptions, type TokenIds } from "./embedding.js";
export { EncoderModel, meanPool, type EncoderModelOptions, type EncoderModelForwardOptions, type AttentionMask } from "./encoder-model.js";
export { RMSNorm, type RMSNormOptions } from "./rmsnorm.js";
export { GatedMLP, type GatedMLPOptions } from "./gated-mlp.js";
export { DecoderLayer, type DecoderLayerOptions, type DecoderLayerForwardOptions } from "./decoder-layer.js";
export { ropeParameters, type RopeConfig, type RopeParameters, type RopeScaling } from "./rotary.js";
export { CausalLM, type CausalLMForwardOptions, type CausalLMOutputWithAttention } from "./causal-lm.js";
export type { CausalLMOptions } from "./causal-lm-config.js";
export { DecoderCache, type DecoderCacheOptions } from "./decoder-cache.js";
export type { CacheDtype } from "./cache.js";
export type { GenerateOptions } from "./generate.js";
