"""Writes test/fixtures/encoders/: tiny random BERT and RoBERTa encoders saved the way Hugging Face's
save_pretrained saves them (safetensors + config.json), and cases.json with the outputs of their forward.

Run with Debian's torch (apt-get install python3-torch):
    /usr/bin/python3 scripts/fixtures_encoders.py [--no-f32-check]

Hugging Face `transformers` is not needed (nor installed): the forward below is a plain-torch
re-implementation of BertModel / RobertaModel inference that follows transformers' modeling_bert.py and
modeling_roberta.py function by function (eager attention, no dropout, no cache, no cross-attention,
absolute positions). Each function names the Hugging Face class or function it mirrors.

The weights are stored in the file's dtype (F32, BF16 or F16); the reference outputs are computed in
float64 from those stored values, so they are what an exact engine would produce from the same file.
Safetensors files are written by hand, laid out as the safetensors writer lays them out.

--no-f32-check skips the float32 self-check (the same reference run in float32 and compared to float64;
the result is printed and stored in cases.json under "float32_check").
"""
import json
import math
import pathlib
import struct
import sys

import numpy as np
import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures" / "encoders"
F32_CHECK = "--no-f32-check" not in sys.argv


# ----------------------------------------------------------------------------------------------
# Forward, following transformers/models/bert/modeling_bert.py and roberta/modeling_roberta.py.
# `p` maps state-dict names WITHOUT the base-model prefix ("encoder.layer.0.attention.self.query.weight")
# to tensors already widened to the compute dtype; `cfg` is the config.json dict.
# ----------------------------------------------------------------------------------------------

def _gelu_erf(x):
    # activations.GELUActivation ("gelu"): nn.functional.gelu, i.e. x * 0.5 * (1 + erf(x / sqrt(2)))
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    # activations.NewGELUActivation ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


# activations.ACT2FN (the three entries the TypeScript side honours)
ACT2FN = {"gelu": _gelu_erf, "gelu_new": _gelu_tanh, "relu": torch.relu}


def linear(p, name, x):
    # nn.Linear: x @ weight.T + bias, weight stored [out_features, in_features]
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def layer_norm(p, name, x, eps):
    # nn.LayerNorm over the last dim: biased variance, eps inside the square root
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * p[name + ".weight"] + p[name + ".bias"]


def create_position_ids_from_input_ids(input_ids, padding_idx, past_key_values_length=0):
    # modeling_roberta.create_position_ids_from_input_ids: non-padding tokens are numbered
    # padding_idx + 1, padding_idx + 2, ... by a cumulative sum over (input_ids != padding_idx);
    # padding tokens get padding_idx. It looks at the token ids, not at attention_mask.
    mask = input_ids.ne(padding_idx).int()
    incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_key_values_length) * mask
    return incremental.long() + padding_idx


def bert_embeddings(p, cfg, input_ids, token_type_ids, position_ids):
    # BertEmbeddings.forward (and RobertaEmbeddings.forward, which only differs in position_ids):
    # word + token_type + absolute position embeddings, then LayerNorm (dropout is identity).
    batch, seq_length = input_ids.shape
    if position_ids is None:
        # BertEmbeddings: the registered buffer position_ids = arange(max_position_embeddings), sliced
        position_ids = torch.arange(seq_length, dtype=torch.long).unsqueeze(0)
    if token_type_ids is None:
        # the registered all-zero token_type_ids buffer, sliced and expanded to [batch, seq_length]
        token_type_ids = torch.zeros((batch, seq_length), dtype=torch.long)
    inputs_embeds = p["embeddings.word_embeddings.weight"][input_ids]
    token_type_embeddings = p["embeddings.token_type_embeddings.weight"][token_type_ids]
    embeddings = inputs_embeds + token_type_embeddings
    embeddings = embeddings + p["embeddings.position_embeddings.weight"][position_ids]
    return layer_norm(p, "embeddings.LayerNorm", embeddings, cfg["layer_norm_eps"])


