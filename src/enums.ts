// Numbers the host and the kernels share. Both compilers read this file, TypeScript (src/) and
// AssemblyScript (assembly/), so it holds nothing but enums that both understand.

/** The activation gemm_f32 applies in its store (its `act` argument). */
export enum Act {
  None = 0,
  Relu = 1,
  /** exact: x * Phi(x), torch's default */
  Gelu = 2,
  /** torch's approximate="tanh" (Hugging Face's gelu_new, gelu_pytorch_tanh) */
  GeluTanh = 3,
  /** x * sigmoid(x) (Llama's MLP) */
  Silu = 4,
}

/** linear_attention_f32's feature map (its `map` argument). */
export enum FeatureMap {
  /** elu(x) + 1 (Katharopoulos et al.) */
  EluPlusOne = 0,
  Relu = 1,
}

/** How a key/value cache stores its rows (the attention kernels' `format` argument). */
export enum KvFormat {
  /** float32 rows of kvDim */
  F32 = 0,
  /** IEEE half rows of kvDim, exact for what a half holds */
  F16 = 1,
  /** int8 rows of kvDim, then one float32 scale per head (symmetric, max |x| / 127) */
  Q8 = 2,
  /**
   * F16 rows known to hold no Infinity or NaN (the host counts what it stores): the kernels widen
   * them without the checks those need, to the same bits
   */
  F16Finite = 3,
}
