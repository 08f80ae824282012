"""Writes test/fixtures/decoders/: tiny random decoder-only language models (Llama with each RoPE scaling,
Mistral, Qwen2, Qwen3, Gemma 2) saved the way Hugging Face's save_pretrained saves them (safetensors +
config.json), and cases.json with their logits, greedy generations and cached decoding.

Run with Debian's torch (apt-get install python3-torch):
    /usr/bin/python3 scripts/fixtures_decoders.py [--no-f32-check]

Hugging Face `transformers` is not needed (nor installed): the forward below is a plain-torch
re-implementation of *ForCausalLM inference (eager attention, no dropout) that follows transformers'
modeling_llama.py, modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py,
masking_utils.py, cache_utils.DynamicCache, modeling_rope_utils.py and GenerationMixin, function by
function. Each function names the Hugging Face class or function it mirrors. Semantics are those of
transformers 4.50 - 4.57 (rope_scaling in config.json); the YaRN correction range is the 4.50+ one
(computed from rope_scaling.original_max_position_embeddings), see _compute_yarn_parameters.

The weights are stored in the file's dtype (F32, one model BF16); the reference outputs are computed in
float64 from those stored values (Hugging Face's float32 up-casts become "at least float32", so nothing
is rounded to float32 on the way), i.e. they are what an exact engine produces from the same file.
The script asserts that a left-padded batch equals each sequence run alone, that cached decoding equals
the full forward, that greedy generation with the cache equals generation by full recomputation, and it
runs the same reference in float32 and prints (and stores) the difference to float64.
"""
import json
import math
import pathlib
import sys

import torch

sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fixtures_encoders import TORCH_DTYPE, read_safetensors, write_safetensors  # noqa: E402  (the same writer)

OUT = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures" / "decoders"
F32_CHECK = "--no-f32-check" not in sys.argv


# ----------------------------------------------------------------------------------------------
# Config helpers (what the HF config classes derive from config.json)
# ----------------------------------------------------------------------------------------------

def head_dim_of(cfg):
    # LlamaConfig / MistralConfig / Qwen3Config / Gemma2Config: head_dim, else hidden_size // num_attention_heads
    # (Qwen2Config has no head_dim field at all)
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def tied(cfg):
    # PretrainedConfig.tie_word_embeddings; the contract reads a missing field as true (Gemma2Config's default;
    # LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config default to false, so every fixture config but
    # Gemma 2's writes the field explicitly)
    return cfg.get("tie_word_embeddings", True)


def attention_biases(cfg):
    # (q/k/v bias, o_proj bias) as the attention classes build their nn.Linear layers:
    # LlamaAttention / Qwen3Attention / Gemma2Attention: bias=config.attention_bias on all four;
    # MistralAttention: no bias; Qwen2Attention: q/k/v bias=True always, o_proj bias=False
    mt = cfg["model_type"]
    if mt == "qwen2":
        return True, False
    if mt == "mistral":
        return False, False
    b = bool(cfg.get("attention_bias", False))
    return b, b


def layer_sliding_window(cfg, i):
    """The sliding window of layer i (None: full causal attention)."""
    mt = cfg["model_type"]
    if mt == "mistral":
        # MistralModel: create_sliding_window_causal_mask for every layer when config.sliding_window is set
        return cfg.get("sliding_window")
    if mt in ("qwen2", "qwen3"):
        # Qwen2Config / Qwen3Config: sliding_window is None unless use_sliding_window; layer_types marks layers
        # i >= max_window_layers as "sliding_attention"
        if not cfg.get("use_sliding_window", False) or cfg.get("sliding_window") is None:
            return None
        return cfg["sliding_window"] if i >= cfg.get("max_window_layers", 28) else None
    if mt == "gemma2":
        # Gemma2Config.layer_types default: "sliding_attention" if bool((i + 1) % 2) else "full_attention",
        # i.e. layers with an even index slide (older versions: Gemma2Attention is_sliding = not bool(layer_idx % 2))
        types = cfg.get("layer_types")
        sliding = types[i] == "sliding_attention" if types else (i % 2 == 0)
        if cfg.get("_sliding_on_odd_layers"):  # sensitivity check only
            sliding = i % 2 == 1
        return cfg.get("sliding_window") if sliding else None
    return None


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

def silu(x):
    # activations.ACT2FN["silu"]: nn.SiLU, x * sigmoid(x)
    return x * torch.sigmoid(x)


def gelu_pytorch_tanh(x):
    # activations.ACT2FN["gelu_pytorch_tanh"]: PytorchGELUTanh, nn.functional.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACT2FN = {"silu": silu, "gelu_pytorch_tanh": gelu_pytorch_tanh}


def upcast_dtype(dtype):
    # Hugging Face up-casts to float32 (x.float(), softmax(dtype=float32)); "at least float32" here, so the
    # float64 reference is not rounded to float32 (a literal .float() would down-cast it)
    return torch.promote_types(dtype, torch.float32)


def llama_rms_norm(weight, x, eps):
    # LlamaRMSNorm.forward (= MistralRMSNorm, Qwen2RMSNorm, Qwen3RMSNorm): x in float32, variance = mean(x^2)
    # over the last dim, x * rsqrt(variance + eps), cast back to the input dtype, THEN multiplied by weight
    input_dtype = x.dtype
    h = x.to(upcast_dtype(input_dtype))
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def gemma2_rms_norm(weight, x, eps):
    # Gemma2RMSNorm.forward (GemmaRMSNorm): x.float() normalised, multiplied by (1 + weight.float()) in float32,
    # THEN cast back to the input dtype (Llama casts before the multiply); the weight is stored zero-centred
    h = x.to(upcast_dtype(x.dtype))
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h * (1.0 + weight.to(h.dtype))
    return h.type_as(x)


def rms_norm(p, cfg, name, x, eps=None):
    fn = gemma2_rms_norm if cfg["model_type"] == "gemma2" else llama_rms_norm
    return fn(p[name + ".weight"], x, cfg["rms_norm_eps"] if eps is None else eps)


def linear(p, name, x, bias):
    # nn.Linear: x @ weight.T (+ bias), weight stored [out_features, in_features]
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if bias else y


# ----------------------------------------------------------------------------------------------
# RoPE, following modeling_rope_utils.py (ROPE_INIT_FUNCTIONS) and LlamaRotaryEmbedding
# ----------------------------------------------------------------------------------------------