def get_extended_attention_mask(attention_mask, dtype):
    # ModuleUtilsMixin.get_extended_attention_mask (encoder, 2-D mask): [B, L] -> [B, 1, 1, L],
    # 0.0 where attended and torch.finfo(dtype).min where masked, added to the scores.
    ext = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


def bert_self_attention(p, cfg, prefix, hidden_states, extended_attention_mask):
    # BertSelfAttention.forward, eager path (absolute positions, not a decoder, no head_mask)
    heads = cfg["num_attention_heads"]
    head_size = cfg["hidden_size"] // heads

    def transpose_for_scores(x):  # BertSelfAttention.transpose_for_scores: [B, L, H*d] -> [B, H, L, d]
        return x.view(*x.shape[:-1], heads, head_size).permute(0, 2, 1, 3)

    query_layer = transpose_for_scores(linear(p, prefix + ".query", hidden_states))
    key_layer = transpose_for_scores(linear(p, prefix + ".key", hidden_states))
    value_layer = transpose_for_scores(linear(p, prefix + ".value", hidden_states))
    attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
    attention_scores = attention_scores / math.sqrt(head_size)
    attention_scores = attention_scores + extended_attention_mask
    attention_probs = torch.softmax(attention_scores, dim=-1)
    context = torch.matmul(attention_probs, value_layer).permute(0, 2, 1, 3).contiguous()
    return context.view(*context.shape[:-2], heads * head_size)


def bert_self_output(p, cfg, prefix, hidden_states, input_tensor):
    # BertSelfOutput.forward: dense, then LayerNorm(hidden + residual)
    hidden_states = linear(p, prefix + ".dense", hidden_states)
    return layer_norm(p, prefix + ".LayerNorm", hidden_states + input_tensor, cfg["layer_norm_eps"])


def bert_attention(p, cfg, prefix, hidden_states, extended_attention_mask):
    # BertAttention.forward: self-attention then BertSelfOutput with the layer input as residual
    self_output = bert_self_attention(p, cfg, prefix + ".self", hidden_states, extended_attention_mask)
    return bert_self_output(p, cfg, prefix + ".output", self_output, hidden_states)


def bert_intermediate(p, cfg, prefix, hidden_states):
    # BertIntermediate.forward: dense then ACT2FN[hidden_act]
    return ACT2FN[cfg["hidden_act"]](linear(p, prefix + ".dense", hidden_states))


def bert_output(p, cfg, prefix, hidden_states, input_tensor):
    # BertOutput.forward: dense (intermediate -> hidden), then LayerNorm(hidden + residual)
    hidden_states = linear(p, prefix + ".dense", hidden_states)
    return layer_norm(p, prefix + ".LayerNorm", hidden_states + input_tensor, cfg["layer_norm_eps"])


def bert_layer(p, cfg, prefix, hidden_states, extended_attention_mask):
    # BertLayer.forward + BertLayer.feed_forward_chunk (chunk_size_feed_forward 0: no chunking)
    attention_output = bert_attention(p, cfg, prefix + ".attention", hidden_states, extended_attention_mask)
    intermediate_output = bert_intermediate(p, cfg, prefix + ".intermediate", attention_output)
    return bert_output(p, cfg, prefix + ".output", intermediate_output, attention_output)


def bert_encoder(p, cfg, hidden_states, extended_attention_mask):
    # BertEncoder.forward: the layers in sequence, the same extended mask for each
    for i in range(cfg["num_hidden_layers"]):
        hidden_states = bert_layer(p, cfg, f"encoder.layer.{i}", hidden_states, extended_attention_mask)
    return hidden_states


