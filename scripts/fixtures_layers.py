"""Writes test/fixtures/layers.safetensors (weights of every module below, by prefix) and
test/fixtures/layers.json (inputs and torch's outputs), plus test/fixtures/dtypes.* for F16/BF16.

Run with Debian's torch (apt-get install python3-torch): /usr/bin/python3 scripts/fixtures_layers.py
Parameters are random (not torch's defaults). Expected outputs are computed in float64 from the
float32 parameters and inputs, with autograd on so torch takes its plain (not fused) path.
"""
import base64
import json
import math
import pathlib
import struct

import numpy as np
import torch
from torch import nn

torch.manual_seed(7)
HERE = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures"


def enc(t):
    t = t.detach()
    dtype = {torch.bool: "u8", torch.float32: "f32", torch.float64: "f64"}[t.dtype]
    raw = t.to(torch.uint8) if t.dtype == torch.bool else t
    return {"shape": list(t.shape), "dtype": dtype, "base64": base64.b64encode(raw.contiguous().numpy().tobytes()).decode()}


def write_safetensors(path, tensors, dtype_of=lambda name: "F32"):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (raw, dtype, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def randomize(module):
    for p in module.parameters():
        p.data = (torch.randn_like(p) * 0.3).float()
    return module


weights = {}
cases = []


def register(prefix, module):
    for name, value in module.state_dict().items():
        weights[prefix + name] = (value.float().contiguous().numpy().tobytes(), "F32", list(value.shape))


def rand(*shape):
    return torch.randn(*shape).float()


def mha_case(name, ctor, torch_kwargs, q, k, v, fwd, torch_fwd, same=False):
    prefix = f"mha{len(cases)}."
    m = randomize(nn.MultiheadAttention(batch_first=True, **torch_kwargs))
    register(prefix, m)
    md = m.double()
    out, w = md(q.double(), k.double(), v.double(), **torch_fwd)
    cases.append({"name": name, "module": "MultiHeadAttention", "ctor": ctor, "prefix": prefix, "same": same,
                  "inputs": [enc(q), enc(k), enc(v)], "forward": fwd,
                  "output": enc(out), "weights": enc(w) if w is not None else None})


def enc_mask(m):
    return enc(m if m.dtype == torch.bool else m.float())


B, L, E, H = 2, 5, 16, 4
x = rand(B, L, E)
kpm = torch.tensor([[False, False, False, True, True], [False, False, False, False, True]])
causal = torch.ones(L, L, dtype=torch.bool).triu(1)
fmask = rand(L, L)
per_head = torch.rand(B * H, L, L) < 0.3
per_head[..., 0] = False

mha_case("self-attention, averaged weights", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x, {}, {}, same=True)
mha_case("self-attention, per-head weights, key padding", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x,
         {"averageAttnWeights": False, "keyPaddingMask": enc_mask(kpm)}, {"average_attn_weights": False, "key_padding_mask": kpm}, same=True)
mha_case("float attnMask [L, L] plus bool key padding", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x,
         {"attnMask": enc_mask(fmask), "keyPaddingMask": enc_mask(kpm)}, {"attn_mask": fmask.double(), "key_padding_mask": kpm}, same=True)
mha_case("bool attnMask [B*H, L, L]", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x,
         {"attnMask": enc_mask(per_head), "averageAttnWeights": False}, {"attn_mask": per_head, "average_attn_weights": False}, same=True)
mha_case("isCausal (torch: the causal attn_mask)", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x,
         {"isCausal": True}, {"attn_mask": causal}, same=True)
mha_case("isCausal together with the causal attnMask", {"embedDim": E, "numHeads": H}, {"embed_dim": E, "num_heads": H}, x, x, x,
         {"isCausal": True, "attnMask": enc_mask(causal)}, {"attn_mask": causal}, same=True)
q, kk, vv = rand(B, 3, E), rand(B, 7, 12), rand(B, 7, 10)
mha_case("cross-attention, kdim 12, vdim 10, no weights", {"embedDim": E, "numHeads": 2, "kdim": 12, "vdim": 10},
         {"embed_dim": E, "num_heads": 2, "kdim": 12, "vdim": 10}, q, kk, vv, {"needWeights": False}, {"need_weights": False})
mha_case("no bias, 8 heads of dim 2", {"embedDim": E, "numHeads": 8, "bias": False}, {"embed_dim": E, "num_heads": 8, "bias": False}, x, x, x, {}, {}, same=True)


def layer_case(name, kind, ctor, torch_layer, inputs, fwd, torch_fwd):
    prefix = f"layer{len(cases)}."
    m = randomize(torch_layer)
    register(prefix, m)
    out = m.double()(*[t.double() for t in inputs], **torch_fwd)
    cases.append({"name": name, "module": kind, "ctor": ctor, "prefix": prefix, "inputs": [enc(t) for t in inputs],
                  "forward": fwd, "output": enc(out)})


F = 24
xl = rand(B, 7, E)
kpl = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])
for norm_first in (False, True):
    for act in ("relu", "gelu"):
        ln = "pre-LN" if norm_first else "post-LN"
        ctor = {"dModel": E, "nhead": H, "dimFeedforward": F, "activation": act, "normFirst": norm_first, "layerNormEps": 1e-5}
        layer_case(f"encoder layer {ln} {act} with key padding", "TransformerEncoderLayer", ctor,
                   nn.TransformerEncoderLayer(E, H, F, 0.0, act, batch_first=True, norm_first=norm_first),
                   [xl], {"srcKeyPaddingMask": enc_mask(kpl)}, {"src_key_padding_mask": kpl})
