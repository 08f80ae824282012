// The kernel module's exports. Every byte of linear memory above heap_base() is the host's.
export { attention_f32_workspace, attention_f32_prepare_kv, attention_f32_flash, attention_f32_merge } from "./attention";
export { kv_row_bytes, kv_store_rows, kv_widen } from "./kv";
export { gemm_f32, gemm_f32_workspace } from "./gemm";
export { quantize_rows_i8, pack_q8, pack_q8_bytes, gemm_q8, gemm_q8_workspace } from "./gemm-q8";
export { pack_f16, pack_f16_bytes, gemm_f16, gemm_f16_workspace } from "./gemm-f16";
export { pack_q4, pack_q4_bytes, gemm_q4, gemm_q4_workspace } from "./gemm-q4";
export { f16_to_f32_n } from "./half";
export { layernorm_f32 } from "./layernorm";
export { mean_f32 } from "./reduce";
export { pack_f32_t, pack_f32_w } from "./pack";
export { exp_f32_n } from "./exp";
export { linear_attention_f32 } from "./linear";
export { linear_recurrent_f32, linear_recurrent_f32_workspace, linear_chunked_f32, linear_chunked_f32_workspace } from "./delta";
export { rope_f32, rope_table_f32, rope_f32_table } from "./rope";
export { rmsnorm_f32 } from "./rmsnorm";
export { mul_f32 } from "./elementwise";

export function heap_base(): usize {
  return __heap_base;
}

// 1 in the build that uses relaxed SIMD (f32x4.relaxed_madd), 0 in the baseline build
export function relaxed_simd(): bool {
  return ASC_FEATURE_RELAXED_SIMD;
}