def model_forward(p, cfg, input_ids, attention_mask=None, token_type_ids=None, dtype=torch.float64):
    # BertModel.forward / RobertaModel.forward -> last_hidden_state (the pooler is not needed here)
    input_ids = torch.tensor(input_ids, dtype=torch.long)
    batch, seq_length = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones((batch, seq_length))
    else:
        attention_mask = torch.tensor(attention_mask)
    if token_type_ids is not None:
        token_type_ids = torch.tensor(token_type_ids, dtype=torch.long)
    position_ids = None
    if cfg["model_type"] == "roberta":
        # RobertaEmbeddings.forward: position_ids from the input ids when not given
        position_ids = create_position_ids_from_input_ids(input_ids, cfg["pad_token_id"])
    extended = get_extended_attention_mask(attention_mask, dtype)
    embedding_output = bert_embeddings(p, cfg, input_ids, token_type_ids, position_ids)
    return bert_encoder(p, cfg, embedding_output, extended)


def mean_pool(last_hidden_state, attention_mask):
    # sentence-transformers Pooling (pooling_mode_mean_tokens): sum of the masked token vectors
    # divided by the number of real tokens, clamped to at least 1e-9
    mask = torch.tensor(attention_mask).unsqueeze(-1).expand(last_hidden_state.shape).to(last_hidden_state.dtype)
    summed = torch.sum(last_hidden_state * mask, 1)
    count = torch.clamp(mask.sum(1), min=1e-9)
    return summed / count


# ----------------------------------------------------------------------------------------------
# Independent check: the same encoder through torch's own nn.TransformerEncoderLayer (post-LN)
# ----------------------------------------------------------------------------------------------

def torch_layers_check(p, cfg, embedding_output, attention_mask):
    hsz, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    act = {"gelu": "gelu", "relu": "relu", "gelu_new": _gelu_tanh}[cfg["hidden_act"]]
    x = embedding_output
    kpm = torch.tensor(attention_mask) == 0
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        layer = nn.TransformerEncoderLayer(hsz, heads, cfg["intermediate_size"], 0.0, act, cfg["layer_norm_eps"],
                                           batch_first=True).double().eval()
        sa = layer.self_attn
        with torch.no_grad():
            sa.in_proj_weight.copy_(torch.cat([p[pre + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]))
            sa.in_proj_bias.copy_(torch.cat([p[pre + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]))
            sa.out_proj.weight.copy_(p[pre + "attention.output.dense.weight"])
            sa.out_proj.bias.copy_(p[pre + "attention.output.dense.bias"])
            layer.norm1.weight.copy_(p[pre + "attention.output.LayerNorm.weight"])
            layer.norm1.bias.copy_(p[pre + "attention.output.LayerNorm.bias"])
            layer.linear1.weight.copy_(p[pre + "intermediate.dense.weight"])
            layer.linear1.bias.copy_(p[pre + "intermediate.dense.bias"])
            layer.linear2.weight.copy_(p[pre + "output.dense.weight"])
            layer.linear2.bias.copy_(p[pre + "output.dense.bias"])
            layer.norm2.weight.copy_(p[pre + "output.LayerNorm.weight"])
            layer.norm2.bias.copy_(p[pre + "output.LayerNorm.bias"])
        x = layer(x, src_key_padding_mask=kpm)
    return x


# ----------------------------------------------------------------------------------------------
# Tiny random models, saved as save_pretrained saves them
# ----------------------------------------------------------------------------------------------

def make_config(model_type, architecture, torch_dtype, **over):
    cfg = {
        "architectures": [architecture],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "model_type": model_type,
        "position_embedding_type": "absolute",
        "torch_dtype": torch_dtype,
        "use_cache": True,
    }
    cfg.update(over)
    return dict(sorted(cfg.items()))  # PretrainedConfig.to_json_string sorts the keys


def random_state_dict(cfg, gen):
    """Base-model parameters (BertModel/RobertaModel names), float64, not yet rounded to the file dtype."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def w(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.2

    def ln(name):
        sd[name + ".weight"] = 1.0 + torch.randn(H, generator=gen, dtype=torch.float64) * 0.1
        sd[name + ".bias"] = torch.randn(H, generator=gen, dtype=torch.float64) * 0.1

    sd = {
        "embeddings.word_embeddings.weight": w(V, H),
        "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], H),
        "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], H),
    }
    ln("embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            sd[pre + f"attention.self.{n}.weight"], sd[pre + f"attention.self.{n}.bias"] = w(H, H), w(H)
        sd[pre + "attention.output.dense.weight"], sd[pre + "attention.output.dense.bias"] = w(H, H), w(H)
        ln(pre + "attention.output.LayerNorm")
        sd[pre + "intermediate.dense.weight"], sd[pre + "intermediate.dense.bias"] = w(I, H), w(I)
        sd[pre + "output.dense.weight"], sd[pre + "output.dense.bias"] = w(H, I), w(H)
        ln(pre + "output.LayerNorm")
    return sd


TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
# safetensors' Dtype enum order; its writer sorts tensors by dtype (descending), then by name
ST_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def tensor_bytes(t, st_dtype):
    t = t.contiguous()
    if st_dtype == "BF16":
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype({"F32": "<f4", "F16": "<f2", "I64": "<i8"}[st_dtype]).tobytes()


def write_safetensors(path, tensors):
    """tensors: name -> (torch tensor already in its dtype, safetensors dtype). Hand-written:
    8-byte little-endian header size, compact JSON header (__metadata__ first, then the tensors in
    data order), padded with spaces to a multiple of 8, then the raw little-endian bytes."""
    names = sorted(tensors, key=lambda n: (-ST_ORDER.index(tensors[n][1]), n))
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in names:
        t, st = tensors[name]
        raw = tensor_bytes(t, st)
        header[name] = {"dtype": st, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    """Reads the file back (a check of the writer): name -> float64 / int64 tensor."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = body[a:b]
        if info["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2", "I64": "<i8"}[info["dtype"]]).copy())
        out[name] = t.reshape(info["shape"])
    return out