tgt, mem = rand(B, 6, E), rand(B, 9, E)
mkp = torch.tensor([[False] * 9, [False] * 6 + [True] * 3])
tcausal = torch.ones(6, 6, dtype=torch.bool).triu(1)
for norm_first in (False, True):
    ln = "pre-LN" if norm_first else "post-LN"
    ctor = {"dModel": E, "nhead": H, "dimFeedforward": F, "activation": "gelu", "normFirst": norm_first, "layerNormEps": 1e-6}
    layer_case(f"decoder layer {ln}, causal target, memory padding", "TransformerDecoderLayer", ctor,
               nn.TransformerDecoderLayer(E, H, F, 0.0, "gelu", layer_norm_eps=1e-6, batch_first=True, norm_first=norm_first),
               [tgt, mem], {"tgtIsCausal": True, "memoryKeyPaddingMask": enc_mask(mkp)}, {"tgt_mask": tcausal, "memory_key_padding_mask": mkp})
fm = rand(6, 9)
layer_case("decoder layer, float tgtMask and memoryMask", "TransformerDecoderLayer",
           {"dModel": E, "nhead": 2, "dimFeedforward": F},
           nn.TransformerDecoderLayer(E, 2, F, 0.0, batch_first=True),
           [tgt, mem], {"tgtMask": enc_mask(torch.where(tcausal, -math.inf, 0.0)), "memoryMask": enc_mask(fm)},
           {"tgt_mask": torch.where(tcausal, -math.inf, 0.0).double(), "memory_mask": fm.double()})

layer_opts = {"dModel": E, "nhead": H, "dimFeedforward": F, "activation": "gelu"}
stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, F, 0.0, "gelu", batch_first=True), 3, norm=nn.LayerNorm(E), enable_nested_tensor=False)
layer_case("3-layer encoder with final norm, causal", "TransformerEncoder", {"layer": layer_opts, "numLayers": 3, "norm": True},
           stack, [xl], {"isCausal": True}, {"mask": torch.ones(7, 7, dtype=torch.bool).triu(1)})
dstack = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, F, 0.0, "relu", batch_first=True, norm_first=True), 2, norm=nn.LayerNorm(E))
layer_case("2-layer pre-LN decoder with final norm", "TransformerDecoder", {"layer": {**layer_opts, "activation": "relu", "normFirst": True}, "numLayers": 2, "norm": True},
           dstack, [tgt, mem], {"tgtIsCausal": True}, {"tgt_mask": tcausal})

# nn.Transformer: its encoder and decoder loaded from one state dict with prefixes
tr = randomize(nn.Transformer(E, H, 2, 1, F, 0.0, batch_first=True))
register("transformer.", tr)
src, tg = rand(B, 7, E), rand(B, 6, E)
out = tr.double()(src.double(), tg.double(), tgt_mask=tcausal)
cases.append({"name": "nn.Transformer (2 encoder, 1 decoder layers)", "module": "Transformer", "prefix": "transformer.",
              "ctor": {"layer": {"dModel": E, "nhead": H, "dimFeedforward": F}, "encoderLayers": 2, "decoderLayers": 1},
              "inputs": [enc(src), enc(tg)], "forward": {"tgtIsCausal": True}, "output": enc(out)})

write_safetensors(HERE / "layers.safetensors", weights)
(HERE / "layers.json").write_text(json.dumps({"torch": torch.__version__, "cases": cases}, separators=(",", ":")))

# F16 and BF16: special values, widened exactly
special = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-05, 5.9604645e-08, 3.0e-7, np.inf, -np.inf, np.nan, 0.33325195], dtype=np.float32)
f16 = special.astype(np.float16)
bf = torch.tensor(np.concatenate([special, np.array([1e-40, 3.3895314e38, -1.17549435e-38], dtype=np.float32)])).to(torch.bfloat16)
write_safetensors(HERE / "dtypes.safetensors", {
    "half": (f16.tobytes(), "F16", [3, 4]),
    "brain": (bf.view(torch.int16).numpy().tobytes(), "BF16", [15]),
    "scalar": (np.array([1.5], dtype=np.float32).tobytes(), "F32", []),
})
(HERE / "dtypes.json").write_text(json.dumps({
    "half": enc(torch.tensor(f16.astype(np.float32))),
    "brain": enc(bf.float()),
}))
print(f"wrote {len(cases)} layer cases, {len(weights)} tensors")
