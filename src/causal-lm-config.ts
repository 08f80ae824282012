// Reading a Hugging Face config.json of a decoder-only model (Llama, Mistral, Qwen2, Qwen3,
// Gemma 2) into CausalLM's options: the fields that change the math, checked, with each config
// class's defaults; fields that change the math but are not implemented are an error naming them.
import { ArgumentError } from "./errors.js";
import type { RopeScaling } from "./rotary.js";
import { describe } from "./tensor.js";

export type DecoderModelType = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2";

export interface CausalLMOptions {
  modelType: DecoderModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  activation: "silu" | "gelu-tanh";
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Qwen3's q_norm / k_norm */
  qkNorm: boolean;
  /** Gemma 2: four norms per layer, (1 + weight) RMSNorm, embeddings times sqrt(hiddenSize) */
  gemma: boolean;
  /** each layer's sliding window (null: full attention) */
  slidingWindows: (number | null)[];
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  queryPreAttnScalar: number;
  /** true / false as the config says; null: missing, decided by the state dict (lm_head.weight there: untied) */
  tieWordEmbeddings: boolean | null;
  /** the config's eos_token_id(s): generate's default stop tokens */
  eosTokenId: number[];
  /** learned attention sinks in every layer (self_attn.sinks, gpt-oss's); no config field of the supported families sets it */
  sinks?: boolean;
}

// each config class's defaults for the fields config.json may leave out
const DEFAULTS: Record<DecoderModelType, Record<string, unknown>> = {
  llama: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
  },
  mistral: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    hidden_act: "silu",
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-6,
    sliding_window: 4096,
  },
  qwen2: {
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 22016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    hidden_act: "silu",
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    sliding_window: 4096,
    max_window_layers: 28,
  },
  qwen3: {
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 22016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    head_dim: 128,
    hidden_act: "silu",
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    sliding_window: 4096,
    max_window_layers: 28,
  },
  gemma2: {
    vocab_size: 256000,
    hidden_size: 2304,
    intermediate_size: 9216,
    num_hidden_layers: 26,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 256,
    hidden_activation: "gelu_pytorch_tanh",
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-6,
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    final_logit_softcapping: 30.0,
    attn_logit_softcapping: 50.0,
  },
};

const ACTIVATIONS: Record<string, "silu" | "gelu-tanh"> = { silu: "silu", swish: "silu", gelu_pytorch_tanh: "gelu-tanh", gelu_new: "gelu-tanh" };

/** The fields of a decoder-only model's config.json that change the math, checked. */
export function causalLMOptions(config: Record<string, unknown>): CausalLMOptions {
  const who = "CausalLM.fromConfig";
  if (config === null || typeof config !== "object" || Array.isArray(config))
    throw new ArgumentError(`${who}: expected a config.json object, got ${describe(config)}`);
  const modelType = own(config, "model_type");
  if (typeof modelType !== "string" || !Object.hasOwn(DEFAULTS, modelType)) {
    throw new ArgumentError(
      `${who} model_type: expected one of ${Object.keys(DEFAULTS)
        .map((t) => `"${t}"`)
        .join(", ")}, got ${show(modelType)}`,
    );
  }
  const mt = modelType as DecoderModelType;
  // a missing field (or null where the config classes read null as "unset") takes the class's default
  const get = (k: string): unknown => own(config, k) ?? DEFAULTS[mt][k];
  const int = (k: string, fallback?: number, min = 1): number => {
    const v = get(k) ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min)
      throw new ArgumentError(`${who} ${k}: expected an integer >= ${min}, got ${show(v)}`);
    return v;
  };
  const num = (k: string, fallback?: number): number => {
    const v = get(k) ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new ArgumentError(`${who} ${k}: expected a finite number > 0, got ${show(v)}`);
    return v;
  };
  const flag = (k: string, fallback: boolean): boolean => {
    const v = get(k) ?? fallback;
    if (typeof v !== "boolean") throw new ArgumentError(`${who} ${k}: expected true or false, got ${show(v)}`);
    return v;
  };

  // fields that change the math in ways not implemented here, with their neutral values
  const neutral: [string, (v: unknown) => boolean, string][] = [
    ["partial_rotary_factor", (v) => v === 1, "1.0"],
    ["quantization_config", () => false, "none"],
    ["rope_local_base_freq", () => false, "none"],
  ];
  const unsupported = neutral.filter(([k, ok]) => own(config, k) !== undefined && own(config, k) !== null && !ok(own(config, k)));
  if (unsupported.length) {
    throw new ArgumentError(
      `${who} ${unsupported.map(([k, , want]) => `${k}: expected ${want} (the only one supported), got ${JSON.stringify(own(config, k))}`).join("; ")}`,
    );
  }

  const actKey = mt === "gemma2" ? "hidden_activation" : "hidden_act";
  const act = get(actKey) ?? get("hidden_act");
  const activation = typeof act === "string" && Object.hasOwn(ACTIVATIONS, act) ? ACTIVATIONS[act] : undefined;
  if (activation === undefined) {
    throw new ArgumentError(
      `${who} ${actKey}: expected one of ${Object.keys(ACTIVATIONS)
        .map((a) => `"${a}"`)
        .join(", ")}, got ${show(act)}`,
    );
  }
  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads)
    throw new ArgumentError(`${who} num_attention_heads: expected a multiple of num_key_value_heads (${numKvHeads}), got ${numHeads}`);
  // Qwen2Config has no head_dim: hidden_size / num_attention_heads
  const headDim = mt === "qwen2" || get("head_dim") === undefined ? hiddenSize / numHeads : int("head_dim");
  if (!Number.isInteger(headDim) || headDim % 2)
    throw new ArgumentError(
      `${who} head_dim: expected an even integer (the head size: head_dim, or hidden_size / num_attention_heads), got ${headDim}`,
    );
  const numLayers = int("num_hidden_layers");
  const { theta, scaling } = rope(config, who);
  const bias = flag("attention_bias", false);
  const tie = own(config, "tie_word_embeddings");
  if (tie !== undefined && tie !== null && typeof tie !== "boolean")
    throw new ArgumentError(`${who} tie_word_embeddings: expected true or false, got ${show(tie)}`);
  const softcap = (k: string) => {
    const v = get(k);
    return v === undefined || v === null ? null : num(k);
  };
  const gemma = mt === "gemma2";
  return {
    modelType: mt,
    vocabSize: int("vocab_size"),
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    activation,
    rmsNormEps: num("rms_norm_eps"),
    ropeTheta: theta,
    ropeScaling: scaling,
    maxPositionEmbeddings: int("max_position_embeddings"),
    // Qwen2: q/k/v biases always, o_proj none; Mistral: none; Llama, Qwen3, Gemma 2: attention_bias on all four
    qkvBias: mt === "qwen2" ? true : mt === "mistral" ? false : bias,
    oBias: mt === "qwen2" || mt === "mistral" ? false : bias,
    mlpBias: mt === "llama" ? flag("mlp_bias", false) : false,
    qkNorm: mt === "qwen3",
    gemma,
    slidingWindows: windows(mt, get, int, numLayers, who),
    attnSoftcap: gemma ? softcap("attn_logit_softcapping") : null,
    finalSoftcap: gemma ? softcap("final_logit_softcapping") : null,
    queryPreAttnScalar: gemma ? num("query_pre_attn_scalar") : headDim,
    tieWordEmbeddings: tie === undefined || tie === null ? null : tie,
    eosTokenId: eos(own(config, "eos_token_id"), who),
  };
}