def _rope_dim_and_base(cfg):
    # every _compute_*_parameters: base = rope_theta, dim = int(head_dim * partial_rotary_factor)
    return int(head_dim_of(cfg) * cfg.get("partial_rotary_factor", 1.0)), cfg.get("rope_theta", 10000.0)


def _compute_default_rope_parameters(cfg, dtype):
    # modeling_rope_utils._compute_default_rope_parameters: inv_freq = 1 / base^(arange(0, dim, 2) / dim);
    # attention_factor 1.0 (HF computes this in float32; here in the compute dtype)
    dim, base = _rope_dim_and_base(cfg)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))
    return inv_freq, 1.0


def _compute_linear_scaling_rope_parameters(cfg, dtype):
    # modeling_rope_utils._compute_linear_scaling_rope_parameters: the default inv_freq divided by factor
    # (equivalent to dividing the positions by factor)
    inv_freq, attention_factor = _compute_default_rope_parameters(cfg, dtype)
    return inv_freq / cfg["rope_scaling"]["factor"], attention_factor


def _compute_llama3_parameters(cfg, dtype):
    # modeling_rope_utils._compute_llama3_parameters (Llama 3.1): wavelengths longer than
    # original_max_position_embeddings / low_freq_factor are divided by factor, shorter than
    # original_max_position_embeddings / high_freq_factor are kept, the band between is interpolated
    # smoothly in 1/wavelength; attention_factor 1.0
    inv_freq, attention_factor = _compute_default_rope_parameters(cfg, dtype)
    rs = cfg["rope_scaling"]
    factor, low_freq_factor, high_freq_factor = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama), attention_factor


