"""Writes test/fixtures/sdpa.json: scaled dot-product attention computed by PyTorch.

Run with Debian's torch (apt-get install python3-torch): /usr/bin/python3 scripts/fixtures.py
Inputs are float32 values; the expected outputs are torch's math attention
(torch._scaled_dot_product_attention_math, torch 1.13; boolean masks mean "takes part") evaluated
in float64 on those float32 values. torch 1.13 has no is_causal or enable_gqa, so causal masks are
built with tril and grouped-query heads with repeat_interleave, as torch 2.x does internally.
"""
import base64
import json
import math
import pathlib

import torch

torch.manual_seed(20261128)
OUT = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures" / "sdpa.json"


def attention(q, k, v, mask=None, scale=None, gqa=False):
    if gqa:
        group = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(group, dim=-3)
        v = v.repeat_interleave(group, dim=-3)
    if scale is not None:
        # the math kernel always divides by sqrt(E): fold a custom scale into q
        q = q * (scale * math.sqrt(q.shape[-1]))
    out, weights = torch._scaled_dot_product_attention_math(q.double(), k.double(), v.double(), mask, 0.0, False)
    return out, weights


def causal_mask(lq, lk, bottom_right):
    offset = lk - lq if bottom_right else 0
    return torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=offset)


def flat(t):
    """{shape, dtype, base64}: raw little-endian bytes, float32 inputs and float64 expectations."""
    dtype = {torch.bool: "u8", torch.float32: "f32", torch.float64: "f64"}[t.dtype]
    raw = t.to(torch.uint8) if t.dtype == torch.bool else t
    data = base64.b64encode(raw.contiguous().numpy().astype(raw.numpy().dtype.newbyteorder("<")).tobytes()).decode()
    return {"shape": list(t.shape), "dtype": dtype, "base64": data}


cases = []


def case(name, q_shape, k_shape, v_shape, magnitude=1.0, mask=None, options=None, **ref):
    q = (torch.randn(q_shape) * magnitude).float()
    k = (torch.randn(k_shape) * magnitude).float()
    v = torch.randn(v_shape).float()
    torch_mask = ref.pop("torch_mask", mask)
    if torch_mask is not None and torch_mask.dtype != torch.bool:
        torch_mask = torch_mask.double()
    out, weights = attention(q, k, v, torch_mask, **ref)
    entry = {
        "name": name,
        "query": flat(q),
        "key": flat(k),
        "value": flat(v),
        "options": options or {},
        "output": flat(out),
        "weights": flat(weights),
    }
    if mask is not None:
        entry["mask"] = flat(mask if mask.dtype == torch.bool else mask.float())
    cases.append(entry)


case("plain [B, H, L, E]", (2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 8))
case("cross Lq != Lk, odd dims", (2, 2, 7, 33), (2, 2, 19, 33), (2, 2, 19, 5))
case("head dim 80, 70 keys", (1, 1, 3, 80), (1, 1, 70, 80), (1, 1, 70, 80))
case("head dim 1", (1, 2, 4, 1), (1, 2, 6, 1), (1, 2, 6, 3))
case("large scores (~1e4)", (1, 2, 4, 16), (1, 2, 9, 16), (1, 2, 9, 16), magnitude=30.0)
bool_mask = torch.rand(2, 1, 4, 9) < 0.7
bool_mask[..., 0] = True  # torch gives NaN for a fully masked row; keep every row alive here
case("bool mask [B, 1, Lq, Lk]", (2, 3, 4, 8), (2, 3, 9, 8), (2, 3, 9, 8), mask=bool_mask)
float_mask = torch.randn(4, 9)
float_mask[:, 2] = -math.inf
float_mask[1, 5] = -math.inf
case("float mask [Lq, Lk] with -Infinity", (2, 3, 4, 8), (2, 3, 9, 8), (2, 3, 9, 8), mask=float_mask)
case("key padding mask [B, 1, 1, Lk]", (2, 2, 3, 4), (2, 2, 6, 4), (2, 2, 6, 4), mask=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool).view(2, 1, 1, 6))
case("causal top-left Lq < Lk", (1, 2, 5, 8), (1, 2, 12, 8), (1, 2, 12, 8), options={"isCausal": True}, torch_mask=causal_mask(5, 12, False))
case("causal top-left square", (2, 2, 9, 7), (2, 2, 9, 7), (2, 2, 9, 7), options={"isCausal": True}, torch_mask=causal_mask(9, 9, False))
case("causal bottom-right Lq < Lk", (1, 2, 5, 8), (1, 2, 12, 8), (1, 2, 12, 8), options={"isCausal": True, "causalAlignment": "bottom-right"}, torch_mask=causal_mask(5, 12, True))
case("GQA 6 query heads / 2 kv heads", (2, 6, 4, 8), (2, 2, 7, 8), (2, 2, 7, 8), options={"enableGqa": True}, gqa=True)
case("custom scale", (1, 2, 3, 8), (1, 2, 5, 8), (1, 2, 5, 8), options={"scale": 0.3}, scale=0.3)
case("no batch dims [H, L, E]", (3, 4, 8), (3, 6, 8), (3, 6, 8))

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({"torch": torch.__version__, "cases": cases}, separators=(",", ":")))
print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size} bytes)")