def build_model(name, cfg, st_dtype, prefix, extra, seed):
    """Rounds the random parameters to the file dtype, adds the extra (ignored) keys, writes the
    safetensors and config.json; returns the stored base-model parameters widened to float64."""
    gen = torch.Generator().manual_seed(seed)
    sd = random_state_dict(cfg, gen)
    stored = {k: v.to(TORCH_DTYPE[st_dtype]) for k, v in sd.items()}
    tensors = {prefix + k: (v, st_dtype) for k, v in stored.items()}
    for k, v in extra(cfg, gen).items():
        tensors[k] = (v, "I64") if v.dtype == torch.long else (v.to(TORCH_DTYPE[st_dtype]), st_dtype)
    st_path = OUT / f"{name}.safetensors"
    write_safetensors(st_path, tensors)
    (OUT / f"{name}.config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    back = read_safetensors(st_path)
    assert set(back) == set(tensors)
    for k, (v, _) in tensors.items():
        assert torch.equal(back[k], v), k
    return {k: back[prefix + k].to(torch.float64) for k in sd}


def bert_extra_plain(cfg, gen):
    # BertModel.save_pretrained (older transformers): the position_ids buffer and the pooler
    H = cfg["hidden_size"]
    return {
        "embeddings.position_ids": torch.arange(cfg["max_position_embeddings"], dtype=torch.long).unsqueeze(0),
        "pooler.dense.weight": torch.randn(H, H, generator=gen, dtype=torch.float64) * 0.2,
        "pooler.dense.bias": torch.randn(H, generator=gen, dtype=torch.float64) * 0.2,
    }


def bert_extra_mlm(cfg, gen):
    # BertForMaskedLM: BertModel(add_pooling_layer=False) under "bert." plus the BertOnlyMLMHead;
    # cls.predictions.decoder.weight is tied to the word embeddings and not written again
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    return {
        "cls.predictions.bias": torch.randn(V, generator=gen, dtype=torch.float64) * 0.2,
        "cls.predictions.transform.dense.weight": torch.randn(H, H, generator=gen, dtype=torch.float64) * 0.2,
        "cls.predictions.transform.dense.bias": torch.randn(H, generator=gen, dtype=torch.float64) * 0.2,
        "cls.predictions.transform.LayerNorm.weight": 1.0 + torch.randn(H, generator=gen, dtype=torch.float64) * 0.1,
        "cls.predictions.transform.LayerNorm.bias": torch.randn(H, generator=gen, dtype=torch.float64) * 0.1,
    }


def roberta_extra_mlm(cfg, gen):
    # RobertaForMaskedLM: RobertaModel(add_pooling_layer=False) under "roberta." (older versions also
    # saved the position_ids buffer) plus RobertaLMHead; lm_head.decoder.* are in _keys_to_ignore_on_save
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    return {
        "roberta.embeddings.position_ids": torch.arange(cfg["max_position_embeddings"], dtype=torch.long).unsqueeze(0),
        "lm_head.dense.weight": torch.randn(H, H, generator=gen, dtype=torch.float64) * 0.2,
        "lm_head.dense.bias": torch.randn(H, generator=gen, dtype=torch.float64) * 0.2,
        "lm_head.layer_norm.weight": 1.0 + torch.randn(H, generator=gen, dtype=torch.float64) * 0.1,
        "lm_head.layer_norm.bias": torch.randn(H, generator=gen, dtype=torch.float64) * 0.1,
        "lm_head.bias": torch.randn(V, generator=gen, dtype=torch.float64) * 0.2,
    }


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

def r9(values):
    return [float(f"{v:.9g}") for v in values.reshape(-1).tolist()]


def pad_batch(seqs, pad_id, side, type_seqs=None):
    L = max(len(s) for s in seqs)
    ids, mask, types = [], [], []
    for b, s in enumerate(seqs):
        n = L - len(s)
        t = type_seqs[b] if type_seqs else None
        if side == "right":
            ids.append(s + [pad_id] * n)
            mask.append([1] * len(s) + [0] * n)
            types.append(t + [0] * n if t else None)
        else:
            ids.append([pad_id] * n + s)
            mask.append([0] * n + [1] * len(s))
            types.append([0] * n + t if t else None)
    return ids, mask, (types if type_seqs else None)


stats = {"max_abs": 0.0, "max_abs_over_max_ref": 0.0, "max_rel_where_abs_ref_ge_0.1": 0.0, "mean_pooled_max_abs": 0.0}
per_model_stats = {}


def f32_compare(model, p64, cfg, ids, fwd_mask, mask, types, ref, ref_pool):
    p32 = {k: v.to(torch.float32) for k, v in p64.items()}
    out = model_forward(p32, cfg, ids, fwd_mask, types, dtype=torch.float32).double()
    pool = mean_pool(out, mask)
    d = (out - ref).abs()  # all positions, padded ones included
    s = per_model_stats.setdefault(model, {k: 0.0 for k in stats})
    big = ref.abs() >= 0.1
    vals = {
        "max_abs": d.max().item(),
        "max_abs_over_max_ref": (d.max() / ref.abs().max()).item(),
        "max_rel_where_abs_ref_ge_0.1": (d[big] / ref.abs()[big]).max().item(),
        "mean_pooled_max_abs": (pool - ref_pool).abs().max().item(),
    }
    for k, v in vals.items():
        s[k] = max(s[k], v)
        stats[k] = max(stats[k], v)


def run_case(model, p, cfg, name, seqs, side="right", type_seqs=None, pass_types=False, no_mask=False):
    pad_id = cfg["pad_token_id"]
    ids, mask, types = pad_batch(seqs, pad_id, side, type_seqs)
    if not pass_types:
        types = None
    out = model_forward(p, cfg, ids, None if no_mask else mask, types)
    pool = mean_pool(out, mask)

    # independent check of the encoder stack with torch's own nn.TransformerEncoderLayer
    position_ids = create_position_ids_from_input_ids(torch.tensor(ids), pad_id) if cfg["model_type"] == "roberta" else None
    emb = bert_embeddings(p, cfg, torch.tensor(ids), None if types is None else torch.tensor(types), position_ids)
    alt = torch_layers_check(p, cfg, emb, mask)
    real = torch.tensor(mask, dtype=torch.bool)
    assert (alt - out)[real].abs().max() < 1e-10, f"{model}/{name}: nn.TransformerEncoderLayer disagrees"
    x = torch.randn(3, cfg["hidden_size"], dtype=torch.float64)
    assert torch.allclose(layer_norm(p, "embeddings.LayerNorm", x, cfg["layer_norm_eps"]), nn.functional.layer_norm(
        x, (cfg["hidden_size"],), p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], cfg["layer_norm_eps"]),
        rtol=0, atol=1e-12)

    singles = []
    for b, s in enumerate(seqs):
        cols = [j for j in range(len(ids[b])) if mask[b][j] == 1]
        t1 = [types[b][j] for j in cols] if types else None
        one = model_forward(p, cfg, [s], [[1] * len(s)], [t1] if t1 else None)
        diff = (one[0] - out[b, cols]).abs().max().item()
        # BERT positions are column indices, so only right padding keeps them; RoBERTa counts real tokens
        assert diff < 1e-10, f"{model}/{name}: row {b} differs from its single run by {diff}"
        singles.append({
            "row": b, "columns": cols,
            "input_ids": [s], "attention_mask": [[1] * len(s)], "token_type_ids": [t1] if t1 else None,
            "shape": [1, len(s), cfg["hidden_size"]],
            "last_hidden_state": r9(one), "mean_pooled": r9(mean_pool(one, [[1] * len(s)])),
        })
    if F32_CHECK:
        f32_compare(model, p, cfg, ids, None if no_mask else mask, mask, types, out, pool)
    return {
        "name": name, "padding": side if any(0 in r for r in mask) else "none",
        "input_ids": ids, "attention_mask": mask, "attention_mask_passed": not no_mask, "token_type_ids": types,
        "shape": list(out.shape), "last_hidden_state": r9(out), "mean_pooled": r9(pool), "singles": singles,
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models = {}

    # --- BERT, F32, no prefix (BertModel.save_pretrained), erf gelu, hidden 36 = 3 heads x 12 ------
    cfg = make_config("bert", "BertModel", "float32", vocab_size=61, hidden_size=36, num_hidden_layers=2,
                      num_attention_heads=3, intermediate_size=37, hidden_act="gelu", max_position_embeddings=40,
                      type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
    p = build_model("bert-f32", cfg, "F32", "", bert_extra_plain, seed=11)
    a = [2, 17, 33, 5, 48, 60, 3]       # "[CLS] ... [SEP]"-like, no id 0 (the pad id) among real tokens
    b = [2, 9, 41, 3]
    c = [2]
    cases = [
        run_case("bert-f32", p, cfg, "batch of 3 (lengths 7, 4, 1), right-padded, no token_type_ids", [a, b, c]),
        run_case("bert-f32", p, cfg, "sentence pairs: token_type_ids 0 and 1, right-padded",
                 [[2, 11, 12, 3, 21, 22, 3], [2, 30, 3, 44, 3]], type_seqs=[[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1]],
                 pass_types=True),
        run_case("bert-f32", p, cfg, "L = 1, attention_mask not passed", [[7]], no_mask=True),
        run_case("bert-f32", p, cfg, "batch of 2, no padding", [[2, 4, 6, 8, 3], [2, 59, 58, 57, 3]]),
    ]
    models["bert-f32"] = {"model_type": "bert", "weights": "bert-f32.safetensors", "config": "bert-f32.config.json",
                          "dtype": "F32", "prefix": "", "cases": cases}

    # --- BERT, BF16, "bert." prefix + cls.* (BertForMaskedLM), gelu_new, hidden 35 = 5 heads x 7 ---
    cfg = make_config("bert", "BertForMaskedLM", "bfloat16", vocab_size=61, hidden_size=35, num_hidden_layers=2,
                      num_attention_heads=5, intermediate_size=37, hidden_act="gelu_new", max_position_embeddings=40,
                      type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
    p = build_model("bert-prefixed-bf16", cfg, "BF16", "bert.", bert_extra_mlm, seed=12)
    cases = [
        run_case("bert-prefixed-bf16", p, cfg, "batch of 3 (lengths 7, 4, 1), right-padded, token_type_ids 0 and 1",
                 [[2, 5, 6, 3, 50, 51, 3], [2, 40, 3, 3], [2]],
                 type_seqs=[[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1], [0]], pass_types=True),
        run_case("bert-prefixed-bf16", p, cfg, "L = 1", [[3]]),
    ]
    models["bert-prefixed-bf16"] = {"model_type": "bert", "weights": "bert-prefixed-bf16.safetensors",
                                    "config": "bert-prefixed-bf16.config.json", "dtype": "BF16", "prefix": "bert.",
                                    "cases": cases}

    # --- RoBERTa, F16, "roberta." prefix + lm_head.* (RobertaForMaskedLM), relu, hidden 33 = 3 x 11 ---
    cfg = make_config("roberta", "RobertaForMaskedLM", "float16", vocab_size=61, hidden_size=33,
                      num_hidden_layers=2, num_attention_heads=3, intermediate_size=37, hidden_act="relu",
                      max_position_embeddings=42, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                      bos_token_id=0, eos_token_id=2)
    p = build_model("roberta-f16", cfg, "F16", "roberta.", roberta_extra_mlm, seed=13)
    a = [0, 31, 8, 19, 55, 44, 2]       # "<s> ... </s>", no id 1 (the pad id) among real tokens
    b = [0, 12, 13, 2]
    c = [0]
    cases = [
        run_case("roberta-f16", p, cfg, "batch of 3 (lengths 7, 4, 1), right-padded", [a, b, c], side="right"),
        run_case("roberta-f16", p, cfg, "batch of 3 (lengths 7, 4, 1), left-padded", [a, b, c], side="left"),
        run_case("roberta-f16", p, cfg, "L = 1", [[0]]),
    ]
    models["roberta-f16"] = {"model_type": "roberta", "weights": "roberta-f16.safetensors",
                             "config": "roberta-f16.config.json", "dtype": "F16", "prefix": "roberta.", "cases": cases}

    doc = {
        "generator": "scripts/fixtures_encoders.py",
        "torch": torch.__version__,
        "notes": [
            "last_hidden_state: flattened row-major [B, L, hidden] (padded positions included), mean_pooled: [B, hidden]",
            "float64 reference from the stored (F32/BF16/F16) weights, rounded to 9 significant digits",
            "token_type_ids null: not passed (Hugging Face then uses zeros); attention_mask_passed false: "
            "the forward got no mask (all ones), the listed attention_mask is for mean pooling",
            "singles: each row run alone on its real tokens; columns are its real-token columns in the padded batch",
            "RoBERTa positions: create_position_ids_from_input_ids (pad_token_id + 1 + count of real tokens so far; "
            "padding gets pad_token_id), so a left-padded row equals its single run",
        ],
        "models": models,
    }
    if F32_CHECK:
        doc["float32_check"] = {"all": stats, "per_model": per_model_stats}
    (OUT / "cases.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")

    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes):", ", ".join(sorted(f.name for f in OUT.iterdir())))
    if F32_CHECK:
        print("float32 vs float64 (same stored weights):")
        for model, s in per_model_stats.items():
            print(f"  {model}: " + ", ".join(f"{k} {v:.3g}" for k, v in s.items()))


if __name__ == "__main__":
    main()