def _compute_yarn_parameters(cfg, dtype):
    # modeling_rope_utils._compute_yarn_parameters as of transformers >= 4.50:
    # - attention_factor (applied to cos AND sin, so the scores scale by its square) = rope_scaling.attention_factor,
    #   else get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both are set,
    #   else get_mscale(factor) = 0.1 * ln(factor) + 1 (1.0 when factor <= 1)
    # - the correction range [low, high] comes from beta_fast (default 32) / beta_slow (default 1) rotations over
    #   rope_scaling.original_max_position_embeddings (before 4.50: over config.max_position_embeddings);
    #   truncate (default true) floors low and ceils high; clamped to [0, dim - 1]
    # - inv_freq = interpolation (inv_freq / factor) where the ramp is 1, extrapolation (inv_freq) where it is 0
    # 4.50 - 4.5x also replaced factor by max_position_embeddings / original_max_position_embeddings when the
    # latter is set (v5 keeps the given factor); the fixture's yarn config has factor == that ratio (4 = 128 / 32).
    dim, base = _rope_dim_and_base(cfg)
    rs = cfg["rope_scaling"]
    factor = rs["factor"]
    attention_factor = rs.get("attention_factor")
    mscale, mscale_all_dim = rs.get("mscale"), rs.get("mscale_all_dim")
    if cfg.get("_yarn_pre_4_50"):  # sensitivity check only: the older correction range
        original_max_position_embeddings = cfg["max_position_embeddings"]
    else:
        original_max_position_embeddings = rs.get("original_max_position_embeddings") or cfg["max_position_embeddings"]

    def get_mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = rs.get("beta_fast") or 32
    beta_slow = rs.get("beta_slow") or 1

    def find_correction_dim(num_rotations):
        return (dim * math.log(original_max_position_embeddings / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = find_correction_dim(beta_fast), find_correction_dim(beta_slow)
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # linear_ramp_factor: prevent singularity
    ramp = torch.clamp((torch.arange(dim // 2, dtype=dtype) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).to(dtype) / dim)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)
    inv_freq_extrapolation_factor = 1 - ramp
    inv_freq = (inv_freq_interpolation * (1 - inv_freq_extrapolation_factor)
                + inv_freq_extrapolation * inv_freq_extrapolation_factor)
    return inv_freq, attention_factor


ROPE_INIT_FUNCTIONS = {
    "default": _compute_default_rope_parameters,
    "linear": _compute_linear_scaling_rope_parameters,
    "llama3": _compute_llama3_parameters,
    "yarn": _compute_yarn_parameters,
}


def rope_type_of(cfg):
    # LlamaRotaryEmbedding.__init__: rope_scaling.get("rope_type", rope_scaling.get("type")), "default" without it
    rs = cfg.get("rope_scaling")
    return rs.get("rope_type", rs.get("type")) if isinstance(rs, dict) else "default"


def rotary_embedding(cfg, position_ids, dtype):
    # LlamaRotaryEmbedding.forward (same in Mistral/Qwen2/Qwen3/Gemma2): freqs = position * inv_freq,
    # emb = cat(freqs, freqs), cos/sin of emb times attention_scaling. Returns [B, T, head_dim] each.
    inv_freq, attention_scaling = ROPE_INIT_FUNCTIONS[rope_type_of(cfg)](cfg, dtype)
    freqs = position_ids[:, :, None].to(dtype) * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * attention_scaling, emb.sin() * attention_scaling


def rotate_half(x):
    # modeling_llama.rotate_half: (x1, x2) -> (-x2, x1) over the two halves of the last dim
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    # modeling_llama.apply_rotary_pos_emb (unsqueeze_dim=1): q, k [B, heads, T, D]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------

def repeat_kv(hidden_states, n_rep):
    # modeling_llama.repeat_kv: [B, kv_heads, S, D] -> [B, kv_heads * n_rep, S, D];
    # query head h reads kv head h // n_rep
    batch, kv_heads, slen, hd = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    return hidden_states[:, :, None].expand(batch, kv_heads, n_rep, slen, hd).reshape(batch, kv_heads * n_rep, slen, hd)


def causal_mask(attention_mask, past, q_len, sliding_window, dtype):
    # masking_utils.create_causal_mask / create_sliding_window_causal_mask with the eager interface:
    # key column kv_idx is visible from query column q_idx (= past + i) when kv_idx <= q_idx (causal_mask_function),
    # attention_mask[b, kv_idx] == 1 (padding_mask_function) and, with a window, kv_idx > q_idx - sliding_window
    # (sliding_window_overlay: the w most recent keys, the query's own included). Visible -> 0, else finfo.min,
    # added to the scores. [B, 1, q_len, past + q_len]
    kv_len = attention_mask.shape[1]
    q_idx = past + torch.arange(q_len)[:, None]
    kv_idx = torch.arange(kv_len)[None, :]
    allowed = kv_idx <= q_idx
    if sliding_window is not None:
        allowed = allowed & (kv_idx > q_idx - sliding_window)
    allowed = allowed[None] & attention_mask[:, None, :].bool()
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.tensor(torch.finfo(dtype).min, dtype=dtype))[:, None]


def eager_attention_forward(query, key, value, mask, scaling, n_rep, softcap=None):
    # modeling_llama.eager_attention_forward (+ Gemma2's softcap): scores = q k^T * scaling;
    # Gemma 2: tanh(scores / softcap) * softcap BEFORE the mask; + mask; softmax in (at least) float32;
    # @ v; -> [B, T, heads, D]
    key_states, value_states = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if softcap is not None:
        attn_weights = torch.tanh(attn_weights / softcap) * softcap
    attn_weights = attn_weights + mask
    attn_weights = torch.softmax(attn_weights, dim=-1, dtype=upcast_dtype(query.dtype)).to(query.dtype)
    return torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()


class DynamicCache:
    # cache_utils.DynamicCache: per layer, the keys/values (after RoPE) of every past token, concatenated along
    # the sequence axis. (HF's sliding-window layers may keep only the last window - 1 tokens: the same result.)
    def __init__(self):
        self.keys, self.values = {}, {}

    def get_seq_length(self):
        return self.keys[0].shape[-2] if 0 in self.keys else 0

    def update(self, key_states, value_states, layer_idx):
        if layer_idx in self.keys:
            key_states = torch.cat([self.keys[layer_idx], key_states], dim=-2)
            value_states = torch.cat([self.values[layer_idx], value_states], dim=-2)
        self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        return key_states, value_states


def self_attention(p, cfg, i, hidden_states, cos, sin, mask, cache):
    # LlamaAttention.forward / MistralAttention / Qwen2Attention / Qwen3Attention / Gemma2Attention (eager)
    pre = f"model.layers.{i}.self_attn."
    mt = cfg["model_type"]
    B, T, _ = hidden_states.shape
    hd = head_dim_of(cfg)
    qkv_bias, o_bias = attention_biases(cfg)
    hidden_shape = (B, T, -1, hd)
    query_states = linear(p, pre + "q_proj", hidden_states, qkv_bias).view(hidden_shape)
    key_states = linear(p, pre + "k_proj", hidden_states, qkv_bias).view(hidden_shape)
    value_states = linear(p, pre + "v_proj", hidden_states, qkv_bias).view(hidden_shape)
    if mt == "qwen3" and not cfg.get("_no_qk_norm"):
        # Qwen3Attention: q_norm / k_norm, RMSNorm over head_dim of each head, before the transpose and RoPE
        query_states = rms_norm(p, cfg, pre + "q_norm", query_states)
        key_states = rms_norm(p, cfg, pre + "k_norm", key_states)
    query_states, key_states, value_states = (t.transpose(1, 2) for t in (query_states, key_states, value_states))
    query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
    if cache is not None:
        key_states, value_states = cache.update(key_states, value_states, i)
    if mt == "gemma2":
        # Gemma2Attention: scaling = query_pre_attn_scalar ** -0.5, softcap = attn_logit_softcapping
        scaling, softcap = cfg["query_pre_attn_scalar"] ** -0.5, cfg.get("attn_logit_softcapping")
    else:
        scaling, softcap = hd ** -0.5, None
    n_rep = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    out = eager_attention_forward(query_states, key_states, value_states, mask, scaling, n_rep, softcap)
    return linear(p, pre + "o_proj", out.reshape(B, T, -1), o_bias)


def mlp(p, cfg, i, x):
    # LlamaMLP.forward (= Mistral/Qwen2/Qwen3/Gemma2 MLP): down_proj(act(gate_proj(x)) * up_proj(x)), no biases
    # (Llama's mlp_bias is false); act = ACT2FN[hidden_act], Gemma2MLP: ACT2FN[hidden_activation]
    pre = f"model.layers.{i}.mlp."
    act = ACT2FN[cfg["hidden_activation"] if cfg["model_type"] == "gemma2" else cfg["hidden_act"]]
    gated = act(linear(p, pre + "gate_proj", x, False)) * linear(p, pre + "up_proj", x, False)
    return linear(p, pre + "down_proj", gated, False)


def decoder_layer(p, cfg, i, hidden_states, cos, sin, mask, cache):
    pre = f"model.layers.{i}."
    if cfg["model_type"] == "gemma2":
        # Gemma2DecoderLayer.forward: the attention OUTPUT goes through post_attention_layernorm before the
        # residual add; the MLP is wrapped in pre_feedforward_layernorm / post_feedforward_layernorm
        residual = hidden_states
        h = rms_norm(p, cfg, pre + "input_layernorm", hidden_states)
        h = self_attention(p, cfg, i, h, cos, sin, mask, cache)
        h = rms_norm(p, cfg, pre + "post_attention_layernorm", h)
        hidden_states = residual + h
        residual = hidden_states
        h = rms_norm(p, cfg, pre + "pre_feedforward_layernorm", hidden_states)
        h = mlp(p, cfg, i, h)
        h = rms_norm(p, cfg, pre + "post_feedforward_layernorm", h)
        return residual + h
    # LlamaDecoderLayer.forward (= Mistral/Qwen2/Qwen3): pre-norm residual blocks
    residual = hidden_states
    h = rms_norm(p, cfg, pre + "input_layernorm", hidden_states)
    hidden_states = residual + self_attention(p, cfg, i, h, cos, sin, mask, cache)
    residual = hidden_states
    h = rms_norm(p, cfg, pre + "post_attention_layernorm", hidden_states)
    return residual + mlp(p, cfg, i, h)


def causal_lm_forward(p, cfg, input_ids, attention_mask=None, position_ids=None, cache=None, dtype=torch.float64):
    """LlamaForCausalLM.forward (and the Mistral/Qwen2/Qwen3/Gemma2 ones) -> logits [B, T, vocab].
    input_ids [B, T]; attention_mask [B, past + T] (1 = real token) or None (all ones);
    position_ids [B, T] or None (HF default: cache_position = past .. past + T - 1, whatever the padding)."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, T = input_ids.shape
    past = cache.get_seq_length() if cache is not None else 0
    if attention_mask is None:
        attention_mask = torch.ones(B, past + T, dtype=torch.long)
    attention_mask = torch.as_tensor(attention_mask)
    assert attention_mask.shape == (B, past + T)
    if position_ids is None:
        position_ids = torch.arange(past, past + T)[None].expand(B, T)  # LlamaModel: cache_position.unsqueeze(0)
    position_ids = torch.as_tensor(position_ids, dtype=torch.long)
    # LlamaModel.forward: embed_tokens, rotary_emb shared by all layers, one mask per attention type, final norm
    hidden_states = p["model.embed_tokens.weight"][input_ids]
    if cfg["model_type"] == "gemma2" and not cfg.get("_no_normalizer"):
        # Gemma2Model.forward: inputs_embeds * normalizer, normalizer = tensor(hidden_size ** 0.5, dtype=hidden dtype)
        hidden_states = hidden_states * torch.tensor(cfg["hidden_size"] ** 0.5, dtype=hidden_states.dtype)
    cos, sin = rotary_embedding(cfg, position_ids, dtype)
    masks = {}
    for i in range(cfg["num_hidden_layers"]):
        w = layer_sliding_window(cfg, i)
        if w not in masks:
            masks[w] = causal_mask(attention_mask, past, T, w, dtype)
        hidden_states = decoder_layer(p, cfg, i, hidden_states, cos, sin, masks[w], cache)
    hidden_states = rms_norm(p, cfg, "model.norm", hidden_states)
    # *ForCausalLM: lm_head (bias-free; its weight is embed_tokens' when tie_word_embeddings)
    lm_head = p["model.embed_tokens.weight"] if tied(cfg) else p["lm_head.weight"]
    logits = hidden_states @ lm_head.T
    if cfg["model_type"] == "gemma2" and cfg.get("final_logit_softcapping") is not None:
        # Gemma2ForCausalLM.forward: logits = tanh(logits / cap) * cap
        cap = cfg["final_logit_softcapping"]
        logits = torch.tanh(logits / cap) * cap
    return logits


# ----------------------------------------------------------------------------------------------
# Generation, following GenerationMixin.generate (greedy: _sample with do_sample=False, use_cache=True)
# ----------------------------------------------------------------------------------------------

def generation_position_ids(attention_mask):
    # GenerationMixin.prepare_inputs_for_generation: position_ids = attention_mask.long().cumsum(-1) - 1,
    # then masked_fill_(attention_mask == 0, 1); with a cache, only the last T columns are passed
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    return position_ids


def greedy_generate(p, cfg, input_ids, attention_mask, max_new_tokens, eos_token_id=None, pad_token_id=0,
                    dtype=torch.float64, gaps=None):
    """Returns the new tokens per row (up to and including the eos that ended a row). gaps collects the margin
    between the best and the second-best logit at every step of every unfinished row."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    B = input_ids.shape[0]
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else torch.as_tensor(attention_mask)
    eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
    cache = DynamicCache()
    unfinished = torch.ones(B, dtype=torch.bool)
    new = [[] for _ in range(B)]
    step_ids, step_pos = input_ids, generation_position_ids(attention_mask)
    for _ in range(max_new_tokens):
        logits = causal_lm_forward(p, cfg, step_ids, attention_mask, step_pos, cache, dtype)[:, -1, :]
        top2 = torch.topk(logits, 2, dim=-1).values
        next_tokens = torch.argmax(logits, dim=-1)
        for b in range(B):
            if unfinished[b]:
                new[b].append(int(next_tokens[b]))
                if gaps is not None:
                    gaps.append(float(top2[b, 0] - top2[b, 1]))
        # finished rows are fed pad_token_id (next_tokens * unfinished + pad * (1 - unfinished))
        next_tokens = torch.where(unfinished, next_tokens, torch.tensor(pad_token_id))
        unfinished = unfinished & ~torch.isin(next_tokens, torch.tensor(eos, dtype=torch.long))
        if not unfinished.any():
            break
        attention_mask = torch.cat([attention_mask, torch.ones(B, 1, dtype=attention_mask.dtype)], dim=-1)
        step_ids = next_tokens[:, None]
        step_pos = generation_position_ids(attention_mask)[:, -1:]
    return new


def greedy_by_recompute(p, cfg, seq, max_new_tokens):
    # the same greedy decoding without a cache: a full forward over the whole sequence at every step
    seq = list(seq)
    out = []
    for _ in range(max_new_tokens):
        t = int(torch.argmax(causal_lm_forward(p, cfg, [seq])[0, -1]))
        out.append(t)
        seq.append(t)
    return out


# ----------------------------------------------------------------------------------------------
# Tiny random models, saved as save_pretrained saves them
# ----------------------------------------------------------------------------------------------

COMMON = dict(vocab_size=67, hidden_size=48, intermediate_size=70, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, initializer_range=0.02, use_cache=True, attention_dropout=0.0)


def make_config(model_type, architecture, torch_dtype, **over):
    cfg = {"architectures": [architecture], "model_type": model_type, "torch_dtype": torch_dtype, **COMMON}
    cfg.update(over)
    return dict(sorted(cfg.items()))  # PretrainedConfig.to_json_string sorts the keys


def llama_config(torch_dtype="float32", **over):
    base = dict(attention_bias=False, bos_token_id=1, eos_token_id=2, head_dim=12, hidden_act="silu", mlp_bias=False,
                num_hidden_layers=2, pretraining_tp=1, rms_norm_eps=1e-05, rope_scaling=None, rope_theta=10000.0,
                tie_word_embeddings=False)
    base.update(over)
    return make_config("llama", "LlamaForCausalLM", torch_dtype, **base)


def random_state_dict(cfg, gen, std):
    """Full *ForCausalLM state dict with HF's key names, float64, not yet rounded to the file dtype."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = head_dim_of(cfg)
    nq, nkv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    gemma = cfg["model_type"] == "gemma2"
    qkv_bias, o_bias = attention_biases(cfg)

    def w(*shape, s):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * s

    def norm(name, n=H, offset=0.0):
        # Llama-style weights around 1; Gemma's zero-centred (used as 1 + weight). offset: larger gains where a
        # model needs them (Gemma 2's tied, sqrt(hidden)-scaled embeddings otherwise dominate the residual
        # stream, and greedy decoding repeats the last token)
        sd[name + ".weight"] = (0.0 if gemma else 1.0) + offset + w(n, s=0.1)

    sd = {"model.embed_tokens.weight": w(V, H, s=std["embed"])}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        for name, rows, s in (("q_proj", nq, std["qk"]), ("k_proj", nkv, std["qk"]), ("v_proj", nkv, std["vo"])):
            sd[pre + f"self_attn.{name}.weight"] = w(rows, H, s=s)
            if qkv_bias:
                sd[pre + f"self_attn.{name}.bias"] = w(rows, s=0.3)
        sd[pre + "self_attn.o_proj.weight"] = w(H, nq, s=std["vo"])
        if o_bias:
            sd[pre + "self_attn.o_proj.bias"] = w(H, s=0.3)
        if cfg["model_type"] == "qwen3":
            norm(pre + "self_attn.q_norm", hd)
            norm(pre + "self_attn.k_norm", hd)
        sd[pre + "mlp.gate_proj.weight"] = w(I, H, s=0.2)
        sd[pre + "mlp.up_proj.weight"] = w(I, H, s=0.2)
        sd[pre + "mlp.down_proj.weight"] = w(H, I, s=0.15)
        norm(pre + "input_layernorm")
        norm(pre + "post_attention_layernorm", offset=std.get("post_norm_offset", 0.0) if gemma else 0.0)
        if gemma:
            norm(pre + "pre_feedforward_layernorm")
            norm(pre + "post_feedforward_layernorm", offset=std.get("post_norm_offset", 0.0))
    norm("model.norm", offset=std.get("final_norm_offset", 0.0))
    if not tied(cfg):
        sd["lm_head.weight"] = w(V, H, s=std["embed"])
    return sd


def build_model(name, cfg, st_dtype, seed, std, extra=None):
    """Rounds the random parameters to the file dtype, adds extra (ignored) keys, writes the safetensors and
    config.json; returns the stored parameters widened to float64."""
    gen = torch.Generator().manual_seed(seed)
    sd = random_state_dict(cfg, gen, std)
    stored = {k: v.to(TORCH_DTYPE[st_dtype]) for k, v in sd.items()}
    tensors = {k: (v, st_dtype) for k, v in stored.items()}
    for k, v in (extra(cfg) if extra else {}).items():
        tensors[k] = (v, "F32")
    st_path = OUT / f"{name}.safetensors"
    write_safetensors(st_path, tensors)
    (OUT / f"{name}.config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    back = read_safetensors(st_path)
    assert set(back) == set(tensors)
    for k, (v, _) in tensors.items():
        assert torch.equal(back[k], v), k
    return {k: back[k].to(torch.float64) for k in sd}


def rotary_inv_freq_buffers(cfg):
    # checkpoints saved by transformers < 4.31 carry the (then persistent) rotary buffer of every layer,
    # model.layers.{i}.self_attn.rotary_emb.inv_freq (float32): loaders ignore it
    inv_freq, _ = _compute_default_rope_parameters(cfg, torch.float32)
    return {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq.clone()
            for i in range(cfg["num_hidden_layers"])}


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

def r8(values):
    return [float(f"{v:.8g}") for v in values.reshape(-1).tolist()]


def left_pad(seqs, pad_id):
    L = max(len(s) for s in seqs)
    ids = [[pad_id] * (L - len(s)) + list(s) for s in seqs]
    mask = [[0] * (L - len(s)) + [1] * len(s) for s in seqs]
    return torch.tensor(ids), torch.tensor(mask)


class F32Stats:
    def __init__(self):
        self.max_abs = 0.0
        self.max_ref = 0.0
        self.max_rel_big = 0.0  # relative difference where |reference| >= 0.1
        self.max_rel_1 = 0.0  # relative difference where |reference| >= 1
        self.greedy_same = True

    def add(self, ref, got):
        d = (got.double() - ref).abs()
        self.max_abs = max(self.max_abs, d.max().item())
        self.max_ref = max(self.max_ref, ref.abs().max().item())
        big = ref.abs() >= 0.1
        if big.any():
            self.max_rel_big = max(self.max_rel_big, (d[big] / ref.abs()[big]).max().item())
        big = ref.abs() >= 1
        if big.any():
            self.max_rel_1 = max(self.max_rel_1, (d[big] / ref.abs()[big]).max().item())

    def as_dict(self):
        return {"max_abs": self.max_abs, "max_abs_over_max_abs_ref": self.max_abs / self.max_ref,
                "max_rel_where_abs_ref_ge_0.1": self.max_rel_big, "max_rel_where_abs_ref_ge_1": self.max_rel_1,
                "greedy_tokens_identical": self.greedy_same}


def choose_inputs(name, cfg, p, seed):
    """Draws the prompts (token ids 3..63: no bos/eos/pad of any config), retrying until the greedy generations
    are robust fixtures: every top-1/top-2 margin > 1e-3 (far above a float32 engine's error), no config eos id
    in the generations without eos (so "no eos" and "stop at the config's eos" agree), at least 3 distinct tokens
    per generation, and a token for the eos case."""
    pad_id = cfg.get("pad_token_id") or 0
    for attempt in range(100):
        g = torch.Generator().manual_seed(1000 * seed + attempt)

        def tokens(n):
            return torch.randint(3, 64, (n,), generator=g).tolist()

        single_ids, seqs = tokens(9), [tokens(9), tokens(5), tokens(1)]
        ids, mask = left_pad(seqs, pad_id)
        gaps = []
        gen_single = greedy_generate(p, cfg, [single_ids], None, 12, gaps=gaps)[0]
        gen_batch = greedy_generate(p, cfg, ids, mask, 12, pad_token_id=pad_id, gaps=gaps)
        gens = [gen_single] + gen_batch
        # eos: the config's eos id and a token row 0 produces mid-way (not earlier in row 0), preferably one that
        # leaves another row running to max_new_tokens
        candidates = [t for k, t in enumerate(gen_batch[0]) if 2 <= k <= 8 and t not in gen_batch[0][:k]]
        if (min(gaps) > 1e-3 and not any(cfg["eos_token_id"] in r for r in gens)
                and all(len(set(r)) >= 3 for r in gens) and candidates):
            x = next((t for t in candidates if any(t not in r for r in gen_batch[1:])), candidates[0])
            return dict(single_ids=single_ids, seqs=seqs, ids=ids, mask=mask, gen_single=gen_single,
                        gen_batch=gen_batch, eos_ids=[cfg["eos_token_id"], x], min_gap=min(gaps), attempt=attempt,
                        tokens=tokens)
    raise AssertionError(f"{name}: no prompts give robust greedy fixtures")


def rope_info(cfg):
    # what LlamaRotaryEmbedding holds: inv_freq [head_dim / 2] and attention_scaling (cos and sin are multiplied by it)
    inv_freq, attention_scaling = ROPE_INIT_FUNCTIONS[rope_type_of(cfg)](cfg, torch.float64)
    return {"rope_type": rope_type_of(cfg), "inv_freq": r8(inv_freq), "attention_scaling": attention_scaling}


def self_checks():
    """Building blocks against torch's own functions and the sliding-window rule stated in the contract."""
    x = torch.randn(5, 7, dtype=torch.float64) * 3
    assert torch.allclose(silu(x), torch.nn.functional.silu(x), rtol=0, atol=1e-14)
    assert torch.allclose(gelu_pytorch_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=0, atol=1e-14)
    w = torch.randn(7, dtype=torch.float64)
    ref = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(llama_rms_norm(w, x, 1e-6), ref * w, rtol=0, atol=1e-13)
    assert torch.allclose(gemma2_rms_norm(w, x, 1e-6), ref * (1 + w), rtol=0, atol=1e-13)
    # RoPE as rotations of the pairs (j, j + D/2) by position * inv_freq[j] (complex multiplication)
    cfg = {"hidden_size": 48, "num_attention_heads": 4, "head_dim": 12, "rope_theta": 10000.0}
    pos = torch.tensor([[0, 3, 17]])
    cos, sin = rotary_embedding(cfg, pos, torch.float64)
    q = torch.randn(1, 2, 3, 12, dtype=torch.float64)
    rq, _ = apply_rotary_pos_emb(q, q, cos, sin)
    inv_freq, _ = _compute_default_rope_parameters(cfg, torch.float64)
    angles = pos[0, :, None] * inv_freq
    z = torch.complex(q[..., :6], q[..., 6:]) * torch.polar(torch.ones_like(angles), angles)
    assert torch.allclose(torch.cat([z.real, z.imag], -1), rq, rtol=0, atol=1e-12)
    # mask: with a window w, a query sees exactly its w most recent real keys (itself included)
    am = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1]])
    m = causal_mask(am, 0, 9, 3, torch.float64)[0, 0] == 0
    for i in range(9):  # (queries 0 and 1 are padding: they see nothing)
        assert [j for j in range(9) if m[i, j]] == (list(range(max(2, i - 2), i + 1)) if i >= 2 else [])
    m = causal_mask(am[:, :7], 5, 2, None, torch.float64)[0, 0] == 0  # cached: 2 new queries over 7 columns
    assert m.tolist() == [[j >= 2 and j <= 5 for j in range(7)], [j >= 2 for j in range(7)]]


def run_model(name, cfg, p, seed, dtype_label, sensitivity):
    V = cfg["vocab_size"]
    p32 = {k: v.to(torch.float32) for k, v in p.items()}
    f32 = F32Stats()
    pad_id = cfg.get("pad_token_id") or 0
    chosen = choose_inputs(name, cfg, p, seed)
    tokens = chosen["tokens"]  # continues the same generator for the extra tokens below
    single_ids, seqs, ids, mask = chosen["single_ids"], chosen["seqs"], chosen["ids"], chosen["mask"]

    # (a) one sequence, L = 9
    single = causal_lm_forward(p, cfg, [single_ids])[0]
    if F32_CHECK:
        f32.add(single, causal_lm_forward(p32, cfg, [single_ids], dtype=torch.float32)[0])

    # (b) left-padded batch, lengths 9, 5, 1, generate-style position ids
    pos = generation_position_ids(mask)
    batch = causal_lm_forward(p, cfg, ids, mask, pos)
    for b, s in enumerate(seqs):
        alone = causal_lm_forward(p, cfg, [s])[0]
        diff = (batch[b, -len(s):] - alone).abs().max().item()
        assert diff < 1e-10, f"{name}: batch row {b} differs from its single run by {diff}"
    real = mask.bool()
    if F32_CHECK:
        f32.add(batch[real], causal_lm_forward(p32, cfg, ids, mask, pos, dtype=torch.float32)[real])
    batch_out = torch.where(real[:, :, None], batch, torch.zeros((), dtype=batch.dtype))

    # (d) cached decoding: prefill 6 tokens, then 4 steps of one token, against the full forward of all 10
    cached_ids = single_ids + tokens(1)
    full = causal_lm_forward(p, cfg, [cached_ids])[0]
    cache = DynamicCache()
    parts = [causal_lm_forward(p, cfg, [cached_ids[:6]], cache=cache)[0]]
    for t in range(6, 10):
        parts.append(causal_lm_forward(p, cfg, [cached_ids[t:t + 1]], cache=cache)[0])
    cached = torch.cat(parts)
    diff = (cached - full).abs().max().item()
    assert diff < 1e-10, f"{name}: cached decoding differs from the full forward by {diff}"
    assert (full[:9] - single).abs().max().item() < 1e-10  # causal: the first 9 rows are case (a)
    if F32_CHECK:
        cache32 = DynamicCache()
        parts32 = [causal_lm_forward(p32, cfg, [cached_ids[:6]], cache=cache32, dtype=torch.float32)[0]]
        for t in range(6, 10):
            parts32.append(causal_lm_forward(p32, cfg, [cached_ids[t:t + 1]], cache=cache32, dtype=torch.float32)[0])
        f32.add(full, torch.cat(parts32))

    # (d') cached decoding of the left-padded batch: prefill = case (b), then 3 steps of one token per row;
    # attention_mask covers past + new tokens, position ids as generate computes them
    cache = DynamicCache()
    causal_lm_forward(p, cfg, ids, mask, pos, cache)
    if F32_CHECK:
        cache32 = DynamicCache()
        causal_lm_forward(p32, cfg, ids, mask, pos, cache32, dtype=torch.float32)
    step_mask, steps, rows = mask, [], [list(s) for s in seqs]
    for _ in range(3):
        step_tokens = torch.tensor([tokens(1) for _ in seqs])
        step_mask = torch.cat([step_mask, torch.ones(len(seqs), 1, dtype=step_mask.dtype)], dim=-1)
        step_pos = generation_position_ids(step_mask)[:, -1:]
        out = causal_lm_forward(p, cfg, step_tokens, step_mask, step_pos, cache)
        for b in range(len(seqs)):
            rows[b].append(int(step_tokens[b, 0]))
            alone = causal_lm_forward(p, cfg, [rows[b]])[0, -1]
            diff = (out[b, 0] - alone).abs().max().item()
            assert diff < 1e-10, f"{name}: cached batch step, row {b} differs from its single run by {diff}"
        if F32_CHECK:
            f32.add(out, causal_lm_forward(p32, cfg, step_tokens, step_mask, step_pos, cache32, dtype=torch.float32))
        steps.append({"input_ids": step_tokens.tolist(), "attention_mask": step_mask.tolist(),
                      "position_ids": step_pos.tolist(), "shape": [len(seqs), 1, V], "logits": r8(out)})

    # (c) greedy generation, 12 new tokens: the single sequence, the batch, the batch with eos ids (computed in
    # choose_inputs; checked here against decoding by full recomputation, row by row)
    gen_single, gen_batch = chosen["gen_single"], chosen["gen_batch"]
    eos_ids, min_gap = chosen["eos_ids"], chosen["min_gap"]
    assert gen_single == greedy_by_recompute(p, cfg, single_ids, 12), f"{name}: cached greedy != recomputed greedy"
    for b, s in enumerate(seqs):
        assert gen_batch[b] == greedy_by_recompute(p, cfg, s, 12), f"{name}: batch row {b} generates differently"
    gen_eos = greedy_generate(p, cfg, ids, mask, 12, eos_token_id=eos_ids, pad_token_id=pad_id)
    for b in range(len(seqs)):
        hits = [k for k, t in enumerate(gen_batch[b]) if t in eos_ids]
        assert gen_eos[b] == (gen_batch[b][:hits[0] + 1] if hits else gen_batch[b]), f"{name}: eos row {b}"
    if F32_CHECK:
        fp32 = torch.float32
        f32.greedy_same = (greedy_generate(p32, cfg, [single_ids], None, 12, dtype=fp32)[0] == gen_single
                           and greedy_generate(p32, cfg, ids, mask, 12, pad_token_id=pad_id, dtype=fp32) == gen_batch
                           and greedy_generate(p32, cfg, ids, mask, 12, eos_ids, pad_id, dtype=fp32) == gen_eos)
        assert f32.greedy_same, f"{name}: float32 greedy differs"
        assert f32.max_abs / f32.max_ref < 1e-5, f"{name}: float32 run differs by {f32.max_abs / f32.max_ref} relative"

    # sensitivity: how much the logits of case (a) move when one feature is switched off or done the other way
    sens = {}
    for label, over in sensitivity.items():
        alt = causal_lm_forward(p, {**cfg, **over}, [single_ids])[0]
        sens[label] = (alt - single).abs().max().item()
        assert sens[label] > 1e-3, f"{name}: the fixture does not tell '{label}' apart ({sens[label]})"

    entry = {
        "model_type": cfg["model_type"], "weights": f"{name}.safetensors", "config": f"{name}.config.json",
        "dtype": dtype_label,
        "sliding_window_per_layer": [layer_sliding_window(cfg, i) for i in range(cfg["num_hidden_layers"])],
        "rope": rope_info(cfg),
        "single": {"input_ids": single_ids, "position_ids": None, "shape": [9, V], "logits": r8(single)},
        "batch": {
            "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": pos.tolist(),
            "lengths": [len(s) for s in seqs], "shape": list(batch.shape), "logits": r8(batch_out),
        },
        "cached": {"input_ids": cached_ids, "prefill_length": 6, "steps": 4, "shape": [10, V], "logits": r8(full)},
        "cached_batch": {"prefill": "batch", "steps": steps},
        "generate": [
            {"name": "one sequence (case single), greedy", "input_ids": single_ids, "attention_mask": None,
             "max_new_tokens": 12, "eos_token_id": None, "new_tokens": gen_single},
            {"name": "left-padded batch (case batch), greedy", "input_ids": ids.tolist(),
             "attention_mask": mask.tolist(), "max_new_tokens": 12, "eos_token_id": None, "pad_token_id": pad_id,
             "new_tokens": gen_batch},
            {"name": "left-padded batch (case batch), greedy, stops at eos", "input_ids": ids.tolist(),
             "attention_mask": mask.tolist(), "max_new_tokens": 12, "eos_token_id": eos_ids, "pad_token_id": pad_id,
             "new_tokens": gen_eos},
        ],
        "greedy_min_top2_gap": min_gap,
        "sensitivity_max_abs": sens,
    }
    if F32_CHECK:
        entry["float32_check"] = f32.as_dict()
    return entry


STD = {"embed": 0.5, "qk": 0.25, "vo": 0.2}


def main():
    torch.manual_seed(0)
    self_checks()
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        f.unlink()
    models = {}
    yarn_scaling = {"factor": 4.0, "original_max_position_embeddings": 32, "rope_type": "yarn"}
    specs = [
        # name, config, file dtype, seed, init stds, extra keys, sensitivity {label: config overrides}
        ("llama-tied", llama_config(tie_word_embeddings=True), "F32", 21, STD, None, {}),
        ("llama-untied", llama_config(), "F32", 22, STD, rotary_inv_freq_buffers,
         {"lm_head tied instead of lm_head.weight": {"tie_word_embeddings": True}}),
        ("llama-rope-linear", llama_config(rope_scaling={"factor": 2.0, "rope_type": "linear", "type": "linear"}),
         "F32", 23, STD, None, {"no rope scaling": {"rope_scaling": None}}),
        ("llama-rope-llama3", llama_config(rope_scaling={
            "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 32, "rope_type": "llama3"}),
         "F32", 24, STD, None, {"no rope scaling": {"rope_scaling": None},
                                "linear scaling by factor instead":
                                    {"rope_scaling": {"factor": 8.0, "rope_type": "linear"}}}),
        ("llama-rope-yarn", llama_config(rope_theta=1000.0, rope_scaling=yarn_scaling), "F32", 25, STD, None,
         {"no rope scaling": {"rope_scaling": None},
          "yarn correction range of transformers < 4.50 (max_position_embeddings)": {"_yarn_pre_4_50": True},
          "yarn without attention_factor": {"rope_scaling": {**yarn_scaling, "attention_factor": 1.0}}}),
        ("mistral", make_config("mistral", "MistralForCausalLM", "float32", bos_token_id=1, eos_token_id=2, head_dim=12,
                                hidden_act="silu", num_hidden_layers=2, rms_norm_eps=1e-05, rope_theta=10000.0,
                                sliding_window=5, tie_word_embeddings=False),
         "F32", 26, STD, None, {"no sliding window": {"sliding_window": None},
                                "window of w + 1 keys": {"sliding_window": 6}}),
        ("qwen2", make_config("qwen2", "Qwen2ForCausalLM", "float32", bos_token_id=64, eos_token_id=66,
                              hidden_act="silu", max_window_layers=1, num_hidden_layers=2, rms_norm_eps=1e-06,
                              rope_scaling=None, rope_theta=1000000.0, sliding_window=4, tie_word_embeddings=True,
                              use_sliding_window=False),
         "F32", 27, STD, None, {"sliding_window honoured without use_sliding_window": {"use_sliding_window": True}}),
        ("qwen3", make_config("qwen3", "Qwen3ForCausalLM", "float32", attention_bias=False, bos_token_id=64,
                              eos_token_id=66, head_dim=16, hidden_act="silu", max_window_layers=2,
                              num_hidden_layers=2, rms_norm_eps=1e-06, rope_scaling=None, rope_theta=1000000.0,
                              sliding_window=None, tie_word_embeddings=False, use_sliding_window=False),
         "F32", 28, STD, None, {"no q_norm/k_norm": {"_no_qk_norm": True}}),
        ("gemma2", make_config("gemma2", "Gemma2ForCausalLM", "float32", attention_bias=False,
                               attn_logit_softcapping=50.0, bos_token_id=2, cache_implementation="hybrid",
                               eos_token_id=1, final_logit_softcapping=30.0, head_dim=12,
                               hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                               num_hidden_layers=3, pad_token_id=0, query_pre_attn_scalar=24, rms_norm_eps=1e-06,
                               rope_theta=10000.0, sliding_window=4),
         "F32", 29, {"embed": 0.15, "qk": 0.5, "vo": 0.2, "post_norm_offset": 3.0, "final_norm_offset": 4.0}, None,
         {"no attn_logit_softcapping": {"attn_logit_softcapping": None},
          "no final_logit_softcapping": {"final_logit_softcapping": None},
          "scaling head_dim ** -0.5": {"query_pre_attn_scalar": 12},
          "no sliding window": {"sliding_window": None},
          "sliding window on odd layers": {"_sliding_on_odd_layers": True},
          "no sqrt(hidden_size) normalizer": {"_no_normalizer": True}}),
        ("llama-tied-bf16", llama_config("bfloat16", tie_word_embeddings=True), "BF16", 30, STD, None, {}),
    ]
    for name, cfg, st_dtype, seed, std, extra, sens in specs:
        p = build_model(name, cfg, st_dtype, seed, std, extra)
        models[name] = run_model(name, cfg, p, seed, st_dtype, sens)
        if "float32_check" in models[name]:
            s = models[name]["float32_check"]
            print(f"  {name}: f32 vs f64 max_abs {s['max_abs']:.3g}, /max|ref| {s['max_abs_over_max_abs_ref']:.3g}, "
                  f"max rel (|ref|>=0.1) {s['max_rel_where_abs_ref_ge_0.1']:.3g}, "
                  f"(|ref|>=1) {s['max_rel_where_abs_ref_ge_1']:.3g}; "
                  f"greedy gap "
                  f"{models[name]['greedy_min_top2_gap']:.3g}; sensitivity " +
                  ", ".join(f"{k}: {v:.3g}" for k, v in models[name]["sensitivity_max_abs"].items()))

    doc = {
        "generator": "scripts/fixtures_decoders.py",
        "torch": torch.__version__,
        "semantics": "transformers 4.50 - 4.57 modeling files (eager attention); YaRN correction range from "
                     "rope_scaling.original_max_position_embeddings (>= 4.50)",
        "notes": [
            "logits: flattened row-major, shape as given; float64 reference from the stored weights, rounded to 8 "
            "significant digits",
            "single: one unbatched sequence, positions 0..L-1, logits [L, vocab]",
            "batch: LEFT-padded (attention_mask 0 on the left, pad ids in input_ids), position_ids as "
            "GenerationMixin.prepare_inputs_for_generation computes them: cumsum(attention_mask) - 1, padding set "
            "to 1. logits [B, L, vocab] are 0.0 where attention_mask is 0 (undefined there). A plain HF forward "
            "without position_ids would use 0..L-1 for every row instead, which changes the logits of every row "
            "that has padding",
            "cached: full-forward logits [10, vocab] of input_ids; a prefill of the first prefill_length tokens "
            "returns rows 0..prefill_length-1, then each of the `steps` one-token calls returns the next row "
            "(positions continue from the cache length)",
            "cached_batch: prefill = the batch case (same input_ids, attention_mask, position_ids; its logits are "
            "batch.logits), then one token per row per step; each step lists the attention_mask over past + new "
            "tokens, the position_ids of the new token and its logits [B, 1, vocab]",
            "generate: greedy (temperature 0) new tokens; eos_token_id null = no stopping token, a list = stop a row "
            "at the first of them, included in its new tokens; finished rows are fed pad_token_id while the others "
            "run; each row is as long as it ran. The config's eos id never occurs in the generations without eos, so "
            "an engine that stops at the config's eos by default gives the same tokens there",
            "tie_word_embeddings: written explicitly in every config except gemma2's (absent = true, Gemma2Config's "
            "default; LlamaConfig/MistralConfig/Qwen2Config/Qwen3Config default to false)",
            "qwen2: q/k/v biases always (no attention_bias field); sliding_window is set but use_sliding_window is "
            "false, so no layer slides. gemma2: layers 0 and 2 slide (even index), scores * query_pre_attn_scalar "
            "** -0.5, tanh soft-capping of scores (before the mask) and of the final logits, embeddings * "
            "sqrt(hidden_size), RMSNorm weight used as (1 + w), post_attention_layernorm on the attention output",
            "sliding windows: key column j is visible from query column i when i - w < j <= i (w keys, the query's own "
            "included; columns count the padding, which is masked anyway)",
            "llama-untied carries model.layers.{i}.self_attn.rotary_emb.inv_freq buffers (as transformers < 4.31 "
            "saved them), to be ignored",
            "sensitivity_max_abs: max |logits(a) with one feature switched off - reference|; all > 1e-3, so the "
            "fixtures tell each feature apart",
            "float32_check: the same reference run in float32 from the same weights, against float64 (real tokens)",
        ],
        "models": models,
    }
    (OUT / "cases.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes):", ", ".join(sorted(f.name for f in OUT.iterdir())))


if __name__ == "__main__":
    main()