// rope_theta and rope_scaling (transformers v5's rope_parameters holds both)
function rope(config: Record<string, unknown>, who: string): { theta: number; scaling: RopeScaling | null } {
  const params = own(config, "rope_parameters");
  const source = (params && typeof params === "object" ? params : null) as Record<string, unknown> | null;
  const theta = source?.rope_theta ?? own(config, "rope_theta") ?? 10000;
  if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 0)
    throw new ArgumentError(`${who} rope_theta: expected a finite number > 0, got ${show(theta)}`);
  const scaling = source ?? own(config, "rope_scaling") ?? null;
  if (scaling !== null && (typeof scaling !== "object" || Array.isArray(scaling)))
    throw new ArgumentError(`${who} rope_scaling: expected an object or null, got ${show(scaling)}`);
  const type = scaling ? ((scaling as RopeScaling).rope_type ?? (scaling as RopeScaling).type ?? "default") : "default";
  if (!["default", "linear", "llama3", "yarn"].includes(String(type))) {
    throw new ArgumentError(`${who} rope_scaling.rope_type: expected "default", "linear", "llama3" or "yarn", got ${show(type)}`);
  }
  return { theta, scaling: scaling as RopeScaling | null };
}

// each layer's sliding window, as each model class decides it
function windows(
  mt: DecoderModelType,
  get: (k: string) => unknown,
  int: (k: string, fallback?: number, min?: number) => number,
  n: number,
  who: string,
): (number | null)[] {
  const w = get("sliding_window");
  const window = w === undefined || w === null ? null : int("sliding_window");
  const types = get("layer_types");
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== n || !types.every((t) => t === "full_attention" || t === "sliding_attention")) {
      throw new ArgumentError(
        `${who} layer_types: expected "full_attention" or "sliding_attention" for each of the ${n} layers, got ${given(types, n)}`,
      );
    }
  }
  const listed = (i: number) => (types as string[] | undefined | null)?.[i] === "sliding_attention";
  return Array.from({ length: n }, (_, i) => {
    if (mt === "mistral") return window; // every layer
    if (mt === "gemma2") return (types ? listed(i) : i % 2 === 0) ? window : null; // even layers slide
    if (mt === "qwen2" || mt === "qwen3") {
      // the window only with use_sliding_window; then the layers from max_window_layers on (or as listed)
      if (get("use_sliding_window") !== true || window === null) return null;
      return (types ? listed(i) : i >= int("max_window_layers", 28, 0)) ? window : null;
    }
    return null; // Llama: no sliding window
  });
}

function eos(v: unknown, who: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 0))
    throw new ArgumentError(`${who} eos_token_id: expected a token id or a list of them, got ${show(v)}`);
  return list as number[];
}

// what layer_types holds, for its message: its length when not n, else its first bad entry
function given(types: unknown, n: number): string {
  if (!Array.isArray(types)) return show(types);
  if (types.length !== n) return `a list of ${types.length}`;
  const i = types.findIndex((t) => t !== "full_attention" && t !== "sliding_attention");
  return `${show(types[i])} at [${i}]`;
}

function own(o: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

// a config value, for messages: strings quoted as in the JSON
function show(v: unknown): string {
  return typeof v === "string"
    ? JSON.stringify(v)
    : typeof v === "number" || typeof v === "boolean"
      ? String(v)
      : v === undefined
        ? "nothing"
        : describe(v);
}
